//! `handler attendance`: who attended which meeting, when, for how long, who waited in the
//! lobby, from the archive's events: Graph's `callevent` notifications and the Teams bot's
//! meeting events, linked by join URL.
//!
//! - [`collect`] reads the archive (progress on a terminal) and links sources ([`link`]);
//!   [`from_graph`] and [`from_bot`] read each source's records into [`observation`]s;
//! - [`intervals`] applies the attendance rules (rejoin, lobby, removed, duplicates, call end);
//! - [`model`] is the report, in the shape of Graph's `meetingAttendanceReport`;
//! - `render_text`, `render_json`, `render_csv`, `render_html` (with `timeline_svg`) write it.

pub(crate) mod collect;
mod display;
pub(crate) mod from_bot;
pub(crate) mod from_graph;
pub(crate) mod intervals;
pub(crate) mod link;
pub(crate) mod model;
pub(crate) mod observation;
mod render_csv;
mod render_html;
mod render_json;
mod render_text;
mod timeline_svg;

use std::collections::BTreeMap;
use std::sync::Arc;

use indicatif::ProgressBar;

use crate::archive::{Archive, ArchiveError};
use link::JoinKey;
use model::MeetingAttendance;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people at a terminal.
    Text,
    /// Graph's `meetingAttendanceReport` list shape, with named extra fields.
    Json,
    /// One row per attendance interval and lobby wait.
    Csv,
    /// One self-contained page with a timeline per meeting.
    Html,
}

/// The attendance of every meeting found (or of the one asked for).
#[derive(Debug)]
pub struct Attendance {
    pub meetings: Vec<MeetingAttendance>,
    /// Objects under `events/` read.
    pub examined: usize,
    /// Meeting records skipped as unreadable, per reason.
    pub unreadable: BTreeMap<String, usize>,
}

/// Reads the archive and applies the rules; `meeting` keeps only the meeting with that id
/// (thread id, bot meeting id or Graph resource) or join URL (in any spelling).
pub async fn build(
    archive: &Arc<dyn Archive>,
    meeting: Option<&str>,
    progress: &ProgressBar,
) -> Result<Attendance, ArchiveError> {
    let collected = collect::collect(archive, progress).await?;
    let mut meetings: Vec<MeetingAttendance> = collected
        .meetings
        .into_iter()
        .filter(|m| meeting.is_none_or(|wanted| names(m, wanted)))
        .map(intervals::attendance)
        .collect();
    meetings.sort_by_cached_key(|m| {
        (
            m.meeting_start_date_time.is_none(),
            m.meeting_start_date_time,
            m.id.clone(),
        )
    });
    Ok(Attendance {
        meetings,
        examined: collected.examined,
        unreadable: collected.unreadable,
    })
}

/// Whether `wanted` names this meeting.
fn names(m: &intervals::MeetingEvents, wanted: &str) -> bool {
    let wanted = wanted.trim();
    if m.id == wanted || m.bot_meeting_ids.contains(wanted) {
        return true;
    }
    match (JoinKey::from_url(wanted), &m.join_url) {
        (Some(key), Some(url)) => key.as_str() == url,
        _ => false,
    }
}

/// The report in `format`.
pub fn render(meetings: &[MeetingAttendance], format: Format) -> String {
    match format {
        Format::Text => render_text::render(meetings),
        Format::Json => render_json::render(meetings),
        Format::Csv => render_csv::render(meetings),
        Format::Html => render_html::render(meetings),
    }
}
