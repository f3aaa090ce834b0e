//! `X-Forwarded-For`: a comma-separated list of addresses, one appended by each hop.
//!
//! Several header lines form one list, in order (RFC 9110 §5.3). Elements are read
//! from the right, because the right end is what the nearest (trusted) hop wrote;
//! the left end is whatever the client sent. Empty elements are skipped, as the
//! list syntax requires (RFC 9110 §5.6.1.2); everything else that is not an
//! address is reported as it is, never guessed.

use crate::addr::{dotted_quad_back, parse_node, trim, v4_can_be_source};
use crate::entry::Entry;

/// Classifies one X-Forwarded-For element.
#[inline]
pub fn parse_element(raw: &[u8]) -> Entry<'_> {
    let text = trim(raw);
    if text.eq_ignore_ascii_case(b"unknown") {
        return Entry::Unknown;
    }
    if let [b'_', ..] = text {
        return Entry::Obfuscated(text);
    }
    match parse_node(text) {
        Ok(node) => Entry::Addr(node),
        Err(why) => Entry::Malformed { text, why: why.into() },
    }
}

/// The elements of X-Forwarded-For, right to left, across lines, skipping empty ones.
#[derive(Clone)]
pub struct Rev<'a, 'l> {
    lines: &'l [&'a [u8]],
    current: Option<&'a [u8]>,
}

impl<'a, 'l> Rev<'a, 'l> {
    /// Iterates the elements of `lines` (the header's lines in request order) from the right.
    pub fn new(lines: &'l [&'a [u8]]) -> Self {
        Rev { lines, current: None }
    }
}

/// One element from the right, as the walk's fast path sees it.
#[derive(Clone, Copy)]
pub(crate) enum Raw<'a> {
    /// A plain dotted quad, already parsed (the bits of the address).
    V4(u32),
    /// Any other non-empty element, trimmed, not yet classified.
    Other(&'a [u8]),
}

impl<'a> Rev<'a, '_> {
    /// The line the next element comes from: the rest of the current one, or the next
    /// line to the left.
    #[inline(always)]
    fn line(&mut self) -> Option<&'a [u8]> {
        match self.current {
            Some(line) => Some(line),
            None => {
                let (last, rest) = self.lines.split_last()?;
                self.lines = rest;
                Some(last)
            }
        }
    }

    /// Like [`next_raw`](Self::next_raw), but a plain dotted quad comes back parsed.
    ///
    /// One pass: the common element (`, 10.1.2.3`) is parsed right to left in the same
    /// scan that finds its comma, instead of a scan for the comma, a trim, and a second
    /// scan to parse. Anything else (a port, IPv6, a leading zero, a stray byte) makes
    /// the fast path give up without consuming anything, and the general path decides.
    #[inline(always)]
    pub(crate) fn next_fast(&mut self) -> Option<Raw<'a>> {
        let line = self.line()?;
        if let Some((addr, rest)) = split_v4_back(line) {
            self.current = rest;
            return Some(Raw::V4(addr));
        }
        self.current = Some(line);
        self.next_raw().map(Raw::Other)
    }

    /// Skips elements from the right while each is a plain dotted quad that `trusted`
    /// accepts, at most `limit` of them. Returns how many it skipped, and the element it
    /// stopped at when that is a plain dotted quad `trusted` refused (consumed: the
    /// usual answer of a walk).
    ///
    /// The walk's inner loop for its commonest work, a chain of trusted IPv4 proxies: the
    /// line being read and the count stay in registers, and nothing is built per element.
    /// Any other element (not a plain dotted quad, or the end of the list) is left
    /// unconsumed, and the caller's general loop decides it exactly as it would have
    /// without this one.
    #[inline(always)]
    pub(crate) fn skip_trusted_v4(
        &mut self,
        limit: u16,
        trusted: impl Fn(u32) -> bool,
    ) -> (u16, Option<u32>) {
        // Locals, written back once: fields behind `&mut self` were stored and reloaded
        // on every element.
        let (mut lines, mut current) = (self.lines, self.current);
        let mut skipped = 0;
        let mut untrusted = None;
        while skipped < limit {
            let (mut line, left) = match current {
                Some(line) => (line, lines),
                None => match lines.split_last() {
                    Some((&line, left)) => (line, left),
                    None => break,
                },
            };
            // Most elements: the tight loop over whole windows.
            let whole = line;
            let (n, refused) = skip_windowed(&mut line, limit - skipped, &trusted);
            skipped += n;
            (lines, current) = (left, Some(line));
            if refused.is_some() {
                untrusted = refused;
                break;
            }
            if skipped == limit {
                break;
            }
            // The element the windows could not take (the first of a line, unusual
            // spacing, or no plain dotted quad at all). The first element of a line the
            // windows took the rest of is read in place from the line's first bytes.
            if line.len() < WINDOW
                && let Some(trusted_first) = skip_first(whole, line.len(), &trusted)
            {
                current = None;
                match trusted_first {
                    Ok(()) => {
                        skipped += 1;
                        continue;
                    }
                    Err(addr) => {
                        untrusted = Some(addr);
                        break;
                    }
                }
            }
            let Some((addr, rest)) = split_v4_back(line) else {
                break;
            };
            current = rest;
            if !trusted(addr) {
                untrusted = Some(addr);
                break;
            }
            skipped += 1;
        }
        (self.lines, self.current) = (lines, current);
        (skipped, untrusted)
    }

    /// The next non-empty element from the right, trimmed, not yet classified.
    #[inline(always)]
    pub(crate) fn next_raw(&mut self) -> Option<&'a [u8]> {
        loop {
            let line = self.line()?;
            let (element, rest) = match line.iter().rposition(|&b| b == b',') {
                Some(at) => {
                    let (rest, element) = crate::addr::split_around(line, at);
                    (element, Some(rest))
                }
                None => (line, None),
            };
            self.current = rest;
            let element = trim(element);
            if !element.is_empty() {
                return Some(element);
            }
        }
    }
}

/// The last element of `line` when it is exactly a dotted quad in canonical form (no
/// leading zeros, octets up to 255; optional whitespace around it), and the text left of
/// its comma (`None` when the element starts the line). `None` for anything else.
///
/// Only the canonical form is accepted, so the answer always equals what
/// [`parse_element`] would say; every other element is left to it.
#[inline(always)]
fn split_v4_back(line: &[u8]) -> Option<(u32, Option<&[u8]>)> {
    let text = match line {
        [.., b' ' | b'\t'] => trim_end(line),
        _ => line,
    };
    let (addr, separator, rest) = dotted_quad_back(text)?;
    if !v4_can_be_source(addr) {
        return None;
    }
    // `, ` before the element is how nearly every proxy joins the list: tested first.
    match (separator, rest) {
        (None, _) => Some((addr, None)),
        (Some(b' '), [rest @ .., b',']) | (Some(b','), rest) => Some((addr, Some(rest))),
        (Some(b' ' | b'\t'), rest) => match trim_end(rest) {
            [] => Some((addr, None)),
            [rest @ .., b','] => Some((addr, Some(rest))),
            _ => None,
        },
        _ => None,
    }
}

/// The bytes [`skip_windowed`] reads at once: the longest dotted quad (15 bytes) and the
/// `, ` before it.
const WINDOW: usize = 17;

/// Skips, from the right of `line`, plain dotted quads that `trusted` accepts, at most
/// `budget` of them, while each one and its comma fit in the [`WINDOW`] bytes ending it.
/// Leaves in `line` what is left of it, and returns how many were skipped and the address
/// `trusted` refused (consumed, with its comma) if that is where it stopped: a small
/// result, returned in registers.
///
/// The common element (`, 10.1.2.3`) is read from one fixed-size array, so no byte the
/// parse reads needs a bounds check of its own. Out of line, so that the loop has the
/// registers to itself (inlined into `resolve`, its values were spilled and reloaded on
/// every element). An element it cannot take is left for [`split_v4_back`], which then
/// decides it exactly as before.
#[inline(never)]
fn skip_windowed(
    line: &mut &[u8],
    budget: u16,
    trusted: &impl Fn(u32) -> bool,
) -> (u16, Option<u32>) {
    let text = *line;
    let mut end = text.len();
    let mut skipped = 0;
    let mut refused = None;
    while skipped < budget {
        let Some(window) = text.split_at(end).0.last_chunk::<WINDOW>() else {
            break;
        };
        let Some((addr, left)) = quad_back(window) else {
            break;
        };
        end = end - WINDOW + left;
        if !trusted(addr) {
            refused = Some(addr);
            break;
        }
        skipped += 1;
    }
    *line = text.split_at(end).0;
    (skipped, refused)
}

/// A canonical dotted quad ending the window, preceded by `,` or `, `: the address, and
/// the index of that comma. `None` for anything else (which may still be a dotted quad:
/// the caller asks [`split_v4_back`]).
#[inline(always)]
fn quad_back(window: &[u8; WINDOW]) -> Option<(u32, usize)> {
    // Every index stays in the window (each octet moves left by at most 4 from the last
    // byte, and the `, ` fits after the longest quad), so the compiler drops the checks
    // of `get`.
    let (first, at) = octet_at(window, WINDOW - 1)?;
    // Octets go in from the bottom as they are read, lowest first, and one byte swap puts
    // them in order at the end: measured ~1.5% faster on long chains than or-ing each
    // octet in at its own shift.
    let mut reversed = first;
    let mut at = at;
    for _ in 0..3 {
        if *window.get(at)? != b'.' {
            return None;
        }
        let (octet, left) = octet_at(window, at - 1)?;
        reversed = reversed << 8 | octet;
        at = left;
    }
    let addr = reversed.swap_bytes();
    if !v4_can_be_source(addr) {
        return None;
    }
    // `, ` first: how nearly every proxy joins the list.
    match *window.get(at)? {
        b' ' if at > 0 && window.get(at - 1) == Some(&b',') => Some((addr, at - 1)),
        b',' => Some((addr, at)),
        _ => None,
    }
}

/// The first element of `line` when it is a plain dotted quad ending at `len` that
/// [`quad_first`] reads in place from the line's first [`WINDOW`] bytes: `Ok` when
/// `trusted` accepts it, `Err` with its bits when not. `None` for anything else (a line
/// shorter than a window, or an element `split_v4_back` must decide).
///
/// Out of line, and apart from [`skip_windowed`]: inside that loop (or after it) it took
/// the loop's registers, and long chains got slower.
#[inline(never)]
fn skip_first(line: &[u8], len: usize, trusted: &impl Fn(u32) -> bool) -> Option<Result<(), u32>> {
    let addr = quad_first(line.first_chunk::<WINDOW>()?, len)?;
    Some(if trusted(addr) { Ok(()) } else { Err(addr) })
}

/// The bits of `head[..len]` when those bytes are exactly a canonical dotted quad that can
/// be a source (what [`split_v4_back`] accepts for an element starting its line, less the
/// whitespace it allows around it); `None` for anything else.
///
/// The first element of a line that the windows have taken the rest of: `len` is where
/// its comma is. It is read forward in place, from the line's first [`WINDOW`] bytes, so
/// no byte is copied before it is read and every index stays in the array.
#[inline(always)]
fn quad_first(head: &[u8; WINDOW], len: usize) -> Option<u32> {
    let (mut addr, mut at) = octet_from(head, 0)?;
    for _ in 0..3 {
        if *head.get(at)? != b'.' {
            return None;
        }
        let (octet, next) = octet_from(head, at + 1)?;
        addr = addr << 8 | octet;
        at = next;
    }
    (at == len && v4_can_be_source(addr)).then_some(addr)
}

/// The canonical decimal octet (1–3 digits, no leading zero, up to 255) starting at
/// `head[first]`, and the index of the byte after it.
#[inline(always)]
fn octet_from(head: &[u8; WINDOW], first: usize) -> Option<(u32, usize)> {
    let digit = |at: usize| Some(u32::from(*head.get(at)?).wrapping_sub(u32::from(b'0')));
    let a = digit(first)?;
    if a > 9 {
        return None;
    }
    let b = digit(first + 1)?;
    if b > 9 {
        return Some((a, first + 1));
    }
    if a == 0 {
        return None;
    }
    let c = digit(first + 2)?;
    if c > 9 {
        return Some((a * 10 + b, first + 2));
    }
    let value = a * 100 + b * 10 + c;
    if value > 255 {
        return None;
    }
    Some((value, first + 3))
}

/// The canonical decimal octet (1–3 digits, no leading zero, up to 255) ending at
/// `window[last]`, and the index of the byte left of it. Needs `last >= 3`.
#[inline(always)]
fn octet_at(window: &[u8; WINDOW], last: usize) -> Option<(u32, usize)> {
    // Widened before the subtraction: a byte load already zero-extends, so no extra step.
    let digit = |at: usize| Some(u32::from(*window.get(at)?).wrapping_sub(u32::from(b'0')));
    let c = digit(last)?;
    if c > 9 {
        return None;
    }
    let b = digit(last - 1)?;
    if b > 9 {
        return Some((c, last - 1));
    }
    let a = digit(last - 2)?;
    if a > 9 {
        return (b != 0).then_some((b * 10 + c, last - 2));
    }
    let value = a * 100 + b * 10 + c;
    if a == 0 || value > 255 {
        return None;
    }
    Some((value, last - 3))
}

/// Strips trailing spaces and tabs.
#[inline(always)]
fn trim_end(mut text: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = text {
        text = rest;
    }
    text
}

impl<'a> Iterator for Rev<'a, '_> {
    type Item = Entry<'a>;

    #[inline]
    fn next(&mut self) -> Option<Entry<'a>> {
        self.next_raw().map(parse_element)
    }
}

/// The elements of X-Forwarded-For from the left: only for the `leftmost` strategy,
/// which reads what the client wrote.
pub fn first<'a>(lines: &[&'a [u8]]) -> Option<Entry<'a>> {
    lines
        .iter()
        .flat_map(|line| line.split(|&b| b == b','))
        .find(|element| !trim(element).is_empty())
        .map(parse_element)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Node;

    fn addrs(lines: &[&str]) -> Vec<String> {
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        Rev::new(&lines).map(|e| e.to_string()).collect()
    }

    #[test]
    fn right_to_left_across_lines() {
        assert_eq!(addrs(&["1.1.1.1, 2.2.2.2", "3.3.3.3"]), ["3.3.3.3", "2.2.2.2", "1.1.1.1"]);
        assert_eq!(addrs(&["1.1.1.1,,  ,2.2.2.2,", ""]), ["2.2.2.2", "1.1.1.1"]);
        assert_eq!(addrs(&[]), Vec::<String>::new());
    }

    #[test]
    fn element_kinds() {
        assert_eq!(parse_element(b" unknown "), Entry::Unknown);
        assert_eq!(parse_element(b"_hidden"), Entry::Obfuscated(b"_hidden"));
        assert!(matches!(parse_element(b"1.2.3.4:80"), Entry::Addr(Node { port: Some(80), .. })));
        assert!(matches!(
            parse_element(b"[2001:db8::1]:443"),
            Entry::Addr(Node { port: Some(443), .. })
        ));
        assert!(matches!(parse_element(b"evil.example"), Entry::Malformed { .. }));
        assert!(matches!(parse_element(b"1.2.3.4 5.6.7.8"), Entry::Malformed { .. }));
    }

    #[test]
    fn fast_path_agrees_with_general_path() {
        // `next_fast` must answer exactly what `next` classifies, element for element,
        // including where it has to give up and leave the element to the general path.
        let lines: &[&[u8]] = &[
            b"1.2.3.4",
            b" 203.0.113.9 ,\t10.1.2.3\t, 192.168.4.5 ",
            b"255.255.255.255,0.0.0.0",
            b"256.1.1.1, 1.2.3.256, 010.1.1.1, 1.2.3.04, 1.00.3.4, 1.2.3.0004",
            b"1.2.3, 1.2.3.4.5, .1.2.3.4, 1..3.4, 1.2.3.4:80, 1.2.3.4:",
            b"1.2.3.4 5.6.7.8, x1.2.3.4, 1.2.3.4x, ::ffff:1.2.3.4, [::1]:5",
            b",, ,1.2.3.4,, unknown, _hidden,",
            b"",
            b"99.9.0.10,1.1.1.1",
        ];
        let general: Vec<Entry<'_>> = Rev::new(lines).collect();
        let mut rev = Rev::new(lines);
        let mut fast = Vec::new();
        while let Some(raw) = rev.next_fast() {
            fast.push(match raw {
                Raw::V4(bits) => Entry::Addr(Node::ip(std::net::Ipv4Addr::from_bits(bits).into())),
                Raw::Other(text) => parse_element(text),
            });
        }
        assert_eq!(fast, general);
    }

    /// What the windowed parse must answer for `line`: exactly what [`split_v4_back`]
    /// does, whenever it answers at all.
    fn check_window(line: &[u8]) {
        let Some(window) = line.last_chunk::<WINDOW>() else {
            return;
        };
        if let Some((addr, comma)) = quad_back(window) {
            let rest = &line[..line.len() - WINDOW + comma];
            assert_eq!(
                split_v4_back(line),
                Some((addr, Some(rest))),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn window_agrees_with_split_v4_back() {
        // Awkward octets (leading zeros, out of range, too long, empty) and separators,
        // at every offset a window can see them.
        const OCTETS: [&str; 16] = [
            "0", "1", "9", "10", "25", "99", "100", "199", "255", "256", "300", "999", "00", "01",
            "010", "1000",
        ];
        const BEFORE: [&str; 12] =
            [",", ", ", " ,", ",  ", "\t,", ",\t", " ", "x", "", ".", "1", ",,"];
        const PADS: [&str; 3] = ["", "9.9.9.9", "1.1.1.1,22.22.22.22"];
        let mut taken = 0;
        let mut line = Vec::new();
        for a in OCTETS {
            for b in OCTETS {
                for c in OCTETS {
                    for d in OCTETS {
                        for before in BEFORE {
                            for pad in PADS {
                                line.clear();
                                line.extend_from_slice(pad.as_bytes());
                                line.extend_from_slice(before.as_bytes());
                                line.extend_from_slice(format!("{a}.{b}.{c}.{d}").as_bytes());
                                if line.len() < WINDOW {
                                    let fill = WINDOW - line.len();
                                    line.splice(0..0, std::iter::repeat_n(b'7', fill));
                                }
                                check_window(&line);
                                let window = line.last_chunk::<WINDOW>().expect("a window");
                                taken += usize::from(quad_back(window).is_some());
                            }
                        }
                    }
                }
            }
        }
        assert!(taken > 50_000, "the window must take the common element: {taken}");
        // Three and five parts, trailing separators and whitespace: never taken.
        for line in [
            &b"1.1.1.1, 22.22.22"[..],
            b"1.1.1.1, 1.2.3.4.5",
            b"1.1.1.1, 22.2.3.4 ",
            b"1.1.1.1, 22.2.3.4,",
            b"1.1.1.1, 22.2.3.4\t",
            b"1.1.1.1, 22.2.3.4:80",
            b"1.1.1.1, ::ffff:1.2.3.4",
            b"1111111111.2.3.4",
            b"111,111.222.33.4",
            b" 255.255.255.255",
            b"  255.255.255.255",
            b"1 255.255.255.255",
            b",\t255.255.255.255",
            b"\t,255.255.255.255",
            b"x,255.255.255.255",
            b"1,255.255.255.2555",
        ] {
            check_window(line);
        }
        assert!(quad_back(b"  255.255.255.254").is_none());
        assert_eq!(quad_back(b", 255.255.255.254"), Some((u32::MAX - 1, 0)));
        assert_eq!(
            quad_back(b"11,255.255.255.254"[1..].try_into().expect("a window")),
            Some((u32::MAX - 1, 1))
        );
        // Addresses that are never a TCP source are left to the general parser, which
        // calls them malformed.
        assert!(quad_back(b", 255.255.255.255").is_none());
        assert!(quad_back(b"11111,  224.0.0.1").is_none());
        assert!(quad_back(b"11111111, 0.0.0.0").is_none());
    }

    #[test]
    fn first_element_agrees_with_split_v4_back() {
        // A line's first element, read forward from the line's first bytes, must answer
        // exactly what `split_v4_back` does for that element alone, or nothing.
        const OCTETS: [&str; 14] = [
            "0", "1", "9", "10", "25", "99", "100", "255", "256", "999", "00", "01", "010", "1000",
        ];
        const AROUND: [(&str, &str); 5] = [("", ""), (" ", ""), ("", " "), ("x", ""), ("", "x")];
        let mut taken = 0;
        for a in OCTETS {
            for b in OCTETS {
                for c in OCTETS {
                    for d in OCTETS {
                        for (before, after) in AROUND {
                            let element = format!("{before}{a}.{b}.{c}.{d}{after}");
                            let line = format!("{element},99.99.99.99, 1.1.1.1");
                            let head = line.as_bytes().first_chunk::<WINDOW>().expect("a head");
                            let len = element.len();
                            let Some(addr) = quad_first(head, len) else {
                                continue;
                            };
                            taken += 1;
                            assert_eq!(
                                split_v4_back(&line.as_bytes()[..len]),
                                Some((addr, None)),
                                "{element:?}"
                            );
                        }
                    }
                }
            }
        }
        // Every bare quad of the eight canonical octets, less 0.0.0.0 and 255.255.255.255
        // (never a source): nothing with a space, a stray byte or a bad octet.
        assert_eq!(taken, 8 * 8 * 8 * 8 - 2);
        for (line, len) in
            [("203.0.113.9, 10.1.2.3, 192.168.4.5", 11), ("1.2.3.4,5.6.7.8.9.10.11.12.13", 7)]
        {
            let head = line.as_bytes().first_chunk::<WINDOW>().expect("a head");
            assert!(quad_first(head, len).is_some(), "{line:?}");
            assert!(quad_first(head, len - 1).is_none(), "{line:?}");
            assert!(quad_first(head, len + 1).is_none(), "{line:?}");
        }
    }

    #[test]
    fn skip_agrees_with_general_path() {
        // Whatever `skip_trusted_v4` skips must be what the general iterator sees first:
        // trusted plain dotted quads, then (consumed) the untrusted one it stops at; and
        // it must leave the rest exactly as the general iterator goes on. (It may stop
        // early, at anything unusual: the caller's general loop then takes over.)
        let pool: &[&[u8]] = &[
            b"203.0.113.9, 10.1.4.2, 10.2.6.3, 10.3.9.4, 10.4.12.5, 10.5.15.6",
            b"10.255.255.255,10.0.0.0 ,  10.100.200.250,\t10.1.1.1",
            b"10.1.1.1, 010.1.1.1, 10.2.2.2, 10.3.3.3, 10.4.4.4",
            b"9.9.9.9, 10.1.1.1:80, 10.2.2.2, 10.3.3.3, 10.4.4.4",
            b"10.1.1.1, 10.2.2.2, 10.3.3.3, 10.4.4.4 ",
            b"10.1.1.1,,10.2.2.2, , 10.3.3.3, unknown, 10.4.4.4,",
            b"::ffff:10.1.1.1, 10.22.33.44, 10.255.255.254, 10.9.9.9",
            b"10.1.1.1",
            b"",
            b"1.2.3.4, 10.1.1.1, 10.2.2.2, 10.3.3.3, 10.4.4.4, 10.5.5.5, 10.6.6.6",
            b"10.1.1.1, 10.2.2.2, 10.3.3.3, 10.4.4.4, 10.5.5.5, 10.6.6.6, 10.7.7.7",
            b"010.1.1.1, 10.2.2.2, 10.3.3.3",
            b" 10.1.1.1, 10.2.2.2, 10.3.3.3",
            b"10.1.1.1 , 10.2.2.2, 10.3.3.3",
            b"9.9.9.9, 10.2.2.2, 10.3.3.3",
            b"10.1.1.12, 10.2.2.2",
            b"10.1.1.1,10.22.2.2",
            b"255.255.255.255, 10.2.2.2, 10.3.3.3",
        ];
        // The bits of a plain dotted quad, as the general parser reads it.
        let plain = |text: &[u8]| match parse_element(text) {
            Entry::Addr(Node { ip: std::net::IpAddr::V4(ip), port: None })
                if text == ip.to_string().as_bytes() =>
            {
                Some(ip.to_bits())
            }
            _ => None,
        };
        let trusted = |ip: u32| ip >> 24 == 10;
        let mut fast_total = 0;
        for first in pool {
            for second in pool {
                for limit in [0, 1, 2, 3, 5, 127] {
                    let lines = [*first, *second];
                    let mut fast = Rev::new(&lines);
                    let (skipped, refused) = fast.skip_trusted_v4(limit, trusted);
                    fast_total += usize::from(skipped);
                    assert!(skipped <= limit);
                    let mut general = Rev::new(&lines);
                    for _ in 0..skipped {
                        let ip = general.next_raw().and_then(plain);
                        assert!(ip.is_some_and(trusted), "{lines:?} {limit}");
                    }
                    if let Some(ip) = refused {
                        assert!(skipped < limit);
                        assert_eq!(general.next_raw().and_then(plain), Some(ip));
                        assert!(!trusted(ip));
                    }
                    let rest: Vec<Entry<'_>> = fast.collect();
                    assert_eq!(rest, general.collect::<Vec<_>>(), "{lines:?} {limit}");
                }
            }
        }
        assert!(fast_total > 1000, "{fast_total}");
    }

    #[test]
    fn leftmost() {
        let lines: [&[u8]; 2] = [b" , 9.9.9.9, 1.1.1.1", b"2.2.2.2"];
        assert_eq!(first(&lines).map(|e| e.to_string()), Some("9.9.9.9".into()));
    }
}
