//! What the receiver keeps of what it does not accept, and what it skips: batches whose
//! validationTokens failed, Event Hubs events that are not notification collections, and Graph's
//! Event Hubs reachability message.

use super::{Batch, HubEvent, Pending, Receipt, ReceiveError, Rejection, Staged};
use crate::archive::records::{self, RejectedRecord, UnreadableBody};
use crate::archive::{Kind, ObjectName};
use crate::eventhub::validation::is_validation_item;
use crate::graph::notification::{ChangeNotification, parse_collection};
use crate::logging::escape;

/// The number of items when `body` is only Graph's Event Hubs reachability message (Graph writes
/// it alone, as its own event, when a subscription is created). The text is looked for first, so
/// other bodies are not parsed twice.
pub(super) fn reachability_message(body: &[u8]) -> Option<usize> {
    const MARK: &[u8] = b"Testing client application reachability";
    if !body.windows(MARK.len()).any(|w| w == MARK) {
        return None;
    }
    let collection = parse_collection(body).ok()?;
    collection
        .value
        .iter()
        .all(is_validation_item)
        .then_some(collection.value.len())
}

/// A batch whose validationTokens failed, kept under `rejected/` as evidence only.
pub(super) fn reject(
    received_at: &str,
    batch: Batch,
    rejection: &Rejection,
    receipt: &mut Receipt,
) -> Pending {
    let all: Vec<ChangeNotification> = batch.into_items();
    receipt.rejected = all.len();
    tracing::warn!(items = all.len(), reason = %escape(&rejection.to_string()), code = rejection.code(), "batch rejected: validationTokens");
    let canonicals: Vec<Vec<u8>> = all.iter().map(ChangeNotification::canonical).collect();
    let name = records::batch_name(
        Kind::Rejected,
        all.first().and_then(ChangeNotification::partition_date),
        canonicals.iter().map(Vec::as_slice),
    );
    let record = RejectedRecord {
        received_at: received_at.to_string(),
        reason: rejection.to_string(),
        reason_code: rejection.code().to_string(),
        notifications: all,
        unreadable: None,
    };
    Pending::other(name, records::to_json(&record))
}

/// An Event Hubs event that is not a notification collection (or holds too many items): its
/// digest and size under `rejected/` (its text could hold a clientState, never stored).
pub(super) fn unreadable_event(
    received_at: &str,
    event: &HubEvent,
    reason: &ReceiveError,
) -> Staged {
    let sha256 = records::sha256_hex(&event.body);
    tracing::warn!(reason = %escape(&reason.to_string()), bytes = event.body.len(), %sha256, "Event Hubs event is not a notification collection");
    let record = RejectedRecord {
        received_at: received_at.to_string(),
        reason: format!("not a notification collection: {reason}"),
        reason_code: "notNotificationCollection".into(),
        notifications: Vec::new(),
        unreadable: Some(UnreadableBody {
            sha256: sha256.clone(),
            bytes: event.body.len(),
            event_hub: Some(event.metadata.clone()),
        }),
    };
    let name = ObjectName::new(Kind::Rejected, None, "unreadable", &sha256);
    Staged {
        receipt: Receipt {
            unreadable: 1,
            ..Receipt::default()
        },
        first: vec![Pending::other(name, records::to_json(&record))],
        ..Staged::default()
    }
}
