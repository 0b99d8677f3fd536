//! The `replay` timer: nothing is left waiting for an operator.
//!
//! Every `REPLAY_SCHEDULE` the host POSTs `/replay`; the handler first archives what the
//! Event Hubs spool holds, then replays `quarantine/` and `raw/` ([`crate::replay`]): a
//! certificate added late, or a large payload that can now be fetched, heals the archive by
//! itself. `handler replay` does the same by hand. Both are idempotent.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::archive::Archive;
use crate::eventhub::drain;
use crate::eventhub::function::EventHubFunction;
use crate::eventhub::large_payload::PayloadStore;
use crate::host::InvocationRequest;
use crate::keys::CertificateStore;

/// What the timer needs.
pub struct ReplayTimer {
    pub archive: Arc<dyn Archive>,
    pub keys: Arc<CertificateStore>,
    pub payloads: Option<Arc<PayloadStore>>,
    pub eventhub: Arc<EventHubFunction>,
}

impl ReplayTimer {
    /// Handles `POST /replay`: `(status, invocation response)`.
    pub async fn run(&self, body: &[u8]) -> (u16, Value) {
        if let Err(e) = InvocationRequest::parse(body).and_then(|r| r.timer("timer")) {
            // The timer's data is informative only; a run is a run.
            tracing::debug!(reason = %e, "replay timer payload not read");
        }
        let drained = drain::drain(&self.eventhub).await;
        let progress = indicatif::ProgressBar::hidden();
        match crate::replay::replay(
            &self.archive,
            &self.keys,
            self.payloads.as_deref(),
            &progress,
        )
        .await
        {
            Ok(stats) => {
                let line = format!(
                    "replay: spool {} archived, {} left; {} items examined, {} recovered, {} already archived, {} still quarantined, {} unreadable",
                    drained.archived,
                    drained.left,
                    stats.examined,
                    stats.recovered,
                    stats.already_done,
                    stats.still_quarantined,
                    stats.unreadable
                );
                tracing::info!("{line}");
                (
                    200,
                    json!({"Outputs": {}, "Logs": [line], "ReturnValue": {
                        "spool": drained,
                        "examined": stats.examined,
                        "recovered": stats.recovered,
                        "alreadyDone": stats.already_done,
                        "stillQuarantined": stats.still_quarantined,
                        "unreadable": stats.unreadable,
                    }}),
                )
            }
            Err(e) => {
                tracing::error!(reason = %e, "replay: archive unavailable");
                (
                    500,
                    json!({"Outputs": {}, "Logs": [format!("replay: archive unavailable: {e}")], "ReturnValue": {"spool": drained, "error": "archiveUnavailable"}}),
                )
            }
        }
    }
}
