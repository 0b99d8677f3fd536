//! Reading Graph's `callevent` records (Microsoft's "meeting call events" document): `callStarted`,
//! `callEnded`, and `rosterUpdated` with `participants@delta` (`isInLobby`, `removedState`) or
//! the older `activeParticipants@joined` / `activeParticipants@exited`.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::link::{JoinKey, join_url_in_resource};
use super::observation::{Happening, MeetingRef, Observation, Person, Presence, Reading, Source};
use crate::archive::records::EventRecord;
use crate::graph::events::{CallEvent, Participant, RosterChange};

/// Why an archived callevent says nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum GraphReadError {
    #[error("the callevent record has no decrypted payload (a basic notification)")]
    NoPayload,
    #[error("the callevent payload is not a callevent")]
    NotACallEvent(#[source] serde_json::Error),
    #[error("the callevent has no readable eventDateTime")]
    NoTime,
}

/// The reading of one archived `callevent` record.
pub fn read(record: &EventRecord) -> Result<Reading, GraphReadError> {
    let payload = record.payload.as_ref().ok_or(GraphReadError::NoPayload)?;
    let event = CallEvent::deserialize(payload).map_err(GraphReadError::NotACallEvent)?;
    let at = event
        .event_date_time
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t.trim(), &Rfc3339).ok())
        .ok_or(GraphReadError::NoTime)?;
    let resource = payload
        .get("@odata.id")
        .and_then(|v| v.as_str())
        .or(record.resource.as_deref())
        .unwrap_or_default();
    let join_url = join_url_in_resource(resource)
        .or_else(|| record.resource.as_deref().and_then(join_url_in_resource));
    let meeting = match join_url.and_then(JoinKey::from_url) {
        Some(key) => MeetingRef::Join(key),
        None => MeetingRef::Resource(if resource.is_empty() {
            format!("subscription {}", record.subscription_id)
        } else {
            resource.to_string()
        }),
    };
    let observe = |seq: u32, what: Happening| Observation {
        at,
        source: Source::Graph,
        received_at: record.received_at.clone(),
        seq,
        what,
    };
    let mut observations = Vec::new();
    match event.event_type.as_deref() {
        Some("callStarted") => observations.push(observe(0, Happening::CallStarted)),
        Some("callEnded") => observations.push(observe(0, Happening::CallEnded)),
        _ => {}
    }
    for (seq, (change, participant)) in (1..).zip(event.roster()) {
        let presence = match change {
            RosterChange::Joined => Presence::InCall,
            RosterChange::InLobby => Presence::Lobby,
            RosterChange::Left => Presence::Gone {
                reason: participant
                    .removed_state
                    .as_ref()
                    .and_then(|r| r.reason.clone()),
            },
        };
        let who = person(participant);
        observations.push(observe(seq, Happening::Roster { who, presence }));
    }
    Ok(Reading {
        meeting: Some(meeting),
        bot_meeting_id: None,
        title: None,
        observations,
    })
}

/// The participant's identity: user, else guest, phone or application, else the call's own
/// participant id (which Graph keeps for the participant's whole stay).
fn person(p: &Participant) -> Person {
    let set = p.info.as_ref().and_then(|i| i.identity.as_ref());
    let identity = set.and_then(|s| {
        [&s.user, &s.guest, &s.phone, &s.application]
            .into_iter()
            .flatten()
            .next()
    });
    let key = identity
        .and_then(|i| i.id.as_deref())
        .and_then(Person::key_of_object_id)
        .or_else(|| {
            p.id.as_deref()
                .map(|id| format!("participant:{}", id.trim()))
        })
        .unwrap_or_else(|| {
            format!(
                "unnamed:{}",
                identity
                    .and_then(|i| i.display_name.as_deref())
                    .unwrap_or("?")
            )
        });
    Person {
        key,
        display_name: identity.and_then(|i| i.display_name.clone()),
        tenant_id: identity.and_then(|i| i.tenant_id.clone()),
        role: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(payload: serde_json::Value) -> EventRecord {
        EventRecord {
            received_at: "2026-11-23T10:00:00Z".into(),
            subscription_id: "sub".into(),
            tenant_id: None,
            change_type: Some(crate::graph::vocabulary::ChangeType::parse("updated")),
            resource: None,
            resource_data: None,
            event_kind: "callevent".into(),
            rich: true,
            certificate_id: None,
            summary: String::new(),
            payload: Some(payload),
        }
    }

    #[test]
    fn a_roster_update_reads_lobby_call_and_removal_in_order() {
        let r = read(&record(json!({
            "@odata.id": "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253ameeting_X%2540thread.v2%2F0')/meetingCallEvents",
            "eventType": "rosterUpdated", "eventDateTime": "2022-02-28T00:00:05.0000000Z",
            "participants@delta": [
                {"info": {"identity": {"user": {"id": "F3CE", "displayName": "Ann", "tenantId": "t"}}}, "isInLobby": false, "id": "a"},
                {"info": {"identity": {"guest": {"id": "g-1", "displayName": "Visitor"}}}, "isInLobby": true, "id": "b"},
                {"info": {"identity": {}}, "isInLobby": false, "removedState": {"reason": "Participant has left the meeting call."}, "id": "c"}
            ]
        })))
        .unwrap();
        assert_eq!(
            r.meeting,
            Some(MeetingRef::Join(
                JoinKey::from_url(
                    "https://teams.microsoft.com/l/meetup-join/19:meeting_X@thread.v2/0"
                )
                .unwrap()
            ))
        );
        let facts: Vec<(String, Presence)> = r
            .observations
            .iter()
            .map(|o| match &o.what {
                Happening::Roster { who, presence } => (who.key.clone(), presence.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            facts,
            vec![
                ("f3ce".into(), Presence::InCall),
                ("g-1".into(), Presence::Lobby),
                (
                    "participant:c".into(),
                    Presence::Gone {
                        reason: Some("Participant has left the meeting call.".into())
                    }
                ),
            ]
        );
        assert_eq!(
            r.observations[0].at,
            time::macros::datetime!(2022-02-28 00:00:05 UTC)
        );
    }

    #[test]
    fn the_older_joined_and_exited_shape_and_call_markers() {
        let r = read(&record(json!({
            "eventType": "rosterUpdated", "eventDateTime": "2022-02-28T00:00:00Z",
            "activeParticipants@joined": [{"info": {"identity": {"user": {"id": "u1", "displayName": "Dee"}}}}],
            "activeParticipants@exited": [{"info": {"identity": {"user": {"id": "u2", "displayName": "Eve"}}}}]
        })))
        .unwrap();
        assert!(matches!(r.meeting, Some(MeetingRef::Resource(_))));
        assert!(matches!(
            &r.observations[0].what,
            Happening::Roster {
                presence: Presence::InCall,
                ..
            }
        ));
        assert!(matches!(
            &r.observations[1].what,
            Happening::Roster {
                presence: Presence::Gone { reason: None },
                ..
            }
        ));
        let ended = read(&record(
            json!({"eventType": "callEnded", "eventDateTime": "2022-02-28T01:00:00Z"}),
        ))
        .unwrap();
        assert_eq!(ended.observations[0].what, Happening::CallEnded);
        assert!(matches!(
            read(&record(json!({"eventType": "callEnded"}))),
            Err(GraphReadError::NoTime)
        ));
    }
}
