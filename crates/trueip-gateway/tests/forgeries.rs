//! The record of forgeries (`[admin] forgeries`, `/forgeries` on the admin listener),
//! observed from outside on the real binary: each kind of forgery is kept with the rule
//! that caught it, clean requests are not, the bound holds, client text is escaped and
//! cut, the record is on the admin listener only, and several client threads at once
//! leave a bounded, exact count.
//!
//! Clients connect from 127.0.0.1 (a trusted relay here) or, bound first, from
//! 127.0.0.3 (untrusted); Linux routes all of 127/8 to `lo`.

mod common;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use common::*;
use serde_json::Value;

const SECRET_HEADER: &str = "X-Origin-Verify";
const SECRET: &str = "s3cret-of-the-cdn";
const UNTRUSTED: &str = "127.0.0.3";

/// The policy: 127.0.0.1 is a trusted relay (with the origin secret); `X-Client-IP`
/// counts only as written by 127.0.0.5; `X-Real-IP`, then `X-Forwarded-For` from the
/// right; PROXY headers only from 127.0.0.2.
fn config(admin: SocketAddr, listen: SocketAddr, pp: SocketAddr, up: &str, kept: usize) -> String {
    format!(
        r#"
[client_ip]
trusted = ["127.0.0.1"]
strategy = [{{ name = "header:x-client-ip", trusted = ["127.0.0.5"] }}, "header:x-real-ip", "rightmost-untrusted"]
proxy_protocol_from = ["127.0.0.2"]
origin_secret = {{ header = "{SECRET_HEADER}", value = "{SECRET}" }}

[[listen]]
address = "{listen}"

[[listen]]
address = "{pp}"
proxy_protocol = "v1"

[upstream]
url = "{up}"

[admin]
listen = "{admin}"
forgeries = {kept}

[log]
format = "json"
access_log = true
"#
    )
}

struct Setup {
    gw: Gateway,
    admin: SocketAddr,
    public: SocketAddr,
    pp: SocketAddr,
    _up: Upstream,
}

fn start(name: &str, kept: usize) -> Setup {
    start_with(name, kept, "")
}

/// [`start`], with `more` (whole TOML tables) after the policy's.
fn start_with(name: &str, kept: usize, more: &str) -> Setup {
    let dir = test_dir(&format!("forgeries/{name}"));
    let up = Upstream::start(Behavior::Echo);
    let (admin, public, pp) = (free_addr(), free_addr(), free_addr());
    let toml = config(admin, public, pp, &up.url(), kept) + more;
    // Not `pp`: a probe from 127.0.0.1 would be a refused PROXY sender, and kept.
    let gw = Gateway::start_with_config(&dir, &toml, &[public, admin], &[]);
    Setup { gw, admin, public, pp, _up: up }
}

/// Sends raw request bytes from source address `src` (bound before connecting).
fn send_from(src: &str, addr: SocketAddr, bytes: &[u8]) -> Response {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let stream = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(src.parse().expect("source"), 0))?;
            let s = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr))
                .await
                .map_err(|_| std::io::Error::other("connect timed out"))??;
            s.into_std()
        })
        .expect("connect from the source address");
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    w.write_all(bytes).expect("write");
    read_response(&mut BufReader::new(stream), "GET").expect("response")
}

/// A request head with `lines`, from 127.0.0.1.
fn raw(path: &str, lines: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n").into_bytes();
    for (name, value) in lines {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

fn send(addr: SocketAddr, bytes: &[u8]) -> Response {
    let mut s = connect(addr).expect("connect");
    s.write_all(bytes).expect("write");
    read_response(&mut BufReader::new(s), "GET").expect("response")
}

/// `/forgeries` on the admin listener, as JSON.
fn record(admin: SocketAddr, query: &str) -> Value {
    let resp = Req::get(&format!("/forgeries{query}")).must_send(admin);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    // Client text inside: no browser may sniff it as a page of the admin origin.
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("{e}: {}", resp.text()))
}

fn entries(v: &Value) -> Vec<Value> {
    v["entries"].as_array().cloned().unwrap_or_default()
}

fn entry_for(v: &Value, path: &str) -> Option<Value> {
    entries(v).into_iter().find(|e| e["path"] == path)
}

fn rules(e: &Value) -> Vec<String> {
    e["rules"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

const SECRET_LINE: (&str, &[u8]) = (SECRET_HEADER, SECRET.as_bytes());

#[test]
fn each_forgery_is_kept_with_the_rule_that_caught_it_and_clean_requests_are_not() {
    let s = start("kinds", 100);
    let ok = |r: Response| assert_eq!(r.status, 200, "{}", r.text());

    // Clean: an untrusted client that writes no address; the relay with a clean record.
    ok(send_from(UNTRUSTED, s.public, &raw("/clean-direct", &[])));
    ok(send(s.public, &raw("/clean-relayed", &[SECRET_LINE, ("X-Forwarded-For", b"203.0.113.5")])));
    // Through the lean path and through hyper (a body makes it hyper's).
    ok(send(
        s.public,
        b"POST /clean-hyper HTTP/1.1\r\nHost: app.test\r\nX-Origin-Verify: s3cret-of-the-cdn\r\nX-Forwarded-For: 203.0.113.5\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    ));

    let cases: [(&str, Vec<u8>, Option<&str>, &str); 6] = [
        (
            "/spoof",
            raw("/spoof", &[SECRET_LINE, ("X-Forwarded-For", b"6.6.6.6, 203.0.113.5")]),
            None,
            "spoof_attempt",
        ),
        (
            "/untrusted",
            raw("/untrusted", &[("X-Forwarded-For", b"6.6.6.7"), ("X-Real-IP", b"6.6.6.8")]),
            Some(UNTRUSTED),
            "header_from_untrusted_peer",
        ),
        (
            "/unvouched",
            raw(
                "/unvouched",
                &[SECRET_LINE, ("X-Client-IP", b"6.6.6.9"), ("X-Forwarded-For", b"203.0.113.6")],
            ),
            None,
            "header_writer_not_trusted",
        ),
        (
            "/no-secret",
            raw(
                "/no-secret",
                &[(SECRET_HEADER, b"a-guess-at-the-secret"), ("X-Forwarded-For", b"6.6.6.10")],
            ),
            None,
            "origin_secret_mismatch",
        ),
        (
            "/duplicate",
            raw(
                "/duplicate",
                &[SECRET_LINE, ("X-Real-IP", b"6.6.6.11"), ("X-Real-IP", b"203.0.113.7")],
            ),
            None,
            "duplicate_header",
        ),
        (
            "/underscore",
            raw("/underscore", &[SECRET_LINE, ("X_Forwarded_For", b"6.6.6.12")]),
            None,
            "stripped_header",
        ),
    ];
    for (path, bytes, from, _) in &cases {
        let resp = match from {
            Some(src) => send_from(src, s.public, bytes),
            None => send(s.public, bytes),
        };
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }
    // A PROXY header from a peer not in proxy_protocol_from: refused, and kept.
    let refused = exchange(s.pp, &proxy_v1("198.51.100.1:1000".parse().unwrap(), s.pp), IO_TIMEOUT);
    assert!(!refused.bytes().starts_with(b"HTTP/1.1 200"), "{refused:?}");

    let v = record(s.admin, "");
    for path in ["/clean-direct", "/clean-relayed", "/clean-hyper"] {
        assert!(entry_for(&v, path).is_none(), "{path} is clean: {v:#}");
    }
    for (path, _, from, rule) in &cases {
        let e = entry_for(&v, path).unwrap_or_else(|| panic!("{path} not kept: {v:#}"));
        assert!(rules(&e).iter().any(|r| r == rule), "{path}: {rule}: {e:#}");
        let peer: SocketAddr = e["peer"].as_str().unwrap().parse().unwrap();
        assert_eq!(peer.ip().to_string(), from.unwrap_or(CLIENT_IP), "{e:#}");
        assert_eq!(e["method"], "GET");
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e:#}");
        // The forged value is kept, and no line carries the origin secret's value.
        let lines = e["headers"].as_array().unwrap();
        assert!(
            lines.iter().any(|l| l["value"].as_str().is_some_and(|x| x.contains("6.6.6."))),
            "{path}: the forged value: {e:#}"
        );
        let text = e.to_string();
        assert!(!text.contains(SECRET) && !text.contains("a-guess-at-the-secret"), "{e:#}");
    }
    // Stripped lines say so; an untrusted peer's are all stripped.
    let untrusted = entry_for(&v, "/untrusted").unwrap();
    assert!(rules(&untrusted).contains(&"stripped_header".to_owned()));
    assert!(
        untrusted["headers"].as_array().unwrap().iter().all(|l| l["stripped"] == true),
        "{untrusted:#}"
    );
    let spoof = entry_for(&v, "/spoof").unwrap();
    assert_eq!(spoof["client"], "203.0.113.5");
    assert!(!rules(&spoof).contains(&"stripped_header".to_owned()));

    let pp = entries(&v)
        .into_iter()
        .find(|e| rules(e).contains(&"proxy_protocol_from_untrusted_peer".to_owned()))
        .unwrap_or_else(|| panic!("the refused PROXY connection: {v:#}"));
    assert_eq!(pp["listener"], 1, "{pp:#}");
    assert!(pp["path"].is_null(), "refused before any request: {pp:#}");

    // Newest first: the PROXY connection came last.
    assert_eq!(entries(&v).first(), Some(&pp));
    assert_eq!(entries(&record(s.admin, "?limit=2")).len(), 2);
    assert_eq!(v["seen"], cases.len() + 1, "{v:#}");

    // The access log names the rule: warnings, and how many lines were stripped.
    let log_line = |path: &str| {
        let line = access_log_line(&s.gw, &format!("\"{path}\""));
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let spoof_log = log_line("/spoof");
    assert_eq!(spoof_log["warnings"], "spoof_attempt", "{spoof_log}");
    let under = log_line("/underscore");
    assert_eq!(under["stripped"], 1, "{under}");
    assert!(log_line("/clean-relayed").get("stripped").is_none());
}

#[test]
fn the_record_holds_at_most_n_and_keeps_the_newest() {
    let s = start("bound", 5);
    for i in 0..12 {
        let path = format!("/bound-{i}");
        let resp = send(
            s.public,
            &raw(&path, &[SECRET_LINE, ("X-Forwarded-For", b"6.6.6.6, 203.0.113.5")]),
        );
        assert_eq!(resp.status, 200);
    }
    let v = record(s.admin, "");
    let paths: Vec<_> =
        entries(&v).iter().map(|e| e["path"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(paths, ["/bound-11", "/bound-10", "/bound-9", "/bound-8", "/bound-7"]);
    assert_eq!((v["kept"].as_u64(), v["seen"].as_u64()), (Some(5), Some(12)));
    // A bad limit is a clear 400, the client's text escaped.
    for q in ["?limit=0", "?limit=ten", "?limit=99999", "?lim%1b=1"] {
        let resp = Req::get(&format!("/forgeries{q}")).must_send(s.admin);
        assert_eq!(resp.status, 400, "{q}: {}", resp.text());
        assert!(resp.text().contains("limit"), "{q}: {}", resp.text());
    }
}

#[test]
fn client_text_is_escaped_and_cut() {
    let s = start("escaped", 10);
    let hostile = b"6.6.6.6\t\\\x80\xff end".to_vec();
    let big = vec![b'9'; 10 * 1024];
    let resp = send_from(
        UNTRUSTED,
        s.public,
        &raw("/esc%1b%5b31m", &[("X-Forwarded-For", &hostile), ("X-Real-IP", &big)]),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    // A raw ESC in a header value never reaches the record: the gateway refuses it.
    let refused =
        send_from(UNTRUSTED, s.public, &raw("/esc-raw", &[("X-Forwarded-For", b"6.6.6.6\x1b[2J")]));
    assert_eq!(refused.status, 400, "{}", refused.text());

    let resp = Req::get("/forgeries").must_send(s.admin);
    assert!(
        !resp.body.iter().any(|&b| b.is_ascii_control() && b != b'\n')
            && !resp.body.iter().any(|&b| b >= 0x80),
        "only printable ASCII in the record: {}",
        resp.text()
    );
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(entry_for(&v, "/esc-raw").is_none());
    let e = entries(&v)
        .into_iter()
        .find(|e| e["path"].as_str().is_some_and(|p| p.starts_with("/esc%")))
        .unwrap_or_else(|| panic!("{v:#}"));
    let line = |name: &str| {
        e["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {e:#}"))
    };
    let xff = line("x-forwarded-for");
    assert_eq!(
        xff["value"], "6.6.6.6\\x09\\\\\\x80\\xff end",
        "tab, backslash and obs-text escaped: {xff:#}"
    );
    let real = line("x-real-ip");
    assert_eq!(real["bytes"], 10 * 1024);
    assert_eq!(real["truncated"], true);
    assert_eq!(real["value"].as_str().map(str::len), Some(256), "{real:#}");
}

#[test]
fn the_record_is_served_on_the_admin_listener_only() {
    let s = start("admin_only", 10);
    let forged =
        raw("/marker-request", &[SECRET_LINE, ("X-Forwarded-For", b"6.6.6.42, 203.0.113.5")]);
    assert_eq!(send(s.public, &forged).status, 200);
    for path in ["/.trueip/forgeries", "/forgeries"] {
        let v = record(s.admin, "").clone();
        assert!(entry_for(&v, "/marker-request").is_some(), "{v:#}");
        let resp = Req::get(path).must_send(s.admin);
        assert_eq!(resp.status, 200, "{path} on the admin listener");
        // On the public listener the path is the app's: the upstream answers it.
        let public = Req::get(path).must_send(s.public);
        assert!(
            !public.text().contains("6.6.6.42") && !public.text().contains("\"entries\""),
            "{path} on the public listener: {}",
            public.text()
        );
    }
    for path in ["/healthz", "/metrics", "/forgeries?limit=x"] {
        let resp = Req::get(path).must_send(s.admin);
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    // The in-band metrics stay where they were; the record does not join them.
    assert_eq!(Req::get("/.trueip/metrics").must_send(s.public).status, 200);
}

#[test]
fn several_client_threads_leave_an_exact_count_and_a_bounded_record() {
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let s = start("concurrent", 7);
    let public = s.public;
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..EACH {
                    let path = format!("/t{t}-{i}");
                    let forged = i.is_multiple_of(2);
                    let xff: &[u8] = if forged { b"6.6.6.6, 203.0.113.5" } else { b"203.0.113.5" };
                    let resp = send(public, &raw(&path, &[SECRET_LINE, ("X-Forwarded-For", xff)]));
                    assert_eq!(resp.status, 200, "{path}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    let v = record(s.admin, "");
    let forged_each = EACH.div_ceil(2);
    assert_eq!(v["seen"], THREADS * forged_each, "{v:#}");
    let kept = entries(&v);
    assert_eq!(kept.len(), 7, "{v:#}");
    for e in &kept {
        let path = e["path"].as_str().unwrap();
        let i: usize = path.rsplit('-').next().unwrap().parse().unwrap();
        assert!(i.is_multiple_of(2), "only forged requests are kept: {path}");
        assert_eq!(rules(e), ["spoof_attempt"], "{e:#}");
    }
    let times: Vec<u64> = kept.iter().filter_map(|e| e["unix_ms"].as_u64()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
}

/// An entry built in the storage of one the record let go of (each worker keeps one to
/// reuse) carries nothing of it: not its lines, its count of lines left out, its rules,
/// its warnings, its path or any byte of its text. One worker, so every entry is built
/// in the storage of the one pushed out before it: large forgeries from an untrusted
/// peer, then a small one from the relay, the only entry left.
#[test]
fn an_entry_reusing_an_old_ones_storage_carries_nothing_of_it() {
    let s = start_with("reuse", 1, "\n[limits]\nworkers = 1\n");
    let long = vec![b'7'; 600];
    let mut lines: Vec<(&str, &[u8])> = vec![("X-Forwarded-For", b"6.6.6.66")];
    lines.extend(std::iter::repeat_n(("X-Real-IP", &long[..]), 12));
    for i in 0..3 {
        let path = format!("/large-{i}-{}", "p".repeat(200));
        let resp = send_from(UNTRUSTED, s.public, &raw(&path, &lines));
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let resp = send(s.public, &raw("/small", &[SECRET_LINE, ("X_Forwarded_For", b"6.6.6.1")]));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = record(s.admin, "");
    let all = entries(&v);
    assert_eq!(all.len(), 1, "{v:#}");
    let mut e = all[0].clone();
    // The clock and the relay's port are the run's, and may hold any digits (the old
    // value's 777 among them): their shape is checked, then the rest of the entry whole.
    let peer = e["peer"].take();
    assert!(peer.as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{peer}");
    assert!(e["unix_ms"].take().is_u64(), "{e:#}");
    assert!(e["time"].take().is_string(), "{e:#}");
    // Hyper's path (which takes underscore spellings) writes names in lower case.
    let expected = serde_json::json!({
        "time": null,
        "unix_ms": null,
        "peer": null,
        "proxy_source": null,
        "listener": 0,
        "client": "127.0.0.1",
        "rules": ["stripped_header"],
        "warnings": [],
        "method": "GET",
        "path": "/small",
        "headers": [{
            "name": "x_forwarded_for",
            "value": "6.6.6.1",
            "bytes": 7,
            "truncated": false,
            "stripped": true,
        }],
        "headers_omitted": 0,
    });
    assert_eq!(e, expected, "{v:#}\n{}", s.gw.proc.log());
}

/// A flood of forgeries (an attack sends one with every request) builds at most 128
/// entries a second in a worker, and `seen` counts every one. Before, each built its
/// entry and took the record's lock: 400 forgeries in under three seconds left 400.
#[test]
fn a_flood_keeps_its_share_of_entries_a_second_and_counts_every_forgery() {
    const FLOOD: usize = 400;
    let s = start_with("flood", 1000, "\n[limits]\nworkers = 1\n");
    let conn = connect(s.public).expect("connect");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut w = conn;
    let began = Instant::now();
    for i in 0..FLOOD {
        let req = format!(
            "GET /flood-{i} HTTP/1.1\r\nHost: app.test\r\n{SECRET_HEADER}: {SECRET}\r\n\
             X-Forwarded-For: 6.6.6.6, 203.0.113.5\r\n\r\n"
        );
        w.write_all(req.as_bytes()).expect("write");
        let resp = read_response(&mut reader, "GET").expect("response");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let took = began.elapsed();
    let v = record(s.admin, "?limit=1000");
    assert_eq!(v["seen"], FLOOD, "{v:#}");
    let kept = entries(&v).len();
    // One worker: its seconds begin at admitted requests, so the flood spans at most
    // this many of them.
    let seconds = usize::try_from(took.as_secs()).unwrap_or(usize::MAX) + 1;
    assert!(
        (128..=128 * seconds).contains(&kept),
        "{kept} entries kept of {FLOOD} forgeries sent in {took:?}"
    );
}
