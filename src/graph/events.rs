//! Typed views of the decoded Teams resources: what the payloads of Microsoft's Teams
//! change-notification documents mean.
//!
//! The archive keeps every decoded payload exactly as Graph sent it; these types are a reading
//! of it (for the event kind, the summary line, reports), so a field Graph adds tomorrow is never
//! lost. Unknown resource types are kept as JSON, never rejected.
//!
//! Sources: Microsoft's "Get change notifications for Teams meeting call events" (`callevent`),
//! "... for emergency call events" (`emergencyCallEvent`) and "... for Teams resources" (chat,
//! chatMessage, channel, team, conversationMember, callRecording, callTranscript).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The resource types we know, from `@odata.type` (case-insensitive, with or without `#microsoft.graph.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    CallEvent,
    EmergencyCallEvent,
    ChatMessage,
    Chat,
    Channel,
    Team,
    ConversationMember,
    CallRecording,
    CallTranscript,
    Unknown,
}

impl EventKind {
    pub fn from_odata_type(odata_type: &str) -> Self {
        let t = odata_type.trim_start_matches('#');
        let t = t.rsplit('.').next().unwrap_or(t).to_ascii_lowercase();
        match t.as_str() {
            "callevent" => EventKind::CallEvent,
            "emergencycallevent" => EventKind::EmergencyCallEvent,
            "chatmessage" => EventKind::ChatMessage,
            "chat" => EventKind::Chat,
            "channel" => EventKind::Channel,
            "team" => EventKind::Team,
            "conversationmember" | "aaduserconversationmember" => EventKind::ConversationMember,
            "callrecording" => EventKind::CallRecording,
            "calltranscript" => EventKind::CallTranscript,
            _ => EventKind::Unknown,
        }
    }

    /// The name stored in archived records (Graph's own spelling of the type).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::CallEvent => "callevent",
            EventKind::EmergencyCallEvent => "emergencyCallEvent",
            EventKind::ChatMessage => "chatMessage",
            EventKind::Chat => "chat",
            EventKind::Channel => "channel",
            EventKind::Team => "team",
            EventKind::ConversationMember => "conversationMember",
            EventKind::CallRecording => "callRecording",
            EventKind::CallTranscript => "callTranscript",
            EventKind::Unknown => "unknown",
        }
    }

    /// The kind of a notification: the decoded payload's `@odata.type`, else `resourceData`'s.
    pub fn of(payload: Option<&Value>, resource_data: Option<&Value>) -> Self {
        [payload, resource_data]
            .into_iter()
            .flatten()
            .filter_map(|v| v.get("@odata.type").and_then(Value::as_str))
            .map(EventKind::from_odata_type)
            .next()
            .unwrap_or(EventKind::Unknown)
    }
}

/// A decoded payload read as its type.
#[derive(Debug, Clone)]
pub enum TeamsEvent {
    Call(CallEvent),
    Emergency(EmergencyCallEvent),
    ChatMessage(ChatMessage),
    Chat(Named),
    Channel(Named),
    Team(Named),
    Member(ConversationMember),
    Recording(MeetingArtifact),
    Transcript(MeetingArtifact),
    /// A type we do not know, or a payload that does not read as its type: kept as JSON.
    Other(Value),
}

impl TeamsEvent {
    /// Reads `payload` as `kind`. Never fails: what does not fit stays JSON.
    pub fn read(kind: EventKind, payload: &Value) -> Self {
        fn as_<T: for<'de> Deserialize<'de>>(v: &Value) -> Option<T> {
            T::deserialize(v).ok()
        }
        let typed = match kind {
            EventKind::CallEvent => as_(payload).map(TeamsEvent::Call),
            EventKind::EmergencyCallEvent => as_::<EmergencyEnvelope>(payload)
                .and_then(|e| e.emergency_call_event)
                .map(TeamsEvent::Emergency),
            EventKind::ChatMessage => as_(payload).map(TeamsEvent::ChatMessage),
            EventKind::Chat => as_(payload).map(TeamsEvent::Chat),
            EventKind::Channel => as_(payload).map(TeamsEvent::Channel),
            EventKind::Team => as_(payload).map(TeamsEvent::Team),
            EventKind::ConversationMember => as_(payload).map(TeamsEvent::Member),
            EventKind::CallRecording => as_(payload).map(TeamsEvent::Recording),
            EventKind::CallTranscript => as_(payload).map(TeamsEvent::Transcript),
            EventKind::Unknown => None,
        };
        typed.unwrap_or_else(|| TeamsEvent::Other(payload.clone()))
    }

    /// One line for people: what happened.
    pub fn summary(&self) -> String {
        match self {
            TeamsEvent::Call(c) => c.summary(),
            TeamsEvent::Emergency(e) => e.summary(),
            TeamsEvent::ChatMessage(m) => m.summary(),
            TeamsEvent::Chat(n) => format!("chat {}", n.label()),
            TeamsEvent::Channel(n) => format!("channel {}", n.label()),
            TeamsEvent::Team(n) => format!("team {}", n.label()),
            TeamsEvent::Member(m) => format!(
                "member {} ({})",
                m.display_name.as_deref().unwrap_or("?"),
                if m.roles.is_empty() {
                    "member".to_string()
                } else {
                    m.roles.join(", ")
                }
            ),
            TeamsEvent::Recording(a) => {
                format!("recording available for meeting {}", a.meeting_label())
            }
            TeamsEvent::Transcript(a) => {
                format!("transcript available for meeting {}", a.meeting_label())
            }
            TeamsEvent::Other(v) => match v.get("@odata.type").and_then(Value::as_str) {
                Some(t) => format!("{t} (kept as JSON)"),
                None => "payload kept as JSON".to_string(),
            },
        }
    }
}

/// `callevent`: a meeting call started, ended, or its roster changed (Microsoft's "Get change notifications for Teams meeting call events").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    /// `callStarted`, `callEnded`, `rosterUpdated` (kept as text: Graph may add more).
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub event_date_time: Option<String>,
    #[serde(default, rename = "participants@delta")]
    pub participants_delta: Vec<Participant>,
    /// The older roster shape: participants who joined / exited.
    #[serde(default, rename = "activeParticipants@joined")]
    pub active_participants_joined: Vec<Participant>,
    #[serde(default, rename = "activeParticipants@exited")]
    pub active_participants_exited: Vec<Participant>,
}

/// A roster change read from a participant entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterChange {
    Joined,
    InLobby,
    /// Has `removedState`: left the call or went inactive.
    Left,
}

impl CallEvent {
    /// Every participant change with what it means, in both shapes Graph has used.
    pub fn roster(&self) -> Vec<(RosterChange, &Participant)> {
        let mut out: Vec<_> = self
            .participants_delta
            .iter()
            .map(|p| {
                let change = if p.removed_state.is_some() {
                    RosterChange::Left
                } else if p.is_in_lobby == Some(true) {
                    RosterChange::InLobby
                } else {
                    RosterChange::Joined
                };
                (change, p)
            })
            .collect();
        out.extend(
            self.active_participants_joined
                .iter()
                .map(|p| (RosterChange::Joined, p)),
        );
        out.extend(
            self.active_participants_exited
                .iter()
                .map(|p| (RosterChange::Left, p)),
        );
        out
    }

    fn summary(&self) -> String {
        let kind = self.event_type.as_deref().unwrap_or("callevent");
        let roster = self.roster();
        if roster.is_empty() {
            return kind.to_string();
        }
        let parts: Vec<String> = roster
            .iter()
            .map(|(c, p)| {
                let what = match c {
                    RosterChange::Joined => "joined",
                    RosterChange::InLobby => "waiting in lobby",
                    RosterChange::Left => "left",
                };
                format!("{} {what}", p.display_name())
            })
            .collect();
        format!("{kind}: {}", parts.join("; "))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub info: Option<ParticipantInfo>,
    #[serde(default)]
    pub is_in_lobby: Option<bool>,
    #[serde(default)]
    pub removed_state: Option<RemovedState>,
}

impl Participant {
    pub fn display_name(&self) -> &str {
        self.info
            .as_ref()
            .and_then(|i| i.identity.as_ref())
            .and_then(|i| i.user.as_ref())
            .and_then(|u| u.display_name.as_deref())
            .unwrap_or("someone")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParticipantInfo {
    #[serde(default)]
    pub identity: Option<IdentitySet>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdentitySet {
    #[serde(default)]
    pub user: Option<Identity>,
    #[serde(default)]
    pub application: Option<Identity>,
    /// Anonymous and external participants of a meeting call.
    #[serde(default)]
    pub guest: Option<Identity>,
    /// Dial-in participants.
    #[serde(default)]
    pub phone: Option<Identity>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RemovedState {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmergencyEnvelope {
    #[serde(default)]
    emergency_call_event: Option<EmergencyCallEvent>,
}

/// `emergencyCallEvent`: an emergency number was dialled (Microsoft's "Get change notifications for emergency call events").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyCallEvent {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub call_event_type: Option<String>,
    #[serde(default)]
    pub policy_name: Option<String>,
    #[serde(default)]
    pub event_date_time: Option<String>,
    #[serde(default)]
    pub emergency_number_dialed: Option<String>,
    #[serde(default)]
    pub caller_info: Option<CallerInfo>,
}

impl EmergencyCallEvent {
    fn summary(&self) -> String {
        let caller = self.caller_info.as_ref();
        let who = caller
            .and_then(|c| c.display_name.as_deref().or(c.upn.as_deref()))
            .unwrap_or("unknown caller");
        let place = caller
            .and_then(|c| c.location.as_ref())
            .and_then(|l| l.address.as_ref())
            .map(|a| {
                [a.street.as_deref(), a.city.as_deref(), a.state.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown location".into());
        format!(
            "emergency {}: {} dialled {} from {} (policy {})",
            self.call_event_type.as_deref().unwrap_or("call"),
            who,
            self.emergency_number_dialed.as_deref().unwrap_or("?"),
            place,
            self.policy_name.as_deref().unwrap_or("?"),
        )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerInfo {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub upn: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub location: Option<Location>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Location {
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(default)]
    pub coordinates: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(default)]
    pub street: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub country_or_region: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    /// `houseNumber`, `streetSuffix`, `companyName`, `additionalInfo`, `county`, ...
    #[serde(default)]
    pub additional_data: Option<serde_json::Map<String, Value>>,
}

/// `chatMessage` (Microsoft's "Get change notifications for Teams resources").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    #[serde(default)]
    pub from: Option<IdentitySet>,
    #[serde(default)]
    pub body: Option<ItemBody>,
}

impl ChatMessage {
    fn summary(&self) -> String {
        let who = self
            .from
            .as_ref()
            .and_then(|f| f.user.as_ref().or(f.application.as_ref()))
            .and_then(|u| u.display_name.as_deref())
            .unwrap_or("someone");
        let text: String = self
            .body
            .as_ref()
            .and_then(|b| b.content.as_deref())
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        format!("message from {who}: {text:?}")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    #[serde(default)]
    pub content: Option<String>,
}

/// `chat`, `channel`, `team`: identified by id and a display name or topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Named {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
}

impl Named {
    fn label(&self) -> String {
        self.display_name
            .as_deref()
            .or(self.topic.as_deref())
            .or(self.id.as_deref())
            .unwrap_or("?")
            .to_string()
    }
}

/// `conversationMember`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMember {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `callRecording` and `callTranscript`: an artifact of a meeting became available.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingArtifact {
    #[serde(default)]
    pub meeting_id: Option<String>,
}

impl MeetingArtifact {
    fn meeting_label(&self) -> &str {
        self.meeting_id.as_deref().unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_from_odata_types() {
        assert_eq!(
            EventKind::from_odata_type("#microsoft.graph.callevent"),
            EventKind::CallEvent
        );
        assert_eq!(
            EventKind::from_odata_type("#Microsoft.Graph.chatMessage"),
            EventKind::ChatMessage
        );
        assert_eq!(
            EventKind::from_odata_type("#microsoft.graph.emergencyCallEvent"),
            EventKind::EmergencyCallEvent
        );
        assert_eq!(
            EventKind::from_odata_type("#microsoft.graph.aadUserConversationMember"),
            EventKind::ConversationMember
        );
        assert_eq!(
            EventKind::from_odata_type("#microsoft.graph.somethingNew"),
            EventKind::Unknown
        );
        assert_eq!(
            EventKind::of(None, Some(&json!({"@odata.type": "#microsoft.graph.team"}))),
            EventKind::Team
        );
    }

    #[test]
    fn roster_reads_lobby_and_removed_state() {
        let v = json!({"@odata.type":"#microsoft.graph.callevent","eventType":"rosterUpdated","participants@delta":[
            {"info":{"identity":{"user":{"id":"1","displayName":"Ann"}}},"isInLobby":false,"id":"a"},
            {"info":{"identity":{"user":{"id":"2","displayName":"Bob"}}},"isInLobby":true,"id":"b"},
            {"info":{"identity":{"user":{"id":"3","displayName":"Cid"}}},"isInLobby":false,"removedState":{"reason":"left"},"id":"c"}]});
        let TeamsEvent::Call(c) = TeamsEvent::read(EventKind::CallEvent, &v) else {
            panic!()
        };
        let changes: Vec<_> = c
            .roster()
            .into_iter()
            .map(|(k, p)| (k, p.display_name().to_string()))
            .collect();
        assert_eq!(
            changes,
            vec![
                (RosterChange::Joined, "Ann".into()),
                (RosterChange::InLobby, "Bob".into()),
                (RosterChange::Left, "Cid".into())
            ]
        );
        assert_eq!(
            TeamsEvent::Call(c).summary(),
            "rosterUpdated: Ann joined; Bob waiting in lobby; Cid left"
        );
        let old = json!({"eventType":"rosterUpdated","activeParticipants@joined":[{"info":{"identity":{"user":{"displayName":"Dee"}}}}],"activeParticipants@exited":[{"info":{"identity":{"user":{"displayName":"Eve"}}}}]});
        assert_eq!(
            TeamsEvent::read(EventKind::CallEvent, &old).summary(),
            "rosterUpdated: Dee joined; Eve left"
        );
    }

    #[test]
    fn emergency_and_unknown() {
        let v = json!({"@odata.type":"#microsoft.graph.emergencyCallEvent","emergencyCallEvent":{"callEventType":"callStarted","policyName":"EmergencyPolicy","emergencyNumberDialed":"911","callerInfo":{"displayName":"Caller","location":{"address":{"street":"Microsoft Way","city":"Redmond","state":"WA"}}}}});
        assert_eq!(
            TeamsEvent::read(EventKind::EmergencyCallEvent, &v).summary(),
            "emergency callStarted: Caller dialled 911 from Microsoft Way, Redmond, WA (policy EmergencyPolicy)"
        );
        let odd = json!({"@odata.type":"#microsoft.graph.callevent","participants@delta": 5});
        assert!(matches!(
            TeamsEvent::read(EventKind::CallEvent, &odd),
            TeamsEvent::Other(_)
        ));
    }
}
