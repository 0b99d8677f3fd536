//! Reading the Teams bot's meeting events (Microsoft's "meeting apps APIs" document:
//! `application/vnd.microsoft.meetingStart`, `meetingEnd`, `meetingParticipantJoin`,
//! `meetingParticipantLeave`) and the Bot API results archived beside them.
//!
//! The record format is the bot endpoint's contract: [`BotEventRecord`] JSON under
//! `events/{yyyy}/{mm}/{dd}/bot/{sha256}.json`. The activity is kept as received, so its quirks
//! are read here: start/end `value` keys are PascalCase in the field table (`JoinUrl`,
//! `StartTime`) but camelCase in Microsoft's own example (`joinUrl`), so keys are matched without
//! regard to case; member ids may carry stray spaces.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::observation::{Happening, MeetingRef, Observation, Person, Presence, Reading, Source};

/// The archived form of one bot meeting event (written by the bot's messaging endpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BotEventRecord {
    pub received_at: String,
    /// Always `bot`.
    pub source: String,
    /// `meetingStart`, `meetingEnd`, `meetingParticipantJoin`, `meetingParticipantLeave`,
    /// `meetingDetails`, `participantDetails`.
    pub event_kind: String,
    /// `channelData.meeting.id`.
    #[serde(default)]
    pub meeting_id: Option<String>,
    #[serde(default)]
    pub join_url: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The activity's `timestamp`.
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub summary: String,
    /// The activity (or Bot API answer) as received.
    #[serde(default)]
    pub activity: Value,
}

/// Why a bot record says nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum BotReadError {
    #[error("the bot record names no meeting (no meetingId and no join URL)")]
    NoMeeting,
    #[error("the bot {0} event has no readable time")]
    NoTime(String),
}

/// A field of a JSON object, matched without regard to case.
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn text<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    field(v, name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn time_of(s: Option<&str>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s?.trim(), &Rfc3339).ok()
}

/// The reading of one bot record.
pub fn read(record: &BotEventRecord) -> Result<Reading, BotReadError> {
    let activity = &record.activity;
    let value = field(activity, "value").unwrap_or(&Value::Null);
    let details = field(activity, "details").unwrap_or(&Value::Null);
    let join_url = [
        record.join_url.as_deref(),
        text(value, "JoinUrl"),
        text(details, "joinUrl"),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|u| !u.is_empty());
    let meeting_id = record
        .meeting_id
        .as_deref()
        .or_else(|| {
            field(activity, "channelData")
                .and_then(|c| field(c, "meeting"))
                .and_then(|m| text(m, "id"))
        })
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let meeting = join_url
        .and_then(super::link::JoinKey::from_url)
        .map(MeetingRef::Join)
        .or_else(|| meeting_id.map(|id| MeetingRef::Bot(id.to_string())))
        .ok_or(BotReadError::NoMeeting)?;
    let observations = observations(record, value)?;
    let title = text(value, "Title").or_else(|| text(details, "title"));
    Ok(Reading {
        meeting: Some(meeting),
        bot_meeting_id: meeting_id.map(str::to_string),
        title: title.map(str::to_string),
        observations,
    })
}

/// The facts of one bot record (start, end, joins, leaves, who someone is).
fn observations(record: &BotEventRecord, value: &Value) -> Result<Vec<Observation>, BotReadError> {
    let activity = &record.activity;
    let sent_at =
        time_of(record.timestamp.as_deref()).or_else(|| time_of(text(activity, "timestamp")));
    let kind = record.event_kind.as_str();
    let observe = |at: OffsetDateTime, seq: u32, what: Happening| Observation {
        at,
        source: Source::Bot,
        received_at: record.received_at.clone(),
        seq,
        what,
    };
    let no_time = || BotReadError::NoTime(kind.to_string());
    let mut observations = Vec::new();
    match kind {
        "meetingStart" => {
            let at = time_of(text(value, "StartTime"))
                .or(sent_at)
                .ok_or_else(no_time)?;
            observations.push(observe(at, 0, Happening::CallStarted));
        }
        "meetingEnd" => {
            let at = time_of(text(value, "EndTime"))
                .or(sent_at)
                .ok_or_else(no_time)?;
            observations.push(observe(at, 0, Happening::CallEnded));
        }
        "meetingParticipantJoin" | "meetingParticipantLeave" => {
            let at = sent_at.ok_or_else(no_time)?;
            let members = field(value, "members").and_then(Value::as_array);
            for (seq, member) in (1..).zip(members.into_iter().flatten()) {
                let Some(who) = person(member, record.tenant_id.as_deref()) else {
                    continue;
                };
                let presence = if kind == "meetingParticipantJoin" {
                    Presence::InCall
                } else {
                    Presence::Gone { reason: None }
                };
                observations.push(observe(at, seq, Happening::Roster { who, presence }));
            }
        }
        "participantDetails" => {
            if let (Some(at), Some(who)) = (
                sent_at.or_else(|| time_of(Some(&record.received_at))),
                person(activity, record.tenant_id.as_deref()),
            ) {
                observations.push(observe(at, 0, Happening::Identified { who }));
            }
        }
        _ => {}
    }
    Ok(observations)
}

/// A member entry (`{"user": {...}, "meeting": {"role": ...}}`) as a person.
fn person(member: &Value, tenant: Option<&str>) -> Option<Person> {
    let user = field(member, "user")?;
    let key = text(user, "aadObjectId")
        .or_else(|| text(user, "objectId"))
        .and_then(Person::key_of_object_id)
        .or_else(|| text(user, "id").map(|id| format!("bot:{id}")))?;
    let role = field(member, "meeting").and_then(|m| text(m, "role"));
    Some(Person {
        key,
        display_name: text(user, "name").map(str::to_string),
        tenant_id: text(user, "tenantId").or(tenant).map(str::to_string),
        role: role.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(kind: &str, activity: Value) -> BotEventRecord {
        BotEventRecord {
            received_at: "2026-11-23T10:00:01Z".into(),
            source: "bot".into(),
            event_kind: kind.into(),
            meeting_id: Some("MCMxOTptZWV0aW5n".into()),
            join_url: None,
            tenant_id: Some("tenant".into()),
            timestamp: activity
                .get("timestamp")
                .and_then(Value::as_str)
                .map(str::to_string),
            summary: String::new(),
            activity,
        }
    }

    #[test]
    fn a_join_names_each_member_with_role_and_object_id() {
        let r = read(&record("meetingParticipantJoin", json!({
            "type": "event", "name": "application/vnd.microsoft.meetingParticipantJoin",
            "timestamp": "2023-02-23T19:34:07.478Z",
            "value": {"members": [{"user": {"tenantId": "tenantid", "id": "29:userId ", "name": "Test User", "aadObjectId": " User_Object_Id "},
                                   "meeting": {"inMeeting": true, "role": "Organizer"}}]}
        })))
        .unwrap();
        assert_eq!(r.meeting, Some(MeetingRef::Bot("MCMxOTptZWV0aW5n".into())));
        let Happening::Roster { who, presence } = &r.observations[0].what else {
            panic!()
        };
        assert_eq!(who.key, "user_object_id");
        assert_eq!(who.role.as_deref(), Some("Organizer"));
        assert_eq!(who.display_name.as_deref(), Some("Test User"));
        assert_eq!(*presence, Presence::InCall);
        assert_eq!(
            r.observations[0].at,
            time::macros::datetime!(2023-02-23 19:34:07.478 UTC)
        );
    }

    #[test]
    fn start_and_end_take_their_own_times_and_the_join_url_in_either_case() {
        let start = read(&record("meetingStart", json!({"timestamp": "2023-02-23T19:30:00Z",
            "value": {"MeetingType": "Scheduled", "Title": "Launch", "Id": "m", "JoinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0", "StartTime": "2023-02-23T19:29:58Z"}})))
        .unwrap();
        assert!(matches!(start.meeting, Some(MeetingRef::Join(_))));
        assert_eq!(start.title.as_deref(), Some("Launch"));
        assert_eq!(
            start.observations[0].at,
            time::macros::datetime!(2023-02-23 19:29:58 UTC)
        );
        let end = read(&record("meetingEnd", json!({"timestamp": "2023-02-23T20:30:09Z",
            "value": {"id": "m", "joinUrl": "https://teams.microsoft.com/l/meetup-join/19:meeting_X@thread.v2/0", "EndTime": "2023-02-23T20:30:07.478Z"}})))
        .unwrap();
        assert_eq!(start.meeting, end.meeting);
        assert_eq!(end.observations[0].what, Happening::CallEnded);
        let mut nothing = record("meetingStart", json!({}));
        nothing.meeting_id = None;
        assert!(matches!(read(&nothing), Err(BotReadError::NoMeeting)));
        assert!(matches!(
            read(&record("meetingParticipantLeave", json!({"value": {}}))),
            Err(BotReadError::NoTime(_))
        ));
    }
}
