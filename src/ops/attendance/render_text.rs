//! `--format text`: the report for people at a terminal.

use std::fmt::Write;

use super::display::{clock, date_time, duration, printable};
use super::model::{AttendanceRecord, MeetingAttendance};

pub fn render(meetings: &[MeetingAttendance]) -> String {
    let mut out = String::new();
    if meetings.is_empty() {
        out.push_str("No meeting events in the archive.\n");
    }
    for (i, m) in meetings.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        meeting(&mut out, m);
    }
    out
}

fn meeting(out: &mut String, m: &MeetingAttendance) {
    let _ = writeln!(out, "Meeting {}", printable(m.heading(), 200));
    if m.title.is_some() {
        let _ = writeln!(out, "  id         {}", printable(&m.id, 200));
    }
    if let Some(url) = &m.join_web_url {
        let _ = writeln!(out, "  join URL   {}", printable(url, 300));
    }
    let when = match (m.meeting_start_date_time, m.meeting_end_date_time) {
        (Some(s), Some(e)) => format!(
            "{} – {} UTC ({})",
            date_time(s),
            clock(e),
            duration((e - s).whole_seconds())
        ),
        (Some(s), None) => format!("{} UTC – (no call end received)", date_time(s)),
        (None, Some(e)) => format!("(no call start received) – {} UTC", date_time(e)),
        (None, None) => "(no call start or end received)".to_string(),
    };
    let _ = writeln!(out, "  call       {when}");
    let _ = writeln!(
        out,
        "  {} participants, {} events from {}",
        m.total_participant_count,
        m.events,
        m.sources.join(" and ")
    );
    for r in &m.attendance_records {
        participant(out, r);
    }
}

fn participant(out: &mut String, r: &AttendanceRecord) {
    let mut head = format!(
        "  {} ({}): {} in the meeting",
        printable(r.name(), 80),
        printable(&r.role, 20),
        duration(r.total_attendance_in_seconds)
    );
    if !r.lobby_waits.is_empty() {
        let _ = write!(
            head,
            ", {} in the lobby",
            duration(r.total_lobby_wait_in_seconds)
        );
    }
    let _ = writeln!(out, "{head}");
    let span = |a: Option<_>, b: Option<_>| {
        format!(
            "{} – {}",
            a.map(clock).unwrap_or_else(|| "?".into()),
            b.map(clock).unwrap_or_else(|| "?".into())
        )
    };
    for w in &r.lobby_waits {
        let how = match (w.lobby_exit_date_time, w.admitted) {
            (_, true) => "admitted",
            (None, _) => "still waiting",
            (Some(_), false) => "not admitted",
        };
        let _ = writeln!(
            out,
            "      lobby   {}  {:>10}  {how}",
            span(Some(w.lobby_enter_date_time), w.lobby_exit_date_time),
            duration(w.duration_in_seconds)
        );
    }
    for i in &r.attendance_intervals {
        let _ = writeln!(
            out,
            "      joined  {}  {:>10}",
            span(i.join_date_time, i.leave_date_time),
            duration(i.duration_in_seconds)
        );
    }
    if let Some(removed) = &r.removed_state {
        let _ = writeln!(
            out,
            "      removed {}  {}",
            clock(removed.date_time),
            printable(removed.reason.as_deref().unwrap_or("left"), 120)
        );
    }
}
