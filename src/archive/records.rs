//! The JSON documents stored in the archive, one type per [`Kind`](super::Kind).
//!
//! Every record names its item by the SHA-256 of the item's canonical form (see
//! [`ChangeNotification`]), so the same notification resent by Graph is the same object and a
//! replay finds the event a quarantined item became.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Kind, ObjectName};
use crate::graph::notification::ChangeNotification;

/// A verified event: a basic notification, or a rich one with its decrypted payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventRecord {
    pub received_at: String,
    pub subscription_id: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub change_type: Option<crate::graph::vocabulary::ChangeType>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub resource_data: Option<Value>,
    /// `callevent`, `emergencyCallEvent`, `chatMessage`, ... or `unknown`.
    pub event_kind: String,
    /// `true` when the payload was decrypted (a rich notification); `false` for basic ones.
    pub rich: bool,
    /// The `encryptionCertificateId` of the key that decrypted it.
    #[serde(default)]
    pub certificate_id: Option<String>,
    /// One line for people (see `graph::events`).
    pub summary: String,
    /// The decoded payload exactly as Graph sent it (rich notifications only).
    #[serde(default)]
    pub payload: Option<Value>,
}

/// An item that passed validation but could not be decrypted (yet): replayable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QuarantineRecord {
    pub received_at: String,
    /// Human-readable reason (e.g. `no decryption key configured`).
    pub reason: String,
    /// Stable code of the reason (`noKeys`, `unknownKey`, `signatureMismatch`, ...).
    pub reason_code: String,
    /// The item, canonical (with its `encryptedContent`, without `clientState`).
    pub notification: ChangeNotification,
}

/// A rich batch as received (items canonical), persisted before decryption.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRecord {
    pub received_at: String,
    /// The validationTokens were checked before this batch was stored (`false`: the batch came
    /// through Event Hubs without tokens, where the hub's Data Sender role proves the sender).
    pub tokens_verified: bool,
    pub notifications: Vec<ChangeNotification>,
    /// For Event Hubs delivery: the event's metadata (sequence number, partition key, enqueued
    /// time, properties, partition and retry context) as the Functions host gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_hub: Option<Value>,
}

/// A batch whose validationTokens failed: evidence, never an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RejectedRecord {
    pub received_at: String,
    pub reason: String,
    /// Stable code of the reason (`badSignature`, `wrongAudience`, `tenantNotCovered`, ...);
    /// empty in records written before codes existed.
    #[serde(default)]
    pub reason_code: String,
    pub notifications: Vec<ChangeNotification>,
    /// An Event Hubs event that is not a notification collection: its digest and size only (the
    /// text could hold a clientState, which is never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<UnreadableBody>,
}

/// What is kept of an unreadable event body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UnreadableBody {
    pub sha256: String,
    pub bytes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_hub: Option<Value>,
}

/// A `resync/` object: the record of a `missed` lifecycle notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResyncRecord {
    pub subscription_id: String,
    /// The subscribed resource to read again (absent when neither the notification nor Graph
    /// could tell).
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The window whose notifications may be missing.
    pub window: ResyncWindow,
    /// The lifecycle notification, canonical (no clientState).
    pub notification: ChangeNotification,
}

/// Graph does not say which notifications were missed: the window opens at the last event
/// archived for the subscription (`from` is `null`: find it in `events/`) and closes when the
/// `missed` notification was received (`until`). Resync everything changed in between.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResyncWindow {
    #[serde(default)]
    pub from: Option<String>,
    pub until: String,
}

/// A lifecycle notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LifecycleRecord {
    pub received_at: String,
    pub lifecycle_event: String,
    pub notification: ChangeNotification,
}

/// A Teams bot event or a Bot API answer about one (the messaging endpoint's records), under
/// `events/{yyyy}/{mm}/{dd}/bot/{sha256}.json`: the date is the activity's `timestamp`, the hash
/// is that of the canonical bytes of `activity` (so a redelivery is the same object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BotEventRecord {
    pub received_at: String,
    /// Always `bot`.
    pub source: String,
    /// `meetingStart`, `meetingEnd`, `meetingParticipantJoin`, `meetingParticipantLeave`, or the
    /// enrichment answers `meetingDetails` and `participantDetails`.
    pub event_kind: String,
    /// `channelData.meeting.id` (else the event's `value.Id`; empty when neither is given).
    pub meeting_id: String,
    /// `value.JoinUrl` of start/end, or the meeting details' `details.joinUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The activity's `timestamp` (for enrichment answers: that of the event that caused them).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// One line for people.
    pub summary: String,
    /// The activity as received; for `meetingDetails`/`participantDetails` the Bot API's answer.
    pub activity: Value,
}

/// The `source` of every [`BotEventRecord`].
pub(crate) const BOT_SOURCE: &str = "bot";

/// A messaging-endpoint request whose token failed: evidence, never an event. Under
/// `rejected/{yyyy}/{mm}/{dd}/bot/{sha256}.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RejectedBotRecord {
    pub received_at: String,
    pub reason: String,
    /// Stable code of the reason (`noHeader`, `wrongIssuer`, `serviceUrlMismatch`, ...).
    pub reason_code: String,
    /// The activity, when it was JSON and small enough to keep whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Value>,
    /// Otherwise its first bytes (lossy UTF-8), and its full size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_body: Option<String>,
    pub body_bytes: usize,
}

/// The name of a bot record under `kind`: the `bot` partition of `date`, the hash of `canonical`.
pub(crate) fn bot_name(kind: Kind, date: Option<(i32, u8, u8)>, canonical: &[u8]) -> ObjectName {
    ObjectName::new(kind, date, BOT_SOURCE, &sha256_hex(canonical))
}

/// A meeting seen starting or ending by the Teams bot, under
/// `meetings/{yyyy}/{mm}/{dd}/{meeting}/{sha256}.json` (date of the event, `meeting` the hash of
/// its join URL or id, hash of the activity): the renewer's desired state for meeting call-event
/// subscriptions. Append-only, like the rest of the archive: a meeting's state is its latest
/// start and end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MeetingStateRecord {
    pub recorded_at: String,
    /// `start` or `end`.
    pub action: String,
    /// When it happened: the activity's `timestamp` (RFC 3339).
    pub at: String,
    pub meeting_id: String,
    /// The raw join URL (`value.JoinUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
}

/// SHA-256, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(bytes))
}

/// The name of an item's object under `kind`: date and subscription partitions, content hash.
pub(crate) fn item_name(kind: Kind, item: &ChangeNotification, canonical: &[u8]) -> ObjectName {
    ObjectName::new(
        kind,
        item.partition_date(),
        &item.subscription_id,
        &sha256_hex(canonical),
    )
}

/// The name of a batch's object under `kind`: the hash of its items' canonical forms (not of the
/// validationTokens, which Graph may renew between resends of the same batch).
pub(crate) fn batch_name<'a>(
    kind: Kind,
    date: Option<(i32, u8, u8)>,
    canonicals: impl IntoIterator<Item = &'a [u8]>,
) -> ObjectName {
    ObjectName::new(kind, date, "batch", &batch_digest(canonicals))
}

/// The digest in a batch's names (hex SHA-256 of its canonical items, one per line): the same for
/// every kind, so a batch's `raw/` record and its `complete/` marker are hashed once.
pub(crate) fn batch_digest<'a>(canonicals: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = openssl::sha::Sha256::new();
    for canonical in canonicals {
        hasher.update(canonical);
        hasher.update(b"\n");
    }
    hex::encode(hasher.finish())
}

/// A [`RawRecord`]'s JSON, spliced from the items' canonical bytes (already computed for their
/// names) instead of serializing every item again: the raw batch is on the hot path.
/// `event_hub` is the Event Hubs metadata of the event the batch came in, if it did.
pub(crate) fn raw_record_json(
    received_at: &str,
    tokens_verified: bool,
    event_hub: Option<&Value>,
    canonicals: &[Vec<u8>],
) -> bytes::Bytes {
    let size = canonicals.iter().map(|c| c.len() + 1).sum::<usize>() + 96;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"receivedAt\":");
    out.extend(serde_json::to_vec(received_at).expect("strings serialize"));
    out.extend_from_slice(if tokens_verified {
        b",\"tokensVerified\":true,\"notifications\":["
    } else {
        b",\"tokensVerified\":false,\"notifications\":["
    });
    for (i, c) in canonicals.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(c);
    }
    out.push(b']');
    if let Some(meta) = event_hub {
        out.extend_from_slice(b",\"eventHub\":");
        out.extend(serde_json::to_vec(meta).expect("JSON values serialize"));
    }
    out.push(b'}');
    bytes::Bytes::from(out)
}

/// Serializes a record, compact (records are plain data; this cannot fail).
pub(crate) fn to_json<T: Serialize>(record: &T) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(record).expect("records always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::notification::parse_collection;

    #[test]
    fn the_spliced_raw_record_reads_back_as_a_raw_record() {
        let c = parse_collection(br#"{"value":[{"subscriptionId":"a","encryptedContent":{"data":"x"}},{"subscriptionId":"b","x":[1]}]}"#).unwrap();
        let canonicals: Vec<Vec<u8>> = c.value.iter().map(ChangeNotification::canonical).collect();
        let raw: RawRecord = serde_json::from_slice(&raw_record_json(
            "2026-11-23T00:00:00Z",
            true,
            None,
            &canonicals,
        ))
        .unwrap();
        assert!(raw.tokens_verified);
        assert!(raw.event_hub.is_none());
        let meta = serde_json::json!({"sequenceNumber": 7});
        let raw: RawRecord = serde_json::from_slice(&raw_record_json(
            "2026-11-23T00:00:00Z",
            false,
            Some(&meta),
            &canonicals,
        ))
        .unwrap();
        assert!(!raw.tokens_verified);
        assert_eq!(raw.event_hub, Some(meta));
        assert_eq!(raw.notifications.len(), 2);
        assert_eq!(raw.notifications[1].canonical(), canonicals[1]);
    }
}
