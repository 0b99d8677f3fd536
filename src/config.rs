//! Typed settings, read once from the environment.
//!
//! Azure Functions passes app settings to the custom handler as environment variables, so the
//! environment is the only configuration source. The variable names are a contract shared with
//! `local.settings.json`, `infra/` and the README.

use std::path::PathBuf;

use secrecy::SecretString;

mod alerts;
pub use alerts::{AlertTrigger, AlertsConfig, BotConversation, WebhookUrl};

/// Default notification body limit: 4 MiB (Graph batches are far smaller; this bounds memory).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// Port used when the Functions host does not set `FUNCTIONS_CUSTOMHANDLER_PORT`.
pub const DEFAULT_PORT: u16 = 7071;
/// Filesystem archive used when no archive is configured (the embedded default).
pub const DEFAULT_ARCHIVE_DIR: &str = "./data/archive";
/// Blob container used when `ARCHIVE_CONTAINER` is unset.
pub const DEFAULT_ARCHIVE_CONTAINER: &str = "teams-notifications";
pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com";
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// A configuration value that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

/// Where archived objects go.
#[derive(Debug, Clone)]
pub enum ArchiveConfig {
    /// `ARCHIVE_DIR`, or the embedded default `./data/archive`.
    Filesystem(PathBuf),
    /// `ARCHIVE_CONNECTION`: a storage connection string (`UseDevelopmentStorage=true` = Azurite).
    BlobConnectionString {
        connection_string: SecretString,
        container: String,
    },
    /// `ARCHIVE_ACCOUNT_URL`: an account URL reached with managed identity.
    BlobAccountUrl {
        account_url: String,
        container: String,
    },
}

/// Default largest eventHubTrigger invocation: 128 MiB. host.json's `maxEventBatchSize` (100)
/// times Event Hubs' 1 MB event limit, with room for the host's JSON-in-a-string encoding.
pub const DEFAULT_MAX_INVOCATION_BYTES: u64 = 128 * 1024 * 1024;
/// Spool folder used when `EVENTHUB_SPOOL_DIR` is unset.
pub const DEFAULT_SPOOL_DIR: &str = "./data/spool";

/// Graph's Event Hubs delivery.
#[derive(Debug, Clone)]
pub struct EventHubConfig {
    /// `EVENTHUB_NOTIFICATION_URL`: the `EventHub:` URL given to Graph for subscriptions with
    /// `"delivery": "eventHub"` (checked by the renewer's desired-state reader).
    pub notification_url: Option<String>,
    /// `EVENTHUB_PAYLOAD_CONTAINER_URL`: the container Graph leaves payloads over 1 MB in.
    pub payload_container_url: Option<String>,
    /// `EVENTHUB_SPOOL_DIR`: where a batch the archive could not take is kept.
    pub spool_dir: PathBuf,
    /// `EVENTHUB_MAX_INVOCATION_BYTES`: the largest invocation body read.
    pub max_invocation_bytes: u64,
}

/// A local certificate from `NOTIFICATION_CERTIFICATES` (`path` or `id=path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCertificate {
    /// The `encryptionCertificateId` given to Graph; when absent the file stem is used.
    pub id: Option<String>,
    pub path: PathBuf,
}

/// Every setting of the handler. Built once at start-up and passed explicitly.
#[derive(Debug, Clone)]
pub struct Config {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: the port the Functions host forwards requests to.
    pub port: u16,
    /// `GRAPH_TENANT_ID` (comma list): tenants whose notifications are accepted; the renewer's tenant is the first.
    pub tenant_ids: Vec<String>,
    /// `GRAPH_CLIENT_ID` (comma list): audiences of validationTokens; the renewer's app is the first.
    pub client_ids: Vec<String>,
    /// `GRAPH_CLIENT_SECRET`: optional; without it the renewer uses managed or workload identity.
    pub client_secret: Option<SecretString>,
    /// `NOTIFICATION_CLIENT_STATE`: the shared secret Graph echoes in every notification.
    pub client_state: Option<SecretString>,
    /// `NOTIFICATION_URL`: the public notification URL given to Graph.
    pub notification_url: Option<String>,
    /// `LIFECYCLE_NOTIFICATION_URL`: the public lifecycle URL given to Graph.
    pub lifecycle_notification_url: Option<String>,
    /// `KEY_VAULT_URL`: the vault holding the decryption certificate.
    pub key_vault_url: Option<String>,
    /// `NOTIFICATION_CERTIFICATE_NAME`: the certificate's name in Key Vault.
    pub certificate_name: Option<String>,
    /// `NOTIFICATION_CERTIFICATES`: local certificate files.
    pub local_certificates: Vec<LocalCertificate>,
    /// `NOTIFICATION_CERTIFICATE_PASSWORD`: the password of local PFX files (default empty).
    pub certificate_password: SecretString,
    /// The archive backend.
    pub archive: ArchiveConfig,
    /// `SUBSCRIPTIONS_FILE`: the desired subscriptions the renewer reconciles.
    pub subscriptions_file: Option<PathBuf>,
    /// `GRAPH_ENDPOINT`, without a trailing slash.
    pub graph_endpoint: String,
    /// `AUTHORITY_HOST`, without a trailing slash.
    pub authority_host: String,
    /// `MAX_BODY_BYTES`: the largest notification body accepted.
    pub max_body_bytes: u64,
    /// The Teams bot; `None` when `BOT_APP_ID` is unset (the messaging endpoint refuses all).
    pub bot: Option<BotConfig>,
    /// `SSL_CERT_FILE`: extra CA certificates outbound TLS trusts (beside the system roots).
    pub ssl_cert_file: Option<PathBuf>,
    /// `RENEW_WHEN_REMAINING` and the reconcile's other tuning.
    pub reconcile: ReconcileOptions,
    /// `MAX_ITEMS_PER_REQUEST`, `BODY_READ_TIMEOUT_S`, `SHUTDOWN_DRAIN_S`.
    pub limits: Limits,
    /// Event Hubs delivery.
    pub event_hub: EventHubConfig,
    /// The `ALERT_*` settings: emergency-call alert routes.
    pub alerts: AlertsConfig,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (tests pass a map instead of mutating the process env).
    /// Empty values count as unset, as they do in the Functions portal.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup: &dyn Fn(&str) -> Option<String> = &lookup;
        let (port, max_body_bytes) = server_settings(lookup)?;
        let (tenant_ids, client_ids, client_secret, graph_endpoint, authority_host) =
            identity_settings(lookup);
        let archive = archive_settings(lookup);
        let (
            client_state,
            key_vault_url,
            certificate_name,
            local_certificates,
            certificate_password,
        ) = key_settings(lookup)?;
        let (notification_url, lifecycle_notification_url, subscriptions_file) =
            renewer_settings(lookup);
        Ok(Config {
            port,
            tenant_ids,
            client_ids,
            client_secret,
            client_state,
            notification_url,
            lifecycle_notification_url,
            key_vault_url,
            certificate_name,
            local_certificates,
            certificate_password,
            archive,
            subscriptions_file,
            graph_endpoint,
            authority_host,
            max_body_bytes,
            alerts: AlertsConfig::read(&|name| setting(lookup, name))?,
            bot: BotConfig::from_lookup(lookup)?,
            ssl_cert_file: setting(lookup, "SSL_CERT_FILE").map(PathBuf::from),
            reconcile: ReconcileOptions::from_lookup(|name| setting(lookup, name))?,
            limits: Limits::from_lookup(|name| setting(lookup, name))?,
            event_hub: event_hub_settings(lookup)?,
        })
    }
}

/// Default share of the lifetime left under which a subscription is renewed.
pub const DEFAULT_RENEW_WHEN_REMAINING: f64 = 0.5;

/// Tuning of the renewer's reconcile.
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

/// Bounded work and timeouts: what one request, one slow client and a shutdown may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `MAX_ITEMS_PER_REQUEST` (default 1,000, far above Graph's batches): more is a 413.
    pub max_items_per_request: usize,
    /// `BODY_READ_TIMEOUT_S` (default 30): a body not received by then is a 408.
    pub body_read_timeout: std::time::Duration,
    /// `SHUTDOWN_DRAIN_S` (default 10): in-flight requests get this long after SIGTERM.
    pub shutdown_drain: std::time::Duration,
}

pub const DEFAULT_MAX_ITEMS_PER_REQUEST: usize = 1_000;
pub const DEFAULT_BODY_READ_TIMEOUT_S: u64 = 30;
pub const DEFAULT_SHUTDOWN_DRAIN_S: u64 = 10;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_items_per_request: DEFAULT_MAX_ITEMS_PER_REQUEST,
            body_read_timeout: std::time::Duration::from_secs(DEFAULT_BODY_READ_TIMEOUT_S),
            shutdown_drain: std::time::Duration::from_secs(DEFAULT_SHUTDOWN_DRAIN_S),
        }
    }
}

impl Limits {
    /// Reads the three settings; empty means the default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let positive = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConfigError {
                        name,
                        reason: format!("not a positive whole number: {v:?}"),
                    }),
            }
        };
        Ok(Limits {
            max_items_per_request: positive(
                "MAX_ITEMS_PER_REQUEST",
                DEFAULT_MAX_ITEMS_PER_REQUEST as u64,
            )? as usize,
            body_read_timeout: std::time::Duration::from_secs(positive(
                "BODY_READ_TIMEOUT_S",
                DEFAULT_BODY_READ_TIMEOUT_S,
            )?),
            shutdown_drain: std::time::Duration::from_secs(positive(
                "SHUTDOWN_DRAIN_S",
                DEFAULT_SHUTDOWN_DRAIN_S,
            )?),
        })
    }
}

/// `LOG_FORMAT`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// `json`: one JSON object per line (what Application Insights ingests best).
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` from the process environment (before anything else, since the log
    /// subscriber is installed first).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match lookup("LOG_FORMAT").map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(LogFormat::Text),
            Some(v) if v.is_empty() || v == "text" => Ok(LogFormat::Text),
            Some(v) if v == "json" => Ok(LogFormat::Json),
            Some(v) => Err(ConfigError {
                name: "LOG_FORMAT",
                reason: format!("expected `text` or `json`, got {v:?}"),
            }),
        }
    }
}

/// A setting, trimmed; empty counts as unset.
fn setting(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A comma-separated setting, items trimmed, empty items dropped.
fn setting_list(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    setting(lookup, name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A URL setting without its trailing slash, `default` when unset.
fn setting_url(lookup: &dyn Fn(&str) -> Option<String>, name: &str, default: &str) -> String {
    setting(lookup, name)
        .unwrap_or_else(|| default.into())
        .trim_end_matches('/')
        .to_string()
}

/// Event Hubs delivery: `EVENTHUB_NOTIFICATION_URL`, `EVENTHUB_PAYLOAD_CONTAINER_URL`,
/// `EVENTHUB_SPOOL_DIR`, `EVENTHUB_MAX_INVOCATION_BYTES`.
fn event_hub_settings(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<EventHubConfig, ConfigError> {
    let max_invocation_bytes = match setting(lookup, "EVENTHUB_MAX_INVOCATION_BYTES") {
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError {
                name: "EVENTHUB_MAX_INVOCATION_BYTES",
                reason: format!("not a positive number of bytes: {v:?}"),
            })?,
        None => DEFAULT_MAX_INVOCATION_BYTES,
    };
    Ok(EventHubConfig {
        notification_url: setting(lookup, "EVENTHUB_NOTIFICATION_URL"),
        payload_container_url: setting(lookup, "EVENTHUB_PAYLOAD_CONTAINER_URL"),
        spool_dir: setting(lookup, "EVENTHUB_SPOOL_DIR")
            .unwrap_or_else(|| DEFAULT_SPOOL_DIR.into())
            .into(),
        max_invocation_bytes,
    })
}

/// The server: `FUNCTIONS_CUSTOMHANDLER_PORT` and `MAX_BODY_BYTES`.
fn server_settings(lookup: &dyn Fn(&str) -> Option<String>) -> Result<(u16, u64), ConfigError> {
    let port = match setting(lookup, "FUNCTIONS_CUSTOMHANDLER_PORT") {
        Some(v) => v.parse().map_err(|_| ConfigError {
            name: "FUNCTIONS_CUSTOMHANDLER_PORT",
            reason: format!("not a port number: {v:?}"),
        })?,
        None => DEFAULT_PORT,
    };
    let max_body_bytes = match setting(lookup, "MAX_BODY_BYTES") {
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError {
                name: "MAX_BODY_BYTES",
                reason: format!("not a positive number of bytes: {v:?}"),
            })?,
        None => DEFAULT_MAX_BODY_BYTES,
    };
    Ok((port, max_body_bytes))
}

/// Who we are and whom we ask: tenants, client ids, the client secret, `GRAPH_ENDPOINT` and
/// `AUTHORITY_HOST`.
#[allow(clippy::type_complexity)]
fn identity_settings(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (
    Vec<String>,
    Vec<String>,
    Option<SecretString>,
    String,
    String,
) {
    (
        setting_list(lookup, "GRAPH_TENANT_ID"),
        setting_list(lookup, "GRAPH_CLIENT_ID"),
        setting(lookup, "GRAPH_CLIENT_SECRET").map(SecretString::from),
        setting_url(lookup, "GRAPH_ENDPOINT", DEFAULT_GRAPH_ENDPOINT),
        setting_url(lookup, "AUTHORITY_HOST", DEFAULT_AUTHORITY_HOST),
    )
}

/// The archive: `ARCHIVE_CONNECTION`, else `ARCHIVE_ACCOUNT_URL`, else `ARCHIVE_DIR`.
fn archive_settings(lookup: &dyn Fn(&str) -> Option<String>) -> ArchiveConfig {
    let container =
        setting(lookup, "ARCHIVE_CONTAINER").unwrap_or_else(|| DEFAULT_ARCHIVE_CONTAINER.into());
    if let Some(cs) = setting(lookup, "ARCHIVE_CONNECTION") {
        ArchiveConfig::BlobConnectionString {
            connection_string: SecretString::from(cs),
            container,
        }
    } else if let Some(url) = setting(lookup, "ARCHIVE_ACCOUNT_URL") {
        ArchiveConfig::BlobAccountUrl {
            account_url: url.trim_end_matches('/').to_string(),
            container,
        }
    } else {
        ArchiveConfig::Filesystem(
            setting(lookup, "ARCHIVE_DIR")
                .unwrap_or_else(|| DEFAULT_ARCHIVE_DIR.into())
                .into(),
        )
    }
}

/// Secrets and certificates: the client state, the Key Vault certificate, local certificate
/// files and their password (kept as given: a password may start or end with spaces).
#[allow(clippy::type_complexity)]
fn key_settings(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<
    (
        Option<SecretString>,
        Option<String>,
        Option<String>,
        Vec<LocalCertificate>,
        SecretString,
    ),
    ConfigError,
> {
    let local_certificates = setting_list(lookup, "NOTIFICATION_CERTIFICATES")
        .into_iter()
        .map(|entry| parse_local_certificate(&entry))
        .collect::<Result<_, _>>()?;
    Ok((
        setting(lookup, "NOTIFICATION_CLIENT_STATE").map(SecretString::from),
        setting(lookup, "KEY_VAULT_URL"),
        setting(lookup, "NOTIFICATION_CERTIFICATE_NAME"),
        local_certificates,
        SecretString::from(lookup("NOTIFICATION_CERTIFICATE_PASSWORD").unwrap_or_default()),
    ))
}

/// The renewer: the notification and lifecycle URLs given to Graph, and `SUBSCRIPTIONS_FILE`.
fn renewer_settings(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (Option<String>, Option<String>, Option<PathBuf>) {
    (
        setting(lookup, "NOTIFICATION_URL"),
        setting(lookup, "LIFECYCLE_NOTIFICATION_URL"),
        setting(lookup, "SUBSCRIPTIONS_FILE").map(PathBuf::from),
    )
}

/// `path` or `id=path`. A Windows-style `C:\...` path has no `=`, so the split is unambiguous.
fn parse_local_certificate(entry: &str) -> Result<LocalCertificate, ConfigError> {
    let (id, path) = match entry.split_once('=') {
        Some((id, path)) => (Some(id.trim().to_string()), path.trim()),
        None => (None, entry),
    };
    if path.is_empty() || id.as_deref() == Some("") {
        return Err(ConfigError {
            name: "NOTIFICATION_CERTIFICATES",
            reason: format!("expected `path` or `id=path`, got {entry:?}"),
        });
    }
    Ok(LocalCertificate {
        id,
        path: PathBuf::from(path),
    })
}

/// Where the Bot Connector publishes its signing keys (`BOT_OPENID_METADATA` overrides it).
pub const DEFAULT_BOT_OPENID_METADATA: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";

/// Default `MEETING_SUBSCRIPTION_GRACE_MIN`.
pub const DEFAULT_MEETING_SUBSCRIPTION_GRACE_MIN: u64 = 30;

/// The Teams bot's settings.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// `BOT_APP_ID`: the bot's Entra app (the audience of the Bot Connector's tokens; the
    /// identity of its outbound calls).
    pub app_id: String,
    /// `BOT_TENANT_ID`: the single-tenant bot's tenant (Entra-issued tokens of it are accepted;
    /// the outbound token is asked from it).
    pub tenant_id: Option<String>,
    /// `BOT_CLIENT_SECRET`: optional; without it the bot's outbound token comes from the managed
    /// identity whose client id is `BOT_APP_ID`.
    pub client_secret: Option<SecretString>,
    /// `BOT_OPENID_METADATA`: where the Bot Connector's signing keys are published.
    pub openid_metadata: String,
    /// `BOT_SERVICE_URL_HOSTS` (comma list): replaces the Bot Framework hosts the bot may call
    /// (tests, new clouds); `None` keeps the default list.
    pub service_url_hosts: Option<Vec<String>>,
    /// `MEETING_SUBSCRIPTION_GRACE_MIN`: how long a meeting's call-event subscription outlives
    /// the meeting's end.
    pub meeting_grace: std::time::Duration,
}

impl BotConfig {
    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let get = |name: &str| setting(lookup, name);
        let grace = match get("MEETING_SUBSCRIPTION_GRACE_MIN") {
            Some(v) => v.parse::<u64>().ok().ok_or_else(|| ConfigError {
                name: "MEETING_SUBSCRIPTION_GRACE_MIN",
                reason: format!("not a whole number of minutes: {v:?}"),
            })?,
            None => DEFAULT_MEETING_SUBSCRIPTION_GRACE_MIN,
        };
        let Some(app_id) = get("BOT_APP_ID") else {
            return Ok(None);
        };
        let hosts = setting_list(lookup, "BOT_SERVICE_URL_HOSTS");
        Ok(Some(BotConfig {
            app_id,
            tenant_id: get("BOT_TENANT_ID"),
            client_secret: get("BOT_CLIENT_SECRET").map(SecretString::from),
            openid_metadata: get("BOT_OPENID_METADATA")
                .unwrap_or_else(|| DEFAULT_BOT_OPENID_METADATA.into()),
            service_url_hosts: (!hosts.is_empty()).then_some(hosts),
            meeting_grace: std::time::Duration::from_secs(grace * 60),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_azure() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 7071);
        assert_eq!(c.max_body_bytes, 4 * 1024 * 1024);
        assert!(
            matches!(c.archive, ArchiveConfig::Filesystem(ref p) if p == &PathBuf::from("./data/archive"))
        );
        assert_eq!(c.graph_endpoint, "https://graph.microsoft.com");
        assert!(c.client_state.is_none());
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.limits.max_items_per_request, 1_000);
    }

    #[test]
    fn limits_and_log_format_parse() {
        let c = config(&[
            ("MAX_ITEMS_PER_REQUEST", "5"),
            ("BODY_READ_TIMEOUT_S", "2"),
            ("SHUTDOWN_DRAIN_S", " 3 "),
        ])
        .unwrap();
        assert_eq!(c.limits.max_items_per_request, 5);
        assert_eq!(c.limits.body_read_timeout.as_secs(), 2);
        assert_eq!(c.limits.shutdown_drain.as_secs(), 3);
        for name in [
            "MAX_ITEMS_PER_REQUEST",
            "BODY_READ_TIMEOUT_S",
            "SHUTDOWN_DRAIN_S",
        ] {
            assert_eq!(config(&[(name, "0")]).unwrap_err().name, name);
        }
        let format = |v: &str| LogFormat::from_lookup(|_| Some(v.to_string()));
        assert_eq!(format("JSON").unwrap(), LogFormat::Json);
        assert_eq!(format("").unwrap(), LogFormat::Text);
        assert_eq!(format("xml").unwrap_err().name, "LOG_FORMAT");
        assert_eq!(c.event_hub.max_invocation_bytes, 128 * 1024 * 1024);
        assert_eq!(c.event_hub.spool_dir, PathBuf::from("./data/spool"));
        assert!(c.event_hub.payload_container_url.is_none());
    }

    #[test]
    fn lists_and_certificates_parse() {
        let c = config(&[
            ("GRAPH_TENANT_ID", "t1, t2"),
            ("NOTIFICATION_CERTIFICATES", "a.pem, old=b.pfx"),
            ("ARCHIVE_CONNECTION", "UseDevelopmentStorage=true"),
            ("GRAPH_ENDPOINT", "http://127.0.0.1:1/"),
        ])
        .unwrap();
        assert_eq!(c.tenant_ids, vec!["t1", "t2"]);
        assert_eq!(
            c.local_certificates,
            vec![
                LocalCertificate {
                    id: None,
                    path: "a.pem".into()
                },
                LocalCertificate {
                    id: Some("old".into()),
                    path: "b.pfx".into()
                },
            ]
        );
        assert!(
            matches!(c.archive, ArchiveConfig::BlobConnectionString { ref container, .. } if container == "teams-notifications")
        );
        assert_eq!(c.graph_endpoint, "http://127.0.0.1:1");
    }

    #[test]
    fn bot_settings_parse_with_defaults() {
        assert!(config(&[]).unwrap().bot.is_none());
        let c = config(&[
            ("BOT_APP_ID", "bot"),
            ("BOT_SERVICE_URL_HOSTS", "http://127.0.0.1:9, *.example.org"),
        ])
        .unwrap();
        let bot = c.bot.unwrap();
        assert_eq!(
            bot.openid_metadata,
            "https://login.botframework.com/v1/.well-known/openidconfiguration"
        );
        assert_eq!(bot.meeting_grace, std::time::Duration::from_secs(30 * 60));
        assert_eq!(
            bot.service_url_hosts.unwrap(),
            ["http://127.0.0.1:9", "*.example.org"]
        );
        assert_eq!(
            config(&[
                ("BOT_APP_ID", "b"),
                ("MEETING_SUBSCRIPTION_GRACE_MIN", "-1")
            ])
            .unwrap_err()
            .name,
            "MEETING_SUBSCRIPTION_GRACE_MIN"
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            config(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "x")])
                .unwrap_err()
                .name,
            "FUNCTIONS_CUSTOMHANDLER_PORT"
        );
        assert_eq!(
            config(&[("MAX_BODY_BYTES", "0")]).unwrap_err().name,
            "MAX_BODY_BYTES"
        );
        assert_eq!(
            config(&[("EVENTHUB_MAX_INVOCATION_BYTES", "-1")])
                .unwrap_err()
                .name,
            "EVENTHUB_MAX_INVOCATION_BYTES"
        );
        assert_eq!(
            config(&[("NOTIFICATION_CERTIFICATES", "=x")])
                .unwrap_err()
                .name,
            "NOTIFICATION_CERTIFICATES"
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
}
