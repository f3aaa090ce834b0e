//! An attacker's look at `io::Held`, the transport under every terminated TLS connection,
//! which holds back what rustls writes (each handshake flight until the next read, a TLS
//! 1.3 session ticket until the first response): a TLS 1.2 handshake, whose last flight
//! (the server's Finished) the client waits for, ends at once and resumes by session id
//! and by ticket.

mod common;
mod pki;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A TLS 1.2 client resuming by session id only, or by ticket (rustls's default).
fn tls12_client(ca: &Path, by: rustls::client::Tls12Resumption) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("a CA certificate")).expect("add it");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::in_memory_sessions(8).tls12_resumption(by);
    Arc::new(config)
}

/// TLS 1.2 ends with the server's Finished, which the client waits for: the handshake
/// ends at once (not at `tls_handshake_timeout`, 5 s here, as it would if the gateway held
/// that flight for the first response), full then resumed, by session id and by ticket,
/// and the request is answered. (Passes on f5110f3; fails, the handshake stalling,
/// without the release of TLS 1.2's last flight in `server::connection`.)
#[test]
fn tls12_handshakes_end_at_once_and_resume_by_session_id_and_by_ticket() {
    use rustls::client::Tls12Resumption;
    let dir = test_dir("tls_held_review/tls12");
    let Some(pki) = pki::pki(&dir) else { return };
    let listen = free_addr();
    let config = format!(
        "[limits]\ntls_handshake_timeout = \"5s\"\n\n[[listen]]\naddress = \"{listen}\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n",
        pki.cert.display(),
        pki.key.display(),
    );
    let gw = Gateway::start_with_config(&dir, &config, &[listen], &[]);
    let name = ServerName::try_from("localhost").expect("a name");
    for by in [Tls12Resumption::SessionIdOnly, Tls12Resumption::SessionIdOrTickets] {
        let config = tls12_client(&pki.ca, by);
        for round in 0..2 {
            let what = format!("{by:?}, round {round}");
            let mut conn =
                rustls::ClientConnection::new(config.clone(), name.clone()).expect("a client");
            let mut sock = std::net::TcpStream::connect(listen).expect("connect");
            sock.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
            let started = std::time::Instant::now();
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).expect("the handshake");
            }
            let took = started.elapsed();
            assert!(took < Duration::from_secs(2), "{what}: the handshake took {took:?}");
            let kind = if round == 0 {
                rustls::HandshakeKind::Full
            } else {
                rustls::HandshakeKind::Resumed
            };
            assert_eq!(conn.handshake_kind(), Some(kind), "{what}\n{}", gw.proc.log());
            conn.writer()
                .write_all(b"GET /text HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .expect("the request");
            let mut reply = Vec::new();
            let _ = rustls::Stream::new(&mut conn, &mut sock).read_to_end(&mut reply);
            let reply = String::from_utf8_lossy(&reply);
            assert!(reply.starts_with("HTTP/1.1 200"), "{what}: {reply}");
        }
    }
}
