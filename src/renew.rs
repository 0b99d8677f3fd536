//! Subscriptions that never lapse: the reconcile of the desired subscriptions with Graph, and the
//! `renew` timer function that runs it.
//!
//! The timer is `functions/renew/function.json`: a `timerTrigger` named `timer` on the NCRONTAB
//! schedule of the app setting `RENEW_SCHEDULE` (default `0 */30 * * * *`, every 30 minutes).
//! The host invokes it as `POST /renew` (see [`crate::host`]); [`handle_timer`] answers.
//!
//! Reconcile, per desired subscription (matched to Graph's by resource, changeType and
//! notificationUrl):
//! - missing (never created, expired, removed): create it; on 409 (emergency events allow one
//!   subscription per app, tenant and policy) adopt the one Graph has;
//! - present: renew it when less than [`ReconcileOptions::renew_when_remaining`] of its lifetime
//!   is left, and move it to the current certificate when it still uses another one (one PATCH);
//!   a 404 on that PATCH means Graph lost it: create it again;
//! - several present (a lost race, a retried create): keep the one that lives longest, delete
//!   the others, so no notification is archived twice under two subscription ids.
//!
//! Subscriptions of this app that deliver elsewhere or that the file no longer lists are left
//! alone (counted as `unmanaged`): they lapse at their expiry. A reconcile right after another
//! changes nothing. Reconciles never overlap within a process (one lock); across instances the
//! timer trigger is a singleton, and the duplicate rule above repairs any other overlap.

use std::collections::HashSet;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::archive::Archive;
use crate::config::{Config, ConfigError};
use crate::graph::notification::ChangeNotification;
use crate::graph::subscriptions::{
    ApiVersion, DesiredError, DesiredSubscription, EncryptionCertificate, GraphClient, GraphError,
    NewSubscription, Subscription, SubscriptionUpdate, format_time, load_desired,
    normalize_change_type, same_resource,
};
use crate::host::{InvocationRequest, InvocationResponse};
use crate::keys::CertificateStore;
use crate::logging::escape;
use crate::reaction_gate::ReactionGate;
use crate::single_flight::{Flight, SingleFlight};

/// The binding name of the timer in `functions/renew/function.json`.
pub const TIMER_BINDING: &str = "timer";

/// Default share of the lifetime left under which a subscription is renewed.
pub const DEFAULT_RENEW_WHEN_REMAINING: f64 = 0.5;

/// Tuning of the reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// `RENEW_WHEN_REMAINING` (0 < x < 1, default 0.5): renew when less than this share of the
    /// requested lifetime is left. With the default, a 3-day subscription is renewed once 36
    /// hours are left and a 1-day one at 12 hours, so a timer every 30 minutes has dozens of
    /// chances, and a reconcile right after a renewal changes nothing. Keep the timer interval
    /// well under `share x lifetime` (55 minutes without a lifecycle URL).
    pub renew_when_remaining: f64,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            renew_when_remaining: DEFAULT_RENEW_WHEN_REMAINING,
        }
    }
}

impl ReconcileOptions {
    /// Reads `RENEW_WHEN_REMAINING` through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let Some(raw) = lookup("RENEW_WHEN_REMAINING").filter(|v| !v.trim().is_empty()) else {
            return Ok(Self::default());
        };
        let share = raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && *s < 1.0)
            .ok_or_else(|| ConfigError {
                name: "RENEW_WHEN_REMAINING",
                reason: format!("a share strictly between 0 and 1, got {raw:?}"),
            })?;
        Ok(ReconcileOptions {
            renew_when_remaining: share,
        })
    }
}

/// What every subscription we create is told: where to deliver, and the shared secret.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `NOTIFICATION_URL`.
    pub notification_url: String,
    /// `LIFECYCLE_NOTIFICATION_URL`; without it Teams subscriptions live at most an hour.
    pub lifecycle_notification_url: Option<String>,
    /// `NOTIFICATION_CLIENT_STATE`; the receiver drops anything without it.
    pub client_state: SecretString,
}

/// Why the renewer cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the renewer needs {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error("HTTP client: {0}")]
    Http(String),
}

/// Graph's limit on `clientState`.
pub const MAX_CLIENT_STATE_CHARS: usize = 128;

impl Delivery {
    pub fn from_config(config: &Config) -> Result<Self, SetupError> {
        let client_state = config
            .client_state
            .clone()
            .ok_or(SetupError::Missing("NOTIFICATION_CLIENT_STATE"))?;
        if client_state.expose_secret().chars().count() > MAX_CLIENT_STATE_CHARS {
            return Err(SetupError::Config(ConfigError {
                name: "NOTIFICATION_CLIENT_STATE",
                reason: format!("Graph accepts at most {MAX_CLIENT_STATE_CHARS} characters"),
            }));
        }
        Ok(Delivery {
            notification_url: config
                .notification_url
                .clone()
                .ok_or(SetupError::Missing("NOTIFICATION_URL"))?,
            lifecycle_notification_url: config.lifecycle_notification_url.clone(),
            client_state,
        })
    }

    pub fn has_lifecycle_url(&self) -> bool {
        self.lifecycle_notification_url.is_some()
    }
}

/// Everything the timer and the lifecycle reactions need; shared by the server's tasks.
pub struct RenewContext {
    pub config: Config,
    pub graph: GraphClient,
    /// The certificate given to Graph for rich notifications is `keys.current()`.
    pub keys: Arc<CertificateStore>,
    /// Resync markers go here.
    pub archive: Arc<dyn Archive>,
    pub options: ReconcileOptions,
    /// Serializes the Graph-changing work of this process (timer and reactions).
    lock: tokio::sync::Mutex<()>,
    /// One reconcile at a time; the timer, `POST /renew` and reactions join a running one.
    reconciles: SingleFlight<Report>,
    /// Which lifecycle notifications get a reaction, and how many run at once.
    pub reactions: ReactionGate,
    /// Waits before each look at Graph's listing that must confirm a `subscriptionRemoved`.
    pub removal_checks: Vec<std::time::Duration>,
}

/// Default waits before the listing checks of a `subscriptionRemoved`: Graph may list a removed
/// subscription for a short while, so a few looks over a few minutes, then give up (the timer's
/// next reconcile recreates what is really gone).
pub const REMOVAL_CHECKS: [std::time::Duration; 3] = [
    std::time::Duration::ZERO,
    std::time::Duration::from_secs(30),
    std::time::Duration::from_secs(120),
];

impl RenewContext {
    pub fn new(
        config: Config,
        graph: GraphClient,
        keys: Arc<CertificateStore>,
        archive: Arc<dyn Archive>,
    ) -> Self {
        RenewContext {
            config,
            graph,
            keys,
            archive,
            options: ReconcileOptions::default(),
            lock: tokio::sync::Mutex::new(()),
            reconciles: SingleFlight::default(),
            reactions: ReactionGate::default(),
            removal_checks: REMOVAL_CHECKS.to_vec(),
        }
    }

    /// Replaces the waits between the listing checks of a `subscriptionRemoved`.
    pub fn with_removal_checks(mut self, waits: Vec<std::time::Duration>) -> Self {
        self.removal_checks = waits;
        self
    }

    /// A reconcile, or the one already running (joined: see [`SingleFlight`]).
    pub async fn reconcile_joined(self: &Arc<Self>) -> (Report, Flight) {
        let ctx = self.clone();
        let (report, flight) = self
            .reconciles
            .run(move || async move { ctx.reconcile().await })
            .await;
        let report = report.unwrap_or_else(|| {
            let mut report = Report::new(OffsetDateTime::now_utc());
            report.error = Some("the reconcile task failed".into());
            report
        });
        (report, flight)
    }

    pub fn with_options(mut self, options: ReconcileOptions) -> Self {
        self.options = options;
        self
    }

    /// The production wiring: `None` when `SUBSCRIPTIONS_FILE` is not set (the renewer is off);
    /// an error when it is set but something it needs is missing or unreadable.
    pub fn from_config(
        config: &Config,
        keys: Arc<CertificateStore>,
        archive: Arc<dyn Archive>,
    ) -> Result<Option<Self>, SetupError> {
        let Some(path) = &config.subscriptions_file else {
            return Ok(None);
        };
        Delivery::from_config(config)?;
        let desired = load_desired(path)?;
        let credential = crate::identity::credential(config)?;
        let http = crate::app::http_client().map_err(|e| SetupError::Http(e.to_string()))?;
        let graph = GraphClient::new(http, &config.graph_endpoint, credential);
        let options = ReconcileOptions::from_lookup(|k| std::env::var(k).ok())?;
        tracing::info!(
            subscriptions = desired.len(),
            file = %path.display(),
            graph = %config.graph_endpoint,
            "renewer ready"
        );
        Ok(Some(
            RenewContext::new(config.clone(), graph, keys, archive).with_options(options),
        ))
    }

    /// The desired subscriptions, read afresh (an edited file applies at the next run).
    pub fn desired(&self) -> Result<Vec<DesiredSubscription>, SetupError> {
        let path = self
            .config
            .subscriptions_file
            .as_deref()
            .ok_or(SetupError::Missing("SUBSCRIPTIONS_FILE"))?;
        Ok(load_desired(path)?)
    }

    pub fn delivery(&self) -> Result<Delivery, SetupError> {
        Delivery::from_config(&self.config)
    }

    /// Holds off other Graph-changing work of this process while the guard lives.
    pub async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    pub async fn reconcile(&self) -> Report {
        self.reconcile_excluding(&HashSet::new()).await
    }

    /// A reconcile that treats the subscriptions `removed` as gone even if Graph still lists
    /// them (a `subscriptionRemoved` notification can arrive before the listing forgets them).
    pub async fn reconcile_excluding(&self, removed: &HashSet<String>) -> Report {
        let _guard = self.exclusive().await;
        let setup = self.desired().and_then(|d| Ok((d, self.delivery()?)));
        match setup {
            Ok((desired, delivery)) => {
                reconcile(
                    &self.graph,
                    &self.keys,
                    &delivery,
                    &desired,
                    &self.options,
                    removed,
                )
                .await
            }
            Err(e) => {
                tracing::error!(error = %e, "reconcile cannot start");
                let mut report = Report::new(OffsetDateTime::now_utc());
                report.error = Some(e.to_string());
                report
            }
        }
    }
}

/// What a reconcile did to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Created where none existed.
    Created,
    /// Created again in place of one Graph lost (404 on renewal, expired, removed) or that could
    /// not be changed in place (includeResourceData or changeType differ).
    Recreated,
    /// `expirationDateTime` extended.
    Renewed,
    /// Moved to the current certificate (and renewed in the same PATCH).
    CertificateMoved,
    /// Graph answered 409 to the create: its existing subscription was taken over.
    Adopted,
    /// A second subscription for the same desired one, deleted.
    DuplicateDeleted,
    /// Nothing to do.
    Unchanged,
    Failed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Recreated => "recreated",
            Action::Renewed => "renewed",
            Action::CertificateMoved => "certificateMoved",
            Action::Adopted => "adopted",
            Action::DuplicateDeleted => "duplicateDeleted",
            Action::Unchanged => "unchanged",
            Action::Failed => "failed",
        }
    }

    pub const ALL: [Action; 8] = [
        Action::Created,
        Action::Recreated,
        Action::Renewed,
        Action::CertificateMoved,
        Action::Adopted,
        Action::DuplicateDeleted,
        Action::Unchanged,
        Action::Failed,
    ];
}

/// A failure as reported (Graph's code and message when Graph answered).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    /// A later attempt may succeed.
    pub transient: bool,
}

impl From<&GraphError> for Failure {
    fn from(e: &GraphError) -> Self {
        Failure {
            status: e.status(),
            code: e.code().map(str::to_string),
            message: e.to_string(),
            transient: e.is_transient(),
        }
    }
}

/// One line of a reconcile.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub action: Action,
    pub resource: String,
    pub change_type: String,
    pub api_version: ApiVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// The subscription replaced or deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

impl ActionRecord {
    fn new(action: Action, desired: &DesiredSubscription) -> Self {
        ActionRecord {
            action,
            resource: desired.resource.clone(),
            change_type: desired.change_type.clone(),
            api_version: desired.api_version,
            subscription_id: None,
            previous_id: None,
            expiration: None,
            failure: None,
        }
    }

    fn with(mut self, s: &Subscription) -> Self {
        self.subscription_id = Some(s.id.clone());
        self.expiration = Some(format_time(s.expiration_date_time));
        self
    }

    fn previous(mut self, id: &str) -> Self {
        self.previous_id = Some(id.to_string());
        self
    }

    fn failed(desired: &DesiredSubscription, failure: Failure) -> Self {
        let mut r = ActionRecord::new(Action::Failed, desired);
        r.failure = Some(failure);
        r
    }

    /// One line for the invocation log.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {} {} [{}]",
            self.action.as_str(),
            self.api_version,
            self.resource,
            self.change_type
        );
        if let Some(id) = &self.subscription_id {
            line.push_str(&format!(" id={id}"));
        }
        if let Some(id) = &self.previous_id {
            line.push_str(&format!(" previous={id}"));
        }
        if let Some(t) = &self.expiration {
            line.push_str(&format!(" expires={t}"));
        }
        if let Some(f) = &self.failure {
            line.push_str(&format!(": {}", f.message));
        }
        line
    }
}

/// The outcome of a reconcile.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub started_at: String,
    /// Subscriptions Graph listed.
    pub listed: usize,
    /// Listed but already expired (Graph deletes them; they count as missing).
    pub expired: usize,
    /// Subscriptions delivering to our URL that the desired state does not name.
    pub unmanaged: usize,
    pub actions: Vec<ActionRecord>,
    /// Why the reconcile could not run at all (desired file, settings, listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run-level error may go away on retry.
    pub error_transient: bool,
}

impl Report {
    fn new(now: OffsetDateTime) -> Self {
        Report {
            started_at: format_time(now),
            listed: 0,
            expired: 0,
            unmanaged: 0,
            actions: Vec::new(),
            error: None,
            error_transient: false,
        }
    }

    pub fn count(&self, action: Action) -> usize {
        self.actions.iter().filter(|a| a.action == action).count()
    }

    /// Calls that changed something in Graph.
    pub fn changes(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| !matches!(a.action, Action::Unchanged | Action::Failed))
            .count()
    }

    pub fn failures(&self) -> usize {
        self.count(Action::Failed) + usize::from(self.error.is_some())
    }

    /// Whether the host should retry the invocation: something failed that may succeed later.
    pub fn should_retry(&self) -> bool {
        (self.error.is_some() && self.error_transient)
            || self
                .actions
                .iter()
                .any(|a| a.failure.as_ref().is_some_and(|f| f.transient))
    }

    /// The counts: the timer's `ReturnValue`.
    pub fn summary(&self) -> Value {
        let mut counts = serde_json::Map::new();
        for action in Action::ALL {
            counts.insert(action.as_str().into(), json!(self.count(action)));
        }
        let mut v = json!({
            "listed": self.listed,
            "expired": self.expired,
            "unmanaged": self.unmanaged,
            "changes": self.changes(),
        });
        v.as_object_mut()
            .expect("a JSON object literal")
            .extend(counts);
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }

    /// One line per action, then the summary: the timer's `Logs`.
    pub fn log_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = Vec::with_capacity(self.actions.len() + 2);
        if let Some(e) = &self.error {
            lines.push(format!("renew: reconcile failed: {e}"));
        }
        lines.extend(self.actions.iter().map(|a| format!("renew: {}", a.line())));
        lines.push(format!(
            "renew: {} listed, {} changes, {} unchanged, {} failed, {} unmanaged",
            self.listed,
            self.changes(),
            self.count(Action::Unchanged),
            self.failures(),
            self.unmanaged
        ));
        lines
    }

    fn push(&mut self, record: ActionRecord) {
        match record.action {
            Action::Failed => {
                tracing::warn!(action = record.action.as_str(), resource = %record.resource, failure = ?record.failure, "reconcile")
            }
            Action::Unchanged => {
                tracing::debug!(action = record.action.as_str(), resource = %record.resource, id = ?record.subscription_id, "reconcile")
            }
            _ => {
                tracing::info!(action = record.action.as_str(), resource = %record.resource, id = ?record.subscription_id, previous = ?record.previous_id, expires = ?record.expiration, "reconcile")
            }
        }
        self.actions.push(record);
    }
}

/// The version to list with: beta lists every subscription of the app, v1.0 may not show those
/// made on beta-only resources.
pub fn listing_version(desired: &[DesiredSubscription]) -> ApiVersion {
    if desired.iter().any(|d| d.api_version == ApiVersion::Beta) {
        ApiVersion::Beta
    } else {
        ApiVersion::V1
    }
}

/// Brings Graph to the desired state (see the module docs).
pub async fn reconcile(
    graph: &GraphClient,
    keys: &CertificateStore,
    delivery: &Delivery,
    desired: &[DesiredSubscription],
    options: &ReconcileOptions,
    removed: &HashSet<String>,
) -> Report {
    let now = OffsetDateTime::now_utc();
    let mut report = Report::new(now);
    let listing = listing_version(desired);
    let listed = match graph.list(listing).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "listing subscriptions failed");
            report.error = Some(format!("listing subscriptions: {e}"));
            report.error_transient = e.is_transient();
            return report;
        }
    };
    report.listed = listed.len();
    let (live, gone): (Vec<Subscription>, Vec<Subscription>) = listed
        .into_iter()
        .partition(|s| !removed.contains(&s.id) && s.expiration_date_time > now);
    report.expired = gone.iter().filter(|s| !removed.contains(&s.id)).count();

    let certificate = match keys
        .current()
        .map(|k| (k.certificate_base64(), k.id.clone()))
    {
        Some((Ok(base64), id)) => Some(EncryptionCertificate { base64, id }),
        Some((Err(e), id)) => {
            tracing::error!(certificate = %id, error = %e, "current certificate unusable");
            None
        }
        None => None,
    };
    let run = Run {
        graph,
        delivery,
        options,
        certificate,
        listing,
        removed,
        now,
    };

    let mut claimed: HashSet<String> = HashSet::new();
    for d in desired {
        let mut matching: Vec<&Subscription> = live
            .iter()
            .filter(|s| !claimed.contains(&s.id) && d.matches(s, &delivery.notification_url))
            .collect();
        matching.sort_by_key(|s| std::cmp::Reverse(s.expiration_date_time));
        for duplicate in matching.iter().skip(1) {
            claimed.insert(duplicate.id.clone());
            let record = match graph.delete(d.api_version, &duplicate.id).await {
                Ok(()) => ActionRecord::new(Action::DuplicateDeleted, d).previous(&duplicate.id),
                Err(e) if e.is_not_found() => {
                    ActionRecord::new(Action::DuplicateDeleted, d).previous(&duplicate.id)
                }
                Err(e) => ActionRecord::failed(d, Failure::from(&e)).previous(&duplicate.id),
            };
            report.push(record);
        }
        let record = match matching.first() {
            Some(existing) => {
                claimed.insert(existing.id.clone());
                run.maintain(d, existing, &mut claimed).await
            }
            None => {
                let lost = gone
                    .iter()
                    .find(|s| d.matches(s, &delivery.notification_url))
                    .map(|s| s.id.clone());
                let record = run.create_or_adopt(d, &mut claimed).await;
                match lost {
                    Some(id) if record.action == Action::Created => {
                        let mut r = record.previous(&id);
                        r.action = Action::Recreated;
                        r
                    }
                    _ => record,
                }
            }
        };
        report.push(record);
    }
    report.unmanaged = live
        .iter()
        .filter(|s| {
            !claimed.contains(&s.id)
                && s.notification_url.as_deref().is_some_and(|u| {
                    u.trim_end_matches('/') == delivery.notification_url.trim_end_matches('/')
                })
        })
        .count();
    report
}

/// The parts of one reconcile every step needs.
struct Run<'a> {
    graph: &'a GraphClient,
    delivery: &'a Delivery,
    options: &'a ReconcileOptions,
    certificate: Option<EncryptionCertificate>,
    listing: ApiVersion,
    removed: &'a HashSet<String>,
    now: OffsetDateTime,
}

impl Run<'_> {
    fn expiration(&self, d: &DesiredSubscription) -> OffsetDateTime {
        self.now + d.lifetime(self.delivery.has_lifecycle_url())
    }

    /// The certificate to give a subscription that needs one and does not have it yet.
    fn certificate_move(
        &self,
        d: &DesiredSubscription,
        existing: &Subscription,
    ) -> Option<EncryptionCertificate> {
        let current = self.certificate.as_ref()?;
        (d.include_resource_data
            && existing.encryption_certificate_id.as_deref() != Some(current.id.as_str()))
        .then(|| current.clone())
    }

    async fn maintain(
        &self,
        d: &DesiredSubscription,
        existing: &Subscription,
        claimed: &mut HashSet<String>,
    ) -> ActionRecord {
        // includeResourceData cannot be patched: replace the subscription.
        if existing
            .include_resource_data
            .is_some_and(|rich| rich != d.include_resource_data)
        {
            return self.replace(d, existing, claimed).await;
        }
        let lifetime = d.lifetime(self.delivery.has_lifecycle_url());
        let renew =
            existing.remaining(self.now) < lifetime.mul_f64(self.options.renew_when_remaining);
        let certificate = self.certificate_move(d, existing);
        if !renew && certificate.is_none() {
            return ActionRecord::new(Action::Unchanged, d).with(existing);
        }
        let action = if certificate.is_some() {
            Action::CertificateMoved
        } else {
            Action::Renewed
        };
        let update = SubscriptionUpdate {
            expiration: Some(self.expiration(d)),
            notification_url: None,
            certificate,
        };
        match self
            .graph
            .update(d.api_version, &existing.id, &update)
            .await
        {
            Ok(updated) => ActionRecord::new(action, d).with(&updated),
            Err(e) if e.is_not_found() => {
                let record = self.create_or_adopt(d, claimed).await;
                if record.action == Action::Failed {
                    record
                } else {
                    let mut r = record.previous(&existing.id);
                    r.action = Action::Recreated;
                    r
                }
            }
            Err(e) => ActionRecord::failed(d, Failure::from(&e)).with(existing),
        }
    }

    /// Deletes `existing` and creates `d` afresh.
    async fn replace(
        &self,
        d: &DesiredSubscription,
        existing: &Subscription,
        claimed: &mut HashSet<String>,
    ) -> ActionRecord {
        match self.graph.delete(d.api_version, &existing.id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return ActionRecord::failed(d, Failure::from(&e)).with(existing),
        }
        let record = self.create(d).await;
        if record.action == Action::Failed {
            return record;
        }
        if let Some(id) = &record.subscription_id {
            claimed.insert(id.clone());
        }
        let mut r = record.previous(&existing.id);
        r.action = Action::Recreated;
        r
    }

    async fn create(&self, d: &DesiredSubscription) -> ActionRecord {
        self.try_create(d)
            .await
            .unwrap_or_else(|f| ActionRecord::failed(d, f))
    }

    async fn try_create(&self, d: &DesiredSubscription) -> Result<ActionRecord, Failure> {
        let new =
            build_new(d, self.delivery, self.certificate.clone(), self.now).map_err(|message| {
                Failure {
                    status: None,
                    code: None,
                    message,
                    transient: false,
                }
            })?;
        match self.graph.create(d.api_version, &new).await {
            Ok(s) => Ok(ActionRecord::new(Action::Created, d).with(&s)),
            Err(e) => Err(Failure::from(&e)),
        }
    }

    async fn create_or_adopt(
        &self,
        d: &DesiredSubscription,
        claimed: &mut HashSet<String>,
    ) -> ActionRecord {
        match self.try_create(d).await {
            Ok(record) => {
                if let Some(id) = &record.subscription_id {
                    claimed.insert(id.clone());
                }
                record
            }
            Err(f) if f.status == Some(409) => self.adopt(d, f, claimed).await,
            Err(f) => ActionRecord::failed(d, f),
        }
    }

    /// Graph has a subscription for this resource already (emergency events: one per app,
    /// tenant and policy). Take it over: point it at our URL and certificate, renew it; if its
    /// changeType differs (not patchable), replace it.
    async fn adopt(
        &self,
        d: &DesiredSubscription,
        conflict: Failure,
        claimed: &mut HashSet<String>,
    ) -> ActionRecord {
        let listed = match self.graph.list(self.listing).await {
            Ok(v) => v,
            Err(e) => return ActionRecord::failed(d, Failure::from(&e)),
        };
        let Some(existing) = listed.into_iter().find(|s| {
            same_resource(&s.resource, &d.resource)
                && !claimed.contains(&s.id)
                && !self.removed.contains(&s.id)
        }) else {
            tracing::warn!(resource = %d.resource, "409 on create, but no subscription for the resource is listed");
            return ActionRecord::failed(d, conflict);
        };
        claimed.insert(existing.id.clone());
        if normalize_change_type(&existing.change_type).as_deref() != Ok(d.change_type.as_str()) {
            return self.replace(d, &existing, claimed).await;
        }
        let notification_url = existing
            .notification_url
            .as_deref()
            .is_none_or(|u| {
                u.trim_end_matches('/') != self.delivery.notification_url.trim_end_matches('/')
            })
            .then(|| self.delivery.notification_url.clone());
        let update = SubscriptionUpdate {
            expiration: Some(self.expiration(d)),
            notification_url,
            certificate: self.certificate_move(d, &existing),
        };
        match self
            .graph
            .update(d.api_version, &existing.id, &update)
            .await
        {
            Ok(updated) => ActionRecord::new(Action::Adopted, d).with(&updated),
            Err(e) => ActionRecord::failed(d, Failure::from(&e)).with(&existing),
        }
    }
}

/// The `POST /subscriptions` body for `d`: our URLs and clientState, the current certificate
/// when rich, Graph's maximum lifetime (or the configured one) from `now`.
pub fn new_subscription(
    d: &DesiredSubscription,
    delivery: &Delivery,
    keys: &CertificateStore,
    now: OffsetDateTime,
) -> Result<NewSubscription, String> {
    let certificate = match keys.current() {
        Some(k) => Some(EncryptionCertificate {
            base64: k.certificate_base64().map_err(|e| e.to_string())?,
            id: k.id.clone(),
        }),
        None => None,
    };
    build_new(d, delivery, certificate, now)
}

fn build_new(
    d: &DesiredSubscription,
    delivery: &Delivery,
    certificate: Option<EncryptionCertificate>,
    now: OffsetDateTime,
) -> Result<NewSubscription, String> {
    let certificate = match (d.include_resource_data, certificate) {
        (true, None) => {
            return Err("rich notifications need an encryption certificate: none is configured (NOTIFICATION_CERTIFICATES or KEY_VAULT_URL)".into());
        }
        (true, c) => c,
        (false, _) => None,
    };
    Ok(NewSubscription {
        resource: d.resource.clone(),
        change_type: d.change_type.clone(),
        notification_url: delivery.notification_url.clone(),
        lifecycle_notification_url: delivery.lifecycle_notification_url.clone(),
        expiration: now + d.lifetime(delivery.has_lifecycle_url()),
        client_state: delivery.client_state.clone(),
        include_resource_data: d.include_resource_data,
        certificate,
    })
}

/// `POST /renew`: the timer invocation. A body that is not the host's timer invocation is
/// refused (400, in the invocation-response shape) without touching Graph: anyone who can reach
/// the handler can post to it. Otherwise the reconcile runs, or the one already running is
/// joined. Answers 503 only when a failure may go away on retry, so the host records the
/// invocation as failed; otherwise 200, with every action in `Logs` and the counts in
/// `ReturnValue`.
pub async fn handle_timer(ctx: &Arc<RenewContext>, body: &[u8]) -> (u16, Value) {
    let timer = match InvocationRequest::parse(body).and_then(|r| r.timer(TIMER_BINDING)) {
        Ok(timer) => timer,
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(reason = %escape(&reason), "renew: not a timer invocation; refused");
            let response = InvocationResponse {
                logs: vec![format!(
                    "renew: not a timer invocation ({reason}); nothing done"
                )],
                return_value: json!({ "error": reason }),
                ..InvocationResponse::default()
            };
            return (400, response.to_json());
        }
    };
    let mut logs = Vec::new();
    if timer.is_past_due {
        tracing::warn!("renew: the timer is past due");
        logs.push("renew: the timer is past due; reconciling now".to_string());
    }
    let (report, flight) = ctx.reconcile_joined().await;
    if flight == Flight::Joined {
        logs.push("renew: a reconcile was already running; joined it".to_string());
    }
    logs.extend(report.log_lines());
    let mut summary = report.summary();
    summary["isPastDue"] = json!(timer.is_past_due);
    summary["joined"] = json!(flight == Flight::Joined);
    let status = if report.should_retry() { 503 } else { 200 };
    tracing::info!(
        status,
        changes = report.changes(),
        failures = report.failures(),
        joined = flight == Flight::Joined,
        "renew finished"
    );
    let response = InvocationResponse {
        logs,
        return_value: summary,
        ..InvocationResponse::default()
    };
    (status, response.to_json())
}

/// Plugs the renewer into the server (`AppState::hooks`).
pub struct RenewHooks(pub Arc<RenewContext>);

#[async_trait::async_trait]
impl crate::server::Hooks for RenewHooks {
    fn lifecycle(&self, items: Vec<ChangeNotification>) {
        let admitted = self.0.reactions.admit(items);
        if admitted.repeats > 0 {
            let ids: Vec<_> = admitted
                .repeated_ids
                .iter()
                .map(|i| escape(i).to_string())
                .collect();
            tracing::info!(
                count = admitted.repeats,
                window_s = self.0.reactions.window().as_secs(),
                first_subscription_ids = %ids.join(", "),
                "lifecycle notifications archived but not reacted to: repeats of a pair reacted to in this request or recently"
            );
        }
        for item in &admitted.react {
            crate::lifecycle::react(self.0.clone(), item);
        }
    }

    async fn renew(&self, body: bytes::Bytes) -> (u16, Value) {
        handle_timer(&self.0, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_binds_the_timer_we_read() {
        let f: Value =
            serde_json::from_str(include_str!("../functions/renew/function.json")).unwrap();
        let binding = &f["bindings"][0];
        assert_eq!(binding["type"], "timerTrigger");
        assert_eq!(binding["name"], TIMER_BINDING);
        assert_eq!(binding["schedule"], "%RENEW_SCHEDULE%");
    }

    #[test]
    fn delivery_needs_the_url_and_a_client_state_graph_accepts() {
        let config = |state: &str| {
            Config::from_lookup(|k| match k {
                "NOTIFICATION_URL" => Some("https://x.example/api/notifications".into()),
                "NOTIFICATION_CLIENT_STATE" => Some(state.into()),
                _ => None,
            })
            .unwrap()
        };
        assert!(Delivery::from_config(&config(&"s".repeat(128))).is_ok());
        let err = Delivery::from_config(&config(&"s".repeat(129))).unwrap_err();
        assert!(err.to_string().contains("128"), "{err}");
        assert!(!err.to_string().contains("sss"));
        let err = Delivery::from_config(&Config::from_lookup(|_| None).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("NOTIFICATION_CLIENT_STATE"),
            "{err}"
        );
    }

    #[test]
    fn share_is_read_and_bounded() {
        assert_eq!(
            ReconcileOptions::from_lookup(|_| None)
                .unwrap()
                .renew_when_remaining,
            0.5
        );
        assert_eq!(
            ReconcileOptions::from_lookup(|_| Some("0.25".into()))
                .unwrap()
                .renew_when_remaining,
            0.25
        );
        for bad in ["0", "1", "-0.1", "half"] {
            assert!(
                ReconcileOptions::from_lookup(|_| Some(bad.into())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn summary_counts_every_action() {
        let d = crate::graph::subscriptions::DesiredEntry {
            resource: Some("/teams".into()),
            change_type: Some("created".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let mut r = Report::new(OffsetDateTime::now_utc());
        r.actions.push(ActionRecord::new(Action::Created, &d));
        r.actions.push(ActionRecord::new(Action::Unchanged, &d));
        r.actions.push(ActionRecord::failed(
            &d,
            Failure {
                status: Some(503),
                code: Some("ServiceUnavailable".into()),
                message: "busy".into(),
                transient: true,
            },
        ));
        let s = r.summary();
        assert_eq!(s["created"], 1);
        assert_eq!(s["unchanged"], 1);
        assert_eq!(s["failed"], 1);
        assert_eq!(s["changes"], 1);
        assert!(r.should_retry());
        assert!(
            r.log_lines()
                .iter()
                .any(|l| l.contains("failed v1.0 /teams [created]: busy"))
        );
    }
}
