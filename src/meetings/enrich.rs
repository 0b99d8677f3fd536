//! Enrichment of archived meeting events with the Bot APIs of Microsoft's "Meeting apps APIs"
//! document, after the event is stored and answered:
//! - meetingStart / meetingEnd → `GET /v1/meetings/{meetingId}` (scheduled times, organizer,
//!   type, join URL), archived as `meetingDetails`;
//! - participant join / leave → `GET /v1/meetings/{meetingId}/participants/{participantId}
//!   ?tenantId=…` per member (the participant id is the member's Entra object id, else its
//!   `29:` id), archived as `participantDetails`.
//!
//! The answers are archived beside the events as [`BotEventRecord`](crate::archive::records::BotEventRecord)s.
//! Failures (no permission, meeting expired, the Bot APIs down, an archive error) are logged
//! and dropped: the event itself is already stored.

use std::sync::Arc;

use serde_json::Value;

use crate::archive::Archive;
use crate::bot::activity::{Activity, ActivityKind, field};
use crate::bot::client::ConnectorClient;
use crate::jwks::printable;

/// Members looked up per participant event at most (a large meeting's roster event must not
/// become hundreds of calls).
pub const MAX_PARTICIPANTS_PER_EVENT: usize = 50;

/// Runs the enrichment of `activity` in the background.
pub fn spawn(
    connector: ConnectorClient,
    archive: Arc<dyn Archive>,
    activity: Activity,
    received_at: String,
) {
    tokio::spawn(async move {
        enrich(&connector, archive.as_ref(), &activity, &received_at).await;
    });
}

/// Looks up what the Bot APIs say about `activity` and archives the answers.
pub async fn enrich(
    connector: &ConnectorClient,
    archive: &dyn Archive,
    activity: &Activity,
    received_at: &str,
) {
    let Some(meeting_id) = activity.meeting_key() else {
        return;
    };
    let objects = match activity.kind() {
        ActivityKind::MeetingStart | ActivityKind::MeetingEnd => {
            meeting_details(connector, activity, &meeting_id, received_at)
                .await
                .into_iter()
                .collect()
        }
        ActivityKind::ParticipantJoin | ActivityKind::ParticipantLeave => {
            participant_details(connector, activity, &meeting_id, received_at).await
        }
        ActivityKind::Invoke | ActivityKind::Other => Vec::new(),
    };
    if objects.is_empty() {
        return;
    }
    let count = objects.len();
    match archive.put_all_if_absent(objects).await {
        Ok(_) => tracing::info!(records = count, "bot enrichment archived"),
        Err(error) => tracing::warn!(%error, "bot enrichment could not be archived"),
    }
}

type Object = (crate::archive::ObjectName, bytes::Bytes);

/// `GET /v1/meetings/{meetingId}` as a `meetingDetails` record.
async fn meeting_details(
    connector: &ConnectorClient,
    activity: &Activity,
    meeting_id: &str,
    received_at: &str,
) -> Option<Object> {
    let answer = match connector.meeting(&activity.service_url, meeting_id).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(%error, "meeting details not available");
            return None;
        }
    };
    let details = answer.get("details").and_then(Value::as_object);
    let text = |key: &str| {
        details
            .and_then(|d| field(d, key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let summary = format!(
        "meeting details: {:?} ({}) scheduled {} to {}",
        text("title").unwrap_or_default(),
        text("type").unwrap_or_default(),
        text("scheduledStartTime").unwrap_or_default(),
        text("scheduledEndTime").unwrap_or_default()
    );
    let join_url = text("joinUrl");
    Some(super::answer_object(
        received_at,
        "meetingDetails",
        activity,
        answer,
        join_url,
        one_line(&summary),
    ))
}

/// `GET /v1/meetings/{meetingId}/participants/{id}?tenantId=` per member, as
/// `participantDetails` records.
async fn participant_details(
    connector: &ConnectorClient,
    activity: &Activity,
    meeting_id: &str,
    received_at: &str,
) -> Vec<Object> {
    let mut objects = Vec::new();
    let members = activity.participants();
    for member in members.into_iter().take(MAX_PARTICIPANTS_PER_EVENT) {
        let Some(participant) = member.aad_object_id.clone().or(member.id.clone()) else {
            continue;
        };
        let Some(tenant) = member.tenant_id.clone().or(activity.tenant_id.clone()) else {
            tracing::warn!("participant details need a tenant id; none in the event");
            continue;
        };
        let answer = match connector
            .participant(&activity.service_url, meeting_id, &participant, &tenant)
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%error, participant = %printable(&participant, 64), "participant details not available");
                continue;
            }
        };
        let role = answer.pointer("/meeting/role").and_then(Value::as_str);
        let in_meeting = answer
            .pointer("/meeting/inMeeting")
            .and_then(Value::as_bool);
        let name = answer
            .pointer("/user/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(member.name.clone())
            .unwrap_or_default();
        let summary = format!(
            "participant details: {name:?} role {}, in meeting {}",
            role.unwrap_or_default(),
            in_meeting.map_or("unknown".into(), |b| b.to_string())
        );
        objects.push(super::answer_object(
            received_at,
            "participantDetails",
            activity,
            answer,
            None,
            one_line(&summary),
        ));
    }
    objects
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(240)
        .collect()
}
