//! One rule for header lines: `trueip::headers::parse_header_line` (what `trueip explain` and the
//! config use) accepts exactly the lines `trueip serve` accepts on the wire, and reads the same
//! name and value from them. Otherwise explain could answer for a line serve never lets through
//! (`X-Forwarded-For : 6.6.6.6`), and a reviewer would have two rules to check.

mod common;

use std::time::Duration;

use common::*;
use trueip::headers::parse_header_line;

/// What the gateway's HTTP/1.1 parser reads from `line` as the only header of a request:
/// `Some((name, value))`, or `None` when it refuses the request or does not read exactly that
/// one line as one header (a CR LF inside makes two).
fn wire(line: &str) -> Option<(String, Vec<u8>)> {
    let request = format!("GET / HTTP/1.1\r\n{line}\r\n\r\n");
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(request.as_bytes()) {
        Ok(httparse::Status::Complete(n)) if n == request.len() => match req.headers {
            [one] => Some((one.name.to_ascii_lowercase(), one.value.to_vec())),
            _ => None,
        },
        _ => None,
    }
}

/// Every ASCII byte and a two-byte UTF-8 character, at every place in a line that a rule
/// treats differently: first, inside the name, before and after the colon, inside the value,
/// at its end; and a few whole lines.
fn lines() -> Vec<String> {
    let mut inserts: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
    inserts.extend(
        ["\u{e9}", "\r\n", "\r\n ", "\r\nX-Real-IP: 6.6.6.6", "  ", "\t\t"].map(String::from),
    );
    let mut lines = Vec::new();
    for insert in &inserts {
        for (before, after) in [
            ("", "X-Forwarded-For: 6.6.6.6"),
            ("X-For", "warded-For: 6.6.6.6"),
            ("X-Forwarded-For", ": 6.6.6.6"),
            ("X-Forwarded-For:", "6.6.6.6"),
            ("X-Forwarded-For: 6.6", ".6.6"),
            ("X-Forwarded-For: 6.6.6.6", ""),
        ] {
            lines.push(format!("{before}{insert}{after}"));
        }
    }
    lines.extend(
        ["", ":", ": v", "a:", "a: ", "a:  \t ", "X-A: caf\u{e9} \u{1F600}"].map(String::from),
    );
    lines
}

#[test]
fn parse_header_line_agrees_with_the_wire_parser_byte_by_byte() {
    let mut checked = 0;
    for line in lines() {
        let ours = parse_header_line(&line)
            .ok()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()));
        assert_eq!(ours, wire(&line), "{line:?}");
        // The HTTP/2 path builds `http` header names and values: whatever the rule accepts,
        // those accept too.
        if let Some((name, value)) = ours {
            assert!(http::HeaderName::from_bytes(name.as_bytes()).is_ok(), "{line:?}");
            assert!(http::HeaderValue::from_bytes(&value).is_ok(), "{line:?}");
        }
        checked += 1;
    }
    assert!(checked > 700, "{checked} lines");
}

/// The premise, end to end: the lines `trueip explain` now refuses are the ones the running
/// gateway answers 400 to, and a line it accepts is served.
#[test]
fn serve_answers_400_to_the_lines_explain_refuses() {
    let dir = test_dir("header_rule/serve");
    let gw = Gateway::start(&dir, free_addr(), &["--trust", "any"]);
    for (line, refused) in [
        ("X-Forwarded-For: 6.6.6.6", false),
        ("X-Forwarded-For : 6.6.6.6", true),
        ("X-Forwarded-For\t: 6.6.6.6", true),
        (" X-Forwarded-For: 6.6.6.6", true),
        ("\tX-Forwarded-For: 6.6.6.6", true),
        (": 6.6.6.6", true),
        ("X-Forwarded-For: 6.6.6.6\u{7f}", true),
        ("X-Forwarded-For: 6.6.6.6\0", true),
        ("X-Forwarded\\For: 6.6.6.6", true),
    ] {
        assert_eq!(parse_header_line(line).is_err(), refused, "{line:?}");
        let request = format!("GET / HTTP/1.1\r\nHost: a\r\n{line}\r\nConnection: close\r\n\r\n");
        let ending = exchange(gw.addr, request.as_bytes(), Duration::from_secs(5));
        let expected = if refused { 400 } else { 200 };
        assert_eq!(ending.status(), Some(expected), "{line:?}");
    }
}
