//! Resends cost almost nothing. Graph redelivers whole batches when an answer is late or not
//! 2xx, and keeps retrying for up to 4 hours
//! (<https://learn.microsoft.com/graph/change-notifications-delivery-webhooks>). An item's
//! event object is named by the SHA-256 of its canonical form, which is known before anything is
//! decrypted, so an item whose event already exists skips its private-key operation and its
//! writes: what is left of a resend is parsing, hashing and existence checks (answered from
//! memory for recent names, see `archive::recent`).
//!
//! Once every item of a batch has its event, a `complete/` marker named like the batch's `raw/`
//! record is written (after the events are durable, never in the same write: its presence must
//! mean they are there). A resend of the whole batch then costs one existence check, not one
//! per item: after a restart, on Blob Storage, that is one `HEAD` instead of a hundred. Without
//! the marker (a first delivery, a batch Graph put together differently, a batch with
//! quarantined items, a crash before the marker) each item is checked by name as before. The
//! marker is a hint: failing to write it fails nothing.
//!
//! An item that was quarantined (no event yet) is decrypted again: a key may have arrived since.

use std::collections::HashSet;

use crate::archive::records;
use crate::archive::{Kind, ObjectName};
use crate::graph::notification::ChangeNotification;

use super::entries::{Outcome, Pending};
use super::{Receipt, Receiver};

/// A body's `complete/` marker, and the event names it vouches for (its items not archived yet).
pub(super) struct Marker {
    pub(super) name: ObjectName,
    pub(super) events: Vec<ObjectName>,
}

/// A rich body's names: the batch's digest (one for its `raw/` record and its `complete/`
/// marker) and each item's event name.
pub(super) struct BatchNames {
    date: Option<(i32, u8, u8)>,
    digest: String,
    events: Vec<ObjectName>,
}

impl BatchNames {
    pub(super) fn of(rich: &[ChangeNotification], canonicals: &[Vec<u8>]) -> Self {
        BatchNames {
            date: rich.first().and_then(ChangeNotification::partition_date),
            digest: records::batch_digest(canonicals.iter().map(Vec::as_slice)),
            events: rich
                .iter()
                .zip(canonicals)
                .map(|(item, canonical)| records::item_name(Kind::Events, item, canonical))
                .collect(),
        }
    }

    /// The batch's object under `kind` (`raw/`, `complete/`).
    pub(super) fn of_kind(&self, kind: Kind) -> ObjectName {
        ObjectName::new(kind, self.date, "batch", &self.digest)
    }

    /// The marker to write once the items not `archived` yet have their events (none when
    /// every item was archived already).
    pub(super) fn marker(self, archived: &[bool]) -> Option<Marker> {
        let name = self.of_kind(Kind::Complete);
        let events: Vec<ObjectName> = self
            .events
            .into_iter()
            .zip(archived)
            .filter(|(_, archived)| !**archived)
            .map(|(name, _)| name)
            .collect();
        (!events.is_empty()).then_some(Marker { name, events })
    }
}

/// The names of the event records among `pending` (the decrypted items).
pub(super) fn event_names(pending: &[Pending]) -> HashSet<ObjectName> {
    pending
        .iter()
        .filter(|p| p.outcome == Outcome::Event)
        .map(|p| p.name.clone())
        .collect()
}

impl Receiver {
    /// Which rich items already have their event archived: all of them when the batch's
    /// marker exists, else each by name. A failed check answers "none" (the items then take
    /// the normal path, whose writes report the storage's state).
    pub(super) async fn already_archived(&self, batch: &BatchNames) -> Vec<bool> {
        let marker = batch.of_kind(Kind::Complete);
        if let Ok(found) = self.archive.exist_all(std::slice::from_ref(&marker)).await
            && found == [true]
        {
            return vec![true; batch.events.len()];
        }
        let names = &batch.events;
        match self.archive.exist_all(names).await {
            Ok(found) if found.len() == names.len() => found,
            Ok(_) => vec![false; names.len()],
            Err(e) => {
                tracing::warn!(error = %e, "cannot check for events archived before; decrypting every item");
                vec![false; names.len()]
            }
        }
    }

    /// Writes the markers of the bodies whose every new item became an event in `written`
    /// (the event names of a write that succeeded). A failure is logged, never an error.
    pub(super) async fn mark_complete(
        &self,
        markers: Vec<Marker>,
        written: &HashSet<ObjectName>,
        received_at: &str,
    ) {
        let complete: Vec<(ObjectName, bytes::Bytes)> = markers
            .into_iter()
            .filter(|m| m.events.iter().all(|e| written.contains(e)))
            .map(|m| {
                let body = serde_json::json!({"receivedAt": received_at, "events": m.events.len()});
                (m.name, records::to_json(&body))
            })
            .collect();
        if complete.is_empty() {
            return;
        }
        if let Err(e) = self.archive.put_all_if_absent(complete).await {
            tracing::warn!(error = %e, "cannot write a batch's completion marker; a resend will be checked item by item");
        }
    }
}

/// Counts the archived items as events that already existed, and hands on the others.
pub(super) fn keep_new(
    rich: Vec<ChangeNotification>,
    canonicals: Vec<Vec<u8>>,
    archived: &[bool],
    receipt: &mut Receipt,
) -> Vec<(ChangeNotification, Vec<u8>)> {
    let resent = archived.iter().filter(|a| **a).count();
    receipt.events += resent;
    receipt.duplicates += resent;
    receipt.resent = resent;
    rich.into_iter()
        .zip(canonicals)
        .zip(archived)
        .filter(|(_, archived)| !**archived)
        .map(|(pair, _)| pair)
        .collect()
}
