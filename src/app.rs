//! Builds the running service from a [`Config`]: the archive, the certificate store, the token
//! validator, the HTTP client, and the server state. Shared by `serve`, `demo`, `replay` and the
//! tests, so they all run the production wiring.

use std::sync::Arc;

use crate::archive::{self, Archive};
use crate::config::Config;
use crate::eventhub::function::EventHubFunction;
use crate::eventhub::large_payload::PayloadStore;
use crate::eventhub::payload::Limits;
use crate::eventhub::spool::Spool;
use crate::graph::tokens::TokenValidator;
use crate::keys::{CertificateStore, keyvault::KeyVaultSource, local::LocalSource};
use crate::receiver::Receiver;
use crate::replay_timer::ReplayTimer;
use crate::server::AppState;

/// Start-up failures, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Renewer(#[from] crate::renew::SetupError),
    #[error(transparent)]
    PayloadStore(#[from] crate::eventhub::large_payload::PayloadStoreConfigError),
    #[error("EVENTHUB_NOTIFICATION_URL: {0}")]
    EventHubUrl(#[source] crate::eventhub::url::EventHubUrlError),
}

/// The container of large Event Hubs payloads, when `EVENTHUB_PAYLOAD_CONTAINER_URL` is set: a
/// SAS URL is used as is, a plain https URL with the app's credential.
pub fn payload_store(config: &Config) -> Result<Option<Arc<PayloadStore>>, StartError> {
    let Some(url) = &config.event_hub.payload_container_url else {
        return Ok(None);
    };
    let credential = if url.contains('?') {
        None
    } else {
        Some(crate::identity::credential(config)?)
    };
    Ok(Some(Arc::new(PayloadStore::new(url, credential)?)))
}

/// How often Key Vault certificates are re-read (new versions appear without a restart; an
/// unknown id also triggers a rate-limited refresh).
pub const KEY_VAULT_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// An outbound HTTP client trusting the system roots plus `SSL_CERT_FILE` (private CAs,
/// corporate proxies, test fakes). A machine without system roots still gets a client (trusting
/// only `SSL_CERT_FILE`), so the handler starts and serves; its outbound calls then fail with a
/// TLS error naming the problem instead of the whole handler refusing to start.
pub fn http_client() -> Result<reqwest::Client, StartError> {
    let builder = || {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
    };
    let mut extra = Vec::new();
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        let pem = std::fs::read(&path).map_err(|e| {
            StartError::Http(format!("SSL_CERT_FILE {}: {e}", path.to_string_lossy()))
        })?;
        extra = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| StartError::Http(format!("SSL_CERT_FILE: {e}")))?;
    }
    let with_system_roots = extra
        .iter()
        .cloned()
        .fold(builder(), |b, cert| b.add_root_certificate(cert))
        .build();
    match with_system_roots {
        Ok(client) => Ok(client),
        Err(e) => {
            tracing::error!(error = %e, "no usable system CA certificates: outbound TLS trusts only SSL_CERT_FILE");
            builder()
                .tls_certs_only(extra)
                .build()
                .map_err(|e| StartError::Http(e.to_string()))
        }
    }
}

/// The certificate store the configuration names (Key Vault wins over local files).
pub async fn certificate_store(config: &Config) -> Result<CertificateStore, StartError> {
    if config.key_vault_url.is_some() || config.certificate_name.is_some() {
        let credential = crate::identity::credential(config)?;
        if let Some(source) = KeyVaultSource::from_config(config, credential)? {
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

/// The validationTokens checker, when the app's identity is configured.
pub fn token_validator(config: &Config, http: reqwest::Client) -> Option<Arc<TokenValidator>> {
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

/// Everything the server needs.
pub async fn state(config: &Config) -> Result<AppState, StartError> {
    let archive: Arc<dyn Archive> = archive::open(config).await?;
    let keys = Arc::new(certificate_store(config).await?);
    if config.key_vault_url.is_some() {
        keys.spawn_periodic_refresh(KEY_VAULT_REFRESH);
    }
    let http = http_client()?;
    let tokens = token_validator(config, http);
    if config.client_state.is_none() {
        tracing::warn!("NOTIFICATION_CLIENT_STATE is not set: every notification will be dropped");
    }
    if tokens.is_none() {
        tracing::warn!(
            "GRAPH_CLIENT_ID / GRAPH_TENANT_ID not set: rich notifications cannot be validated and will be rejected"
        );
    }
    if keys.is_empty() {
        tracing::warn!(
            "no decryption certificate configured: rich notifications will be quarantined"
        );
    }
    // The renewer and the lifecycle reactions, when desired subscriptions are configured.
    let hooks: Option<Arc<dyn crate::server::Hooks>> =
        crate::renew::RenewContext::from_config(config, keys.clone(), archive.clone())?
            .map(|ctx| Arc::new(crate::renew::RenewHooks(Arc::new(ctx))) as _);
    if hooks.is_none() {
        tracing::info!(
            "SUBSCRIPTIONS_FILE not set: the renew timer and lifecycle reactions are off"
        );
    }
    if let Some(url) = &config.event_hub.notification_url {
        crate::eventhub::url::EventHubUrl::parse(url).map_err(StartError::EventHubUrl)?;
    }
    let payloads = payload_store(config)?;
    tracing::info!(archive = %archive.location(), keys = keys.keys().len(), "handler ready");
    let receiver = Arc::new(Receiver {
        client_state: config.client_state.clone(),
        archive: archive.clone(),
        keys: keys.clone(),
        tokens,
        payloads: payloads.clone(),
    });
    let eventhub = Arc::new(EventHubFunction {
        receiver: receiver.clone(),
        spool: Spool::new(&config.event_hub.spool_dir),
        limits: Limits::default(),
    });
    let replay = Arc::new(ReplayTimer {
        archive,
        keys,
        payloads,
        eventhub: eventhub.clone(),
    });
    Ok(AppState {
        receiver,
        max_body_bytes: config.max_body_bytes,
        hooks,
        eventhub: Some(eventhub),
        replay: Some(replay),
        max_invocation_bytes: config.event_hub.max_invocation_bytes,
    })
}
