//! The actix-nginx story, run for real: the example binary on 127.0.0.1 trusting only
//! 127.0.0.2, and `/usr/sbin/nginx` in front of it with the example's own `nginx.conf` (its
//! ports replaced), connecting to the app from 127.0.0.2 (`proxy_bind`). The client speaks
//! from 127.0.0.3, an address neither nginx nor the app has, so every answer says who was
//! believed.
//!
//! Needs nginx (`scripts/test-deps` installs it). Without it the test fails, unless
//! `TRUEIP_SKIP_EXTERNAL=1` is set.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{fs, thread};

use socket2::{Domain, Socket, Type};

const NGINX: &str = "/usr/sbin/nginx";
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The client: on Linux every 127/8 address is loopback, and this one is nobody's.
const CLIENT: [u8; 4] = [127, 0, 0, 3];

fn nginx_present() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    let fix = "run `bash scripts/test-deps` or `apt-get install -y nginx`";
    if std::env::var("TRUEIP_SKIP_EXTERNAL").as_deref() == Ok("1") {
        eprintln!("SKIP: {NGINX} not installed (TRUEIP_SKIP_EXTERNAL=1); to run it, {fix}");
        return false;
    }
    panic!("this test needs {NGINX}: {fix}; or set TRUEIP_SKIP_EXTERNAL=1 to skip it");
}

/// A child process killed on drop, so a failing assertion leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example binary, listening on an ephemeral port of 127.0.0.1, trusting 127.0.0.2.
fn start_app() -> (Running, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_actix-nginx"))
        .args(["127.0.0.1:0", "127.0.0.2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the actix-nginx example");
    let stdout = child.stdout.take().expect("piped stdout");
    let app = Running(child);
    let addr = listening_on(stdout);
    (app, addr)
}

/// The address from the app's first line, `listening on http://ADDR`.
fn listening_on(stdout: ChildStdout) -> SocketAddr {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the app's first line");
    line.trim()
        .strip_prefix("listening on http://")
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
}

/// A directory of our own under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("trueip-actix-nginx-{}-{nanos}", std::process::id()));
        fs::create_dir_all(dir.join("tmp")).expect("create the nginx directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The example's `nginx.conf` server block, listening on `port` and proxying to `app`,
/// inside the least of an nginx configuration that runs unprivileged in `dir`.
fn nginx_conf(dir: &Path, port: u16, app: SocketAddr) -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("actix-nginx/nginx.conf");
    let server = fs::read_to_string(&example).expect("the example's nginx.conf");
    let (listen, upstream) = ("listen 8080;", "proxy_pass http://127.0.0.1:8000;");
    // Fails when someone edits the example's config past what the test can run, rather
    // than the test quietly running a config of its own.
    assert!(
        server.contains(listen) && server.contains(upstream),
        "{} must keep `{listen}` and `{upstream}` for this test to substitute",
        example.display()
    );
    let server = server
        .replace(listen, &format!("listen 127.0.0.1:{port};"))
        .replace(upstream, &format!("proxy_pass http://{app};"));
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid "{d}/nginx.pid";
error_log "{d}/error.log" warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path "{d}/tmp/body";
    proxy_temp_path "{d}/tmp/proxy";
    fastcgi_temp_path "{d}/tmp/fastcgi";
    uwsgi_temp_path "{d}/tmp/uwsgi";
    scgi_temp_path "{d}/tmp/scgi";
{server}
}}
"#
    )
}

/// nginx in front of `app`, on a free port of 127.0.0.1.
fn start_nginx(dir: &TempDir, app: SocketAddr) -> (Running, SocketAddr) {
    // Picked free and released before nginx binds it: a port taken in between fails the
    // start below, with nginx's error log.
    let port =
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let conf = dir.0.join("nginx.conf");
    fs::write(&conf, nginx_conf(&dir.0, port, app)).expect("write nginx.conf");
    let mut prefix = dir.0.clone().into_os_string();
    prefix.push("/");
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.0.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let mut nginx = Running(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + IO_TIMEOUT;
    while TcpStream::connect_timeout(&addr, IO_TIMEOUT).is_err() {
        let log = || fs::read_to_string(dir.0.join("error.log")).unwrap_or_default();
        if let Ok(Some(status)) = nginx.0.try_wait() {
            panic!("nginx exited with {status}:\n{}", log());
        }
        assert!(Instant::now() < deadline, "nginx not listening:\n{}", log());
        thread::sleep(Duration::from_millis(20));
    }
    (nginx, addr)
}

/// `GET /` from `from` to `to`, with extra header lines; the status and the body.
fn get(from: [u8; 4], to: SocketAddr, headers: &[&str]) -> (u16, String) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket.bind(&SocketAddr::from((from, 0)).into()).expect("bind the client's address");
    socket.connect_timeout(&to.into(), IO_TIMEOUT).expect("connect");
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("set a timeout");
    let mut request = String::from("GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a whole response");
    let (head, body) =
        response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The `client` line of the app's answer.
fn client(response: &(u16, String)) -> &str {
    assert_eq!(response.0, 200, "{}", response.1);
    response
        .1
        .lines()
        .find_map(|line| line.strip_prefix("client "))
        .unwrap_or_else(|| panic!("no client line in {:?}", response.1))
}

#[test]
fn behind_nginx_the_app_reports_the_client_nginx_saw_and_nothing_a_client_wrote() {
    if !nginx_present() {
        return;
    }
    let (_app, app) = start_app();
    let dir = TempDir::new();
    let (_nginx, nginx) = start_nginx(&dir, app);

    // Through nginx: the client is the address nginx accepted, written by nginx...
    let plain = get(CLIENT, nginx, &[]);
    assert_eq!(client(&plain), "127.0.0.3");
    assert!(plain.1.contains("\nsource header\n"), "{}", plain.1);
    assert!(plain.1.contains("\npeer 127.0.0.2:"), "{}", plain.1);

    // ...and an X-Real-IP the client sent to nginx is overwritten, not believed or added to.
    let forged =
        ["X-Real-IP: 203.0.113.9", "X-Forwarded-For: 203.0.113.9", "Forwarded: for=203.0.113.9"];
    assert_eq!(client(&get(CLIENT, nginx, &forged)), "127.0.0.3");

    // Straight to the app, around nginx: the connection comes from 127.0.0.1, which the
    // app does not trust, so the forged header is ignored and the peer is the client.
    let direct = get([127, 0, 0, 1], app, &forged);
    assert_eq!(client(&direct), "127.0.0.1");
    assert!(direct.1.contains("\nsource peer\n"), "{}", direct.1);
}
