//! How text from outside is shown: what a client, a target, a config or topology file
//! wrote, on its way to a log line or a terminal. Every output of the workspace that
//! shows such text goes through one of the two modes here, so that neither mode's rule
//! exists twice.
//!
//! - [`log`] (log mode): printable ASCII but `\` stays as it is, `\` becomes `\\`, every
//!   other byte `\xNN`. For the gateway's access log, failure details and the record of
//!   forgeries: read by programs as much as by people (grep, `str.splitlines()`, log
//!   viewers, JSON), so its output is plain ASCII and says byte for byte what came in.
//! - [`terminal`] (terminal mode): controls, bidi controls, line separators and
//!   invisible characters as `\u{..}`, bytes that are not UTF-8 as `\xNN`, everything
//!   else as written. For `trueip explain`, `simulate`, `audit`, `check` and the error
//!   messages of every command: a person reads them, and an address or a header value
//!   in another script should read as itself (`é`, not `\xc3\xa9`).
//!
//! - [`markup`] (markup mode): `&`, `<`, `>`, `"` and `'` as entities, and every character
//!   terminal mode escapes, with the two XML forbids outright (`U+FFFE`, `U+FFFF`), as the
//!   replacement character `U+FFFD`. For the whoami page's HTML and `simulate`'s SVG: a
//!   browser draws what is left, and a control would make an SVG unreadable, a bidi override
//!   redraw the page's text backwards.
//!
//! The modes stop the same attacks: a request target, a header value or a file may
//! carry C0 and C1 controls (`ESC [` and `U+009B` start a terminal control sequence that
//! can move the cursor, clear the screen or retitle the window), bidi overrides
//! (`U+202E` draws the rest of a line backwards) and line separators (`U+0085`,
//! `U+2028`, at which `str.splitlines()` and log viewers break a line, so that the text
//! could write a second line that names another client). None of them reaches a reader
//! as written. JSON escapes only C0 controls, and `tracing-subscriber` escapes a few of
//! these in an event's message, never in its fields.
//!
//! Each piece of outside text is escaped once, by the mode of the place it ends up: a
//! message that quotes it (an error) quotes it as written (`"{value}"`, not `{value:?}`,
//! whose `\` escapes log mode would escape again), and the whole message is shown in
//! the mode of its reader.
//!
//! Not a stable API: `trueip-gateway` and the `trueip` binary share it through this
//! crate, the one they both depend on, and the core's own printed forms
//! ([`Explanation`](crate::Explanation)'s text) use it.

use std::fmt::{self, Write};

/// Bytes in log mode: printable ASCII but `\` as it is, `\` as `\\`, every other byte
/// `\xNN`; the whole of `bytes` (see [`Log::at_most`] to bound it).
#[inline]
pub fn log(bytes: &[u8]) -> Log<'_> {
    Log::at_most(bytes, usize::MAX)
}

/// Any text (an error naming a request target) in log mode, as it is written, without
/// building it first.
pub fn log_text<T: fmt::Display>(text: T) -> LogText<T> {
    LogText(text)
}

/// Text in terminal mode: every control character (C0, DEL, C1), bidi control, line or
/// paragraph separator and invisible character as `\u{..}`, every byte that is not UTF-8
/// as `\xNN`, the rest as written. One value: a line break in it is escaped too.
///
/// `\` stays as it is, unlike in log mode: terminal mode is there so that nothing drives
/// or disguises the terminal, not so that the bytes can be read back. It is applied to
/// whole messages that already hold `{:?}` escapes and to paths and patterns a user
/// typed, which a doubled `\` would garble.
pub fn terminal<B: AsRef<[u8]> + ?Sized>(text: &B) -> Terminal<'_> {
    Terminal(text.as_ref())
}

/// A message of one or more lines in terminal mode: [`terminal`], but the line breaks
/// (`\n`) the message writes are kept. For a whole error message or report line, in
/// which a value from outside may stand anywhere.
pub fn terminal_lines<T: fmt::Display>(message: T) -> TerminalLines<T> {
    TerminalLines(message)
}

/// How many characters byte `b` takes in log mode.
const fn log_width(b: u8) -> usize {
    match b {
        b'\\' => 2,
        0x20..=0x7e => 1,
        _ => 4,
    }
}

/// Whether `bytes` are shown in log mode as they are (printable ASCII without `\`): the
/// usual text (an address list, a path). Tested whole, without an early exit, which the
/// compiler vectorises.
#[inline]
pub fn log_plain(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |plain, &b| plain & (b != b'\\') & (0x20..=0x7e).contains(&b))
}

/// Writes byte `b` in log mode.
fn log_push(out: &mut impl Write, b: u8) -> fmt::Result {
    match b {
        b'\\' => out.write_str("\\\\"),
        0x20..=0x7e => out.write_char(char::from(b)),
        _ => write!(out, "\\x{b:02x}"),
    }
}

/// Writes `bytes` in log mode: each run shown as it is in one write (a path usually is
/// one run), each other byte escaped.
fn log_all(out: &mut impl Write, mut bytes: &[u8]) -> fmt::Result {
    while !bytes.is_empty() {
        let plain = bytes.iter().position(|&b| log_width(b) != 1);
        let (run, rest) =
            bytes.split_at_checked(plain.unwrap_or(bytes.len())).unwrap_or((bytes, &[]));
        // A run of printable ASCII is UTF-8.
        out.write_str(std::str::from_utf8(run).unwrap_or_default())?;
        match rest.split_first() {
            Some((&b, rest)) => {
                log_push(out, b)?;
                bytes = rest;
            }
            None => bytes = rest,
        }
    }
    Ok(())
}

/// Bytes in log mode: at most `max` characters, never an escape cut in two.
#[derive(Clone, Copy, Debug)]
pub struct Log<'a> {
    bytes: &'a [u8],
    max: usize,
}

impl<'a> Log<'a> {
    /// `bytes` up to `max` characters shown: what a client writes may be long, and the
    /// line that shows it is kept in memory (the access log's queue, the record of
    /// forgeries) until it is written.
    #[inline]
    pub fn at_most(bytes: &'a [u8], max: usize) -> Self {
        Log { bytes, max }
    }

    /// Whether some of the bytes are left out.
    pub fn is_cut(&self) -> bool {
        self.kept() < self.bytes.len()
    }

    /// How many bytes are shown.
    fn kept(&self) -> usize {
        // The usual text (an address list, a path) is shown as it is: tested whole.
        let head = self.bytes.get(..self.max).unwrap_or(self.bytes);
        if log_plain(head) {
            return head.len();
        }
        let mut len = 0usize;
        self.bytes
            .iter()
            .take_while(|&&b| {
                len = len.saturating_add(log_width(b));
                len <= self.max
            })
            .count()
    }
}

impl fmt::Display for Log<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        log_all(f, self.bytes.get(..self.kept()).unwrap_or_default())
    }
}

/// Text in log mode: [`log_text`].
#[derive(Clone, Copy, Debug)]
pub struct LogText<T>(T);

impl<T: fmt::Display> fmt::Display for LogText<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        through(f, &self.0, |f, s| log_all(f, s.as_bytes()))
    }
}

/// Writes `text` into `f` piece by piece through `show`, without building it first.
fn through(
    f: &mut fmt::Formatter<'_>,
    text: &dyn fmt::Display,
    show: fn(&mut fmt::Formatter<'_>, &str) -> fmt::Result,
) -> fmt::Result {
    struct Through<'a, 'b> {
        f: &'a mut fmt::Formatter<'b>,
        show: fn(&mut fmt::Formatter<'_>, &str) -> fmt::Result,
    }
    impl Write for Through<'_, '_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            (self.show)(self.f, s)
        }
    }
    write!(Through { f, show }, "{text}")
}

/// Whether terminal mode escapes `c`.
fn hides(c: char) -> bool {
    // C0, DEL and C1: `ESC`, `U+009B` (CSI), `U+009D` (OSC), `U+0085` (next line).
    c.is_control()
        // Bidi marks, embeddings, overrides and isolates: they reorder what follows.
        || matches!(
            c,
            '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
        // Line and paragraph separators.
        || matches!(c, '\u{2028}' | '\u{2029}')
        // Invisible: `10.0.0.1` with a zero-width space in it reads as `10.0.0.1`.
        || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// `text` in markup mode (see the module's docs), for HTML and SVG.
pub fn markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    markup_into(&mut out, text);
    out
}

/// [`markup`], appended to `out`: at most six bytes out per byte in (`"` is `&quot;`).
pub fn markup_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if hides(c) || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// Writes `bytes` in terminal mode; a `\n` is kept when `lines` is set.
fn terminal_all(out: &mut impl Write, bytes: &[u8], lines: bool) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        let mut text = chunk.valid();
        while let Some(at) = text.find(|c: char| hides(c) && !(lines && c == '\n')) {
            let (run, rest) = text.split_at_checked(at).unwrap_or((text, ""));
            out.write_str(run)?;
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                write!(out, "{}", c.escape_unicode())?;
            }
            text = chars.as_str();
        }
        out.write_str(text)?;
        for b in chunk.invalid() {
            write!(out, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// Text in terminal mode: [`terminal`]. Honours a width (`{:<28}`).
#[derive(Clone, Copy, Debug)]
pub struct Terminal<'a>(&'a [u8]);

impl fmt::Display for Terminal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() {
            let mut shown = String::new();
            terminal_all(&mut shown, self.0, false)?;
            f.pad(&shown)
        } else {
            terminal_all(f, self.0, false)
        }
    }
}

/// A message in terminal mode: [`terminal_lines`].
#[derive(Clone, Copy, Debug)]
pub struct TerminalLines<T>(T);

impl<T: fmt::Display> fmt::Display for TerminalLines<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        through(f, &self.0, |f, s| terminal_all(f, s.as_bytes(), true))
    }
}

/// `value` as JSON for a terminal, as `serde_json::to_string` writes it but with every
/// character terminal mode escapes written as a `\uXXXX` escape: the same JSON to a
/// parser, and nothing a terminal obeys when it is printed (serde_json escapes only C0
/// controls).
#[cfg(feature = "serde")]
pub fn terminal_json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    json_with(value, serde_json::ser::CompactFormatter)
}

/// [`terminal_json`], indented as `serde_json::to_string_pretty` indents.
#[cfg(feature = "serde")]
pub fn terminal_json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    json_with(value, serde_json::ser::PrettyFormatter::new())
}

#[cfg(feature = "serde")]
fn json_with<T, F>(value: &T, formatter: F) -> serde_json::Result<String>
where
    T: serde::Serialize + ?Sized,
    F: serde_json::ser::Formatter,
{
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        TerminalJson(formatter),
    ))?;
    String::from_utf8(out).map_err(<serde_json::Error as serde::ser::Error>::custom)
}

/// A JSON formatter that writes what terminal mode escapes as `\uXXXX`, and lays out
/// arrays and objects as `F` does.
#[cfg(feature = "serde")]
struct TerminalJson<F>(F);

/// The layout methods of [`TerminalJson`], handed to `F`.
#[cfg(feature = "serde")]
macro_rules! layout {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<W: ?Sized + std::io::Write>(&mut self, writer: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
            self.0.$name(writer $(, $arg)*)
        }
    )*};
}

#[cfg(feature = "serde")]
impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for TerminalJson<F> {
    layout! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        begin_object_value();
        end_object_value();
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        mut fragment: &str,
    ) -> std::io::Result<()> {
        while let Some(at) = fragment.find(hides) {
            let (run, rest) = fragment.split_at_checked(at).unwrap_or((fragment, ""));
            writer.write_all(run.as_bytes())?;
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
            fragment = chars.as_str();
        }
        writer.write_all(fragment.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_mode_escapes_markup_and_replaces_what_terminal_mode_hides() {
        assert_eq!(markup(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        for c in [
            '\u{1}', '\u{1b}', '\u{9b}', '\u{202e}', '\u{2028}', '\u{200b}', '\u{fffe}', '\u{ffff}',
        ] {
            assert_eq!(markup(&format!("a{c}b")), "a\u{fffd}b", "{c:?}");
        }
        assert_eq!(markup("é 10.0.0.1"), "é 10.0.0.1");
        let mut out = String::from("x");
        markup_into(&mut out, "<y>");
        assert_eq!(out, "x&lt;y&gt;");
    }

    /// What a hostile value may hold: a CSI in both spellings, an OSC that retitles the
    /// window, a bidi override, a line separator, NUL, a line break, a byte that is not
    /// UTF-8.
    const HOSTILE: &[u8] = b"\x1b[2J\xc2\x9b31m\x1b]0;pwned\x07\xe2\x80\xae\xe2\x80\xa8\x00\n\xff";

    #[test]
    fn log_mode_keeps_only_printable_ascii() {
        assert_eq!(log(b"/a/b?c=d%20").to_string(), "/a/b?c=d%20");
        assert_eq!(
            log("/a\\\x1b[31m\u{85}\u{9b}\u{202e}\u{2028}é".as_bytes()).to_string(),
            "/a\\\\\\x1b[31m\\xc2\\x85\\xc2\\x9b\\xe2\\x80\\xae\\xe2\\x80\\xa8\\xc3\\xa9"
        );
        assert_eq!(
            log_text(format_args!("target {}", "/x\u{2028}y\r\n")).to_string(),
            "target /x\\xe2\\x80\\xa8y\\x0d\\x0a"
        );
        for b in 0..=255u8 {
            assert_eq!(log(&[b]).to_string().len(), log_width(b), "{b:#x}");
            assert_eq!(log_plain(&[b]), log_width(b) == 1, "{b:#x}");
        }
        let shown = log(HOSTILE).to_string();
        assert!(shown.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{shown}");
    }

    #[test]
    fn a_cut_never_splits_an_escape() {
        let shown = |bytes: &[u8], max| {
            let b = Log::at_most(bytes, max);
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

    #[test]
    fn terminal_mode_escapes_what_drives_or_disguises_a_terminal() {
        assert_eq!(
            terminal(HOSTILE).to_string(),
            r"\u{1b}[2J\u{9b}31m\u{1b}]0;pwned\u{7}\u{202e}\u{2028}\u{0}\u{a}\xff"
        );
        // Other Unicode, quotes and `\` read as written.
        assert_eq!(terminal(r#"é 日本 "a" C:\x ß"#).to_string(), r#"é 日本 "a" C:\x ß"#);
        assert_eq!(
            terminal("10.0.0.1\u{200b}\u{feff}\u{2067}\u{85}").to_string(),
            r"10.0.0.1\u{200b}\u{feff}\u{2067}\u{85}"
        );
        assert_eq!(format!("[{:<6}]", terminal("a\u{1b}")), r"[a\u{1b}]");
        assert_eq!(format!("[{:<8}]", terminal("a")), "[a       ]");
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let shown = terminal(c.encode_utf8(&mut [0; 4])).to_string();
            assert_eq!(shown != c.to_string(), hides(c), "{c:?}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_for_a_terminal_is_the_same_json_with_nothing_a_terminal_obeys() {
        let value = serde_json::json!({
            "v\u{202e}": ["1.2.3.4\u{9b}31m\u{2028}\u{1b}[2J\u{0}é", {"n": 1, "b": true}],
        });
        for json in [terminal_json(&value).unwrap(), terminal_json_pretty(&value).unwrap()] {
            assert!(json.chars().all(|c| c == '\n' || !hides(c)), "{json}");
            assert!(json.contains(r"1.2.3.4\u009b31m\u2028\u001b[2J\u0000é"), "{json}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap(), value);
        }
        assert_eq!(
            terminal_json_pretty(&value).unwrap().lines().count(),
            serde_json::to_string_pretty(&value).unwrap().lines().count()
        );
    }

    /// Fails when a message quotes its input with `{:?}`: log mode then escapes the `\` of
    /// its escapes again (`"bad\\u{2028}x"`).
    #[test]
    fn a_message_quoting_outside_text_is_escaped_once_in_either_mode() {
        let e = "bad\u{2028}x\u{1b}[2J".parse::<crate::TrustSpec>().unwrap_err();
        let logged = log_text(&e).to_string();
        assert!(
            logged.starts_with(r#"unknown trust spec "bad\xe2\x80\xa8x\x1b[2J" (hint: "#),
            "{logged}"
        );
        let printed = terminal_lines(&e).to_string();
        assert!(
            printed.starts_with(r#"unknown trust spec "bad\u{2028}x\u{1b}[2J" (hint: "#),
            "{printed}"
        );
    }

    /// Fails when a config error shows a value's line break as it is: terminal mode keeps a
    /// message's line breaks, so a config file's value printed a line of its own choosing.
    #[test]
    fn a_config_errors_quoted_line_break_is_no_line_break_in_either_mode() {
        let e = "10.0.0.1\ntrueip check: trueip.toml: nothing dangerous found"
            .parse::<crate::TrustSpec>()
            .unwrap_err();
        let printed = terminal_lines(&e).to_string();
        assert!(
            printed.starts_with(r#"invalid CIDR "10.0.0.1\ntrueip check: trueip.toml: "#),
            "{printed}"
        );
        assert!(!printed.contains('\n') && !log_text(&e).to_string().contains('\n'), "{printed}");
    }

    #[test]
    fn a_message_keeps_its_own_line_breaks() {
        let message = format!("bad value {}\n  fix: {}", "x\u{1b}[1A", "y\u{2028}z");
        assert_eq!(
            terminal_lines(&message).to_string(),
            "bad value x\\u{1b}[1A\n  fix: y\\u{2028}z"
        );
        assert_eq!(
            terminal_lines(String::from_utf8_lossy(b"a\xffb\r")).to_string(),
            "a\u{fffd}b\\u{d}"
        );
    }
}
