//! Untrusted text on its way to a person or a log: file names on pages and in
//! `Content-Disposition`, paths in log lines.
//!
//! Paths are chosen by whoever mints (a pinned API token, an MCP agent), so they may carry
//! control characters (a CR/LF forges a whole log line, an ESC drives a terminal) and Unicode
//! bidirectional controls (U+202E shows `exe.txt` for `txt.exe`). Both are made harmless here,
//! in one place, before the text leaves the process.

use std::borrow::Cow;
use std::fmt;

/// The bidirectional controls: the marks (LRM U+200E, RLM U+200F, ALM U+061C) and the
/// embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069). One predicate for
/// the server's names and `burnlink get`'s, so both strip the same set.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// A character that must not reach a person's screen or a log as it is.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// `name` with every control and bidi character replaced by `_`, for pages and
/// `Content-Disposition`.
pub fn displayable(name: &str) -> Cow<'_, str> {
    if name.chars().any(is_unsafe) {
        Cow::Owned(
            name.chars()
                .map(|c| if is_unsafe(c) { '_' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(name)
    }
}

/// A field value for text logs (`key=value`): as it is when it is plain, else quoted with
/// every quote, backslash, space, control and bidi character escaped, so one value can never
/// end its line, start another field or another line, or drive a terminal. JSON logs escape on
/// their own; this stays readable there too.
pub struct LogSafe<'a>(pub &'a str);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = !self.0.is_empty()
            && self
                .0
                .chars()
                .all(|c| !is_unsafe(c) && !c.is_whitespace() && !matches!(c, '"' | '\\' | '='));
        if plain {
            return f.write_str(self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if is_unsafe(c) => write!(f, "\\u{{{:04x}}}", c as u32)?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_lose_controls_and_bidi() {
        assert_eq!(displayable("report.pdf"), "report.pdf");
        assert_eq!(displayable("a\u{202E}fdp.exe"), "a_fdp.exe");
        assert_eq!(displayable("x\u{2066}y\u{2069}\n"), "x_y__");
        assert_eq!(displayable("a\u{200E}b\u{200F}c\u{061C}d"), "a_b_c_d");
    }

    #[test]
    fn log_values() {
        assert_eq!(LogSafe("docs/a.txt").to_string(), "docs/a.txt");
        assert_eq!(LogSafe("a b").to_string(), "\"a b\"");
        assert_eq!(
            LogSafe("x\n2026 INFO burnlink::audit: event=\"transfer\"").to_string(),
            "\"x\\n2026 INFO burnlink::audit: event=\\\"transfer\\\"\""
        );
        assert_eq!(LogSafe("\u{1b}[31mred").to_string(), "\"\\u{001b}[31mred\"");
        assert_eq!(LogSafe("").to_string(), "\"\"");
    }

    proptest! {
        #[test]
        fn a_log_value_is_one_token_on_one_line(s in "(?s).{0,40}") {
            let out = LogSafe(&s).to_string();
            prop_assert!(!out.chars().any(is_unsafe), "{:?}", out);
            prop_assert!(!out.contains(' ') || out.starts_with('"'));
            if out.starts_with('"') {
                // Every quote inside is escaped, so the value ends only at its last quote.
                let inner = &out[1..out.len() - 1];
                let mut escaped = false;
                for c in inner.chars() {
                    prop_assert!(escaped || c != '"', "{:?}", out);
                    escaped = !escaped && c == '\\';
                }
            }
        }

        #[test]
        fn displayable_names_are_safe(s in "(?s).{0,40}") {
            prop_assert!(!displayable(&s).chars().any(is_unsafe));
        }
    }
}
