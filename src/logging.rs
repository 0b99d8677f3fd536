//! Logs that outside input cannot forge.
//!
//! Anyone who knows the notification URL can put any text into a subscription id, a certificate
//! id or a header. Two layers keep such text from writing a line of its own or driving the
//! reader's terminal:
//! - [`escape`] marks an outside value at the call site: control characters (CR, LF, ESC, C1,
//!   bidirectional overrides) and backslashes are written as escapes, and the value is cut at
//!   [`MAX_LOGGED_CHARS`], so a hostile id is one bounded, visibly quoted token;
//! - the text formatter installed by [`init`] escapes control characters in every field and
//!   message whatever the call site did, so one event is always one line. The JSON format
//!   (`LOG_FORMAT=json`, one object per line, what Application Insights ingests best) gets the
//!   same from JSON string escaping.
//!
//! Colours are written only when stderr is a terminal: a log file or the Functions host's
//! capture gets plain text.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

use crate::config::LogFormat;

/// Longest outside value written to a log line (characters); the rest is counted, not written.
pub(crate) const MAX_LOGGED_CHARS: usize = 200;

/// An outside value, escaped and bounded when displayed (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct Escaped<'a>(&'a str);

/// Marks `value` (from outside) for logging: `tracing::warn!(subscription_id = %escape(id), ...)`.
pub(crate) fn escape(value: &str) -> Escaped<'_> {
    Escaped(value)
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (written, (at, c)) in self.0.char_indices().enumerate() {
            if written == MAX_LOGGED_CHARS {
                return write!(f, "…(+{} bytes)", self.0.len() - at);
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                c => write_char_escaped(f, c)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Characters that can end a line, move the cursor or reorder what a reader sees.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn write_char_escaped(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if is_unsafe(c) => write!(out, "\\u{{{:x}}}", c as u32),
        c => out.write_char(c),
    }
}

/// Escapes the unsafe characters of already formatted text (backslashes are left alone: Debug
/// output has escaped them already, and Display output of our own values has none that matter).
struct Controls<'a>(&'a str);

impl fmt::Display for Controls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(is_unsafe) {
            return f.write_str(self.0);
        }
        self.0.chars().try_for_each(|c| write_char_escaped(f, c))
    }
}

/// The text format's field formatter: `message key=value ...`, every value with its control
/// characters escaped, so one event is one line whatever a value holds.
pub(crate) struct SafeFields;

impl<'w> FormatFields<'w> for SafeFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = SafeVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct SafeVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for SafeVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let text = format!("{value:?}");
        let sep = if std::mem::replace(&mut self.first, false) {
            ""
        } else {
            " "
        };
        self.result = match name {
            "message" => write!(self.writer, "{sep}{}", Controls(&text)),
            name => write!(
                self.writer,
                "{sep}{}={}",
                name.trim_start_matches("r#"),
                Controls(&text)
            ),
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// Installs the process's log subscriber: `RUST_LOG` (else `default_filter`), on stderr, in
/// `format`, coloured only when stderr is a terminal.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(SafeFields)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_backslashes_are_escaped() {
        assert_eq!(
            escape("a\nb\rc\u{1b}[31md\\n\u{202e}e\u{85}").to_string(),
            "a\\nb\\rc\\u{1b}[31md\\\\n\\u{202e}e\\u{85}"
        );
        assert_eq!(escape("plain-id_1.2").to_string(), "plain-id_1.2");
        assert_eq!(format!("{:?}", escape("x\ny")), "\"x\\ny\"");
    }

    #[test]
    fn long_values_are_cut_and_counted() {
        let long = "é".repeat(MAX_LOGGED_CHARS + 10);
        let shown = escape(&long).to_string();
        assert!(shown.ends_with("…(+20 bytes)"), "{shown}");
        assert_eq!(
            shown.chars().filter(|c| *c == 'é').count(),
            MAX_LOGGED_CHARS
        );
    }
}
