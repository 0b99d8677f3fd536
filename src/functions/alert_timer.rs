//! The `alerts` timer function: `functions/alerts/function.json`, a `timerTrigger` named `timer`
//! every minute. The host invokes it as `POST /alerts`; one delivery sweep runs (retries after
//! their backoff, expiry after `ALERT_RETRY_HOURS`) and the answer follows the custom-handler
//! contract (see [`super::invocation`]).

use serde_json::json;

use super::invocation::{InvocationRequest, InvocationResponse};
use super::timer::TimerOutcome;
use crate::alerts::delivery::Dispatcher;
use crate::logging::escape;

/// The binding name of the timer in `functions/alerts/function.json`.
pub const TIMER_BINDING: &str = "timer";

/// `POST /alerts`. A body that is not the host's timer invocation is refused (400, in the
/// invocation-response shape) without a sweep: anyone who can reach the handler can post to it.
/// An archive failure answers 503 so the host records the invocation as failed.
pub async fn invoke(dispatcher: &Dispatcher, body: &[u8]) -> TimerOutcome {
    if let Err(e) = InvocationRequest::parse(body).and_then(|r| r.timer(TIMER_BINDING)) {
        let reason = e.to_string();
        tracing::warn!(reason = %escape(&reason), "alerts: not a timer invocation; refused");
        return TimerOutcome {
            retry: false,
            refused: true,
            response: InvocationResponse {
                logs: vec![format!(
                    "alerts: not a timer invocation ({reason}); nothing done"
                )],
                return_value: json!({ "error": reason }),
                ..Default::default()
            },
        };
    }
    let mut logs = Vec::new();
    match dispatcher.sweep().await {
        Ok(stats) => {
            let line = format!(
                "alerts: {} alert(s) not final; {} delivered, {} failed (pending, retried with backoff), {} expired, {} waiting",
                stats.alerts, stats.delivered, stats.failed, stats.expired, stats.waiting
            );
            tracing::info!("{line}");
            logs.push(line);
            TimerOutcome {
                retry: false,
                refused: false,
                response: InvocationResponse {
                    logs,
                    return_value: serde_json::to_value(&stats).expect("stats serialize"),
                    ..Default::default()
                },
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "alerts: the archive could not be read; the next tick retries");
            logs.push(format!("alerts: archive unavailable: {e}"));
            TimerOutcome {
                retry: true,
                refused: false,
                response: InvocationResponse {
                    logs,
                    return_value: json!({"error": e.to_string()}),
                    ..Default::default()
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_function_binds_the_timer_we_read_every_minute() {
        let f: Value =
            serde_json::from_str(include_str!("../../functions/alerts/function.json")).unwrap();
        let binding = &f["bindings"][0];
        assert_eq!(binding["type"], "timerTrigger");
        assert_eq!(binding["name"], TIMER_BINDING);
        assert_eq!(binding["schedule"], "0 */1 * * * *");
    }
}
