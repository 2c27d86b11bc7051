//! Escaping of text that came from outside (Zoom, a REST answer, a sink) for
//! the places it is shown or sent: a log line or a terminal table
//! ([`for_display`]), an HTTP header value ([`header_value`]).
//!
//! Owns the two encodings and nothing else: callers decide what is untrusted.
//! Pure functions; the record itself (its body, its natural key in the journal)
//! is never changed, only how it is written out.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The longest text [`for_display`] lets through (in characters); the rest is
/// replaced by a marker saying how much was cut.
pub const MAX_DISPLAY_CHARS: usize = 256;

/// `text` safe for one log line or table cell: control characters (newlines,
/// ESC and the other C0 and C1 controls, DEL) become `\n`, `\r`, `\t` or
/// `\u{1b}`, so a Zoom-supplied string can neither forge a log line nor send a
/// terminal escape sequence; past `max_chars` the rest is cut with a marker
/// (`…[+1048320 bytes]`).
pub fn for_display(text: &str, max_chars: usize) -> Cow<'_, str> {
    let clean = !text.chars().any(char::is_control);
    let short = text.len() <= max_chars || text.chars().nth(max_chars).is_none();
    if clean && short {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max_chars * 2) + 24);
    for (shown, (index, c)) in text.char_indices().enumerate() {
        if shown == max_chars {
            let _ = write!(out, "…[+{} bytes]", text.len() - index);
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` as a valid HTTP header value that keeps it recognisable and stays
/// one-to-one: every byte outside printable ASCII (controls, space, DEL,
/// non-ASCII UTF-8) and `%` itself is percent-encoded (`%0A`, `%25`, `%C3%A9`).
/// An id of printable ASCII without `%` — every id Zoom is known to send — is
/// unchanged.
pub fn header_value(text: &str) -> Cow<'_, str> {
    let keep = |b: u8| (0x21..=0x7e).contains(&b) && b != b'%';
    if text.bytes().all(keep) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_display(input: &str, max: usize, expected: &str) {
        assert_eq!(for_display(input, max), expected, "{input:?}");
    }

    #[test]
    fn display_escapes_controls_and_truncates_with_a_marker() {
        check_display("recording_completed:r1", 256, "recording_completed:r1");
        check_display(
            "x\n2026-01-01 INFO forged",
            256,
            "x\\n2026-01-01 INFO forged",
        );
        check_display("\u{1b}[31mred\u{1b}[0m", 256, "\\u{1b}[31mred\\u{1b}[0m");
        check_display("a\r\tb\u{7f}\u{85}", 256, "a\\r\\tb\\u{7f}\\u{85}");
        check_display("héllo", 256, "héllo");
        check_display("abcdef", 3, "abc…[+3 bytes]");
        check_display("ééé", 2, "éé…[+2 bytes]");
        check_display("abc", 3, "abc");
        let huge = "i".repeat(1_000_000);
        let shown = for_display(&huge, MAX_DISPLAY_CHARS);
        assert!(shown.len() < 300, "{}", shown.len());
        assert!(shown.ends_with("…[+999744 bytes]"), "{shown}");
    }

    #[test]
    fn header_values_are_valid_and_one_to_one() {
        for (input, expected) in [
            ("recording_completed:r1~2", "recording_completed:r1~2"),
            ("note:e\n1", "note:e%0A1"),
            ("a\0b\rc", "a%00b%0Dc"),
            ("100%", "100%25"),
            ("a b", "a%20b"),
            ("é", "%C3%A9"),
            ("x%0A", "x%250A"),
        ] {
            let encoded = header_value(input);
            assert_eq!(encoded, expected, "{input:?}");
            assert!(
                reqwest::header::HeaderValue::from_str(&encoded).is_ok(),
                "{encoded:?}"
            );
        }
        // '%' is always encoded, so an id that looks encoded cannot collide.
        assert_ne!(header_value("x\n"), header_value("x%0A"));
    }
}
