//! The bot's messaging endpoint, top to bottom: parse the activity → authenticate the Bot
//! Connector's token → archive the meeting event (and the meeting's state, for its call-event
//! subscription) → answer → then, in the background, tell the renewer and enrich the event with
//! the Bot APIs. The HTTP adapter only reads the request and maps the [`Answer`] to a status.
//!
//! Invariants:
//! - nothing is answered 200 before it is stored (an archive failure is a 503, so the Bot
//!   Connector retries);
//! - an activity whose token fails is never an event: it is kept under `rejected/` as evidence
//!   (bounded in size) and answered 401;
//! - the enrichment and the subscription never delay or block the archive.
//!
//! Which activities are archived (the rule the README documents): the four meeting events
//! (`meetingStart`, `meetingEnd`, `meetingParticipantJoin`, `meetingParticipantLeave`) become
//! events under `events/…/bot/`. Everything else the Bot Connector sends once authenticated
//! (messages to the bot, installation and conversation updates, other events) is answered 200
//! and logged, not archived: this handler keeps a record of meetings, not a chat bot's
//! transcript. Invokes are answered 200 with an empty invoke-response body (`{}`): the bot offers
//! no cards, tasks or message extensions.

pub(crate) mod enrich;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::archive::records::{
    self, BOT_SOURCE, BotEventRecord, MeetingStateRecord, RejectedBotRecord,
};
use crate::archive::{Archive, ArchiveError, Kind, ObjectName, Written};
use crate::bot::activity::{self, Activity, ActivityError, ActivityKind};
use crate::bot::auth::{AuthError, BotAuthenticator};
use crate::bot::client::ConnectorClient;

/// A rejected activity is kept whole up to this size; beyond it only its first
/// [`REJECTED_PREFIX_BYTES`] are kept.
pub const MAX_REJECTED_BYTES: usize = 64 * 1024;
pub const REJECTED_PREFIX_BYTES: usize = 4 * 1024;

/// Called when a meeting's start or end is stored (the renewer's reconcile, queued). Must return
/// at once.
pub type MeetingWatcher = Arc<dyn Fn() + Send + Sync>;

/// What the messaging endpoint answers.
#[derive(Debug)]
pub enum Answer {
    /// A meeting event, stored (or already there): 200, empty body.
    Stored {
        event_kind: &'static str,
        duplicate: bool,
    },
    /// Authenticated but not a meeting event: 200, empty body, not archived.
    Ignored,
    /// An invoke: 200 with an empty invoke-response body.
    Invoke,
    /// The token failed: 401, kept under `rejected/`.
    Rejected(AuthError),
}

/// Why a request could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum MessagesError {
    /// 400: the body is not an activity.
    #[error("{0}")]
    BadRequest(#[from] ActivityError),
    /// 503: the event could not be stored; the Bot Connector retries.
    #[error("{0}")]
    Unavailable(#[from] ArchiveError),
}

/// Everything the messaging endpoint needs, shared by all requests.
pub struct MessagesPath {
    pub auth: Arc<BotAuthenticator>,
    pub archive: Arc<dyn Archive>,
    /// The Bot APIs, when the bot's outbound identity is configured: enrichment.
    pub connector: Option<ConnectorClient>,
    /// Told after a meeting's start or end is stored.
    pub watcher: Option<MeetingWatcher>,
}

impl MessagesPath {
    /// Runs a request through the path. `authorization` is the header's value.
    pub async fn receive(
        &self,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<Answer, MessagesError> {
        let received_at = crate::receiver::now_rfc3339();
        let activity = activity::parse(body)?;
        if let Err(error) = self
            .auth
            .authenticate(authorization, &activity.service_url, &activity.channel_id)
            .await
        {
            self.keep_rejected(&received_at, &activity, body, &error)
                .await;
            return Ok(Answer::Rejected(error));
        }
        let kind = activity.kind();
        let Some(event_kind) = kind.event_kind() else {
            if activity.activity_type == "conversationUpdate" {
                // The bot was added to a team or chat: what `ALERT_BOT_CONVERSATION` takes to
                // alert this conversation (authenticated above, escaped here).
                let value = format!(
                    "{}|{}",
                    activity.service_url,
                    activity.conversation_id.as_deref().unwrap_or("")
                );
                tracing::info!(
                    alert_bot_conversation = %crate::logging::escape(&value),
                    "bot conversation update: the bot can post to this conversation"
                );
            }
            tracing::info!(
                activity_type = %crate::jwks::printable(&activity.activity_type, 40),
                name = %crate::jwks::printable(&activity.name, 80),
                "bot activity answered, not archived (not a meeting event)"
            );
            return Ok(if kind == ActivityKind::Invoke {
                Answer::Invoke
            } else {
                Answer::Ignored
            });
        };

        let mut objects = vec![event_object(&received_at, event_kind, &activity)];
        let state = meeting_state(&received_at, &activity);
        let meeting_changed = state.is_some();
        objects.extend(state);
        let written = self.archive.put_all_if_absent(objects).await?;
        let duplicate = written.first() == Some(&Written::AlreadyExisted);
        tracing::info!(
            event_kind,
            duplicate,
            meeting = %crate::jwks::printable(&activity.meeting_key().unwrap_or_default(), 80),
            "bot meeting event archived"
        );

        if meeting_changed && let Some(watcher) = &self.watcher {
            watcher();
        }
        if let Some(connector) = &self.connector
            && !duplicate
        {
            enrich::spawn(
                connector.clone(),
                self.archive.clone(),
                activity,
                received_at,
            );
        }
        Ok(Answer::Stored {
            event_kind,
            duplicate,
        })
    }

    /// Keeps a refused activity as evidence. Failing to store evidence changes nothing in the
    /// answer (401): it is logged.
    async fn keep_rejected(
        &self,
        received_at: &str,
        activity: &Activity,
        body: &[u8],
        error: &AuthError,
    ) {
        tracing::warn!(reason = %error, code = error.code(), "bot activity refused (401)");
        let (name, bytes) = rejected_object(received_at, activity, body, error);
        if let Err(e) = self.archive.put_if_absent(&name, bytes).await {
            tracing::error!(error = %e, "cannot keep the refused activity as evidence");
        }
    }
}

/// The event's record and name.
fn event_object(
    received_at: &str,
    event_kind: &'static str,
    activity: &Activity,
) -> (ObjectName, Bytes) {
    let canonical = activity::canonical(&activity.json);
    let name = records::bot_name(Kind::Events, activity.partition_date(), &canonical);
    let join_url = matches!(
        activity.kind(),
        ActivityKind::MeetingStart | ActivityKind::MeetingEnd
    )
    .then(|| activity.meeting_details().join_url)
    .flatten();
    let record = BotEventRecord {
        received_at: received_at.to_owned(),
        source: BOT_SOURCE.to_owned(),
        event_kind: event_kind.to_owned(),
        meeting_id: activity.meeting_key().unwrap_or_default(),
        join_url,
        tenant_id: activity.tenant_id.clone(),
        timestamp: activity.timestamp.clone(),
        summary: activity.summary(),
        activity: activity.json.clone(),
    };
    (name, records::to_json(&record))
}

/// A meeting's start (with a join URL) or end, as the renewer's desired state.
fn meeting_state(received_at: &str, activity: &Activity) -> Option<(ObjectName, Bytes)> {
    let action = match activity.kind() {
        ActivityKind::MeetingStart => "start",
        ActivityKind::MeetingEnd => "end",
        _ => return None,
    };
    let details = activity.meeting_details();
    let meeting_id = activity.meeting_key().unwrap_or_default();
    if action == "start" && details.join_url.is_none() {
        tracing::warn!("meetingStart without JoinUrl: no call-event subscription for it");
        return None;
    }
    if meeting_id.is_empty() && details.join_url.is_none() {
        return None;
    }
    let at = activity
        .timestamp
        .clone()
        .unwrap_or_else(|| received_at.to_owned());
    let record = MeetingStateRecord {
        recorded_at: received_at.to_owned(),
        action: action.to_owned(),
        at,
        meeting_id: meeting_id.clone(),
        join_url: details.join_url,
    };
    let key = if meeting_id.is_empty() {
        record.join_url.clone().unwrap_or_default()
    } else {
        meeting_id
    };
    let partition = &records::sha256_hex(key.as_bytes())[..32];
    let name = ObjectName::new(
        Kind::Meetings,
        activity.partition_date(),
        partition,
        &records::sha256_hex(&activity::canonical(&activity.json)),
    );
    Some((name, records::to_json(&record)))
}

/// The evidence of a refused activity: whole when small, else its first bytes.
fn rejected_object(
    received_at: &str,
    activity: &Activity,
    body: &[u8],
    error: &AuthError,
) -> (ObjectName, Bytes) {
    let small = body.len() <= MAX_REJECTED_BYTES;
    let record = RejectedBotRecord {
        received_at: received_at.to_owned(),
        reason: error.to_string(),
        reason_code: error.code().to_owned(),
        activity: small.then(|| activity.json.clone()),
        truncated_body: (!small).then(|| {
            String::from_utf8_lossy(&body[..REJECTED_PREFIX_BYTES.min(body.len())]).into_owned()
        }),
        body_bytes: body.len(),
    };
    let name = records::bot_name(Kind::Rejected, activity.partition_date(), body);
    (name, records::to_json(&record))
}

/// The record of a Bot API answer about `activity` (see [`enrich`]).
pub(crate) fn answer_object(
    received_at: &str,
    event_kind: &str,
    activity: &Activity,
    answer: Value,
    join_url: Option<String>,
    summary: String,
) -> (ObjectName, Bytes) {
    let canonical = activity::canonical(&answer);
    let name = records::bot_name(Kind::Events, activity.partition_date(), &canonical);
    let record = BotEventRecord {
        received_at: received_at.to_owned(),
        source: BOT_SOURCE.to_owned(),
        event_kind: event_kind.to_owned(),
        meeting_id: activity.meeting_key().unwrap_or_default(),
        join_url,
        tenant_id: activity.tenant_id.clone(),
        timestamp: activity.timestamp.clone(),
        summary,
        activity: answer,
    };
    (name, records::to_json(&record))
}
