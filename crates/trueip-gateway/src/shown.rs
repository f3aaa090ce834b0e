//! Client-written text as an operator is shown it: in the access log, the diagnostics and
//! the record of forgeries.
//!
//! Printable ASCII but `\` stays as it is, `\` becomes `\\`, and every other byte `\xNN`.
//! A request target may carry UTF-8 (httparse and `http::Uri` accept it), and with it C1
//! controls (`U+009B` starts a terminal control sequence as `ESC [` does), bidi overrides
//! (`U+202E` draws the rest of a line backwards) and line separators (`U+0085`, `U+2028`,
//! at which `str.splitlines()` and log viewers break a line, so a client could write a
//! second access-log line that names another client): none reaches a log line or a
//! terminal as written, in text or in JSON (which escapes only C0 controls).
//! `tracing-subscriber` escapes a few of these in an event's message, never in its
//! fields.

use std::fmt::{self, Write};

/// How many characters byte `b` takes once shown.
const fn width(b: u8) -> usize {
    match b {
        b'\\' => 2,
        0x20..=0x7e => 1,
        _ => 4,
    }
}

/// Writes byte `b` as shown.
fn push(out: &mut impl Write, b: u8) -> fmt::Result {
    match b {
        b'\\' => out.write_str("\\\\"),
        0x20..=0x7e => out.write_char(char::from(b)),
        _ => write!(out, "\\x{b:02x}"),
    }
}

/// Writes `bytes` as shown: each run shown as it is in one write (a path usually is one
/// run), each other byte escaped.
fn write_all(out: &mut impl Write, mut bytes: &[u8]) -> fmt::Result {
    while !bytes.is_empty() {
        let plain = bytes.iter().position(|&b| width(b) != 1);
        let (run, rest) = bytes
            .split_at_checked(plain.unwrap_or(bytes.len()))
            .unwrap_or((bytes, &[]));
        // A run of printable ASCII is UTF-8.
        out.write_str(std::str::from_utf8(run).unwrap_or_default())?;
        match rest.split_first() {
            Some((&b, rest)) => {
                push(out, b)?;
                bytes = rest;
            }
            None => bytes = rest,
        }
    }
    Ok(())
}

/// Bytes a client wrote, shown: at most `max` characters, never an escape cut in two.
pub(crate) struct Bytes<'a> {
    bytes: &'a [u8],
    max: usize,
}

impl<'a> Bytes<'a> {
    /// `bytes` up to `max` characters shown: what a client writes may be long, and the
    /// line that shows it is kept in memory (the access log's queue, the record of
    /// forgeries) until it is written.
    pub(crate) fn at_most(bytes: &'a [u8], max: usize) -> Self {
        Bytes { bytes, max }
    }

    /// Whether some of the bytes are left out.
    pub(crate) fn is_cut(&self) -> bool {
        self.kept() < self.bytes.len()
    }

    /// How many bytes are shown.
    fn kept(&self) -> usize {
        let mut len = 0usize;
        self.bytes
            .iter()
            .take_while(|&&b| {
                len = len.saturating_add(width(b));
                len <= self.max
            })
            .count()
    }
}

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_all(f, self.bytes.get(..self.kept()).unwrap_or_default())
    }
}

/// Any text that may hold what a client wrote (an error naming a request target), shown
/// as it is written, without building it first.
pub(crate) struct Text<T>(pub(crate) T);

impl<T: fmt::Display> fmt::Display for Text<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                write_all(self.0, s.as_bytes())
            }
        }
        write!(Escaping(f), "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Bytes<'_> {
        Bytes::at_most(bytes, usize::MAX)
    }

    #[test]
    fn only_printable_ascii_is_shown_as_written() {
        assert_eq!(whole(b"/a/b?c=d%20").to_string(), "/a/b?c=d%20");
        assert_eq!(
            whole("/a\\\x1b[31m\u{85}\u{9b}\u{202e}\u{2028}é".as_bytes()).to_string(),
            "/a\\\\\\x1b[31m\\xc2\\x85\\xc2\\x9b\\xe2\\x80\\xae\\xe2\\x80\\xa8\\xc3\\xa9"
        );
        assert_eq!(
            Text(format_args!("target {}", "/x\u{2028}y\r\n")).to_string(),
            "target /x\\xe2\\x80\\xa8y\\x0d\\x0a"
        );
        for b in 0..=255u8 {
            assert_eq!(whole(&[b]).to_string().len(), width(b), "{b:#x}");
        }
    }

    #[test]
    fn a_cut_never_splits_an_escape() {
        let shown = |bytes: &[u8], max| {
            let b = Bytes::at_most(bytes, max);
            (b.to_string(), b.is_cut())
        };
        assert_eq!(shown(b"ab\x00", 6), (r"ab\x00".into(), false));
        assert_eq!(shown(b"ab\x00", 5), ("ab".into(), true));
        assert_eq!(shown(b"a\\b", 2), ("a".into(), true));
        assert_eq!(shown(b"a\\b", 3), (r"a\\".into(), true));
        assert_eq!(shown(b"abc", 3), ("abc".into(), false));
        assert_eq!(shown(b"", 0), (String::new(), false));
        let (long, cut) = shown(&[0xff; 10_000], 256);
        assert!(cut && long.len() == 256, "{}", long.len());
    }
}
