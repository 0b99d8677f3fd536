//! One meeting's timeline as SVG: a row per participant, a bar per attendance interval, lobby
//! waits hatched, removals marked, the call's start and end drawn across, a time axis with
//! ticks, a legend, and a `<title>` tooltip on every mark (screen readers read them too).

use std::fmt::Write;

use time::OffsetDateTime;

use super::display::{clock, duration};
use super::model::{AttendanceRecord, MeetingAttendance};
use super::render_html::esc;

const WIDTH: f64 = 1000.0;
const LABEL: f64 = 250.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 58.0;
const ROW: f64 = 38.0;
const BAR: f64 = 18.0;
const LEGEND: f64 = 44.0;

/// Tick steps to choose from, in seconds: the smallest giving at most 8 ticks is used.
const STEPS: [i64; 18] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];

/// The time range drawn and the mapping to x.
struct Scale {
    t0: f64,
    t1: f64,
}

impl Scale {
    fn of(m: &MeetingAttendance) -> Option<Scale> {
        let times: Vec<f64> = every_time(m).map(unix).collect();
        let lo = times.iter().copied().reduce(f64::min)?;
        let hi = times.iter().copied().reduce(f64::max)?;
        let span = (hi - lo).max(60.0);
        let pad = span * 0.03;
        Some(Scale {
            t0: lo - pad,
            t1: lo + span + pad,
        })
    }

    fn x(&self, t: OffsetDateTime) -> f64 {
        let plot = WIDTH - LABEL - RIGHT;
        LABEL + (unix(t) - self.t0) / (self.t1 - self.t0) * plot
    }
}

fn unix(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

fn every_time(m: &MeetingAttendance) -> impl Iterator<Item = OffsetDateTime> + '_ {
    let call = [m.meeting_start_date_time, m.meeting_end_date_time];
    let records = m.attendance_records.iter().flat_map(|r| {
        let intervals = r
            .attendance_intervals
            .iter()
            .flat_map(|i| [i.join_date_time, i.leave_date_time]);
        let waits = r
            .lobby_waits
            .iter()
            .flat_map(|w| [Some(w.lobby_enter_date_time), w.lobby_exit_date_time]);
        let removed = r.removed_state.iter().map(|x| Some(x.date_time));
        intervals.chain(waits).chain(removed)
    });
    call.into_iter().chain(records).flatten()
}

/// The SVG for one meeting; `n` makes its element ids unique on the page.
pub fn render(m: &MeetingAttendance, n: usize) -> String {
    let Some(scale) = Scale::of(m) else {
        return "<p class=\"empty\">No times to draw: no call start, end or roster change was received.</p>".into();
    };
    let rows = m.attendance_records.len().max(1) as f64;
    let bottom = TOP + rows * ROW;
    let height = bottom + LEGEND;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-labelledby=\"tl-title-{n}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"tl-title-{n}\">Timeline of {}: {} participants</title>",
        esc(m.heading()),
        m.attendance_records.len()
    );
    let _ = write!(
        s,
        "<defs><pattern id=\"lobby-{n}\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"8\" height=\"8\" fill=\"#fef3c7\"/><rect width=\"3.5\" height=\"8\" fill=\"#d97706\"/></pattern></defs>"
    );
    axis(&mut s, &scale, bottom);
    for (i, r) in m.attendance_records.iter().enumerate() {
        row(&mut s, &scale, r, TOP + i as f64 * ROW, i, n);
    }
    call_markers(&mut s, m, &scale, bottom);
    legend(&mut s, bottom + 16.0, n);
    s.push_str("</svg>");
    s
}

fn axis(s: &mut String, scale: &Scale, bottom: f64) {
    let span = (scale.t1 - scale.t0) as i64;
    let step = STEPS.into_iter().find(|st| span / st <= 8).unwrap_or(86400);
    let mut t = (scale.t0 as i64).div_euclid(step) * step + step;
    let _ = write!(
        s,
        "<line x1=\"{LABEL}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" class=\"axis\"/>",
        y = TOP - 6.0,
        x2 = WIDTH - RIGHT
    );
    while (t as f64) < scale.t1 {
        let Ok(at) = OffsetDateTime::from_unix_timestamp(t) else {
            break;
        };
        let x = scale.x(at);
        let label = if step < 60 {
            clock(at)
        } else {
            clock(at)[..5].to_string()
        };
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{y1}\" x2=\"{x:.1}\" y2=\"{bottom}\" class=\"grid\"/>\
             <text x=\"{x:.1}\" y=\"{ty}\" class=\"tick\" text-anchor=\"middle\">{label}</text>",
            y1 = TOP - 10.0,
            ty = TOP - 14.0
        );
        t += step;
    }
}

fn row(s: &mut String, scale: &Scale, r: &AttendanceRecord, y: f64, i: usize, n: usize) {
    if i % 2 == 1 {
        let _ = write!(
            s,
            "<rect x=\"0\" y=\"{y}\" width=\"{WIDTH}\" height=\"{ROW}\" class=\"stripe\"/>"
        );
    }
    let name = r.name();
    let short: String = if name.chars().count() > 30 {
        name.chars().take(29).chain(['…']).collect()
    } else {
        name.to_string()
    };
    let _ = write!(
        s,
        "<text x=\"{x}\" y=\"{y1}\" class=\"name\" text-anchor=\"end\"><title>{full}</title>{short}</text>\
         <text x=\"{x}\" y=\"{y2}\" class=\"role\" text-anchor=\"end\">{sub}</text>",
        x = LABEL - 14.0,
        y1 = y + 17.0,
        y2 = y + 31.0,
        full = esc(name),
        short = esc(&short),
        sub = esc(&subtitle(r))
    );
    let bar_y = y + (ROW - BAR) / 2.0;
    lobby_bars(s, scale, r, bar_y, n);
    interval_bars(s, scale, r, bar_y);
    removed_mark(s, scale, r, y);
}

/// The lobby waits of one row, hatched.
fn lobby_bars(s: &mut String, scale: &Scale, r: &AttendanceRecord, bar_y: f64, n: usize) {
    let name = r.name();
    for w in &r.lobby_waits {
        let end = w.lobby_exit_date_time;
        let x1 = scale.x(w.lobby_enter_date_time);
        let x2 = end.map_or(WIDTH - RIGHT, |e| scale.x(e));
        let how = match (end, w.admitted) {
            (_, true) => "admitted",
            (None, _) => "still waiting at the last event",
            _ => "not admitted",
        };
        let tip = format!(
            "{} waited in the lobby {} – {} ({}), {how}",
            name,
            clock(w.lobby_enter_date_time),
            end.map(clock).unwrap_or_else(|| "?".into()),
            duration(w.duration_in_seconds)
        );
        let _ = write!(
            s,
            "<rect x=\"{x1:.1}\" y=\"{bar_y}\" width=\"{w:.1}\" height=\"{BAR}\" rx=\"3\" class=\"lobby\" fill=\"url(#lobby-{n})\"><title>{t}</title></rect>",
            w = (x2 - x1).max(2.0),
            t = esc(&tip)
        );
    }
}

/// The attendance intervals of one row (an open one drawn to the edge, dashed).
fn interval_bars(s: &mut String, scale: &Scale, r: &AttendanceRecord, bar_y: f64) {
    let name = r.name();
    for iv in &r.attendance_intervals {
        let Some(join) = iv.join_date_time else {
            continue;
        };
        let x1 = scale.x(join);
        let (x2, class, left) = match iv.leave_date_time {
            Some(l) => (scale.x(l), "stay", clock(l)),
            None => (
                WIDTH - RIGHT,
                "stay open",
                "? (still in the meeting at the last event)".into(),
            ),
        };
        let width = (x2 - x1).max(2.0);
        let tip = format!(
            "{} in the meeting {} – {} ({})",
            name,
            clock(join),
            left,
            duration(iv.duration_in_seconds)
        );
        let _ = write!(
            s,
            "<rect x=\"{x1:.1}\" y=\"{bar_y}\" width=\"{width:.1}\" height=\"{BAR}\" rx=\"3\" class=\"{class}\"><title>{t}</title></rect>",
            t = esc(&tip)
        );
        if width > 64.0 && iv.leave_date_time.is_some() {
            let _ = write!(
                s,
                "<text x=\"{cx:.1}\" y=\"{ty}\" class=\"in-bar\" text-anchor=\"middle\" aria-hidden=\"true\">{d}</text>",
                cx = x1 + width / 2.0,
                ty = bar_y + 13.0,
                d = duration(iv.duration_in_seconds)
            );
        }
    }
}

/// The removal mark of one row, at the time the participant left the roster.
fn removed_mark(s: &mut String, scale: &Scale, r: &AttendanceRecord, y: f64) {
    let name = r.name();
    if let Some(removed) = &r.removed_state {
        let x = scale.x(removed.date_time);
        let cy = y + ROW / 2.0;
        let tip = format!(
            "{} left the roster at {}: {}",
            name,
            clock(removed.date_time),
            removed.reason.as_deref().unwrap_or("left")
        );
        let _ = write!(
            s,
            "<g class=\"removed\"><title>{t}</title><circle cx=\"{x:.1}\" cy=\"{cy}\" r=\"7\"/>\
             <path d=\"M{a:.1} {b:.1} L{c:.1} {d:.1} M{a:.1} {d:.1} L{c:.1} {b:.1}\"/></g>",
            t = esc(&tip),
            a = x - 3.5,
            c = x + 3.5,
            b = cy - 3.5,
            d = cy + 3.5
        );
    }
}

/// Under the name: the role (when a source gave one) and the time in the meeting.
fn subtitle(r: &AttendanceRecord) -> String {
    let total = duration(r.total_attendance_in_seconds);
    if r.role == "None" {
        format!("{total} in the meeting")
    } else {
        format!("{} · {total}", r.role)
    }
}

fn call_markers(s: &mut String, m: &MeetingAttendance, scale: &Scale, bottom: f64) {
    for (at, class, label, anchor) in [
        (
            m.meeting_start_date_time,
            "call-start",
            "call started",
            "start",
        ),
        (m.meeting_end_date_time, "call-end", "call ended", "end"),
    ] {
        let Some(at) = at else { continue };
        let x = scale.x(at);
        let text = format!("{label} {}", clock(at));
        let _ = write!(
            s,
            "<g class=\"{class}\"><title>{text} UTC</title>\
             <line x1=\"{x:.1}\" y1=\"20\" x2=\"{x:.1}\" y2=\"28\"/><line x1=\"{x:.1}\" y1=\"{axis}\" x2=\"{x:.1}\" y2=\"{bottom}\"/>\
             <text x=\"{tx:.1}\" y=\"16\" text-anchor=\"{anchor}\">{text}</text></g>",
            tx = if anchor == "start" { x - 4.0 } else { x + 4.0 },
            axis = TOP - 6.0
        );
    }
}

fn legend(s: &mut String, y: f64, n: usize) {
    let _ = write!(
        s,
        "<g class=\"legend\" transform=\"translate({LABEL} {y})\">\
         <rect x=\"0\" y=\"0\" width=\"28\" height=\"14\" rx=\"3\" class=\"stay\"/><text x=\"36\" y=\"12\">in the meeting</text>\
         <rect x=\"150\" y=\"0\" width=\"28\" height=\"14\" rx=\"3\" class=\"lobby\" fill=\"url(#lobby-{n})\"/><text x=\"186\" y=\"12\">waiting in the lobby</text>\
         <g class=\"removed\"><circle cx=\"344\" cy=\"7\" r=\"7\"/><path d=\"M340.5 3.5 L347.5 10.5 M340.5 10.5 L347.5 3.5\"/></g><text x=\"358\" y=\"12\">left or removed</text>\
         <line x1=\"480\" y1=\"0\" x2=\"480\" y2=\"14\" class=\"call-start-line\"/><line x1=\"488\" y1=\"0\" x2=\"488\" y2=\"14\" class=\"call-end-line\"/><text x=\"498\" y=\"12\">call start / end</text>\
         <text x=\"640\" y=\"12\" class=\"note\">times in UTC</text></g>"
    );
}
