//! The upstream connection pool with `[upstream] proxy_protocol` on: every upstream
//! connection opens with a PROXY header naming one client connection, so it can only ever
//! serve that connection. Idle ones must not pile up (one descriptor per client connection
//! ever seen, for `pool_idle_timeout`): they close with their client connection, and all
//! idle connections together stay under `pool_max_idle_total`.
//!
//! The upstream here reads the PROXY header, answers every request, and counts the
//! connections it has open; the test also counts the gateway's open descriptors.

#![allow(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A keep-alive upstream behind a PROXY header that counts its open connections.
struct Counting {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl Counting {
    fn start() -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (o, a) = (open.clone(), accepted.clone());
        thread::spawn(move || {
            // Bounded: no test here opens more.
            for stream in listener.incoming().take(2000) {
                let Ok(stream) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let o = o.clone();
                thread::spawn(move || {
                    let _ = counting_conn(stream);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Counting { addr, open, accepted }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits up to `within` for at most `n` open connections; the count at the end.
    fn settle_at_most(&self, n: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        while self.open() > n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        self.open()
    }
}

fn counting_conn(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut proxy = String::new();
    reader.read_line(&mut proxy)?;
    assert!(proxy.starts_with("PROXY "), "no PROXY header: {proxy:?}");
    for _ in 0..10_000 {
        let mut blank = false;
        for _ in 0..200 {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line.trim_end().is_empty() {
                blank = true;
                break;
            }
        }
        if !blank {
            return Ok(());
        }
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
    }
    Ok(())
}

/// The gateway's open descriptors.
fn descriptors(gw: &Gateway) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", gw.proc.pid())).map(|d| d.count()).unwrap_or(0)
}

/// The gateway's descriptors once they are at most `bound`, or after `wait`: the gateway
/// sees a client's close when its task next runs, which on a loaded machine is a while
/// after the upstream side has settled.
fn descriptors_settle_at_most(gw: &Gateway, bound: usize, wait: Duration) -> usize {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let n = descriptors(gw);
        if n <= bound || std::time::Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Both wire paths, by the config line that chooses them.
const PATHS: [(&str, &str); 2] = [("lean", "true"), ("hyper", "false")];

fn gateway(name: &str, path: &str, lean: &str, up: &Counting, upstream_extra: &str) -> Gateway {
    let dir = test_dir(&format!("upstream_pool/{name}-{path}"));
    let toml = format!(
        "[upstream]\nurl = \"http://{}\"\nproxy_protocol = \"v1\"\n{upstream_extra}\
         [limits]\nlean_http1 = {lean}\n",
        up.addr
    );
    Gateway::start_with_toml(&dir, free_addr(), &toml, &[])
}

/// One keep-alive request on a new connection; the connection, still open.
fn one_request(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n").unwrap();
    let resp = read_response(&mut BufReader::new(s.try_clone().unwrap()), "GET").unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    s
}

const CLIENTS: usize = 200;

/// 200 client connections, one after another, each with one keep-alive request: every one
/// needs its own upstream connection (its PROXY header names it), and none of those can
/// serve anyone else. Once the clients are gone, so are their upstream connections.
#[test]
fn upstream_connections_announcing_a_closed_client_do_not_pile_up() {
    for (path, lean) in PATHS {
        let up = Counting::start();
        let gw = gateway("closed_clients", path, lean, &up, "");
        let before = descriptors(&gw);
        for _ in 0..CLIENTS {
            drop(one_request(gw.addr));
        }
        assert_eq!(
            up.accepted.load(Ordering::SeqCst),
            CLIENTS,
            "{path}: one upstream connection per client connection"
        );
        let open = up.settle_at_most(2, Duration::from_secs(5));
        assert!(
            open <= 2,
            "{path}: {open} upstream connections still open for {CLIENTS} closed clients"
        );
        let after = descriptors_settle_at_most(&gw, before + 4, Duration::from_secs(5));
        assert!(
            after <= before + 4,
            "{path}: the gateway holds {after} descriptors, {before} before {CLIENTS} clients came and went"
        );
        assert_healthy(gw.addr, "many clients");
    }
}

/// Client connections that stay open keep their upstream connection idle, but never more
/// than `pool_max_idle_total` of them together.
#[test]
fn idle_upstream_connections_stay_under_pool_max_idle_total() {
    const TOTAL: usize = 8;
    const OPEN_CLIENTS: usize = 40;
    for (path, lean) in PATHS {
        let up = Counting::start();
        let gw =
            gateway("total_bound", path, lean, &up, &format!("pool_max_idle_total = {TOTAL}\n"));
        let clients: Vec<TcpStream> = (0..OPEN_CLIENTS).map(|_| one_request(gw.addr)).collect();
        let open = up.settle_at_most(TOTAL, Duration::from_secs(5));
        assert!(
            open <= TOTAL,
            "{path}: {open} idle upstream connections for {OPEN_CLIENTS} idle clients, bound {TOTAL}"
        );
        // The first client kept its connection (the budget was not spent yet): its next
        // request reuses it.
        let accepted = up.accepted.load(Ordering::SeqCst);
        let mut clients = clients;
        let first = clients.first_mut().unwrap();
        first.write_all(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n").unwrap();
        let resp = read_response(&mut BufReader::new(first.try_clone().unwrap()), "GET").unwrap();
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert_eq!(
            up.accepted.load(Ordering::SeqCst),
            accepted,
            "{path}: a client connection reuses its own idle upstream connection"
        );
        drop(clients);
        let open = up.settle_at_most(0, Duration::from_secs(5));
        assert_eq!(open, 0, "{path}: idle upstream connections outlived their clients");
    }
}
