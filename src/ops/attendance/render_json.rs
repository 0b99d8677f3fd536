//! `--format json`: Graph's list shape, `{"value": [meetingAttendanceReport, ...]}`.

use super::model::{AttendanceReports, MeetingAttendance};

pub fn render(meetings: &[MeetingAttendance]) -> String {
    let reports = AttendanceReports {
        value: meetings.to_vec(),
    };
    let mut out = serde_json::to_string_pretty(&reports).expect("reports always serialize");
    out.push('\n');
    out
}
