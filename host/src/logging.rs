//! The host's log on stderr: its filter and format, and one guarantee for
//! both formats: text from outside the host (job types, ids, trace ids,
//! error texts, guest log messages and fields, guest output lines) can
//! neither forge a log line nor drive the reader's terminal, because every
//! control character in a logged value is written as an escape (`\n`,
//! `\u{1b}`). That happens here, for every field of every event, rather
//! than at each call site that logs something a producer or guest wrote.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

use crate::cli::LogFormat;

/// Installs the global subscriber: `RUST_LOG` or `default_level`, in `format`.
pub fn init(format: LogFormat, default_level: &str) {
    // The redis client logs every failed connection attempt; jobhost reports
    // outages itself, once each, so only its errors pass by default.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},redis=error")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // serde_json escapes what is below U+0020; `JsonLine` does the rest.
        LogFormat::Json => builder.json().with_writer(|| JsonLine(io::stderr())).init(),
        LogFormat::Text => builder
            .fmt_fields(EscapedFields)
            .with_writer(io::stderr)
            .with_ansi(io::stderr().is_terminal())
            .init(),
    }
}

/// Whether `c` must not reach a log as it is: control characters (C0, DEL,
/// C1) and the invisible format characters that reorder or hide text (bidi
/// overrides and isolates, zero-width characters).
pub fn is_unsafe_in_log(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// `text` with every character [`is_unsafe_in_log`] written as Rust writes
/// it in a string literal: `\n`, `\t`, `\u{1b}`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_in_log) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_in_log(c) {
            let _ = write!(escaped, "{}", c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// The text format's fields, as tracing-subscriber's default writes them
/// (`key=value`, the message bare), escaped. Only the fields go through it,
/// so the newline ending each line stays the only one.
struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut plain = String::new();
        DefaultFields::new().format_fields(Writer::new(&mut plain), fields)?;
        writer.write_str(&escape(&plain))
    }
}

/// A JSON log line with the control characters serde_json leaves as they
/// are (DEL, C1) and the invisible format characters as `\uXXXX` escapes.
/// Outside its strings a JSON line is ASCII, so each one found is inside a
/// string, where the escape means the same character: the line stays valid.
struct JsonLine<W>(W);

impl<W: io::Write> io::Write for JsonLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The fmt layer writes each line whole; a partial line passes as is.
        let Ok(text) = std::str::from_utf8(buf) else {
            return self.0.write(buf);
        };
        if !text.chars().any(|c| c > '\u{7e}' && is_unsafe_in_log(c)) {
            return self.0.write(buf);
        }
        let mut escaped = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if c > '\u{7e}' && is_unsafe_in_log(c) {
                let _ = write!(escaped, "\\u{:04x}", c as u32);
            } else {
                escaped.push(c);
            }
        }
        self.0.write_all(escaped.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(escape("orders.created ok ü"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\nb\r\t\u{1b}[31m\u{7f}\u{9b}\u{202e}"),
            "a\\nb\\r\\t\\u{1b}[31m\\u{7f}\\u{9b}\\u{202e}"
        );
    }

    #[test]
    fn json_lines_escape_what_serde_json_leaves() {
        let mut out = JsonLine(Vec::new());
        let line = serde_json::json!({ "message": "del\u{7f} csi\u{9b} rtl\u{202e} esc\u{1b}" });
        io::Write::write_all(&mut out, format!("{line}\n").as_bytes()).unwrap();
        let written = String::from_utf8(out.0).unwrap();
        assert!(
            !written.trim_end().contains(is_unsafe_in_log),
            "{written:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(back, line);
    }
}
