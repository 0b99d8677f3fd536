//! The archive records of one item or batch, as the receiver writes them: raw batches, events
//! (basic and decrypted), lifecycle notifications and quarantine.

use std::sync::Arc;

use bytes::Bytes;

use crate::archive::records::{self, EventRecord, LifecycleRecord, QuarantineRecord};
use crate::archive::{Kind, ObjectName};
use crate::graph::crypto::{self, DecryptError};
use crate::graph::events::{EmergencyCallEvent, EventKind, TeamsEvent};
use crate::graph::notification::ChangeNotification;
use crate::keys::DecryptionKey;

/// An item on its way to the archive.
pub(crate) struct Pending {
    pub(crate) name: ObjectName,
    pub(crate) body: Bytes,
    pub(super) outcome: Outcome,
    /// For a quarantined item: the reason code and the subscription id (for the summary line).
    pub(crate) quarantined: Option<(&'static str, String)>,
    /// An emergency call event (with its arrival time and summary): it may raise an alert.
    pub(super) emergency: Option<Box<(String, String, EmergencyCallEvent)>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Event,
    Quarantine,
    Lifecycle,
    Alert,
    Other,
}

impl Pending {
    /// A record that is neither an event, a quarantined item nor a lifecycle notification.
    pub(super) fn other(name: ObjectName, body: Bytes) -> Self {
        Pending::new(name, body, Outcome::Other)
    }
}

/// The raw rich batch, as received (canonical items), persisted before decryption.
/// `tokens_verified` is false for an Event Hubs event without tokens; `event_hub` is its metadata.
/// `name` is the batch's `raw/` name ([`records::batch_digest`]).
pub(super) fn raw_entry(
    name: ObjectName,
    received_at: &str,
    tokens_verified: bool,
    event_hub: Option<&serde_json::Value>,
    canonicals: &[Vec<u8>],
) -> Pending {
    Pending {
        name,
        body: records::raw_record_json(received_at, tokens_verified, event_hub, canonicals),
        outcome: Outcome::Other,
        quarantined: None,
        emergency: None,
    }
}

pub(super) fn lifecycle_entry(received_at: &str, item: &ChangeNotification) -> Pending {
    let canonical = item.canonical();
    let record = LifecycleRecord {
        received_at: received_at.to_string(),
        lifecycle_event: item
            .lifecycle_event
            .as_ref()
            .map_or_else(|| "unknown".into(), |e| e.as_str().to_string()),
        notification: item.clone(),
    };
    let name = records::item_name(Kind::Lifecycle, item, &canonical);
    Pending::new(name, records::to_json(&record), Outcome::Lifecycle)
}

pub(super) fn basic_event_entry(received_at: &str, item: &ChangeNotification) -> Pending {
    let kind = EventKind::of(None, item.resource_data.as_ref());
    let summary = format!(
        "{} {} {}",
        kind.name(),
        item.change_type.as_ref().map_or("changed", |c| c.as_str()),
        item.resource.as_deref().unwrap_or("")
    );
    event_entry(received_at, item, &item.canonical(), kind, summary, None)
}

/// Decrypts one rich item into an event, or quarantines it with the reason.
pub(crate) fn rich_entry(
    received_at: &str,
    item: ChangeNotification,
    canonical: Vec<u8>,
    key: Result<Arc<DecryptionKey>, DecryptError>,
) -> Pending {
    let content = item
        .encrypted_content
        .as_ref()
        .expect("rich items have content");
    match key.and_then(|k| crypto::decrypt(content, &k.private_key).map(|v| (k, v))) {
        Ok((key, payload)) => {
            let kind = EventKind::of(Some(&payload), item.resource_data.as_ref());
            let event = TeamsEvent::read(kind, &payload);
            let summary = event.summary();
            let entry = event_entry(
                received_at,
                &item,
                &canonical,
                kind,
                summary.clone(),
                Some((key.id.clone(), payload)),
            );
            super::alerting::mark(entry, event, received_at, summary)
        }
        Err(e) => quarantine_entry(received_at, item, &canonical, e.to_string(), e.code()),
    }
}

/// An event record; `decrypted` is `(certificate id, payload)` for rich notifications.
fn event_entry(
    received_at: &str,
    item: &ChangeNotification,
    canonical: &[u8],
    kind: EventKind,
    summary: String,
    decrypted: Option<(String, serde_json::Value)>,
) -> Pending {
    let (certificate_id, payload) = decrypted.unzip();
    let record = EventRecord {
        received_at: received_at.to_string(),
        subscription_id: item.subscription_id.clone(),
        tenant_id: item.tenant().map(str::to_string),
        change_type: item.change_type.clone(),
        resource: item.resource.clone(),
        resource_data: item.resource_data.clone(),
        event_kind: kind.name().to_string(),
        rich: payload.is_some(),
        certificate_id,
        summary,
        payload,
    };
    let name = records::item_name(Kind::Events, item, canonical);
    Pending::new(name, records::to_json(&record), Outcome::Event)
}

/// A quarantine record: the item as received, with the reason and its stable code.
pub(crate) fn quarantine_entry(
    received_at: &str,
    item: ChangeNotification,
    canonical: &[u8],
    reason: String,
    code: &'static str,
) -> Pending {
    let name = records::item_name(Kind::Quarantine, &item, canonical);
    let quarantined = Some((code, item.subscription_id.clone()));
    let record = QuarantineRecord {
        received_at: received_at.to_string(),
        reason,
        reason_code: code.to_string(),
        notification: item,
    };
    Pending {
        name,
        body: records::to_json(&record),
        outcome: Outcome::Quarantine,
        quarantined,
        emergency: None,
    }
}
