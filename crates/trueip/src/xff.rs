//! `X-Forwarded-For`: a comma-separated list of addresses, one appended by each hop.
//!
//! Several header lines form one list, in order (RFC 9110 §5.3). Elements are read
//! from the right, because the right end is what the nearest (trusted) hop wrote;
//! the left end is whatever the client sent. Empty elements are skipped, as the
//! list syntax requires (RFC 9110 §5.6.1.2); everything else that is not an
//! address is reported as it is, never guessed.

use crate::addr::{parse_node, trim};
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
        Err(why) => Entry::Malformed {
            text,
            why: why.into(),
        },
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
        Rev {
            lines,
            current: None,
        }
    }
}

impl<'a> Rev<'a, '_> {
    /// The next non-empty element from the right, trimmed, not yet classified.
    #[inline(always)]
    pub(crate) fn next_raw(&mut self) -> Option<&'a [u8]> {
        loop {
            let line = match self.current {
                Some(line) => line,
                None => {
                    let (last, rest) = self.lines.split_last()?;
                    self.lines = rest;
                    last
                }
            };
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
        assert_eq!(
            addrs(&["1.1.1.1, 2.2.2.2", "3.3.3.3"]),
            ["3.3.3.3", "2.2.2.2", "1.1.1.1"]
        );
        assert_eq!(addrs(&["1.1.1.1,,  ,2.2.2.2,", ""]), ["2.2.2.2", "1.1.1.1"]);
        assert_eq!(addrs(&[]), Vec::<String>::new());
    }

    #[test]
    fn element_kinds() {
        assert_eq!(parse_element(b" unknown "), Entry::Unknown);
        assert_eq!(parse_element(b"_hidden"), Entry::Obfuscated(b"_hidden"));
        assert!(matches!(
            parse_element(b"1.2.3.4:80"),
            Entry::Addr(Node { port: Some(80), .. })
        ));
        assert!(matches!(
            parse_element(b"[2001:db8::1]:443"),
            Entry::Addr(Node {
                port: Some(443),
                ..
            })
        ));
        assert!(matches!(
            parse_element(b"evil.example"),
            Entry::Malformed { .. }
        ));
        assert!(matches!(
            parse_element(b"1.2.3.4 5.6.7.8"),
            Entry::Malformed { .. }
        ));
    }

    #[test]
    fn leftmost() {
        let lines: [&[u8]; 2] = [b" , 9.9.9.9, 1.1.1.1", b"2.2.2.2"];
        assert_eq!(first(&lines).map(|e| e.to_string()), Some("9.9.9.9".into()));
    }
}
