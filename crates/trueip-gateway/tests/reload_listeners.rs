//! SIGHUP applies `[[listen]]` and `limits.max_connections` changes without dropping a
//! connection: a listener whose address stays keeps its socket and its connections, which
//! take on the listener's new settings (whatever its place in the file); a new address is
//! opened; a removed one stops accepting, and its connections finish the requests they
//! are serving, then close. A socket that cannot be opened rejects the whole reload.

mod common;

use std::fs;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Rewrites the config, sends SIGHUP and waits until the log says the reload was
/// applied (`ok`) or rejected (`!ok`). The log, not `/metrics`: asking opens a connection,
/// which a test of the connection limit cannot spare.
fn reload(gw: &Gateway, toml: &str, ok: bool) {
    let said = if ok { "SIGHUP: config reloaded" } else { "SIGHUP: config rejected" };
    let before = gw.proc.log().matches(said).count();
    fs::write(gw.dir.join("trueip.toml"), toml).expect("rewrite trueip.toml");
    gw.proc.signal("HUP");
    eventually(
        Duration::from_secs(10),
        || (gw.proc.log().matches(said).count() > before).then_some(()),
        || format!("no {said:?} in the log:\n{}", gw.proc.log()),
    );
}

/// The client one request on `stream` is decided as, and the policy that decided.
fn ask_on(stream: &mut TcpStream) -> (String, String) {
    stream
        .write_all(b"GET /json HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let json = read_response(&mut reader, "GET").expect("a response").json();
    (json.str_at("client_ip").to_string(), json.str_at("policy").to_string())
}

fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

#[test]
fn sighup_opens_moves_and_closes_listeners_without_dropping_connections() {
    let dir = test_dir("reload_listeners/listen");
    let (a, b) = (free_addr(), free_addr());
    let head = "[limits]\nworkers = 2\n";
    let gw = Gateway::start_with_config(
        &dir,
        &format!("{head}[[listen]]\naddress = \"{a}\"\n"),
        &[a],
        &[],
    );
    let mut kept = connect(a).expect("connect");
    assert_eq!(ask_on(&mut kept), (CLIENT_IP.into(), "client_ip".into()));

    // b is added in front of a, and a gets its own policy: a's socket stays (the kept
    // connection carries on) and decides with a's new policy, not b's.
    reload(
        &gw,
        &format!(
            "{head}[[listen]]\naddress = \"{b}\"\n\n[[listen]]\naddress = \"{a}\"\n\
             client_ip = {{ trusted = [\"loopback\"] }}\n"
        ),
        true,
    );
    assert_eq!(
        ask_on(&mut kept),
        ("203.0.113.9".into(), "listen[1].client_ip".into()),
        "{}",
        gw.proc.log()
    );
    let mut on_b = connect(b).expect("the new listener accepts");
    assert_eq!(ask_on(&mut on_b), (CLIENT_IP.into(), "client_ip".into()));
    // Every worker accepts on the new socket: a handful of connections all answered.
    for _ in 0..8 {
        let mut c = connect(b).expect("connect to b");
        assert_eq!(ask_on(&mut c).0, CLIENT_IP);
    }

    // A port that cannot be opened rejects the whole reload: a and b stay as they were.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("address");
    reload(&gw, &format!("{head}[[listen]]\naddress = \"{taken_addr}\"\n"), false);
    assert!(gw.proc.log().contains(&format!("cannot listen on {taken_addr}")), "{}", gw.proc.log());
    assert_eq!(ask_on(&mut kept).1, "listen[1].client_ip");
    assert_eq!(ask_on(&mut on_b).1, "client_ip");

    // a is removed: it stops accepting; its kept connection closes without another
    // answer; b carries on.
    reload(&gw, &format!("{head}[[listen]]\naddress = \"{b}\"\n"), true);
    assert!(refused(a), "the removed listener still accepts");
    let ending = read_until_close(&mut kept, Duration::from_secs(5));
    assert!(
        ending.is_closed() && ending.bytes().is_empty(),
        "the removed listener's idle connection: {ending:?}"
    );
    assert_eq!(ask_on(&mut on_b), (CLIENT_IP.into(), "client_ip".into()));
}

#[test]
fn a_removed_listener_finishes_the_request_it_is_serving() {
    let dir = test_dir("reload_listeners/in_flight");
    let up = Upstream::start(Behavior::Delay(Duration::from_millis(1500)));
    let url = up.url();
    let (a, b) = (free_addr(), free_addr());
    let toml = |listen: &[SocketAddr]| {
        let mut t = format!("[upstream]\nurl = \"{url}\"\n");
        for l in listen {
            t.push_str(&format!("\n[[listen]]\naddress = \"{l}\"\n"));
        }
        t
    };
    let gw = Gateway::start_with_config(&dir, &toml(&[a, b]), &[a, b], &[]);
    let in_flight = thread::spawn(move || Req::get("/slow").send(a));
    assert_eq!(
        up.wait_for(1, Duration::from_secs(5)).len(),
        1,
        "the request never reached the upstream"
    );
    reload(&gw, &toml(&[b]), true);
    assert!(refused(a), "the removed listener still accepts");
    let resp =
        in_flight.join().expect("the client thread").expect("the in-flight request is answered");
    assert_eq!(resp.status, 200, "{}", gw.proc.log());
    assert_eq!(Req::get("/fast").must_send(b).status, 200);
}

/// Connections waiting on a removed listener close at once, not when
/// `limits.header_read_timeout` (10 s by default) would close them: one that has sent
/// nothing yet (the lean path waits for its first head), and a kept-alive one that hyper
/// serves (a `Connection: keep-alive` line takes it there). Each is woken by the reload;
/// with the wake-up lost, both stay open past the 5 s this waits.
#[test]
fn a_removed_listener_closes_its_waiting_connections_on_either_path() {
    let dir = test_dir("reload_listeners/waiting");
    let (a, b) = (free_addr(), free_addr());
    let toml = |listen: &[SocketAddr]| {
        let mut t = String::from("[limits]\nworkers = 2\n");
        for l in listen {
            t.push_str(&format!("\n[[listen]]\naddress = \"{l}\"\n"));
        }
        t
    };
    let gw = Gateway::start_with_config(&dir, &toml(&[a, b]), &[a, b], &[]);
    let mut silent = connect(a).expect("connect");
    let mut kept = connect(a).expect("connect");
    kept.write_all(b"GET /json HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        .expect("write");
    let mut reader = BufReader::new(kept.try_clone().expect("clone"));
    let resp = read_response(&mut reader, "GET").expect("a response");
    assert_eq!(resp.status, 200, "{}", resp.text());
    // The silent connection's task has run by now, and waits for its head.
    thread::sleep(SILENT_HANDED_OVER);
    let t = Instant::now();
    reload(&gw, &toml(&[b]), true);
    for (name, conn) in [("silent", &mut silent), ("kept-alive", &mut kept)] {
        let ending = read_until_close(conn, Duration::from_secs(5));
        assert!(
            ending.is_closed() && ending.bytes().is_empty(),
            "the removed listener's {name} connection: {ending:?}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(Req::get("/json").must_send(b).status, 200);
}

/// A connection to `addr` that is served, retried for a while: a connection closed just
/// before holds its place until the gateway has seen it close.
fn held(gw: &Gateway, addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let asked = s
            .write_all(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
            .and_then(|()| read_response(&mut BufReader::new(s.try_clone()?), "GET"));
        if asked.is_ok_and(|r| r.status == 200) {
            return s;
        }
        assert!(Instant::now() < deadline, "no place for a connection:\n{}", gw.proc.log());
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a new connection is closed at once, unanswered.
fn turned_away(addr: SocketAddr) -> bool {
    let ending = exchange(addr, &Req::get("/json").to_bytes(), Duration::from_secs(5));
    ending.is_closed() && ending.status().is_none()
}

#[test]
fn sighup_resizes_max_connections_without_closing_open_ones() {
    let dir = test_dir("reload_listeners/max_connections");
    let addr = free_addr();
    let toml = |max: usize| {
        format!("[limits]\nmax_connections = {max}\n\n[[listen]]\naddress = \"{addr}\"\n")
    };
    let gw = Gateway::start_with_config(&dir, &toml(4), &[addr], &[]);
    let mut open: Vec<TcpStream> = (0..3).map(|_| held(&gw, addr)).collect();

    // Down to 2 with 3 open: the open ones stay and are served; a new one is turned away.
    reload(&gw, &toml(2), true);
    for s in &mut open {
        assert_eq!(ask_on(s).0, CLIENT_IP, "an open connection was dropped by the shrink");
    }
    assert!(turned_away(addr), "a connection over the new limit was served");

    // Two close: 1 open under a limit of 2 leaves one place, and only one.
    open.truncate(1);
    open.push(held(&gw, addr));
    assert!(turned_away(addr), "a connection over the limit was served");

    // Up to 4: two more fit beside the two open.
    reload(&gw, &toml(4), true);
    open.push(held(&gw, addr));
    open.push(held(&gw, addr));
    assert!(turned_away(addr), "a connection over the raised limit was served");
}

// Pins log mode (`trueip::shown::log_text`) on a rejected reload's message, which quotes the
// file: the hint wrote the value's U+2028 and ESC as they were, a second log line and a
// terminal sequence, before; the message's `{:?}` quote was escaped twice (`\\u{2028}`).
#[test]
fn a_rejected_config_is_logged_in_log_mode() {
    let dir = test_dir("reload_listeners/rejected");
    let a = free_addr();
    let listen = format!("[[listen]]\naddress = \"{a}\"\n");
    let gw = Gateway::start_with_config(&dir, &listen, &[a], &[]);
    reload(&gw, &format!("{listen}[client_ip]\ntrusted = [\"bad\\u2028x\\u001b[2J\"]\n"), false);
    let log = gw.proc.log();
    let line = log.lines().find(|l| l.contains("SIGHUP: config rejected")).expect("the rejection");
    assert!(line.contains(r"host:bad\xe2\x80\xa8x\x1b[2J"), "{line}");
    assert!(line.contains(r#"trust spec "bad\xe2\x80\xa8x\x1b[2J""#), "{line}");
    assert!(!log.contains(['\u{2028}', '\u{1b}']), "{log:?}");
}

/// A listener a reload turns from HTTP to `mode = "tcp"` on the same address keeps its
/// socket, and stops deferring (`limits.defer_accept` is for HTTP only): a relayed
/// protocol whose client waits for the server to speak is relayed at once, its upstream
/// connected while the client is still silent. Fails when the kept socket keeps the
/// deferral (the relay starts only about a second later).
#[test]
fn a_listener_reloaded_to_tcp_mode_stops_deferring() {
    let dir = test_dir("reload_listeners/defer");
    let a = free_addr();
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let up = upstream.local_addr().expect("upstream address");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        while let Ok((conn, _)) = upstream.accept() {
            if tx.send(conn).is_err() {
                break;
            }
        }
    });
    let http = format!("[[listen]]\naddress = \"{a}\"\n");
    let gw = Gateway::start_with_config(&dir, &http, &[a], &[]);
    reload(
        &gw,
        &format!("[[listen]]\naddress = \"{a}\"\nmode = \"tcp\"\nupstream = \"{up}\"\n"),
        true,
    );
    let _silent = connect(a).expect("connect");
    let relayed = rx.recv_timeout(Duration::from_millis(600));
    assert!(
        relayed.is_ok(),
        "a silent client's relay did not reach the upstream within 600 ms:\n{}",
        gw.proc.log()
    );
}
