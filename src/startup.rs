//! The builder (the composition root): the only place that constructs infrastructure. From a
//! [`Config`] it makes one outbound HTTP client, at most one credential, the archive, the
//! certificate store, the validationTokens validator, the receiver and the renewer, and hands
//! each module what it needs. `serve`, the operator's commands, the demo and the tests all start
//! here, so they all run the production wiring. Nothing imports this module but `main` and `cli`.

use std::sync::{Arc, OnceLock};

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};

use crate::archive::{self, Archive, ArchiveError};
use crate::config::{ArchiveConfig, Config};
use crate::eventhub::large_payload::{PayloadStore, PayloadStoreConfigError};
use crate::eventhub::payload::Limits;
use crate::eventhub::spool::Spool;
use crate::functions::eventhub::EventHubFunction;
use crate::functions::replay::ReplayTimer;
use crate::functions::routes::AppState;
use crate::graph::subscriptions::eventhub_url::{EventHubUrl, EventHubUrlError};
use crate::graph::subscriptions::{GraphClient, RetryPolicy};
use crate::graph::tokens::TokenValidator;
use crate::identity::{self, IdentityError};
use crate::keys::keyvault::{KeyVaultOptions, KeyVaultSource};
use crate::keys::local::LocalSource;
use crate::keys::{CertificateStore, KeyError};
use crate::receiver::Receiver;
use crate::renewer::{Renewer, SetupError};

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
    verify_key_vault_challenge: Option<bool>,
    credential: OnceLock<Arc<dyn TokenCredential>>,
}

/// The running service's parts, built once and shared.
pub struct App {
    pub config: Config,
    /// The one outbound HTTP client (Graph, Entra ID, Key Vault, JWKS).
    pub http: reqwest::Client,
    pub archive: Arc<dyn Archive>,
    pub keys: Arc<CertificateStore>,
    pub receiver: Arc<Receiver>,
    /// The renewer and lifecycle reactions; `None` when `SUBSCRIPTIONS_FILE` is not set.
    pub renewer: Option<Arc<Renewer>>,
    /// The `eventhub` function (Graph's Event Hubs delivery through the same receiver).
    pub eventhub: Arc<EventHubFunction>,
    /// The `replay` timer.
    pub replay: Arc<ReplayTimer>,
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
            verify_key_vault_challenge: None,
            credential: OnceLock::new(),
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

    /// Whether the Key Vault challenge's resource must match the vault's domain (only a
    /// loopback fake needs `false`).
    pub fn with_key_vault_challenge_check(mut self, verify: bool) -> Self {
        self.verify_key_vault_challenge = Some(verify);
        self
    }

    /// The whole service.
    pub async fn build(self) -> Result<App, StartError> {
        let http = self.http_client()?;
        let archive = self.archive(&http).await?;
        let keys = Arc::new(self.certificate_store(&http).await?);
        if self.config.key_vault_url.is_some() {
            keys.spawn_periodic_refresh(KEY_VAULT_REFRESH);
        }
        let tokens = token_validator(&self.config, http.clone());
        warn_about_gaps(&self.config, tokens.is_some(), keys.is_empty());
        let renewer = self.renewer(&http, keys.clone(), archive.clone())?;
        if let Some(url) = &self.config.event_hub.notification_url {
            EventHubUrl::parse(url).map_err(StartError::EventHubUrl)?;
        }
        let payloads = self.payload_store(&http)?;
        tracing::info!(archive = %archive.location(), keys = keys.keys().len(), "handler ready");
        let receiver = Arc::new(Receiver {
            client_state: self.config.client_state.clone(),
            archive: archive.clone(),
            keys: keys.clone(),
            tokens,
            max_items_per_request: self.config.limits.max_items_per_request,
            payloads: payloads.clone(),
        });
        let eventhub = Arc::new(EventHubFunction {
            receiver: receiver.clone(),
            spool: Spool::new(&self.config.event_hub.spool_dir),
            limits: Limits::default(),
        });
        let replay = Arc::new(ReplayTimer {
            archive: archive.clone(),
            keys: keys.clone(),
            payloads,
            eventhub: eventhub.clone(),
        });
        Ok(App {
            config: self.config,
            http,
            archive,
            keys,
            receiver,
            renewer,
            eventhub,
            replay,
        })
    }

    /// The outbound HTTP client: the one given, or one trusting `SSL_CERT_FILE`.
    pub fn http_client(&self) -> Result<reqwest::Client, StartError> {
        match &self.http {
            Some(http) => Ok(http.clone()),
            None => Ok(crate::http::client(self.config.ssl_cert_file.as_deref())?),
        }
    }

    /// The app's credential, built on first use (Key Vault, Blob, Graph share it and its
    /// token cache).
    pub fn credential(
        &self,
        http: &reqwest::Client,
    ) -> Result<Arc<dyn TokenCredential>, StartError> {
        if let Some(c) = self.credential.get() {
            return Ok(c.clone());
        }
        let env = self.env.clone();
        let (credential, _) = identity::credential_with(&self.config, |n| env(n), http.clone())?;
        Ok(self.credential.get_or_init(|| credential).clone())
    }

    /// The configured archive (creating the directory or container if missing).
    pub async fn archive(&self, http: &reqwest::Client) -> Result<Arc<dyn Archive>, StartError> {
        Ok(match &self.config.archive {
            ArchiveConfig::Filesystem(dir) => {
                let fs = Arc::new(archive::fs::FsArchive::open(dir).await?);
                fs.sweep_in_background();
                fs
            }
            ArchiveConfig::BlobConnectionString {
                connection_string,
                container,
            } => Arc::new(
                archive::blob::BlobArchive::from_connection_string(connection_string, container)
                    .await?,
            ),
            ArchiveConfig::BlobAccountUrl {
                account_url,
                container,
            } => Arc::new(
                archive::blob::BlobArchive::from_account_url_with_credential(
                    account_url,
                    container,
                    self.credential(http)?,
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
        let config = &self.config;
        if config.key_vault_url.is_some() || config.certificate_name.is_some() {
            let options = KeyVaultOptions {
                client_options: client_options(http),
                verify_challenge_resource: self.verify_key_vault_challenge,
            };
            if let Some(source) =
                KeyVaultSource::from_config(config, self.credential(http)?, options)?
            {
                return Ok(CertificateStore::from_key_vault(source).await?);
            }
        }
        if !config.local_certificates.is_empty() {
            return Ok(CertificateStore::from_local(LocalSource {
                certificates: config.local_certificates.clone(),
                password: config.certificate_password.clone(),
            })?);
        }
        Ok(CertificateStore::empty())
    }

    /// The container of large Event Hubs payloads, when `EVENTHUB_PAYLOAD_CONTAINER_URL` is set:
    /// a SAS URL is used as is, a plain https URL with the app's credential.
    pub fn payload_store(
        &self,
        http: &reqwest::Client,
    ) -> Result<Option<Arc<PayloadStore>>, StartError> {
        let Some(url) = &self.config.event_hub.payload_container_url else {
            return Ok(None);
        };
        let credential = if url.contains('?') {
            None
        } else {
            Some(self.credential(http)?)
        };
        Ok(Some(Arc::new(PayloadStore::new(url, credential)?)))
    }

    /// The Graph subscriptions client, with the app's credential.
    pub fn graph_client(&self, http: &reqwest::Client) -> Result<GraphClient, StartError> {
        let graph = GraphClient::new(
            http.clone(),
            &self.config.graph_endpoint,
            self.credential(http)?,
        );
        Ok(match &self.graph_retry {
            Some(retry) => graph.with_retry(retry.clone()),
            None => graph,
        })
    }

    /// The renewer, when `SUBSCRIPTIONS_FILE` is set.
    fn renewer(
        &self,
        http: &reqwest::Client,
        keys: Arc<CertificateStore>,
        archive: Arc<dyn Archive>,
    ) -> Result<Option<Arc<Renewer>>, StartError> {
        if self.config.subscriptions_file.is_none() {
            tracing::info!(
                "SUBSCRIPTIONS_FILE not set: the renew timer and lifecycle reactions are off"
            );
            return Ok(None);
        }
        let graph = self.graph_client(http)?;
        let mut renewer = Renewer::new(self.config.clone(), graph, keys, archive)?;
        if let Some(waits) = &self.removal_checks {
            renewer = renewer.with_removal_checks(waits.clone());
        }
        Ok(Some(Arc::new(renewer)))
    }
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

/// The validationTokens checker, when the app's identity is configured.
fn token_validator(config: &Config, http: reqwest::Client) -> Option<Arc<TokenValidator>> {
    if config.client_ids.is_empty() || config.tenant_ids.is_empty() {
        return None;
    }
    Some(Arc::new(TokenValidator::new(
        &config.authority_host,
        config.client_ids.clone(),
        config.tenant_ids.clone(),
        http,
    )))
}

/// Start-up warnings for settings whose absence turns a whole class of notification away.
fn warn_about_gaps(config: &Config, has_validator: bool, no_keys: bool) {
    if config.client_state.is_none() {
        tracing::warn!("NOTIFICATION_CLIENT_STATE is not set: every notification will be dropped");
    }
    if !has_validator {
        tracing::warn!(
            "GRAPH_CLIENT_ID / GRAPH_TENANT_ID not set: rich notifications cannot be validated and will be rejected"
        );
    }
    if no_keys {
        tracing::warn!(
            "no decryption certificate configured: rich notifications will be quarantined"
        );
    }
}
