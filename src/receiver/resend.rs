//! Resends cost almost nothing. Graph redelivers whole batches when an answer is late or not
//! 2xx, and keeps retrying for up to 4 hours
//! (<https://learn.microsoft.com/graph/change-notifications-delivery-webhooks>). An item's
//! event object is named by the SHA-256 of its canonical form, which is known before anything is
//! decrypted, so an item whose event already exists skips its private-key operation and its
//! writes: what is left of a resend is parsing, hashing and one existence check per item
//! (answered from memory for recent names, see `archive::recent`).
//!
//! An item that was quarantined (no event yet) is decrypted again: a key may have arrived since.

use crate::archive::records;
use crate::archive::{Kind, ObjectName};
use crate::graph::notification::ChangeNotification;

use super::{Receipt, Receiver};

impl Receiver {
    /// Which rich items already have their event archived. A failed check answers "none" (the
    /// items then take the normal path, whose writes report the storage's state).
    pub(super) async fn already_archived(
        &self,
        rich: &[ChangeNotification],
        canonicals: &[Vec<u8>],
    ) -> Vec<bool> {
        let names: Vec<ObjectName> = rich
            .iter()
            .zip(canonicals)
            .map(|(item, canonical)| records::item_name(Kind::Events, item, canonical))
            .collect();
        match self.archive.exist_all(&names).await {
            Ok(found) if found.len() == names.len() => found,
            Ok(_) => vec![false; names.len()],
            Err(e) => {
                tracing::warn!(error = %e, "cannot check for events archived before; decrypting every item");
                vec![false; names.len()]
            }
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
