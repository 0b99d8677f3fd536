//! The `renew` timer function: `functions/renew/function.json`, a `timerTrigger` named `timer` on
//! the NCRONTAB schedule of the app setting `RENEW_SCHEDULE` (default `0 */30 * * * *`). The host
//! invokes it as `POST /renew` with the invocation payload (see [`super::invocation`]).

use serde_json::json;

use super::invocation::{InvocationRequest, InvocationResponse};
use crate::renewer::Renewer;

/// The binding name of the timer in `functions/renew/function.json`.
pub const TIMER_BINDING: &str = "timer";

/// What a timer invocation ended with: the host's answer and whether it should count as failed.
#[derive(Debug, Clone)]
pub struct TimerOutcome {
    /// `true` when a failure may go away on retry: answered 503 so the host records the
    /// invocation as failed; otherwise 200.
    pub retry: bool,
    pub response: InvocationResponse,
}

impl TimerOutcome {
    pub fn status(&self) -> u16 {
        if self.retry { 503 } else { 200 }
    }
}

/// `POST /renew`: the timer invocation. The payload is informational (a malformed one is logged
/// and the reconcile runs anyway); every action goes into `Logs` and the counts into
/// `ReturnValue`.
pub async fn renew(renewer: &Renewer, body: &[u8]) -> TimerOutcome {
    let mut logs = Vec::new();
    let timer = InvocationRequest::parse(body).and_then(|r| r.timer(TIMER_BINDING));
    let past_due = match &timer {
        Ok(t) => t.is_past_due,
        Err(e) => {
            tracing::warn!(error = %e, "renew: timer payload not understood; reconciling anyway");
            logs.push(format!(
                "renew: timer payload not understood ({e}); reconciling anyway"
            ));
            false
        }
    };
    if past_due {
        tracing::warn!("renew: the timer is past due");
        logs.push("renew: the timer is past due; reconciling now".to_string());
    }
    let report = renewer.reconcile().await;
    logs.extend(report.log_lines());
    let mut summary = report.summary();
    summary["isPastDue"] = json!(past_due);
    let outcome = TimerOutcome {
        retry: report.should_retry(),
        response: InvocationResponse {
            logs,
            return_value: summary,
            ..InvocationResponse::default()
        },
    };
    tracing::info!(
        status = outcome.status(),
        changes = report.changes(),
        failures = report.failures(),
        "renew finished"
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_function_binds_the_timer_we_read() {
        let f: Value =
            serde_json::from_str(include_str!("../../functions/renew/function.json")).unwrap();
        let binding = &f["bindings"][0];
        assert_eq!(binding["type"], "timerTrigger");
        assert_eq!(binding["name"], TIMER_BINDING);
        assert_eq!(binding["schedule"], "%RENEW_SCHEDULE%");
    }
}
