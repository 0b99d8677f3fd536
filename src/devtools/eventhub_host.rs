//! The Functions host's side of an eventHubTrigger invocation, for `handler simulate --eventhub`,
//! the tests and the benchmarks: the batch serialized in each of the ways the host does it (see
//! [`crate::eventhub::payload`]), with the trigger metadata it sends.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::functions::eventhub::BINDING;

/// How the host serializes the batch into `Data.events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostEncoding {
    /// A JSON string holding a JSON array of strings (`dataType: string`, the host's
    /// `JsonConvert.SerializeObject(string[])`).
    StringOfArray,
    /// A JSON array of strings.
    ArrayOfStrings,
    /// A JSON array of objects (the bodies already parsed).
    ArrayOfObjects,
    /// A JSON array of base64 strings (binary events).
    Base64Elements,
    /// One base64 string holding the JSON array (binary data).
    Base64,
}

impl HostEncoding {
    pub const ALL: [HostEncoding; 5] = [
        HostEncoding::StringOfArray,
        HostEncoding::ArrayOfStrings,
        HostEncoding::ArrayOfObjects,
        HostEncoding::Base64Elements,
        HostEncoding::Base64,
    ];
}

/// The host's retry state for the invocation: `(retryCount, maxRetryCount)`.
pub(crate) type Retry = (i64, i64);

/// An invocation body for `bodies` (each a notification collection), with sequence numbers
/// from `first_sequence` on partition `partition`.
pub fn invocation(
    bodies: &[String],
    encoding: HostEncoding,
    retry: Option<Retry>,
    partition: &str,
    first_sequence: i64,
) -> String {
    let strings = || Value::Array(bodies.iter().map(|b| Value::String(b.clone())).collect());
    let data = match encoding {
        HostEncoding::StringOfArray => Value::String(strings().to_string()),
        HostEncoding::ArrayOfStrings => strings(),
        HostEncoding::ArrayOfObjects => Value::Array(
            bodies
                .iter()
                .map(|b| serde_json::from_str(b).unwrap_or_else(|_| Value::String(b.clone())))
                .collect(),
        ),
        HostEncoding::Base64Elements => Value::Array(
            bodies
                .iter()
                .map(|b| Value::String(STANDARD.encode(b)))
                .collect(),
        ),
        HostEncoding::Base64 => Value::String(STANDARD.encode(strings().to_string())),
    };
    let n = bodies.len() as i64;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("times format");
    let mut metadata = json!({
        "PartitionContext": {"EventHubName": "graph-notifications", "ConsumerGroup": "teams-notifications", "PartitionId": partition},
        "SequenceNumberArray": (first_sequence..first_sequence + n).collect::<Vec<_>>(),
        "PartitionKeyArray": vec![Value::Null; bodies.len()],
        "EnqueuedTimeUtcArray": vec![now; bodies.len()],
        "OffsetArray": (0..n).map(|i| (i * 1024).to_string()).collect::<Vec<_>>(),
        "PropertiesArray": vec![json!({}); bodies.len()],
        "SystemPropertiesArray": (0..n).map(|i| json!({"x-opt-sequence-number": first_sequence + i})).collect::<Vec<_>>(),
        "sys": {"MethodName": "eventhub", "UtcNow": time::OffsetDateTime::now_utc().unix_timestamp()}
    });
    if let Some((count, max)) = retry {
        metadata["RetryContext"] = json!({"RetryCount": count, "MaxRetryCount": max});
    }
    json!({"Data": {BINDING: data}, "Metadata": metadata}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventhub::payload::{Limits, decode};

    #[test]
    fn every_encoding_decodes_to_the_bodies() {
        let bodies = vec![
            r#"{"value":[{"subscriptionId":"a"}]}"#.to_string(),
            r#"{"value":[{"subscriptionId":"b"}]}"#.to_string(),
        ];
        for encoding in HostEncoding::ALL {
            let body = invocation(&bodies, encoding, Some((0, 3)), "1", 40);
            let inv = decode(body.as_bytes(), BINDING, Limits::default()).unwrap();
            let got: Vec<Value> = inv
                .events
                .iter()
                .map(|e| serde_json::from_slice(e).unwrap())
                .collect();
            let want: Vec<Value> = bodies
                .iter()
                .map(|b| serde_json::from_str(b).unwrap())
                .collect();
            assert_eq!(got, want, "{encoding:?}");
            assert_eq!(inv.event_metadata(1)["sequenceNumber"], 41);
            assert!(inv.retries_remain());
        }
    }
}
