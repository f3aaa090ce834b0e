//! RFC 7239 `Forwarded`: `for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8::1]:4711"`.
//!
//! Elements are split from the **right**. A client can put anything at the left of
//! the header, including an opening quote that never closes; read left to right,
//! that quote would swallow every element the trusted hops appended after it.
//! Read right to left, the well-formed suffix written by trusted hops parses the
//! same whatever precedes it, and the walk stops at the first element that does not
//! parse — which is, at worst, the client's.
//!
//! Several header lines form one list; a quoted string never spans lines.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::addr::{Node, parse_ip, parse_ipv4, parse_port, source, split_around, trim};
use crate::entry::{Entry, Malformation};
use crate::headers::is_token_byte;

/// A parameter value: a token, or the inside of a quoted string (escapes not yet resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value<'a> {
    /// The bytes between the quotes, or the token.
    pub raw: &'a [u8],
    /// Whether the value was a quoted string (and may hold `\` escapes).
    pub quoted: bool,
}

impl Value<'_> {
    /// The value with quoted-pair escapes resolved.
    pub fn unescaped(&self) -> Vec<u8> {
        if !self.quoted || !self.raw.contains(&b'\\') {
            return self.raw.to_vec();
        }
        let mut out = Vec::with_capacity(self.raw.len());
        let mut bytes = self.raw.iter();
        while let Some(&b) = bytes.next() {
            match b {
                b'\\' => out.extend(bytes.next()),
                b => out.push(b),
            }
        }
        out
    }
}

/// One parsed `Forwarded` element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element<'a> {
    /// The `for=` node: who the hop that wrote this element received the request from.
    pub for_node: Entry<'a>,
    /// The `by=` node, if present.
    pub by: Option<Entry<'a>>,
    /// `proto=`, if present.
    pub proto: Option<Value<'a>>,
    /// `host=`, if present.
    pub host: Option<Value<'a>>,
}

/// Parses one element (the text between two commas).
///
/// One pass over the bytes: each parameter name is read as far as its token bytes go,
/// and must end at `=`; its value is a token or a quoted string.
pub fn parse_element(text: &[u8]) -> Result<Element<'_>, Malformation> {
    let mut element = Element { for_node: Entry::Absent, by: None, proto: None, host: None };
    let mut seen_for = false;
    let mut rest = text;
    loop {
        rest = trim_start(rest);
        let name_len = match rest {
            [] => break,
            [b';', more @ ..] => {
                rest = more;
                continue;
            }
            _ => rest.iter().position(|&b| !is_token_byte(b)).unwrap_or(rest.len()),
        };
        let (name, after) = rest.split_at(name_len);
        let after = match after {
            [b'=', after @ ..] if !name.is_empty() => after,
            _ => return Err(Malformation::Syntax),
        };
        let (value, tail) = take_value(after)?;
        rest = match trim_start(tail) {
            [] => &[],
            [b';', more @ ..] => more,
            _ => return Err(Malformation::Syntax),
        };
        let taken = match name.len() {
            3 if name.eq_ignore_ascii_case(b"for") => {
                element.for_node = parse_node_value(value);
                std::mem::replace(&mut seen_for, true)
            }
            2 if name.eq_ignore_ascii_case(b"by") => {
                element.by.replace(parse_node_value(value)).is_some()
            }
            5 if name.eq_ignore_ascii_case(b"proto") => element.proto.replace(value).is_some(),
            4 if name.eq_ignore_ascii_case(b"host") => element.host.replace(value).is_some(),
            _ => false, // extension parameters are allowed and ignored
        };
        if taken {
            return Err(Malformation::DuplicateParameter);
        }
    }
    Ok(element)
}

/// Strips leading spaces and tabs.
fn trim_start(mut text: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = text {
        text = rest;
    }
    text
}

/// Reads a token or a quoted string from the start of `text`; returns it and the rest.
fn take_value(text: &[u8]) -> Result<(Value<'_>, &[u8]), Malformation> {
    if let [b'"', inner @ ..] = text {
        let mut escaped = false;
        for (i, &b) in inner.iter().enumerate() {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    let (raw, rest) = split_around(inner, i);
                    return Ok((Value { raw, quoted: true }, rest));
                }
                _ => {}
            }
        }
        return Err(Malformation::UnterminatedQuote);
    }
    let end = text.iter().position(|&b| !is_token_byte(b)).unwrap_or(text.len());
    let (raw, rest) = text.split_at(end);
    if raw.is_empty() {
        return Err(Malformation::Syntax);
    }
    Ok((Value { raw, quoted: false }, rest))
}

/// Interprets a `for=`/`by=` value as a node (RFC 7239 §6): IPv4, `[IPv6]`, `unknown`
/// or an obfuscated `_identifier`, each optionally followed by `:port` or `:_obfport`.
fn parse_node_value(value: Value<'_>) -> Entry<'_> {
    // The usual node, `192.0.2.60` or `"192.0.2.60:4711"`, in one pass; anything else,
    // including every error, is decided below.
    if let Some((ip, port)) = crate::addr::parse_v4_node_fast(value.raw) {
        return Entry::Addr(Node { ip: IpAddr::V4(ip), port });
    }
    let bad = |why| Entry::Malformed { text: value.raw, why };
    if value.quoted && value.raw.contains(&b'\\') {
        // Escapes inside a node are legal but pointless; resolving them would need an
        // allocation on the request path, so such a node is reported, not guessed.
        return bad(Malformation::BadNode);
    }
    let text = value.raw;
    let (name, port) = match text {
        [b'[', ..] => match text.iter().position(|&b| b == b']') {
            Some(close) => {
                let (name, after) = text.split_at(close + 1);
                match after {
                    [] => (name, None),
                    [b':', port @ ..] => (name, Some(port)),
                    _ => return bad(Malformation::BadNode),
                }
            }
            None => return bad(Malformation::BadNode),
        },
        _ => match text.iter().position(|&b| b == b':') {
            Some(at) => {
                let (name, port) = split_around(text, at);
                (name, Some(port))
            }
            None => (text, None),
        },
    };
    let port = match port {
        None => None,
        Some([b'_', obf @ ..]) if is_obf(obf) => None,
        Some(digits) => match parse_port(digits) {
            Ok(port) => Some(port),
            Err(e) => return bad(e.into()),
        },
    };
    match name {
        _ if name.eq_ignore_ascii_case(b"unknown") => Entry::Unknown,
        [b'_', obf @ ..] if is_obf(obf) => Entry::Obfuscated(name),
        [b'[', v6 @ .., b']'] if v6.contains(&b':') => {
            match parse_ip(v6).and_then(|ip| source(Node { ip, port })) {
                Ok(node) => Entry::Addr(node),
                Err(e) => bad(e.into()),
            }
        }
        _ if !name.contains(&b':') && !name.contains(&b'[') => {
            match parse_ipv4(name).and_then(|ip| source(Node { ip: IpAddr::V4(ip), port })) {
                Ok(node) => Entry::Addr(node),
                Err(e) => bad(e.into()),
            }
        }
        _ => bad(Malformation::BadNode),
    }
}

fn is_obf(text: &[u8]) -> bool {
    !text.is_empty()
        && text.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether the byte at `at` is preceded by an odd number of backslashes.
fn is_escaped(text: &[u8], at: usize) -> bool {
    text.get(..at).unwrap_or_default().iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// Splits the last element off a line: `(rest, element)`, or `Err(rest_of_line)` when
/// a quote opened somewhere in the line never closes before the end we are reading.
fn split_last(line: &[u8]) -> (&[u8], Result<&[u8], &[u8]>) {
    let mut end = line.len();
    loop {
        let head = line.get(..end).unwrap_or_default();
        let Some(at) = head.iter().rposition(|&b| b == b',' || b == b'"') else {
            return (&[], Ok(line));
        };
        if head.get(at) == Some(&b',') {
            let (rest, element) = split_around(line, at);
            return (rest, Ok(element));
        }
        if is_escaped(head, at) {
            end = at; // a stray \" outside quotes: the element parser will reject it
            continue;
        }
        // `at` closes a quoted string; find where it opens.
        let mut open_end = at;
        let open = loop {
            let inside = line.get(..open_end).unwrap_or_default();
            match inside.iter().rposition(|&b| b == b'"') {
                Some(q) if is_escaped(inside, q) => open_end = q,
                found => break found,
            }
        };
        match open {
            Some(q) => end = q,
            None => return (&[], Err(line)),
        }
    }
}

/// The part of one `Forwarded` line that reads as elements from the right: from the first
/// of the rightmost elements that parse ([`Rev`]'s reading, empty ones included) to the
/// end, without the separator before it; empty when the last element does not parse.
///
/// What a proxy that joins lines into one keeps of each: a quote opened on a line (or any
/// element left of one that does not parse) is the client's, and joined to the lines
/// after it a quote-aware parser reading left to right would let it swallow every element
/// the trusted hops wrote there. Cut here, no quote spans into what follows.
///
/// ```
/// use trueip::forwarded::readable_suffix;
///
/// assert_eq!(readable_suffix(br#"for=6.6.6.6;x=", for=203.0.113.7"#), b"for=203.0.113.7");
/// assert_eq!(readable_suffix(br#"for=6.6.6.6;x=""#), b"");
/// assert_eq!(readable_suffix(b"for=192.0.2.1, for=\"[2001:db8::1]\""), b"for=192.0.2.1, for=\"[2001:db8::1]\"");
/// ```
pub fn readable_suffix(line: &[u8]) -> &[u8] {
    let mut rest = line;
    loop {
        let (head, element) = split_last(rest);
        let readable = match element {
            Ok(text) => trim(text).is_empty() || parse_element(text).is_ok(),
            Err(_) => false,
        };
        // `rest` ends where the unreadable element does: what follows its comma stays.
        let from = match (readable, head.is_empty()) {
            (false, _) => rest.len().saturating_add(1).min(line.len()),
            (true, true) => 0,
            (true, false) => {
                rest = head;
                continue;
            }
        };
        let mut kept = trim(line.get(from..).unwrap_or_default());
        while let [b',' | b' ' | b'\t', more @ ..] = kept {
            kept = more;
        }
        return kept;
    }
}

/// The elements of `Forwarded`, right to left across lines, skipping empty ones.
/// Yields `Err(text)` for an element that does not parse.
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

impl<'a> Iterator for Rev<'a, '_> {
    type Item = Result<Element<'a>, (&'a [u8], Malformation)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.current.take() {
                Some(line) => line,
                None => {
                    let (last, rest) = self.lines.split_last()?;
                    self.lines = rest;
                    last
                }
            };
            let (rest, element) = split_last(line);
            self.current = (!rest.is_empty()).then_some(rest);
            match element {
                Ok(text) if trim(text).is_empty() => continue,
                Ok(text) => return Some(parse_element(text).map_err(|why| (trim(text), why))),
                Err(text) => return Some(Err((trim(text), Malformation::UnterminatedQuote))),
            }
        }
    }
}

/// The leftmost element: only for the `leftmost` strategy.
pub fn first<'a>(lines: &[&'a [u8]]) -> Option<Result<Element<'a>, (&'a [u8], Malformation)>> {
    // Reading from the right and keeping the last is the one parse we trust; the
    // leftmost element is attacker text either way.
    Rev::new(lines).last()
}

/// Writes a node as a `Forwarded` value, quoting where RFC 7239 requires it.
pub fn write_node(out: &mut String, node: &Node) {
    match (node.ip, node.port) {
        (IpAddr::V4(ip), None) => {
            let _ = write!(out, "{ip}");
        }
        (IpAddr::V4(ip), Some(port)) => {
            let _ = write!(out, "\"{ip}:{port}\"");
        }
        (IpAddr::V6(ip), None) => {
            let _ = write!(out, "\"[{ip}]\"");
        }
        (IpAddr::V6(ip), Some(port)) => {
            let _ = write!(out, "\"[{ip}]:{port}\"");
        }
    }
}

/// Writes a parameter value as a token when it can be one, else as a quoted string.
pub fn write_value(out: &mut String, value: &str) {
    if !value.is_empty() && value.bytes().all(is_token_byte) {
        out.push_str(value);
        return;
    }
    // Most values that are no token have nothing to escape (a `Host` with a port, on
    // every proxied request): copied whole, not a `char` at a time.
    out.push('"');
    if !value.bytes().any(|b| b == b'"' || b == b'\\') {
        out.push_str(value);
    } else {
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
}

/// Writes one element: `for=…;by=…;proto=…;host=…`, omitting what is `None`.
pub fn write_element(
    out: &mut String,
    for_node: Option<&Node>,
    by: Option<&Node>,
    proto: Option<&str>,
    host: Option<&str>,
) {
    let mut sep = "";
    let mut pair = |out: &mut String, name: &str| {
        out.push_str(sep);
        out.push_str(name);
        out.push('=');
        sep = ";";
    };
    if let Some(node) = for_node {
        pair(out, "for");
        write_node(out, node);
    }
    if let Some(node) = by {
        pair(out, "by");
        write_node(out, node);
    }
    if let Some(proto) = proto {
        pair(out, "proto");
        write_value(out, proto);
    }
    if let Some(host) = host {
        pair(out, "host");
        write_value(out, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fors(lines: &[&str]) -> Vec<String> {
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        Rev::new(&lines)
            .map(|e| match e {
                Ok(el) => el.for_node.to_string(),
                Err((text, why)) => format!("ERR({}: {why})", String::from_utf8_lossy(text)),
            })
            .collect()
    }

    /// What a line keeps is exactly the elements the decision reads from its right, up to
    /// the first it cannot read, and holds no quote that stays open.
    #[test]
    fn a_lines_readable_suffix_is_what_reads_from_the_right() {
        for (line, kept) in [
            ("for=192.0.2.1, for=198.51.100.2", "for=192.0.2.1, for=198.51.100.2"),
            ("for=6.6.6.6;x=\"", ""),
            ("for=6.6.6.6;x=\", for=203.0.113.7", "for=203.0.113.7"),
            (
                "for=\"[2001:db8::1]:80\";proto=https, for=10.0.0.1",
                "for=\"[2001:db8::1]:80\";proto=https, for=10.0.0.1",
            ),
            ("for=\"a, b\", for=10.0.0.1", "for=\"a, b\", for=10.0.0.1"),
            ("garbage, for=10.0.0.1", "for=10.0.0.1"),
            ("for=6.6.6.6, garbage, for=10.0.0.1 ,", "for=10.0.0.1 ,"),
            (", , for=10.0.0.1", ", , for=10.0.0.1"),
            ("\"", ""),
            ("", ""),
        ] {
            let got = readable_suffix(line.as_bytes());
            let expected = kept.trim_start_matches([',', ' ']);
            assert_eq!(String::from_utf8_lossy(got), expected, "{line}");
            let read: Vec<String> =
                fors(&[line]).into_iter().take_while(|f| !f.starts_with("ERR")).collect();
            let kept = std::str::from_utf8(got).unwrap();
            assert_eq!(fors(&[kept]), read, "{line}");
            assert_eq!(got.iter().filter(|&&b| b == b'"').count() % 2, 0, "{line}");
        }
    }

    #[test]
    fn rfc_examples() {
        assert_eq!(fors(&[r#"for="_gazonk""#]), ["_gazonk"]);
        assert_eq!(fors(&[r#"For="[2001:db8:cafe::17]:4711""#]), ["[2001:db8:cafe::17]:4711"]);
        assert_eq!(fors(&["for=192.0.2.60;proto=http;by=203.0.113.43"]), ["192.0.2.60"]);
        assert_eq!(fors(&["for=192.0.2.43, for=198.51.100.17"]), ["198.51.100.17", "192.0.2.43"]);
        assert_eq!(fors(&["for=unknown", r#"for="_hidden:_port""#]), ["_hidden", "unknown"]);
    }

    #[test]
    fn params_any_case_and_extension() {
        let el =
            parse_element(br#"PROTO=https;Host="example.com:8443";ext=1;for=1.2.3.4"#).unwrap();
        assert_eq!(el.proto.map(|v| v.raw), Some(&b"https"[..]));
        assert_eq!(el.host.map(|v| v.unescaped()), Some(b"example.com:8443".to_vec()));
        assert_eq!(el.for_node.to_string(), "1.2.3.4");
        assert_eq!(parse_element(b"proto=https").unwrap().for_node, Entry::Absent);
    }

    #[test]
    fn malformed_is_reported() {
        assert_eq!(
            parse_element(b"for=1.2.3.4;for=5.6.7.8"),
            Err(Malformation::DuplicateParameter)
        );
        assert_eq!(parse_element(b"for"), Err(Malformation::Syntax));
        assert_eq!(parse_element(b"for=1.2.3.4 x"), Err(Malformation::Syntax));
        assert!(matches!(
            parse_element(b"for=\"[2001:db8::1]").map(|e| e.for_node),
            Err(Malformation::UnterminatedQuote)
        ));
        // Unquoted IPv6 is not a token: a syntax error, not a guess.
        assert_eq!(parse_element(b"for=[2001:db8::1]"), Err(Malformation::Syntax));
        assert!(matches!(
            parse_element(b"for=\"2001:db8::1\"").unwrap().for_node,
            Entry::Malformed { .. }
        ));
        assert!(matches!(
            parse_element(b"for=010.1.1.1").unwrap().for_node,
            Entry::Malformed { .. }
        ));
    }

    #[test]
    fn unmatched_client_quote_cannot_swallow_trusted_elements() {
        // The client wrote `for="1.2.3.4`; two trusted hops appended to the same line.
        let got = fors(&[r#"for="1.2.3.4, for=198.51.100.7;proto=https, for="[2001:db8::9]:80""#]);
        assert_eq!(got[0], "[2001:db8::9]:80");
        assert_eq!(got[1], "198.51.100.7");
        assert!(got[2].starts_with("ERR("), "{got:?}");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn escaped_quotes_and_commas_inside_quotes() {
        assert_eq!(fors(&[r#"for=1.1.1.1;host="a,b\"c", for=2.2.2.2"#]), ["2.2.2.2", "1.1.1.1"]);
        let el = parse_element(br#"host="a\"b\\""#).unwrap();
        assert_eq!(el.host.unwrap().unescaped(), br#"a"b\"#.to_vec());
    }

    #[test]
    fn write_then_parse() {
        for text in ["1.2.3.4", "1.2.3.4:80", "[2001:db8::1]:443", "2001:db8::1"] {
            let node = crate::addr::parse_node(text.as_bytes()).unwrap();
            let mut out = String::new();
            write_element(&mut out, Some(&node), None, Some("https"), Some("h:1"));
            let el = parse_element(out.as_bytes()).unwrap();
            assert_eq!(el.for_node, Entry::Addr(node), "{out}");
            assert_eq!(el.host.unwrap().unescaped(), b"h:1".to_vec());
        }
    }

    #[test]
    fn values_are_quoted_and_escaped_whole() {
        let cases = [
            ("h:1", r#""h:1""#),
            ("", r#""""#),
            (r#"a"b"#, r#""a\"b""#),
            (r#"a\b"#, r#""a\\b""#),
            (r#""\"#, r#""\"\\""#),
            (r#"x"y\z"end"#, r#""x\"y\\z\"end""#),
            ("é:1", "\"é:1\""),
        ];
        for (value, written) in cases {
            let mut out = String::new();
            write_value(&mut out, value);
            assert_eq!(out, written, "{value}");
            let line = format!("host={out}");
            let el = parse_element(line.as_bytes()).unwrap();
            assert_eq!(el.host.unwrap().unescaped(), value.as_bytes().to_vec());
        }
    }
}
