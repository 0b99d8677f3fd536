//! The alert timer (`functions/alerts`): the host's invocation `POST /alerts` runs one delivery
//! sweep and answers with the custom-handler contract's `Outputs`/`Logs`/`ReturnValue`.

use serde_json::json;

use super::delivery::Dispatcher;
use crate::host::{InvocationRequest, InvocationResponse};

/// The timer binding's name in `functions/alerts/function.json`.
pub const TIMER_BINDING: &str = "timer";

/// Runs one sweep for the invocation `body`.
pub async fn invoke(dispatcher: &Dispatcher, body: &[u8]) -> InvocationResponse {
    // The timer's value only says whether the run is late; a sweep is right either way.
    let past_due = InvocationRequest::parse(body)
        .and_then(|r| r.timer(TIMER_BINDING))
        .map(|t| t.is_past_due)
        .unwrap_or_else(|e| {
            tracing::warn!(reason = %e, "alert timer: unexpected invocation payload; sweeping anyway");
            false
        });
    match dispatcher.sweep().await {
        Ok(stats) => {
            let line = format!(
                "alerts: {} alert(s) not final; {} delivered, {} failed (pending, retried with backoff), {} expired, {} waiting",
                stats.alerts, stats.delivered, stats.failed, stats.expired, stats.waiting
            );
            tracing::info!(past_due, "{line}");
            InvocationResponse {
                logs: vec![line],
                return_value: serde_json::to_value(&stats).expect("stats serialize"),
                ..Default::default()
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "alert timer: the archive could not be read");
            InvocationResponse {
                logs: vec![format!("alerts: archive unavailable: {e}")],
                return_value: json!({"error": e.to_string()}),
                ..Default::default()
            }
        }
    }
}
