//! What `handler attendance` reports: one meeting's attendance in the shape of Graph's
//! `meetingAttendanceReport` (`attendanceRecords[]` of `identity`, `role`,
//! `totalAttendanceInSeconds`, `attendanceIntervals[]` of `joinDateTime`/`leaveDateTime`/
//! `durationInSeconds`), so it can be compared with Graph's own report, plus fields Graph's report
//! does not have, each named for what it is (`lobbyWaits`, `removedState`, `sources`, ...).

use serde::Serialize;
use time::OffsetDateTime;

/// Every meeting found, as Graph answers a list: `{"value": [...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct AttendanceReports {
    pub value: Vec<MeetingAttendance>,
}

/// One meeting (`#microsoft.graph.meetingAttendanceReport` plus named extras).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingAttendance {
    /// The meeting's thread id from its join URL (`19:meeting_...@thread.v2`), else the bot's
    /// meeting id, else the Graph resource the events came from.
    pub id: String,
    /// The first call start seen (Graph `callStarted` or the bot's `meetingStart`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub meeting_start_date_time: Option<OffsetDateTime>,
    /// The last call end seen; `null` while the call has not ended (or its end was not received).
    #[serde(with = "time::serde::rfc3339::option")]
    pub meeting_end_date_time: Option<OffsetDateTime>,
    pub total_participant_count: usize,
    pub attendance_records: Vec<AttendanceRecord>,
    /// Extra: the join URL, decoded (as Teams shows it), when any source named it.
    pub join_web_url: Option<String>,
    /// Extra: the meeting's title, from the bot's `meetingStart`/`meetingEnd` when known.
    pub title: Option<String>,
    /// Extra: the bot's meeting ids (`channelData.meeting.id`) linked to this meeting.
    pub bot_meeting_ids: Vec<String>,
    /// Extra: where the facts came from: `graph` (callevent notifications) and/or `bot`.
    pub sources: Vec<&'static str>,
    /// Extra: how many archived events describe this meeting.
    pub events: usize,
}

/// One participant (`#microsoft.graph.attendanceRecord` plus named extras).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttendanceRecord {
    pub identity: Identity,
    /// `Organizer`, `Presenter`, `Attendee` (from the bot's participant events), else `None`
    /// (Graph's callevent does not carry a role).
    pub role: String,
    pub total_attendance_in_seconds: i64,
    pub attendance_intervals: Vec<AttendanceInterval>,
    /// Extra: each wait in the lobby, from `isInLobby: true` to admitted (or gone).
    pub lobby_waits: Vec<LobbyWait>,
    /// Extra: the sum of the lobby waits' durations.
    pub total_lobby_wait_in_seconds: i64,
    /// Extra: set when the participant's last state is "removed from the roster" (Graph's
    /// `removedState`, or the bot's leave), with the reason Graph gave and when.
    pub removed_state: Option<Removed>,
}

/// Who (`#microsoft.graph.identity`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The Entra object id when known (Graph's `info.identity.user.id`, the bot's
    /// `user.aadObjectId`), else the id the source gave.
    pub id: String,
    pub display_name: Option<String>,
    pub tenant_id: Option<String>,
}

/// One stay in the meeting (`#microsoft.graph.attendanceInterval`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AttendanceInterval {
    #[serde(with = "time::serde::rfc3339::option")]
    pub join_date_time: Option<OffsetDateTime>,
    /// `null` when no leave and no call end was seen (Graph's rule when data is lacking).
    #[serde(with = "time::serde::rfc3339::option")]
    pub leave_date_time: Option<OffsetDateTime>,
    /// Whole seconds from join to leave; 0 while the leave is unknown (Graph's rule).
    pub duration_in_seconds: i64,
}

/// One wait in the lobby.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LobbyWait {
    #[serde(with = "time::serde::rfc3339")]
    pub lobby_enter_date_time: OffsetDateTime,
    /// When the wait ended (admitted, gone, or the call ended); `null` while still waiting.
    #[serde(with = "time::serde::rfc3339::option")]
    pub lobby_exit_date_time: Option<OffsetDateTime>,
    /// `true` when the wait ended by joining the call.
    pub admitted: bool,
    pub duration_in_seconds: i64,
}

/// The participant left the roster (Graph's `removedState`, or a bot leave).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    /// Graph's reason text (e.g. `Participant has left the meeting call.`), if any.
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub date_time: OffsetDateTime,
}

impl AttendanceRecord {
    /// The name to show people: the display name, else the id.
    pub fn name(&self) -> &str {
        self.identity
            .display_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(&self.identity.id)
    }
}

impl MeetingAttendance {
    /// The heading to show people: the title, else the id.
    pub fn heading(&self) -> &str {
        self.title
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(&self.id)
    }
}

/// Whole seconds from `a` to `b` (never negative).
pub fn seconds_between(a: OffsetDateTime, b: OffsetDateTime) -> i64 {
    (b - a).whole_seconds().max(0)
}
