//! Field formatting of the text log format, with control characters escaped.
//!
//! The default text formatter writes a `%value` as is, so a value a client chose (a token's
//! `kid`, a subject, a method path) holding a newline would start a line of its own and could
//! pass for a log line the server wrote. [`EscapedFields`] formats fields like the default
//! (message first, then `name=value`) but writes every control character (C0, DEL, C1, and
//! the Unicode line and paragraph separators) as an escape: `\n`, `\r`, `\t`, `\u{1b}`.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FormatFields, format::Writer},
};

/// Formats event and span fields for the text format, escaping control characters.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // `log` crate records bridged by tracing-log: their metadata is shown elsewhere.
        if name.starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{separator}")
        } else {
            write!(
                self.writer,
                "{separator}{}=",
                name.strip_prefix("r#").unwrap_or(name)
            )
        }
        .and_then(|()| {
            Escaper {
                inner: &mut self.writer,
            }
            .write_fmt(value)
        });
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

/// Passes text through to `inner`, escaping control characters on the way.
struct Escaper<'a, W: Write> {
    inner: &'a mut W,
}

impl<W: Write> Write for Escaper<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut clean_from = 0;
        for (index, c) in text.char_indices() {
            if needs_escape(c) {
                self.inner.write_str(&text[clean_from..index])?;
                match c {
                    '\n' => self.inner.write_str("\\n")?,
                    '\r' => self.inner.write_str("\\r")?,
                    '\t' => self.inner.write_str("\\t")?,
                    other => write!(self.inner, "\\u{{{:x}}}", u32::from(other))?,
                }
                clean_from = index + c.len_utf8();
            }
        }
        self.inner.write_str(&text[clean_from..])
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` with its control characters escaped as the text log format writes them.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let _ = Escaper {
        inner: &mut escaped,
    }
    .write_str(text);
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_is_kept() {
        let cases = [
            ("plain kid-1", "plain kid-1"),
            ("a\nb", "a\\nb"),
            ("a\r\nb\tc", "a\\r\\nb\\tc"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("nul\0del\u{7f}", "nul\\u{0}del\\u{7f}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("accentué ✓", "accentué ✓"),
        ];
        for (raw, expected) in cases {
            assert_eq!(escape(raw), expected, "{raw:?}");
        }
    }
}
