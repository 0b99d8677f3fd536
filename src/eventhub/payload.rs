//! The eventHubTrigger invocation as a custom handler receives it.
//!
//! The Functions host POSTs `/{function}` with `{"Data": {"<binding>": ...}, "Metadata": {...}}`
//! (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>). For a trigger
//! with `cardinality: many` the host's serializer (`ScriptInvocationContextExtensions` in
//! azure-functions-host) turns the batch into one of:
//! - a JSON string holding a JSON array (`JsonConvert.SerializeObject(string[])`), each element
//!   an event body as text, or base64 when the event arrived as bytes;
//! - a JSON array of strings, or of objects (the event bodies already parsed);
//! - a base64 string (binary data), whose bytes are such an array or a single event body.
//!
//! Metadata values may likewise be JSON or strings holding JSON; they are normalized once and kept
//! for the raw record. Every shape this module does not understand is a [`PayloadError`] with a
//! stable [`code`](PayloadError::code), never a panic. An element that decodes to bytes that are
//! not a notification collection is not an error here: the receiver keeps it as evidence.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// Metadata arrays with one entry per event, in the order of the events.
const PER_EVENT_ARRAYS: [(&str, &str); 5] = [
    ("SequenceNumberArray", "sequenceNumber"),
    ("PartitionKeyArray", "partitionKey"),
    ("EnqueuedTimeUtcArray", "enqueuedTimeUtc"),
    ("PropertiesArray", "properties"),
    ("SystemPropertiesArray", "systemProperties"),
];

/// Bounds on one invocation (the body size itself is bounded before parsing).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most events accepted in one invocation (host.json `maxEventBatchSize` is far below).
    pub max_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_events: 10_000 }
    }
}

/// One decoded eventHubTrigger invocation.
#[derive(Debug, Clone)]
pub struct EventHubInvocation {
    /// The event bodies, in order, as bytes (each should be a changeNotificationCollection).
    pub events: Vec<Vec<u8>>,
    /// The trigger metadata, strings holding JSON parsed, for the raw record.
    pub metadata: Map<String, Value>,
    /// The host's retry state; `None` when the host sent none (no retry policy: the only try).
    pub retry: Option<RetryContext>,
}

/// `RetryContext` of a function-level retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryContext {
    /// Retries done before this try (0 on the first try).
    pub retry_count: i64,
    /// The policy's `maxRetryCount`; -1 retries forever.
    pub max_retry_count: i64,
}

impl RetryContext {
    /// Whether a failed answer to this try will be retried by the host.
    pub fn retries_remain(&self) -> bool {
        self.max_retry_count < 0 || self.retry_count < self.max_retry_count
    }
}

/// Why an invocation payload cannot be read. The answer is a JSON error, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("invocation body is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("invocation body is not an object with Data and Metadata")]
    NotInvocation,
    #[error("binding {0:?} is missing from Data")]
    MissingBinding(String),
    #[error("binding {binding:?} holds {found}, not a batch of events")]
    WrongShape { binding: String, found: String },
    #[error("binding {binding:?} is a string that is neither JSON nor base64")]
    NotBase64 {
        binding: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("binding {binding:?} holds a string with malformed JSON")]
    InnerJson {
        binding: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("event {index} of binding {binding:?} is {found}, not an event body")]
    WrongEvent {
        binding: String,
        index: usize,
        found: &'static str,
    },
    #[error("{count} events in one invocation, more than the limit of {limit}")]
    TooManyEvents { count: usize, limit: usize },
}

impl PayloadError {
    /// A stable code for logs and the invocation's `ReturnValue`.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::NotJson(_) => "notJson",
            PayloadError::NotInvocation => "notInvocation",
            PayloadError::MissingBinding(_) => "missingBinding",
            PayloadError::WrongShape { .. } => "wrongShape",
            PayloadError::NotBase64 { .. } => "notBase64",
            PayloadError::InnerJson { .. } => "innerJson",
            PayloadError::WrongEvent { .. } => "wrongEvent",
            PayloadError::TooManyEvents { .. } => "tooManyEvents",
        }
    }
}

/// Decodes an invocation body whose trigger binding is `binding`.
pub fn decode(
    body: &[u8],
    binding: &str,
    limits: Limits,
) -> Result<EventHubInvocation, PayloadError> {
    let root: Value = serde_json::from_slice(body).map_err(PayloadError::NotJson)?;
    let Value::Object(mut root) = root else {
        return Err(PayloadError::NotInvocation);
    };
    let data = match root.remove("Data") {
        Some(Value::Object(d)) => d,
        None | Some(_) => return Err(PayloadError::NotInvocation),
    };
    let metadata = match root.remove("Metadata") {
        Some(Value::Object(m)) => normalize(m),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(PayloadError::NotInvocation),
    };
    let value = data
        .get(binding)
        .ok_or_else(|| PayloadError::MissingBinding(binding.to_string()))?;
    let events = events_of(value, binding)?;
    if events.len() > limits.max_events {
        return Err(PayloadError::TooManyEvents {
            count: events.len(),
            limit: limits.max_events,
        });
    }
    let retry = metadata.get("RetryContext").and_then(retry_context);
    Ok(EventHubInvocation {
        events,
        metadata,
        retry,
    })
}

/// The batch in every form the host produces.
fn events_of(value: &Value, binding: &str) -> Result<Vec<Vec<u8>>, PayloadError> {
    match value {
        Value::Array(items) => array_events(items, binding),
        Value::Object(_) => Ok(vec![to_bytes(value)]),
        Value::String(s) => string_events(s.as_bytes(), binding, true),
        other => Err(PayloadError::WrongShape {
            binding: binding.to_string(),
            found: json_type(other).to_string(),
        }),
    }
}

/// A string: JSON text of an array or of one event, or base64 of either (decoded once).
fn string_events(
    text: &[u8],
    binding: &str,
    may_be_base64: bool,
) -> Result<Vec<Vec<u8>>, PayloadError> {
    let inner_json = |source| PayloadError::InnerJson {
        binding: binding.to_string(),
        source,
    };
    match first_non_space(text) {
        Some(b'[') => {
            let items: Vec<Value> = serde_json::from_slice(text).map_err(inner_json)?;
            array_events(&items, binding)
        }
        Some(b'{') => Ok(vec![text.to_vec()]),
        _ if may_be_base64 => {
            let bytes =
                STANDARD
                    .decode(trim_ascii(text))
                    .map_err(|source| PayloadError::NotBase64 {
                        binding: binding.to_string(),
                        source,
                    })?;
            string_events(&bytes, binding, false)
        }
        _ => Err(PayloadError::WrongShape {
            binding: binding.to_string(),
            found: "base64 of something that is not JSON".into(),
        }),
    }
}

fn array_events(items: &[Value], binding: &str) -> Result<Vec<Vec<u8>>, PayloadError> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(s) => Ok(event_from_text(s)),
            Value::Object(_) => Ok(to_bytes(item)),
            other => Err(PayloadError::WrongEvent {
                binding: binding.to_string(),
                index,
                found: json_type(other),
            }),
        })
        .collect()
}

/// An element given as text: the body itself when it looks like JSON, else base64 of it. Text
/// that is neither is kept as it is (the receiver records it as unreadable evidence).
fn event_from_text(s: &str) -> Vec<u8> {
    if first_non_space(s.as_bytes()).is_some_and(|b| b == b'{' || b == b'[') {
        return s.as_bytes().to_vec();
    }
    STANDARD
        .decode(trim_ascii(s.as_bytes()))
        .unwrap_or_else(|_| s.as_bytes().to_vec())
}

/// Metadata values that are strings holding a JSON object or array, parsed.
fn normalize(metadata: Map<String, Value>) -> Map<String, Value> {
    metadata
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) if matches!(first_non_space(s.as_bytes()), Some(b'[' | b'{')) => {
                match serde_json::from_str::<Value>(&s) {
                    Ok(parsed) => (k, parsed),
                    Err(_) => (k, Value::String(s)),
                }
            }
            other => (k, other),
        })
        .collect()
}

fn retry_context(value: &Value) -> Option<RetryContext> {
    let get = |pascal: &str, camel: &str| {
        value
            .get(pascal)
            .or_else(|| value.get(camel))
            .and_then(Value::as_i64)
    };
    Some(RetryContext {
        retry_count: get("RetryCount", "retryCount")?,
        max_retry_count: get("MaxRetryCount", "maxRetryCount")?,
    })
}

impl EventHubInvocation {
    /// The metadata of event `index` for its raw record: its entries of the per-event arrays,
    /// plus `PartitionContext` and `RetryContext`.
    pub fn event_metadata(&self, index: usize) -> Value {
        let mut out = Map::new();
        for (array, field) in PER_EVENT_ARRAYS {
            if let Some(v) = self.metadata.get(array).and_then(|a| a.get(index)) {
                out.insert(field.to_string(), v.clone());
            }
        }
        for key in ["PartitionContext", "RetryContext"] {
            if let Some(v) = self.metadata.get(key) {
                out.insert(lower_first(key), v.clone());
            }
        }
        Value::Object(out)
    }

    /// Whether a failed answer to this invocation will be retried by the host.
    pub fn retries_remain(&self) -> bool {
        self.retry.is_some_and(|r| r.retries_remain())
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a parsed JSON value serializes")
}

fn first_non_space(b: &[u8]) -> Option<u8> {
    b.iter().copied().find(|c| !c.is_ascii_whitespace())
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = r#"{"value":[{"subscriptionId":"a"}]}"#;
    const B: &str = r#"{"value":[{"subscriptionId":"b"}]}"#;

    fn invocation(data: Value) -> Vec<u8> {
        json!({"Data": {"events": data}, "Metadata": {
            "SequenceNumberArray": "[7,8]",
            "PartitionKeyArray": ["k1", null],
            "PartitionContext": {"PartitionId": "3"},
            "RetryContext": "{\"RetryCount\":1,\"MaxRetryCount\":3}"
        }})
        .to_string()
        .into_bytes()
    }

    fn bodies(data: Value) -> Vec<String> {
        decode(&invocation(data), "events", Limits::default())
            .unwrap()
            .events
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect()
    }

    fn same_json(a: &str, b: &str) -> bool {
        serde_json::from_str::<Value>(a).unwrap() == serde_json::from_str::<Value>(b).unwrap()
    }

    #[test]
    fn every_host_encoding_gives_the_same_events() {
        let array_of_strings = json!([A, B]);
        let string_of_array = Value::String(array_of_strings.to_string());
        let array_of_objects = json!([
            serde_json::from_str::<Value>(A).unwrap(),
            serde_json::from_str::<Value>(B).unwrap()
        ]);
        let base64_elements = json!([STANDARD.encode(A), STANDARD.encode(B)]);
        let string_of_base64_array =
            Value::String(json!([STANDARD.encode(A), STANDARD.encode(B)]).to_string());
        let base64_of_array = Value::String(STANDARD.encode(array_of_strings.to_string()));
        for data in [
            array_of_strings,
            string_of_array,
            array_of_objects,
            base64_elements,
            string_of_base64_array,
            base64_of_array,
        ] {
            let got = bodies(data.clone());
            assert_eq!(got.len(), 2, "{data}");
            assert!(same_json(&got[0], A) && same_json(&got[1], B), "{data}");
        }
        // One event (cardinality one, or a single binary body).
        assert_eq!(
            bodies(Value::String(STANDARD.encode(A))),
            vec![A.to_string()]
        );
        assert_eq!(bodies(Value::String(A.into())), vec![A.to_string()]);
    }

    #[test]
    fn metadata_is_normalized_and_split_per_event() {
        let inv = decode(&invocation(json!([A, B])), "events", Limits::default()).unwrap();
        assert_eq!(inv.metadata["SequenceNumberArray"], json!([7, 8]));
        assert_eq!(
            inv.retry,
            Some(RetryContext {
                retry_count: 1,
                max_retry_count: 3
            })
        );
        assert!(inv.retries_remain());
        let m = inv.event_metadata(0);
        assert_eq!(m["sequenceNumber"], 7);
        assert_eq!(m["partitionKey"], "k1");
        assert_eq!(m["partitionContext"]["PartitionId"], "3");
        assert_eq!(inv.event_metadata(1)["partitionKey"], Value::Null);
        let last = RetryContext {
            retry_count: 3,
            max_retry_count: 3,
        };
        assert!(!last.retries_remain());
        let forever = RetryContext {
            retry_count: 99,
            max_retry_count: -1,
        };
        assert!(forever.retries_remain());
    }

    #[test]
    fn no_retry_context_means_the_only_try() {
        let body = json!({"Data": {"events": [A]}}).to_string();
        let inv = decode(body.as_bytes(), "events", Limits::default()).unwrap();
        assert_eq!(inv.retry, None);
        assert!(!inv.retries_remain());
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        let code = |body: &[u8]| {
            decode(body, "events", Limits { max_events: 3 })
                .unwrap_err()
                .code()
        };
        assert_eq!(code(b"not json"), "notJson");
        assert_eq!(code(b""), "notJson");
        assert_eq!(code(b"[1]"), "notInvocation");
        assert_eq!(code(br#"{"Data":3}"#), "notInvocation");
        assert_eq!(code(br#"{"Data":{},"Metadata":2}"#), "notInvocation");
        assert_eq!(code(br#"{"Data":{"other":[]}}"#), "missingBinding");
        assert_eq!(code(br#"{"Data":{"events":3}}"#), "wrongShape");
        assert_eq!(code(br#"{"Data":{"events":null}}"#), "wrongShape");
        assert_eq!(code(br#"{"Data":{"events":"%%%"}}"#), "notBase64");
        assert_eq!(code(br#"{"Data":{"events":"[1,"}}"#), "innerJson");
        assert_eq!(code(br#"{"Data":{"events":[1]}}"#), "wrongEvent");
        assert_eq!(code(br#"{"Data":{"events":[[]]}}"#), "wrongEvent");
        assert_eq!(code(br#"{"Data":{"events":"aGVsbG8="}}"#), "wrongShape");
        assert_eq!(
            code(br#"{"Data":{"events":["{}","{}","{}","{}"]}}"#),
            "tooManyEvents"
        );
        // Nested strings are decoded once, never recursively.
        let nested = STANDARD.encode(STANDARD.encode(A));
        let body = json!({"Data": {"events": nested}}).to_string();
        assert_eq!(code(body.as_bytes()), "wrongShape");
    }

    #[test]
    fn unreadable_elements_are_kept_for_the_receiver() {
        assert_eq!(
            bodies(json!(["not base64 !"])),
            vec!["not base64 !".to_string()]
        );
    }
}
