//! TLS termination and HTTP/2, driven by curl (`--http2` over TLS with ALPN, and h2c with prior
//! knowledge) with a throwaway certificate made by `openssl` in the test's folder.
//!
//! The same guarantees as over HTTP/1.1: forged forwarding headers never reach the upstream, and
//! the upstream learns the scheme was `https`. Behind HAProxy in TCP mode (TLS passthrough with
//! `send-proxy-v2`), the PROXY source is the client.
//!
//! Needs `openssl`, `curl` (with HTTP/2) and, for the passthrough case, `haproxy`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A self-signed certificate for 127.0.0.1 and localhost: (cert, key).
fn certificate(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let openssl = external("openssl", "openssl")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl req failed: {}", String::from_utf8_lossy(&out.stderr));
    Some((cert, key))
}

/// What curl reports: (HTTP version, status, body).
fn curl(args: &[&str], url: &str) -> Option<(String, u16, String)> {
    let bin = external("curl", "curl")?;
    let out = Command::new(bin)
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(["--write-out", "\n%{http_version} %{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?} {url} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut parts = tail.split_whitespace();
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Some((version, status, body.to_string()))
}

fn forged_curl_headers() -> Vec<String> {
    forged_headers().into_iter().map(|(n, v)| format!("{n}: {v}")).collect()
}

fn tls_toml(listen: SocketAddr, cert: &Path, key: &Path, upstream: &str, extra: &str) -> String {
    format!(
        "[upstream]\nurl = \"{upstream}\"\n\n[client_ip]\nproxy_protocol_from = [\"{HAPROXY_SOURCE}\"]\n\n\
         [[listen]]\naddress = \"{listen}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n{extra}",
        cert.display(),
        key.display()
    )
}

#[test]
fn h2_over_tls_forwards_clean_headers_and_https_proto() {
    let dir = test_dir("tls_h2/h2_tls");
    let Some((cert, key)) = certificate(&dir) else {
        return;
    };
    let up = Upstream::start(Behavior::Echo);
    let listen = free_addr();
    let _gw = Gateway::start_with_config(
        &dir,
        &tls_toml(listen, &cert, &key, &up.url(), ""),
        &[listen],
        &[],
    );
    let cacert = cert.to_string_lossy().into_owned();
    let mut args = vec!["--http2", "--cacert", cacert.as_str()];
    let headers = forged_curl_headers();
    for h in &headers {
        args.extend_from_slice(&["-H", h.as_str()]);
    }
    let Some((version, status, body)) = curl(&args, &format!("https://{listen}/tls?x=1")) else {
        return;
    };
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let seen = up.last();
    assert_eq!(seen.path, "/tls?x=1");
    assert_clean_forwarding(&seen, CLIENT_IP, "h2 over TLS");
    assert_eq!(seen.one("X-Forwarded-Proto"), "https");

    // HTTP/1.1 over TLS too, on the same listener (ALPN http/1.1).
    let Some((version, status, _)) =
        curl(&["--http1.1", "--cacert", &cacert], &format!("https://{listen}/h1"))
    else {
        return;
    };
    assert_eq!((version.as_str(), status), ("1.1", 200));
}

#[test]
fn cleartext_h2_with_prior_knowledge() {
    let dir = test_dir("tls_h2/h2c");
    let up = Upstream::start(Behavior::Echo);
    let url = up.url();
    let gw = Gateway::start(&dir, free_addr(), &["--upstream", &url]);
    let headers = forged_curl_headers();
    let mut args = vec!["--http2-prior-knowledge"];
    for h in &headers {
        args.extend_from_slice(&["-H", h.as_str()]);
    }
    let Some((version, status, body)) = curl(&args, &format!("http://{}/h2c", gw.addr)) else {
        return;
    };
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    assert_clean_forwarding(&up.last(), CLIENT_IP, "h2c");

    // Header blocks over limits.max_header_bytes (32 KiB) are refused with 431 over h2 too.
    let big = format!("X-Big: {}", "a".repeat(40 * 1024));
    let Some((_, status, _)) =
        curl(&["--http2-prior-knowledge", "-H", &big], &format!("http://{}/big", gw.addr))
    else {
        return;
    };
    assert_eq!(status, 431, "40 KiB header over h2");
    // At 64 KiB the h2 layer may instead end the connection (GOAWAY): a close is fine, a
    // forwarded request is not.
    let huge = format!("X-Big: {}", "a".repeat(64 * 1024));
    let out = Command::new(external("curl", "curl").unwrap_or_default())
        .args(["--silent", "--max-time", "10", "--http2-prior-knowledge"])
        .args(["--output", "/dev/null", "--write-out", "%{http_code}", "-H", &huge])
        .arg(format!("http://{}/huge", gw.addr))
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        code == "431" || (!out.status.success() && code == "000"),
        "64 KiB header over h2: curl exit {:?}, status {code}",
        out.status.code()
    );
    assert!(
        up.requests().iter().all(|s| s.path != "/big" && s.path != "/huge"),
        "an oversized h2 request reached the upstream"
    );
    assert_healthy(gw.addr, "h2 requests");
}

#[test]
fn tls_passthrough_behind_haproxy_send_proxy_v2() {
    let dir = test_dir("tls_h2/passthrough");
    let Some((cert, key)) = certificate(&dir) else {
        return;
    };
    let up = Upstream::start(Behavior::Echo);
    let listen = free_addr();
    let toml = tls_toml(listen, &cert, &key, &up.url(), "proxy_protocol = \"v2\"\n");
    let _gw = Gateway::start_with_config(&dir, &toml, &[listen], &[]);
    let front = free_addr();
    let Some(_haproxy) = Haproxy::send_proxy_v2(&dir, front, listen) else {
        return;
    };
    let cacert = cert.to_string_lossy().into_owned();
    let headers = forged_curl_headers();
    let mut args = vec!["--http2", "--cacert", cacert.as_str()];
    for h in &headers {
        args.extend_from_slice(&["-H", h.as_str()]);
    }
    let Some((version, status, body)) = curl(&args, &format!("https://{front}/through")) else {
        return;
    };
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let seen = up.wait_for(1, Duration::from_secs(5));
    let seen = seen.last().expect("the upstream got the request");
    assert_clean_forwarding(seen, CLIENT_IP, "TLS passthrough behind HAProxy");
    assert_eq!(seen.one("X-Forwarded-Proto"), "https");
}

/// HTTP/2 requests were not held to `limits.max_headers` as HTTP/1.1 requests are: 30
/// header fields passed a limit of 20 over h2c while HTTP/1.1 answered 431. One limit for
/// both, the same status, and the same count in the metrics. An HTTP/2 cookie split into
/// crumbs (RFC 9113 §8.2.3) counts as the one line HTTP/1.1 sends it as.
#[test]
fn h2_requests_are_held_to_max_headers_as_http1_requests_are() {
    let dir = test_dir("tls_h2/max_headers");
    let up = Upstream::start(Behavior::Echo);
    let url = up.url();
    let gw = Gateway::start_with_toml(
        &dir,
        free_addr(),
        "[limits]\nmax_headers = 20\n",
        &["--upstream", &url],
    );
    let many: Vec<String> = (0..30).map(|i| format!("X-Many-{i}: v")).collect();
    let mut args = vec!["--http2-prior-knowledge"];
    for h in &many {
        args.extend_from_slice(&["-H", h.as_str()]);
    }
    let Some((version, status, body)) = curl(&args, &format!("http://{}/many-h2", gw.addr)) else {
        return;
    };
    assert_eq!((version.as_str(), status), ("2", 431), "{body}");
    // The same request over HTTP/1.1: the same answer.
    args[0] = "--http1.1";
    let Some((version, status, body)) = curl(&args, &format!("http://{}/many-h1", gw.addr)) else {
        return;
    };
    assert_eq!((version.as_str(), status), ("1.1", 431), "{body}");
    // Under the limit, with a cookie in crumbs: served.
    let few = ["X-Few: 1", "Cookie: a=1", "Cookie: b=2", "Cookie: c=3"];
    let mut args = vec!["--http2-prior-knowledge"];
    for h in &few {
        args.extend_from_slice(&["-H", h]);
    }
    let Some((_, status, body)) = curl(&args, &format!("http://{}/few", gw.addr)) else {
        return;
    };
    assert_eq!(status, 200, "{body}");
    assert!(
        up.requests().iter().all(|s| !s.path.starts_with("/many")),
        "a request over max_headers reached the upstream"
    );
    let Some((_, _, metrics)) = curl(&[], &format!("http://{}/.trueip/metrics", gw.addr)) else {
        return;
    };
    assert!(
        metrics.contains("trueip_client_errors_total{reason=\"headers_over_limit\"} 2"),
        "one count each for HTTP/2 and HTTP/1.1: {metrics}"
    );
}
