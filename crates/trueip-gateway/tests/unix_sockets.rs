//! `trueip serve` on a Unix socket (`unix:/path`), in a folder under
//! `target/test-output/unix_sockets/`: nginx in front over the socket
//! (`proxy_pass http://unix:/path:`), a client on the socket itself, the socket file's mode,
//! a stale socket file, a file that is not a socket, and the file removed on shutdown.
//!
//! A Unix-socket peer has no address. Only `client_ip.trusted = ["unix"]` trusts it; its
//! X-Forwarded-For then names the client. Untrusted, or with nothing to read, the client
//! is `unix:` — never an address — and the upstream gets no X-Real-IP naming one.
//!
//! Needs `nginx` for the first test; without it that test fails unless
//! `TRUEIP_SKIP_EXTERNAL=1`.

mod common;

use std::io::{BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Starts `trueip serve --config <dir>/trueip.toml` and waits until `socket` accepts.
fn start_on_socket(dir: &Path, toml: &str, socket: &Path) -> Proc {
    let path = dir.join("trueip.toml");
    std::fs::write(&path, toml).expect("write trueip.toml");
    let mut cmd = Command::new(trueip_bin());
    cmd.arg("serve").arg("--config").arg(&path);
    let mut proc = Proc::spawn("trueip", cmd, dir);
    let deadline = Instant::now() + START_TIMEOUT;
    while UnixStream::connect(socket).is_err() {
        if let Some(status) = proc.exited() {
            panic!("trueip exited ({status}) before listening:\n{}", proc.log());
        }
        assert!(
            Instant::now() < deadline,
            "trueip did not listen on {}:\n{}",
            socket.display(),
            proc.log()
        );
        thread::sleep(Duration::from_millis(25));
    }
    proc
}

/// One request over the Unix socket.
fn send_unix(socket: &Path, req: &Req) -> Response {
    let mut s = UnixStream::connect(socket).expect("connect to the socket");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(&req.to_bytes()).expect("send");
    read_response(&mut BufReader::new(s), &req.method).expect("response")
}

fn socket_path(dir: &Path) -> PathBuf {
    let path = dir.join("trueip.sock");
    assert!(path.as_os_str().len() < 100, "test socket path too long: {}", path.display());
    path
}

#[test]
fn nginx_over_a_unix_socket_is_trusted_as_unix_and_the_socket_goes_on_shutdown() {
    let dir = test_dir("unix_sockets/nginx");
    let socket = socket_path(&dir);
    let up = Upstream::start(Behavior::Echo);
    let toml = format!(
        "[client_ip]\ntrusted = [\"unix\"]\n\n[[listen]]\naddress = \"unix:{}\"\nunix_mode = \"0660\"\n\n[upstream]\nurl = \"{}\"\n",
        socket.display(),
        up.url()
    );
    let mut gw = start_on_socket(&dir, &toml, &socket);
    let meta = std::fs::symlink_metadata(&socket).expect("socket file");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "unix_mode");

    let front = free_addr();
    let server = format!(
        "  server {{
    listen {front};
    location / {{
      proxy_pass http://unix:{}:;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}",
        socket.display()
    );
    let Some(_nginx) = Nginx::start(&dir, front, &server) else {
        return;
    };
    let resp = Req::get("/a?b=c").headers(&forged_headers()).must_send(front);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    // nginx saw 127.0.0.1 and appended it; the forged entries left of it are gone, and
    // the socket hop itself (no address) is named nowhere.
    assert_clean_forwarding(&seen, CLIENT_IP, "client → nginx → unix socket → trueip");
    assert_eq!(seen.one("X-Forwarded-For"), CLIENT_IP);
    assert!(!seen.headers.iter().any(|(_, v)| v.contains("unix")), "{:?}", seen.headers);

    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "{}", gw.log());
    assert!(std::fs::symlink_metadata(&socket).is_err(), "the socket file outlived trueip");
}

#[test]
fn an_untrusted_unix_peer_is_no_address_and_its_headers_are_removed() {
    let dir = test_dir("unix_sockets/untrusted");
    let socket = socket_path(&dir);
    let up = Upstream::start(Behavior::Echo);
    // Loopback and every address are trusted, the socket is not: a local process writing
    // X-Forwarded-For over the socket is the client, whatever it writes.
    let toml = format!(
        "[client_ip]\ntrusted = [\"any\"]\n\n[[listen]]\naddress = \"unix:{}\"\n\n[upstream]\nurl = \"{}\"\n",
        socket.display(),
        up.url()
    );
    let _gw = start_on_socket(&dir, &toml, &socket);
    let resp = send_unix(&socket, &Req::get("/").headers(&forged_headers()));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    for name in ["X-Real-IP", "X-Forwarded-For", "Forwarded"] {
        assert!(seen.all(name).is_empty(), "{name} reached the upstream: {:?}", seen.headers);
    }
    for forged in FORGED_IPS {
        assert!(
            !seen.headers.iter().any(|(_, v)| v.contains(forged)),
            "{forged}: {:?}",
            seen.headers
        );
    }
}

#[test]
fn the_whoami_page_on_a_socket_says_unix_and_trusts_it_only_when_told() {
    let dir = test_dir("unix_sockets/whoami");
    let socket = socket_path(&dir);
    let toml = format!("[[listen]]\naddress = \"unix:{}\"\n", socket.display());
    let gw = start_on_socket(&dir, &toml, &socket);
    let json = send_unix(&socket, &Req::get("/json").header("X-Forwarded-For", FORGED_XFF)).json();
    assert_eq!(json.get("client_ip"), &Json::Null, "{json:?}");
    assert_eq!(json.str_at("peer"), "unix:");
    assert_eq!(json.get("direct_ip"), &Json::Null);
    assert_eq!(json.get("rate_limit_key"), &Json::Null);
    let warnings: Vec<_> =
        json.get("warnings").as_array().iter().filter_map(Json::as_str).collect();
    assert_eq!(warnings, ["header_from_untrusted_peer"]);
    drop(gw);

    let toml = format!(
        "[client_ip]\ntrusted = [\"unix\"]\n\n[[listen]]\naddress = \"unix:{}\"\n",
        socket.display()
    );
    // The killed gateway left its socket file: a stale socket, replaced at start.
    assert!(std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()));
    let _gw = start_on_socket(&dir, &toml, &socket);
    let json =
        send_unix(&socket, &Req::get("/json").header("X-Forwarded-For", "203.0.113.9")).json();
    assert_eq!(json.str_at("client_ip"), "203.0.113.9", "{json:?}");
    assert_eq!(json.str_at("source"), "x-forwarded-for[-1]");
    assert_eq!(json.str_at("peer"), "unix:");
}

#[test]
fn a_file_that_is_not_a_socket_is_never_removed() {
    let dir = test_dir("unix_sockets/not_a_socket");
    let socket = socket_path(&dir);
    std::fs::write(&socket, b"precious").expect("write");
    let toml = format!("[[listen]]\naddress = \"unix:{}\"\n", socket.display());
    std::fs::write(dir.join("trueip.toml"), &toml).expect("write");
    let out = Command::new(trueip_bin())
        .arg("serve")
        .arg("--config")
        .arg(dir.join("trueip.toml"))
        .output()
        .expect("run trueip");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("regular file") && stderr.contains("listen[0]"), "{stderr}");
    assert_eq!(std::fs::read(&socket).expect("still there"), b"precious");
}
