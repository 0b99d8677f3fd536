//! `--format html`: one self-contained page (no scripts, fonts, images or styles from outside):
//! per meeting its facts, a timeline (`timeline_svg`) and a table of the same figures.
//!
//! Every text on the page comes from the wire (names, titles, reasons) and is escaped.

use std::fmt::Write;

use super::display::{clock, date_time, duration};
use super::model::{AttendanceRecord, MeetingAttendance};
use super::timeline_svg;

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { margin: 0; padding: 28px 36px 48px; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink); background: #f3f4f6; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0 0 20px; color: var(--muted); }
section.meeting { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px 12px; margin: 0 0 24px; max-width: 1060px; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
section.meeting h2 { margin: 0 0 6px; font-size: 19px; }
dl.facts { display: flex; flex-wrap: wrap; gap: 4px 28px; margin: 0 0 14px; color: var(--muted); font-size: 14px; }
dl.facts div { display: flex; gap: 6px; min-width: 0; }
dl.facts dt { font-weight: 600; color: var(--ink); white-space: nowrap; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 0 0 14px; overflow-x: auto; }
svg.timeline { display: block; max-width: 100%; height: auto; font-family: inherit; }
svg .axis { stroke: #9ca3af; stroke-width: 1; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .tick { font-size: 12px; fill: var(--muted); }
svg .stripe { fill: #f9fafb; }
svg .name { font-size: 14px; font-weight: 600; fill: var(--ink); }
svg .role { font-size: 11.5px; fill: var(--muted); }
svg .stay { fill: #2563eb; }
svg .stay.open { fill: #93c5fd; stroke: #2563eb; stroke-dasharray: 4 3; }
svg .lobby { stroke: #b45309; stroke-width: 1; }
svg .in-bar { font-size: 11.5px; fill: #fff; font-weight: 600; pointer-events: none; }
svg .removed circle { fill: #dc2626; stroke: #fff; stroke-width: 1.5; }
svg .removed path { stroke: #fff; stroke-width: 1.8; stroke-linecap: round; }
svg .call-start line, svg .call-start-line { stroke: #15803d; stroke-width: 2; stroke-dasharray: 6 4; }
svg .call-end line, svg .call-end-line { stroke: #b91c1c; stroke-width: 2; stroke-dasharray: 6 4; }
svg .call-start text { fill: #15803d; font-size: 12.5px; font-weight: 600; }
svg .call-end text { fill: #b91c1c; font-size: 12.5px; font-weight: 600; }
svg .legend text { font-size: 12.5px; fill: var(--ink); }
svg .legend .note { fill: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin-bottom: 8px; }
th, td { text-align: left; padding: 6px 10px 6px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12.5px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.empty { color: var(--muted); }
"#;

/// Escapes text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Graph's `None` (no source gave a role) reads as a dash to people.
pub fn role_label(role: &str) -> &str {
    if role == "None" { "–" } else { role }
}

pub fn render(meetings: &[MeetingAttendance]) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Meeting attendance</title><style>",
    );
    s.push_str(STYLE);
    let _ = write!(
        s,
        "</style></head><body><header><h1>Meeting attendance</h1><p>{} meeting{}, from Graph's meeting call events and the Teams bot's meeting events. Times in UTC.</p></header>",
        meetings.len(),
        if meetings.len() == 1 { "" } else { "s" }
    );
    if meetings.is_empty() {
        s.push_str("<p class=\"empty\">No meeting events in the archive.</p>");
    }
    for (n, m) in meetings.iter().enumerate() {
        meeting(&mut s, m, n);
    }
    s.push_str("</body></html>\n");
    s
}

fn meeting(s: &mut String, m: &MeetingAttendance, n: usize) {
    let _ = write!(
        s,
        "<section class=\"meeting\" aria-labelledby=\"meeting-{n}\"><h2 id=\"meeting-{n}\">{}</h2><dl class=\"facts\">",
        esc(m.heading())
    );
    let call = match (m.meeting_start_date_time, m.meeting_end_date_time) {
        (Some(a), Some(b)) => format!(
            "{} – {} ({})",
            date_time(a),
            clock(b),
            duration((b - a).whole_seconds())
        ),
        (Some(a), None) => format!("{} – no end received", date_time(a)),
        (None, Some(b)) => format!("no start received – {}", date_time(b)),
        (None, None) => "no start or end received".into(),
    };
    let mut fact = |k: &str, v: &str| {
        let _ = write!(s, "<div><dt>{k}</dt><dd>{}</dd></div>", esc(v));
    };
    fact("Call", &call);
    fact("Participants", &m.total_participant_count.to_string());
    fact("Sources", &m.sources.join(", "));
    if m.title.is_some() {
        fact("Meeting", &m.id);
    }
    if let Some(url) = &m.join_web_url {
        fact("Join URL", url);
    }
    s.push_str("</dl><figure>");
    s.push_str(&timeline_svg::render(m, n));
    s.push_str(
        "</figure><table><thead><tr><th>Participant</th><th>Role</th><th>In the meeting</th>\
         <th>Lobby wait</th><th>Intervals (UTC)</th><th>Left / removed</th></tr></thead><tbody>",
    );
    for r in &m.attendance_records {
        table_row(s, r);
    }
    s.push_str("</tbody></table></section>");
}

fn table_row(s: &mut String, r: &AttendanceRecord) {
    let intervals: Vec<String> = r
        .attendance_intervals
        .iter()
        .map(|i| {
            format!(
                "{} – {}",
                i.join_date_time.map(clock).unwrap_or_else(|| "?".into()),
                i.leave_date_time.map(clock).unwrap_or_else(|| "?".into())
            )
        })
        .collect();
    let lobby = if r.lobby_waits.is_empty() {
        "–".to_string()
    } else {
        duration(r.total_lobby_wait_in_seconds)
    };
    let removed = r
        .removed_state
        .as_ref()
        .map(|x| {
            format!(
                "{} {}",
                clock(x.date_time),
                x.reason.as_deref().unwrap_or("left")
            )
        })
        .unwrap_or_else(|| "–".into());
    let _ = write!(
        s,
        "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
        esc(r.name()),
        esc(role_label(&r.role)),
        duration(r.total_attendance_in_seconds),
        lobby,
        esc(&intervals.join(", ")),
        esc(&removed)
    );
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn markup_from_the_wire_is_inert() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{0}b"), "a\u{fffd}b");
    }
}
