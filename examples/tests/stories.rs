//! Each example program, started on loopback and sent requests the way its story's
//! proxies would send them — through a real nginx and HAProxy where the story has one.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so one machine plays every host: the proxies
//! connect from 127.0.0.20 (nginx, `proxy_bind`), 127.0.0.21 (the ALB: the test binds its
//! socket there) and 127.0.0.30 (the NLB: HAProxy's `source`), all inside the
//! 127.0.0.16/28 the examples are told to trust. The attacker is 127.0.0.1, never trusted;
//! the viewer behind HAProxy is 127.0.0.77.
//!
//! nginx and HAProxy come from `scripts/test-deps`; without them these tests fail, unless
//! `TRUEIP_SKIP_EXTERNAL=1` (then the parts that need them print a skip notice).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const DEADLINE: Duration = Duration::from_secs(10);
const PROXIES: &str = "127.0.0.16/28";
const NGINX: &str = "127.0.0.20";
const ALB: &str = "127.0.0.21";
const NLB: &str = "127.0.0.30";
const ATTACKER: &str = "127.0.0.1";

/// A child process, killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts an example with `env`; returns it and the address it printed.
fn example(bin: &str, env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(bin);
    cmd.env("LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped());
    let mut child = Proc(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{bin} printed {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    tokio::time::timeout(DEADLINE, socket.connect(to))
        .await
        .unwrap()
        .unwrap()
}

/// Sends `preamble` and a `GET /` with `headers`; the response body, or `None` if the
/// server closed without answering.
async fn get(
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
            "`{program}` not found: `bash scripts/test-deps` installs it"
        );
        eprintln!("SKIP: `{program}` not installed; TRUEIP_SKIP_EXTERNAL=1");
    }
    found
}

/// A fresh folder for one proxy's config and logs.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trueip-examples-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
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

/// nginx on `listen`, appending to X-Forwarded-For, forwarding to `app` from [`NGINX`].
async fn nginx(listen: SocketAddr, app: SocketAddr) -> Option<Proc> {
    let bin = external("nginx")?;
    let dir = scratch("nginx");
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    listen {listen};
    location / {{
      proxy_pass http://{app};
      proxy_bind {NGINX};
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"));
    cmd.arg("-e").arg(dir.join("error.log"));
    let mut proc = Proc(cmd.stderr(Stdio::null()).spawn().unwrap());
    wait_for(listen, &mut proc).await;
    Some(proc)
}

/// HAProxy in TCP mode on `listen`, prepending a PROXY v2 header, connecting from [`NLB`].
async fn haproxy_send_proxy_v2(listen: SocketAddr, app: SocketAddr) -> Option<Proc> {
    let bin = external("haproxy")?;
    let dir = scratch("haproxy");
    let conf = format!(
        "defaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend nlb\n  mode tcp\n  bind {listen}\n  default_backend app\n\
         backend app\n  mode tcp\n  server app {app} send-proxy-v2 source {NLB}\n"
    );
    std::fs::write(dir.join("haproxy.cfg"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(dir.join("haproxy.cfg")).arg("-db");
    let mut proc = Proc(cmd.stdout(Stdio::null()).spawn().unwrap());
    wait_for(listen, &mut proc).await;
    Some(proc)
}

#[tokio::test]
async fn axum_behind_cloudfront_alb_nginx() {
    let (_app, app) = example(
        env!("CARGO_BIN_EXE_axum_cloudfront_alb"),
        &[("TRUST", PROXIES)],
    );
    let front = free_addr();
    if let Some(_nginx) = nginx(front, app).await {
        // As the ALB forwards it: the viewer forged 198.51.100.66; CloudFront appended the
        // viewer, the ALB the CloudFront edge (13.32.4.5, in the stand-in range).
        let xff = [("X-Forwarded-For", "198.51.100.66, 203.0.113.195, 13.32.4.5")];
        let body = get(ALB, front, b"", &xff).await.unwrap();
        assert_eq!(
            body,
            "client: 203.0.113.195\nnginx: 127.0.0.20\ntrusted hops: 3\nwarnings: spoof_attempt\n"
        );
        // Someone who reaches nginx without the CDN and the ALB is recorded by nginx.
        let xff = [("X-Forwarded-For", "203.0.113.195, 13.32.4.5")];
        let body = get(ATTACKER, front, b"", &xff).await.unwrap();
        assert!(body.starts_with("client: 127.0.0.1\n"), "{body}");
    }
    // And someone who goes around nginx too is the peer, whatever the headers say.
    let xff = [("X-Forwarded-For", "203.0.113.195, 13.32.4.5, 127.0.0.21")];
    let body = get(ATTACKER, app, b"", &xff).await.unwrap();
    assert_eq!(
        body,
        "client: 127.0.0.1\nnginx: 127.0.0.1\ntrusted hops: 0\nwarnings: header_from_untrusted_peer\n"
    );
}

/// A PROXY v2 header as an NLB writes it behind PrivateLink: 203.0.113.7:51000 →
/// 10.0.0.9:80, and TLV 0xEA subtype 0x01, the VPC endpoint.
fn nlb_header() -> Vec<u8> {
    let vpce = b"vpce-08d2bf15fac5001c9";
    let mut out = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    out.extend_from_slice(&[0, 38, 203, 0, 113, 7, 10, 0, 0, 9, 0xC7, 0x38, 0, 80]);
    out.extend_from_slice(&[0xEA, 0, 23, 0x01]);
    out.extend_from_slice(vpce);
    out
}

#[tokio::test]
async fn axum_behind_an_nlb_with_proxy_protocol_v2() {
    let nlbs = format!("{NLB}/32");
    let (_app, app) = example(env!("CARGO_BIN_EXE_axum_nlb_proxy_v2"), &[("NLB", &nlbs)]);
    let body = get(NLB, app, &nlb_header(), &[]).await.unwrap();
    assert_eq!(
        body,
        "client: 203.0.113.7:51000\nsource: ProxyProtocol\nnlb: 127.0.0.30\nvpc endpoint: vpce-08d2bf15fac5001c9\n"
    );
    // The same header from anyone else closes the connection.
    assert_eq!(get(ATTACKER, app, &nlb_header(), &[]).await, None);
    // Without one, they are a direct client.
    let body = get(ATTACKER, app, b"", &[("X-Forwarded-For", "203.0.113.7")])
        .await
        .unwrap();
    assert!(body.starts_with("client: 127.0.0.1:"), "{body}");
    assert!(body.contains("\nsource: Peer\n"), "{body}");

    let front = free_addr();
    if let Some(_haproxy) = haproxy_send_proxy_v2(front, app).await {
        let body = get("127.0.0.77", front, b"", &[]).await.unwrap();
        assert!(body.starts_with("client: 127.0.0.77:"), "{body}");
        assert!(
            body.ends_with("\nnlb: 127.0.0.30\nvpc endpoint: -\n"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn hyper_show_me_my_original_ip_behind_an_alb() {
    let (_app, app) = example(env!("CARGO_BIN_EXE_hyper_alb_whoami"), &[("VPC", PROXIES)]);
    // The ALB appended the client it saw and set the scheme and port.
    let alb = [
        ("X-Forwarded-For", "198.51.100.66, 203.0.113.195"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
    ];
    let body = get(ALB, app, b"", &alb).await.unwrap();
    assert_eq!(
        body,
        "original ip: 203.0.113.195\ndirect ip: 127.0.0.21\n\
         x-forwarded-for: 198.51.100.66, 203.0.113.195\nx-forwarded-proto: https\n\
         x-forwarded-port: 443\nbelieved proto: https\nbelieved port: 443\n\
         warnings: spoof_attempt\n"
    );
    // The same headers straight from the attacker: shown, not believed.
    let body = get(ATTACKER, app, b"", &alb).await.unwrap();
    assert!(
        body.starts_with("original ip: 127.0.0.1\ndirect ip: 127.0.0.1\n"),
        "{body}"
    );
    assert!(
        body.contains("\nbelieved proto: -\nbelieved port: -\n"),
        "{body}"
    );
}
