//! Draining the spool: each spooled invocation goes through the `eventhub` function's receive
//! path again and is removed once the archive holds all of it. Idempotent (archive names are
//! content hashes); stops at the first archive failure (the archive is still down).

use super::function::{BINDING, EventHubFunction};
use super::payload;

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
