//! What the axum and hyper story tests share: start an example, send it a request from a
//! chosen loopback address, run nginx or HAProxy with the example's own config.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so one machine plays every host: the proxies
//! connect from 127.0.0.20 (nginx, `proxy_bind`), 127.0.0.21 (the ALB: the test binds its
//! socket there) and 127.0.0.30 (the NLB: HAProxy's `source`), inside the 127.0.0.16/28 the
//! examples are told to trust. The attacker is 127.0.0.1, never trusted.
//!
//! nginx and HAProxy come from `scripts/test-deps`; without them the tests fail, unless
//! `TRUEIP_SKIP_EXTERNAL=1` (then the parts that need them print a skip notice).

#![allow(dead_code, reason = "each story uses a different part")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const DEADLINE: Duration = Duration::from_secs(10);
pub const PROXIES: &str = "127.0.0.16/28";
pub const ALB: &str = "127.0.0.21";
pub const NLB: &str = "127.0.0.30";
pub const ATTACKER: &str = "127.0.0.1";

/// A child process, killed when the test ends.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts an example on a free port of 127.0.0.1 with `args` after LISTEN; returns it and
/// the address it printed.
pub fn example(bin: &str, args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(bin);
    cmd.arg("127.0.0.1:0").args(args).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = Proc(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{bin} printed {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    tokio::time::timeout(DEADLINE, socket.connect(to)).await.unwrap().unwrap()
}

/// Sends `preamble` and a `GET /` with `headers` from `from`; the response body, or `None`
/// if the server closed without answering.
pub async fn get(
    from: &str,
    to: SocketAddr,
    preamble: &[u8],
    headers: &[(&str, &str)],
) -> Option<String> {
    let mut stream = connect_from(from, to).await;
    let mut req = preamble.to_vec();
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    // A server that refuses the preamble may close before reading the rest.
    let _ = stream.write_all(&req).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("no answer and no close within the deadline");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Some(body.to_string())
}

/// The program, or `None` (with a notice) if it is missing and skipping is allowed.
fn external(program: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file());
    if found.is_none() {
        assert_eq!(
            std::env::var("TRUEIP_SKIP_EXTERNAL").as_deref(),
            Ok("1"),
            "`{program}` not found: `bash scripts/test-deps` installs it, \
             or set TRUEIP_SKIP_EXTERNAL=1 to skip what needs it"
        );
        eprintln!("SKIP: `{program}` not installed; TRUEIP_SKIP_EXTERNAL=1");
    }
    found
}

/// A fresh folder for one proxy's config and logs.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trueip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An example's own config file, with `replace` applied: each pattern must be in it, so an
/// edit the test cannot follow fails here rather than running a config of the test's own.
fn example_config(path: &str, replace: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in replace {
        assert!(
            text.contains(from),
            "{} must keep `{from}` for the test to substitute",
            path.display()
        );
        text = text.replace(from, to);
    }
    text
}

async fn wait_for(addr: SocketAddr, proc: &mut Proc) {
    let start = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("the proxy for {addr} exited: {status}");
        }
        assert!(start.elapsed() < DEADLINE, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// nginx with `server_block` (an example's `nginx.conf`) inside a minimal unprivileged
/// configuration; `None` if nginx is missing and skipping is allowed.
pub async fn nginx(config: &str, listen: SocketAddr, app: SocketAddr) -> Option<Proc> {
    let bin = external("nginx")?;
    let server = example_config(
        config,
        &[
            ("listen 8080;", format!("listen {listen};")),
            ("proxy_pass http://127.0.0.1:3000;", format!("proxy_pass http://{app};")),
        ],
    );
    let dir = scratch("nginx");
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
{server}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p").arg(&dir).arg("-c").arg(dir.join("nginx.conf"));
    cmd.arg("-e").arg(dir.join("error.log"));
    let mut proc = Proc(cmd.stderr(Stdio::null()).spawn().unwrap());
    wait_for(listen, &mut proc).await;
    Some(proc)
}

/// HAProxy with an example's `haproxy.cfg`; `None` if it is missing and skipping is allowed.
pub async fn haproxy(config: &str, listen: SocketAddr, app: SocketAddr) -> Option<Proc> {
    let bin = external("haproxy")?;
    let conf = example_config(
        config,
        &[
            ("bind 127.0.0.1:8443", format!("bind {listen}")),
            ("server app 127.0.0.1:8080", format!("server app {app}")),
        ],
    );
    let dir = scratch("haproxy");
    std::fs::write(dir.join("haproxy.cfg"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(dir.join("haproxy.cfg")).arg("-db");
    let mut proc = Proc(cmd.stdout(Stdio::null()).spawn().unwrap());
    wait_for(listen, &mut proc).await;
    Some(proc)
}
