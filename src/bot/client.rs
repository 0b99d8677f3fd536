//! The bot's outbound side: the Bot APIs of Microsoft's "Meeting apps APIs" document and the Bot
//! Connector's conversation API, called with the bot's own token.
//!
//! - `GET {serviceUrl}/v1/meetings/{meetingId}`: meeting details;
//! - `GET {serviceUrl}/v1/meetings/{meetingId}/participants/{participantId}?tenantId=…`: one
//!   participant (role, `inMeeting`);
//! - `POST {serviceUrl}/v3/conversations/{conversationId}/activities`: a proactive message;
//! - `PUT {serviceUrl}/v3/conversations/{conversationId}/activities/{activityId}`: replaces a
//!   message the bot sent (the emergency alert's card, when the call ends).
//!
//! The token is for [`BOT_API_SCOPE`], from the credential the caller gives (the bot's app id and
//! client secret against `AUTHORITY_HOST`/`BOT_TENANT_ID`, or its managed identity).
//!
//! `serviceUrl` comes from an activity, so it is used only when its host is a Bot Framework host
//! ([`ServiceUrlPolicy`]): the bot's token never goes to a URL an attacker chose.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// The scope of the bot's token for the Bot Connector and the Bot APIs.
pub(crate) const BOT_API_SCOPE: &str = "https://api.botframework.com/.default";
/// Answers larger than this are refused (meeting details and participants are a few KiB).
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Bot API calls are enrichment or alerts: bounded, never waited on for long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The hosts whose `serviceUrl` the bot calls by default: the Bot Framework's own
/// (`*.botframework.com`), Teams' public-cloud Bot Connector (`smba.trafficmanager.net`, every
/// region under its path), and the government clouds' (GCC, GCC High, DoD). Not
/// `*.trafficmanager.net`: anyone can create a Traffic Manager profile under it.
pub(crate) const DEFAULT_SERVICE_URL_HOSTS: &[&str] = &[
    "*.botframework.com",
    "smba.trafficmanager.net",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
];

/// `encodeURIComponent`: what the Bot Framework SDKs apply to ids in these paths.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Why a Bot API call did not give an answer. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum BotApiError {
    #[error("serviceUrl {0:?} is not a Bot Framework host; not called")]
    ServiceUrlNotAllowed(String),
    #[error("cannot get the bot's token: {0}")]
    Token(#[source] azure_core::Error),
    #[error("{method} {path}: {source}")]
    Request {
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: HTTP {status}")]
    Status {
        method: &'static str,
        path: String,
        status: u16,
    },
    /// The call succeeded (`status`, a 2xx) but its answer was too large to read.
    #[error("{method} {path}: answer larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge {
        method: &'static str,
        path: String,
        status: u16,
    },
    /// The call succeeded (`status`, a 2xx) but its answer is not JSON.
    #[error("{method} {path}: answer is not JSON: {source}")]
    Json {
        method: &'static str,
        path: String,
        status: u16,
        #[source]
        source: serde_json::Error,
    },
}

impl BotApiError {
    /// The HTTP status the Bot API answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            BotApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What the Bot Connector answered a send or an update: a `ResourceResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceResponse {
    /// The 2xx status (the connector answers 200 or 201).
    pub status: u16,
    /// The activity's id, when the answer names one.
    pub id: Option<String>,
}

impl From<(u16, Value)> for ResourceResponse {
    fn from((status, answer): (u16, Value)) -> Self {
        let id = answer.get("id").and_then(Value::as_str).map(str::to_owned);
        ResourceResponse { status, id }
    }
}

/// One allowed host: `host`, `*.suffix`, or a whole origin `scheme://host[:port]` (the only way
/// to allow `http` or a port, for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    Exact(String),
    Suffix(String),
    Origin(String),
}

/// Which `serviceUrl`s the bot may call: `BOT_SERVICE_URL_HOSTS` (tests, new clouds) replaces
/// [`DEFAULT_SERVICE_URL_HOSTS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrlPolicy {
    rules: Vec<HostRule>,
}

impl Default for ServiceUrlPolicy {
    fn default() -> Self {
        Self::new(DEFAULT_SERVICE_URL_HOSTS.iter().copied())
    }
}

impl ServiceUrlPolicy {
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> Self {
        let rules = entries
            .into_iter()
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .map(|e| {
                if e.contains("://") {
                    HostRule::Origin(e.trim_end_matches('/').to_owned())
                } else if let Some(suffix) = e.strip_prefix("*.") {
                    HostRule::Suffix(format!(".{suffix}"))
                } else {
                    HostRule::Exact(e)
                }
            })
            .collect();
        Self { rules }
    }

    /// The URL to call, when `service_url` is an allowed https URL without credentials, query
    /// or fragment; `None` otherwise.
    pub fn check(&self, service_url: &str) -> Option<url::Url> {
        let url = url::Url::parse(service_url.trim()).ok()?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let origin = url.origin().ascii_serialization().to_ascii_lowercase();
        let default_https = url.scheme() == "https" && url.port().is_none();
        self.rules
            .iter()
            .any(|rule| match rule {
                HostRule::Exact(h) => default_https && host == *h,
                HostRule::Suffix(s) => default_https && host.ends_with(s.as_str()),
                HostRule::Origin(o) => origin == *o,
            })
            .then_some(url)
    }
}

/// The Bot Connector / Bot APIs client. Cheap to clone.
#[derive(Clone)]
pub struct ConnectorClient {
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    policy: ServiceUrlPolicy,
}

impl std::fmt::Debug for ConnectorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorClient")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ConnectorClient {
    pub fn new(
        http: reqwest::Client,
        credential: Arc<dyn TokenCredential>,
        policy: ServiceUrlPolicy,
    ) -> Self {
        Self {
            http,
            credential,
            policy,
        }
    }

    pub fn policy(&self) -> &ServiceUrlPolicy {
        &self.policy
    }

    /// `GET {serviceUrl}/v1/meetings/{meetingId}`: the meeting's details.
    pub async fn meeting(&self, service_url: &str, meeting_id: &str) -> Result<Value, BotApiError> {
        let path = format!("v1/meetings/{}", component(meeting_id));
        let (_, answer) = self
            .call(reqwest::Method::GET, service_url, &path, None)
            .await?;
        Ok(answer)
    }

    /// `GET {serviceUrl}/v1/meetings/{meetingId}/participants/{participantId}?tenantId=…`.
    pub async fn participant(
        &self,
        service_url: &str,
        meeting_id: &str,
        participant_id: &str,
        tenant_id: &str,
    ) -> Result<Value, BotApiError> {
        let path = format!(
            "v1/meetings/{}/participants/{}?tenantId={}",
            component(meeting_id),
            component(participant_id),
            component(tenant_id)
        );
        let (_, answer) = self
            .call(reqwest::Method::GET, service_url, &path, None)
            .await?;
        Ok(answer)
    }

    /// `POST {serviceUrl}/v3/conversations/{conversationId}/activities`: sends `activity` (a
    /// Bot Framework activity, e.g. `{"type":"message","text":…}`) proactively; the answer is
    /// the connector's `ResourceResponse` (`{"id": …}`).
    pub async fn send_to_conversation(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity: &Value,
    ) -> Result<ResourceResponse, BotApiError> {
        let path = format!("v3/conversations/{}/activities", component(conversation_id));
        let answer = self
            .call(reqwest::Method::POST, service_url, &path, Some(activity))
            .await?;
        Ok(ResourceResponse::from(answer))
    }

    /// `PUT {serviceUrl}/v3/conversations/{conversationId}/activities/{activityId}`: replaces
    /// the bot's earlier message `activity_id` (the id a send answered) with `activity`; the
    /// answer is a `ResourceResponse`.
    pub async fn update_activity(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<ResourceResponse, BotApiError> {
        let path = format!(
            "v3/conversations/{}/activities/{}",
            component(conversation_id),
            component(activity_id)
        );
        let answer = self
            .call(reqwest::Method::PUT, service_url, &path, Some(activity))
            .await?;
        Ok(ResourceResponse::from(answer))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        service_url: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), BotApiError> {
        let name: &'static str = match method {
            reqwest::Method::POST => "POST",
            reqwest::Method::PUT => "PUT",
            _ => "GET",
        };
        let base = self
            .policy
            .check(service_url)
            .ok_or_else(|| BotApiError::ServiceUrlNotAllowed(shorten(service_url)))?;
        let url = format!("{}/{path}", base.as_str().trim_end_matches('/'));
        // The path names ids only; the log and errors show it without the host.
        let shown = path.split('?').next().unwrap_or_default().to_owned();
        let token = self
            .credential
            .get_token(&[BOT_API_SCOPE], None)
            .await
            .map_err(BotApiError::Token)?;
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(token.token.secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(CALL_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let request_error = |source| BotApiError::Request {
            method: name,
            path: shown.clone(),
            source: without_url(source),
        };
        let mut response = request.send().await.map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(BotApiError::Status {
                method: name,
                path: shown,
                status: status.as_u16(),
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(BotApiError::TooLarge {
                    method: name,
                    path: shown,
                    status: status.as_u16(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status.as_u16(), Value::Null));
        }
        let answer = serde_json::from_slice(&bytes).map_err(|source| BotApiError::Json {
            method: name,
            path: shown,
            status: status.as_u16(),
            source,
        })?;
        Ok((status.as_u16(), answer))
    }
}

fn component(id: &str) -> String {
    utf8_percent_encode(id, COMPONENT).to_string()
}

fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

fn shorten(s: &str) -> String {
    crate::jwks::printable(s, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_allows_bot_framework_hosts_only() {
        let p = ServiceUrlPolicy::default();
        for ok in [
            "https://smba.trafficmanager.net/teams/",
            "https://smba.trafficmanager.net/amer/",
            "https://SMBA.trafficmanager.net/emea",
            "https://directline.botframework.com/",
            "https://smba.infra.gcc.teams.microsoft.com/teams",
            "https://smba.infra.dod.teams.microsoft.us/teams",
        ] {
            assert!(p.check(ok).is_some(), "{ok}");
        }
        for bad in [
            "http://smba.trafficmanager.net/teams/",
            "https://smba.trafficmanager.net:8443/teams/",
            "https://evil.trafficmanager.net/teams/",
            "https://botframework.com.evil.example/",
            "https://evilbotframework.com/",
            "https://user:pw@smba.trafficmanager.net/teams/",
            "https://smba.trafficmanager.net/teams/?x=1",
            "https://smba.trafficmanager.net/teams/#x",
            "https://127.0.0.1/",
            "not a url",
            "",
        ] {
            assert!(p.check(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_origin_rule_allows_exactly_that_origin() {
        let p = ServiceUrlPolicy::new(["http://127.0.0.1:4567", "*.example.org"]);
        assert!(p.check("http://127.0.0.1:4567/teams/").is_some());
        assert!(p.check("http://127.0.0.1:4568/teams/").is_none());
        assert!(p.check("https://127.0.0.1:4567/").is_none());
        assert!(p.check("https://a.example.org/").is_some());
        assert!(p.check("https://smba.trafficmanager.net/").is_none());
    }

    #[test]
    fn ids_are_encoded_as_uri_components() {
        assert_eq!(
            component("MCMxOTptZWV0aW5nX2E/Yg==+/"),
            "MCMxOTptZWV0aW5nX2E%2FYg%3D%3D%2B%2F"
        );
        assert_eq!(component("29:1a-B_c.d"), "29%3A1a-B_c.d");
    }
}
