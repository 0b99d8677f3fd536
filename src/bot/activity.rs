//! The Bot Framework activities the messaging endpoint receives, and the four real-time meeting
//! events of Microsoft's "Meeting apps APIs" document, typed.
//!
//! Event activities (`type` = `event`) named `application/vnd.microsoft.meetingStart`,
//! `…meetingEnd`, `…meetingParticipantJoin` and `…meetingParticipantLeave`. Quirks handled here:
//! - start/end `value` keys are PascalCase on the wire (`MeetingType`, `Title`, `Id`, `JoinUrl`,
//!   `StartTime`, `EndTime`) while the document's samples show camelCase: keys are matched
//!   without regard to case;
//! - the samples' `name` carries a leading space: names are trimmed;
//! - participant events carry `value.members[]`, each with `user` and `meeting.inMeeting`/`role`;
//! - the meeting's id is `channelData.meeting.id` (the document: not the conversation id, not
//!   `value.Id`); `value.Id` is used only when `channelData` names no meeting;
//! - the document's samples are not valid JSON (trailing commas): the same relaxation as for
//!   Graph's samples applies (strict JSON first).

use serde_json::{Map, Value};

use crate::graph::notification::strip_trailing_commas;

pub const MEETING_START: &str = "application/vnd.microsoft.meetingStart";
pub const MEETING_END: &str = "application/vnd.microsoft.meetingEnd";
pub const PARTICIPANT_JOIN: &str = "application/vnd.microsoft.meetingParticipantJoin";
pub const PARTICIPANT_LEAVE: &str = "application/vnd.microsoft.meetingParticipantLeave";

/// Longest summary line stored (outside text is cut, never trusted for length).
const MAX_SUMMARY_CHARS: usize = 240;

/// Why a body is not an activity. Answered with 400.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("empty body")]
    Empty,
    #[error("body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("body is not a JSON object")]
    NotAnObject,
}

/// What an activity is, by `type` and `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    MeetingStart,
    MeetingEnd,
    ParticipantJoin,
    ParticipantLeave,
    /// `invoke`: the HTTP answer is the invoke response.
    Invoke,
    /// Anything else: `message`, `conversationUpdate`, `installationUpdate`, other events.
    Other,
}

impl ActivityKind {
    /// The record's `eventKind` for the four meeting events.
    pub fn event_kind(self) -> Option<&'static str> {
        match self {
            ActivityKind::MeetingStart => Some("meetingStart"),
            ActivityKind::MeetingEnd => Some("meetingEnd"),
            ActivityKind::ParticipantJoin => Some("meetingParticipantJoin"),
            ActivityKind::ParticipantLeave => Some("meetingParticipantLeave"),
            ActivityKind::Invoke | ActivityKind::Other => None,
        }
    }
}

/// An activity as received: the JSON (kept whole for the archive) and the fields read from it.
/// Every field is optional: the Bot Connector's shape is trusted only after authentication, and
/// a missing field is a typed absence, not a parse failure.
#[derive(Debug, Clone)]
pub struct Activity {
    pub json: Value,
    pub activity_type: String,
    /// Trimmed.
    pub name: String,
    pub timestamp: Option<String>,
    pub channel_id: String,
    pub service_url: String,
    pub conversation_id: Option<String>,
    /// `channelData.tenant.id`, else `conversation.tenantId`.
    pub tenant_id: Option<String>,
    /// `channelData.meeting.id`.
    pub meeting_id: Option<String>,
}

/// `value` of a meetingStart / meetingEnd event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingDetails {
    pub id: Option<String>,
    pub join_url: Option<String>,
    pub title: Option<String>,
    pub meeting_type: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
}

/// One of `value.members[]` of a participant event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participant {
    /// `user.id` (`29:…`): what the participant API takes as `participantId`.
    pub id: Option<String>,
    pub aad_object_id: Option<String>,
    pub name: Option<String>,
    pub tenant_id: Option<String>,
    /// `meeting.role`: `Organizer`, `Presenter`, `Attendee`.
    pub role: Option<String>,
    pub in_meeting: Option<bool>,
}

/// Parses a messaging-endpoint body: strict JSON, else JSON with trailing commas removed.
pub fn parse(body: &[u8]) -> Result<Activity, ActivityError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ActivityError::Empty);
    }
    let json: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let relaxed = strip_trailing_commas(body).ok_or(ActivityError::NotJson(e))?;
            serde_json::from_slice(&relaxed).map_err(ActivityError::NotJson)?
        }
    };
    Activity::from_json(json)
}

impl Activity {
    pub fn from_json(json: Value) -> Result<Self, ActivityError> {
        let obj = json.as_object().ok_or(ActivityError::NotAnObject)?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let at = |path: &[&str]| text(pointer(obj, path));
        Ok(Activity {
            activity_type: at(&["type"]).unwrap_or_default(),
            name: at(&["name"]).unwrap_or_default().trim().to_owned(),
            timestamp: at(&["timestamp"]),
            channel_id: at(&["channelId"]).unwrap_or_default(),
            service_url: at(&["serviceUrl"]).unwrap_or_default(),
            conversation_id: at(&["conversation", "id"]),
            tenant_id: at(&["channelData", "tenant", "id"])
                .or_else(|| at(&["conversation", "tenantId"])),
            meeting_id: at(&["channelData", "meeting", "id"]),
            json,
        })
    }

    pub fn kind(&self) -> ActivityKind {
        let is = |name: &str| self.name.eq_ignore_ascii_case(name);
        match self.activity_type.as_str() {
            "event" if is(MEETING_START) => ActivityKind::MeetingStart,
            "event" if is(MEETING_END) => ActivityKind::MeetingEnd,
            "event" if is(PARTICIPANT_JOIN) => ActivityKind::ParticipantJoin,
            "event" if is(PARTICIPANT_LEAVE) => ActivityKind::ParticipantLeave,
            "invoke" => ActivityKind::Invoke,
            _ => ActivityKind::Other,
        }
    }

    fn value(&self) -> Option<&Map<String, Value>> {
        self.json.get("value").and_then(Value::as_object)
    }

    /// The start/end details (`value`), keys matched without regard to case.
    pub fn meeting_details(&self) -> MeetingDetails {
        let Some(value) = self.value() else {
            return MeetingDetails::default();
        };
        let text = |key: &str| field(value, key).and_then(Value::as_str).map(str::to_owned);
        MeetingDetails {
            id: text("Id"),
            join_url: text("JoinUrl").filter(|u| !u.trim().is_empty()),
            title: text("Title"),
            meeting_type: text("MeetingType"),
            start_time: text("StartTime"),
            end_time: text("EndTime"),
        }
    }

    /// The meeting this activity is about: `channelData.meeting.id`, else `value.Id`.
    pub fn meeting_key(&self) -> Option<String> {
        self.meeting_id
            .clone()
            .or_else(|| self.meeting_details().id)
            .filter(|id| !id.is_empty())
    }

    /// `value.members[]` of a participant event.
    pub fn participants(&self) -> Vec<Participant> {
        let members = self
            .value()
            .and_then(|v| field(v, "members"))
            .and_then(Value::as_array);
        members
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(participant)
            .collect()
    }

    /// `(year, month, day)` of `timestamp`: the archive's date partition.
    pub fn partition_date(&self) -> Option<(i32, u8, u8)> {
        leading_date(self.timestamp.as_deref()?)
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let line = match self.kind() {
            ActivityKind::MeetingStart | ActivityKind::MeetingEnd => {
                let d = self.meeting_details();
                let verb = if self.kind() == ActivityKind::MeetingStart {
                    "started"
                } else {
                    "ended"
                };
                let at = d.start_time.or(d.end_time).unwrap_or_default();
                format!(
                    "meeting {verb}: {:?} ({}) {at}",
                    d.title.unwrap_or_default(),
                    d.meeting_type.unwrap_or_else(|| "unknown type".into())
                )
            }
            ActivityKind::ParticipantJoin | ActivityKind::ParticipantLeave => {
                let verb = if self.kind() == ActivityKind::ParticipantJoin {
                    "joined"
                } else {
                    "left"
                };
                let who: Vec<String> = self
                    .participants()
                    .iter()
                    .map(|p| {
                        let name = p.name.clone().or(p.id.clone()).unwrap_or_default();
                        match &p.role {
                            Some(role) => format!("{name:?} ({role})"),
                            None => format!("{name:?}"),
                        }
                    })
                    .collect();
                format!("{} {verb} the meeting", who.join(", "))
            }
            ActivityKind::Invoke | ActivityKind::Other => {
                format!("{} {:?}", self.activity_type, self.name)
            }
        };
        one_line(&line)
    }
}

fn participant(member: &Map<String, Value>) -> Participant {
    let user = field(member, "user").and_then(Value::as_object);
    let meeting = field(member, "meeting").and_then(Value::as_object);
    let text = |obj: Option<&Map<String, Value>>, key: &str| {
        obj.and_then(|o| field(o, key))
            .and_then(Value::as_str)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    Participant {
        id: text(user, "id"),
        aad_object_id: text(user, "aadObjectId").or_else(|| text(user, "objectId")),
        name: text(user, "name"),
        tenant_id: text(user, "tenantId"),
        role: text(meeting, "role"),
        in_meeting: meeting
            .and_then(|m| field(m, "inMeeting"))
            .and_then(Value::as_bool),
    }
}

/// `obj[path[0]][path[1]]…`, exact keys.
fn pointer<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = obj.get(*first)?;
    for key in rest {
        value = value.as_object()?.get(*key)?;
    }
    Some(value)
}

/// `obj[key]`, the exact key first, else any key equal without regard to ASCII case.
pub fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Reads `YYYY-MM-DD` at the start of an ISO 8601 timestamp.
fn leading_date(s: &str) -> Option<(i32, u8, u8)> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y as i32, m as u8, d as u8))
}

/// Control characters become spaces; at most [`MAX_SUMMARY_CHARS`].
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_SUMMARY_CHARS)
        .collect();
    if s.chars().count() > MAX_SUMMARY_CHARS {
        out.push('…');
    }
    out.trim().to_owned()
}

/// The canonical bytes of a JSON value: keys sorted (serde_json's map is ordered), no
/// whitespace. Its SHA-256 names the activity in the archive, so a redelivery is one object.
pub fn canonical(json: &Value) -> Vec<u8> {
    serde_json::to_vec(json).expect("a JSON value always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_and_camel_case_values_read_alike() {
        let pascal = parse(br#"{"type":"event","name":"application/vnd.microsoft.meetingStart","value":{"MeetingType":"Scheduled","Title":"Weekly","Id":"v-id","JoinUrl":"https://teams.microsoft.com/l/meetup-join/x","StartTime":"2026-11-30T10:00:00Z"}}"#).unwrap();
        let camel = parse(br#"{"type":"event","name":" application/vnd.microsoft.meetingStart","value":{"meetingType":"Scheduled","title":"Weekly","id":"v-id","joinUrl":"https://teams.microsoft.com/l/meetup-join/x","startTime":"2026-11-30T10:00:00Z",},}"#).unwrap();
        assert_eq!(pascal.kind(), ActivityKind::MeetingStart);
        assert_eq!(camel.kind(), ActivityKind::MeetingStart);
        assert_eq!(pascal.meeting_details(), camel.meeting_details());
        assert_eq!(
            pascal.meeting_details().join_url.as_deref(),
            Some("https://teams.microsoft.com/l/meetup-join/x")
        );
        assert_eq!(pascal.meeting_key().as_deref(), Some("v-id"));
    }

    #[test]
    fn channel_data_names_the_meeting_and_tenant() {
        let a = parse(br#"{"type":"event","name":"application/vnd.microsoft.meetingParticipantLeave","timestamp":"2026-11-30T10:05:00.1Z","channelData":{"tenant":{"id":"t1"},"meeting":{"id":"m1"}},"value":{"Id":"other","members":[{"user":{"id":"29:a","name":"Ann","aadObjectId":"oid"},"meeting":{"inMeeting":false,"role":"Presenter"}},{"user":"junk"},7]}}"#).unwrap();
        assert_eq!(a.kind(), ActivityKind::ParticipantLeave);
        assert_eq!(a.meeting_key().as_deref(), Some("m1"));
        assert_eq!(a.tenant_id.as_deref(), Some("t1"));
        assert_eq!(a.partition_date(), Some((2026, 11, 30)));
        let p = a.participants();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].role.as_deref(), Some("Presenter"));
        assert_eq!(p[0].in_meeting, Some(false));
        assert_eq!(p[1], Participant::default());
        assert_eq!(a.summary(), r#""Ann" (Presenter), "" left the meeting"#);
    }

    #[test]
    fn other_activities_and_bad_bodies() {
        assert_eq!(
            parse(br#"{"type":"message","text":"hi"}"#).unwrap().kind(),
            ActivityKind::Other
        );
        assert_eq!(
            parse(br#"{"type":"invoke","name":"task/fetch"}"#)
                .unwrap()
                .kind(),
            ActivityKind::Invoke
        );
        assert_eq!(
            parse(br#"{"type":"message","name":"application/vnd.microsoft.meetingStart"}"#)
                .unwrap()
                .kind(),
            ActivityKind::Other,
            "only events are meeting events"
        );
        assert!(matches!(parse(b"  "), Err(ActivityError::Empty)));
        assert!(matches!(parse(b"[1]"), Err(ActivityError::NotAnObject)));
        assert!(matches!(parse(b"{nope"), Err(ActivityError::NotJson(_))));
        let odd = parse(br#"{"type":7,"name":null,"value":"x","channelData":[]}"#).unwrap();
        assert_eq!(odd.kind(), ActivityKind::Other);
        assert_eq!(odd.meeting_details(), MeetingDetails::default());
        assert!(odd.participants().is_empty() && odd.meeting_key().is_none());
    }

    #[test]
    fn summaries_stay_on_one_short_line() {
        let title = format!("a\nb\u{1b}[31m{}", "x".repeat(500));
        let body = serde_json::json!({"type":"event","name":MEETING_END,"value":{"Title":title}});
        let s = Activity::from_json(body).unwrap().summary();
        assert!(!s.contains('\n') && !s.contains('\u{1b}'));
        assert!(s.chars().count() <= MAX_SUMMARY_CHARS + 1);
    }
}
