//! Query arguments and cookies as client-address carriers (`query:NAME`, `cookie:NAME`).
//!
//! An API gateway in front of the app sometimes hands the client address over in a query
//! argument or a cookie rather than a header (APISIX's real-ip plugin reads `arg_*` and
//! `cookie_*`). These readers find every occurrence of one name, without allocating, so
//! that the strategy can refuse several (which one did the gateway set?) as it refuses
//! several lines of one header. [`strip_query`] and [`strip_cookie`] remove the name
//! again, so that `trueip serve` can keep the app from reading it.

use std::fmt;

use crate::error::ConfigError;

/// The longest query argument or cookie name a strategy may read.
pub const MAX_PARAM_NAME: usize = 64;

/// The longest value, after percent-decoding, that can hold an address: an IPv6 address
/// with a zone and a port in brackets is under 64 bytes. Longer values are malformed.
pub const MAX_PARAM_VALUE: usize = 64;

/// The name of a query argument or a cookie: 1 to [`MAX_PARAM_NAME`] of the characters a
/// URL never escapes (`A-Z a-z 0-9 - . _ ~`), compared case-sensitively, as applications
/// compare them. Both are RFC 9110 tokens, so a cookie name is one too; `%`, `+`, `=`,
/// `&` and `;` are out, since each would mean something else in a query or a cookie.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ParamName(Box<str>);

impl ParamName {
    /// Validates a configured name.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        let bad = name
            .bytes()
            .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')));
        let fault = match (name.len(), bad) {
            (0, _) => Some("the name is empty".to_owned()),
            (n, _) if n > MAX_PARAM_NAME => {
                Some(format!("the name is longer than {MAX_PARAM_NAME} bytes"))
            }
            (_, Some(b)) if b.is_ascii_graphic() || b == b' ' => {
                Some(format!("'{}' is not allowed in the name", char::from(b)))
            }
            (_, Some(b)) => Some(format!("the byte {b:#04x} is not allowed in the name")),
            _ => None,
        };
        match fault {
            Some(fault) => Err(ConfigError::new(format!(
                "invalid query argument or cookie name \"{name}\": {fault}"
            ))
            .hint("a name is letters, digits and -._~ as sent, e.g. \"client_ip\"")),
            None => Ok(ParamName(name.into())),
        }
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ParamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ParamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Calls `f` with the raw (still percent-encoded) value of every argument of `query`
/// (the part of the request target after `?`, without it) whose name, percent-decoded,
/// is `name`. The name is compared decoded because the app's framework decodes it: an
/// argument spelled `cl%69ent` is `client` to the app, and so it is here.
///
/// An argument without `=` has the empty value. Only `&` separates arguments (the `;` of
/// old HTML forms is not one, as in current browsers and frameworks).
pub fn query_values<'a>(query: &'a [u8], name: &ParamName, mut f: impl FnMut(&'a [u8])) {
    for pair in query.split(|&b| b == b'&') {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => {
                (pair.get(..eq).unwrap_or_default(), pair.get(eq + 1..).unwrap_or_default())
            }
            None => (pair, &[][..]),
        };
        if encoded_name_is(key, name) {
            f(value);
        }
    }
}

/// Whether `key`, a query argument's name as sent (still percent-encoded), is `name`, as
/// [`query_values`] compares them: decoded.
pub fn encoded_name_is(key: &[u8], name: &ParamName) -> bool {
    decoded_eq(key, name.as_str().as_bytes())
}

/// How the values a container yields for a query argument are written
/// ([`Headers::for_each_query_value`](crate::headers::Headers::for_each_query_value)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryForm {
    /// As sent: percent-encoded, decoded (strictly, [`percent_decode`]) before they are
    /// read. A request target's query string, an ALB event's arguments, an HTTP API
    /// payload 2.0 event's `rawQueryString`.
    Encoded,
    /// Decoded already, read as they are: an API Gateway REST API event's arguments
    /// (decoding them again would read `%2E` a client escaped twice as a dot the app
    /// never saw).
    Decoded,
}

/// Whether `raw`, percent-decoded (and `+` read as a space, as forms write it), is `want`.
/// A `%` not followed by two hex digits stands for itself.
fn decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    let mut want = want.iter();
    let mut rest = raw;
    loop {
        let (byte, next) = match rest {
            [] => return want.next().is_none(),
            [b'%', h, l, next @ ..] => match (hex(*h), hex(*l)) {
                (Some(h), Some(l)) => ((h << 4) | l, next),
                _ => (b'%', rest.get(1..).unwrap_or_default()),
            },
            [b'+', next @ ..] => (b' ', next),
            [b, next @ ..] => (*b, next),
        };
        if want.next() != Some(&byte) {
            return false;
        }
        rest = next;
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Why a query value could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than [`MAX_PARAM_VALUE`] decoded bytes.
    TooLong,
    /// A `%` not followed by two hex digits.
    BadEscape,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::TooLong => "too long to be an address",
            DecodeError::BadEscape => "a % not followed by two hex digits",
        })
    }
}

/// Percent-decodes a query value into `buf`, returning the decoded bytes. Strict, unlike
/// the name comparison: a value the app could read two ways is refused, not guessed.
pub fn percent_decode<'b>(
    raw: &[u8],
    buf: &'b mut [u8; MAX_PARAM_VALUE],
) -> Result<&'b [u8], DecodeError> {
    let mut len = 0;
    let mut rest = raw;
    loop {
        let (byte, next) = match rest {
            [] => break,
            [b'%', h, l, next @ ..] => match (hex(*h), hex(*l)) {
                (Some(h), Some(l)) => ((h << 4) | l, next),
                _ => return Err(DecodeError::BadEscape),
            },
            [b'%', ..] => return Err(DecodeError::BadEscape),
            [b'+', next @ ..] => (b' ', next),
            [b, next @ ..] => (*b, next),
        };
        *buf.get_mut(len).ok_or(DecodeError::TooLong)? = byte;
        len += 1;
        rest = next;
    }
    Ok(buf.get(..len).unwrap_or_default())
}

/// Calls `f` with the value of every cookie named `name` in one `Cookie` header line
/// (`a=1; b=2`), without the double quotes RFC 6265 allows around a value. Names are
/// compared exactly: cookies are not percent-encoded by the protocol. HTTP/2 may split
/// one `Cookie` header into several lines (RFC 9113 §8.2.3): the caller reads them all,
/// and a name found on two lines is found twice.
pub fn cookie_values<'a>(line: &'a [u8], name: &ParamName, mut f: impl FnMut(&'a [u8])) {
    for pair in line.split(|&b| b == b';') {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        let key = crate::addr::trim(pair.get(..eq).unwrap_or_default());
        if key == name.as_str().as_bytes() {
            let value = crate::addr::trim(pair.get(eq + 1..).unwrap_or_default());
            f(match value {
                [b'"', inner @ .., b'"'] => inner,
                value => value,
            });
        }
    }
}

/// `query` without the arguments named `name` (compared as [`query_values`] compares),
/// or `None` when it has none. The other arguments keep their order and their bytes; an
/// empty result means the request target should lose its `?` too.
pub fn strip_query(query: &str, name: &ParamName) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(query.len());
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        if decoded_eq(key.as_bytes(), name.as_str().as_bytes()) {
            found = true;
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(pair);
    }
    found.then_some(out)
}

/// One `Cookie` header line without the cookies named `name`, or `None` when it has none.
/// The other cookies keep their order and bytes, joined by `; `; an empty result means the
/// line should go.
pub fn strip_cookie(line: &[u8], name: &ParamName) -> Option<Vec<u8>> {
    let mut found = false;
    let mut out = Vec::with_capacity(line.len());
    for pair in line.split(|&b| b == b';') {
        let kept = crate::addr::trim(pair);
        let key = kept
            .iter()
            .position(|&b| b == b'=')
            .and_then(|eq| kept.get(..eq))
            .map(crate::addr::trim);
        if key == Some(name.as_str().as_bytes()) {
            found = true;
            continue;
        }
        if kept.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(kept);
    }
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ParamName {
        ParamName::new(s).unwrap()
    }

    fn query(q: &str, n: &str) -> Vec<String> {
        let mut out = Vec::new();
        query_values(q.as_bytes(), &name(n), |v| out.push(String::from_utf8_lossy(v).into_owned()));
        out
    }

    fn cookie(line: &str, n: &str) -> Vec<String> {
        let mut out = Vec::new();
        cookie_values(line.as_bytes(), &name(n), |v| {
            out.push(String::from_utf8_lossy(v).into_owned())
        });
        out
    }

    #[test]
    fn names_are_url_safe_tokens() {
        for good in ["client", "client_ip", "X-Real-IP", "a.b~c", "0"] {
            assert_eq!(name(good).as_str(), good);
        }
        for (bad, why) in [
            ("", "empty"),
            ("a b", "' '"),
            ("a=b", "'='"),
            ("a&b", "'&'"),
            ("a%20", "'%'"),
            ("a+b", "'+'"),
            ("caf\u{e9}", "0xc3"),
        ] {
            let err = ParamName::new(bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("hint"), "{bad:?}: {err}");
        }
        assert!(ParamName::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn query_arguments_are_found_by_their_decoded_name() {
        assert_eq!(query("client=1.2.3.4", "client"), ["1.2.3.4"]);
        assert_eq!(query("a=1&client=1.2.3.4&b", "client"), ["1.2.3.4"]);
        assert_eq!(query("client=1&client=2", "client"), ["1", "2"]);
        assert_eq!(query("cl%69ent=6.6.6.6&client=1", "client"), ["6.6.6.6", "1"]);
        assert_eq!(query("client", "client"), [""]);
        assert_eq!(query("Client=1&clients=2&xclient=3", "client"), [] as [&str; 0]);
        assert_eq!(query("client%=1&%zz=2", "client"), [] as [&str; 0]);
        assert_eq!(query("", "client"), [] as [&str; 0]);
    }

    #[test]
    fn query_values_decode_strictly_and_bounded() {
        let mut buf = [0; MAX_PARAM_VALUE];
        assert_eq!(
            percent_decode(b"%5B2001%3Adb8%3A%3A1%5D%3A443", &mut buf),
            Ok(&b"[2001:db8::1]:443"[..])
        );
        assert_eq!(percent_decode(b"1.2.3.4%", &mut buf), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode(b"1.2.3.4%2", &mut buf), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode(b"%zz1.2.3.4", &mut buf), Err(DecodeError::BadEscape));
        assert_eq!(percent_decode(&[b'1'; 64], &mut buf).map(<[u8]>::len), Ok(64));
        assert_eq!(percent_decode(&[b'1'; 65], &mut buf), Err(DecodeError::TooLong));
        assert_eq!(
            percent_decode("%31".repeat(65).as_bytes(), &mut buf),
            Err(DecodeError::TooLong)
        );
    }

    #[test]
    fn cookies_are_found_exactly_and_unquoted() {
        assert_eq!(cookie("client=1.2.3.4", "client"), ["1.2.3.4"]);
        assert_eq!(cookie("a=1; client=\"1.2.3.4\" ;b=2", "client"), ["1.2.3.4"]);
        assert_eq!(cookie("client=1;client=2", "client"), ["1", "2"]);
        assert_eq!(cookie("Client=1; clients=2; cl%69ent=3; client", "client"), [] as [&str; 0]);
        assert_eq!(cookie("", "client"), [] as [&str; 0]);
    }

    #[test]
    fn stripping_keeps_everything_else() {
        let n = name("client");
        assert_eq!(strip_query("client=1", &n).as_deref(), Some(""));
        assert_eq!(
            strip_query("a=1&client=1&b=%20&cl%69ent=2&c", &n).as_deref(),
            Some("a=1&b=%20&c")
        );
        assert_eq!(strip_query("a=1&clients=2", &n), None);
        assert_eq!(strip_cookie(b"client=1", &n).as_deref(), Some(&b""[..]));
        assert_eq!(
            strip_cookie(b"a=1;client=2;  b=\"x\" ; client=3", &n).as_deref(),
            Some(&b"a=1; b=\"x\""[..])
        );
        assert_eq!(strip_cookie(b"a=1; clients=2", &n), None);
    }
}
