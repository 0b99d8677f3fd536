//! The `renew` timer function: `functions/renew/function.json`, a `timerTrigger` named `timer` on
//! the NCRONTAB schedule of the app setting `RENEW_SCHEDULE` (default `0 */30 * * * *`). The host
//! invokes it as `POST /renew` with the invocation payload (see [`super::invocation`]).

use std::sync::Arc;

use serde_json::json;

use super::invocation::{InvocationRequest, InvocationResponse};
use crate::logging::escape;
use crate::renewer::Renewer;
use crate::renewer::single_flight::Flight;

/// The binding name of the timer in `functions/renew/function.json`.
pub const TIMER_BINDING: &str = "timer";

/// What a timer invocation ended with: the host's answer and whether it should count as failed.
#[derive(Debug, Clone)]
pub struct TimerOutcome {
    /// `true` when a failure may go away on retry: answered 503 so the host records the
    /// invocation as failed; otherwise 200.
    pub retry: bool,
    /// The body was not a timer invocation: 400, nothing done.
    pub refused: bool,
    pub response: InvocationResponse,
}

impl TimerOutcome {
    pub fn status(&self) -> u16 {
        match (self.refused, self.retry) {
            (true, _) => 400,
            (false, true) => 503,
            (false, false) => 200,
        }
    }
}

/// `POST /renew`: the timer invocation. A body that is not the host's timer invocation is
/// refused (400, in the invocation-response shape) without touching Graph: anyone who can reach
/// the handler can post to it. Otherwise the reconcile runs, or the one already running is
/// joined; every action goes into `Logs` and the counts into `ReturnValue`.
pub async fn renew(renewer: &Arc<Renewer>, body: &[u8]) -> TimerOutcome {
    let timer = match InvocationRequest::parse(body).and_then(|r| r.timer(TIMER_BINDING)) {
        Ok(timer) => timer,
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(reason = %escape(&reason), "renew: not a timer invocation; refused");
            return TimerOutcome {
                retry: false,
                refused: true,
                response: InvocationResponse {
                    logs: vec![format!(
                        "renew: not a timer invocation ({reason}); nothing done"
                    )],
                    return_value: json!({ "error": reason }),
                    ..InvocationResponse::default()
                },
            };
        }
    };
    let mut logs = Vec::new();
    if timer.is_past_due {
        tracing::warn!("renew: the timer is past due");
        logs.push("renew: the timer is past due; reconciling now".to_string());
    }
    let (report, flight) = renewer.reconcile_joined().await;
    let joined = flight == Flight::Joined;
    if joined {
        logs.push("renew: a reconcile was already running; joined it".to_string());
    }
    logs.extend(report.log_lines());
    let mut summary = report.summary();
    summary["isPastDue"] = json!(timer.is_past_due);
    summary["joined"] = json!(joined);
    let outcome = TimerOutcome {
        retry: report.should_retry(),
        refused: false,
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
        joined,
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
