//! Shared harness for the gateway's end-to-end tests: std only (`std::net`, `std::process`).
//!
//! - [`trueip_bin`] finds the `trueip` binary (built by the trueip-cli crate, not this one);
//! - [`Proc`] is a child process killed on drop, its output kept in the test's folder and
//!   printed when the test fails;
//! - [`Req`] / [`read_response`] are a raw HTTP/1.1 client over `TcpStream`;
//! - [`Upstream`] is a threaded upstream that records every request it receives;
//! - [`Nginx`], [`Haproxy`], [`Gateway`] start real peers on loopback with generated configs.
//!
//! Loopback addressing used throughout: test clients always connect from `127.0.0.1` (std
//! cannot bind a socket before connecting), so proxies in front of the gateway are told to
//! connect *from* other loopback addresses (`proxy_bind` in nginx, `source` in HAProxy; Linux
//! routes all of 127/8 to `lo`). The gateway trusts those, never `127.0.0.1`: the test client is
//! the untrusted real client, and its forged headers must lose.
//!
//! Every wait has a deadline, every socket has timeouts, every child dies with its guard.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Read/write timeout of every test socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a started process may take to listen.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long after connecting a client that sends nothing is running in the gateway: Linux
/// hands it over about a second after the handshake (`limits.defer_accept`), then its
/// task starts.
pub const SILENT_HANDED_OVER: Duration = Duration::from_millis(1500);

/// Where test clients come from (std cannot choose another source address).
pub const CLIENT_IP: &str = "127.0.0.1";
/// The address nginx connects from when it forwards (`proxy_bind`).
pub const NGINX_SOURCE: &str = "127.0.0.20";
/// The address HAProxy connects from when it forwards (`source`).
pub const HAPROXY_SOURCE: &str = "127.0.0.30";
/// Trusts both proxies above (127.0.0.16–127.0.0.31) and not the test client.
pub const PROXIES_CIDR: &str = "127.0.0.16/28";

/// Forged values a client writes into the forwarding headers; none may reach the upstream.
pub const FORGED_XFF: &str = "203.0.113.66";
pub const FORGED_REAL_IP: &str = "198.51.100.77";
pub const FORGED_FORWARDED_IP: &str = "192.0.2.88";

/// The headers an attacker sends: every spoofable spelling, and one forging a trusted proxy.
pub fn forged_headers() -> Vec<(String, String)> {
    [
        ("X-Forwarded-For", format!("{FORGED_XFF}, {NGINX_SOURCE}")),
        ("X-Real-IP", FORGED_REAL_IP.to_string()),
        ("Forwarded", format!("for={FORGED_FORWARDED_IP};proto=https")),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}

/// The forged client addresses, for "appears nowhere" checks.
pub const FORGED_IPS: [&str; 3] = [FORGED_XFF, FORGED_REAL_IP, FORGED_FORWARDED_IP];

// ---------------------------------------------------------------------------------------------
// Paths and external programs

/// `target/<profile>` of the running test binary (`target/<profile>/deps/<test>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The `trueip` binary: `$TRUEIP_BIN`, else the one beside this test's `deps/` folder.
pub fn trueip_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TRUEIP_BIN") {
        return PathBuf::from(bin);
    }
    let bin = profile_dir().join("trueip");
    assert!(
        bin.is_file(),
        "{} not found: the gateway tests run the `trueip` binary of the trueip-cli crate; \
         build it first (`cargo build -p trueip-cli`, as `bash .ci/run` does) or set TRUEIP_BIN",
        bin.display()
    );
    bin
}

/// `trueip serve --check` on `toml`, written to `dir/trueip.toml` (a folder that may hold
/// the files it names).
pub fn serve_check_in(dir: &Path, toml: &str) -> std::process::Output {
    let path = dir.join("trueip.toml");
    fs::write(&path, toml).expect("write trueip.toml");
    Command::new(trueip_bin())
        .args(["serve", "--check", "--config"])
        .arg(&path)
        .output()
        .expect("run trueip serve --check")
}

/// A fresh, empty `target/test-output/<name>/` for one test's configs, logs and screenshots.
pub fn test_dir(name: &str) -> PathBuf {
    let root = profile_dir().parent().map(|t| t.join("test-output")).expect("target dir");
    let dir = root.join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create test output dir");
    dir
}

/// An external program the test needs, or `None` (with a notice) when it is missing and
/// `TRUEIP_SKIP_EXTERNAL=1`. Without that variable a missing program fails the test.
pub fn external(program: &str, package: &str) -> Option<PathBuf> {
    let candidates =
        [PathBuf::from("/usr/sbin").join(program), PathBuf::from("/usr/bin").join(program)];
    let found = candidates.into_iter().find(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file())
        })
    });
    if found.is_some() {
        return found;
    }
    if std::env::var("TRUEIP_SKIP_EXTERNAL").as_deref() == Ok("1") {
        eprintln!(
            "SKIP: `{program}` not installed (Debian package `{package}`); TRUEIP_SKIP_EXTERNAL=1"
        );
        return None;
    }
    panic!(
        "`{program}` not found: install the Debian package `{package}` (`bash .ci/run` does), \
         or set TRUEIP_SKIP_EXTERNAL=1 to skip the tests that need it"
    );
}

/// The soft open-file limit of this process (children inherit it).
pub fn open_file_limit() -> u64 {
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1024)
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A loopback port nobody listened on a moment ago, and not one this test process was
/// handed before: the kernel may give a port it just gave back, and a test that asks for
/// two before starting a server on them would get the same one twice.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    // Holding each candidate until one is new keeps the kernel from offering it again.
    let mut held = Vec::new();
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
        held.push(l);
    }
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port())
}

/// Waits until `addr` accepts connections; fails early, with the log, if `proc` exits.
pub fn wait_for_port(addr: SocketAddr, proc: &mut Proc) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(status) = proc.exited() {
            panic!("{} exited ({status}) before listening on {addr}:\n{}", proc.name, proc.log());
        }
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {addr} within {START_TIMEOUT:?}:\n{}",
            proc.name,
            proc.log()
        );
        thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process, killed (and reaped) on drop. Its stdout and stderr go to files in the
/// test's folder; a failing test prints their tail.
pub struct Proc {
    pub name: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Proc {
        let out = dir.join(format!("{name}.stdout"));
        let err = dir.join(format!("{name}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create stdout file"))
            .stderr(File::create(&err).expect("create stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc { name: name.to_string(), child, out, err }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// stdout and stderr so far.
    pub fn log(&self) -> String {
        let out = fs::read_to_string(&self.out).unwrap_or_default();
        let err = fs::read_to_string(&self.err).unwrap_or_default();
        format!("--- {} stdout ---\n{out}--- {} stderr ---\n{err}", self.name, self.name)
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...) with the shell's `kill` builtin: std has no
    /// `kill(2)`, and `/bin/kill` (procps) may be absent.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{sig} {}", self.pid()))
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit by itself, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// Peak resident set size in KiB (`VmHWM`), while the process runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.log();
            let tail: String = {
                let lines: Vec<&str> = log.lines().collect();
                let start = lines.len().saturating_sub(60);
                lines.get(start..).unwrap_or_default().join("\n")
            };
            eprintln!("{tail}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Json {
        Json::parse(&self.text()).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} {:?}\n{}",
                self.status,
                self.headers,
                self.text()
            )
        })
    }
}

/// A request built by the test and written byte for byte.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn get(path: &str) -> Req {
        Req { method: "GET".into(), path: path.into(), headers: Vec::new(), body: Vec::new() }
    }

    pub fn post(path: &str, body: Vec<u8>) -> Req {
        Req { method: "POST".into(), path: path.into(), headers: Vec::new(), body }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn headers(mut self, headers: &[(String, String)]) -> Req {
        self.headers.extend(headers.iter().cloned());
        self
    }

    /// The request on the wire; adds `Host`, `Content-Length` and `Connection: close` unless set.
    pub fn to_bytes(&self) -> Vec<u8> {
        let has = |n: &str| self.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !has("host") {
            head.push_str("Host: trueip.test\r\n");
        }
        for (n, v) in &self.headers {
            let _ = write!(head, "{n}: {v}\r\n");
        }
        if !self.body.is_empty() && !has("content-length") && !has("transfer-encoding") {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        if !has("connection") {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Sends the request on a new connection and reads the response.
    pub fn send(&self, addr: SocketAddr) -> io::Result<Response> {
        let mut stream = connect(addr)?;
        stream.write_all(&self.to_bytes())?;
        read_response(&mut BufReader::new(stream), &self.method)
    }

    /// Like [`Req::send`], but with a PROXY protocol header written first.
    pub fn send_with_preamble(&self, addr: SocketAddr, preamble: &[u8]) -> io::Result<Response> {
        let mut stream = connect(addr)?;
        let mut bytes = preamble.to_vec();
        bytes.extend_from_slice(&self.to_bytes());
        stream.write_all(&bytes)?;
        read_response(&mut BufReader::new(stream), &self.method)
    }

    /// Sends and expects a response, with context in the panic message.
    pub fn must_send(&self, addr: SocketAddr) -> Response {
        self.send(addr).unwrap_or_else(|e| panic!("{} {} to {addr}: {e}", self.method, self.path))
    }
}

/// A loopback connection with read/write timeouts.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads a header block (request or response) up to the blank line; `None` on clean EOF before
/// the first byte.
/// A start line and its header lines.
type Head = (String, Vec<(String, String)>);

fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<Head>> {
    const MAX_HEAD: usize = 1 << 20;
    let mut first = String::new();
    let mut total = 0usize;
    let mut headers = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            if first.is_empty() && total == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside the header block",
            ));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(bad("header block over 1 MiB"));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if first.is_empty() {
            if line.is_empty() {
                continue; // tolerate a stray CRLF before the start line
            }
            first = line.to_string();
            continue;
        }
        if line.is_empty() {
            return Ok(Some((first, headers)));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line without colon: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Reads a body framed by `Transfer-Encoding: chunked` or `Content-Length`; `None` if neither.
fn read_framed_body<R: BufRead>(
    r: &mut R,
    headers: &[(String, String)],
) -> io::Result<Option<Vec<u8>>> {
    const MAX_BODY: u64 = 64 << 20;
    let chunked = header_value(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        for _ in 0..1_000_000 {
            let mut size_line = String::new();
            r.read_line(&mut size_line)?;
            let size_hex = size_line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        return Ok(Some(body));
                    }
                }
            }
            if body.len() as u64 + size > MAX_BODY {
                return Err(bad("chunked body over 64 MiB"));
            }
            let start = body.len();
            body.resize(start + size as usize, 0);
            r.read_exact(body.get_mut(start..).unwrap_or_default())?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
        return Err(bad("too many chunks"));
    }
    if let Some(len) = header_value(headers, "content-length") {
        let len: u64 = len.parse().map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err(bad("body over 64 MiB"));
        }
        let mut body = vec![0u8; len as usize];
        r.read_exact(&mut body)?;
        return Ok(Some(body));
    }
    Ok(None)
}

/// Reads one response; a body with no framing runs to EOF.
pub fn read_response<R: BufRead>(r: &mut R, method: &str) -> io::Result<Response> {
    let (status_line, headers) = read_head(r)?.ok_or_else(|| {
        io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response")
    })?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else {
        match read_framed_body(r, &headers)? {
            Some(body) => body,
            None => {
                let mut body = Vec::new();
                r.take(64 << 20).read_to_end(&mut body)?;
                body
            }
        }
    };
    Ok(Response { status, headers, body })
}

/// What a connection did when the test stopped writing to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The peer closed (FIN) after sending these bytes.
    Closed(Vec<u8>),
    /// The peer reset the connection after sending these bytes.
    Reset(Vec<u8>),
    /// Still open at the deadline, after sending these bytes.
    Open(Vec<u8>),
}

impl Ending {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Ending::Closed(b) | Ending::Reset(b) | Ending::Open(b) => b,
        }
    }

    pub fn is_closed(&self) -> bool {
        !matches!(self, Ending::Open(_))
    }

    /// The status code, if what was read starts with an HTTP status line.
    pub fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(self.bytes());
        let line = text.lines().next()?;
        if !line.starts_with("HTTP/") {
            return None;
        }
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Reads until the peer closes or resets, or `within` passes.
pub fn read_until_close(stream: &mut TcpStream, within: Duration) -> Ending {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ending::Open(got);
        }
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_millis(500))));
        match stream.read(&mut buf) {
            Ok(0) => return Ending::Closed(got),
            Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ending::Reset(got);
            }
            Err(_) => return Ending::Reset(got),
        }
    }
}

/// Writes `bytes` on a new connection, then reads until close (or `within`).
pub fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> Ending {
    let mut stream = connect(addr).expect("connect");
    if let Err(e) = stream.write_all(bytes) {
        // The peer may close before reading everything we meant to send.
        if !matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) {
            panic!("write to {addr}: {e}");
        }
    }
    read_until_close(&mut stream, within)
}

/// The gateway's own health endpoint, under the default admin prefix: it answers there with or
/// without an upstream (bare `/healthz` belongs to the app when there is one).
pub const HEALTHZ: &str = "/.trueip/healthz";

/// Panics unless `addr` answers `GET /.trueip/healthz` with 200: "the gateway still serves".
pub fn assert_healthy(addr: SocketAddr, after: &str) {
    let resp = Req::get(HEALTHZ)
        .send(addr)
        .unwrap_or_else(|e| panic!("gateway stopped serving after {after}: GET /healthz: {e}"));
    assert_eq!(resp.status, 200, "gateway unhealthy after {after}: {}", resp.text());
}

/// Where `needle` first stands in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The gateway's metrics page, under the default admin prefix.
pub fn metrics(addr: SocketAddr) -> String {
    let resp = Req::get("/.trueip/metrics").must_send(addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text()
}

/// The value of metric `name` in a metrics page: a name with its labels, or the sum of
/// every line of a bare name (with any labels); 0 when absent.
pub fn metric_in(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// [`metric_in`] of `addr`'s metrics page now.
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    metric_in(&metrics(addr), name)
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol

/// A PROXY protocol v1 line for a TCP connection from `src` to `dst`.
pub fn proxy_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {fam} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
}

/// The 12-byte PROXY protocol v2 signature.
pub const V2_SIG: [u8; 12] =
    [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// A PROXY protocol v2 header (PROXY command, STREAM) from `src` to `dst`, plus `tlvs` raw.
pub fn proxy_v2(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut addrs = Vec::new();
    let fam = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            addrs.extend_from_slice(&s.octets());
            addrs.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            addrs.extend_from_slice(&s.octets());
            addrs.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("proxy_v2: mixed address families"),
    };
    addrs.extend_from_slice(&src.port().to_be_bytes());
    addrs.extend_from_slice(&dst.port().to_be_bytes());
    addrs.extend_from_slice(tlvs);
    let mut out = V2_SIG.to_vec();
    out.push(0x21); // version 2, PROXY
    out.push(fam);
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&addrs);
    out
}

/// Decodes a PROXY v1 or v2 header at the start of `buf`: (source, destination, length), or
/// `None` for a LOCAL/UNKNOWN header; `Err` if `buf` holds no complete valid header.
pub fn parse_proxy(buf: &[u8]) -> Result<(Option<(SocketAddr, SocketAddr)>, usize), String> {
    if let Some(rest) = buf.strip_prefix(&V2_SIG[..]) {
        let [ver_cmd, fam, l0, l1, ..] = rest else {
            return Err("truncated v2 header".into());
        };
        let len = u16::from_be_bytes([*l0, *l1]) as usize;
        let body = rest.get(4..4 + len).ok_or("truncated v2 body")?;
        let total = 16 + len;
        if ver_cmd >> 4 != 2 {
            return Err(format!("bad v2 version byte {ver_cmd:#x}"));
        }
        if ver_cmd & 0x0F == 0 {
            return Ok((None, total));
        }
        let port = |b: &[u8], i: usize| -> Result<u16, String> {
            match b.get(i..i + 2) {
                Some([a, b]) => Ok(u16::from_be_bytes([*a, *b])),
                _ => Err("truncated v2 ports".into()),
            }
        };
        return match fam {
            0x11 => {
                let a: [u8; 4] = body.get(0..4).and_then(|s| s.try_into().ok()).ok_or("v4")?;
                let b: [u8; 4] = body.get(4..8).and_then(|s| s.try_into().ok()).ok_or("v4")?;
                Ok((
                    Some((
                        SocketAddr::new(IpAddr::from(a), port(body, 8)?),
                        SocketAddr::new(IpAddr::from(b), port(body, 10)?),
                    )),
                    total,
                ))
            }
            0x21 => {
                let a: [u8; 16] = body.get(0..16).and_then(|s| s.try_into().ok()).ok_or("v6")?;
                let b: [u8; 16] = body.get(16..32).and_then(|s| s.try_into().ok()).ok_or("v6")?;
                Ok((
                    Some((
                        SocketAddr::new(IpAddr::from(a), port(body, 32)?),
                        SocketAddr::new(IpAddr::from(b), port(body, 34)?),
                    )),
                    total,
                ))
            }
            0x00 => Ok((None, total)),
            other => Err(format!("unsupported v2 family {other:#x}")),
        };
    }
    if buf.starts_with(b"PROXY ") {
        let end = buf
            .windows(2)
            .take(107)
            .position(|w| w == b"\r\n")
            .ok_or("v1 line without CRLF in 107 bytes")?;
        let line = std::str::from_utf8(buf.get(..end).unwrap_or_default())
            .map_err(|_| "v1 line not UTF-8")?;
        let parts: Vec<&str> = line.split(' ').collect();
        return match parts.as_slice() {
            ["PROXY", "UNKNOWN", ..] => Ok((None, end + 2)),
            ["PROXY", "TCP4" | "TCP6", s, d, sp, dp] => {
                let parse = |ip: &str, port: &str| -> Result<SocketAddr, String> {
                    Ok(SocketAddr::new(
                        ip.parse().map_err(|_| format!("bad v1 address {ip:?}"))?,
                        port.parse().map_err(|_| format!("bad v1 port {port:?}"))?,
                    ))
                };
                Ok((Some((parse(s, sp)?, parse(d, dp)?)), end + 2))
            }
            _ => Err(format!("bad v1 line {line:?}")),
        };
    }
    Err("no PROXY header".into())
}

// ---------------------------------------------------------------------------------------------
// Upstream

/// How the test upstream answers.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// 200 with the request's headers as a JSON body; keep-alive.
    Echo,
    /// Waits this long before answering like [`Behavior::Echo`].
    Delay(Duration),
    /// Reads only the request head, sends a 200 promising 1 MiB, 1 KiB of it, then closes with
    /// the request body unread (Linux answers such a close with RST).
    ResetMidBody,
    /// Accepts and closes at once, without reading.
    CloseImmediately,
    /// A TCP upstream for the gateway's TCP mode: reads a PROXY header, records its source,
    /// then echoes the stream's bytes back until EOF.
    ProxyEcho,
}

/// One request (or, for [`Behavior::ProxyEcho`], one connection) the upstream received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The TCP peer of the upstream connection (the gateway).
    pub peer: SocketAddr,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// `ProxyEcho` only: the decoded PROXY header (`None` for LOCAL), or the decode error.
    pub proxy: Option<Result<Option<(SocketAddr, SocketAddr)>, String>>,
}

impl Seen {
    /// All values of header `name`, one per line received.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The only value of header `name`; panics if it came as zero or several lines.
    pub fn one(&self, name: &str) -> &str {
        match self.all(name).as_slice() {
            [v] => v,
            other => panic!(
                "upstream expected exactly one {name} line, got {other:?}; all headers: {:#?}",
                self.headers
            ),
        }
    }
}

/// A threaded upstream server on loopback that records what it receives.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start(behavior: Behavior) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, stop2, conns2) = (seen.clone(), stop.clone(), connections.clone());
        thread::spawn(move || {
            // Bounded: a test never needs more than this many upstream connections.
            for stream in listener.incoming().take(20_000) {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                conns2.fetch_add(1, Ordering::SeqCst);
                let (seen, behavior) = (seen2.clone(), behavior.clone());
                thread::spawn(move || {
                    let _ = serve_upstream(stream, &behavior, &seen);
                });
            }
        });
        Upstream { addr, seen, stop, connections }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The last request received; panics if none.
    pub fn last(&self) -> Seen {
        self.requests().pop().expect("the upstream received no request")
    }

    /// Waits until at least `n` requests arrived, up to `within`.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.requests();
            if seen.len() >= n || Instant::now() >= deadline {
                return seen;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn record(seen: &Mutex<Vec<Seen>>, s: Seen) {
    if let Ok(mut v) = seen.lock() {
        v.push(s);
    }
}

fn serve_upstream(
    stream: TcpStream,
    behavior: &Behavior,
    seen: &Mutex<Vec<Seen>>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let peer = stream.peer_addr()?;
    let mut writer = stream.try_clone()?;
    match behavior {
        Behavior::CloseImmediately => {
            drop(stream);
            return Ok(());
        }
        Behavior::ProxyEcho => return proxy_echo(stream, peer, seen),
        Behavior::ResetMidBody => {
            // Read the head byte by byte so the request body stays unread in the socket.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            let mut reader = &stream;
            while !head.ends_with(b"\r\n\r\n") && head.len() < (1 << 20) {
                if reader.read(&mut byte)? == 0 {
                    return Ok(());
                }
                head.push(byte[0]);
            }
            let mut r = BufReader::new(head.as_slice());
            if let Some((line, headers)) = read_head(&mut r)? {
                record(seen, seen_from(peer, &line, headers, 0));
            }
            writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")?;
            writer.write_all(&[b'x'; 1024])?;
            writer.flush()?;
            thread::sleep(Duration::from_millis(200));
            return Ok(()); // dropping both handles closes with unread data: RST
        }
        Behavior::Echo | Behavior::Delay(_) => {}
    }
    let mut reader = BufReader::new(stream);
    for _ in 0..100_000 {
        let Some((line, headers)) = read_head(&mut reader)? else {
            return Ok(());
        };
        let body = read_framed_body(&mut reader, &headers)?.unwrap_or_default();
        let s = seen_from(peer, &line, headers, body.len());
        if let Behavior::Delay(d) = behavior {
            thread::sleep(*d);
        }
        let json = echo_json(&s);
        record(seen, s);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        writer.write_all(resp.as_bytes())?;
    }
    Ok(())
}

fn seen_from(
    peer: SocketAddr,
    line: &str,
    headers: Vec<(String, String)>,
    body_len: usize,
) -> Seen {
    let mut parts = line.split_whitespace();
    Seen {
        peer,
        method: parts.next().unwrap_or("").to_string(),
        path: parts.next().unwrap_or("").to_string(),
        headers,
        body_len,
        proxy: None,
    }
}

fn proxy_echo(stream: TcpStream, peer: SocketAddr, seen: &Mutex<Vec<Seen>>) -> io::Result<()> {
    let mut reader = &stream;
    let mut writer = &stream;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until a header decodes (or clearly cannot), at most 64 KiB.
    let (proxy, used) = loop {
        let n = reader.read(&mut chunk)?;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match parse_proxy(&buf) {
            Ok((addrs, used)) => break (Ok(addrs), used),
            Err(e) if n == 0 || buf.len() > 65_536 || !could_be_proxy(&buf) => break (Err(e), 0),
            Err(_) => {}
        }
    };
    record(
        seen,
        Seen {
            peer,
            method: String::new(),
            path: String::new(),
            headers: Vec::new(),
            body_len: 0,
            proxy: Some(proxy),
        },
    );
    writer.write_all(buf.get(used..).unwrap_or_default())?;
    for _ in 0..1_000_000 {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        writer.write_all(chunk.get(..n).unwrap_or_default())?;
    }
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// Whether `buf` is a prefix of some PROXY header (so more bytes may complete it).
fn could_be_proxy(buf: &[u8]) -> bool {
    let v2 = (buf.len() < 12 && V2_SIG.starts_with(buf)) || buf.starts_with(&V2_SIG);
    let v1 = (buf.len() < 6 && b"PROXY ".starts_with(buf))
        || (buf.starts_with(b"PROXY ") && buf.len() < 108);
    v1 || v2
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn echo_json(s: &Seen) -> String {
    let headers: Vec<String> =
        s.headers.iter().map(|(n, v)| format!("[{},{}]", json_str(n), json_str(v))).collect();
    format!(
        "{{\"peer\":{},\"method\":{},\"path\":{},\"headers\":[{}],\"body_len\":{}}}",
        json_str(&s.peer.to_string()),
        json_str(&s.method),
        json_str(&s.path),
        headers.join(","),
        s.body_len
    )
}

// ---------------------------------------------------------------------------------------------
// A small JSON reader (the tests need no dependency for it)

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser { s: text.as_bytes(), i: 0, depth: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    /// `self[key]`, or `Null`.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(key).unwrap_or(&Json::Null),
            _ => &Json::Null,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    /// The string at `key`, or a panic naming the key and the document.
    pub fn str_at(&self, key: &str) -> &str {
        self.get(key).as_str().unwrap_or_else(|| panic!("JSON has no string {key:?}: {self:?}"))
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s.get(self.i..self.i + word.len()) == Some(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(format!("bad literal at {}", self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > 128 {
            return Err("nested too deep".into());
        }
        self.ws();
        let v = match self.peek().ok_or("unexpected end")? {
            b'n' => self.lit("null", Json::Null),
            b't' => self.lit("true", Json::Bool(true)),
            b'f' => self.lit("false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(format!("expected , or ] at {}", self.i)),
                        }
                    }
                }
                Ok(Json::Arr(items))
            }
            b'{' => {
                self.i += 1;
                let mut map = BTreeMap::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.ws();
                        if self.peek() != Some(b':') {
                            return Err(format!("expected : at {}", self.i));
                        }
                        self.i += 1;
                        let v = self.value()?;
                        map.insert(k, v);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(format!("expected , or }} at {}", self.i)),
                        }
                    }
                }
                Ok(Json::Obj(map))
            }
            _ => {
                let start = self.i;
                while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.i += 1;
                }
                std::str::from_utf8(self.s.get(start..self.i).unwrap_or_default())
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at {start}"))
            }
        };
        self.depth -= 1;
        v
    }

    fn string(&mut self) -> Result<String, String> {
        if self.peek() != Some(b'"') {
            return Err(format!("expected string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek().ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| "string not UTF-8".into()),
                b'\\' => {
                    let e = self.peek().ok_or("unterminated escape")?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.i..self.i + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or("bad \\u escape")?;
                            self.i += 4;
                            // Surrogates are not needed by these tests: keep a placeholder.
                            let ch = char::from_u32(hex).unwrap_or('\u{FFFD}');
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

/// Polls `probe` every 50 ms until it gives `Some`, for at most `within`, then fails with
/// `why()`: for what the gateway logs, counts or applies in the background.
pub fn eventually<T>(
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
    why: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{}", why());
        thread::sleep(Duration::from_millis(50));
    }
}

/// The first access-log line of `gw` (its stdout) that holds `needle`, within 5 s: a
/// background thread writes them.
pub fn access_log_line(gw: &Gateway, needle: &str) -> String {
    let stdout = gw.dir.join("trueip.stdout");
    eventually(
        Duration::from_secs(5),
        || {
            let out = fs::read_to_string(&stdout).unwrap_or_default();
            out.lines().find(|l| l.contains(needle)).map(str::to_owned)
        },
        || format!("no access-log line with {needle:?} on stdout:\n{}", gw.proc.log()),
    )
}

/// The gateway's log once it holds `line`, within 5 s.
pub fn logged(proc: &Proc, line: &str) -> String {
    eventually(
        Duration::from_secs(5),
        || Some(proc.log()).filter(|log| log.contains(line)),
        || format!("{line:?} not logged:\n{}", proc.log()),
    )
}

/// The metrics of `addr` once they hold `line`, within 5 s (some are counted as a
/// connection's task ends, after the client saw the close).
pub fn counted(addr: SocketAddr, line: &str) -> String {
    eventually(
        Duration::from_secs(5),
        || Some(metrics(addr)).filter(|m| m.contains(line)),
        || format!("{line:?} not counted:\n{}", metrics(addr)),
    )
}

// ---------------------------------------------------------------------------------------------
// Peers: trueip, nginx, HAProxy

/// A running `trueip serve`.
pub struct Gateway {
    pub proc: Proc,
    /// The first `--listen` address.
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Gateway {
    /// Starts `trueip serve --listen <addr> <args>` and waits until it listens on every address
    /// in `also_listen` as well.
    pub fn start(dir: &Path, addr: SocketAddr, args: &[&str]) -> Gateway {
        Gateway::start_named("trueip", dir, addr, args, &[])
    }

    /// A gateway behind the tests' proxies: it trusts [`PROXIES_CIDR`] and walks
    /// X-Forwarded-For from the right, forwarding to `upstream` (the whoami page if `None`).
    pub fn behind_proxies(dir: &Path, addr: SocketAddr, upstream: Option<&str>) -> Gateway {
        let mut args =
            vec!["--trust", PROXIES_CIDR, "--strategy", "rightmost-untrusted", "--from", "xff"];
        if let Some(url) = upstream {
            args.splice(0..0, ["--upstream", url]);
        }
        Gateway::start(dir, addr, &args)
    }

    pub fn start_named(
        name: &str,
        dir: &Path,
        addr: SocketAddr,
        args: &[&str],
        also_listen: &[SocketAddr],
    ) -> Gateway {
        let mut cmd = Command::new(trueip_bin());
        cmd.arg("serve").arg("--listen").arg(addr.to_string()).args(args);
        cmd.env("RUST_BACKTRACE", "1");
        let _ = fs::write(dir.join(format!("{name}.cmdline")), format!("{cmd:?}\n"));
        let mut proc = Proc::spawn(name, cmd, dir);
        wait_for_port(addr, &mut proc);
        for a in also_listen {
            wait_for_port(*a, &mut proc);
        }
        Gateway { proc, addr, dir: dir.to_path_buf() }
    }

    /// Starts `trueip serve --config <dir>/trueip.toml --listen <addr> <args>` with `toml`
    /// written there first (flags replace the file's listeners).
    pub fn start_with_toml(dir: &Path, addr: SocketAddr, toml: &str, args: &[&str]) -> Gateway {
        let path = dir.join("trueip.toml");
        fs::write(&path, toml).expect("write trueip.toml");
        let path = path.to_string_lossy().into_owned();
        let mut all = vec!["--config", path.as_str()];
        all.extend_from_slice(args);
        Gateway::start_named("trueip", dir, addr, &all, &[])
    }

    /// Starts `trueip serve --config <dir>/trueip.toml <args>` with `toml` written there first;
    /// waits for every address in `listen`.
    pub fn start_with_config(
        dir: &Path,
        toml: &str,
        listen: &[SocketAddr],
        args: &[&str],
    ) -> Gateway {
        let path = dir.join("trueip.toml");
        fs::write(&path, toml).expect("write trueip.toml");
        let mut cmd = Command::new(trueip_bin());
        cmd.arg("serve").arg("--config").arg(&path).args(args);
        cmd.env("RUST_BACKTRACE", "1");
        let mut proc = Proc::spawn("trueip", cmd, dir);
        for a in listen {
            wait_for_port(*a, &mut proc);
        }
        Gateway {
            proc,
            addr: *listen.first().expect("at least one listen address"),
            dir: dir.to_path_buf(),
        }
    }

    /// A gateway with one worker, on one listener of its own, in front of the HTTP
    /// `upstream`; `extra` is appended to its config.
    pub fn one_worker(dir: &Path, upstream: SocketAddr, extra: &str) -> Gateway {
        let listen = free_addr();
        let toml = format!(
            "[upstream]\nurl = \"http://{upstream}\"\n[limits]\nworkers = 1\n\
             [[listen]]\naddress = \"{listen}\"\n{extra}"
        );
        Gateway::start_with_config(dir, &toml, &[listen], &[])
    }
}

/// A running nginx (single process, no daemon), configured by the test.
pub struct Nginx {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx with `http_body` inside its `http { }` block (one or more `server`s; the
    /// first must listen on `addr`). `None` if nginx is missing and skipping is allowed.
    pub fn start(dir: &Path, addr: SocketAddr, http_body: &str) -> Option<Nginx> {
        let bin = external("nginx", "nginx")?;
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/nginx.error.log info;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log {d}/nginx.access.log;\n  client_body_temp_path {d}/nginx-body;\n  \
             proxy_temp_path {d}/nginx-proxy;\n  fastcgi_temp_path {d}/nginx-fastcgi;\n  \
             uwsgi_temp_path {d}/nginx-uwsgi;\n  scgi_temp_path {d}/nginx-scgi;\n{http_body}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        fs::write(&path, conf).expect("write nginx.conf");
        let mut cmd = Command::new(bin);
        cmd.arg("-p").arg(dir).arg("-c").arg(&path).arg("-e").arg(dir.join("nginx.error.log"));
        let mut proc = Proc::spawn("nginx", cmd, dir);
        wait_for_port(addr, &mut proc);
        Some(Nginx { proc, addr })
    }

    /// nginx on `addr` in front of `to`, connecting from [`NGINX_SOURCE`] and appending
    /// its peer to `X-Forwarded-For` (`$proxy_add_x_forwarded_for`).
    pub fn appending(dir: &Path, addr: SocketAddr, to: SocketAddr) -> Option<Nginx> {
        let server = format!(
            "  server {{
    listen {addr};
    location / {{
      proxy_pass http://{to};
      proxy_bind {NGINX_SOURCE};
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}"
        );
        Nginx::start(dir, addr, &server)
    }
}

/// A running HAProxy (`-db`: foreground, no daemon), configured by the test.
pub struct Haproxy {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Haproxy {
    /// Starts HAProxy with `sections` (frontends and backends) after a fixed `global`/`defaults`;
    /// waits for `addr`. `None` if haproxy is missing and skipping is allowed.
    pub fn start(dir: &Path, addr: SocketAddr, sections: &str) -> Option<Haproxy> {
        let bin = external("haproxy", "haproxy")?;
        let conf = format!(
            "global\n  maxconn 4096\n\ndefaults\n  timeout connect 5s\n  timeout client 30s\n  \
             timeout server 30s\n\n{sections}\n"
        );
        let path = dir.join("haproxy.cfg");
        fs::write(&path, conf).expect("write haproxy.cfg");
        let mut cmd = Command::new(bin);
        cmd.arg("-f").arg(&path).arg("-db");
        let mut proc = Proc::spawn("haproxy", cmd, dir);
        wait_for_port(addr, &mut proc);
        Some(Haproxy { proc, addr })
    }

    /// HAProxy in TCP mode on `front`, relaying every connection to `backend` behind a
    /// PROXY v2 header, connecting from [`HAPROXY_SOURCE`] (an L4 balancer / NLB stand-in).
    pub fn send_proxy_v2(dir: &Path, front: SocketAddr, backend: SocketAddr) -> Option<Haproxy> {
        let sections = format!(
            "frontend fe\n  mode tcp\n  bind {front}\n  default_backend be\nbackend be\n  mode tcp\n  \
             server next {backend} send-proxy-v2 source {HAPROXY_SOURCE}\n"
        );
        Haproxy::start(dir, front, &sections)
    }
}

/// Asserts that a request the upstream saw names `client` as the client everywhere the gateway
/// writes it, in exactly one line each, and that no forged address appears in any header.
pub fn assert_clean_forwarding(seen: &Seen, client: &str, context: &str) {
    let ctx = |what: &str| format!("{context}: {what}; upstream saw {:#?}", seen.headers);
    assert_eq!(seen.one("X-Real-IP"), client, "{}", ctx("X-Real-IP"));
    let xff = seen.one("X-Forwarded-For");
    let first = xff.split(',').next().unwrap_or("").trim();
    assert_eq!(first, client, "{}", ctx("X-Forwarded-For names the client first"));
    let fwd = seen.one("Forwarded");
    let first_for = fwd
        .split([',', ';'])
        .map(str::trim)
        .find_map(|p| p.get(..4).filter(|k| k.eq_ignore_ascii_case("for=")).and(p.get(4..)))
        .unwrap_or("")
        .trim_matches('"');
    let first_for =
        first_for.strip_prefix('[').and_then(|s| s.split(']').next()).unwrap_or(first_for);
    assert_eq!(first_for, client, "{}", ctx("Forwarded for= names the client first"));
    seen.one("X-Forwarded-Proto");
    for forged in FORGED_IPS {
        for (n, v) in &seen.headers {
            assert!(
                !v.contains(forged),
                "{}",
                ctx(&format!("forged {forged} reached the upstream in {n}: {v}"))
            );
        }
    }
}

/// Runs `trueip serve --check --config <toml>`, the file written under the test directory
/// `dir`: (exit code, stderr).
pub fn serve_check(dir: &str, toml: &str) -> (Option<i32>, String) {
    let out = serve_check_in(&test_dir(dir), toml);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A scripted upstream on loopback: each of the first `limit` connections goes to `each`
/// on a thread of its own. Its address.
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
pub fn serve_on_loopback<F>(limit: usize, each: F) -> SocketAddr
where
    F: Fn(TcpStream) + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(limit) {
            let Ok(stream) = stream else { continue };
            let each = each.clone();
            thread::spawn(move || each(stream));
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 clients

/// One HTTP/2 request over cleartext prior knowledge (h2c) to `gw`, on a new connection:
/// `uri` (whose path may be anything `http` takes), header `lines`, an optional body. The
/// status, the body (read to its end, within bounds) and the trailers, or why it failed.
pub fn h2_exchange(
    gw: SocketAddr,
    method: &str,
    uri: http::Uri,
    lines: &[(&str, &str)],
    body: Option<&'static str>,
) -> Result<(u16, String, Option<http::HeaderMap>), String> {
    h2_response(gw, method, uri, lines, body).map(|r| (r.status, r.body, r.trailers))
}

/// What [`h2_response`] received.
pub struct H2Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub trailers: Option<http::HeaderMap>,
}

/// [`h2_exchange`], with the response's header lines.
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
pub fn h2_response(
    gw: SocketAddr,
    method: &str,
    uri: http::Uri,
    lines: &[(&str, &str)],
    body: Option<&'static str>,
) -> Result<H2Response, String> {
    block_on(async move {
        let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::builder().method(method).uri(uri);
        for (n, v) in lines {
            req = req.header(*n, *v);
        }
        let (resp, mut send) = client
            .send_request(req.body(()).unwrap(), body.is_none())
            .map_err(|e| e.to_string())?;
        if let Some(body) = body {
            send.send_data(bytes::Bytes::from_static(body.as_bytes()), true)
                .map_err(|e| e.to_string())?;
        }
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .map_err(|_| "no response".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let (head, mut body) = resp.into_parts();
        let mut bytes = Vec::new();
        for _ in 0..10_000 {
            match tokio::time::timeout(Duration::from_secs(10), body.data()).await {
                Ok(Some(Ok(d))) => {
                    let _ = body.flow_control().release_capacity(d.len());
                    bytes.extend_from_slice(&d);
                }
                Ok(Some(Err(e))) => return Err(format!("{status} after {bytes:?}: {e}")),
                Ok(None) => break,
                Err(_) => return Err("body stalled".into()),
            }
        }
        let trailers = tokio::time::timeout(Duration::from_secs(10), body.trailers())
            .await
            .map_err(|_| "trailers stalled".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(H2Response {
            status,
            headers: head.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            trailers,
        })
    })
}

/// Runs `task` to its end on a new current-thread tokio runtime: a test's async client, or
/// (inside `std::thread::spawn`) its server.
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
pub fn block_on<F: std::future::Future>(task: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(task)
}

/// `http://{authority}{path}`, with `path` as given (no check that it starts with `/`).
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
pub fn uri(authority: &str, path: &str) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority.parse().unwrap());
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(path).unwrap());
    http::Uri::from_parts(parts).unwrap()
}
