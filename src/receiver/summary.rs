//! The receiver's summary log lines: one per request for dropped and for quarantined items,
//! never one per item, with outside values escaped.

use std::collections::BTreeMap;

use super::{Dropped, Pending, Receipt, intake};
use crate::logging::escape;

/// Outside values named in a summary line, escaped: `[a, b\n, c]`.
struct Ids<'a>(&'a [String]);

impl std::fmt::Display for Ids<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, id) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}", escape(id))?;
        }
        f.write_str("]")
    }
}

/// One line per request for the items dropped by the clientState check, never one per item.
pub(super) fn log_dropped(dropped: &Dropped, unconfigured: bool) {
    if dropped.count == 0 {
        return;
    }
    tracing::warn!(
        count = dropped.count,
        reason = if unconfigured {
            "NOTIFICATION_CLIENT_STATE is not configured"
        } else {
            "clientState does not match"
        },
        first_subscription_ids = %Ids(&dropped.first_ids),
        "notifications dropped"
    );
}

/// One line per request for the quarantined items: how many, why, and the first few ids.
pub(super) fn log_quarantined(pending: &[Pending]) {
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut first_ids = Vec::new();
    for (code, id) in pending.iter().filter_map(|p| p.quarantined.as_ref()) {
        *codes.entry(code).or_default() += 1;
        if first_ids.len() < intake::NAMED_IN_SUMMARY {
            first_ids.push(id.clone());
        }
    }
    if codes.is_empty() {
        return;
    }
    let reasons: Vec<String> = codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
    tracing::warn!(
        count = codes.values().sum::<usize>(),
        reasons = %reasons.join(","),
        first_subscription_ids = %Ids(&first_ids),
        "notifications quarantined"
    );
}

/// The one line per accepted request (a webhook POST or an Event Hubs invocation): every counter
/// of the receipt; `event_count` is the invocation's number of Event Hubs events.
pub fn log_accepted(endpoint: &str, r: &Receipt, event_count: Option<usize>, elapsed_ms: u64) {
    tracing::info!(
        endpoint = %endpoint,
        event_count,
        items = r.items,
        events = r.events,
        quarantined = r.quarantined,
        lifecycle = r.lifecycle,
        dropped_client_state = r.dropped_client_state,
        repeated = r.repeated,
        rejected = r.rejected,
        unreadable = r.unreadable,
        validation = r.validation,
        duplicates = r.duplicates,
        resent = r.resent,
        elapsed_ms,
        "notifications accepted"
    );
}
