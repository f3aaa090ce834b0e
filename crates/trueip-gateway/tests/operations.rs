//! Running the gateway: metrics, the access log, SIGHUP reload, SIGTERM drain, and the
//! connection limit — each observed from outside, on the real binary.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn metrics_count_requests_and_spoof_attempts() {
    let dir = test_dir("operations/metrics");
    let up = Upstream::start(Behavior::Echo);
    let url = up.url();
    let gw = Gateway::start(
        &dir,
        free_addr(),
        &["--upstream", &url, "--trust", PROXIES_CIDR, "--strategy", "rightmost-untrusted"],
    );
    for _ in 0..3 {
        let resp = Req::get("/").headers(&forged_headers()).must_send(gw.addr);
        assert_eq!(resp.status, 200);
    }
    // The lean path counts a response once its last byte is written, so the client can
    // hold it a moment before the counter moves (on another worker, this scrape may come
    // first): the counters are read until they show all three, for a bounded time. Each
    // scrape is a 2xx response too, counted in the next one.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = metrics(gw.addr);
    let mut scrapes = 0.0;
    while metric_in(&text, "trueip_responses_total{class=\"2xx\"}") < 3.0 + scrapes
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
        scrapes += 1.0;
        text = metrics(gw.addr);
    }
    assert!(text.contains("# TYPE trueip_requests_total counter"), "{text}");
    assert!(
        metric_in(&text, "trueip_spoof_attempts_total") >= 3.0,
        "three forged requests, metrics say:\n{text}"
    );
    assert!(metric_in(&text, "trueip_responses_total{class=\"2xx\"}") >= 3.0, "{text}");
}

#[test]
fn json_access_log_names_the_resolved_client() {
    let dir = test_dir("operations/access_log");
    let up = Upstream::start(Behavior::Echo);
    let toml = "[log]\nformat = \"json\"\naccess_log = true\n";
    let url = up.url();
    let gw = Gateway::start_with_toml(&dir, free_addr(), toml, &["--upstream", &url]);
    let resp = Req::get("/logged-path").headers(&forged_headers()).must_send(gw.addr);
    assert_eq!(resp.status, 200);
    let line = access_log_line(&gw, "/logged-path");
    let json =
        Json::parse(&line).unwrap_or_else(|e| panic!("access-log line is not JSON ({e}): {line}"));
    assert_eq!(json.str_at("client"), CLIENT_IP, "{line}");
    for forged in FORGED_IPS {
        assert!(!json.str_at("client").contains(forged), "{line}");
    }
}

/// A request target may carry UTF-8, and with it C1 controls (`U+009B` is `ESC [` to a
/// terminal), bidi overrides and line separators (`U+0085`, `U+2028`: `str.splitlines()`
/// breaks a line there, so the client would write a second access-log line naming
/// 9.9.9.9). Neither the access log nor the diagnostics show them as written.
#[test]
fn a_request_target_cannot_write_control_or_line_breaking_characters_into_the_logs() {
    let dir = test_dir("operations/log_injection");
    let up = Upstream::start(Behavior::Echo);
    let (front, admin) = (free_addr(), free_addr());
    let toml = format!(
        "[[listen]]\naddress = \"{front}\"\n[upstream]\nurl = \"{}\"\n[admin]\nlisten = \"{admin}\"\n[log]\nlevel = \"info,trueip_gateway=debug\"\n",
        up.url()
    );
    let gw = Gateway::start_with_config(&dir, &toml, &[front, admin], &[]);
    let forged: &[u8] = b"/p\xc2\x85client=9.9.9.9\xe2\x80\xa8\xe2\x80\xae\xc2\x9b31m\\";
    let request = [
        b"GET ".as_slice(),
        forged,
        b" HTTP/1.1\r\nHost: trueip.test\r\nConnection: close\r\n\r\n",
    ]
    .concat();
    // A long path is cut in the log (up to 8192 lines wait in its queue), its length given.
    let long = ["/".as_bytes(), &"\u{e9}".repeat(2000).into_bytes()].concat();
    let long_request =
        [b"GET ".as_slice(), &long, b" HTTP/1.1\r\nHost: trueip.test\r\nConnection: close\r\n\r\n"]
            .concat();
    for (addr, status, request) in
        [(front, 200, &request), (admin, 404, &request), (front, 200, &long_request)]
    {
        let got = exchange(addr, request, Duration::from_secs(5));
        assert_eq!(got.status(), Some(status), "{}", gw.proc.log());
    }
    let shown = r"/p\xc2\x85client=9.9.9.9\xe2\x80\xa8\xe2\x80\xae\xc2\x9b31m\\";
    let (out, err) = eventually(
        Duration::from_secs(5),
        || {
            let read = |name: &str| fs::read(dir.join(name)).unwrap_or_default();
            let (out, err) = (read("trueip.stdout"), read("trueip.stderr"));
            let has = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains(shown);
            let has_long = String::from_utf8_lossy(&out).contains("path_bytes=4001");
            (has(&out) && has(&err) && has_long).then_some((out, err))
        },
        || format!("the escaped target is not in both logs:\n{}", gw.proc.log()),
    );
    let text = String::from_utf8_lossy(&out);
    let cut = text.lines().find(|l| l.contains("path_bytes=4001")).unwrap_or_default();
    assert!(cut.len() < 1500, "the long path is not cut: {cut}");
    for (log, bytes) in [("access log", &out), ("diagnostics", &err)] {
        for raw in [&b"\xc2\x85"[..], b"\xe2\x80\xa8", b"\xe2\x80\xae", b"\xc2\x9b"] {
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw),
                "the {log} holds {raw:x?} as the client wrote it:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

#[test]
fn sighup_reloads_the_trust_and_keeps_the_old_config_when_the_new_one_is_broken() {
    let dir = test_dir("operations/reload");
    let path = dir.join("trueip.toml");
    let addr = free_addr();
    let toml = |trusted: &str| {
        format!(
            "[client_ip]\ntrusted = [{trusted}]\nstrategy = \"rightmost-untrusted\"\nfrom = \"xff\"\n"
        )
    };
    fs::write(&path, toml("\"10.0.0.0/8\"")).expect("write config");
    let path_arg = path.to_string_lossy().into_owned();
    let gw = Gateway::start(&dir, addr, &["--config", &path_arg]);
    let ask = || {
        Req::get("/json")
            .header("X-Forwarded-For", "203.0.113.50")
            .must_send(addr)
            .json()
            .str_at("client_ip")
            .to_string()
    };
    assert_eq!(ask(), CLIENT_IP, "nothing trusted yet");
    // A keep-alive connection opened before the reload, served by the lean path (no
    // `Connection` line), must see the new trust on its next request too.
    let mut kept = connect(addr).expect("connect");
    let mut kept_reader = std::io::BufReader::new(kept.try_clone().expect("clone"));
    let mut ask_kept = || {
        kept.write_all(
            b"GET /json HTTP/1.1\r\nHost: trueip.test\r\nX-Forwarded-For: 203.0.113.50\r\n\r\n",
        )
        .expect("write on the kept connection");
        read_response(&mut kept_reader, "GET")
            .expect("a response on the kept connection")
            .json()
            .str_at("client_ip")
            .to_string()
    };
    assert_eq!(ask_kept(), CLIENT_IP, "nothing trusted yet (kept connection)");

    fs::write(&path, toml("\"10.0.0.0/8\", \"127.0.0.1\"")).expect("rewrite config");
    gw.proc.signal("HUP");
    eventually(
        Duration::from_secs(5),
        || (ask() == "203.0.113.50").then_some(()),
        || format!("SIGHUP did not apply the new trust:\n{}", gw.proc.log()),
    );
    assert_eq!(
        ask_kept(),
        "203.0.113.50",
        "a connection opened before the reload kept the old trust"
    );

    fs::write(&path, "[client_ip]\ntrusted = [\"10.0.0.0/33\"]\n").expect("break config");
    gw.proc.signal("HUP");
    eventually(
        Duration::from_secs(5),
        || (metric(addr, "trueip_config_reloads_total{result=\"error\"}") >= 1.0).then_some(()),
        || format!("the broken reload was not counted:\n{}", gw.proc.log()),
    );
    assert_eq!(ask(), "203.0.113.50", "a broken config replaced the working one");
    assert!(
        gw.proc.log().contains("10.0.0.0/33"),
        "the reload error does not name the bad input:\n{}",
        gw.proc.log()
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let dir = test_dir("operations/shutdown");
    let up = Upstream::start(Behavior::Delay(Duration::from_millis(1500)));
    let url = up.url();
    let mut gw = Gateway::start(&dir, free_addr(), &["--upstream", &url]);
    let addr = gw.addr;
    let in_flight = thread::spawn(move || Req::get("/slow").send(addr));
    // Let the request reach the upstream before the signal.
    let seen = up.wait_for(1, Duration::from_secs(5));
    assert_eq!(seen.len(), 1, "the request never reached the upstream");
    gw.proc.signal("TERM");
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM:\n{}", gw.proc.log()));
    let resp = in_flight
        .join()
        .expect("client thread")
        .expect("the in-flight request was cut by the shutdown");
    assert_eq!(resp.status, 200, "in-flight request during drain");
    assert!(status.success(), "exit status {status}:\n{}", gw.proc.log());
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "still accepting connections after exit"
    );
}

/// A keep-alive connection waiting for its next request does not hold up a shutdown:
/// SIGTERM closes it at once, well before `header_read_timeout` (10 s by default) would.
#[test]
fn sigterm_closes_idle_keep_alive_connections_at_once() {
    let dir = test_dir("operations/shutdown_idle");
    let mut gw = Gateway::start(&dir, free_addr(), &[]);
    let mut conn = connect(gw.addr).expect("connect");
    let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone"));
    for i in 0..3 {
        // Keep-alive, and plain enough for the lean path (no `Connection` line).
        conn.write_all(format!("GET /json?{i} HTTP/1.1\r\nHost: trueip.test\r\n\r\n").as_bytes())
            .expect("write");
        let resp = read_response(&mut reader, "GET").expect("a response");
        assert_eq!(resp.status, 200, "request {i}: {}", resp.text());
    }
    let t = Instant::now();
    gw.proc.signal("TERM");
    let ending = read_until_close(&mut conn, Duration::from_secs(5));
    assert!(ending.is_closed(), "the idle connection was still open 5 s after SIGTERM: {ending:?}");
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM:\n{}", gw.proc.log()));
    assert!(status.success(), "exit status {status}:\n{}", gw.proc.log());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?} with an idle connection open",
        t.elapsed()
    );
}

/// A connection that has sent nothing yet does not hold up a shutdown either: SIGTERM
/// closes it at once, though its first head would be due only 10 s after it opened.
#[test]
fn sigterm_closes_a_connection_still_waiting_for_its_first_request() {
    let dir = test_dir("operations/shutdown_first_head");
    let mut gw = Gateway::start(&dir, free_addr(), &[]);
    let mut conn = connect(gw.addr).expect("connect");
    // Its task has run by now, and waits for its head.
    thread::sleep(SILENT_HANDED_OVER);
    let t = Instant::now();
    gw.proc.signal("TERM");
    let ending = read_until_close(&mut conn, Duration::from_secs(5));
    assert!(
        ending.is_closed() && ending.bytes().is_empty(),
        "the waiting connection, 5 s after SIGTERM: {ending:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "closed {:?} after SIGTERM", t.elapsed());
    let status = gw
        .proc
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit within 5 s of SIGTERM:\n{}", gw.proc.log()));
    assert!(status.success(), "exit status {status}:\n{}", gw.proc.log());
}

#[test]
fn connections_over_the_limit_are_closed_and_the_gateway_recovers() {
    let dir = test_dir("operations/max_connections");
    let toml = "[limits]\nmax_connections = 8\n";
    let gw = Gateway::start_with_toml(&dir, free_addr(), toml, &[]);
    // Let the gateway notice that wait_for_port's probe connection closed (and free its slot).
    thread::sleep(Duration::from_millis(300));
    // Each begins a head, so the listener hands it over at once (`limits.defer_accept`).
    let held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut c = connect(gw.addr).expect("connect within the limit");
            c.write_all(b"GET").expect("write");
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    // The ninth is accepted by the kernel and then closed by the gateway.
    let ending = exchange(gw.addr, &Req::get("/json").to_bytes(), Duration::from_secs(5));
    assert!(ending.is_closed(), "the ninth connection stayed open");
    assert!(
        ending.status().is_none_or(|s| s == 503),
        "the ninth connection was answered {:?}",
        String::from_utf8_lossy(ending.bytes())
    );
    drop(held);
    // Recovered: it serves again once it has seen the held connections close. Each
    // probe's own connection holds a slot until the gateway sees it close too, so the
    // metrics request is retried as the probe is.
    let text = eventually(
        Duration::from_secs(5),
        || Req::get("/.trueip/metrics").send(gw.addr).ok().filter(|r| r.status == 200),
        || "never recovered after the held connections closed".into(),
    )
    .text();
    assert!(metric_in(&text, "trueip_connections_rejected_total") >= 1.0, "{text}");
}

/// Anonymous memory of a running process, in KiB (`RssAnon`).
fn anonymous_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("RssAnon in /proc status")
}

/// An idle gateway holds little memory: the allocator does not ask for transparent huge
/// pages, which gave every thread's first allocations a whole 2 MiB page (10.8 MiB for an
/// idle gateway with two workers, against 1.4 MiB). Where the kernel has transparent huge
/// pages off this cannot tell, and passes.
#[test]
fn an_idle_gateway_holds_little_memory() {
    let dir = test_dir("operations/idle_memory");
    let gw = Gateway::start_with_toml(
        &dir,
        free_addr(),
        "[limits]\nworkers = 2\n",
        &["--trust", "127.0.0.0/8"],
    );
    for _ in 0..20 {
        let resp = Req::get("/").must_send(gw.addr);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let kib = anonymous_kib(gw.proc.pid());
    assert!(
        kib < 6 * 1024,
        "an idle gateway holds {kib} KiB of anonymous memory (expected under 6 MiB)"
    );
}

/// The in-band metrics answered anyone: a stranger learned the trusted host names and
/// providers and, reading the counters around a request of its own, how it was decided.
/// Now they answer only clients no stranger can be; a stranger's request goes to the
/// upstream as any other path does. Strangers come through an L4 balancer trusted to send
/// PROXY headers; each wire path (the lean HTTP/1.1 one, hyper's) is checked.
///
/// Fails on the code before the fix: the stranger got the metrics.
#[test]
fn in_band_metrics_answer_only_clients_a_stranger_cannot_be() {
    let up = Upstream::start(Behavior::Echo);
    let url = up.url();
    let senders = [
        "--upstream",
        &url,
        "--proxy-protocol",
        "from-senders",
        "--proxy-protocol-from",
        CLIENT_IP,
    ];
    let via = |gw: &Gateway, client: [u8; 4], path: &str| {
        let client = std::net::SocketAddr::from((client, 40000));
        Req::get(path)
            .send_with_preamble(gw.addr, &proxy_v1(client, gw.addr))
            .expect("a request through the balancer")
    };
    let is_metrics = |resp: &Response| resp.text().contains("trueip_requests_total");
    for lean in [true, false] {
        let dir = test_dir(&format!("operations/metrics_private_{lean}"));
        let toml = format!("[limits]\nlean_http1 = {lean}\n");
        let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &senders);
        let before = up.requests().len();
        let stranger = via(&gw, [203, 0, 113, 9], "/.trueip/metrics");
        assert_eq!(stranger.status, 200, "lean {lean}");
        assert!(!is_metrics(&stranger), "lean {lean}: {}", stranger.text());
        let seen = up.wait_for(before + 1, IO_TIMEOUT);
        assert_eq!(seen.last().map(|s| s.path.as_str()), Some("/.trueip/metrics"));
        // Health answers anyone: load balancers ask for it in-band.
        let health = via(&gw, [203, 0, 113, 9], HEALTHZ);
        assert_eq!((health.status, health.text().trim()), (200, "ok"), "lean {lean}");
        for near in [[10, 0, 0, 5], [100, 64, 0, 9], [192, 168, 1, 2], [127, 0, 0, 1]] {
            let resp = via(&gw, near, "/.trueip/metrics");
            assert!(is_metrics(&resp), "{near:?} lean {lean}: {}", resp.text());
        }
        assert_eq!(up.requests().len(), before + 1, "lean {lean}");
    }
    let dir = test_dir("operations/metrics_to_anyone");
    let toml = "[admin]\nmetrics_to_anyone = true\n";
    let gw = Gateway::start_with_toml(&dir, free_addr(), toml, &senders);
    let stranger = via(&gw, [203, 0, 113, 9], "/.trueip/metrics");
    assert!(is_metrics(&stranger), "{}", stranger.text());
}

/// Behind a proxy the policy does not trust (the default trusts nobody), every request
/// comes from the proxy's private address: the one sign that a request is a stranger's
/// is the forwarding header the proxy added, and such a request does not get the metrics.
///
/// Fails on the code before the fix: the relayed request got the metrics.
#[test]
fn in_band_metrics_refuse_a_request_a_proxy_nobody_trusts_relayed() {
    let dir = test_dir("operations/metrics_relayed");
    let up = Upstream::start(Behavior::Echo);
    let url = up.url();
    let gw = Gateway::start(&dir, free_addr(), &["--upstream", &url]);
    let relayed =
        Req::get("/.trueip/metrics").header("X-Forwarded-For", FORGED_XFF).must_send(gw.addr);
    assert!(!relayed.text().contains("trueip_requests_total"), "{}", relayed.text());
    let seen = up.wait_for(1, IO_TIMEOUT);
    assert_eq!(seen.first().map(|s| s.path.as_str()), Some("/.trueip/metrics"));
    assert!(metrics(gw.addr).contains("trueip_requests_total"));
}

/// A proxy relays a stranger in a client-IP header the policy does not read: a loopback
/// nginx with `proxy_set_header X-Real-IP $remote_addr` in front of a gateway whose policy
/// reads `X-Forwarded-For` from its balancers. The request raises no
/// `header_from_untrusted_peer`, its client is the proxy's loopback address, and the
/// stranger got the metrics. Each wire path is checked.
///
/// Fails on the code before the fix: both requests got the metrics.
#[test]
fn in_band_metrics_refuse_a_client_address_nobody_vouched_for() {
    let up = Upstream::start(Behavior::Echo);
    let url = up.url();
    for lean in [true, false] {
        let dir = test_dir(&format!("operations/metrics_unvouched_{lean}"));
        let toml = format!("[limits]\nlean_http1 = {lean}\n");
        let args = ["--upstream", &url, "--trust", "10.0.0.0/8"];
        let gw = Gateway::start_with_toml(&dir, free_addr(), &toml, &args);
        let before = up.requests().len();
        let relayed =
            Req::get("/.trueip/metrics").header("X-Real-IP", "203.0.113.9").must_send(gw.addr);
        assert!(
            !relayed.text().contains("trueip_requests_total"),
            "lean {lean}: {}",
            relayed.text()
        );
        let seen = up.wait_for(before + 1, IO_TIMEOUT);
        assert_eq!(seen.last().map(|s| s.path.as_str()), Some("/.trueip/metrics"), "lean {lean}");
        assert!(metrics(gw.addr).contains("trueip_requests_total"));
    }
}

/// While the upstream is down, every request (and every connection to a tcp-mode
/// listener) wrote a warning to stderr, which the worker writes itself: a stranger's flood
/// turned an outage into as many lines, each a write a slow stderr holds the worker in.
/// Now at most 10 a second of each, the next naming how many were left out; the metrics
/// count every one.
///
/// Fails on the code before the fix: every one of the 400 failures wrote its line.
#[test]
fn failures_of_an_upstream_that_is_down_write_a_few_lines_a_second() {
    let dir = test_dir("operations/upstream_down_flood");
    let (down, http, relay) = (free_addr(), free_addr(), free_addr());
    let toml = format!(
        "[upstream]\nurl = \"http://{down}\"\n[[listen]]\naddress = \"{http}\"\n\
         [[listen]]\naddress = \"{relay}\"\nmode = \"tcp\"\nupstream = \"{down}\"\n"
    );
    let gw = Gateway::start_with_config(&dir, &toml, &[http, relay], &[]);
    let started = Instant::now();
    for _ in 0..200 {
        let resp = Req::get("/").must_send(gw.addr);
        assert_eq!(resp.status, 502, "{}", resp.text());
        let _ = exchange(relay, b"x", Duration::from_secs(2));
    }
    let flood = started.elapsed();
    std::thread::sleep(Duration::from_millis(1100));
    let _ = Req::get("/").must_send(gw.addr);
    let _ = exchange(relay, b"x", Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.proc.log();
        let count = |what: &str| log.lines().filter(|l| l.contains(what)).count() as u64;
        let (http, tcp) = (count("upstream request failed"), count("cannot connect upstream"));
        let most = 10 * (flood.as_secs() + 3);
        assert!(
            http <= most && tcp <= most,
            "{http} and {tcp} lines for 201 failures each in {flood:?}:\n{log}"
        );
        if count("not_logged=") >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no line says how many were left out:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = metrics(gw.addr);
    let counted: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("trueip_upstream_errors_total{kind=\"connect\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(counted >= 402, "the metrics count every failure:\n{page}");
}

/// `count` connections to `addr`, each with the start of a head and nothing more: a
/// trickling client that holds its place (the listener hands it over at once,
/// `limits.defer_accept`).
fn hold(addr: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut c = connect(addr).expect("connect");
            c.write_all(b"GET").expect("write");
            c
        })
        .collect()
}

/// Waits until a connection to `addr` is closed unanswered: every place is taken once the
/// gateway has accepted the held connections (each worker accepts from its own queue, so
/// a later connection may be served before them).
fn refused(addr: std::net::SocketAddr, what: &str) {
    eventually(
        Duration::from_secs(5),
        || {
            let got = exchange(addr, &Req::get("/metrics").to_bytes(), Duration::from_secs(5));
            (got.is_closed() && got.status().is_none()).then_some(())
        },
        || format!("{what} still answers past its limit"),
    );
}

/// Public connections that fill `limits.max_connections` leave the admin listener its
/// own budget (`admin.max_connections`): `/metrics` still answers during the flood. It
/// shared the public limit before, and went unreachable exactly then. The admin budget is
/// bounded too: past it, admin connections are closed, and it recovers when they close.
#[test]
fn the_admin_listener_answers_while_public_connections_fill_the_limit() {
    let dir = test_dir("operations/admin_budget");
    let (front, admin) = (free_addr(), free_addr());
    let toml = format!(
        "[[listen]]\naddress = \"{front}\"\n[limits]\nmax_connections = 8\n\
         [admin]\nlisten = \"{admin}\"\nmax_connections = 3\n"
    );
    let gw = Gateway::start_with_config(&dir, &toml, &[front, admin], &[]);
    // Let the gateway notice that wait_for_port's probe connections closed.
    thread::sleep(Duration::from_millis(300));
    let public = hold(front, 12);
    thread::sleep(Duration::from_millis(300));
    refused(front, "the public listener");
    let text = metrics(admin);
    assert!(metric_in(&text, "trueip_connections_rejected_total") >= 1.0, "{text}");

    // The admin budget: three held, the fourth closed unanswered (once the gateway has
    // seen the metrics request's connection close and freed its place).
    thread::sleep(Duration::from_millis(300));
    let held = hold(admin, 3);
    thread::sleep(Duration::from_millis(300));
    refused(admin, "the admin listener");
    logged(&gw.proc, "connection refused: admin.max_connections reached");
    drop(held);
    eventually(
        Duration::from_secs(5),
        || Req::get("/metrics").send(admin).ok().filter(|r| r.status == 200),
        || "the admin listener never recovered".into(),
    );
    drop(public);
}

/// The gateway under a hard open-file limit of 64 with a `max_connections` that needs
/// far more: it says so at start, naming both numbers and the fix. Under a soft limit of
/// 64 and a hard one that allows enough, it raises the soft limit and warns nothing, and
/// raises it again on a reload that allows more connections.
#[test]
fn an_open_file_limit_below_max_connections_is_raised_or_named() {
    let Some(prlimit) = external("prlimit", "util-linux") else {
        return;
    };
    let dir = test_dir("operations/open_file_limit");
    let toml = "[limits]\nmax_connections = 1000\nworkers = 1\n";
    fs::write(dir.join("trueip.toml"), toml).expect("write trueip.toml");
    // Default pool (1024 idle) and admin (16) budgets, one listener, 64 kept aside.
    let needed = 2 * 1000 + 16 + 1024 + 1 + 64;
    let start = |nofile: &str, name: &str| {
        let addr = free_addr();
        let mut cmd = std::process::Command::new(&prlimit);
        cmd.arg(format!("--nofile={nofile}")).arg("--").arg(trueip_bin());
        cmd.args(["serve", "--config"]).arg(dir.join("trueip.toml"));
        cmd.args(["--listen", &addr.to_string()]);
        let mut proc = Proc::spawn(name, cmd, &dir);
        wait_for_port(addr, &mut proc);
        proc
    };

    let short = start("64", "short");
    let log = logged(&short, "the open-file limit (RLIMIT_NOFILE) is 64 (hard limit 64)");
    for fix in [format!("{needed} descriptors"), "ulimit -n".into(), "LimitNOFILE=".into()] {
        assert!(log.contains(&fix), "{fix:?} missing: {log}");
    }

    // This process's hard limit, which the second gateway may keep as its own.
    let open_files = |pid: &str| {
        let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
        let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        (fields.get(3).cloned(), fields.get(4).cloned())
    };
    let Some(hard) = open_files("self").1 else {
        return;
    };
    if hard.parse::<u64>().is_ok_and(|h| h < needed) {
        eprintln!("SKIP: the hard open-file limit {hard} is below {needed}");
        return;
    }
    let roomy = start(&format!("64:{hard}"), "roomy");
    let log = logged(&roomy, &format!("raised from 64 to {needed}"));
    assert!(!log.contains("RLIMIT_NOFILE) is"), "{log}");
    assert_eq!(open_files(&roomy.pid().to_string()).0, Some(needed.to_string()));

    // A reload that allows more connections raises it again.
    let more = needed + 2 * 1000;
    fs::write(dir.join("trueip.toml"), toml.replace("1000", "2000")).expect("write trueip.toml");
    roomy.signal("HUP");
    logged(&roomy, &format!("raised from {needed} to {more}"));
    assert_eq!(open_files(&roomy.pid().to_string()).0, Some(more.to_string()));
}
