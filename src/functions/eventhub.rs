//! The `eventhub` function: one eventHubTrigger invocation, answered as the host expects.
//!
//! The host advances the partition's checkpoint whether the invocation succeeds or fails, so the
//! answer is chosen to lose nothing (ARCHITECTURE.md, "Event Hubs delivery"):
//! - everything archived: 200;
//! - the archive failed: the invocation body is first written to the spool; then, while the
//!   `RetryContext` says the host will retry, 500 (the retry runs the batch again); on the last
//!   try (or without a retry policy) 200, the batch being durable in the spool, which the replay
//!   timer archives once the archive is back;
//! - the archive and the spool both failed: 500, logged as an error naming the partition and
//!   sequence numbers (the events are still in the hub for its retention time);
//! - a payload this handler cannot read: 500 with the reason; a retry cannot help, so it is an
//!   error in the log and the invocation is a failure in the host's telemetry.
//!
//! Every answer is `{"Outputs":{},"Logs":[…],"ReturnValue":…}`: a non-JSON answer breaks the
//! host's invocation.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::eventhub::payload::{self, EventHubInvocation, Limits};
use crate::eventhub::spool::Spool;
use crate::receiver::{HubEvent, Receipt, Receiver, log_accepted};

/// The trigger binding's name in `functions/eventhub/function.json`.
pub const BINDING: &str = "events";

/// The function's state.
pub struct EventHubFunction {
    pub receiver: Arc<Receiver>,
    pub spool: Spool,
    pub limits: Limits,
}

/// The answer: HTTP status, the invocation response, and the receipt when the batch was read.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub receipt: Option<Receipt>,
}

impl EventHubFunction {
    /// Handles one invocation body.
    pub async fn invoke(&self, body: &[u8]) -> Answer {
        let started = std::time::Instant::now();
        let invocation = match payload::decode(body, BINDING, self.limits) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(code = e.code(), reason = %e, "eventhub: invocation payload rejected");
                return answer(
                    500,
                    format!("eventhub: invocation payload rejected ({}): {e}", e.code()),
                    json!({"error": e.code()}),
                );
            }
        };
        let events = invocation.events.len();
        match self.receive(&invocation).await {
            Ok(receipt) => {
                let elapsed_ms = started.elapsed().as_millis() as u64;
                log_accepted("eventhub", &receipt, Some(events), elapsed_ms);
                let line = format!(
                    "eventhub: {events} events, {} items: {} events, {} quarantined, {} lifecycle, {} duplicates, {} dropped (clientState), {} rejected, {} unreadable, {} validation messages",
                    receipt.items,
                    receipt.events,
                    receipt.quarantined,
                    receipt.lifecycle,
                    receipt.duplicates,
                    receipt.dropped_client_state,
                    receipt.rejected,
                    receipt.unreadable,
                    receipt.validation
                );
                let mut a = answer(200, line, receipt_json(&receipt, events));
                a.receipt = Some(receipt);
                a
            }
            Err(e) => self.archive_failed(body, &invocation, e).await,
        }
    }

    /// Runs the decoded events through the receiver (one archive write).
    pub async fn receive(
        &self,
        invocation: &EventHubInvocation,
    ) -> Result<Receipt, crate::archive::ArchiveError> {
        let events = invocation
            .events
            .iter()
            .enumerate()
            .map(|(i, body)| HubEvent {
                body: bytes::Bytes::from(body.clone()),
                metadata: invocation.event_metadata(i),
            })
            .collect();
        self.receiver.receive_events(events).await
    }

    async fn archive_failed(
        &self,
        body: &[u8],
        invocation: &EventHubInvocation,
        error: crate::archive::ArchiveError,
    ) -> Answer {
        let retry = invocation.retries_remain();
        let spooled = self.spool.put(body).await;
        let position = position(invocation);
        match (spooled, retry) {
            (Ok(s), true) => {
                tracing::warn!(reason = %error, spool = %s.path.display(), %position, "eventhub: archive unavailable; batch spooled, retry asked");
                answer(
                    500,
                    "eventhub: archive unavailable; the batch is spooled and a retry is asked"
                        .into(),
                    json!({"error": "archiveUnavailable", "spooled": true, "retry": true}),
                )
            }
            (Ok(s), false) => {
                tracing::error!(reason = %error, spool = %s.path.display(), %position, "eventhub: archive unavailable on the last try; batch kept in the spool for the replay timer");
                answer(
                    200,
                    "eventhub: archive unavailable on the last try; the batch is in the spool and the replay timer archives it".into(),
                    json!({"error": "archiveUnavailable", "spooled": true, "retry": false}),
                )
            }
            (Err(spool_error), true) => {
                tracing::error!(reason = %error, spool_error = %spool_error, %position, "eventhub: archive and spool unavailable; retry asked");
                answer(
                    500,
                    "eventhub: archive and spool unavailable; a retry is asked".into(),
                    json!({"error": "archiveUnavailable", "spooled": false, "retry": true}),
                )
            }
            (Err(spool_error), false) => {
                tracing::error!(reason = %error, spool_error = %spool_error, %position, "eventhub: BATCH NOT STORED: archive and spool failed on the last try; re-read these events from the hub");
                answer(
                    500,
                    format!(
                        "eventhub: batch not stored (archive and spool failed on the last try): {position}"
                    ),
                    json!({"error": "notStored", "spooled": false, "retry": false, "position": position}),
                )
            }
        }
    }
}

/// Partition and sequence numbers, to find the events in the hub again.
fn position(invocation: &EventHubInvocation) -> String {
    let partition = invocation
        .metadata
        .get("PartitionContext")
        .and_then(|p| p.get("PartitionId").or_else(|| p.get("partitionId")))
        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let numbers = invocation
        .metadata
        .get("SequenceNumberArray")
        .and_then(Value::as_array)
        .map(|a| {
            let n: Vec<i64> = a.iter().filter_map(Value::as_i64).collect();
            match (n.iter().min(), n.iter().max()) {
                (Some(lo), Some(hi)) => format!("{lo}..={hi}"),
                _ => "unknown".into(),
            }
        })
        .unwrap_or_else(|| "unknown".into());
    format!("partition {partition}, sequence numbers {numbers}")
}

fn answer(status: u16, log: String, return_value: Value) -> Answer {
    Answer {
        status,
        body: json!({"Outputs": {}, "Logs": [log], "ReturnValue": return_value}),
        receipt: None,
    }
}

fn receipt_json(r: &Receipt, events: usize) -> Value {
    json!({
        "eventCount": events,
        "items": r.items,
        "events": r.events,
        "quarantined": r.quarantined,
        "lifecycle": r.lifecycle,
        "duplicates": r.duplicates,
        "droppedClientState": r.dropped_client_state,
        "rejected": r.rejected,
        "unreadable": r.unreadable,
        "validation": r.validation,
    })
}
