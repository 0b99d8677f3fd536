//! Graph subscriptions: the resources we subscribe to, how long Graph lets each live, the desired
//! state read from `SUBSCRIPTIONS_FILE`, and the HTTP client of the subscriptions API.
//!
//! API: <https://learn.microsoft.com/graph/api/resources/subscription> (create: `POST
//! /subscriptions`, list: `GET /subscriptions` paged by `@odata.nextLink`, renew or move to a new
//! certificate: `PATCH /subscriptions/{id}`, `POST /subscriptions/{id}/reauthorize`, `DELETE`).
//! Errors come as `{"error": {"code", "message"}}` and surface as [`GraphError::Api`]. Throttling
//! (<https://learn.microsoft.com/graph/throttling>): 429, and 503/504 under load, carry
//! `Retry-After` in seconds; we honour it, else back off exponentially with jitter, within a
//! bounded number of attempts and a bounded total time ([`RetryPolicy`]).
//!
//! The decision of *what* to call lives in `crate::renew` (reconcile) and `crate::lifecycle`;
//! this module only knows Graph's rules and wire format.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// ---------------------------------------------------------------------------------------------
// Versions, resource kinds and lifetimes
// ---------------------------------------------------------------------------------------------

/// The Graph API version a subscription is created and maintained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ApiVersion {
    #[serde(rename = "v1.0")]
    V1,
    #[serde(rename = "beta")]
    Beta,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }

    /// `v1.0`/`v1`/`beta`, any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v1.0" | "v1" | "1.0" => Some(ApiVersion::V1),
            "beta" => Some(ApiVersion::Beta),
            _ => None,
        }
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a resource path subscribes to, as far as Graph's rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `communications/onlineMeetings(joinWebUrl='...')/meetingCallEvents` (seed 000, beta).
    MeetingCallEvents,
    /// `communications/calls/getEmergencyEventsByPolicy(policyName='...')` (seed 003, beta).
    EmergencyCallEvents,
    CallRecording,
    CallTranscript,
    Channel,
    Chat,
    ChatMessage,
    ConversationMember,
    Team,
    /// Not a Teams resource this project knows; its lifetime must be given explicitly.
    Other,
}

/// The maximum subscription lifetime per resource, in minutes, as Microsoft documents it.
///
/// Sources: the "Subscription lifetime" table of the subscription resource
/// (<https://learn.microsoft.com/graph/api/resources/subscription#subscription-lifetime>):
/// Teams callRecording, callTranscript, channel, chat, chatMessage, conversationMember and team
/// 4320 minutes (under 3 days); seed 000 (meeting call events): "the maximum expiry is 3 days";
/// seed 003 (emergency call events): "the maximum subscription lifetime is one day".
///
/// Seed 001 still says 60 minutes for Teams resources. That is the older rule, and today it is
/// the limit *without* a `lifecycleNotificationUrl`: Graph refuses an `expirationDateTime` more
/// than an hour away on these resources unless lifecycle notifications are subscribed
/// (<https://learn.microsoft.com/graph/teams-changenotifications-chatmessage>). See
/// [`ResourceKind::max_lifetime_minutes`].
pub const LIFETIMES: &[(ResourceKind, u32)] = &[
    (ResourceKind::MeetingCallEvents, 4320),
    (ResourceKind::EmergencyCallEvents, 1440),
    (ResourceKind::CallRecording, 4320),
    (ResourceKind::CallTranscript, 4320),
    (ResourceKind::Channel, 4320),
    (ResourceKind::Chat, 4320),
    (ResourceKind::ChatMessage, 4320),
    (ResourceKind::ConversationMember, 4320),
    (ResourceKind::Team, 4320),
];

/// The lifetime limit of seed 001's resources when no `lifecycleNotificationUrl` is given.
pub const WITHOUT_LIFECYCLE_URL_MINUTES: u32 = 60;

/// Requested lifetimes stay this far below Graph's maximum: Graph measures the maximum from its
/// own clock when the request arrives, so asking for exactly the maximum can be refused.
pub const LIFETIME_MARGIN_MINUTES: u32 = 5;

impl ResourceKind {
    /// Reads a resource path (leading `/` optional, `chats/{id}` or `chats('{id}')` forms).
    pub fn classify(resource: &str) -> Self {
        let path = resource.trim().trim_matches('/');
        let segments: Vec<String> = path
            .split('/')
            .map(|s| s.split('(').next().unwrap_or("").to_ascii_lowercase())
            .collect();
        let first = segments.first().map(String::as_str).unwrap_or("");
        let second = segments.get(1).map(String::as_str).unwrap_or("");
        let last = segments.last().map(String::as_str).unwrap_or("");
        match last {
            "meetingcallevents" => return ResourceKind::MeetingCallEvents,
            "getemergencyeventsbypolicy" if first == "communications" && second == "calls" => {
                return ResourceKind::EmergencyCallEvents;
            }
            "getallrecordings" | "recordings" => return ResourceKind::CallRecording,
            // "getAllTrancripts" is how seed 001 spells one of the paths.
            "getalltranscripts" | "getalltrancripts" | "transcripts" => {
                return ResourceKind::CallTranscript;
            }
            "messages" | "getallmessages" => return ResourceKind::ChatMessage,
            "members" | "getallmembers" => return ResourceKind::ConversationMember,
            "channels" | "getallchannels" => return ResourceKind::Channel,
            "installedtochats" => return ResourceKind::Chat,
            _ => {}
        }
        match (first, segments.len()) {
            ("chats", 1 | 2) => ResourceKind::Chat,
            ("teams", 1 | 2) => ResourceKind::Team,
            _ => ResourceKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::MeetingCallEvents => "meetingCallEvents",
            ResourceKind::EmergencyCallEvents => "emergencyCallEvents",
            ResourceKind::CallRecording => "callRecording",
            ResourceKind::CallTranscript => "callTranscript",
            ResourceKind::Channel => "channel",
            ResourceKind::Chat => "chat",
            ResourceKind::ChatMessage => "chatMessage",
            ResourceKind::ConversationMember => "conversationMember",
            ResourceKind::Team => "team",
            ResourceKind::Other => "other",
        }
    }

    /// Graph's documented maximum in minutes ([`LIFETIMES`]); `None` for [`ResourceKind::Other`].
    /// Seed 001's resources are limited to an hour without a lifecycle URL.
    pub fn max_lifetime_minutes(self, has_lifecycle_url: bool) -> Option<u32> {
        let max = LIFETIMES
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, m)| *m)?;
        let hour_without_lifecycle = !matches!(
            self,
            ResourceKind::MeetingCallEvents | ResourceKind::EmergencyCallEvents
        );
        Some(if hour_without_lifecycle && !has_lifecycle_url {
            max.min(WITHOUT_LIFECYCLE_URL_MINUTES)
        } else {
            max
        })
    }

    /// Only rich notifications exist for emergency call events (seed 003).
    pub fn requires_resource_data(self) -> bool {
        self == ResourceKind::EmergencyCallEvents
    }

    /// The `changeType` the seeds use where one value is the only sensible one.
    pub fn default_change_type(self) -> Option<&'static str> {
        match self {
            ResourceKind::MeetingCallEvents | ResourceKind::EmergencyCallEvents => Some("updated"),
            _ => None,
        }
    }
}

/// The API version a resource needs: meeting call events, emergency call events and the
/// `installedToOnlineMeetings` paths (marked `*` in seed 001) exist only on beta.
pub fn default_api_version(resource: &str) -> ApiVersion {
    let beta_only = matches!(
        ResourceKind::classify(resource),
        ResourceKind::MeetingCallEvents | ResourceKind::EmergencyCallEvents
    ) || resource
        .to_ascii_lowercase()
        .contains("/installedtoonlinemeetings/");
    if beta_only {
        ApiVersion::Beta
    } else {
        ApiVersion::V1
    }
}

// ---------------------------------------------------------------------------------------------
// Resource helpers (the seeds' paths)
// ---------------------------------------------------------------------------------------------

/// A resource that cannot be built from the given parts.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ResourceError(String);

/// RFC 3986 unreserved characters stay; everything else is percent-encoded with upper-case hex.
/// This is `encodeURIComponent` minus `!*'()`, which would end the OData string literal.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a meeting's join URL for `joinWebUrl='...'`. The URL is encoded as it is,
/// already-escaped sequences included (`%3a` becomes `%253a`), exactly as seed 000 shows.
pub fn encode_join_web_url(join_web_url: &str) -> String {
    utf8_percent_encode(join_web_url, COMPONENT).to_string()
}

/// `communications/onlineMeetings(joinWebUrl='{encoded}')/meetingCallEvents` from the raw join
/// URL of the meeting (onlineMeeting.joinWebUrl, or the link in the Teams client). A URL that is
/// already encoded once is taken as it is, rather than encoded twice.
pub fn meeting_call_events(join_web_url: &str) -> Result<String, ResourceError> {
    let url = join_web_url.trim();
    let lower = url.to_ascii_lowercase();
    let encoded = if lower.starts_with("https%3a%2f%2f") {
        if url.contains(['/', '?', '\'', ' ']) {
            return Err(ResourceError(
                "joinWebUrl looks half-encoded: give the raw join URL".into(),
            ));
        }
        url.to_string()
    } else if lower.starts_with("https://") && url.len() > "https://".len() {
        if url.chars().any(char::is_whitespace) {
            return Err(ResourceError("a join URL has no whitespace".into()));
        }
        encode_join_web_url(url)
    } else {
        return Err(ResourceError(format!(
            "a meeting join URL starts with https:// (got {:?})",
            truncate(url, 40)
        )));
    };
    Ok(format!(
        "communications/onlineMeetings(joinWebUrl='{encoded}')/meetingCallEvents"
    ))
}

/// `communications/calls/getEmergencyEventsByPolicy(policyName='{policy}')` (seed 003). A quote
/// in the name is doubled, as OData string literals require.
pub fn emergency_call_events(policy_name: &str) -> Result<String, ResourceError> {
    let policy = policy_name.trim();
    if policy.is_empty() {
        return Err(ResourceError("an emergency policy name is required".into()));
    }
    if policy.chars().any(|c| c.is_control() || c == '/') {
        return Err(ResourceError(format!(
            "invalid emergency policy name {:?}",
            truncate(policy, 40)
        )));
    }
    Ok(format!(
        "communications/calls/getEmergencyEventsByPolicy(policyName='{}')",
        policy.replace('\'', "''")
    ))
}

/// The Teams resource paths of seed 001. Ids are inserted as they are (Graph takes
/// `19:...@thread.v2` unescaped); an id that would change the path is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamsResource {
    /// Every recording in the tenant.
    AllRecordings,
    MeetingRecordings {
        meeting: String,
    },
    /// Recordings of meetings organised by a user.
    UserRecordings {
        user: String,
    },
    /// Recordings of meetings where an app is installed (beta).
    AppRecordings {
        app: String,
    },
    AllTranscripts,
    MeetingTranscripts {
        meeting: String,
    },
    UserTranscripts {
        user: String,
    },
    /// Transcripts of meetings where an app is installed (beta).
    AppTranscripts {
        app: String,
    },
    /// Channels of every team.
    AllChannels,
    TeamChannels {
        team: String,
    },
    /// Every chat in the tenant.
    AllChats,
    Chat {
        chat: String,
    },
    /// Chats where an app is installed.
    AppChats {
        app: String,
    },
    /// Messages in every channel of every team.
    AllChannelMessages,
    ChannelMessages {
        team: String,
        channel: String,
    },
    /// Messages in every chat.
    AllChatMessages,
    ChatMessages {
        chat: String,
    },
    /// Messages in every chat a user takes part in.
    UserChatMessages {
        user: String,
    },
    /// Messages in chats where an app is installed.
    AppChatMessages {
        app: String,
    },
    TeamMembers {
        team: String,
    },
    ChatMembers {
        chat: String,
    },
    /// Membership of every chat.
    AllChatMembers,
    /// Membership of every channel of a team.
    TeamChannelMembers {
        team: String,
    },
    /// Membership of chats where an app is installed.
    AppChatMembers {
        app: String,
    },
    /// Membership of every channel in the tenant.
    AllChannelMembers,
    /// Every team in the tenant.
    AllTeams,
    Team {
        team: String,
    },
}

impl TeamsResource {
    /// The resource path to give Graph.
    pub fn path(&self) -> Result<String, ResourceError> {
        use TeamsResource::*;
        Ok(match self {
            AllRecordings => "communications/onlineMeetings/getAllRecordings".into(),
            MeetingRecordings { meeting } => {
                format!("communications/onlineMeetings/{}/recordings", id(meeting)?)
            }
            UserRecordings { user } => {
                format!("users/{}/onlineMeetings/getAllRecordings", id(user)?)
            }
            AppRecordings { app } => format!(
                "appCatalogs/teamsApps/{}/installedToOnlineMeetings/getAllRecordings",
                id(app)?
            ),
            AllTranscripts => "communications/onlineMeetings/getAllTranscripts".into(),
            MeetingTranscripts { meeting } => {
                format!("communications/onlineMeetings/{}/transcripts", id(meeting)?)
            }
            UserTranscripts { user } => {
                format!("users/{}/onlineMeetings/getAllTranscripts", id(user)?)
            }
            AppTranscripts { app } => format!(
                "appCatalogs/teamsApps/{}/installedToOnlineMeetings/getAllTranscripts",
                id(app)?
            ),
            AllChannels => "/teams/getAllChannels".into(),
            TeamChannels { team } => format!("/teams/{}/channels", id(team)?),
            AllChats => "/chats".into(),
            Chat { chat } => format!("/chats/{}", id(chat)?),
            AppChats { app } => format!("/appCatalogs/teamsApps/{}/installedToChats", id(app)?),
            AllChannelMessages => "/teams/getAllMessages".into(),
            ChannelMessages { team, channel } => {
                format!("/teams/{}/channels/{}/messages", id(team)?, id(channel)?)
            }
            AllChatMessages => "/chats/getAllMessages".into(),
            ChatMessages { chat } => format!("/chats/{}/messages", id(chat)?),
            UserChatMessages { user } => format!("/users/{}/chats/getAllMessages", id(user)?),
            AppChatMessages { app } => format!(
                "/appCatalogs/teamsApps/{}/installedToChats/getAllMessages",
                id(app)?
            ),
            TeamMembers { team } => format!("/teams/{}/members", id(team)?),
            ChatMembers { chat } => format!("/chats/{}/members", id(chat)?),
            AllChatMembers => "/chats/getAllMembers".into(),
            TeamChannelMembers { team } => format!("teams/{}/channels/getAllMembers", id(team)?),
            AppChatMembers { app } => format!(
                "/appCatalogs/teamsApps/{}/installedToChats/getAllMembers",
                id(app)?
            ),
            AllChannelMembers => "teams/getAllChannels/getAllMembers".into(),
            AllTeams => "/teams".into(),
            Team { team } => format!("/teams/{}", id(team)?),
        })
    }
}

fn id(value: &str) -> Result<&str, ResourceError> {
    let ok = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#'".contains(c));
    ok.then_some(value)
        .ok_or_else(|| ResourceError(format!("invalid id in a resource path: {value:?}")))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

// ---------------------------------------------------------------------------------------------
// Desired state
// ---------------------------------------------------------------------------------------------

/// Why the desired subscriptions cannot be used. Names the entry (0-based) at fault.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("SUBSCRIPTIONS_FILE is not a JSON list of subscriptions: {0}")]
    Json(String),
    #[error("subscription #{index}: {reason}")]
    Entry { index: usize, reason: String },
}

/// One entry of `SUBSCRIPTIONS_FILE`, as written.
///
/// The resource is given as `resource` (a Graph path), or built by a helper:
/// `meetingJoinUrl` (seed 000) or `emergencyPolicy` (seed 003).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_join_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_policy: Option<String>,
    /// `created`, `updated`, `deleted`, comma-separated. Defaults to `updated` for call events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_type: Option<String>,
    /// Rich notifications (encrypted resource data). Defaults to `true` for emergency events
    /// (the only kind they support), `false` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_resource_data: Option<bool>,
    /// A lifetime shorter than Graph's maximum, in minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_minutes: Option<u32>,
    /// `v1.0` or `beta`; defaults to what the resource needs ([`default_api_version`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Free text for people reading the file; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A desired subscription, validated: every field is usable as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredSubscription {
    /// The resource path as given to Graph.
    pub resource: String,
    /// Normalized: known values, lower case, in Graph's order (`created,updated,deleted`).
    pub change_type: String,
    pub include_resource_data: bool,
    /// `None`: Graph's maximum for the resource.
    pub expiration_minutes: Option<u32>,
    pub api_version: ApiVersion,
    #[serde(skip)]
    pub kind: ResourceKind,
}

impl DesiredEntry {
    /// Validates the entry.
    pub fn validate(&self) -> Result<DesiredSubscription, String> {
        let given = [
            self.resource.is_some(),
            self.meeting_join_url.is_some(),
            self.emergency_policy.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(
                "give exactly one of `resource`, `meetingJoinUrl`, `emergencyPolicy`".into(),
            );
        }
        let resource = if let Some(r) = &self.resource {
            let r = r.trim();
            if r.is_empty() || r.chars().any(char::is_whitespace) {
                return Err(format!("invalid resource {:?}", truncate(r, 60)));
            }
            r.to_string()
        } else if let Some(url) = &self.meeting_join_url {
            meeting_call_events(url).map_err(|e| e.0)?
        } else {
            emergency_call_events(self.emergency_policy.as_deref().unwrap_or_default())
                .map_err(|e| e.0)?
        };
        let kind = ResourceKind::classify(&resource);
        let change_type = match (&self.change_type, kind.default_change_type()) {
            (Some(c), _) => normalize_change_type(c)?,
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err(format!("`changeType` is required for {resource}")),
        };
        let include_resource_data = self
            .include_resource_data
            .unwrap_or(kind.requires_resource_data());
        if kind.requires_resource_data() && !include_resource_data {
            return Err(format!(
                "{} subscriptions support only rich notifications: includeResourceData must be true",
                kind.name()
            ));
        }
        let api_version = match &self.api_version {
            Some(v) => ApiVersion::parse(v)
                .ok_or_else(|| format!("apiVersion must be v1.0 or beta, not {v:?}"))?,
            None => default_api_version(&resource),
        };
        if api_version == ApiVersion::V1 && default_api_version(&resource) == ApiVersion::Beta {
            return Err(format!("{resource} exists only on the beta endpoint"));
        }
        match (self.expiration_minutes, kind.max_lifetime_minutes(true)) {
            (Some(m), _) if m <= LIFETIME_MARGIN_MINUTES => {
                return Err(format!(
                    "expirationMinutes must be more than {LIFETIME_MARGIN_MINUTES}"
                ));
            }
            (Some(m), Some(max)) if m > max => {
                return Err(format!(
                    "expirationMinutes {m} is over Graph's maximum of {max} for {}",
                    kind.name()
                ));
            }
            (None, None) => {
                return Err(format!(
                    "{resource} is not a Teams resource this handler knows: give expirationMinutes"
                ));
            }
            _ => {}
        }
        Ok(DesiredSubscription {
            resource,
            change_type,
            include_resource_data,
            expiration_minutes: self.expiration_minutes,
            api_version,
            kind,
        })
    }
}

impl DesiredSubscription {
    /// The lifetime to request: the configured one, else Graph's maximum less a margin; never
    /// more than Graph allows with or without a lifecycle URL.
    pub fn lifetime(&self, has_lifecycle_url: bool) -> Duration {
        let default = default_lifetime(&self.resource, has_lifecycle_url);
        match (
            self.expiration_minutes,
            self.kind.max_lifetime_minutes(has_lifecycle_url),
        ) {
            (Some(m), Some(_)) => default.min(minutes(m)),
            (Some(m), None) => minutes(m),
            (None, _) => default,
        }
    }

    /// Whether `existing` is this subscription delivering to `notification_url`.
    pub fn matches(&self, existing: &Subscription, notification_url: &str) -> bool {
        same_resource(&self.resource, &existing.resource)
            && normalize_change_type(&existing.change_type).as_deref() == Ok(&self.change_type)
            && existing
                .notification_url
                .as_deref()
                .is_some_and(|u| same_url(u, notification_url))
    }
}

/// The lifetime to request for a resource: Graph's maximum less [`LIFETIME_MARGIN_MINUTES`]
/// (an hour less the margin for resources without a documented maximum).
pub fn default_lifetime(resource: &str, has_lifecycle_url: bool) -> Duration {
    let max = ResourceKind::classify(resource)
        .max_lifetime_minutes(has_lifecycle_url)
        .unwrap_or(WITHOUT_LIFECYCLE_URL_MINUTES);
    minutes(max.saturating_sub(LIFETIME_MARGIN_MINUTES).max(1))
}

fn minutes(m: u32) -> Duration {
    Duration::from_secs(u64::from(m) * 60)
}

/// Validates and orders a `changeType` list.
pub fn normalize_change_type(value: &str) -> Result<String, String> {
    const ORDER: [&str; 3] = ["created", "updated", "deleted"];
    let mut seen = [false; 3];
    for part in value.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        match ORDER.iter().position(|o| *o == part) {
            Some(i) => seen[i] = true,
            None => return Err(format!("unknown changeType {part:?} in {value:?}")),
        }
    }
    let out: Vec<&str> = ORDER
        .iter()
        .zip(seen)
        .filter(|(_, s)| *s)
        .map(|(o, _)| *o)
        .collect();
    Ok(out.join(","))
}

/// Resource paths compare without leading/trailing `/`, case-insensitively (OData paths are),
/// and whatever the depth of percent-encoding: should Graph echo `joinWebUrl` encoded once less
/// (or more) than we sent it, the subscription still matches instead of being created again on
/// every run.
pub fn same_resource(a: &str, b: &str) -> bool {
    canonical_resource(a) == canonical_resource(b)
}

fn canonical_resource(r: &str) -> String {
    let mut s = r.trim().trim_matches('/').to_string();
    for _ in 0..4 {
        let decoded = percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == s {
            break;
        }
        s = decoded;
    }
    s.to_lowercase()
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

/// Parses the desired subscriptions: a JSON list, or `{"subscriptions": [...]}`.
pub fn parse_desired(json: &[u8]) -> Result<Vec<DesiredSubscription>, DesiredError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum File {
        List(Vec<Value>),
        Wrapped { subscriptions: Vec<Value> },
    }
    let file: File = serde_json::from_slice(json).map_err(|e| DesiredError::Json(e.to_string()))?;
    let entries = match file {
        File::List(v) | File::Wrapped { subscriptions: v } => v,
    };
    let mut out: Vec<DesiredSubscription> = Vec::with_capacity(entries.len());
    for (index, value) in entries.into_iter().enumerate() {
        let entry: DesiredEntry =
            serde_json::from_value(value).map_err(|e| DesiredError::Entry {
                index,
                reason: e.to_string(),
            })?;
        let desired = entry
            .validate()
            .map_err(|reason| DesiredError::Entry { index, reason })?;
        if let Some(other) = out.iter().position(|d| {
            same_resource(&d.resource, &desired.resource) && d.change_type == desired.change_type
        }) {
            return Err(DesiredError::Entry {
                index,
                reason: format!("same resource and changeType as subscription #{other}"),
            });
        }
        out.push(desired);
    }
    Ok(out)
}

/// Reads and parses `SUBSCRIPTIONS_FILE`.
pub fn load_desired(path: &Path) -> Result<Vec<DesiredSubscription>, DesiredError> {
    let bytes = std::fs::read(path).map_err(|source| DesiredError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_desired(&bytes)
}

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

/// A subscription as Graph lists it. `clientState` is deliberately not read (a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub change_type: String,
    #[serde(default)]
    pub notification_url: Option<String>,
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
    #[serde(default)]
    pub include_resource_data: Option<bool>,
    #[serde(default)]
    pub encryption_certificate_id: Option<String>,
    #[serde(default)]
    pub application_id: Option<String>,
}

impl Subscription {
    /// Time left before Graph deletes it (zero when already expired).
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        let left = self.expiration_date_time - now;
        if left.is_positive() {
            left.unsigned_abs()
        } else {
            Duration::ZERO
        }
    }
}

/// The certificate Graph encrypts rich notifications with.
#[derive(Debug, Clone)]
pub struct EncryptionCertificate {
    /// Base64 of the DER certificate (`encryptionCertificate`).
    pub base64: String,
    /// Our id for it (`encryptionCertificateId`), echoed in every rich notification.
    pub id: String,
}

/// A `POST /subscriptions` body.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub resource: String,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub expiration: OffsetDateTime,
    /// Sent to Graph, never logged.
    pub client_state: SecretString,
    pub include_resource_data: bool,
    /// Required when `include_resource_data`.
    pub certificate: Option<EncryptionCertificate>,
}

impl NewSubscription {
    fn to_json(&self) -> Value {
        let mut body = json!({
            "changeType": self.change_type,
            "notificationUrl": self.notification_url,
            "resource": self.resource,
            "expirationDateTime": format_time(self.expiration),
            "clientState": self.client_state.expose_secret(),
            "includeResourceData": self.include_resource_data,
        });
        if let Some(url) = &self.lifecycle_notification_url {
            body["lifecycleNotificationUrl"] = json!(url);
        }
        if let Some(cert) = &self.certificate {
            body["encryptionCertificate"] = json!(cert.base64);
            body["encryptionCertificateId"] = json!(cert.id);
        }
        body
    }
}

/// A `PATCH /subscriptions/{id}` body: renewal, new notification URL, new certificate.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionUpdate {
    pub expiration: Option<OffsetDateTime>,
    pub notification_url: Option<String>,
    pub certificate: Option<EncryptionCertificate>,
}

impl SubscriptionUpdate {
    fn to_json(&self) -> Value {
        let mut body = json!({});
        if let Some(t) = self.expiration {
            body["expirationDateTime"] = json!(format_time(t));
        }
        if let Some(url) = &self.notification_url {
            body["notificationUrl"] = json!(url);
        }
        if let Some(cert) = &self.certificate {
            body["encryptionCertificate"] = json!(cert.base64);
            body["encryptionCertificateId"] = json!(cert.id);
        }
        body
    }
}

/// RFC 3339 in UTC, whole seconds (`2026-01-02T03:04:05Z`).
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

// ---------------------------------------------------------------------------------------------
// Errors and retries
// ---------------------------------------------------------------------------------------------

/// A failed Graph call, with what the caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with an error: its status, `error.code` and `error.message`.
    #[error("Graph answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// Graph's `request-id`, for support cases.
        request_id: Option<String>,
    },
    /// No token for the Graph scope.
    #[error("no token for {scope}: {reason}")]
    Token { scope: String, reason: String },
    /// The request did not get an answer (connection, timeout).
    #[error("Graph unreachable: {0}")]
    Transport(String),
    /// An answer that is not what the API documents.
    #[error("unexpected answer from Graph: {0}")]
    Decode(String),
    /// A `@odata.nextLink` pointing away from `GRAPH_ENDPOINT` (a token must not follow it).
    #[error("refusing to follow @odata.nextLink outside {endpoint}")]
    ForeignLink { endpoint: String },
}

impl GraphError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Graph's `error.code`.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// Whether trying again later may succeed (throttling, outages, no answer).
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Api { status, .. } => *status == 429 || *status >= 500,
            GraphError::Transport(_) => true,
            _ => false,
        }
    }
}

/// How throttled or unavailable answers are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff delay; doubled per attempt, with jitter.
    pub base_delay: Duration,
    /// No single wait is longer; a `Retry-After` beyond it ends the retries.
    pub max_delay: Duration,
    /// No request keeps retrying past this (a timer invocation has a time limit).
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt + 1`: `base * 2^(attempt-1)`, capped, with "equal
    /// jitter" (a uniform draw in its upper half) so that instances do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let half = exp / 2;
        half + half.mul_f64(jitter())
    }
}

/// A uniform draw in `[0, 1)` from OpenSSL's CSPRNG (no extra dependency for one number).
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// `Retry-After` in seconds (what Graph sends). HTTP dates are not used by Graph: ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Characters escaped in a path segment (a subscription id from a notification is input).
const SEGMENT: &AsciiSet = COMPONENT;

/// The subscriptions API of one Graph endpoint, authenticated by one credential.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    /// `GRAPH_ENDPOINT`, without a trailing slash.
    endpoint: String,
    credential: Arc<dyn TokenCredential>,
    /// `{endpoint}/.default`: the app's Graph application permissions.
    scope: String,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("endpoint", &self.endpoint)
            .field("scope", &self.scope)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

struct Answer {
    status: StatusCode,
    body: bytes::Bytes,
}

impl GraphClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Self {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        GraphClient {
            scope: format!("{endpoint}/.default"),
            http,
            endpoint,
            credential,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    fn url(&self, version: ApiVersion, id: Option<&str>, action: Option<&str>) -> String {
        let mut url = format!("{}/{}/subscriptions", self.endpoint, version.as_str());
        if let Some(id) = id {
            url.push('/');
            url.push_str(&utf8_percent_encode(id, SEGMENT).to_string());
        }
        if let Some(action) = action {
            url.push('/');
            url.push_str(action);
        }
        url
    }

    async fn token(&self) -> Result<String, GraphError> {
        self.credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map(|t| t.token.secret().to_string())
            .map_err(|e| GraphError::Token {
                scope: self.scope.clone(),
                reason: e.to_string(),
            })
    }

    /// One call with the retry policy. `idempotent` calls are also retried when no answer came.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Answer, GraphError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let token = self.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .bearer_auth(&token)
                .header(reqwest::header::ACCEPT, "application/json");
            request = match body {
                Some(b) => request.json(b),
                None if method == Method::POST => {
                    request.header(reqwest::header::CONTENT_LENGTH, 0)
                }
                None => request,
            };
            let outcome = request.send().await;
            let (error, wait) = match outcome {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let request_id = response
                        .headers()
                        .get("request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = response
                        .bytes()
                        .await
                        .map_err(|e| GraphError::Transport(e.to_string()))?;
                    if status.is_success() {
                        return Ok(Answer { status, body });
                    }
                    let error = api_error(status, &body, request_id);
                    let throttled = matches!(status.as_u16(), 429 | 503 | 504);
                    if !throttled {
                        return Err(error);
                    }
                    (error, retry_after)
                }
                Err(e) if idempotent && !e.is_builder() => {
                    (GraphError::Transport(without_url(&e)), None)
                }
                Err(e) => return Err(GraphError::Transport(without_url(&e))),
            };
            if attempt >= self.retry.max_attempts {
                tracing::warn!(%method, attempts = attempt, error = %error, "Graph: giving up after the last attempt");
                return Err(error);
            }
            let delay = match wait {
                Some(d) if d > self.retry.max_delay => {
                    tracing::warn!(%method, retry_after_s = d.as_secs(), "Graph: Retry-After beyond the longest wait; giving up");
                    return Err(error);
                }
                Some(d) => d,
                None => self.retry.backoff(attempt),
            };
            if started.elapsed() + delay > self.retry.max_elapsed {
                tracing::warn!(%method, attempts = attempt, "Graph: retry budget spent; giving up");
                return Err(error);
            }
            tracing::info!(
                %method,
                attempt,
                delay_ms = delay.as_millis() as u64,
                retry_after = wait.is_some(),
                error = %error,
                "Graph: throttled or unavailable; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T, GraphError> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| GraphError::Decode(format!("{} answer: {e}", answer.status.as_u16())))
    }

    /// Every subscription of this app, following `@odata.nextLink` (on this endpoint only).
    /// An item Graph lists in a shape we cannot read is skipped with a warning.
    pub async fn list(&self, version: ApiVersion) -> Result<Vec<Subscription>, GraphError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            value: Vec<Value>,
            #[serde(default, rename = "@odata.nextLink")]
            next_link: Option<String>,
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(self.url(version, None, None));
        while let Some(url) = next.take() {
            if !seen.insert(url.clone()) {
                return Err(GraphError::Decode("@odata.nextLink loops".into()));
            }
            let page: Page = Self::decode(&self.call(Method::GET, &url, None, true).await?)?;
            for item in page.value {
                match serde_json::from_value::<Subscription>(item) {
                    Ok(s) => out.push(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "Graph listed a subscription we cannot read; skipped")
                    }
                }
            }
            if let Some(link) = page.next_link {
                if !link.starts_with(&format!("{}/", self.endpoint)) {
                    return Err(GraphError::ForeignLink {
                        endpoint: self.endpoint.clone(),
                    });
                }
                next = Some(link);
            }
        }
        Ok(out)
    }

    pub async fn get(&self, version: ApiVersion, id: &str) -> Result<Subscription, GraphError> {
        let answer = self
            .call(Method::GET, &self.url(version, Some(id), None), None, true)
            .await?;
        Self::decode(&answer)
    }

    /// `POST /subscriptions`. Graph validates `notificationUrl` (and the lifecycle URL) with a
    /// handshake before it answers.
    pub async fn create(
        &self,
        version: ApiVersion,
        new: &NewSubscription,
    ) -> Result<Subscription, GraphError> {
        let answer = self
            .call(
                Method::POST,
                &self.url(version, None, None),
                Some(&new.to_json()),
                false,
            )
            .await?;
        Self::decode(&answer)
    }

    /// `PATCH /subscriptions/{id}`. Returns the subscription as Graph now has it.
    pub async fn update(
        &self,
        version: ApiVersion,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> Result<Subscription, GraphError> {
        let answer = self
            .call(
                Method::PATCH,
                &self.url(version, Some(id), None),
                Some(&update.to_json()),
                true,
            )
            .await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return self.get(version, id).await;
        }
        Self::decode(&answer)
    }

    /// Renewal: a new `expirationDateTime`.
    pub async fn renew(
        &self,
        version: ApiVersion,
        id: &str,
        expiration: OffsetDateTime,
    ) -> Result<Subscription, GraphError> {
        let update = SubscriptionUpdate {
            expiration: Some(expiration),
            ..SubscriptionUpdate::default()
        };
        self.update(version, id, &update).await
    }

    /// `POST /subscriptions/{id}/reauthorize` (answer to `reauthorizationRequired`).
    pub async fn reauthorize(&self, version: ApiVersion, id: &str) -> Result<(), GraphError> {
        self.call(
            Method::POST,
            &self.url(version, Some(id), Some("reauthorize")),
            None,
            true,
        )
        .await
        .map(|_| ())
    }

    pub async fn delete(&self, version: ApiVersion, id: &str) -> Result<(), GraphError> {
        self.call(
            Method::DELETE,
            &self.url(version, Some(id), None),
            None,
            true,
        )
        .await
        .map(|_| ())
    }
}

/// Graph's `{"error": {"code", "message"}}`, or the status when the body is not that.
fn api_error(status: StatusCode, body: &[u8], request_id: Option<String>) -> GraphError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let (code, message) = match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            status
                .canonical_reason()
                .unwrap_or("error")
                .replace(' ', ""),
            truncate(String::from_utf8_lossy(body).trim(), 200),
        ),
    };
    GraphError::Api {
        status: status.as_u16(),
        code,
        message,
        request_id,
    }
}

/// A transport error's text without the query string of the URL (there is none with secrets
/// today; this keeps it that way).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url()
        && let Some(q) = url.query()
    {
        s = s.replace(q, "…");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 000: the raw join URL and the encoded value shown for the `resource` property.
    const SEED_JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%40thread.v2/0?context=%7b%22Tid%22%3a%22909c6581-5130-43e9-88f3-fcb3582cde37%22%2c%22Oid%22%3a%22048c94fb-dda6-48b8-9fc8-6740ee418fb9%22%7d";
    const SEED_ENCODED: &str = "https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%2540thread.v2%2F0%3Fcontext%3D%257b%2522Tid%2522%253a%2522909c6581-5130-43e9-88f3-fcb3582cde37%2522%252c%2522Oid%2522%253a%2522048c94fb-dda6-48b8-9fc8-6740ee418fb9%2522%257d";
    const SEED_RESOURCE: &str = "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%2540thread.v2%2F0%3Fcontext%3D%257b%2522Tid%2522%253a%2522909c6581-5130-43e9-88f3-fcb3582cde37%2522%252c%2522Oid%2522%253a%2522048c94fb-dda6-48b8-9fc8-6740ee418fb9%2522%257d')/meetingCallEvents";

    #[test]
    fn join_web_url_is_encoded_exactly_as_seed_000() {
        assert_eq!(encode_join_web_url(SEED_JOIN_URL), SEED_ENCODED);
        assert_eq!(meeting_call_events(SEED_JOIN_URL).unwrap(), SEED_RESOURCE);
        // Already encoded once: taken as is, not encoded twice.
        assert_eq!(meeting_call_events(SEED_ENCODED).unwrap(), SEED_RESOURCE);
        // A quote would end the OData literal: it is encoded.
        assert_eq!(
            encode_join_web_url("https://x/a'b(c)"),
            "https%3A%2F%2Fx%2Fa%27b%28c%29"
        );
        assert!(meeting_call_events("teams.microsoft.com/l/meetup-join/x").is_err());
        assert!(meeting_call_events("https://").is_err());
        assert!(meeting_call_events("https%3A%2F%2Fteams/half").is_err());
    }

    #[test]
    fn emergency_resource_matches_seed_003() {
        assert_eq!(
            emergency_call_events("EmergencyPolicy").unwrap(),
            "communications/calls/getEmergencyEventsByPolicy(policyName='EmergencyPolicy')"
        );
        assert_eq!(
            emergency_call_events("O'Brien").unwrap(),
            "communications/calls/getEmergencyEventsByPolicy(policyName='O''Brien')"
        );
        assert!(emergency_call_events(" ").is_err());
    }

    #[test]
    fn lifetimes_follow_the_documented_table() {
        use ResourceKind::*;
        for kind in [
            CallRecording,
            CallTranscript,
            Channel,
            Chat,
            ChatMessage,
            ConversationMember,
            Team,
            MeetingCallEvents,
        ] {
            assert_eq!(kind.max_lifetime_minutes(true), Some(4320), "{kind:?}");
        }
        assert_eq!(EmergencyCallEvents.max_lifetime_minutes(true), Some(1440));
        assert_eq!(Other.max_lifetime_minutes(true), None);
        // Without lifecycle notifications, seed 001's resources live at most an hour.
        assert_eq!(ChatMessage.max_lifetime_minutes(false), Some(60));
        assert_eq!(EmergencyCallEvents.max_lifetime_minutes(false), Some(1440));
        assert_eq!(MeetingCallEvents.max_lifetime_minutes(false), Some(4320));

        let entry = |json: &str| -> DesiredSubscription {
            serde_json::from_str::<DesiredEntry>(json)
                .unwrap()
                .validate()
                .unwrap()
        };
        let chat = entry(r#"{"resource":"/chats/getAllMessages","changeType":"created"}"#);
        assert_eq!(chat.lifetime(true), Duration::from_secs((4320 - 5) * 60));
        assert_eq!(chat.lifetime(false), Duration::from_secs((60 - 5) * 60));
        let short =
            entry(r#"{"resource":"/teams","changeType":"created","expirationMinutes":120}"#);
        assert_eq!(short.lifetime(true), Duration::from_secs(120 * 60));
        assert_eq!(short.lifetime(false), Duration::from_secs(55 * 60));
        let emergency = entry(r#"{"emergencyPolicy":"EmergencyPolicy"}"#);
        assert_eq!(
            emergency.lifetime(true),
            Duration::from_secs((1440 - 5) * 60)
        );
    }

    #[test]
    fn seed_001_paths_classify_and_pick_versions() {
        use TeamsResource as T;
        let s = |v: &str| v.to_string();
        let cases: Vec<(TeamsResource, ResourceKind, ApiVersion)> = vec![
            (
                T::AllRecordings,
                ResourceKind::CallRecording,
                ApiVersion::V1,
            ),
            (
                T::MeetingRecordings { meeting: s("m1") },
                ResourceKind::CallRecording,
                ApiVersion::V1,
            ),
            (
                T::UserRecordings { user: s("u1") },
                ResourceKind::CallRecording,
                ApiVersion::V1,
            ),
            (
                T::AppRecordings { app: s("a1") },
                ResourceKind::CallRecording,
                ApiVersion::Beta,
            ),
            (
                T::AllTranscripts,
                ResourceKind::CallTranscript,
                ApiVersion::V1,
            ),
            (
                T::MeetingTranscripts { meeting: s("m1") },
                ResourceKind::CallTranscript,
                ApiVersion::V1,
            ),
            (
                T::UserTranscripts { user: s("u1") },
                ResourceKind::CallTranscript,
                ApiVersion::V1,
            ),
            (
                T::AppTranscripts { app: s("a1") },
                ResourceKind::CallTranscript,
                ApiVersion::Beta,
            ),
            (T::AllChannels, ResourceKind::Channel, ApiVersion::V1),
            (
                T::TeamChannels { team: s("t1") },
                ResourceKind::Channel,
                ApiVersion::V1,
            ),
            (T::AllChats, ResourceKind::Chat, ApiVersion::V1),
            (
                T::Chat {
                    chat: s("19:x@thread.v2"),
                },
                ResourceKind::Chat,
                ApiVersion::V1,
            ),
            (
                T::AppChats { app: s("a1") },
                ResourceKind::Chat,
                ApiVersion::V1,
            ),
            (
                T::AllChannelMessages,
                ResourceKind::ChatMessage,
                ApiVersion::V1,
            ),
            (
                T::ChannelMessages {
                    team: s("t1"),
                    channel: s("19:c@thread.tacv2"),
                },
                ResourceKind::ChatMessage,
                ApiVersion::V1,
            ),
            (
                T::AllChatMessages,
                ResourceKind::ChatMessage,
                ApiVersion::V1,
            ),
            (
                T::ChatMessages {
                    chat: s("19:x@thread.v2"),
                },
                ResourceKind::ChatMessage,
                ApiVersion::V1,
            ),
            (
                T::UserChatMessages { user: s("u1") },
                ResourceKind::ChatMessage,
                ApiVersion::V1,
            ),
            (
                T::AppChatMessages { app: s("a1") },
                ResourceKind::ChatMessage,
                ApiVersion::V1,
            ),
            (
                T::TeamMembers { team: s("t1") },
                ResourceKind::ConversationMember,
                ApiVersion::V1,
            ),
            (
                T::ChatMembers { chat: s("c1") },
                ResourceKind::ConversationMember,
                ApiVersion::V1,
            ),
            (
                T::AllChatMembers,
                ResourceKind::ConversationMember,
                ApiVersion::V1,
            ),
            (
                T::TeamChannelMembers { team: s("t1") },
                ResourceKind::ConversationMember,
                ApiVersion::V1,
            ),
            (
                T::AppChatMembers { app: s("a1") },
                ResourceKind::ConversationMember,
                ApiVersion::V1,
            ),
            (
                T::AllChannelMembers,
                ResourceKind::ConversationMember,
                ApiVersion::V1,
            ),
            (T::AllTeams, ResourceKind::Team, ApiVersion::V1),
            (
                T::Team { team: s("t1") },
                ResourceKind::Team,
                ApiVersion::V1,
            ),
        ];
        for (resource, kind, version) in cases {
            let path = resource.path().unwrap();
            assert_eq!(ResourceKind::classify(&path), kind, "{path}");
            assert_eq!(default_api_version(&path), version, "{path}");
        }
        assert_eq!(
            T::ChannelMessages {
                team: s("t"),
                channel: s("c")
            }
            .path()
            .unwrap(),
            "/teams/t/channels/c/messages"
        );
        assert!(T::Chat { chat: s("../x") }.path().is_err());
        assert_eq!(
            ResourceKind::classify(SEED_RESOURCE),
            ResourceKind::MeetingCallEvents
        );
        assert_eq!(default_api_version(SEED_RESOURCE), ApiVersion::Beta);
        // The forms Graph writes in notifications classify the same way.
        assert_eq!(
            ResourceKind::classify("chats('19:8ea0e38b@unq.gbl.spaces')/messages('1612289765949')"),
            ResourceKind::ChatMessage
        );
        assert_eq!(
            ResourceKind::classify("users/u/messages"),
            ResourceKind::ChatMessage
        );
        assert_eq!(ResourceKind::classify("me/events"), ResourceKind::Other);
    }

    #[test]
    fn desired_file_is_validated_once() {
        let ok = parse_desired(
            br#"[
              {"meetingJoinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0", "includeResourceData": true},
              {"emergencyPolicy": "EmergencyPolicy"},
              {"resource": "/chats/getAllMessages", "changeType": "updated, created", "includeResourceData": true, "apiVersion": "V1.0"}
            ]"#,
        )
        .unwrap();
        assert_eq!(ok[0].api_version, ApiVersion::Beta);
        assert_eq!(ok[0].change_type, "updated");
        assert!(ok[1].include_resource_data);
        assert_eq!(ok[1].api_version, ApiVersion::Beta);
        assert_eq!(ok[2].change_type, "created,updated");
        assert_eq!(ok[2].api_version, ApiVersion::V1);
        assert_eq!(
            parse_desired(br#"{"subscriptions":[{"resource":"/teams","changeType":"created"}]}"#)
                .unwrap()
                .len(),
            1
        );

        let bad = |json: &str| parse_desired(json.as_bytes()).unwrap_err().to_string();
        assert!(bad(r#"[{"resource":"/teams"}]"#).contains("changeType"));
        assert!(bad(r#"[{"resource":"/teams","changeType":"moved"}]"#).contains("moved"));
        assert!(bad(r#"[{"emergencyPolicy":"P","includeResourceData":false}]"#).contains("rich"));
        assert!(bad(r#"[{"emergencyPolicy":"P","apiVersion":"v1.0"}]"#).contains("beta"));
        assert!(
            bad(r#"[{"resource":"/teams","changeType":"created","expirationMinutes":5000}]"#)
                .contains("4320")
        );
        assert!(
            bad(r#"[{"resource":"me/events","changeType":"created"}]"#)
                .contains("expirationMinutes")
        );
        assert!(
            bad(r#"[{"resource":"/teams","emergencyPolicy":"P","changeType":"created"}]"#)
                .contains("exactly one")
        );
        assert!(
            bad(r#"[{"resource":"/teams","changeType":"created","colour":"red"}]"#).contains("#0")
        );
        assert!(
            bad(r#"[{"resource":"/teams","changeType":"created"},{"resource":"teams/","changeType":"created"}]"#)
                .contains("#1")
        );
        assert!(bad("{").contains("JSON"));
    }

    #[test]
    fn the_example_file_covers_the_seeds() {
        let desired = parse_desired(include_bytes!("../../subscriptions.example.json")).unwrap();
        let meeting = desired
            .iter()
            .find(|d| d.kind == ResourceKind::MeetingCallEvents)
            .unwrap();
        assert_eq!(meeting.resource, SEED_RESOURCE);
        assert_eq!(meeting.api_version, ApiVersion::Beta);
        let emergency = desired
            .iter()
            .find(|d| d.kind == ResourceKind::EmergencyCallEvents)
            .unwrap();
        assert_eq!(
            emergency.resource,
            "communications/calls/getEmergencyEventsByPolicy(policyName='EmergencyPolicy')"
        );
        for kind in [
            ResourceKind::ChatMessage,
            ResourceKind::Chat,
            ResourceKind::Channel,
            ResourceKind::Team,
            ResourceKind::ConversationMember,
            ResourceKind::CallRecording,
            ResourceKind::CallTranscript,
        ] {
            assert!(desired.iter().any(|d| d.kind == kind), "{kind:?}");
        }
    }

    #[test]
    fn matching_ignores_notation_not_meaning() {
        let desired = DesiredEntry {
            resource: Some("/chats/getAllMessages".into()),
            change_type: Some("created,updated".into()),
            ..DesiredEntry::default()
        }
        .validate()
        .unwrap();
        let mut existing: Subscription = serde_json::from_value(json!({
            "id": "s1",
            "resource": "chats/getAllMessages",
            "changeType": "updated,created",
            "notificationUrl": "https://app.example/api/notifications",
            "expirationDateTime": "2021-02-01T11:00:00.0000000Z",
            "clientState": "never kept"
        }))
        .unwrap();
        assert!(desired.matches(&existing, "https://app.example/api/notifications/"));
        assert!(!desired.matches(&existing, "https://other.example/api/notifications"));
        // The meeting resource matches however deeply Graph echoes the join URL encoded.
        let once = format!(
            "communications/onlineMeetings(joinWebUrl='{}')/meetingCallEvents",
            SEED_JOIN_URL
        );
        assert!(same_resource(SEED_RESOURCE, &once));
        assert!(same_resource(
            SEED_RESOURCE,
            &format!("/{}", SEED_RESOURCE.to_uppercase())
        ));
        assert!(!same_resource(
            SEED_RESOURCE,
            &SEED_RESOURCE.replace("ZmYw", "AmYw")
        ));
        existing.change_type = "created".into();
        assert!(!desired.matches(&existing, "https://app.example/api/notifications"));
        assert!(
            !serde_json::to_string(&existing)
                .unwrap()
                .contains("never kept")
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_elapsed: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = p.backoff(3);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d9 = p.backoff(9);
            assert!(
                d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000),
                "{d9:?}"
            );
        }
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn graph_errors_keep_code_and_message() {
        let e = api_error(
            StatusCode::FORBIDDEN,
            br#"{"error":{"code":"ExtensionError","message":"Operation: Create; Exception: [Status Code: Forbidden]","innerError":{"request-id":"r"}}}"#,
            Some("r".into()),
        );
        assert_eq!(e.code(), Some("ExtensionError"));
        assert!(
            e.to_string()
                .contains("403 ExtensionError: Operation: Create")
        );
        assert!(!e.is_transient());
        let e = api_error(StatusCode::SERVICE_UNAVAILABLE, b"<html>busy</html>", None);
        assert_eq!(e.code(), Some("ServiceUnavailable"));
        assert!(e.is_transient());
    }

    #[test]
    fn times_are_utc_whole_seconds() {
        let t = OffsetDateTime::parse("2021-02-02T10:30:34.9097561-08:00", &Rfc3339).unwrap();
        assert_eq!(format_time(t), "2021-02-02T18:30:34Z");
    }
}
