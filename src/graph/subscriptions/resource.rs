//! The resources we subscribe to: API versions, what a resource path is (as far as Graph's
//! rules care), and the builders of the Teams resource paths (join-URL encoding included).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

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
    /// `communications/onlineMeetings(joinWebUrl='...')/meetingCallEvents` (beta; see
    /// Microsoft's "Get change notifications for Teams meeting call events" document).
    MeetingCallEvents,
    /// `communications/calls/getEmergencyEventsByPolicy(policyName='...')` (v1.0 and beta; see
    /// Microsoft's document on change notifications for emergency call events).
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
            // "getAllTrancripts" is how Microsoft's "Change notifications for Microsoft Teams
            // resources" document spells one of the paths.
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

    /// Only rich notifications exist for emergency call events (Microsoft's document on change
    /// notifications for emergency call events).
    pub fn requires_resource_data(self) -> bool {
        self == ResourceKind::EmergencyCallEvents
    }

    /// The `changeType` Microsoft's documents use where one value is the only sensible one.
    pub fn default_change_type(self) -> Option<&'static str> {
        match self {
            ResourceKind::MeetingCallEvents | ResourceKind::EmergencyCallEvents => Some("updated"),
            _ => None,
        }
    }
}

/// Whether a resource exists only on beta: meeting call events and the
/// `installedToOnlineMeetings` paths (marked `*` in Microsoft's "Change notifications for
/// Microsoft Teams resources" document).
pub fn beta_only(resource: &str) -> bool {
    ResourceKind::classify(resource) == ResourceKind::MeetingCallEvents
        || resource
            .to_ascii_lowercase()
            .contains("/installedtoonlinemeetings/")
}

/// The API version a resource gets when the desired file names none: beta for the beta-only
/// resources, and beta for emergency call events too. Those are documented on v1.0 as well and
/// `apiVersion: "v1.0"` selects it; beta stays their default because it is where Microsoft's
/// emergency call events document and its `emergencyCallEvent` samples (the payloads this
/// handler types) were written, and where deployments made before v1.0 existed keep their one
/// subscription per policy. Everything else: v1.0.
pub fn default_api_version(resource: &str) -> ApiVersion {
    if beta_only(resource) || ResourceKind::classify(resource) == ResourceKind::EmergencyCallEvents
    {
        ApiVersion::Beta
    } else {
        ApiVersion::V1
    }
}

/// A resource that cannot be built from the given parts.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ResourceError(String);

/// RFC 3986 unreserved characters stay; everything else is percent-encoded with upper-case hex.
/// This is `encodeURIComponent` minus `!*'()`, which would end the OData string literal.
pub(super) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a meeting's join URL for `joinWebUrl='...'`. The URL is encoded as it is,
/// already-escaped sequences included (`%3a` becomes `%253a`), exactly as Microsoft's "Get change
/// notifications for Teams meeting call events" document shows.
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

/// `communications/calls/getEmergencyEventsByPolicy(policyName='{policy}')` (see
/// Microsoft's document on change notifications for emergency call events). A quote
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

/// The Teams resource paths of Microsoft's "Change notifications for Microsoft Teams resources"
/// document. Ids are inserted as they are (Graph takes `19:...@thread.v2` unescaped); an id that
/// would change the path is refused.
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

/// At most `max` characters of `s`, with `...` when cut (for error messages).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

/// The example of Microsoft's "Get change notifications for Teams meeting call events" document:
/// the raw join URL and the encoded value it shows for the `resource` property.
#[cfg(test)]
pub(crate) mod examples {
    pub const JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%40thread.v2/0?context=%7b%22Tid%22%3a%22909c6581-5130-43e9-88f3-fcb3582cde37%22%2c%22Oid%22%3a%22048c94fb-dda6-48b8-9fc8-6740ee418fb9%22%7d";
    pub const ENCODED: &str = "https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%2540thread.v2%2F0%3Fcontext%3D%257b%2522Tid%2522%253a%2522909c6581-5130-43e9-88f3-fcb3582cde37%2522%252c%2522Oid%2522%253a%2522048c94fb-dda6-48b8-9fc8-6740ee418fb9%2522%257d";
    pub const RESOURCE: &str = "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_ZmYwZTEyYjctZjA5MS00OTkzLWJhNzEtYzFiZDVjNGE0OGFj%2540thread.v2%2F0%3Fcontext%3D%257b%2522Tid%2522%253a%2522909c6581-5130-43e9-88f3-fcb3582cde37%2522%252c%2522Oid%2522%253a%2522048c94fb-dda6-48b8-9fc8-6740ee418fb9%2522%257d')/meetingCallEvents";
}

#[cfg(test)]
mod tests {
    use super::examples::{ENCODED, JOIN_URL, RESOURCE};
    use super::*;

    #[test]
    fn join_web_url_is_encoded_exactly_as_microsoft_documents() {
        assert_eq!(encode_join_web_url(JOIN_URL), ENCODED);
        assert_eq!(meeting_call_events(JOIN_URL).unwrap(), RESOURCE);
        // Already encoded once: taken as is, not encoded twice.
        assert_eq!(meeting_call_events(ENCODED).unwrap(), RESOURCE);
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
    fn emergency_resource_matches_microsofts_document() {
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
    fn teams_resource_paths_classify_and_pick_versions() {
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
            ResourceKind::classify(RESOURCE),
            ResourceKind::MeetingCallEvents
        );
        assert_eq!(default_api_version(RESOURCE), ApiVersion::Beta);
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
}
