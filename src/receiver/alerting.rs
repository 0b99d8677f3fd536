//! The alert outbox's objects, added to the write of the events that raise them (before the 202).

use super::{Outcome, Pending};
use crate::alerts::outbox::Outbox;
use crate::graph::events::TeamsEvent;

impl Pending {
    /// An object with no quarantine note and no alert.
    pub(super) fn new(
        name: crate::archive::ObjectName,
        body: bytes::Bytes,
        outcome: Outcome,
    ) -> Self {
        Pending {
            name,
            body,
            outcome,
            quarantined: None,
            emergency: None,
        }
    }
}

/// `pending` plus the alert objects of its alerting events (the same write, before the 202).
pub(super) fn attach(outbox: Option<&Outbox>, mut pending: Vec<Pending>) -> Vec<Pending> {
    if let Some(outbox) = outbox {
        let alerts = entries(outbox, &pending);
        pending.extend(alerts);
    }
    pending
}

/// Notes an emergency call on its event's entry: it may raise an alert.
pub(super) fn mark(
    mut entry: Pending,
    event: TeamsEvent,
    received_at: &str,
    summary: String,
) -> Pending {
    if let TeamsEvent::Emergency(emergency) = event {
        entry.emergency = Some(Box::new((received_at.to_string(), summary, emergency)));
    }
    entry
}

/// The outbox objects of the alerting events among `pending`.
fn entries(outbox: &Outbox, pending: &[Pending]) -> Vec<Pending> {
    let mut out = Vec::new();
    for p in pending {
        let Some((received_at, summary, event)) = p.emergency.as_deref() else {
            continue;
        };
        let Some(entries) = outbox.entries(received_at, &p.name, event, summary) else {
            continue;
        };
        let (name, body) = entries.record;
        out.push(Pending {
            name,
            body,
            outcome: Outcome::Alert,
            quarantined: None,
            emergency: None,
        });
        if let Some((name, body)) = entries.index {
            out.push(Pending {
                name,
                body,
                outcome: Outcome::Other,
                quarantined: None,
                emergency: None,
            });
        }
    }
    out
}
