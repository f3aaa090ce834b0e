//! What the target believes: the address its answer shows, read from a JSON body, a response
//! header, a regular expression's first group, or the whole body; trueip's whoami page is
//! recognised by itself.

use std::fmt;
use std::net::IpAddr;

use super::client::Answer;

/// The longest answer kept: an address with a port and a zone fits many times over.
const MAX_ANSWER: usize = 256;
/// The longest `--read regex:` pattern accepted.
const MAX_PATTERN: usize = 1000;

/// `--read`: where the target's view of the client is.
#[derive(Clone, Debug)]
pub(crate) enum Reader {
    /// An RFC 6901 JSON pointer into a JSON body (`""` is the whole document).
    Json(String),
    /// The first line of a response header.
    Header(http::HeaderName),
    /// The first capture group of a pattern matched against the body.
    Regex(regex_lite::Regex),
    /// The whole body, trimmed.
    Body,
}

impl fmt::Display for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reader::Json(p) => write!(f, "json:{p}"),
            Reader::Header(h) => write!(f, "header:{h}"),
            Reader::Regex(r) => write!(f, "regex:{}", r.as_str()),
            Reader::Body => f.write_str("body"),
        }
    }
}

impl std::str::FromStr for Reader {
    type Err = String;

    fn from_str(spec: &str) -> Result<Reader, String> {
        let expected = "expected json:POINTER (e.g. json:/client_ip), header:NAME, regex:PATTERN \
                        (with one capture group) or body";
        if spec == "body" {
            return Ok(Reader::Body);
        }
        let (kind, arg) =
            spec.split_once(':').ok_or_else(|| format!("invalid --read {spec:?}: {expected}"))?;
        match kind {
            "json" => {
                if !(arg.is_empty() || arg.starts_with('/')) {
                    return Err(format!(
                        "invalid --read {spec:?}: a JSON pointer is empty or starts with `/` (RFC 6901), e.g. json:/{arg}"
                    ));
                }
                Ok(Reader::Json(arg.to_owned()))
            }
            "header" => http::HeaderName::from_bytes(arg.as_bytes())
                .map(Reader::Header)
                .map_err(|_| format!("invalid --read {spec:?}: {arg:?} is not a header name")),
            "regex" => {
                if arg.len() > MAX_PATTERN {
                    return Err(format!(
                        "invalid --read regex: longer than {MAX_PATTERN} characters"
                    ));
                }
                let re = regex_lite::RegexBuilder::new(arg)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("invalid --read {spec:?}: {e}"))?;
                if re.captures_len() < 2 {
                    return Err(format!(
                        "invalid --read {spec:?}: no capture group; put the address in parentheses, e.g. regex:'ip=([0-9a-fA-F.:]+)'"
                    ));
                }
                Ok(Reader::Regex(re))
            }
            _ => Err(format!("invalid --read {spec:?}: unknown kind {kind:?}; {expected}")),
        }
    }
}

impl Reader {
    /// The target's answer in `answer`, or why there is none.
    pub(crate) fn read(&self, answer: &Answer) -> Result<Seen, String> {
        let text = match self {
            Reader::Json(pointer) => {
                let doc: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|e| {
                    format!("the body is not JSON ({e}): {}", preview(&answer.body))
                })?;
                match doc.pointer(pointer) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    Some(other) => {
                        return Err(format!(
                            "the JSON at {pointer:?} is not a string: {}",
                            clip(&other.to_string())
                        ));
                    }
                    None => {
                        return Err(format!(
                            "the JSON body has nothing at {pointer:?}: {}",
                            preview(&answer.body)
                        ));
                    }
                }
            }
            Reader::Header(name) => {
                let value = answer
                    .headers
                    .get(name)
                    .ok_or_else(|| format!("the response has no {name} header"))?;
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            }
            Reader::Regex(re) => {
                let body = String::from_utf8_lossy(&answer.body);
                let caps = re.captures(&body).ok_or_else(|| {
                    format!("{} does not match the body: {}", re.as_str(), preview(&answer.body))
                })?;
                caps.get(1)
                    .ok_or_else(|| {
                        format!("{}: the first group took no part in the match", re.as_str())
                    })?
                    .as_str()
                    .to_owned()
            }
            Reader::Body => String::from_utf8_lossy(&answer.body).into_owned(),
        };
        Ok(Seen::new(&text))
    }
}

/// An answer: its text (trimmed, at most [`MAX_ANSWER`] bytes) and the address it denotes,
/// if any (ports, brackets and zones dropped, IPv4-mapped IPv6 as IPv4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) text: String,
    pub(crate) ip: Option<IpAddr>,
}

impl Seen {
    pub(crate) fn new(text: &str) -> Seen {
        let text = clip(text.trim());
        Seen { ip: address(&text), text }
    }

    /// Whether two answers name the same client.
    pub(crate) fn same(&self, other: &Seen) -> bool {
        match (self.ip, other.ip) {
            (Some(a), Some(b)) => a == b,
            _ => self.text == other.text,
        }
    }
}

impl fmt::Display for Seen {
    /// The target wrote this text: shown in terminal mode, so that no answer can move the
    /// cursor, clear the screen or retitle the terminal of whoever reads the report (a
    /// hostile target could otherwise redraw SPOOFABLE as CLEAN).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str("(empty)")
        } else {
            write!(f, "{}", trueip::shown::terminal(&self.text))
        }
    }
}

/// The address `text` writes, in the forms pages show: `ip`, `ip:port`, `[ip]:port`, `[ip]`,
/// `ip%zone`, `::ffff:a.b.c.d`.
pub(crate) fn address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    let ip = if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        sock.ip()
    } else {
        let bare = text.strip_prefix('[').map_or(text, |t| t.strip_suffix(']').unwrap_or(t));
        let bare = bare.split_once('%').map_or(bare, |(ip, _zone)| ip);
        bare.parse::<IpAddr>().ok()?
    };
    Some(ip.to_canonical())
}

/// Whether `answer` is trueip's whoami JSON (`trueip serve`'s built-in page): an object with
/// `client_ip`, `direct_ip` and the `steps` of the decision.
pub(crate) fn is_whoami(answer: &Answer) -> bool {
    match serde_json::from_slice::<serde_json::Value>(&answer.body) {
        Ok(serde_json::Value::Object(o)) => {
            o.get("client_ip").is_some_and(serde_json::Value::is_string)
                && o.get("direct_ip").is_some_and(serde_json::Value::is_string)
                && o.get("steps").is_some_and(serde_json::Value::is_array)
        }
        _ => false,
    }
}

/// The reader for a baseline answer when none was given: trueip's whoami, else a body that
/// is one address.
pub(crate) fn detect(answer: &Answer) -> Option<(Reader, &'static str)> {
    if is_whoami(answer) {
        return Some((Reader::Json("/client_ip".to_owned()), "trueip's whoami page, detected"));
    }
    let body = String::from_utf8_lossy(&answer.body);
    if body.len() <= MAX_ANSWER && address(&body).is_some() {
        return Some((Reader::Body, "the body is one address, detected"));
    }
    None
}

/// `s`, cut to at most [`MAX_ANSWER`] bytes at a character boundary.
fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_ANSWER);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// The start of a body, for error messages.
pub(crate) fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let short = clip(text.trim());
    let short: String = short.chars().take(120).collect();
    if short.is_empty() {
        "(empty body)".to_owned()
    } else {
        format!("\"{}\"", trueip::shown::terminal(&short))
    }
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    #[test]
    fn answers_cannot_drive_the_terminal() {
        let seen = Seen::new("\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31mEVIL\u{202e}\u{2028}\u{2067}");
        let shown = seen.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        for c in ['\u{202e}', '\u{2028}', '\u{2067}'] {
            assert!(!shown.contains(c), "{shown:?}");
        }
        assert!(shown.contains("EVIL") && shown.contains("\\u{1b}"), "{shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-seen-ip", http::HeaderValue::from_static("[2001:db8::1]:443"));
        Answer { status: http::StatusCode::OK, headers, body: bytes::Bytes::from(body.to_owned()) }
    }

    #[test]
    fn readers_find_the_address() {
        let a = answer(r#"{"client": {"ip": "203.0.113.9"}, "n": 5}"#);
        let r: Reader = "json:/client/ip".parse().unwrap();
        assert_eq!(r.read(&a).unwrap().ip, Some("203.0.113.9".parse().unwrap()));
        let r: Reader = "header:X-Seen-IP".parse().unwrap();
        assert_eq!(r.read(&a).unwrap().ip, Some("2001:db8::1".parse().unwrap()));
        let r: Reader = r#"regex:"ip": "([^"]+)""#.parse().unwrap();
        assert_eq!(r.read(&a).unwrap().text, "203.0.113.9");
        let r: Reader = "json:/n".parse().unwrap();
        assert_eq!(r.read(&a).unwrap().text, "5");
    }

    #[test]
    fn readers_say_why_there_is_no_answer() {
        let a = answer("<html>hello</html>");
        let err = "json:/ip".parse::<Reader>().unwrap().read(&a).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        let err = "json:/x".parse::<Reader>().unwrap().read(&answer("{}")).unwrap_err();
        assert!(err.contains("nothing at \"/x\""), "{err}");
        let err = "header:x-nope".parse::<Reader>().unwrap().read(&a).unwrap_err();
        assert!(err.contains("no x-nope header"), "{err}");
        let err = "regex:ip=(\\S+)".parse::<Reader>().unwrap().read(&a).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn bad_specs_are_refused_with_the_fix() {
        for (spec, says) in [
            ("xml:/a", "unknown kind"),
            ("json:client_ip", "starts with `/`"),
            ("regex:ip=\\S+", "no capture group"),
            ("regex:(", "invalid --read"),
            ("header:bad name", "not a header name"),
            ("client_ip", "expected json:POINTER"),
        ] {
            let err = spec.parse::<Reader>().unwrap_err();
            assert!(err.contains(says), "{spec}: {err}");
        }
    }

    #[test]
    fn answers_compare_as_addresses() {
        assert!(Seen::new("127.0.0.1:5555").same(&Seen::new(" 127.0.0.1\n")));
        assert!(Seen::new("::ffff:203.0.113.40").same(&Seen::new("203.0.113.40")));
        assert!(Seen::new("[2001:db8::42%eth0]").same(&Seen::new("2001:db8::42")));
        assert!(!Seen::new("unknown").same(&Seen::new("127.0.0.1")));
        assert_eq!(Seen::new(&"é".repeat(500)).text.len(), MAX_ANSWER);
    }
}
