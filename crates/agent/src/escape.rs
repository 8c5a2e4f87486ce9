//! Text shown to a person (a log line, a table row, an error line) with the characters that
//! could break a line, drive a terminal or reorder what is shown made visible.

use std::fmt::Write as _;

/// Whether a character is escaped in shown text: control characters (C0, DEL, C1), line
/// and paragraph separators, and the bidirectional overrides that reorder what is shown.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with its unsafe characters escaped (`\n`, `\r`, `\t`, else `\u{1b}`), and
/// backslashes doubled so that an escape cannot be forged: always one line.
pub fn escape_controls(text: &str) -> String {
    escape(text, true)
}

/// `text` with its unsafe characters escaped as [`escape_controls`] does, backslashes kept
/// as they are: for messages that already quote what they name with `{:?}`.
pub fn escape_unsafe(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, double_backslashes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' if double_backslashes => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => _ = write!(out, "\\u{{{:x}}}", u32::from(c)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_backslashes_are_escaped_on_one_line() {
        assert_eq!(
            escape_controls("a\u{1b}]0;T\u{7}\r\nb\u{202e}c\u{9b}\\n"),
            r"a\u{1b}]0;T\u{7}\r\nb\u{202e}c\u{9b}\\n"
        );
        assert_eq!(escape_controls("plain ünïcode/é"), "plain ünïcode/é");
        assert_eq!(escape_unsafe("\"a\\nb\"\n\u{202e}"), r#""a\nb"\n\u{202e}"#);
    }
}
