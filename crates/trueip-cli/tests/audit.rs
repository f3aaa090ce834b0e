//! `trueip audit` against targets the tests start on 127.0.0.1: ones with a hole (caught, exit
//! status 1) and ones without (clean, exit status 0), its bounds (request count, rate, time,
//! body size), and bad arguments or targets (exit status 2, with a message that says what to
//! do).
//!
//! The targets: `trueip serve`; nginx with `set_real_ip_from 0.0.0.0/0` and
//! `real_ip_header X-Forwarded-For`; a small hyper app that takes the first X-Forwarded-For
//! entry; the same app reading `X-Real-IP` behind nginx that sets it to `$remote_addr`; Flask
//! with `ProxyFix(x_for=2)` behind one nginx. nginx (`/usr/sbin/nginx`, realip) and a Python
//! with Flask (`$TRUEIP_PYTHON`, else `.venv/bin/python`, else `python3`) come from
//! `scripts/test-deps`; missing, they fail the test unless `TRUEIP_SKIP_EXTERNAL=1`.

mod support;

use std::convert::Infallible;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

const TRUEIP: &str = env!("CARGO_BIN_EXE_trueip");
const NGINX: &str = "/usr/sbin/nginx";

// ---------------------------------------------------------------------------------------------
// Running the audit

struct Audit {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Audit {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// The names of the probes reported as findings.
    fn findings(&self) -> Vec<String> {
        self.json()["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| f["probe"].as_str().expect("probe").to_owned())
            .collect()
    }
}

/// `trueip audit ARGS`, which must end by itself within 60 s.
fn audit(args: &[&str]) -> Audit {
    let child = Command::new(TRUEIP)
        .arg("audit")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trueip audit");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("trueip audit (pid {id}) still runs after 60 s: {args:?}"))
        .expect("trueip audit output");
    Audit {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A quick audit of `url` as JSON, with `extra` arguments.
fn audit_json(url: &str, extra: &[&str]) -> Audit {
    let mut args = vec![url, "--rate", "200", "--timeout", "5", "--format", "json"];
    args.extend_from_slice(extra);
    audit(&args)
}

fn assert_clean(a: &Audit, baseline: &str) {
    eprintln!("{}", a.stdout); // shown with --nocapture
    assert_eq!(a.code, Some(0), "exit status\n{}\n{}", a.stdout, a.stderr);
    let j = a.json();
    assert_eq!(j["verdict"], "clean", "{}", a.stdout);
    assert_eq!(j["baseline"], baseline, "{}", a.stdout);
    assert_eq!(j["probes_sent"], j["probes_total"], "{}", a.stdout);
    assert!(j["findings"].as_array().is_some_and(Vec::is_empty), "{}", a.stdout);
}

fn assert_caught(a: &Audit, must: &[&str]) {
    eprintln!("{}", a.stdout); // shown with --nocapture
    assert_eq!(a.code, Some(1), "exit status\n{}\n{}", a.stdout, a.stderr);
    let j = a.json();
    assert_eq!(j["verdict"], "spoofable", "{}", a.stdout);
    assert_eq!(j["baseline"], "127.0.0.1", "{}", a.stdout);
    let found = a.findings();
    for probe in must {
        assert!(found.iter().any(|f| f == probe), "{probe} not among {found:?}\n{}", a.stdout);
    }
    for f in j["findings"].as_array().expect("findings") {
        assert!(!f["fix"].as_str().unwrap_or("").is_empty(), "a finding without a fix: {f}");
        assert!(matches!(f["severity"].as_str(), Some("high" | "medium")), "{f}");
    }
}

// ---------------------------------------------------------------------------------------------
// Processes and ports

/// Kills (by its own id) and reaps the child when the test ends, however it ends.
struct Running(Child, &'static str);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    l.local_addr().expect("local addr")
}

/// Waits until `addr` accepts connections (10 s at most), failing early if the child exits.
fn wait_for(addr: SocketAddr, child: &mut Running, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "{} exited ({status}) before listening on {addr}: {}",
                child.1,
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{} does not listen on {addr} after 10 s: {}",
        child.1,
        fs::read_to_string(log).unwrap_or_default()
    );
}

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// nginx with `http_body` in its `http { }` block, listening on `addr`; `None` when nginx is
/// missing and `TRUEIP_SKIP_EXTERNAL=1`.
fn nginx(dir: &Path, addr: SocketAddr, http_body: &str) -> Option<Running> {
    if !Path::new(NGINX).is_file() {
        support::skip_without(NGINX, "run `bash scripts/test-deps` (apt-get install nginx)");
        return None;
    }
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx.error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log {d}/nginx.access.log;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n{http_body}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf).expect("write nginx.conf");
    let log = dir.join("nginx.error.log");
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(&log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start nginx");
    let mut running = Running(child, "nginx");
    wait_for(addr, &mut running, &log);
    Some(running)
}

/// The Python with Flask: `$TRUEIP_PYTHON`, else `.venv/bin/python` at the repository root,
/// else `python3`; `None` when Flask is missing and `TRUEIP_SKIP_EXTERNAL=1`.
fn python_with_flask() -> Option<PathBuf> {
    let python = std::env::var_os("TRUEIP_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"))
                .filter(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&python)
        .args(["-c", "import flask, werkzeug.middleware.proxy_fix"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    let fix = "run `bash scripts/test-deps` (makes .venv/ with Flask) or set TRUEIP_PYTHON";
    support::skip_without(&format!("Flask in {}", python.display()), fix);
    None
}

// ---------------------------------------------------------------------------------------------
// A small app on loopback, counting what it is asked

/// How the app answers.
#[derive(Clone, Copy)]
enum App {
    /// `{"ip": first X-Forwarded-For entry, else the peer}`: the common mistake.
    FirstXff,
    /// The peer, in a response header `X-Seen-IP`; the body says nothing.
    PeerHeader,
    /// The first `X-Real-IP` line, else the peer, in `X-Seen-IP` (behind nginx).
    RealIpHeader,
    /// `302` to another host.
    Redirect,
    /// 200 with a 2 MiB body.
    Huge,
    /// A page with no address in it.
    NoAddress,
    /// Stands in for a proxy that honours `Connection:` tokens naming its own X-Real-IP: the
    /// app then sees the proxy's address (10.9.9.9) instead of the client's. Body: the address.
    DropsNamedHeaders,
    /// The first answer is the peer, every later one 127.0.0.2: an answer that drifts by itself.
    Drifting,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Instant>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(app: App) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let counter = seen.clone();
        runtime.spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let counter = counter.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let first = {
                        let mut seen = counter.lock().expect("lock");
                        seen.push(Instant::now());
                        seen.len() == 1
                    };
                    async move { Ok::<_, Infallible>(answer(app, peer, &req, first)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Server { addr, seen, _runtime: runtime }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn requests(&self) -> Vec<Instant> {
        self.seen.lock().expect("lock").clone()
    }
}

fn answer(
    app: App,
    peer: SocketAddr,
    req: &Request<Incoming>,
    first: bool,
) -> Response<Full<Bytes>> {
    let header =
        |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let peer_ip = peer.ip().to_string();
    let mut resp = Response::builder();
    let body = match app {
        App::FirstXff => {
            let first = header("x-forwarded-for")
                .and_then(|v| v.split(',').next().map(|e| e.trim().to_owned()))
                .unwrap_or(peer_ip);
            serde_json::json!({ "ip": first }).to_string()
        }
        App::PeerHeader => {
            resp = resp.header("x-seen-ip", peer_ip);
            "hello\n".to_owned()
        }
        App::RealIpHeader => {
            resp = resp.header("x-seen-ip", header("x-real-ip").unwrap_or(peer_ip));
            "hello\n".to_owned()
        }
        App::Redirect => {
            resp = resp.status(302).header("location", "http://192.0.2.1/elsewhere");
            String::new()
        }
        App::Huge => "x".repeat(2 * 1024 * 1024),
        App::NoAddress => "<html><body>Welcome!</body></html>".to_owned(),
        App::DropsNamedHeaders => {
            let named = header("connection")
                .is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case("x-real-ip")));
            if named { "10.9.9.9".to_owned() } else { peer_ip }
        }
        App::Drifting => {
            if first {
                peer_ip
            } else {
                "127.0.0.2".to_owned()
            }
        }
    };
    resp.body(Full::new(Bytes::from(body))).expect("response")
}

// ---------------------------------------------------------------------------------------------
// The five targets

#[test]
fn clean_trueip_serve_whoami() {
    let dir = test_dir("serve");
    let addr = free_port();
    let log = dir.join("serve.log");
    let child = Command::new(TRUEIP)
        .args(["serve", "--listen", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start trueip serve");
    let mut serve = Running(child, "trueip serve");
    wait_for(addr, &mut serve, &log);
    let a = audit_json(&format!("http://{addr}/"), &[]);
    assert_clean(&a, "127.0.0.1");
    assert_eq!(a.json()["read_how"], "trueip's whoami page, detected");
    assert_eq!(a.stderr, "", "no progress display when stderr is not a terminal");
    // And the text report says so, in words.
    let text = audit(&[&format!("http://{addr}/"), "--rate", "200"]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(text.stdout.contains("CLEAN: none of the"), "{}", text.stdout);
}

#[test]
fn caught_nginx_realip_trusting_everyone() {
    let dir = test_dir("nginx-realip-any");
    let addr = free_port();
    let body = format!(
        "  server {{\n    listen {addr};\n    set_real_ip_from 0.0.0.0/0;\n    \
         real_ip_header X-Forwarded-For;\n    location / {{ default_type text/plain; return 200 \"$remote_addr\\n\"; }}\n  }}"
    );
    let Some(_nginx) = nginx(&dir, addr, &body) else {
        return;
    };
    let a = audit_json(&format!("http://{addr}/"), &["--read", "regex:^(\\S+)"]);
    // realip (recursive off) takes the last entry: the client's rightmost one.
    assert_caught(&a, &["xff-single", "xff-list", "xff-ipv6", "xff-ipv4-mapped"]);
    let list = a.json()["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["probe"] == "xff-list")
        .cloned()
        .expect("xff-list");
    assert_eq!(list["answer"], "192.0.2.2", "{list}");
    assert_eq!(list["kind"], "xff-trusts-client", "{list}");
    assert!(list["fix"].as_str().expect("fix").contains("never 0.0.0.0/0"), "{list}");
}

#[test]
fn caught_app_taking_the_first_xff_entry() {
    let app = Server::start(App::FirstXff);
    let a = audit_json(&app.url(), &["--read", "json:/ip"]);
    assert_caught(&a, &["xff-single", "xff-list", "xff-lines", "xff-octal", "xff-zoned"]);
    let j = a.json();
    let list = j["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["probe"] == "xff-list")
        .cloned()
        .expect("xff-list");
    assert_eq!(
        (list["answer"].as_str(), list["kind"].as_str()),
        (Some("203.0.113.2"), Some("xff-leftmost"))
    );
    // It reads nothing but X-Forwarded-For: X-Real-IP and the CDN headers are ignored.
    for r in j["results"].as_array().expect("results") {
        if matches!(r["probe"].as_str(), Some("x-real-ip" | "cf-connecting-ip" | "true-client-ip"))
        {
            assert_eq!(r["outcome"], "ignored", "{r}");
        }
    }
    // The text report names the probe, the severity and the fix.
    let text = audit(&[&app.url(), "--read", "json:/ip", "--rate", "200"]);
    assert_eq!(text.code, Some(1));
    assert!(text.stdout.contains("HIGH   xff-single"), "{}", text.stdout);
    assert!(text.stdout.contains("fix: read X-Forwarded-For from the right"), "{}", text.stdout);
    assert!(text.stdout.contains("SPOOFABLE"), "{}", text.stdout);
}

#[test]
fn clean_app_behind_nginx_setting_x_real_ip() {
    let dir = test_dir("nginx-x-real-ip");
    let app = Server::start(App::RealIpHeader);
    let addr = free_port();
    let body = format!(
        "  server {{\n    listen {addr};\n    location / {{\n      proxy_pass http://{};\n      \
         proxy_set_header X-Real-IP $remote_addr;\n    }}\n  }}",
        app.addr
    );
    let Some(_nginx) = nginx(&dir, addr, &body) else {
        return;
    };
    let a = audit_json(&format!("http://{addr}/"), &["--read", "header:X-Seen-IP"]);
    assert_clean(&a, "127.0.0.1");
    // Without nginx in front, the same app is caught by X-Real-IP.
    let direct = audit_json(&app.url(), &["--read", "header:X-Seen-IP"]);
    assert_caught(&direct, &["x-real-ip", "x-real-ip-ipv4-mapped"]);
}

#[test]
fn caught_flask_proxyfix_counting_two_proxies_behind_one() {
    let Some(python) = python_with_flask() else {
        return;
    };
    let dir = test_dir("flask-proxyfix");
    let flask_addr = free_port();
    let script = dir.join("app.py");
    fs::write(
        &script,
        "import sys\nfrom flask import Flask, request\nfrom werkzeug.middleware.proxy_fix import ProxyFix\n\
         from werkzeug.serving import make_server\n\
         app = Flask(__name__)\napp.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)\n\
         @app.route('/')\ndef who():\n    return request.remote_addr + '\\n'\n\
         make_server('127.0.0.1', int(sys.argv[1]), app, threaded=True).serve_forever()\n",
    )
    .expect("write app.py");
    let log = dir.join("flask.log");
    let child = Command::new(&python)
        .arg(&script)
        .arg(flask_addr.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start Flask");
    let mut flask = Running(child, "Flask");
    wait_for(flask_addr, &mut flask, &log);
    let addr = free_port();
    let body = format!(
        "  server {{\n    listen {addr};\n    location / {{\n      proxy_pass http://{flask_addr};\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}"
    );
    let Some(_nginx) = nginx(&dir, addr, &body) else {
        return;
    };
    // The body is one address: found without --read.
    let a = audit_json(&format!("http://{addr}/"), &[]);
    assert_caught(&a, &["xff-single", "xff-list"]);
    assert_eq!(a.json()["read"], "body", "{}", a.stdout);
}

/// `trueip serve` with TLS, its certificate issued by a test CA: clean with `--ca`, and a
/// clear failure without it.
#[test]
fn clean_trueip_serve_over_https_with_a_private_ca() {
    let dir = test_dir("serve-https");
    if !Path::new("/usr/bin/openssl").is_file() {
        support::skip_without("openssl", "apt-get install openssl");
        return;
    }
    let openssl = |args: &[&str]| {
        let out = Command::new("/usr/bin/openssl")
            .current_dir(&dir)
            .args(args)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=trueip test CA", "-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "leaf.csr"]]
            .concat(),
    );
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    let addr = free_port();
    let d = dir.display();
    fs::write(
        dir.join("trueip.toml"),
        format!("[[listen]]\naddress = \"{addr}\"\ntls = {{ cert = \"{d}/cert.pem\", key = \"{d}/key.pem\" }}\n"),
    )
    .expect("config");
    let log = dir.join("serve.log");
    let child = Command::new(TRUEIP)
        .arg("serve")
        .arg("--config")
        .arg(dir.join("trueip.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start trueip serve");
    let mut serve = Running(child, "trueip serve");
    wait_for(addr, &mut serve, &log);
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().expect("UTF-8 path");
    assert_clean(
        &audit_json(&format!("https://localhost:{}/", addr.port()), &["--ca", ca]),
        "127.0.0.1",
    );
    let a =
        audit(&[&format!("https://127.0.0.1:{}/", addr.port()), "--ca", &format!("{d}/cert.pem")]);
    assert_eq!(a.code, Some(2), "the leaf is no CA: {}", a.stderr);
    assert!(a.stderr.contains("TLS with"), "{}", a.stderr);
    let a = audit(&[&format!("https://127.0.0.1:{}/", addr.port())]);
    assert_eq!(a.code, Some(2), "an unknown issuer: {}", a.stderr);
    assert!(a.stderr.contains("UnknownIssuer") && a.stderr.contains("--ca FILE"), "{}", a.stderr);
}

/// On a terminal, a progress line on stderr; `script` gives the audit one.
#[test]
fn progress_only_on_a_terminal() {
    if !Path::new("/usr/bin/script").is_file() {
        support::skip_without("script", "apt-get install util-linux");
        return;
    }
    let app = Server::start(App::PeerHeader);
    let cmd = format!(
        "{TRUEIP} audit {} --read header:x-seen-ip --rate 200 --max-requests 4 --format json >/dev/null",
        app.url()
    );
    let out = Command::new("/usr/bin/script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let tty = String::from_utf8_lossy(&out.stdout);
    for part in ["[1/4] baseline", "[2/4] xff-single", "[4/4] baseline again", "\r\x1b[2K"] {
        assert!(tty.contains(part), "{part:?} not in {tty:?}");
    }
    assert!(
        tty.ends_with("\r\x1b[2K") || tty.ends_with("\r\x1b[2K\r\n"),
        "the line is cleared at the end: {tty:?}"
    );
}

/// An answer that moves without becoming a sentinel is a MEDIUM finding, with the probe's own
/// diagnosis (here: hop-by-hop).
#[test]
fn caught_an_answer_moved_by_connection_tokens() {
    let app = Server::start(App::DropsNamedHeaders);
    let a = audit_json(&app.url(), &[]);
    assert_caught(&a, &["connection-x-real-ip", "connection-forwarding"]);
    let j = a.json();
    for f in j["findings"].as_array().expect("findings") {
        assert_eq!(
            (f["severity"].as_str(), f["kind"].as_str()),
            (Some("medium"), Some("hop-by-hop")),
            "{f}"
        );
        assert_eq!(f["answer"], "10.9.9.9", "{f}");
    }
    assert_eq!(a.findings().len(), 2, "{}", a.stdout);
}

/// A baseline that drifts by itself explains every moved answer: no finding, exit 2.
#[test]
fn a_drifting_answer_is_inconclusive_not_spoofable() {
    let app = Server::start(App::Drifting);
    let a = audit_json(&app.url(), &[]);
    assert_eq!(a.code, Some(2), "{}\n{}", a.stdout, a.stderr);
    let j = a.json();
    assert_eq!(
        (j["verdict"].as_str(), j["baseline_again"].as_str()),
        (Some("inconclusive"), Some("127.0.0.2"))
    );
    assert!(a.findings().is_empty(), "{}", a.stdout);
    let fresh = Server::start(App::Drifting);
    let text = audit(&[&fresh.url(), "--rate", "200"]);
    assert_eq!(text.code, Some(2));
    assert!(
        text.stdout
            .contains("INCONCLUSIVE: nothing was believed, but the baseline was not confirmed"),
        "{}",
        text.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// Bounds

#[test]
fn max_requests_is_the_most_the_target_sees() {
    let app = Server::start(App::PeerHeader);
    let a = audit_json(&app.url(), &["--read", "header:x-seen-ip", "--max-requests", "5"]);
    assert_eq!(app.requests().len(), 5, "{}", a.stdout);
    // Nothing believed, but not everything asked: not a clean bill.
    assert_eq!(a.code, Some(2), "{}\n{}", a.stdout, a.stderr);
    let j = a.json();
    assert_eq!(
        (j["verdict"].as_str(), j["requests"].as_u64(), j["probes_sent"].as_u64()),
        (Some("inconclusive"), Some(5), Some(3))
    );
    let text =
        audit(&[&app.url(), "--read", "header:x-seen-ip", "--max-requests", "3", "--rate", "200"]);
    assert!(
        text.stdout.contains("INCONCLUSIVE: nothing was believed, but only 1 of"),
        "{}",
        text.stdout
    );
    assert_eq!(app.requests().len(), 5 + 3);
}

#[test]
fn the_whole_matrix_is_bounded_by_default() {
    let app = Server::start(App::PeerHeader);
    let a = audit_json(&app.url(), &["--read", "header:x-seen-ip"]);
    assert_clean(&a, "127.0.0.1");
    let total = a.json()["probes_total"].as_u64().expect("probes_total");
    // The baseline, every probe, the baseline again: under the default --max-requests (200).
    assert_eq!(app.requests().len() as u64, total + 2);
    assert!(total + 2 <= 200 && total >= 30, "{total}");
    // The README states the number.
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
        .expect("README.md");
    let says = format!("the matrix needs {}", total + 2);
    assert!(readme.contains(&says), "README.md should say {says:?}");
}

#[test]
fn rate_spaces_the_requests() {
    let app = Server::start(App::PeerHeader);
    let started = Instant::now();
    let a = audit(&[
        &app.url(),
        "--read",
        "header:x-seen-ip",
        "--rate",
        "20",
        "--max-requests",
        "6",
        "--format",
        "json",
    ]);
    assert_eq!(a.code, Some(2), "cut short: {}\n{}", a.stdout, a.stderr);
    let seen = app.requests();
    assert_eq!(seen.len(), 6);
    // 20 per second: 50 ms apart at least (a little slack for the clocks of two processes).
    for pair in seen.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(45), "requests {gap:?} apart at --rate 20");
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn a_silent_target_times_out_with_exit_2() {
    // Accepts connections (the backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let started = Instant::now();
    let a = audit(&[&format!("http://{addr}/"), "--timeout", "0.5"]);
    assert_eq!(a.code, Some(2), "{}", a.stderr);
    assert!(a.stderr.contains("within 0.5 s (--timeout)"), "{}", a.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn a_huge_body_is_not_read_past_the_bound() {
    let app = Server::start(App::Huge);
    let a = audit(&[&app.url(), "--read", "body"]);
    assert_eq!(a.code, Some(2), "{}", a.stderr);
    assert!(a.stderr.contains("larger than 1048576 bytes"), "{}", a.stderr);
}

#[test]
fn a_redirect_is_reported_not_followed() {
    let app = Server::start(App::Redirect);
    let a = audit(&[&app.url()]);
    assert_eq!(a.code, Some(2), "{}", a.stderr);
    assert!(a.stderr.contains("302"), "{}", a.stderr);
    assert!(a.stderr.contains("follows no redirect"), "{}", a.stderr);
    assert!(a.stderr.contains("http://192.0.2.1/elsewhere"), "{}", a.stderr);
    assert_eq!(app.requests().len(), 1, "only the baseline was sent");
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, and the message says what to do

#[test]
fn a_page_without_an_address_asks_for_read() {
    let app = Server::start(App::NoAddress);
    let a = audit(&[&app.url()]);
    assert_eq!(a.code, Some(2), "{}", a.stderr);
    assert!(a.stderr.contains("--read json:/POINTER"), "{}", a.stderr);
    let a = audit(&[&app.url(), "--read", "json:/ip"]);
    assert_eq!(a.code, Some(2));
    assert!(a.stderr.contains("the body is not JSON"), "{}", a.stderr);
    let a = audit(&[&app.url(), "--read", "header:x-none"]);
    assert!(a.stderr.contains("no x-none header"), "{}", a.stderr);
}

#[test]
fn bad_urls_and_arguments_exit_2_with_the_fix() {
    let closed = free_port(); // nothing listens there any more
    let cases: &[(&[&str], &str)] = &[
        (&["ftp://127.0.0.1/"], "trueip audit speaks http and https"),
        (&["127.0.0.1:8080"], "no scheme; write http://127.0.0.1:8080"),
        (&["http://"], "invalid URL"),
        (&["not a url"], "invalid URL"),
        (&["http://user:pw@127.0.0.1/"], "credentials in the URL"),
        (&["http://127.0.0.1/", "--ca", "/nonexistent.pem"], "--ca is for https URLs"),
        (&["https://127.0.0.1:1/", "--ca", "/nonexistent.pem"], "/nonexistent.pem"),
        (&["http://127.0.0.1/", "--read", "xml:/a"], "unknown kind"),
        (&["http://127.0.0.1/", "--read", "regex:ip=\\S+"], "no capture group"),
        (&["http://127.0.0.1/", "--rate", "0"], "between 0.01 and 1000"),
        (&["http://127.0.0.1/", "--rate", "fast"], "between 0.01 and 1000"),
        (&["http://127.0.0.1/", "--max-requests", "1"], "--max-requests"),
        (&["http://127.0.0.1/", "--timeout", "0"], "between 0.1 and 300"),
        (&[], "<URL>"),
    ];
    for (args, says) in cases {
        let a = audit(args);
        assert_eq!(a.code, Some(2), "{args:?}: {}", a.stderr);
        assert!(a.stderr.contains(says), "{args:?}: expected {says:?} in {}", a.stderr);
        assert!(!a.stderr.contains("panicked"), "{args:?}: {}", a.stderr);
    }
    let a = audit(&[&format!("http://{closed}/")]);
    assert_eq!(a.code, Some(2), "{}", a.stderr);
    assert!(a.stderr.contains(&format!("cannot connect to {closed}")), "{}", a.stderr);
    let a = audit(&["http://no-such-host.invalid/"]);
    assert_eq!(a.code, Some(2), "{}", a.stderr);
    assert!(a.stderr.contains("cannot resolve \"no-such-host.invalid\""), "{}", a.stderr);
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = Command::new(TRUEIP).args(["audit", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for part in ["Examples:", "--read json:/ip", "redirects are never followed", "Exit status: 0"] {
        assert!(help.contains(part), "{part:?} missing from --help:\n{help}");
    }
}

// ---------------------------------------------------------------------------------------------
// The deployment snippets (deploy/nginx, deploy/haproxy): loaded by the real programs as
// shipped, then put in front of `trueip serve` and audited

fn deploy_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(path)
}

/// `text` with `from` replaced by `to`, which must be there (the snippet changed otherwise).
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the snippet no longer has {from:?}:\n{text}");
    text.replace(from, to)
}

/// nginx's `-t` over a main config whose `http { }` block includes `snippet`.
fn nginx_t(dir: &Path, snippet: &Path) -> Option<std::process::Output> {
    if !Path::new(NGINX).is_file() {
        support::skip_without(NGINX, "run `bash scripts/test-deps`");
        return None;
    }
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {};\n}}\n",
            snippet.display()
        ),
    )
    .expect("write nginx.conf");
    Some(
        Command::new(NGINX)
            .arg("-t")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .output()
            .expect("run nginx -t"),
    )
}

fn haproxy_bin() -> Option<&'static str> {
    const HAPROXY: &str = "/usr/sbin/haproxy";
    if Path::new(HAPROXY).is_file() {
        return Some(HAPROXY);
    }
    support::skip_without(HAPROXY, "run `bash scripts/test-deps`");
    None
}

#[test]
fn deploy_nginx_snippet_passes_nginx_t_and_a_broken_one_does_not() {
    let dir = test_dir("deploy-nginx-t");
    let Some(out) = nginx_t(&dir, &deploy_file("nginx/trueip.conf")) else {
        return;
    };
    assert!(out.status.success(), "nginx -t: {}", String::from_utf8_lossy(&out.stderr));
    // The check can fail: the same snippet with a misspelt directive.
    let broken = dir.join("broken.conf");
    let text = fs::read_to_string(deploy_file("nginx/trueip.conf")).expect("read the snippet");
    fs::write(&broken, edit(&text, "proxy_http_version", "proxy_http_versoin")).expect("write");
    let out = nginx_t(&dir, &broken).expect("nginx is here");
    assert!(!out.status.success(), "nginx -t accepted a misspelt directive");
}

#[test]
fn deploy_haproxy_snippet_passes_haproxy_c() {
    let Some(haproxy) = haproxy_bin() else { return };
    let out = Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(deploy_file("haproxy/trueip.cfg"))
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `trueip serve` (whoami) on a free port trusting only `trust`.
fn serve_trusting(dir: &Path, trust: &str) -> (Running, SocketAddr) {
    let addr = free_port();
    let log = dir.join("serve.log");
    let child = Command::new(TRUEIP)
        .args(["serve", "--listen", &addr.to_string(), "--trust", trust])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start trueip serve");
    let mut serve = Running(child, "trueip serve");
    wait_for(addr, &mut serve, &log);
    (serve, addr)
}

/// The nginx snippet in front of `trueip serve`: clean. The proxy connects from 127.0.0.2 and
/// trueip trusts only that, since the auditor itself comes from 127.0.0.1 (on a real host the
/// proxy's address is never a client's).
#[test]
fn deploy_nginx_snippet_in_front_of_trueip_serve_is_clean() {
    let dir = test_dir("deploy-nginx-e2e");
    let (_serve, serve_addr) = serve_trusting(&dir, "127.0.0.2");
    let addr = free_port();
    let text = fs::read_to_string(deploy_file("nginx/trueip.conf")).expect("read the snippet");
    let text = edit(&text, "server 127.0.0.1:8080;", &format!("server {serve_addr};"));
    let text = edit(&text, "listen 80;", &format!("listen {addr};"));
    let text = edit(
        &text,
        "proxy_pass http://trueip;",
        "proxy_pass http://trueip;\n        proxy_bind 127.0.0.2;",
    );
    let Some(_nginx) = nginx(&dir, addr, &text) else {
        return;
    };
    let a = audit_json(&format!("http://{addr}/"), &[]);
    assert_clean(&a, "127.0.0.1");
}

/// The HAProxy snippet's HTTP path in front of `trueip serve`: clean (HAProxy connects from
/// 127.0.0.2, as above).
#[test]
fn deploy_haproxy_snippet_in_front_of_trueip_serve_is_clean() {
    let Some(haproxy) = haproxy_bin() else { return };
    let dir = test_dir("deploy-haproxy-e2e");
    let (_serve, serve_addr) = serve_trusting(&dir, "127.0.0.2");
    let (addr, tls_addr) = (free_port(), free_port());
    let text = fs::read_to_string(deploy_file("haproxy/trueip.cfg")).expect("read the snippet");
    let text = edit(&text, "bind :80\n", &format!("bind {addr}\n"));
    let text = edit(&text, "bind :443\n", &format!("bind {tls_addr}\n"));
    let text = edit(
        &text,
        "server trueip 127.0.0.1:8080 check",
        &format!("server trueip {serve_addr} check source 127.0.0.2"),
    );
    let cfg = dir.join("haproxy.cfg");
    fs::write(&cfg, text).expect("write haproxy.cfg");
    let log = dir.join("haproxy.log");
    let child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let mut running = Running(child, "haproxy");
    wait_for(addr, &mut running, &log);
    let a = audit_json(&format!("http://{addr}/"), &[]);
    assert_clean(&a, "127.0.0.1");
}
