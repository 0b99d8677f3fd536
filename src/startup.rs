//! The builder (the composition root): the only place that constructs infrastructure. From a
//! [`Config`] it makes one outbound HTTP client, a credential per audience (see
//! [`crate::identity`]; one object when both audiences get the same kind), the archive, the
//! certificate store, the validationTokens validator, the receiver and the renewer, and hands
//! each module what it needs. `serve`, the operator's commands, the demo and the tests all start
//! here, so they all run the production wiring. Nothing imports this module but `main` and `cli`.

mod event_hubs;
mod receiver_checks;

use std::sync::{Arc, OnceLock};

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};

use crate::alerts::delivery::Dispatcher;
use crate::alerts::outbox::Outbox;
use crate::archive::lease::{LeaseOptions, LeaseStore};
use crate::archive::{self, Archive, ArchiveError};
use crate::bot::auth::BotAuthenticator;
use crate::bot::client::{ConnectorClient, ServiceUrlPolicy};
use crate::config::{ArchiveConfig, Config};
use crate::eventhub::large_payload::PayloadStoreConfigError;
use crate::functions::eventhub::EventHubFunction;
use crate::functions::replay::ReplayTimer;
use crate::functions::routes::AppState;
use crate::graph::subscriptions::eventhub_url::EventHubUrlError;
use crate::graph::subscriptions::{GraphClient, RetryPolicy};
use crate::identity::{self, Audience, IdentityError};
use crate::jwks::JwksOptions;
use crate::keys::keyvault::{KeyVaultOptions, KeyVaultSource};
use crate::keys::local::LocalSource;
use crate::keys::{Backoff, CertificateStore, KeyError};
use crate::meetings::{MeetingWatcher, MessagesPath};
use crate::receiver::Receiver;
use crate::renewer::{Clock, REACTION_DEADLINE, Renewer, SetupError};

/// Start-up failures, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Renewer(#[from] SetupError),
    #[error(transparent)]
    PayloadStore(#[from] PayloadStoreConfigError),
    #[error("EVENTHUB_NOTIFICATION_URL: {0}")]
    EventHubUrl(#[source] EventHubUrlError),
    #[error("{name}: {reason}")]
    Alerts { name: &'static str, reason: String },
    #[error("ALERT_BOT_CONVERSATION: {0}")]
    BotRoute(#[from] crate::alerts::bot::BotRouteError),
}

/// How often Key Vault certificates are re-read (new versions appear without a restart; an
/// unknown id also triggers a rate-limited refresh).
pub const KEY_VAULT_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builds the parts of the app. The defaults are production's; tests override the outbound
/// HTTP client (to trust their fakes' CA), the process environment the credential reads, the
/// Graph retry policy and the Key Vault client options.
pub struct Builder {
    config: Config,
    http: Option<reqwest::Client>,
    env: EnvLookup,
    graph_retry: Option<RetryPolicy>,
    /// Waits between the listing checks of a `subscriptionRemoved` (tests shorten them).
    removal_checks: Option<Vec<std::time::Duration>>,
    reaction_deadline: Option<std::time::Duration>,
    verify_key_vault_challenge: Option<bool>,
    renewer_clock: Option<Clock>,
    lease: LeaseOptions,
    certificate_retry: Backoff,
    /// Key Vault and Blob's credential, built on first use.
    azure_credential: OnceLock<Arc<dyn TokenCredential>>,
    /// Graph's credential, built on first use (the same object when the kinds agree).
    graph_credential: OnceLock<Arc<dyn TokenCredential>>,
    /// The bot's connector client (and its credential), built on first use: the messaging
    /// endpoint and the alerts' bot route share it.
    bot_connector: OnceLock<ConnectorClient>,
}

/// The running service's parts, built once and shared.
pub struct App {
    pub config: Config,
    /// The one outbound HTTP client (Graph, Entra ID, Key Vault, JWKS).
    pub http: reqwest::Client,
    pub archive: Arc<dyn Archive>,
    pub keys: Arc<CertificateStore>,
    pub receiver: Arc<Receiver>,
    /// The renewer and lifecycle reactions; `None` when `SUBSCRIPTIONS_FILE` is not set (and
    /// no bot subscribes meetings).
    pub renewer: Option<Arc<Renewer>>,
    /// The `eventhub` function (Graph's Event Hubs delivery through the same receiver).
    pub eventhub: Arc<EventHubFunction>,
    /// The `replay` timer.
    pub replay: Arc<ReplayTimer>,
    /// Alert delivery; `None` when no alert route is configured.
    pub alerts: Option<Arc<Dispatcher>>,
    /// The Teams bot's messaging endpoint; `None` when `BOT_APP_ID` is not set.
    pub messages: Option<Arc<MessagesPath>>,
}

impl App {
    /// Everything the HTTP server needs.
    pub fn state(&self) -> AppState {
        AppState {
            receiver: self.receiver.clone(),
            max_body_bytes: self.config.max_body_bytes,
            limits: self.config.limits.clone(),
            renewer: self.renewer.clone(),
            eventhub: Some(self.eventhub.clone()),
            replay: Some(self.replay.clone()),
            max_invocation_bytes: self.config.event_hub.max_invocation_bytes,
            alerts: self.alerts.clone(),
            messages: self.messages.clone(),
        }
    }
}

impl Builder {
    pub fn new(config: Config) -> Self {
        Builder {
            config,
            http: None,
            env: Arc::new(|name| std::env::var(name).ok()),
            graph_retry: None,
            removal_checks: None,
            reaction_deadline: None,
            verify_key_vault_challenge: None,
            renewer_clock: None,
            lease: LeaseOptions::default(),
            certificate_retry: Backoff::default(),
            azure_credential: OnceLock::new(),
            graph_credential: OnceLock::new(),
            bot_connector: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sends every outbound request through `http` instead of a client built from the config.
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Reads the identity variables (`AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, ...)
    /// through `env` instead of the process environment.
    pub fn with_env(
        mut self,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// Graph's retry policy (tests shorten the waits).
    pub fn with_graph_retry(mut self, retry: RetryPolicy) -> Self {
        self.graph_retry = Some(retry);
        self
    }

    /// Replaces the renewer's waits between the listing checks of a `subscriptionRemoved`.
    pub fn with_removal_checks(mut self, waits: Vec<std::time::Duration>) -> Self {
        self.removal_checks = Some(waits);
        self
    }

    /// How long a lifecycle reaction may hold the renewer's lease (tests shorten it).
    pub fn with_reaction_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.reaction_deadline = Some(deadline);
        self
    }

    /// Whether the Key Vault challenge's resource must match the vault's domain (only a
    /// loopback fake needs `false`).
    pub fn with_key_vault_challenge_check(mut self, verify: bool) -> Self {
        self.verify_key_vault_challenge = Some(verify);
        self
    }

    /// The renewer's clock (tests move it past a meeting's grace instead of waiting).
    pub fn with_renewer_clock(mut self, clock: Clock) -> Self {
        self.renewer_clock = Some(clock);
        self
    }

    /// The renewer's lease timings (tests shorten the wait).
    pub fn with_lease_options(mut self, lease: LeaseOptions) -> Self {
        self.lease = lease;
        self
    }

    /// How often a certificate source that is not ready at start-up is tried again.
    pub fn with_certificate_retry(mut self, backoff: Backoff) -> Self {
        self.certificate_retry = backoff;
        self
    }

    /// The whole service.
    pub async fn build(self) -> Result<App, StartError> {
        let http = self.http_client()?;
        let (archive, leases) = self.storage(&http).await?;
        let (keys, pending) = self.certificate_store_or_pending(&http).await?;
        let keys = Arc::new(keys);
        if self.config.key_vault_url.is_some() {
            keys.spawn_periodic_refresh(KEY_VAULT_REFRESH);
        }
        let payloads = self.payload_store(&http)?;
        if let Some(e) = pending {
            tracing::error!(
                error = %e,
                "no decryption certificate yet: the handler answers, rich notifications are quarantined, and the certificate source is retried in the background; quarantined items are replayed once it loads"
            );
            let (replay_archive, replay_payloads) = (archive.clone(), payloads.clone());
            keys.spawn_until_loaded(self.certificate_retry.clone(), move |keys| async move {
                let payloads = replay_payloads.as_deref();
                let _ =
                    crate::ops::replay::replay_unattended(&replay_archive, &keys, payloads).await;
            });
        }
        let tokens = receiver_checks::token_validator(&self.config, http.clone());
        receiver_checks::warn_about_gaps(&self.config, tokens.is_some(), keys.is_empty());
        let renewer = self.renewer(&http, keys.clone(), archive.clone(), leases)?;
        self.check_event_hub_url()?;
        let alerts = self.alert_dispatcher(&http, archive.clone())?;
        if let Some(dispatcher) = &alerts {
            spawn_startup_sweep(dispatcher.clone());
        }
        let messages = self.messages(&http, archive.clone(), renewer.clone())?;
        tracing::info!(archive = %archive.location(), keys = keys.keys().len(), "handler ready");
        let receiver = Arc::new(Receiver {
            client_state: self.config.client_state.clone(),
            archive: archive.clone(),
            keys: keys.clone(),
            tokens,
            max_items_per_request: self.config.limits.max_items_per_request,
            payloads: payloads.clone(),
            alerts: alerts.as_ref().map(|d| {
                Arc::new(Outbox {
                    on: self.config.alerts.on.clone(),
                    route_ids: d.routes().iter().map(|r| r.id.clone()).collect(),
                })
            }),
        });
        let (eventhub, replay) = self.event_hub_functions(&receiver, payloads);
        Ok(App {
            config: self.config,
            http,
            archive,
            keys,
            receiver,
            renewer,
            eventhub,
            replay,
            alerts,
            messages,
        })
    }

    /// The outbound HTTP client: the one given, or one trusting `SSL_CERT_FILE`.
    pub fn http_client(&self) -> Result<reqwest::Client, StartError> {
        match &self.http {
            Some(http) => Ok(http.clone()),
            None => Ok(crate::http::client(self.config.ssl_cert_file.as_deref())?),
        }
    }

    /// The credential for Key Vault and Blob: managed or workload identity, never the Graph
    /// app's client secret (the roles in `infra/` are the managed identity's).
    pub fn azure_credential(
        &self,
        http: &reqwest::Client,
    ) -> Result<Arc<dyn TokenCredential>, StartError> {
        if let Some(c) = self.azure_credential.get() {
            return Ok(c.clone());
        }
        let env = self.env.clone();
        let (credential, kind) = identity::credential_for(
            Audience::AzureResources,
            &self.config,
            |n| env(n),
            http.clone(),
        )?;
        tracing::info!(credential = kind.as_str(), "Key Vault and Blob identity");
        Ok(self.azure_credential.get_or_init(|| credential).clone())
    }

    /// The credential for Graph: the client secret when `GRAPH_CLIENT_SECRET` is set, else the
    /// very object Key Vault and Blob use.
    pub fn graph_credential(
        &self,
        http: &reqwest::Client,
    ) -> Result<Arc<dyn TokenCredential>, StartError> {
        if let Some(c) = self.graph_credential.get() {
            return Ok(c.clone());
        }
        let env = self.env.clone();
        let graph = identity::kind_for(Audience::Graph, &self.config, |n| env(n));
        let azure = identity::kind_for(Audience::AzureResources, &self.config, |n| env(n));
        let credential = if graph == azure {
            self.azure_credential(http)?
        } else {
            identity::credential_for(Audience::Graph, &self.config, |n| env(n), http.clone())?.0
        };
        tracing::info!(credential = graph.as_str(), "Graph identity");
        Ok(self.graph_credential.get_or_init(|| credential).clone())
    }

    /// The configured archive (creating the directory or container if missing), behind the
    /// memory of recently archived names that lets resends skip their work.
    pub async fn archive(&self, http: &reqwest::Client) -> Result<Arc<dyn Archive>, StartError> {
        let (archive, _) = self.storage(http).await?;
        Ok(archive)
    }

    /// The configured archive (behind the memory of recently archived names) and the leases on
    /// its storage (one backend, two roles).
    pub async fn storage(
        &self,
        http: &reqwest::Client,
    ) -> Result<(Arc<dyn Archive>, Arc<dyn LeaseStore>), StartError> {
        let (backend, leases) = self.backend(http).await?;
        let archive: Arc<dyn Archive> = Arc::new(archive::recent::RecentlyArchived::new(
            backend,
            archive::recent::DEFAULT_CAPACITY,
        ));
        Ok((archive, leases))
    }

    async fn backend(
        &self,
        http: &reqwest::Client,
    ) -> Result<(Arc<dyn Archive>, Arc<dyn LeaseStore>), StartError> {
        fn both<T: Archive + LeaseStore + 'static>(
            backend: T,
        ) -> (Arc<dyn Archive>, Arc<dyn LeaseStore>) {
            let backend = Arc::new(backend);
            (backend.clone(), backend)
        }
        Ok(match &self.config.archive {
            ArchiveConfig::Filesystem(dir) => {
                let fs = Arc::new(archive::fs::FsArchive::open(dir).await?);
                fs.sweep_in_background();
                (fs.clone() as Arc<dyn Archive>, fs as Arc<dyn LeaseStore>)
            }
            ArchiveConfig::BlobConnectionString {
                connection_string,
                container,
            } => both(
                archive::blob::BlobArchive::from_connection_string_with(
                    connection_string,
                    container,
                    Some(Transport::new(Arc::new(http.clone()))),
                )
                .await?,
            ),
            ArchiveConfig::BlobAccountUrl {
                account_url,
                container,
            } => both(
                archive::blob::BlobArchive::from_account_url_with_credential(
                    account_url,
                    container,
                    self.azure_credential(http)?,
                    Some(Transport::new(Arc::new(http.clone()))),
                )
                .await?,
            ),
        })
    }

    /// The certificate store the configuration names (Key Vault wins over local files).
    pub async fn certificate_store(
        &self,
        http: &reqwest::Client,
    ) -> Result<CertificateStore, StartError> {
        match self.certificate_store_or_pending(http).await? {
            (_, Some(e)) => Err(e.into()),
            (store, None) => Ok(store),
        }
    }

    /// Like [`Self::certificate_store`], but a Key Vault that yields no key yet is a store
    /// without keys (and the reason), not an error: the service starts and retries.
    async fn certificate_store_or_pending(
        &self,
        http: &reqwest::Client,
    ) -> Result<(CertificateStore, Option<KeyError>), StartError> {
        let config = &self.config;
        if config.key_vault_url.is_some() || config.certificate_name.is_some() {
            let options = KeyVaultOptions {
                client_options: client_options(http),
                verify_challenge_resource: self.verify_key_vault_challenge,
            };
            if let Some(source) =
                KeyVaultSource::from_config(config, self.azure_credential(http)?, options)?
            {
                return Ok(CertificateStore::from_key_vault_or_pending(source).await);
            }
        }
        if !config.local_certificates.is_empty() {
            let store = CertificateStore::from_local(LocalSource {
                certificates: config.local_certificates.clone(),
                password: config.certificate_password.clone(),
            })?;
            return Ok((store, None));
        }
        Ok((CertificateStore::empty(), None))
    }

    /// The Graph subscriptions client, with the app's credential.
    pub fn graph_client(&self, http: &reqwest::Client) -> Result<GraphClient, StartError> {
        let graph = GraphClient::new(
            http.clone(),
            &self.config.graph_endpoint,
            self.graph_credential(http)?,
        );
        Ok(match &self.graph_retry {
            Some(retry) => graph.with_retry(retry.clone()),
            None => graph,
        })
    }

    /// The renewer, when `SUBSCRIPTIONS_FILE` is set or the Teams bot subscribes meetings (then
    /// Graph's delivery settings must be there too).
    fn renewer(
        &self,
        http: &reqwest::Client,
        keys: Arc<CertificateStore>,
        archive: Arc<dyn Archive>,
        leases: Arc<dyn LeaseStore>,
    ) -> Result<Option<Arc<Renewer>>, StartError> {
        let config = &self.config;
        let meetings = config.bot.as_ref().map(|b| b.meeting_grace);
        if config.subscriptions_file.is_none() {
            if meetings.is_none() {
                tracing::info!(
                    "SUBSCRIPTIONS_FILE not set: the renew timer and lifecycle reactions are off"
                );
                return Ok(None);
            }
            if config.notification_url.is_none() || config.client_state.is_none() {
                tracing::warn!(
                    "BOT_APP_ID is set but NOTIFICATION_URL / NOTIFICATION_CLIENT_STATE are not: meetings are archived but not subscribed to"
                );
                return Ok(None);
            }
        }
        let graph = self.graph_client(http)?;
        let deadline = self.reaction_deadline.unwrap_or(REACTION_DEADLINE);
        let mut renewer = Renewer::new(config.clone(), graph, keys, archive)?
            .with_lease(leases, self.lease.clone())
            .with_reaction_deadline(deadline);
        if let Some(waits) = &self.removal_checks {
            renewer = renewer.with_removal_checks(waits.clone());
        }
        if let Some(grace) = meetings {
            renewer = renewer.with_meetings(grace);
        }
        if let Some(clock) = &self.renewer_clock {
            renewer = renewer.with_clock(clock.clone());
        }
        Ok(Some(Arc::new(renewer)))
    }

    /// The Teams bot's messaging endpoint, when `BOT_APP_ID` is set.
    fn messages(
        &self,
        http: &reqwest::Client,
        archive: Arc<dyn Archive>,
        renewer: Option<Arc<Renewer>>,
    ) -> Result<Option<Arc<MessagesPath>>, StartError> {
        let config = &self.config;
        let Some(bot) = &config.bot else {
            tracing::info!(
                "BOT_APP_ID not set: the bot's messaging endpoint refuses every request"
            );
            return Ok(None);
        };
        let auth = BotAuthenticator::new(
            &bot.app_id,
            bot.tenant_id.as_deref(),
            &bot.openid_metadata,
            &config.authority_host,
            http.clone(),
            JwksOptions::default(),
        );
        let connector = self.connector_client(http)?;
        tracing::info!(
            app = %bot.app_id,
            single_tenant = bot.tenant_id.is_some(),
            meetings_subscribed = renewer.is_some(),
            "bot messaging endpoint ready"
        );
        Ok(Some(Arc::new(MessagesPath {
            auth: Arc::new(auth),
            archive,
            connector,
            watcher: renewer.map(|r| Arc::new(move || r.reconcile_soon()) as MeetingWatcher),
        })))
    }

    /// The bot's connector client (the alerts' proactive messages use it too), when the bot is
    /// configured.
    pub fn connector_client(
        &self,
        http: &reqwest::Client,
    ) -> Result<Option<ConnectorClient>, StartError> {
        let Some(bot) = &self.config.bot else {
            return Ok(None);
        };
        if let Some(connector) = self.bot_connector.get() {
            return Ok(Some(connector.clone()));
        }
        let policy = match &bot.service_url_hosts {
            Some(hosts) => ServiceUrlPolicy::new(hosts.iter().map(String::as_str)),
            None => ServiceUrlPolicy::default(),
        };
        let credential = identity::bot_credential(&self.config, bot, http.clone())?;
        let connector = ConnectorClient::new(http.clone(), credential, policy);
        Ok(Some(self.bot_connector.get_or_init(|| connector).clone()))
    }
}

impl Builder {
    /// Alert delivery to the configured routes, on the app's HTTP client and archive.
    pub fn alert_dispatcher(
        &self,
        http: &reqwest::Client,
        archive: Arc<dyn Archive>,
    ) -> Result<Option<Arc<Dispatcher>>, StartError> {
        let settings = &self.config.alerts;
        if !settings.has_routes() {
            tracing::info!(
                "no alert route configured: emergency calls are archived, nobody is alerted"
            );
            return Ok(None);
        }
        // The bot route posts through the bot's own connector client (its token, its allow-list).
        let bot = match &settings.bot_conversation {
            Some(conversation) => Some(crate::alerts::bot::poster(
                conversation,
                self.connector_client(http)?,
            )?),
            None => None,
        };
        let routes = crate::alerts::routes::from_config(settings);
        for route in &routes {
            tracing::info!(route = %route.label(), "alert route");
        }
        Ok(Some(Arc::new(Dispatcher::new(
            http.clone(),
            archive,
            routes,
            bot,
            settings.retry_for,
        ))))
    }
}

/// Sends what an earlier process left pending (e.g. it was killed between the archive write and
/// the send), without delaying the start.
fn spawn_startup_sweep(dispatcher: Arc<Dispatcher>) {
    tokio::spawn(async move {
        match dispatcher.sweep().await {
            Ok(stats) => tracing::info!(?stats, "start-up alert sweep"),
            Err(e) => {
                tracing::error!(error = %e, "start-up alert sweep: archive unavailable; the alert timer retries")
            }
        }
    });
}

/// The whole service from `config`, with production's defaults.
pub async fn build(config: &Config) -> Result<App, StartError> {
    Builder::new(config.clone()).build().await
}

/// Azure SDK client options that send through the app's HTTP client.
fn client_options(http: &reqwest::Client) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        ..ClientOptions::default()
    }
}
