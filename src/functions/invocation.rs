//! The Azure Functions custom-handler contract for non-HTTP triggers.
//!
//! The host POSTs `/{functionName}` with `{"Data": {<binding>: ...}, "Metadata": {...}}` and
//! expects `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`; only a 2xx answer gets its
//! `Logs` into the invocation's log (Application Insights)
//! (<https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers>).
//!
//! A timer binding's value is the `TimerInfo` object (`Schedule`, `ScheduleStatus`,
//! `IsPastDue`). Hosts have sent it both as a JSON object and as a string holding JSON, so both
//! are read.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An invocation request from the host.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct InvocationRequest {
    /// Trigger and input bindings, by binding name.
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    /// Trigger metadata (`sys` with the method name, UTC time, random GUID).
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

/// Why an invocation payload could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("invocation body is not JSON with Data/Metadata: {0}")]
    NotInvocation(String),
    #[error("binding {0:?} is missing from Data")]
    MissingBinding(String),
    #[error("binding {name:?} is not a timer: {reason}")]
    NotTimer { name: String, reason: String },
}

/// The timer binding's value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TimerInfo {
    #[serde(rename = "Schedule", alias = "schedule", default)]
    pub schedule: Option<Value>,
    #[serde(rename = "ScheduleStatus", alias = "scheduleStatus", default)]
    pub schedule_status: Option<ScheduleStatus>,
    /// The invocation runs later than scheduled (e.g. the app was down or scaled to zero).
    #[serde(rename = "IsPastDue", alias = "isPastDue", default)]
    pub is_past_due: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ScheduleStatus {
    #[serde(rename = "Last", alias = "last", default)]
    pub last: Option<String>,
    #[serde(rename = "Next", alias = "next", default)]
    pub next: Option<String>,
    #[serde(rename = "LastUpdated", alias = "lastUpdated", default)]
    pub last_updated: Option<String>,
}

impl InvocationRequest {
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        serde_json::from_slice(body).map_err(|e| PayloadError::NotInvocation(e.to_string()))
    }

    /// The timer binding `name`, given as an object or as a string holding JSON.
    pub fn timer(&self, name: &str) -> Result<TimerInfo, PayloadError> {
        let value = self
            .data
            .get(name)
            .ok_or_else(|| PayloadError::MissingBinding(name.to_string()))?;
        let not_timer = |reason: String| PayloadError::NotTimer {
            name: name.to_string(),
            reason,
        };
        match value {
            Value::Object(_) => {
                serde_json::from_value(value.clone()).map_err(|e| not_timer(e.to_string()))
            }
            Value::String(s) => serde_json::from_str(s).map_err(|e| not_timer(e.to_string())),
            other => Err(not_timer(format!("unexpected JSON {}", type_name(other)))),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The answer to an invocation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Lines the host writes to the invocation log (2xx answers only).
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl InvocationResponse {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an invocation response always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMER: &str = r#"{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-01-01T00:00:00+00:00","Next":"2026-01-01T00:30:00+00:00","LastUpdated":"2026-01-01T00:00:00+00:00"},"IsPastDue":true}"#;

    #[test]
    fn timer_as_object_or_string() {
        let object = format!(
            r#"{{"Data":{{"timer":{TIMER}}},"Metadata":{{"sys":{{"MethodName":"renew"}}}}}}"#
        );
        let string = serde_json::json!({"Data": {"timer": TIMER}, "Metadata": {}}).to_string();
        for body in [object, string] {
            let t = InvocationRequest::parse(body.as_bytes())
                .unwrap()
                .timer("timer")
                .unwrap();
            assert!(t.is_past_due);
            assert_eq!(
                t.schedule_status.unwrap().next.as_deref(),
                Some("2026-01-01T00:30:00+00:00")
            );
        }
        let camel = r#"{"Data":{"timer":{"isPastDue":false}}}"#;
        let t = InvocationRequest::parse(camel.as_bytes())
            .unwrap()
            .timer("timer")
            .unwrap();
        assert!(!t.is_past_due);
    }

    #[test]
    fn bad_payloads_are_named() {
        assert!(matches!(
            InvocationRequest::parse(b"nope"),
            Err(PayloadError::NotInvocation(_))
        ));
        let r = InvocationRequest::parse(br#"{"Data":{}}"#).unwrap();
        assert_eq!(
            r.timer("timer"),
            Err(PayloadError::MissingBinding("timer".into()))
        );
        let r = InvocationRequest::parse(br#"{"Data":{"timer":"{oops"}}"#).unwrap();
        assert!(matches!(
            r.timer("timer"),
            Err(PayloadError::NotTimer { .. })
        ));
        let r = InvocationRequest::parse(br#"{"Data":{"timer":3}}"#).unwrap();
        assert!(r.timer("timer").unwrap_err().to_string().contains("number"));
    }

    #[test]
    fn response_uses_the_host_names() {
        let r = InvocationResponse {
            logs: vec!["a".into()],
            return_value: serde_json::json!({"created": 1}),
            ..Default::default()
        };
        assert_eq!(
            r.to_json(),
            serde_json::json!({"Outputs": {}, "Logs": ["a"], "ReturnValue": {"created": 1}})
        );
    }
}
