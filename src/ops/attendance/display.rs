//! Times, durations and names for people (text and HTML share them).

use time::OffsetDateTime;
use time::macros::format_description;

/// `2026-11-23 10:04:00` (UTC).
pub fn date_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_else(|_| t.to_string())
}

/// `10:04:00` (UTC).
pub fn clock(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!("[hour]:[minute]:[second]"))
        .unwrap_or_else(|_| t.to_string())
}

/// `1h 02m 03s`, `25m 00s`, `42s`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Text from the wire made safe for a terminal: control characters (escape sequences, new
/// lines) are shown escaped, never obeyed. At most `max` characters (with an ellipsis).
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_hostile_names() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(600), "10m 00s");
        assert_eq!(duration(3723), "1h 02m 03s");
        assert_eq!(printable("Eve\u{1b}[2J\nroot", 40), "Eve\\u{1b}[2J\\nroot");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(
            date_time(time::macros::datetime!(2026-11-23 11:04:00 +01:00)),
            "2026-11-23 10:04:00"
        );
    }
}
