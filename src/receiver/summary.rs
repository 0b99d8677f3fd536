//! The receiver's summary log lines: one per request (a webhook POST or an Event Hubs
//! invocation) for dropped and for quarantined items, never one per item or per event, with
//! outside values escaped.

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

/// One line per request (an Event Hubs invocation: for all its events) for the items dropped by
/// the clientState check, never one per item.
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

/// The quarantined items of one request (or invocation), summed up for one log line: how many,
/// why, and the first few ids.
#[derive(Default)]
pub(super) struct Quarantined {
    codes: BTreeMap<&'static str, usize>,
    first_ids: Vec<String>,
}

impl Quarantined {
    /// Counts the quarantined records among `pending`.
    pub(super) fn add(&mut self, pending: &[Pending]) {
        for (code, id) in pending.iter().filter_map(|p| p.quarantined.as_ref()) {
            *self.codes.entry(code).or_default() += 1;
            if self.first_ids.len() < intake::NAMED_IN_SUMMARY {
                self.first_ids.push(id.clone());
            }
        }
    }

    /// The one line (none when nothing was quarantined).
    pub(super) fn log(&self) {
        if self.codes.is_empty() {
            return;
        }
        let reasons: Vec<String> = self.codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
        tracing::warn!(
            count = self.codes.values().sum::<usize>(),
            reasons = %reasons.join(","),
            first_subscription_ids = %Ids(&self.first_ids),
            "notifications quarantined"
        );
    }
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
