//! The `alerts` section: where emergency-call alerts go and which events raise them.
//!
//! Every value is validated here, at start-up, so a typo in a webhook URL is an error naming the
//! setting, not a silent loss of the first emergency call. Webhook URLs carry their credential
//! (Workflows webhooks are signed in their query string), so neither an error nor a log line ever
//! shows more of a URL than its scheme and host ([`WebhookUrl`]'s `Display` and `Debug`).

use std::time::Duration;

use secrecy::SecretString;

use super::ConfigError;

/// `ALERT_RETRY_HOURS` when unset: a route that stays down longer than a day has an owner who
/// knows (the expiry is logged as an error and shown by `handler report`).
pub const DEFAULT_ALERT_RETRY_HOURS: f64 = 24.0;
/// The longest retry window accepted: a week.
pub const MAX_ALERT_RETRY_HOURS: f64 = 168.0;
/// The shortest `ALERT_WEBHOOK_SECRET` accepted (bytes): an HMAC key shorter than this is guessable.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// What raises an alert: a closed list of emergency call states (`ALERT_ON`, comma list).
///
/// Graph's `callEventType` values for an `emergencyCallEvent` are `callStarted`, `callEnded`,
/// `rosterUpdated` (and `unknownFutureValue`); `other` stands for any state Graph adds later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertTrigger {
    /// `emergencyCallEvent.callStarted` (the default): someone dialled an emergency number.
    EmergencyCallStarted,
    /// `emergencyCallEvent.callEnded`: sent as a follow-up of the call's alarm.
    EmergencyCallEnded,
    /// `emergencyCallEvent.rosterUpdated`: someone joined or left the emergency call.
    EmergencyRosterUpdated,
    /// `emergencyCallEvent.other`: a call state this version does not know.
    EmergencyOther,
}

impl AlertTrigger {
    pub const ALL: [AlertTrigger; 4] = [
        AlertTrigger::EmergencyCallStarted,
        AlertTrigger::EmergencyCallEnded,
        AlertTrigger::EmergencyRosterUpdated,
        AlertTrigger::EmergencyOther,
    ];

    /// The spelling used in `ALERT_ON` and in archived alert records.
    pub fn name(self) -> &'static str {
        match self {
            AlertTrigger::EmergencyCallStarted => "emergencyCallEvent.callStarted",
            AlertTrigger::EmergencyCallEnded => "emergencyCallEvent.callEnded",
            AlertTrigger::EmergencyRosterUpdated => "emergencyCallEvent.rosterUpdated",
            AlertTrigger::EmergencyOther => "emergencyCallEvent.other",
        }
    }

    /// The trigger an emergency call's `callEventType` falls under (case-insensitive).
    pub fn of_call_event_type(call_event_type: Option<&str>) -> Self {
        match call_event_type.map(str::to_ascii_lowercase).as_deref() {
            Some("callstarted") => AlertTrigger::EmergencyCallStarted,
            Some("callended") => AlertTrigger::EmergencyCallEnded,
            Some("rosterupdated") => AlertTrigger::EmergencyRosterUpdated,
            _ => AlertTrigger::EmergencyOther,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// A validated webhook URL. Shown (Display, Debug, logs, errors) as `scheme://host[:port]` only:
/// the path and query of a Workflows URL are its credential.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    /// `https` anywhere; `http` only on a loopback host (local tests and the demo: nothing leaves
    /// the machine). No user-info, no fragment.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        let host = url.host_str().unwrap_or_default().to_string();
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let redacted = format!("{}://{host}", url.scheme());
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(format!(
                    "{redacted}: http is allowed on loopback only; use https"
                ));
            }
            other => return Err(format!("scheme {other:?} is not https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{redacted}: credentials in the URL are not supported"
            ));
        }
        Ok(WebhookUrl(url))
    }

    /// The full URL, for the request only.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }

    /// `scheme://host[:port]`: what logs and operator output show.
    pub fn redacted(&self) -> String {
        match self.0.port() {
            Some(port) => format!(
                "{}://{}:{port}",
                self.0.scheme(),
                self.0.host_str().unwrap_or("")
            ),
            None => format!("{}://{}", self.0.scheme(), self.0.host_str().unwrap_or("")),
        }
    }

    /// A stable short id of the whole URL (the route's name in the archive): 12 hex digits of
    /// its SHA-256, which identifies the route without revealing its signature.
    pub fn fingerprint(&self) -> String {
        hex::encode(&openssl::sha::sha256(self.0.as_str().as_bytes())[..6])
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookUrl({})", self.redacted())
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `ALERT_BOT_CONVERSATION`: `serviceUrl|conversationId`, where the bot posts proactively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotConversation {
    /// The Bot Connector service URL of the conversation's region (from an activity's `serviceUrl`).
    pub service_url: WebhookUrl,
    /// The conversation (e.g. a channel's `19:...@thread.tacv2`).
    pub conversation_id: String,
}

impl BotConversation {
    fn parse(raw: &str) -> Result<Self, String> {
        let (service_url, conversation_id) = raw
            .split_once('|')
            .ok_or("expected `serviceUrl|conversationId`")?;
        let conversation_id = conversation_id.trim();
        if conversation_id.is_empty()
            || conversation_id.len() > 512
            || conversation_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(
                "the conversation id is empty or holds spaces or control characters".into(),
            );
        }
        Ok(BotConversation {
            service_url: WebhookUrl::parse(service_url.trim())?,
            conversation_id: conversation_id.to_string(),
        })
    }
}

/// Every `ALERT_*` setting.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// `ALERT_TEAMS_WEBHOOK_URLS`: Teams Workflows webhooks (comma list).
    pub teams_webhooks: Vec<WebhookUrl>,
    /// `ALERT_WEBHOOK_URLS`: generic HTTPS webhooks (comma list), signed with the secret.
    pub webhooks: Vec<WebhookUrl>,
    /// `ALERT_WEBHOOK_SECRET`: the HMAC-SHA256 key of the generic webhooks' signature.
    pub webhook_secret: Option<SecretString>,
    /// `ALERT_BOT_CONVERSATION`: a proactive message from the Teams bot.
    pub bot_conversation: Option<BotConversation>,
    /// `ALERT_ON`: what raises an alert (default `emergencyCallEvent.callStarted`).
    pub on: Vec<AlertTrigger>,
    /// `ALERT_RETRY_HOURS`: how long a failing route is retried before the alert expires.
    pub retry_for: Duration,
}

impl AlertsConfig {
    /// Whether any route is configured (no route: nothing is written to `alerts/`).
    pub fn has_routes(&self) -> bool {
        !self.teams_webhooks.is_empty()
            || !self.webhooks.is_empty()
            || self.bot_conversation.is_some()
    }

    /// Reads the section; `get` returns trimmed non-empty values.
    pub(super) fn read(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let urls = |name: &'static str| -> Result<Vec<WebhookUrl>, ConfigError> {
            let Some(list) = get(name) else {
                return Ok(Vec::new());
            };
            let mut out: Vec<WebhookUrl> = Vec::new();
            for (i, entry) in list.split(',').map(str::trim).enumerate() {
                if entry.is_empty() {
                    continue;
                }
                let url = WebhookUrl::parse(entry).map_err(|reason| ConfigError {
                    name,
                    reason: format!("entry {}: {reason}", i + 1),
                })?;
                if !out.contains(&url) {
                    out.push(url);
                }
            }
            Ok(out)
        };
        let teams_webhooks = urls("ALERT_TEAMS_WEBHOOK_URLS")?;
        let webhooks = urls("ALERT_WEBHOOK_URLS")?;
        let webhook_secret = get("ALERT_WEBHOOK_SECRET");
        match &webhook_secret {
            None if !webhooks.is_empty() => {
                return Err(ConfigError {
                    name: "ALERT_WEBHOOK_SECRET",
                    reason: "required when ALERT_WEBHOOK_URLS is set (the webhooks are signed)"
                        .into(),
                });
            }
            Some(s) if s.len() < MIN_WEBHOOK_SECRET_BYTES => {
                return Err(ConfigError {
                    name: "ALERT_WEBHOOK_SECRET",
                    reason: format!("shorter than {MIN_WEBHOOK_SECRET_BYTES} characters"),
                });
            }
            _ => {}
        }
        let bot_conversation = get("ALERT_BOT_CONVERSATION")
            .map(|raw| BotConversation::parse(&raw))
            .transpose()
            .map_err(|reason| ConfigError {
                name: "ALERT_BOT_CONVERSATION",
                reason,
            })?;
        Ok(AlertsConfig {
            teams_webhooks,
            webhooks,
            webhook_secret: webhook_secret.map(SecretString::from),
            bot_conversation,
            on: read_triggers(get("ALERT_ON"))?,
            retry_for: read_retry(get("ALERT_RETRY_HOURS"))?,
        })
    }
}

fn read_triggers(raw: Option<String>) -> Result<Vec<AlertTrigger>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(vec![AlertTrigger::EmergencyCallStarted]);
    };
    let mut on = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let trigger = AlertTrigger::parse(entry).ok_or_else(|| ConfigError {
            name: "ALERT_ON",
            reason: format!(
                "unknown value {:?}; expected a comma list of {}",
                entry.chars().take(64).collect::<String>(),
                AlertTrigger::ALL.map(AlertTrigger::name).join(", ")
            ),
        })?;
        if !on.contains(&trigger) {
            on.push(trigger);
        }
    }
    on.sort();
    Ok(on)
}

fn read_retry(raw: Option<String>) -> Result<Duration, ConfigError> {
    let hours = match raw {
        None => DEFAULT_ALERT_RETRY_HOURS,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|h| h.is_finite() && *h > 0.0 && *h <= MAX_ALERT_RETRY_HOURS)
            .ok_or_else(|| ConfigError {
                name: "ALERT_RETRY_HOURS",
                reason: format!(
                    "not a number of hours above 0 and at most {MAX_ALERT_RETRY_HOURS}: {:?}",
                    v.chars().take(32).collect::<String>()
                ),
            })?,
    };
    Ok(Duration::from_secs_f64(hours * 3600.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<AlertsConfig, ConfigError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        AlertsConfig::read(&|k| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn defaults_alert_on_call_started_for_a_day_and_have_no_routes() {
        let c = read(&[]).unwrap();
        assert_eq!(c.on, vec![AlertTrigger::EmergencyCallStarted]);
        assert_eq!(c.retry_for, Duration::from_secs(24 * 3600));
        assert!(!c.has_routes());
    }

    #[test]
    fn routes_and_triggers_parse() {
        let c = read(&[
            (
                "ALERT_TEAMS_WEBHOOK_URLS",
                "https://prod.westeurope.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=SECRET, http://127.0.0.1:9/hook",
            ),
            ("ALERT_WEBHOOK_URLS", "https://desk.example/alerts"),
            ("ALERT_WEBHOOK_SECRET", "0123456789abcdef"),
            (
                "ALERT_BOT_CONVERSATION",
                "https://smba.trafficmanager.net/emea/|19:abc@thread.tacv2",
            ),
            (
                "ALERT_ON",
                "emergencyCallEvent.callEnded, EMERGENCYCALLEVENT.callStarted",
            ),
            ("ALERT_RETRY_HOURS", "0.5"),
        ])
        .unwrap();
        assert_eq!(c.teams_webhooks.len(), 2);
        assert_eq!(
            c.teams_webhooks[0].to_string(),
            "https://prod.westeurope.logic.azure.com"
        );
        assert!(!format!("{c:?}").contains("SECRET"));
        assert_eq!(c.teams_webhooks[1].redacted(), "http://127.0.0.1:9");
        assert_eq!(
            c.on,
            vec![
                AlertTrigger::EmergencyCallStarted,
                AlertTrigger::EmergencyCallEnded
            ]
        );
        assert_eq!(c.retry_for, Duration::from_secs(1800));
        let bot = c.bot_conversation.unwrap();
        assert_eq!(bot.conversation_id, "19:abc@thread.tacv2");
    }

    #[test]
    fn bad_settings_are_named_without_the_url_secret() {
        for (pairs, name) in [
            (
                vec![(
                    "ALERT_TEAMS_WEBHOOK_URLS",
                    "http://hooks.example/x?sig=s3cr3t",
                )],
                "ALERT_TEAMS_WEBHOOK_URLS",
            ),
            (
                vec![("ALERT_TEAMS_WEBHOOK_URLS", "not a url s3cr3t")],
                "ALERT_TEAMS_WEBHOOK_URLS",
            ),
            (
                vec![("ALERT_WEBHOOK_URLS", "https://u:s3cr3t@desk.example/")],
                "ALERT_WEBHOOK_URLS",
            ),
            (
                vec![("ALERT_WEBHOOK_URLS", "https://desk.example/")],
                "ALERT_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("ALERT_WEBHOOK_URLS", "https://desk.example/"),
                    ("ALERT_WEBHOOK_SECRET", "short"),
                ],
                "ALERT_WEBHOOK_SECRET",
            ),
            (
                vec![("ALERT_BOT_CONVERSATION", "19:abc@thread.tacv2")],
                "ALERT_BOT_CONVERSATION",
            ),
            (vec![("ALERT_ON", "callStarted")], "ALERT_ON"),
            (vec![("ALERT_RETRY_HOURS", "0")], "ALERT_RETRY_HOURS"),
            (vec![("ALERT_RETRY_HOURS", "NaN")], "ALERT_RETRY_HOURS"),
        ] {
            let e = read(&pairs).unwrap_err();
            assert_eq!(e.name, name, "{pairs:?}");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn call_event_types_map_to_triggers() {
        assert_eq!(
            AlertTrigger::of_call_event_type(Some("callStarted")),
            AlertTrigger::EmergencyCallStarted
        );
        assert_eq!(
            AlertTrigger::of_call_event_type(Some("CALLENDED")),
            AlertTrigger::EmergencyCallEnded
        );
        assert_eq!(
            AlertTrigger::of_call_event_type(None),
            AlertTrigger::EmergencyOther
        );
    }
}
