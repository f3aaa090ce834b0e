//! How long what `io::Held` holds may wait: a TLS 1.3 session ticket waits for the first
//! response only briefly (a client whose first answer is slow gets it on its own, and can
//! resume meanwhile), and a closing connection's last response, held to leave with
//! close_notify, is timed as any write to the client is, by `send_timeout` from the
//! client's last progress.

mod common;
mod pki;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A TLS 1.3 client trusting the test CA `ca`, keeping its sessions in memory.
fn client(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("a CA certificate")).expect("add it");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a name")
}

/// A client whose first request waits 3 s for its upstream gets its session ticket long
/// before the answer, and a second connection it opens meanwhile resumes; the first
/// request is still answered. (Fails on the code that held the ticket until the first
/// response: the second connection made a full handshake.)
#[test]
fn a_ticket_leaves_on_its_own_while_a_slow_first_response_is_pending() {
    let dir = test_dir("tls_held_waits/ticket");
    let Some(pki) = pki::pki(&dir) else { return };
    let upstream = Upstream::start(Behavior::Delay(Duration::from_secs(3)));
    let listen = free_addr();
    let config = format!(
        "[upstream]\nurl = \"{}\"\n\n[[listen]]\naddress = \"{listen}\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n",
        upstream.url(),
        pki.cert.display(),
        pki.key.display(),
    );
    let gw = Gateway::start_with_config(&dir, &config, &[listen], &[]);
    let config = client(&pki.ca);

    let mut first = rustls::ClientConnection::new(config.clone(), localhost()).expect("a client");
    let mut sock = std::net::TcpStream::connect(listen).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    while first.is_handshaking() {
        first.complete_io(&mut sock).expect("the handshake");
    }
    assert_eq!(first.handshake_kind(), Some(rustls::HandshakeKind::Full));
    first
        .writer()
        .write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("the request");
    while first.wants_write() {
        first.write_tls(&mut sock).expect("send the request");
    }
    // Read what comes for a second, well before the upstream answers.
    let sent = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("a read timeout");
    while sent.elapsed() < Duration::from_secs(1) {
        match first.read_tls(&mut sock) {
            Ok(0) => panic!("closed before the answer\n{}", gw.proc.log()),
            Ok(_) => {
                first.process_new_packets().expect("valid records");
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let mut plain = [0u8; 1];
    assert!(
        matches!(first.reader().read(&mut plain), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no answer yet: the upstream waits 3 s"
    );

    // Another connection, opened while the first request waits.
    let mut second = rustls::ClientConnection::new(config, localhost()).expect("a client");
    let mut sock2 = std::net::TcpStream::connect(listen).expect("connect");
    sock2.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    while second.is_handshaking() {
        second.complete_io(&mut sock2).expect("the handshake");
    }
    assert_eq!(
        second.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the ticket came before the first answer\n{}",
        gw.proc.log()
    );
    drop(second);

    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    let mut reply = Vec::new();
    let _ = rustls::Stream::new(&mut first, &mut sock).read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}\n{}", gw.proc.log());
}

/// A closing connection's last response (a whoami page of about 900 KiB, the request's
/// forwarding headers echoed), held to leave with close_notify, goes to a client that
/// reads it steadily over about 2 s where each wait for room is a fraction of
/// `send_timeout` (1 s): the client gets all of it and the close_notify. (Fails on the
/// code that gave the shutdown `tls_handshake_timeout` in all, 1 s here, and did not count
/// what left of the held response as progress: the response was cut after 1 s.) Over a
/// Unix socket, whose sender may queue about 200 KiB: loopback TCP takes megabytes.
#[test]
fn a_held_last_response_is_timed_from_the_clients_last_progress() {
    let dir = test_dir("tls_held_waits/last_response");
    let Some(pki) = pki::pki(&dir) else { return };
    let path = dir.join("gw.sock");
    // A TCP listener too, which tells when the gateway is up.
    let tcp = free_addr();
    let config = format!(
        "[limits]\nsend_timeout = \"1s\"\ntls_handshake_timeout = \"1s\"\n\
         max_header_bytes = 1048576\n\n\
         [[listen]]\naddress = \"unix:{}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
         [[listen]]\naddress = \"{tcp}\"\n",
        path.display(),
        pki.cert.display(),
        pki.key.display(),
    );
    let gw = Gateway::start_with_config(&dir, &config, &[tcp], &[]);
    let mut sock = std::os::unix::net::UnixStream::connect(&path)
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", gw.proc.log()));
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
    let mut conn = rustls::ClientConnection::new(client(&pki.ca), localhost()).expect("a client");
    let mut request = b"GET /json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
    let value = "1.2.3.4, ".repeat(100 * 1024 / 9);
    for name in [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
    ] {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(&request).expect("the request");
    tls.flush().expect("sent");

    // 400 KiB a second: the sender's queue (about 200 KiB) drains to where it is woken
    // (a quarter of it) in about a third of a second.
    let rate = 400.0 * 1024.0;
    let started = Instant::now();
    let mut reply = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let end = loop {
        let due = Duration::from_secs_f64(reply.len() as f64 / rate);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
        match tls.read(&mut chunk) {
            Ok(0) => break "close_notify".to_string(),
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) => break format!("{e}"),
        }
    };
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", text.get(..200).unwrap_or(&text));
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.parse().ok())
        .expect("a content-length");
    assert!(length > 800 * 1024, "a page of {length} bytes");
    assert_eq!(
        (body.len(), end.as_str()),
        (length, "close_notify"),
        "after {took:?}\n{}",
        gw.proc.log()
    );
    assert!(took > Duration::from_millis(1500), "read over more than send_timeout: {took:?}");
}
