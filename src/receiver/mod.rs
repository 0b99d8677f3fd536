//! The notification path, top to bottom: first pass (count, clientState) -> validationTokens ->
//! persist the raw batch -> decrypt -> archive. The HTTP layer (`server`) only reads the body and maps the
//! outcome to a status; every step here is a call into its module.
//!
//! Invariants:
//! - nothing is answered 202 before it is persisted (an archive failure is a 503 so Graph retries);
//! - nothing from a batch whose validationTokens fail is archived as an event;
//! - clientState and token values are never logged or stored.

mod alerting;
mod intake;
mod summary;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use secrecy::SecretString;
use time::format_description::well_known::Rfc3339;

use crate::archive::records::{
    self, EventRecord, LifecycleRecord, QuarantineRecord, RejectedRecord,
};
use crate::archive::{Archive, ArchiveError, Kind, ObjectName, Written};
use crate::graph::crypto::{self, DecryptError};
use crate::graph::events::{EmergencyCallEvent, EventKind, TeamsEvent};
use crate::graph::notification::{ChangeNotification, ParseError};
use crate::graph::screening::ScreenError;
use crate::graph::tokens::{TokenError, TokenValidator};
use crate::keys::{CertificateStore, DecryptionKey};
use crate::logging::escape;

pub use intake::{ClientStateCheck, Dropped, IntakeError};

mod resend;
use summary::{log_dropped, log_quarantined};

/// Which Graph URL a body arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `notificationUrl`: change notifications.
    Notifications,
    /// `lifecycleNotificationUrl`: lifecycle notifications.
    Lifecycle,
}

/// What happened to a request's items (for the log line and the tests).
#[derive(Debug, Default)]
pub struct Receipt {
    /// Items in the body.
    pub items: usize,
    /// Items dropped for a wrong or missing clientState.
    pub dropped_client_state: usize,
    /// Items identical to an earlier one of the same body (handled once).
    pub repeated: usize,
    /// Items whose batch failed validationTokens (stored under `rejected/`, never as events).
    pub rejected: usize,
    /// Items archived as events (new or already there).
    pub events: usize,
    /// Items quarantined (not decryptable yet).
    pub quarantined: usize,
    /// Lifecycle items archived.
    pub lifecycle: usize,
    /// Objects that already existed (Graph resent something we had).
    pub duplicates: usize,
    /// Rich items whose event was archived before: not decrypted again (also in `events` and
    /// `duplicates`).
    pub resent: usize,
    /// Why the batch was rejected, if it was.
    pub rejection: Option<Rejection>,
    /// The lifecycle notifications, for the subscription reactions.
    pub lifecycle_items: Vec<ChangeNotification>,
    /// Alert records this request created (sent right after the answer; a resend creates none).
    pub alerts: Vec<ObjectName>,
}

/// Why a request could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// 400: the body is not a notification collection.
    #[error("{0}")]
    BadRequest(#[from] ParseError),
    /// 413: more items than `MAX_ITEMS_PER_REQUEST`.
    #[error("{0}")]
    TooMany(ScreenError),
    /// 503: something could not be persisted; Graph will retry.
    #[error("{0}")]
    Unavailable(#[from] ArchiveError),
}

/// Why a rich batch is not accepted as genuine. Its `code()` goes into `rejected/` records.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error(
        "validationTokens cannot be checked: GRAPH_CLIENT_ID and GRAPH_TENANT_ID are not configured"
    )]
    NoValidator,
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error("no validation token covers the tenant of subscription {subscription_id}")]
    TenantNotCovered { subscription_id: String },
}

impl Rejection {
    /// A stable code (the text may change, the code does not).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NoValidator => "validatorNotConfigured",
            Rejection::Tokens(e) => e.code(),
            Rejection::TenantNotCovered { .. } => "tenantNotCovered",
        }
    }
}

/// A request's accepted items, by what they need next.
struct Batch {
    lifecycle: Vec<ChangeNotification>,
    basic: Vec<ChangeNotification>,
    rich: Vec<ChangeNotification>,
}

impl Batch {
    fn sort(endpoint: Endpoint, accepted: Vec<ChangeNotification>) -> Self {
        let (lifecycle, changes): (Vec<_>, Vec<_>) = accepted
            .into_iter()
            .partition(|i| endpoint == Endpoint::Lifecycle || i.lifecycle_event.is_some());
        let (rich, basic): (Vec<_>, Vec<_>) = changes.into_iter().partition(|i| i.is_rich());
        Batch {
            lifecycle,
            basic,
            rich,
        }
    }

    /// The records of the items that need no key: lifecycle notifications and basic events
    /// (CPU work: called on the blocking pool).
    fn verified_entries(&self, received_at: &str) -> Vec<Pending> {
        let mut pending =
            Vec::with_capacity(self.lifecycle.len() + self.basic.len() + self.rich.len() + 1);
        pending.extend(
            self.lifecycle
                .iter()
                .map(|i| lifecycle_entry(received_at, i)),
        );
        pending.extend(self.basic.iter().map(|i| basic_event_entry(received_at, i)));
        pending
    }

    fn into_items(self) -> Vec<ChangeNotification> {
        self.lifecycle
            .into_iter()
            .chain(self.basic)
            .chain(self.rich)
            .collect()
    }
}

/// Everything the notification path needs, shared by all requests.
pub struct Receiver {
    /// `NOTIFICATION_CLIENT_STATE`; `None` drops every item (fail closed).
    pub client_state: Option<SecretString>,
    pub archive: Arc<dyn Archive>,
    pub keys: Arc<CertificateStore>,
    /// `None` when `GRAPH_CLIENT_ID`/`GRAPH_TENANT_ID` are unset: rich batches cannot be proved
    /// genuine, so they are rejected.
    pub tokens: Option<Arc<TokenValidator>>,
    /// `MAX_ITEMS_PER_REQUEST`: a body with more items is refused (413) before any is built.
    pub max_items_per_request: usize,
    /// The alert outbox: which events alert, to which routes (`None`: no route configured).
    pub alerts: Option<Arc<crate::alerts::outbox::Outbox>>,
}

/// `(encryptionCertificateId, encryptionCertificateThumbprint)` as Graph sent them.
type KeyRef = (Option<String>, Option<String>);

/// A rich item, its canonical bytes, and the key that should open it.
type Keyed = (
    ChangeNotification,
    Vec<u8>,
    Result<Arc<DecryptionKey>, DecryptError>,
);

/// An item on its way to the archive.
pub(crate) struct Pending {
    pub(crate) name: ObjectName,
    pub(crate) body: Bytes,
    outcome: Outcome,
    /// For a quarantined item: the reason code and the subscription id (for the summary line).
    pub(crate) quarantined: Option<(&'static str, String)>,
    /// An emergency call event (with its arrival time and summary): it may raise an alert.
    emergency: Option<Box<(String, String, EmergencyCallEvent)>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Event,
    Quarantine,
    Lifecycle,
    Alert,
    Other,
}

impl Receiver {
    /// Runs a body through the notification path, top to bottom. The CPU-heavy steps (the
    /// first pass over the body, building items and records, decryption) run on the blocking
    /// pool, so the async workers stay free for readiness polls and handshakes.
    pub async fn receive(&self, endpoint: Endpoint, body: Bytes) -> Result<Receipt, ReceiveError> {
        let received_at = now_rfc3339();
        let intake = self.intake(body).await?;
        let mut receipt = Receipt {
            items: intake.items,
            dropped_client_state: intake.dropped.count,
            repeated: intake.repeated,
            ..Receipt::default()
        };
        log_dropped(&intake.dropped, self.client_state.is_none());
        if intake.accepted.is_empty() {
            return Ok(receipt);
        }
        let batch = Batch::sort(endpoint, intake.accepted);

        // validationTokens: once per request, only when the batch carries resource data.
        if !batch.rich.is_empty()
            && let Err(rejection) = self
                .check_tokens(&intake.validation_tokens, &batch.rich)
                .await
        {
            self.reject(&received_at, batch, rejection, &mut receipt)
                .await?;
            return Ok(receipt);
        }

        let at = received_at.clone();
        let (mut pending, batch) = tokio::task::spawn_blocking(move || {
            let pending = batch.verified_entries(&at);
            (pending, batch)
        })
        .await
        .expect("building records never panics");
        receipt.lifecycle_items = batch.lifecycle;
        if batch.rich.is_empty() {
            self.write_all(pending, &mut receipt).await?;
            return Ok(receipt);
        }

        // The raw batch first: once it is stored, nothing in it can be lost, whatever happens next.
        // Each item's canonical form is computed once, for the raw batch and the item's name.
        let rich = batch.rich;
        let canonicals: Vec<Vec<u8>> = rich.iter().map(ChangeNotification::canonical).collect();
        // A resend: items whose event exists skip their decryption and writes (see `resend`).
        let archived = self.already_archived(&rich, &canonicals).await;
        if archived.contains(&false) {
            pending.push(raw_entry(&received_at, &rich, &canonicals));
        }
        let fresh = resend::keep_new(rich, canonicals, &archived, &mut receipt);
        // Decryption (CPU) overlaps with these writes (I/O).
        let (written, decrypted) = tokio::join!(
            self.write_all(pending, &mut receipt),
            self.decrypt_batch(&received_at, fresh)
        );
        written?;
        log_quarantined(&decrypted);
        self.write_all(decrypted, &mut receipt).await?;
        Ok(receipt)
    }

    /// The first pass (see [`intake`]), on the blocking pool.
    async fn intake(&self, body: Bytes) -> Result<intake::Intake, ReceiveError> {
        let check = ClientStateCheck::new(self.client_state.as_ref());
        let max_items = self.max_items_per_request;
        tokio::task::spawn_blocking(move || intake::intake(&body, max_items, &check))
            .await
            .expect("the first pass never panics")
            .map_err(|e| match e {
                IntakeError::TooMany(e) => ReceiveError::TooMany(e),
                IntakeError::BadRequest(e) => ReceiveError::BadRequest(e),
            })
    }

    /// Keeps a batch whose validationTokens failed under `rejected/`, as evidence only.
    async fn reject(
        &self,
        received_at: &str,
        batch: Batch,
        rejection: Rejection,
        receipt: &mut Receipt,
    ) -> Result<(), ArchiveError> {
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
        };
        self.archive
            .put_if_absent(&name, records::to_json(&record))
            .await?;
        receipt.rejection = Some(rejection);
        Ok(())
    }

    /// Every token valid, and every rich item's tenant covered by one.
    async fn check_tokens(
        &self,
        tokens: &[String],
        rich: &[ChangeNotification],
    ) -> Result<(), Rejection> {
        let Some(validator) = &self.tokens else {
            return Err(Rejection::NoValidator);
        };
        let validated = validator.validate(tokens).await?;
        match rich
            .iter()
            .find(|i| !i.tenant().is_some_and(|t| validated.covers(t)))
        {
            Some(item) => Err(Rejection::TenantNotCovered {
                subscription_id: item.subscription_id.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Resolves keys (async: may refresh from Key Vault), then decrypts on the blocking pool,
    /// spread over the cores.
    async fn decrypt_batch(
        &self,
        received_at: &str,
        items: Vec<(ChangeNotification, Vec<u8>)>,
    ) -> Vec<Pending> {
        let mut keys: HashMap<KeyRef, Option<Arc<DecryptionKey>>> = HashMap::new();
        for (item, _) in &items {
            let content = item
                .encrypted_content
                .as_ref()
                .expect("rich items have content");
            let wanted = (
                content.encryption_certificate_id.clone(),
                content.encryption_certificate_thumbprint.clone(),
            );
            if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(wanted) {
                let (id, thumbprint) = slot.key();
                let key = self
                    .keys
                    .resolve(id.as_deref(), thumbprint.as_deref())
                    .await;
                slot.insert(key);
            }
        }
        let no_keys = self.keys.is_empty();
        let keyed: Vec<Keyed> = items
            .into_iter()
            .map(|(item, canonical)| {
                let content = item
                    .encrypted_content
                    .as_ref()
                    .expect("rich items have content");
                let id = content.encryption_certificate_id.clone();
                let thumbprint = content.encryption_certificate_thumbprint.clone();
                let key = keys
                    .get(&(id.clone(), thumbprint.clone()))
                    .cloned()
                    .flatten()
                    .ok_or(if no_keys {
                        DecryptError::NoKeys
                    } else {
                        DecryptError::UnknownKey { id, thumbprint }
                    });
                (item, canonical, key)
            })
            .collect();

        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = keyed.len().div_ceil(workers).max(1);
        let mut tasks = Vec::new();
        let mut rest = keyed;
        while !rest.is_empty() {
            let tail = rest.split_off(chunk.min(rest.len()));
            let part = std::mem::replace(&mut rest, tail);
            let received_at = received_at.to_string();
            tasks.push(tokio::task::spawn_blocking(move || {
                part.into_iter()
                    .map(|(item, canonical, key)| rich_entry(&received_at, item, canonical, key))
                    .collect::<Vec<_>>()
            }));
        }
        let mut out = Vec::new();
        for task in tasks {
            out.extend(task.await.expect("decryption never panics"));
        }
        out
    }

    async fn write_all(
        &self,
        pending: Vec<Pending>,
        receipt: &mut Receipt,
    ) -> Result<(), ArchiveError> {
        if pending.is_empty() {
            return Ok(());
        }
        let pending = alerting::attach(self.alerts.as_deref(), pending);
        let names: Vec<ObjectName> = pending.iter().map(|p| p.name.clone()).collect();
        let outcomes: Vec<Outcome> = pending.iter().map(|p| p.outcome).collect();
        let written = self
            .archive
            .put_all_if_absent(pending.into_iter().map(|p| (p.name, p.body)).collect())
            .await?;
        for ((outcome, written), name) in outcomes.into_iter().zip(written).zip(names) {
            match written {
                Written::Created => {}
                Written::AlreadyExisted => receipt.duplicates += 1,
            }
            match outcome {
                Outcome::Alert if written == Written::Created => receipt.alerts.push(name),
                Outcome::Alert => {}
                Outcome::Event => receipt.events += 1,
                Outcome::Quarantine => receipt.quarantined += 1,
                Outcome::Lifecycle => receipt.lifecycle += 1,
                Outcome::Other => {}
            }
        }
        Ok(())
    }
}

/// The raw rich batch, as received (canonical items), persisted before decryption.
fn raw_entry(received_at: &str, rich: &[ChangeNotification], canonicals: &[Vec<u8>]) -> Pending {
    Pending {
        name: records::batch_name(
            Kind::Raw,
            rich.first().and_then(ChangeNotification::partition_date),
            canonicals.iter().map(Vec::as_slice),
        ),
        body: records::raw_record_json(received_at, canonicals),
        outcome: Outcome::Other,
        quarantined: None,
        emergency: None,
    }
}

fn lifecycle_entry(received_at: &str, item: &ChangeNotification) -> Pending {
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

fn basic_event_entry(received_at: &str, item: &ChangeNotification) -> Pending {
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
            alerting::mark(entry, event, received_at, summary)
        }
        Err(e) => quarantine_entry(received_at, item, &canonical, &e),
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

fn quarantine_entry(
    received_at: &str,
    item: ChangeNotification,
    canonical: &[u8],
    reason: &DecryptError,
) -> Pending {
    let name = records::item_name(Kind::Quarantine, &item, canonical);
    let quarantined = Some((reason.code(), item.subscription_id.clone()));
    let record = QuarantineRecord {
        received_at: received_at.to_string(),
        reason: reason.to_string(),
        reason_code: reason.code().to_string(),
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

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current time formats as RFC 3339")
}
