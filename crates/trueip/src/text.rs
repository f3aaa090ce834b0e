//! Addresses and numbers as text, without `fmt`.
//!
//! `explain`, the whoami page and debug logs print several addresses per request, and
//! the formatting machinery (a virtual call per piece, padding checks per integer)
//! costs several times what copying the digits does. So IPv4 addresses, `addr:port`
//! and decimals are written here: octets from a table, the rest digit by digit. IPv6
//! goes through `Display` (its compression rules are not worth a second copy).
//!
//! The output is byte for byte what `Display` prints (tested below).

use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use crate::addr::Node;

/// Printed here rather than beside `Node` so that `addr` (which this module uses) does
/// not depend on this module.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V4(ip), port) => f.write_str(Short::v4(ip, port).as_str()),
            (ip @ IpAddr::V6(_), None) => write!(f, "{ip}"),
            (IpAddr::V6(ip), Some(port)) => write!(f, "[{ip}]:{port}"),
        }
    }
}

/// Where text goes: a `Vec<u8>`, or [`Short`] on the stack.
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// Puts the first `len` bytes of `block`.
    #[inline(always)]
    fn put_prefix<const N: usize>(&mut self, block: &[u8; N], len: usize) {
        self.put(block.get(..len).unwrap_or(block));
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline(always)]
    fn put_prefix<const N: usize>(&mut self, block: &[u8; N], len: usize) {
        put_prefix(self, block, len);
    }
}

/// Appends the first `len` bytes of `block` (all of it if `len` is larger).
///
/// The whole block is copied and the length then cut back: a copy of a length known at
/// compile time is a store or two, where a copy of `len` bytes is a call to `memcpy`,
/// which costs more than the few bytes of an address or a number it would copy.
#[inline(always)]
pub(crate) fn put_prefix<const N: usize>(out: &mut Vec<u8>, block: &[u8; N], len: usize) {
    // With `len > N`, the cut is past the end and leaves the whole block.
    let end = out.len() + len;
    out.extend_from_slice(block);
    out.truncate(end);
}

/// Each octet's decimal digits and a dot after them, in the low four bytes (little-endian:
/// the first digit lowest), and above them how many of those bytes count: `255.` is
/// `4 << 32 | u32::from_le_bytes(*b"255.")`. One load gives both. Built at compile time.
static OCTETS: [u64; 256] = octet_table();

#[allow(
    clippy::indexing_slicing,
    reason = "const evaluation: an index out of range fails the build, not a request"
)]
const fn octet_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut n = 0;
    while n < 256 {
        let (a, b, c) = (
            b'0' as u64 + (n / 100) as u64,
            b'0' as u64 + (n / 10 % 10) as u64,
            b'0' as u64 + (n % 10) as u64,
        );
        let dot = b'.' as u64;
        table[n] = if n >= 100 {
            4 << 32 | a | b << 8 | c << 16 | dot << 24
        } else if n >= 10 {
            3 << 32 | b | c << 8 | dot << 16
        } else {
            2 << 32 | c | dot << 8
        };
        n += 1;
    }
    table
}

/// Two octets' digits, each with a dot after it, in the low bytes of an 8-byte block
/// (`255.255.` is 8), and their length.
///
/// Built in a register: written to a buffer in memory a piece at a time, the block was
/// then read back with a load wider than those stores, which stalls store forwarding.
/// Two octets at a time keep the shift within 64 bits (a 128-bit shift by a variable
/// amount is half a dozen instructions).
#[inline(always)]
fn octet_pair(high: u8, low: u8) -> ([u8; 8], usize) {
    let high = OCTETS.get(usize::from(high)).copied().unwrap_or_default();
    let low = OCTETS.get(usize::from(low)).copied().unwrap_or_default();
    let (high_len, low_len) = (high >> 32, low >> 32);
    let text = (high & 0xffff_ffff) | (low & 0xffff_ffff) << (8 * high_len);
    (text.to_le_bytes(), (high_len + low_len) as usize)
}

/// An IPv4 address's text in the low bytes of a 16-byte block (`255.255.255.255` is 15),
/// and its length.
#[inline(always)]
fn v4_block(ip: Ipv4Addr) -> ([u8; 16], usize) {
    let [a, b, c, d] = ip.octets();
    let (first, first_len) = octet_pair(a, b);
    let (last, last_len) = octet_pair(c, d);
    let text = u128::from(u64::from_le_bytes(first))
        | u128::from(u64::from_le_bytes(last)) << (8 * first_len);
    // Without the last octet's dot.
    (text.to_le_bytes(), (first_len + last_len).saturating_sub(1))
}

#[inline(always)]
fn put_v4(out: &mut impl Sink, ip: Ipv4Addr) {
    let (block, len) = v4_block(ip);
    out.put_prefix(&block, len);
}

/// The decimal digits of `n` in the low bytes of a `u64`, the first digit lowest (first
/// in little-endian order), and how many there are (at most 5).
///
/// In a register, as [`octet_pair`] is, for the same reason.
#[inline(always)]
fn digits(n: u16) -> (u64, u32) {
    // From the last digits on, two at a time from a table, each pair put in front of
    // those after it: a 5-digit port in three steps rather than five.
    let pair = |n: u32| u64::from(DIGIT_PAIRS.get(n as usize).copied().unwrap_or_default());
    let mut text = 0u64;
    let mut n = u32::from(n);
    let mut len = 0;
    while n >= 100 {
        text = text << 16 | pair(n % 100);
        len += 2;
        n /= 100;
    }
    if n >= 10 {
        (text << 16 | pair(n), len + 2)
    } else {
        (text << 8 | u64::from(b'0' + n as u8), len + 1)
    }
}

/// `00` to `99`, each as two bytes in a little-endian `u16`. Built at compile time.
static DIGIT_PAIRS: [u16; 100] = {
    let mut table = [0u16; 100];
    let mut n = 0;
    while n < 100 {
        #[allow(
            clippy::indexing_slicing,
            reason = "const evaluation: an index out of range fails the build, not a request"
        )]
        {
            table[n] = (b'0' as u16 + (n / 10) as u16) | (b'0' as u16 + (n % 10) as u16) << 8;
        }
        n += 1;
    }
    table
};

/// Appends `n` in decimal.
#[inline(always)]
pub(crate) fn put_u16(out: &mut Vec<u8>, n: u16) {
    let (text, len) = digits(n);
    put_prefix(out, &text.to_le_bytes(), len as usize);
}

/// `:port`, in a block (`:65535` is 6 bytes).
#[inline(always)]
fn port_block(port: u16) -> ([u8; 8], usize) {
    let (text, len) = digits(port);
    (
        (u64::from(b':') | text << 8).to_le_bytes(),
        len as usize + 1,
    )
}

/// `[-n]`, the index of a list entry counted from the right, in a block (`[-65535]` is 8
/// bytes).
#[inline(always)]
fn from_right_block(n: u16) -> ([u8; 8], usize) {
    let (text, len) = digits(n);
    let text =
        u64::from(b'[') | u64::from(b'-') << 8 | text << 16 | u64::from(b']') << (8 * (len + 2));
    (text.to_le_bytes(), len as usize + 3)
}

/// Appends `[-n]`.
#[inline(always)]
pub(crate) fn put_from_right(out: &mut Vec<u8>, n: u16) {
    let (block, len) = from_right_block(n);
    put_prefix(out, &block, len);
}

fn put_u64(out: &mut impl Sink, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    while let Some(slot) = at.checked_sub(1).and_then(|i| digits.get_mut(i)) {
        *slot = b'0' + (n % 10) as u8;
        at -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(digits.get(at..).unwrap_or_default());
}

/// Appends `n` in decimal.
pub fn put_decimal(out: &mut Vec<u8>, n: u64) {
    put_u64(out, n);
}

/// Appends `ip` as its `Display` prints it.
pub fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => put_v4(out, v4),
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `node` as its `Display` prints it: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:443`.
pub fn put_node(out: &mut Vec<u8>, node: &Node) {
    match (node.ip, node.port) {
        (IpAddr::V4(v4), port) => {
            put_v4(out, v4);
            if let Some(port) = port {
                let (block, len) = port_block(port);
                put_prefix(out, &block, len);
            }
        }
        (IpAddr::V6(_), _) => {
            let _ = write!(out, "{node}");
        }
    }
}

/// Bytes this module wrote: ASCII, or `Display` output; valid UTF-8 either way.
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// `ip.to_string()`.
pub(crate) fn ip_string(ip: IpAddr) -> String {
    let mut out = Vec::with_capacity(15);
    put_ip(&mut out, ip);
    into_string(out)
}

/// `node.to_string()`.
pub(crate) fn node_string(node: &Node) -> String {
    let mut out = Vec::with_capacity(21);
    put_node(&mut out, node);
    into_string(out)
}

/// Appends `name[-n]`: how a list entry counted from the right is named
/// (`x-forwarded-for[-2]`).
pub(crate) fn put_indexed(out: &mut Vec<u8>, name: &str, n: u16) {
    out.extend_from_slice(name.as_bytes());
    put_from_right(out, n);
}

/// `name[-n]`, as a `String`.
pub(crate) fn indexed(name: &str, n: u16) -> String {
    let mut out = Vec::with_capacity(name.len() + 8);
    put_indexed(&mut out, name, n);
    into_string(out)
}

/// Whether any byte is one a JSON string must escape: a control character, `"` or `\\`.
///
/// Eight bytes at a time in one `u64` (the classic SWAR tests: a byte below `n`
/// leaves a borrow in its high bit of `x - n·0x01…01` that `!x` does not mask; a byte
/// equal to `c` is a zero byte of `x ^ c·0x01…01`). Both tests are exact for "is there
/// any such byte", which is all that is asked. The tail goes byte by byte.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0;
    let has = |x: u64, c: u8| below(x ^ (ONES * u64::from(c)), 1);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        // Always eight bytes; were it not, zeros would answer "escape", which is safe.
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        if below(x, 0x20) || has(x, b'"') || has(x, b'\\') {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends an array as serde_json's pretty printer writes it as the value of a member
/// `depth` objects deep (1: a member of the top object): `[]`, or each item on its own
/// line, indented two spaces more than the member, `put` writing the item itself.
pub fn put_json_array<T>(
    out: &mut Vec<u8>,
    depth: usize,
    items: impl Iterator<Item = T>,
    mut put: impl FnMut(&mut Vec<u8>, T),
) {
    const SPACES: &[u8; 32] = b"                                ";
    let indent = |n: usize| SPACES.get(..n.min(SPACES.len())).unwrap_or_default();
    let mut first = true;
    for item in items {
        out.extend_from_slice(if first { b"[\n" } else { b",\n" });
        out.extend_from_slice(indent(2 * depth + 2));
        first = false;
        put(out, item);
    }
    if first {
        out.extend_from_slice(b"[]");
    } else {
        out.push(b'\n');
        out.extend_from_slice(indent(2 * depth));
        out.push(b']');
    }
}

/// Appends one of trueip's own fixed texts (a step's subject, a reason) as a JSON string.
/// They are written in this crate's source and hold nothing to escape (debug builds,
/// and so the tests, check), so the check is skipped; text from a request never has a
/// `'static` lifetime, so it cannot come this way.
pub(crate) fn put_json_literal(out: &mut Vec<u8>, s: &'static str) {
    debug_assert!(!needs_escape(s.as_bytes()), "{s:?} needs escaping");
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes: `"` and `\`,
/// and the control characters below U+0020 (`\b \t \n \f \r` by name, the rest as
/// `\u00xx`); everything else, DEL and non-ASCII included, as is.
pub fn put_json_string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    put_escaped(out, s);
    out.push(b'"');
}

/// The inside of [`put_json_string`]: `s` escaped, without the quotes around it.
pub(crate) fn put_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    // Most text needs no escape: a check eight bytes at a time says so, then one copy.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let named: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if named.is_empty() {
            out.extend_from_slice(b"\\u00");
            for nibble in [b >> 4, b & 0xf] {
                out.push(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'));
            }
        } else {
            out.extend_from_slice(named);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// The inside of [`put_json_literal`]: one of trueip's own fixed texts, copied as it is.
pub(crate) fn put_literal(out: &mut Vec<u8>, s: &'static str) {
    debug_assert!(!needs_escape(s.as_bytes()), "{s:?} needs escaping");
    out.extend_from_slice(s.as_bytes());
}

/// Appends a name trueip checked when the policy was built: a strategy's (`hops:2`,
/// `header:x-real-ip`) or a header's, made of token bytes, digits and colons, which JSON
/// never escapes (debug builds, and so the tests, check).
#[inline]
pub(crate) fn put_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(!needs_escape(name.as_bytes()), "{name:?} needs escaping");
    out.extend_from_slice(name.as_bytes());
}

/// `parts` joined, at the start of a block of `N` bytes, and the joined length: a text
/// that varies with a value (a verdict, a list header) but is known for each, so that it
/// is written as one copy of a fixed size (see [`put_prefix`]).
///
/// # Panics
/// At compile time, when used in a `const` whose parts do not fit.
#[allow(
    clippy::indexing_slicing,
    reason = "const evaluation: an index out of range fails the build, not a request"
)]
pub(crate) const fn joined<const N: usize>(parts: &[&str]) -> ([u8; N], usize) {
    let mut block = [0u8; N];
    let mut len = 0;
    let mut part = 0;
    while part < parts.len() {
        let bytes = parts[part].as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            block[len] = bytes[i];
            len += 1;
            i += 1;
        }
        part += 1;
    }
    (block, len)
}

/// Up to 24 bytes of ASCII on the stack, for `Display` impls that print an IPv4 node or
/// a number: enough for `255.255.255.255:65535`.
pub(crate) struct Short {
    buf: [u8; 24],
    len: usize,
}

impl Sink for Short {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(slots) = self.buf.get_mut(self.len..end) {
            slots.copy_from_slice(bytes);
            self.len = end;
        }
    }
}

impl Short {
    fn new() -> Self {
        Short {
            buf: [0; 24],
            len: 0,
        }
    }

    /// `ip`, with `:port` when there is one.
    pub(crate) fn v4(ip: Ipv4Addr, port: Option<u16>) -> Self {
        let mut text = Short::new();
        put_v4(&mut text, ip);
        if let Some(port) = port {
            let (block, len) = port_block(port);
            text.put_prefix(&block, len);
        }
        text
    }

    /// `n` in decimal.
    pub(crate) fn decimal(n: u64) -> Self {
        let mut text = Short::new();
        put_u64(&mut text, n);
        text
    }

    /// `[-n]`: the index of a list entry counted from the right.
    pub(crate) fn from_right(n: u16) -> Self {
        let mut text = Short::new();
        let (block, len) = from_right_block(n);
        text.put_prefix(&block, len);
        text
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever put here, so this never fails.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_display_does() {
        let mut ips: Vec<IpAddr> = (0..=255u8)
            .map(|n| IpAddr::V4(Ipv4Addr::new(n, 255 - n, n / 2, 7)))
            .collect();
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::",
            "::ffff:10.0.0.1",
        ] {
            ips.extend(text.parse::<IpAddr>().ok());
        }
        for ip in ips {
            assert_eq!(ip_string(ip), ip.to_string());
            for port in [
                None,
                Some(0),
                Some(9),
                Some(80),
                Some(443),
                Some(10000),
                Some(65535),
            ] {
                let node = Node { ip, port };
                assert_eq!(node_string(&node), node.to_string());
                if let IpAddr::V4(v4) = ip {
                    assert_eq!(Short::v4(v4, port).as_str(), node.to_string());
                }
            }
        }
        for n in (0..=u64::from(u16::MAX)).chain([u64::MAX / 3, u64::MAX]) {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(Short::decimal(n).as_str(), n.to_string());
            if let Ok(n) = u16::try_from(n) {
                let mut out = b"x".to_vec();
                put_u16(&mut out, n);
                put_from_right(&mut out, n);
                assert_eq!(out, format!("x{n}[-{n}]").as_bytes());
            }
        }
        for n in [0, 1, 9, 10, 99, 100, 255, 1000, 9999, 10000, 65535] {
            assert_eq!(indexed("forwarded", n), format!("forwarded[-{n}]"));
            assert_eq!(Short::from_right(n).as_str(), format!("[-{n}]"));
        }
    }

    #[test]
    fn json_strings_escape_as_serde_json_does() {
        let every_byte: Vec<u8> = (0..=255u8).collect();
        let ascii: String = (0..0x80u8).map(char::from).collect();
        let mut cases = vec![
            String::new(),
            "plain".to_string(),
            ascii.clone(),
            String::from_utf8_lossy(&every_byte).into_owned(),
            "\u{2028}\u{2029}\u{0}\u{1f}\u{7f}é\u{1F600}".to_string(),
        ];
        // Every length around the 16-byte step, with the special byte at every place.
        for len in 0..40 {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', ' ', '\u{7f}'] {
                    let mut text: String = "a".repeat(len);
                    text.replace_range(at..=at, &special.to_string());
                    cases.push(text);
                }
            }
        }
        for text in cases {
            let mut out = Vec::new();
            put_json_string(&mut out, &text);
            let want = serde_json::to_vec(&text).unwrap_or_default();
            assert_eq!(out, want, "{text:?}");
        }
    }

    #[test]
    fn the_escape_check_finds_every_byte_at_every_place() {
        let naive = |bytes: &[u8]| bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in 1..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    for fill in [b'a', b' ', 0x7f, 0xff, b'"' + 1, b'\\' - 1] {
                        let mut bytes = vec![fill; len];
                        if let Some(slot) = bytes.get_mut(at) {
                            *slot = byte;
                        }
                        assert_eq!(needs_escape(&bytes), naive(&bytes), "{bytes:?}");
                    }
                }
            }
        }
    }
}
