//! The `replay` timer: nothing is left waiting for an operator.
//!
//! Every `REPLAY_SCHEDULE` the host POSTs `/replay`; the handler first archives what the
//! Event Hubs spool holds, then replays `quarantine/` and `raw/` ([`crate::replay`]): a
//! certificate added late, or a large payload that can now be fetched, heals the archive by
//! itself. `handler replay` does the same by hand. Both are idempotent.
//!
//! Draining the spool: each spooled invocation goes through the `eventhub` function's receive
//! path again and is removed once the archive holds all of it (archive names are content hashes,
//! so a batch that was also archived by a successful retry adds nothing); the drain stops at the
//! first archive failure (the archive is still down).

use std::sync::Arc;

use serde_json::{Value, json};

use super::eventhub::{BINDING, EventHubFunction};
use super::invocation::InvocationRequest;
use crate::archive::Archive;
use crate::eventhub::large_payload::PayloadStore;
use crate::eventhub::payload;
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
        let drained = drain(&self.eventhub).await;
        let progress = indicatif::ProgressBar::hidden();
        match crate::ops::replay::replay(
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

/// What a drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainStats {
    /// Invocations found in the spool.
    pub spooled: usize,
    /// Invocations archived and removed from the spool.
    pub archived: usize,
    /// Invocations left because the archive failed.
    pub left: usize,
    /// Spool files that cannot be read back (left in place, named in the log).
    pub unreadable: usize,
}

/// Archives what the spool holds.
pub async fn drain(function: &EventHubFunction) -> DrainStats {
    let spool = &function.spool;
    let mut stats = DrainStats::default();
    let items = match spool.list().await {
        Ok(items) => items,
        Err(e) => {
            tracing::error!(error = %e, dir = %spool.dir().display(), "spool cannot be listed");
            return stats;
        }
    };
    stats.spooled = items.len();
    for item in &items {
        let body = match spool.read(item).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, file = %item.path.display(), "spooled invocation cannot be read");
                stats.unreadable += 1;
                continue;
            }
        };
        let invocation = match payload::decode(&body, BINDING, function.limits) {
            Ok(inv) => inv,
            Err(e) => {
                tracing::error!(reason = %e, file = %item.path.display(), "spooled invocation cannot be decoded");
                stats.unreadable += 1;
                continue;
            }
        };
        match function.receive(&invocation).await {
            Ok(_) => {
                if let Err(e) = spool.remove(item).await {
                    tracing::warn!(error = %e, file = %item.path.display(), "archived spooled invocation could not be removed (a later drain finds it archived)");
                }
                stats.archived += 1;
            }
            Err(e) => {
                tracing::warn!(reason = %e, "archive still unavailable: spool drain stops");
                break;
            }
        }
    }
    stats.left = stats.spooled - stats.archived - stats.unreadable;
    if stats.archived > 0 {
        tracing::info!(
            archived = stats.archived,
            "spooled Event Hubs batches archived"
        );
    }
    stats
}
