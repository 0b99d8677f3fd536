//! `--format csv`: one row per attendance interval and per lobby wait (RFC 4180), the
//! participant's totals repeated on each row, for spreadsheets.
//!
//! Names come from the wire: a cell that a spreadsheet would run as a formula (`=`, `+`, `-`,
//! `@`, tab, carriage return first) is prefixed with `'`.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::{AttendanceRecord, MeetingAttendance};

pub const HEADER: &str = "meetingId,meetingTitle,participantId,displayName,role,kind,startDateTime,endDateTime,durationInSeconds,admitted,totalAttendanceInSeconds,totalLobbyWaitInSeconds,removedDateTime,removedReason";

pub fn render(meetings: &[MeetingAttendance]) -> String {
    let mut out = String::from(HEADER);
    out.push_str("\r\n");
    for m in meetings {
        for r in &m.attendance_records {
            for i in &r.attendance_intervals {
                row(
                    &mut out,
                    m,
                    r,
                    "attendance",
                    i.join_date_time,
                    i.leave_date_time,
                    i.duration_in_seconds,
                    "",
                );
            }
            for w in &r.lobby_waits {
                let admitted = if w.admitted { "true" } else { "false" };
                row(
                    &mut out,
                    m,
                    r,
                    "lobby",
                    Some(w.lobby_enter_date_time),
                    w.lobby_exit_date_time,
                    w.duration_in_seconds,
                    admitted,
                );
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn row(
    out: &mut String,
    m: &MeetingAttendance,
    r: &AttendanceRecord,
    kind: &str,
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
    seconds: i64,
    admitted: &str,
) {
    let removed = r.removed_state.as_ref();
    let cells = [
        m.id.clone(),
        m.title.clone().unwrap_or_default(),
        r.identity.id.clone(),
        r.identity.display_name.clone().unwrap_or_default(),
        r.role.clone(),
        kind.to_string(),
        time_cell(start),
        time_cell(end),
        seconds.to_string(),
        admitted.to_string(),
        r.total_attendance_in_seconds.to_string(),
        r.total_lobby_wait_in_seconds.to_string(),
        time_cell(removed.map(|x| x.date_time)),
        removed.and_then(|x| x.reason.clone()).unwrap_or_default(),
    ];
    let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
    out.push_str(&cells.join(","));
    out.push_str("\r\n");
}

fn time_cell(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// One field: formula-defused, quoted when it holds a comma, quote or line break.
fn cell(s: &str) -> String {
    let defused = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("Adele Vance"), "Adele Vance");
        assert_eq!(cell("Vance, Adele"), "\"Vance, Adele\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("a\nb"), "\"a\nb\"");
    }
}
