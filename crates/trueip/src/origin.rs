//! The original scheme, host, port and path prefix, decided by the same trust as the client.
//!
//! `X-Forwarded-Proto`/`-Host`/`-Port`/`-Prefix` may be lists, one value per hop, or
//! single values overwritten by each hop. Either way a value written by a hop we do
//! not trust is not used. With `t` trusted hops in front of the client, the hops that
//! wrote values are the rightmost `t`; the outermost of them saw the client's own
//! request. So: with more than `t` values, take the `t`-th from the right; with `t` or
//! fewer, every value came from a trusted hop and the leftmost is the outermost one.
//! When the client came from a `Forwarded` element, that element's own `proto=` and
//! `host=` are used.
//!
//! Values that do not look like what they claim (a proto other than `http`/`https`, a
//! host that is not a `host[:port]`, see [`is_host`]) are dropped, not passed on.

use crate::addr::{parse_port, trim};
use crate::forwarded;
use crate::headers::{FieldName, Headers, Lines, UNKEPT_CLAIMS, names};
use crate::resolution::{ListHeader, Resolution, Source, Warnings};

/// A scheme trueip passes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `http`
    Http,
    /// `https`
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn parse(text: &[u8]) -> Option<Self> {
        let text = trim(text);
        if text.eq_ignore_ascii_case(b"https") {
            Some(Scheme::Https)
        } else if text.eq_ignore_ascii_case(b"http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }
}

/// What the client asked for, as trusted hops reported it. `None` where no trusted hop said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The scheme the client used.
    pub proto: Option<Scheme>,
    /// The host the client asked for (`example.com`, `example.com:8443`).
    pub host: Option<String>,
    /// The port the client connected to.
    pub port: Option<u16>,
    /// The path prefix the proxy stripped (`/api`).
    pub prefix: Option<String>,
}

/// Every header [`origin`] reads: a caller that copies headers out of another
/// representation copies these (beside [`Policy::header_names`](crate::Policy::header_names)).
pub const HEADER_NAMES: [FieldName; 5] = [
    names::X_FORWARDED_PROTO,
    names::X_FORWARDED_HOST,
    names::X_FORWARDED_PORT,
    names::X_FORWARDED_PREFIX,
    names::FORWARDED,
];

/// Reads the origin for a resolved request.
pub fn origin<H: Headers + ?Sized>(headers: &H, resolution: &Resolution) -> Origin {
    // A PROXY protocol hop writes no HTTP headers: it vouches for the address only.
    let hops = resolution.trusted_hops.saturating_sub(u16::from(resolution.proxy_source.is_some()));
    if hops == 0 {
        return Origin::default();
    }
    if let Source::List { header: ListHeader::Forwarded, from_right } = resolution.source {
        return from_forwarded(headers, from_right);
    }
    // Behind a hop that did not keep its list header these name no viewer's scheme or
    // port (`UNKEPT_CLAIMS`).
    let unkept = resolution.warnings.contains(Warnings::XFF_NOT_KEPT);
    let claim = |name: &FieldName| match unkept && UNKEPT_CLAIMS.contains(name) {
        true => None,
        false => pick(headers, name, hops),
    };
    Origin {
        proto: claim(&names::X_FORWARDED_PROTO).and_then(Scheme::parse),
        host: pick(headers, &names::X_FORWARDED_HOST, hops).and_then(host),
        port: claim(&names::X_FORWARDED_PORT).and_then(|p| parse_port(trim(p)).ok()),
        prefix: pick(headers, &names::X_FORWARDED_PREFIX, hops).and_then(prefix),
    }
}

fn from_forwarded<H: Headers + ?Sized>(headers: &H, from_right: u16) -> Origin {
    let lines = Lines::read(headers, &names::FORWARDED);
    let element =
        forwarded::Rev::new(lines.as_slice()).nth(usize::from(from_right).saturating_sub(1));
    let Some(Ok(element)) = element else {
        return Origin::default();
    };
    let host = element.host.and_then(|v| host(&v.unescaped()));
    Origin {
        proto: element.proto.and_then(|v| Scheme::parse(v.raw)),
        port: host.as_deref().and_then(port_of_host),
        host,
        prefix: None,
    }
}

/// The value written by the outermost trusted hop, per the rule in the module docs.
fn pick<'a, H: Headers + ?Sized>(headers: &'a H, name: &FieldName, hops: u16) -> Option<&'a [u8]> {
    // Filled in place, not returned by `Lines::read`: see `Lines::fill`.
    let mut lines = Lines::new();
    lines.fill(headers, name);
    let mut values = lines
        .as_slice()
        .iter()
        .rev()
        .flat_map(|line| line.rsplit(|&b| b == b','))
        .filter(|v| !trim(v).is_empty());
    let mut chosen = None;
    for _ in 0..hops {
        match values.next() {
            Some(v) => chosen = Some(v),
            None => break,
        }
    }
    if lines.truncated && values.next().is_none() {
        return None;
    }
    chosen.map(trim)
}

fn host(text: &[u8]) -> Option<String> {
    let text = trim(text);
    is_host(text).then(|| String::from_utf8_lossy(text).into_owned())
}

/// Whether `text` is a `host[:port]`: an HTTP authority without userinfo (RFC 3986 §3.2),
/// narrowed to what hosts are in practice. The host is a name of ASCII letters, digits,
/// `-`, `.` and `_` (an IPv4 address is such a name), or an IPv6 address in brackets; the
/// port, when there is one, is 1 to 5 digits no larger than 65535. At most 255 bytes.
///
/// RFC 3986 also lets a reg-name hold sub-delims (`!$&'()*+,;=`) and percent-escapes.
/// No DNS name does, and `,` `;` `=` are exactly where `Forwarded` parsers split:
/// `host="a, for=6.6.6.6"` is correctly quoted, yet an app that splits on commas reads
/// `for=6.6.6.6`. A host holding them is refused, not quoted.
pub fn is_host(text: &[u8]) -> bool {
    if text.is_empty() || text.len() > 255 {
        return false;
    }
    let (name_ok, port) = match text {
        [b'[', rest @ ..] => {
            let Some(close) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let (inside, after) = rest.split_at(close);
            let v6 =
                std::str::from_utf8(inside).is_ok_and(|t| t.parse::<std::net::Ipv6Addr>().is_ok());
            match after {
                [b']'] => (v6, None),
                [b']', b':', port @ ..] => (v6, Some(port)),
                _ => return false,
            }
        }
        _ => {
            let (name, port) = match text.iter().rposition(|&b| b == b':') {
                Some(i) => {
                    (text.get(..i).unwrap_or_default(), Some(text.get(i + 1..).unwrap_or_default()))
                }
                None => (text, None),
            };
            let ok = !name.is_empty() && name.iter().all(|&b| host_name_byte(b));
            (ok, port)
        }
    };
    name_ok && port.is_none_or(|p| parse_port(p).is_ok())
}

/// Whether a byte may be in a host name: `[A-Za-z0-9._-]`.
#[inline(always)]
#[allow(clippy::indexing_slicing, reason = "a u8 always indexes a 256-entry table")]
const fn host_name_byte(b: u8) -> bool {
    HOST_NAME_BYTES[b as usize]
}

/// [`host_name_byte`] for every byte value, built at compile time: a `Host` is checked on
/// every proxied request, and one load per byte is cheaper than the comparisons.
#[allow(clippy::indexing_slicing, reason = "b < 256 by the loop condition")]
const HOST_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
        b += 1;
    }
    table
};

fn port_of_host(host: &str) -> Option<u16> {
    let (_, port) = host.rsplit_once(':')?;
    if host.ends_with(']') {
        return None;
    }
    parse_port(port.as_bytes()).ok()
}

fn prefix(text: &[u8]) -> Option<String> {
    let text = trim(text);
    is_prefix(text).then(|| String::from_utf8_lossy(text).into_owned())
}

/// Whether `text` is a path prefix an app may put in front of its own URLs: `/` and
/// segments of RFC 3986 path characters, at most 1024 bytes. Refused, because an app turns
/// a prefix into links and redirects: `//` anywhere (`//evil.example` is a URL of another
/// site), `\` (browsers read `/\evil.example` as `//evil.example`), `.` and `..` segments,
/// `%` (an escaped slash or dot), and `?` and `#` (a query or fragment, not a path).
pub fn is_prefix(text: &[u8]) -> bool {
    const PATH: &[u8] = b"-._~!$&'()*+,;=:@/";
    text.first() == Some(&b'/')
        && text.len() <= 1024
        && text.iter().all(|&b| b.is_ascii_alphanumeric() || PATH.contains(&b))
        && !text.windows(2).any(|pair| pair == b"//")
        && text.split(|&b| b == b'/').all(|segment| segment != b"." && segment != b"..")
}

#[cfg(test)]
mod tests {
    use super::{is_host, is_prefix};

    #[test]
    fn prefixes_are_paths_that_stay_on_the_site() {
        for good in ["/", "/api", "/api/", "/a-b/c_d/~e", "/shop;v=1", "/a.b/c..d"] {
            assert!(is_prefix(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "api",
            "//evil.example",
            "/a//b",
            "/\\evil.example",
            "/a/../b",
            "/..",
            "/./a",
            "/%2e%2e",
            "/%2F%2Fevil",
            "/a?b=1",
            "/a#b",
            "/a b",
            "/\u{e9}",
        ] {
            assert!(!is_prefix(bad.as_bytes()), "{bad}");
        }
        assert!(!is_prefix(format!("/{}", "a".repeat(1024)).as_bytes()));
    }

    #[test]
    fn hosts_are_host_and_port_only() {
        for good in [
            "a",
            "app.example",
            "app.example.",
            "app.example:8443",
            "under_score.example",
            "127.0.0.1",
            "127.0.0.1:80",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "[::ffff:10.0.0.1]:1",
            "a:65535",
        ] {
            assert!(is_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "a, for=6.6.6.6",
            "a,for=6.6.6.6",
            "a;for=6.6.6.6",
            "for=6.6.6.6",
            "\"a\"",
            "a b",
            "user@a",
            "a/b",
            "a%2C",
            "a:",
            "a:65536",
            "a:8o",
            "a:1:2",
            ":80",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "[a.example]",
            "2001:db8::1",
        ] {
            assert!(!is_host(bad.as_bytes()), "{bad}");
        }
        assert!(!is_host("a".repeat(256).as_bytes()));
    }

    #[test]
    fn host_names_are_letters_digits_dots_dashes_and_underscores() {
        for b in 0..=u8::MAX {
            let name_byte = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            assert_eq!(is_host(&[b]), name_byte, "byte {b}");
            assert_eq!(is_host(&[b'a', b, b'z', b':', b'1']), name_byte, "byte {b}");
        }
    }
}
