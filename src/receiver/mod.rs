//! The notification path, top to bottom: first pass (count, clientState) -> validationTokens ->
//! persist the raw batch -> decrypt -> archive. The HTTP layer (`functions::routes`) only reads
//! the body and maps the outcome to a status; every step here is a call into its module.
//! Webhook bodies ([`Receiver::receive`]) and Event Hubs invocations
//! ([`Receiver::receive_events`]) take the same steps (`Receiver::stage`, then decryption and
//! the archive writes); they differ only in the validationTokens rule ([`Delivery`]) and in how
//! many writes a request makes.
//!
//! Invariants:
//! - nothing is answered 202 before it is persisted (an archive failure is a 503 so Graph retries);
//! - nothing from a batch whose validationTokens fail is archived as an event;
//! - clientState and token values are never logged or stored.

mod alerting;
mod entries;
mod evidence;
mod intake;
mod summary;
pub use summary::log_accepted;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use secrecy::SecretString;
use time::format_description::well_known::Rfc3339;

use crate::archive::{Archive, ArchiveError, Kind, ObjectName, Written};
use crate::eventhub::large_payload::{self, PayloadStore};
use crate::graph::crypto::DecryptError;
use crate::graph::notification::{ChangeNotification, ParseError};
use crate::graph::screening::ScreenError;
use crate::graph::tokens::{TokenError, TokenValidator};
use crate::keys::{CertificateStore, DecryptionKey};

use entries::{Outcome, basic_event_entry, lifecycle_entry, raw_entry};
pub(crate) use entries::{Pending, quarantine_entry, rich_entry};
use evidence::{reachability_message, reject, unreadable_event};
pub use intake::{ClientStateCheck, Dropped, IntakeError};

mod resend;
use summary::{Quarantined, log_dropped};

/// Which Graph URL a body arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `notificationUrl`: change notifications.
    Notifications,
    /// `lifecycleNotificationUrl`: lifecycle notifications.
    Lifecycle,
}

/// How a body reached the handler; it decides the validationTokens rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Graph's POST to the webhook: anyone can reach it, so a rich batch must carry valid tokens.
    Webhook,
    /// An event read from our hub: only principals with *Azure Event Hubs Data Sender* can write
    /// there (Graph's Change Tracking principal), which proves the sender; Graph sends no tokens
    /// this way. Tokens that are present are still verified (see ARCHITECTURE.md).
    EventHub,
}

/// What happened to a request's items (for the log line and the tests).
#[derive(Debug, Default)]
pub struct Receipt {
    /// Items in the body.
    pub items: usize,
    /// Graph's Event Hubs reachability messages, ignored.
    pub validation: usize,
    /// Event Hubs events that were not notification collections (kept under `rejected/`).
    pub unreadable: usize,
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

impl Receipt {
    /// Adds another body's receipt (an Event Hubs invocation holds many bodies).
    fn absorb(&mut self, other: Receipt) {
        self.items += other.items;
        self.validation += other.validation;
        self.unreadable += other.unreadable;
        self.dropped_client_state += other.dropped_client_state;
        self.repeated += other.repeated;
        self.rejected += other.rejected;
        self.events += other.events;
        self.quarantined += other.quarantined;
        self.lifecycle += other.lifecycle;
        self.duplicates += other.duplicates;
        self.resent += other.resent;
        if self.rejection.is_none() {
            self.rejection = other.rejection;
        }
        self.lifecycle_items.extend(other.lifecycle_items);
        self.alerts.extend(other.alerts);
    }
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
        // An item whose payload Graph left in blob storage is rich too (its content is fetched).
        let (rich, basic): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|i| i.is_rich() || large_payload::storage_id(i).is_some());
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
    /// `EVENTHUB_PAYLOAD_CONTAINER_URL`: where Graph leaves payloads over Event Hubs' 1 MB limit;
    /// `None` quarantines such items until a replay with the store configured.
    pub payloads: Option<Arc<PayloadStore>>,
    /// The alert outbox: which events alert, to which routes (`None`: no route configured).
    pub alerts: Option<Arc<crate::alerts::outbox::Outbox>>,
}

/// An Event Hubs event for [`Receiver::receive_events`]: its body and its metadata.
pub struct HubEvent {
    pub body: Bytes,
    /// Kept in the raw record (see `eventhub::payload::EventHubInvocation::event_metadata`).
    pub metadata: serde_json::Value,
}

/// `(encryptionCertificateId, encryptionCertificateThumbprint)` as Graph sent them.
type KeyRef = (Option<String>, Option<String>);

/// A rich item, its canonical bytes, and the key that should open it.
type Keyed = (
    ChangeNotification,
    Vec<u8>,
    Result<Arc<DecryptionKey>, DecryptError>,
);

/// One body after the checks, before decryption: what can be written at once (`first`: the
/// raw batch, lifecycle and basic items, rejections) and the rich items to decrypt, each with
/// the canonical bytes of the item as received (its archive name).
#[derive(Default)]
struct Staged {
    receipt: Receipt,
    first: Vec<Pending>,
    rich: Vec<(ChangeNotification, Vec<u8>)>,
    /// `complete/` markers, written once the events they vouch for are (see `resend`).
    markers: Vec<resend::Marker>,
    /// Items dropped by the clientState check, logged once per request (or invocation).
    dropped: Dropped,
}

impl Staged {
    fn absorb(&mut self, other: Staged) {
        self.receipt.absorb(other.receipt);
        self.first.extend(other.first);
        self.rich.extend(other.rich);
        self.markers.extend(other.markers);
        self.dropped.absorb(other.dropped);
    }
}

impl Receiver {
    /// Runs a webhook body through the notification path, top to bottom. The CPU-heavy steps
    /// (the first pass over the body, building items and records, decryption) run on the
    /// blocking pool, so the async workers stay free for readiness polls and handshakes.
    pub async fn receive(&self, endpoint: Endpoint, body: Bytes) -> Result<Receipt, ReceiveError> {
        let received_at = now_rfc3339();
        let Staged {
            mut receipt,
            first,
            rich,
            markers,
            dropped,
        } = self
            .stage(endpoint, Delivery::Webhook, &received_at, body, None)
            .await?;
        log_dropped(&dropped, self.client_state.is_none());
        let mut quarantined = Quarantined::default();
        quarantined.add(&first);
        // The raw batch (in `first`) is written while the rich items are decrypted (CPU
        // overlaps I/O); the events follow once it is durable, then the batch's marker.
        let (written, decrypted) = tokio::join!(
            self.write_all(first, &mut receipt),
            self.decrypt_batch(&received_at, rich)
        );
        written?;
        quarantined.add(&decrypted);
        quarantined.log();
        let events = resend::event_names(&decrypted);
        self.write_all(decrypted, &mut receipt).await?;
        self.mark_complete(markers, &events, &received_at).await;
        Ok(receipt)
    }

    /// Runs the events of one Event Hubs invocation through the same path, with one archive
    /// write for all of them: raw batches, events, quarantine, lifecycle and rejections go to the
    /// archive together, and `Ok` means every one is durable. An event that is not a
    /// notification collection is kept under `rejected/` (digest and size), never an error.
    pub async fn receive_events(&self, events: Vec<HubEvent>) -> Result<Receipt, ArchiveError> {
        let received_at = now_rfc3339();
        let mut all = Staged::default();
        for event in events {
            let staged = self
                .stage(
                    Endpoint::Notifications,
                    Delivery::EventHub,
                    &received_at,
                    event.body.clone(),
                    Some(&event.metadata),
                )
                .await;
            match staged {
                Ok(staged) => all.absorb(staged),
                Err(reason) => all.absorb(unreadable_event(&received_at, &event, &reason)),
            }
        }
        let Staged {
            mut receipt,
            mut first,
            rich,
            markers,
            dropped,
        } = all;
        // One line each for the whole invocation, not one per event.
        log_dropped(&dropped, self.client_state.is_none());
        let decrypted = self.decrypt_batch(&received_at, rich).await;
        let mut quarantined = Quarantined::default();
        quarantined.add(&first);
        quarantined.add(&decrypted);
        quarantined.log();
        let events = resend::event_names(&decrypted);
        first.extend(decrypted);
        self.write_all(first, &mut receipt).await?;
        self.mark_complete(markers, &events, &received_at).await;
        Ok(receipt)
    }

    /// first pass -> validationTokens (by the [`Delivery`] rule) -> payloads left in blob
    /// storage -> the records that need no key. `event_hub` is the event's metadata, kept in its
    /// raw record. Writes nothing.
    async fn stage(
        &self,
        endpoint: Endpoint,
        delivery: Delivery,
        received_at: &str,
        body: Bytes,
        event_hub: Option<&serde_json::Value>,
    ) -> Result<Staged, ReceiveError> {
        let mut staged = Staged::default();
        if delivery == Delivery::EventHub
            && let Some(n) = reachability_message(&body)
        {
            tracing::info!("Event Hubs reachability message from Graph ignored");
            staged.receipt.items = n;
            staged.receipt.validation = n;
            return Ok(staged);
        }
        let intake = self.intake(body).await?;
        staged.receipt.items = intake.items;
        staged.receipt.dropped_client_state = intake.dropped.count;
        staged.receipt.repeated = intake.repeated;
        staged.dropped = intake.dropped;
        if intake.accepted.is_empty() {
            return Ok(staged);
        }
        let batch = Batch::sort(endpoint, intake.accepted);

        // validationTokens, once per body: a webhook batch with resource data must carry them;
        // through Event Hubs they are checked when present (see [`Delivery`]).
        let check = match delivery {
            Delivery::Webhook => !batch.rich.is_empty(),
            Delivery::EventHub => !intake.validation_tokens.is_empty(),
        };
        if check
            && let Err(rejection) = self
                .check_tokens(&intake.validation_tokens, &batch.rich)
                .await
        {
            let entry = reject(received_at, batch, &rejection, &mut staged.receipt);
            staged.first.push(entry);
            staged.receipt.rejection = Some(rejection);
            return Ok(staged);
        }

        let at = received_at.to_string();
        let (first, batch) = tokio::task::spawn_blocking(move || {
            let pending = batch.verified_entries(&at);
            (pending, batch)
        })
        .await
        .expect("building records never panics");
        staged.first = first;
        staged.receipt.lifecycle_items = batch.lifecycle;
        if batch.rich.is_empty() {
            return Ok(staged);
        }

        self.stage_rich(&mut staged, received_at, check, event_hub, batch.rich)
            .await;
        Ok(staged)
    }

    /// The rich items of one body: the raw batch (unless every item is archived already), then
    /// each item to decrypt, its payload fetched first when Graph left it in blob storage.
    /// `tokens_verified` and `event_hub` go into the raw record.
    async fn stage_rich(
        &self,
        staged: &mut Staged,
        received_at: &str,
        tokens_verified: bool,
        event_hub: Option<&serde_json::Value>,
        rich: Vec<ChangeNotification>,
    ) {
        // The raw batch first: once it is stored, nothing in it can be lost, whatever happens next.
        // Each item's canonical form is computed once, for the raw batch and the item's name.
        let canonicals: Vec<Vec<u8>> = rich.iter().map(ChangeNotification::canonical).collect();
        // A resend: items whose event exists skip their decryption and writes (see `resend`).
        let names = resend::BatchNames::of(&rich, &canonicals);
        let archived = self.already_archived(&names).await;
        if archived.contains(&false) {
            staged.first.push(raw_entry(
                names.of_kind(Kind::Raw),
                received_at,
                tokens_verified,
                event_hub,
                &canonicals,
            ));
        }
        let fresh = resend::keep_new(rich, canonicals, &archived, &mut staged.receipt);
        if let Some(marker) = names.marker(&archived) {
            staged.markers.push(marker);
        }
        for (item, canonical) in fresh {
            match large_payload::resolve(self.payloads.as_deref(), &item).await {
                None => staged.rich.push((item, canonical)),
                Some(Ok(full)) => staged.rich.push((full, canonical)),
                Some(Err(e)) => {
                    let (reason, code) = (e.to_string(), e.code());
                    let entry = quarantine_entry(received_at, item, &canonical, reason, code);
                    staged.first.push(entry);
                }
            }
        }
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
        if items.is_empty() {
            return Vec::new();
        }
        let mut keys: HashMap<KeyRef, Option<Arc<DecryptionKey>>> = HashMap::new();
        for (item, _) in &items {
            let wanted = key_ref(item);
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
                let (id, thumbprint) = key_ref(&item);
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

/// The key reference of a rich item (both absent for an item without content).
fn key_ref(item: &ChangeNotification) -> KeyRef {
    item.encrypted_content.as_ref().map_or((None, None), |c| {
        (
            c.encryption_certificate_id.clone(),
            c.encryption_certificate_thumbprint.clone(),
        )
    })
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current time formats as RFC 3339")
}
