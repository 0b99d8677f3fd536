//! Reading the archive's events into meetings: every `callevent` record and every bot meeting
//! record, linked by join URL (`link`), with progress for operators.
//!
//! Linking: a Graph callevent names its meeting by join URL (in its resource). A bot record
//! names it by the bot's meeting id, and `meetingStart`/`meetingEnd` (and the meeting-details
//! answer) also by join URL. Every bot meeting id seen together with a join URL is linked to it,
//! so the bot's participant events join the Graph events of the same meeting. A bot meeting id
//! never seen with a join URL stays a meeting of its own, and so does a Graph event whose
//! resource names no join URL: nothing is merged on a guess.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use indicatif::ProgressBar;

use super::from_bot::{self, BotEventRecord};
use super::from_graph;
use super::intervals::MeetingEvents;
use super::link::JoinKey;
use super::observation::{MeetingRef, Reading};
use crate::archive::records::EventRecord;
use crate::archive::{Archive, ArchiveError, Kind, ObjectName};

/// How many objects are read at once (Blob round trips overlap; a folder reads ahead).
const READ_AHEAD: usize = 32;

/// The meetings found, and what was not usable.
#[derive(Debug, Default)]
pub struct Collected {
    pub meetings: Vec<MeetingEvents>,
    /// Objects under `events/`.
    pub examined: usize,
    /// Meeting records that could not be read, per reason (they are skipped, never guessed).
    pub unreadable: BTreeMap<String, usize>,
}

/// Reads every event once, in name order.
pub async fn collect(
    archive: &Arc<dyn Archive>,
    progress: &ProgressBar,
) -> Result<Collected, ArchiveError> {
    let names = archive.list(Kind::Events).await?;
    progress.set_length(names.len() as u64);
    let mut collected = Collected {
        examined: names.len(),
        ..Collected::default()
    };
    let mut readings = Vec::new();
    let mut objects = futures::stream::iter(names)
        .map(|name| async move {
            let bytes = archive.get(&name).await;
            (name, bytes)
        })
        .buffered(READ_AHEAD);
    while let Some((name, bytes)) = objects.next().await {
        progress.inc(1);
        let Some(bytes) = bytes? else { continue };
        match read_one(&name, &bytes) {
            Ok(Some(reading)) => readings.push(reading),
            Ok(None) => {}
            Err(reason) => {
                tracing::debug!(object = %name, %reason, "meeting record skipped");
                *collected.unreadable.entry(reason).or_default() += 1;
            }
        }
    }
    collected.meetings = link(readings);
    Ok(collected)
}

/// One object: a reading if it is a meeting record, `None` for other events.
fn read_one(name: &ObjectName, bytes: &[u8]) -> Result<Option<Reading>, String> {
    // The bot's records live under the partition `bot` (the bot endpoint's contract).
    let is_bot = name.as_str().rsplit('/').nth(1) == Some("bot");
    if is_bot {
        let record: BotEventRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("bot record: {e}"))?;
        return from_bot::read(&record).map(Some).map_err(|e| e.to_string());
    }
    let record: EventRecord = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(_) => return Ok(None), // not an event record we wrote: `handler report` counts those
    };
    if record.event_kind != "callevent" {
        return Ok(None);
    }
    from_graph::read(&record)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Groups readings into meetings (module docs: the linking rule).
fn link(readings: Vec<Reading>) -> Vec<MeetingEvents> {
    let mut bot_to_join: HashMap<String, JoinKey> = HashMap::new();
    for r in &readings {
        if let (Some(id), Some(MeetingRef::Join(key))) = (&r.bot_meeting_id, &r.meeting) {
            bot_to_join.entry(id.clone()).or_insert_with(|| key.clone());
        }
    }
    let mut meetings: BTreeMap<MeetingRef, MeetingEvents> = BTreeMap::new();
    for r in readings {
        let Some(meeting) = r.meeting else { continue };
        let meeting = match meeting {
            MeetingRef::Bot(id) => match bot_to_join.get(&id) {
                Some(key) => MeetingRef::Join(key.clone()),
                None => MeetingRef::Bot(id),
            },
            other => other,
        };
        let m = meetings
            .entry(meeting.clone())
            .or_insert_with(|| MeetingEvents {
                id: display_id(&meeting),
                join_url: match &meeting {
                    MeetingRef::Join(key) => Some(key.as_str().to_string()),
                    _ => None,
                },
                ..MeetingEvents::default()
            });
        m.events += 1;
        if let Some(id) = r.bot_meeting_id {
            m.bot_meeting_ids.insert(id);
        }
        if r.title.is_some() {
            m.title = r.title;
        }
        m.observations.extend(r.observations);
    }
    meetings.into_values().collect()
}

/// The meeting's name in the report and for `--meeting`.
fn display_id(meeting: &MeetingRef) -> String {
    match meeting {
        MeetingRef::Join(key) => key.thread_id().unwrap_or(key.as_str()).to_string(),
        MeetingRef::Bot(id) => id.clone(),
        MeetingRef::Resource(r) => r.clone(),
    }
}
