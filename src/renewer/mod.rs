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
//! changes nothing. Reconciles (the timer's, `POST /renew`'s and those lifecycle reactions run)
//! never overlap, nor do they overlap a reaction's reauthorization: within a process one lock,
//! across processes and instances a lease on the archive's storage ([`crate::archive::lease`]: a
//! Blob lease, or a lock file), taken with a bounded wait. A reauthorization holds them for at
//! most [`Renewer::reaction_deadline`] (one call, and the renewal that replaces it if it fails),
//! and at most [`gate::DEFAULT_CONCURRENCY`] reactions run at once, so the timer waits a bounded
//! time behind reactions, never longer than the lease's wait. On Flex Consumption the timer and
//! the HTTP functions scale out on instances of their own, so the lease is what keeps them apart;
//! the duplicate rule above still repairs what an expired lease let through.

pub(crate) mod desired;
pub mod gate;
pub mod lifecycle;
pub(crate) mod meetings;
pub mod reconcile;
pub(crate) mod report;
pub(crate) mod single_flight;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::archive::Archive;
use crate::archive::lease::{self, Lease, LeaseError, LeaseOptions, LeaseStore};
use crate::config::{Config, ConfigError, ReconcileOptions};
use crate::graph::notification::ChangeNotification;
use crate::graph::subscriptions::{GraphClient, evaluation_mode_warning};
use crate::keys::CertificateStore;
use crate::logging::escape;
pub use desired::{
    DeliveryTarget, DesiredEntry, DesiredError, DesiredSubscription, load_desired,
    matching_desired, normalize_change_type, parse_desired, same_resource,
};
use gate::ReactionGate;
use single_flight::{Flight, SingleFlight};
use std::sync::Arc;

pub use reconcile::{Plan, listing_version, new_subscription, reconcile, reconcile_plan};
pub use report::{Action, ActionRecord, Failure, Report};

/// What every subscription we create is told: where to deliver, and the shared secret.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `NOTIFICATION_URL`.
    pub notification_url: String,
    /// `LIFECYCLE_NOTIFICATION_URL`; without it Teams subscriptions live at most an hour.
    pub lifecycle_notification_url: Option<String>,
    /// `NOTIFICATION_CLIENT_STATE`; the receiver drops anything without it.
    pub client_state: SecretString,
    /// `EVENTHUB_NOTIFICATION_URL`, for subscriptions with `"delivery": "eventHub"`.
    pub event_hub_url: Option<String>,
}

/// Why the renewer cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the renewer needs {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Desired(#[from] DesiredError),
}

/// Graph's limit on `clientState`.
pub(crate) const MAX_CLIENT_STATE_CHARS: usize = 128;

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
        let event_hub_url = config.event_hub.notification_url.clone();
        // Without a webhook URL, Event Hubs is the default delivery.
        let (notification_url, lifecycle_notification_url) = match &config.notification_url {
            Some(url) => (url.clone(), config.lifecycle_notification_url.clone()),
            None => {
                let url = event_hub_url.clone().ok_or(SetupError::Missing(
                    "NOTIFICATION_URL (or EVENTHUB_NOTIFICATION_URL)",
                ))?;
                (url.clone(), Some(url))
            }
        };
        Ok(Delivery {
            notification_url,
            lifecycle_notification_url,
            client_state,
            event_hub_url,
        })
    }

    /// The delivery of one desired subscription. An Event Hubs subscription gets its lifecycle
    /// notifications through the same hub (Graph takes an `EventHub:` lifecycle URL too), so a
    /// deployment without a public endpoint still hears `reauthorizationRequired`.
    pub fn for_subscription(&self, d: &DesiredSubscription) -> Result<Delivery, String> {
        let url = match &d.target {
            DeliveryTarget::Webhook => return Ok(self.clone()),
            DeliveryTarget::EventHub(Some(url)) => url.to_string(),
            DeliveryTarget::EventHub(None) => self.event_hub_url.clone().ok_or(
                "delivery eventHub needs EVENTHUB_NOTIFICATION_URL (or an EventHub: notificationUrl in the entry)",
            )?,
        };
        Ok(Delivery {
            notification_url: url.clone(),
            lifecycle_notification_url: Some(url),
            ..self.clone()
        })
    }

    pub fn has_lifecycle_url(&self) -> bool {
        self.lifecycle_notification_url.is_some()
    }
}

/// Everything the timer and the lifecycle reactions need; shared by the server's tasks. Built
/// by the builder ([`crate::startup`]) from the app's one HTTP client and credential.
pub struct Renewer {
    pub config: Config,
    pub graph: GraphClient,
    /// The certificate given to Graph for rich notifications is `keys.current()`.
    pub keys: Arc<CertificateStore>,
    /// Resync markers go here.
    pub archive: Arc<dyn Archive>,
    pub options: ReconcileOptions,
    /// `MEETING_SUBSCRIPTION_GRACE_MIN` when the Teams bot is configured: meetings seen
    /// starting (in the archive) join the desired state; `None` = the file alone.
    meetings_grace: Option<Duration>,
    /// The reconcile's clock (tests move it instead of waiting).
    clock: Clock,
    /// A reconcile requested by a meeting event is queued and has not started yet.
    pending: AtomicBool,
    /// Serializes the Graph-changing work of this process (timer and reactions).
    lock: tokio::sync::Mutex<()>,
    /// One reconcile at a time; the timer, `POST /renew` and reactions join a running one.
    reconciles: SingleFlight<Report>,
    /// Which lifecycle notifications get a reaction, and how many run at once.
    pub reactions: ReactionGate,
    /// Waits before each look at Graph's listing that must confirm a `subscriptionRemoved`.
    pub removal_checks: Vec<Duration>,
    /// Serializes it across processes and instances: a lease on the archive's storage.
    lease: Option<(Arc<dyn LeaseStore>, LeaseOptions)>,
    /// How long a reaction may hold the lease for its Graph calls.
    reaction_deadline: Duration,
}

/// The right to change Graph: this process's lock and, when configured, the shared lease.
pub struct Exclusive<'a> {
    _local: tokio::sync::MutexGuard<'a, ()>,
    lease: Option<Lease>,
}

impl Exclusive<'_> {
    /// Gives both up (the lease at once, rather than in the background on drop).
    pub async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
    }
}

/// The time now; replaceable so tests can move it.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Default waits before the listing checks of a `subscriptionRemoved`: Graph may list a removed
/// subscription for a short while, so a few looks over a few minutes, then give up (the timer's
/// next reconcile recreates what is really gone).
pub(crate) const REMOVAL_CHECKS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(30),
    Duration::from_secs(120),
];

/// Default time a lifecycle reaction may hold the renewer's lease for its Graph calls (one
/// reauthorization, and the renewal that replaces it if it fails). With at most
/// [`gate::DEFAULT_CONCURRENCY`] reactions at once, the renew timer waits at most a minute behind
/// this instance's reactions, well within the lease's wait.
pub(crate) const REACTION_DEADLINE: Duration = Duration::from_secs(15);

impl Renewer {
    /// The renewer for `config`, talking to Graph through `graph`. Checks the delivery settings
    /// at once; the desired-subscriptions file is read afresh at every run.
    pub fn new(
        config: Config,
        graph: GraphClient,
        keys: Arc<CertificateStore>,
        archive: Arc<dyn Archive>,
    ) -> Result<Self, SetupError> {
        let renewer = Renewer {
            options: config.reconcile.clone(),
            config,
            graph,
            keys,
            archive,
            meetings_grace: None,
            clock: Arc::new(OffsetDateTime::now_utc),
            pending: AtomicBool::new(false),
            lock: tokio::sync::Mutex::new(()),
            lease: None,
            reconciles: SingleFlight::default(),
            reactions: ReactionGate::default(),
            removal_checks: REMOVAL_CHECKS.to_vec(),
            reaction_deadline: REACTION_DEADLINE,
        };
        renewer.delivery()?;
        // A missing or broken desired file never takes the receiver down: it is said loudly
        // now, and every timer run reports it in its Logs until it is fixed.
        match renewer.desired() {
            Ok(desired) => {
                tracing::info!(
                    subscriptions = desired.len(),
                    graph = %renewer.config.graph_endpoint,
                    "renewer ready"
                );
                for d in &desired {
                    if let Some(warning) = evaluation_mode_warning(&d.resource) {
                        tracing::warn!("{warning}");
                    }
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                "the desired subscriptions cannot be read: the renewer reports this at every run until it is fixed"
            ),
        }
        Ok(renewer)
    }

    /// Meetings seen starting join the desired state; their subscriptions are deleted
    /// `grace` after the meeting's end.
    pub fn with_meetings(mut self, grace: Duration) -> Self {
        self.meetings_grace = Some(grace);
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The desired subscriptions of the file, read afresh (an edited file applies at the next
    /// run). Without a file (a renewer for meetings only) the file's share is empty.
    pub fn desired(&self) -> Result<Vec<DesiredSubscription>, SetupError> {
        match self.config.subscriptions_file.as_deref() {
            Some(path) => Ok(load_desired(path)?),
            None if self.meetings_grace.is_some() => Ok(Vec::new()),
            None => Err(SetupError::Missing("SUBSCRIPTIONS_FILE")),
        }
    }

    /// The file's subscriptions and the meetings', and the meetings' to delete, at `now`.
    async fn plan(
        &self,
        mut desired: Vec<DesiredSubscription>,
        now: OffsetDateTime,
    ) -> (Vec<DesiredSubscription>, Vec<String>) {
        let Some(grace) = self.meetings_grace else {
            return (desired, Vec::new());
        };
        match meetings::plan(self.archive.as_ref(), now, grace).await {
            Ok(plan) => {
                for meeting in plan.running {
                    let listed = desired.iter().any(|d| {
                        same_resource(&d.resource, &meeting.resource)
                            && d.change_type == meeting.change_type
                    });
                    if !listed {
                        desired.push(meeting);
                    }
                }
                (desired, plan.over)
            }
            Err(e) => {
                // The file's subscriptions still get their reconcile; meeting subscriptions
                // are neither renewed nor deleted this time.
                tracing::error!(error = %e, "cannot read the meetings' state from the archive");
                (desired, Vec::new())
            }
        }
    }

    /// Queues a reconcile in the background (a meeting started or ended): its subscription is
    /// made or deleted now, not at the next timer run. Requests while one is queued coalesce.
    pub fn reconcile_soon(self: &Arc<Self>) {
        if self.pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let renewer = self.clone();
        tokio::spawn(async move {
            let report = renewer.reconcile().await;
            tracing::info!(
                changes = report.changes(),
                failures = report.failures(),
                "reconcile after a meeting event"
            );
        });
    }

    pub fn delivery(&self) -> Result<Delivery, SetupError> {
        Delivery::from_config(&self.config)
    }

    /// Takes the lease `store` holds for every instance before any Graph-changing work.
    pub fn with_lease(mut self, store: Arc<dyn LeaseStore>, options: LeaseOptions) -> Self {
        self.lease = Some((store, options));
        self
    }

    /// Holds off other Graph-changing work, of this process and of every instance sharing the
    /// lease, while the guard lives. `work` names what waits, for the log. The whole wait (this
    /// process's lock and the lease) is bounded by the lease's `wait`; this process's lock is
    /// never held while another instance has the lease, so work of this process queued behind a
    /// waiter does not wait twice. Fails when the lease stays taken for all of the wait.
    pub async fn exclusive(&self, work: &'static str) -> Result<Exclusive<'_>, LeaseError> {
        let Some((store, options)) = &self.lease else {
            let local = self.lock.lock().await;
            return Ok(Exclusive {
                _local: local,
                lease: None,
            });
        };
        let name = lease::renewer_lease();
        let started = Instant::now();
        let mut said = false;
        loop {
            let left = options.wait.saturating_sub(started.elapsed());
            let Ok(local) = tokio::time::timeout(left, self.lock.lock()).await else {
                tracing::warn!(lease = %name, work, waited_s = options.wait.as_secs(), "this instance's own renewer work held the lease all along; skipped");
                return Err(LeaseError::LocalBusy {
                    name: name.to_string(),
                    waited: options.wait,
                });
            };
            if let Some(held) = lease::try_take(store.as_ref(), &name, options.ttl).await? {
                if said {
                    tracing::info!(lease = %name, work, waited_ms = started.elapsed().as_millis() as u64, "renewer lease taken after waiting");
                }
                return Ok(Exclusive {
                    _local: local,
                    lease: Some(held),
                });
            }
            drop(local);
            if started.elapsed() + options.poll > options.wait {
                tracing::warn!(lease = %name, work, waited_s = options.wait.as_secs(), "another instance still holds the renewer lease; giving up");
                return Err(LeaseError::Busy {
                    name: name.to_string(),
                    waited: options.wait,
                });
            }
            if !said {
                tracing::info!(lease = %name, work, wait_s = options.wait.as_secs(), "another instance holds the renewer lease; waiting for it");
                said = true;
            }
            tokio::time::sleep(options.poll).await;
        }
    }

    /// How long a lifecycle reaction may hold the lease for its Graph calls.
    pub fn with_reaction_deadline(mut self, deadline: Duration) -> Self {
        self.reaction_deadline = deadline;
        self
    }

    pub fn reaction_deadline(&self) -> Duration {
        self.reaction_deadline
    }

    /// Replaces the waits between the listing checks of a `subscriptionRemoved`.
    pub fn with_removal_checks(mut self, waits: Vec<Duration>) -> Self {
        self.removal_checks = waits;
        self
    }

    /// A reconcile, or the one already running (joined: see [`SingleFlight`]).
    pub async fn reconcile_joined(self: &Arc<Self>) -> (Report, Flight) {
        let renewer = self.clone();
        let (report, flight) = self
            .reconciles
            .run(move || async move { renewer.reconcile().await })
            .await;
        let report = report.unwrap_or_else(|| {
            let mut report = Report::new(OffsetDateTime::now_utc());
            report.error = Some("the reconcile task failed".into());
            report
        });
        (report, flight)
    }

    pub async fn reconcile(&self) -> Report {
        self.reconcile_excluding(&HashSet::new()).await
    }

    /// A reconcile that treats the subscriptions `removed` as gone even if Graph still lists
    /// them (a `subscriptionRemoved` notification can arrive before the listing forgets them).
    pub async fn reconcile_excluding(&self, removed: &HashSet<String>) -> Report {
        let guard = match self.exclusive("reconcile").await {
            Ok(guard) => guard,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile not run");
                let mut report = Report::new(OffsetDateTime::now_utc());
                report.error_transient = matches!(e, LeaseError::Storage { .. });
                report.error = Some(e.to_string());
                return report;
            }
        };
        let report = self.reconcile_locked(removed).await;
        guard.release().await;
        report
    }

    async fn reconcile_locked(&self, removed: &HashSet<String>) -> Report {
        // From here on, a meeting event needs a reconcile of its own to be seen.
        self.pending.store(false, Ordering::SeqCst);
        let now = (self.clock)();
        let setup = self.desired().and_then(|d| Ok((d, self.delivery()?)));
        match setup {
            Ok((desired, delivery)) => {
                let (desired, retire) = self.plan(desired, now).await;
                let plan = Plan {
                    desired: &desired,
                    retire: &retire,
                    now,
                };
                reconcile_plan(
                    &self.graph,
                    &self.keys,
                    &delivery,
                    &plan,
                    &self.options,
                    removed,
                )
                .await
            }
            Err(e) => {
                tracing::error!(error = %e, "reconcile cannot start");
                let mut report = Report::new(now);
                report.error = Some(e.to_string());
                report
            }
        }
    }

    /// Reacts to archived lifecycle notifications in background tasks; returns at once. Only
    /// what the gate admits gets a reaction (one per subscription and event, per request and
    /// window); the rest are summed up in one line.
    pub fn react(self: &Arc<Self>, items: &[ChangeNotification]) {
        let admitted = self.reactions.admit(items.to_vec());
        if admitted.repeats > 0 {
            let ids: Vec<String> = admitted
                .repeated_ids
                .iter()
                .map(|i| escape(i).to_string())
                .collect();
            tracing::info!(
                count = admitted.repeats,
                window_s = self.reactions.window().as_secs(),
                first_subscription_ids = %ids.join(", "),
                "lifecycle notifications archived but not reacted to: repeats of a pair reacted to in this request or recently"
            );
        }
        for item in &admitted.react {
            lifecycle::react(self.clone(), item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
