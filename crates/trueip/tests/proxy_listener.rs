//! `ProxyProtocolListener` under `axum::serve` on loopback, fed real PROXY bytes (written
//! out by hand here, not by the crate's encoder) and by a real HAProxy (`send-proxy-v2`).
//!
//! Senders 127.0.0.30 and .31 may send PROXY headers; 127.0.0.1 (the attacker) may not.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use support::*;
use tokio::io::AsyncWriteExt;
use trueip::axum::{ClientResolution, ProxyProtocolListener};
use trueip::tower::ClientIpLayer;
use trueip::{Connection, Policy};

const SENDER: &str = "127.0.0.31";
const ATTACKER: &str = "127.0.0.1";
const TIMEOUT: Duration = Duration::from_millis(600);

/// The v2 signature, version 2 / PROXY, TCP over IPv4.
const V2_TCP4: [u8; 14] =
    [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11];

/// 203.0.113.7:51000 → 10.0.0.9:80, and AWS's VPC endpoint TLV (0xEA, subtype 0x01), as
/// an NLB behind PrivateLink writes it.
fn v2_with_vpce() -> Vec<u8> {
    let vpce = b"vpce-08d2bf15fac5001c9";
    let mut out = V2_TCP4.to_vec();
    let len = 12 + 3 + 1 + vpce.len();
    out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    out.extend_from_slice(&[203, 0, 113, 7, 10, 0, 0, 9, 0xC7, 0x38, 0x00, 0x50]);
    out.extend_from_slice(&[0xEA, 0x00, u8::try_from(1 + vpce.len()).unwrap(), 0x01]);
    out.extend_from_slice(vpce);
    out
}

async fn start() -> SocketAddr {
    let policy =
        Policy::builder().proxy_protocol_from("127.0.0.30/31".parse().unwrap()).build().unwrap();
    serve_on(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), policy)
}

/// Serves on `tcp`, through a listener trusting `policy`'s senders: each reply is the
/// client, where it came from and the AWS VPC endpoint. The listening address.
fn serve_on(tcp: tokio::net::TcpListener, policy: Policy) -> SocketAddr {
    let addr = tcp.local_addr().unwrap();
    let listener = ProxyProtocolListener::new(tcp, &policy).timeout(TIMEOUT);
    let app = Router::new()
        .route(
            "/",
            get(
                |ClientResolution(r): ClientResolution,
                 ConnectInfo(conn): ConnectInfo<Connection>| async move {
                    let vpce = conn.private_link.aws_vpce_id.as_deref().unwrap_or("-");
                    format!("{} {:?} vpce={vpce}", r.client, r.source)
                },
            ),
        )
        .layer(ClientIpLayer::new(policy));
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<Connection>())
            .await
            .unwrap();
    });
    addr
}

async fn send_from(from: &str, to: SocketAddr, preamble: &[u8]) -> Option<Reply> {
    let mut stream = connect_from(from, to).await;
    let bytes = [preamble, &request("/", &[("X-Forwarded-For", "198.51.100.66")])].concat();
    exchange(&mut stream, &bytes).await
}

#[tokio::test]
async fn v1_from_a_trusted_sender_names_the_client() {
    let addr = start().await;
    let reply =
        send_from(SENDER, addr, b"PROXY TCP4 203.0.113.7 10.0.0.9 51000 80\r\n").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "203.0.113.7:51000 ProxyProtocol vpce=-");
}

#[tokio::test]
async fn v1_tcp6_arriving_in_pieces() {
    let addr = start().await;
    let mut stream = connect_from(SENDER, addr).await;
    for piece in [
        &b"PRO"[..],
        b"XY TCP6 2001:db8::7 2001:db8::",
        b"9 51000 443\r",
        b"\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reply = read_reply(&mut stream).await.unwrap();
    assert_eq!(reply.body, "[2001:db8::7]:51000 ProxyProtocol vpce=-");
}

#[tokio::test]
async fn v2_from_a_trusted_sender_with_the_vpc_endpoint() {
    let addr = start().await;
    let reply = send_from(SENDER, addr, &v2_with_vpce()).await.unwrap();
    assert_eq!(reply.body, "203.0.113.7:51000 ProxyProtocol vpce=vpce-08d2bf15fac5001c9");
}

#[tokio::test]
async fn v2_local_is_the_balancers_own_health_check() {
    let addr = start().await;
    let mut local = V2_TCP4.to_vec();
    local[12] = 0x20; // LOCAL
    local[13] = 0x00; // UNSPEC
    local.extend_from_slice(&[0, 0]);
    let reply = send_from(SENDER, addr, &local).await.unwrap();
    assert!(reply.body.starts_with("127.0.0.31:"), "{}", reply.body);
    assert!(reply.body.ends_with(" Peer vpce=-"), "{}", reply.body);
}

#[tokio::test]
async fn untrusted_sender_with_a_header_is_closed() {
    logs();
    let addr = start().await;
    let reply = send_from(ATTACKER, addr, b"PROXY TCP4 203.0.113.7 10.0.0.9 51000 80\r\n").await;
    assert!(reply.is_none(), "{reply:?}");
    // v2 too, told apart by its signature.
    let reply = send_from(ATTACKER, addr, &v2_with_vpce()).await;
    assert!(reply.is_none(), "{reply:?}");
    let lines = logged("sent a PROXY header but may not");
    assert!(lines.iter().any(|l| l.starts_with("WARN") && l.contains("127.0.0.1:")), "{lines:?}");
}

#[tokio::test]
async fn untrusted_sender_without_a_header_is_a_direct_client() {
    let addr = start().await;
    let reply = send_from(ATTACKER, addr, b"").await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with("127.0.0.1:"), "{}", reply.body);
    assert!(reply.body.ends_with(" Peer vpce=-"), "{}", reply.body);
}

#[tokio::test]
async fn trusted_sender_without_a_header_is_closed() {
    let addr = start().await;
    assert!(send_from(SENDER, addr, b"").await.is_none());
}

#[tokio::test]
async fn malformed_headers_are_closed() {
    let addr = start().await;
    let mut overrun = v2_with_vpce();
    overrun[15] += 7; // declares 7 bytes more: the request line is read as a TLV, which overruns
    for preamble in [
        &b"PROXY TCP4 010.0.0.1 10.0.0.9 51000 80\r\n"[..], // leading zero
        b"PROXY TCP4 203.0.113.7 2001:db8::9 51000 80\r\n", // family mismatch
        b"PROXY TCP4 203.0.113.7 10.0.0.9 51000\r\n",       // a field missing
        &overrun,
    ] {
        let reply = send_from(SENDER, addr, preamble).await;
        assert!(reply.is_none(), "{:?}: {reply:?}", preamble.escape_ascii());
    }
}

#[tokio::test]
async fn oversized_header_is_closed_without_waiting() {
    let addr = start().await;
    let mut big = V2_TCP4.to_vec();
    big.extend_from_slice(&1000u16.to_be_bytes()); // past the 512-byte default bound
    let start = Instant::now();
    let mut stream = connect_from(SENDER, addr).await;
    assert!(exchange(&mut stream, &big).await.is_none());
    assert!(start.elapsed() < TIMEOUT / 2, "{:?}", start.elapsed());
}

#[tokio::test]
async fn late_header_is_closed_and_holds_up_nobody() {
    let addr = start().await;
    let start = Instant::now();
    let mut silent = connect_from(SENDER, addr).await;
    let mut half = connect_from(SENDER, addr).await;
    half.write_all(b"PROXY TCP4 203.0.113.7").await.unwrap();
    // Served while the two above are still waiting for their headers.
    let reply = send_from(SENDER, addr, b"PROXY TCP4 203.0.113.8 10.0.0.9 1 80\r\n").await.unwrap();
    assert_eq!(reply.body, "203.0.113.8:1 ProxyProtocol vpce=-");
    assert!(start.elapsed() < TIMEOUT / 2, "{:?}", start.elapsed());
    assert!(read_reply(&mut silent).await.is_none());
    assert!(read_reply(&mut half).await.is_none());
    assert!(start.elapsed() >= TIMEOUT, "{:?}", start.elapsed());
}

#[tokio::test]
async fn through_haproxy_send_proxy_v2() {
    let Some(haproxy) = external("haproxy") else {
        return;
    };
    let addr = start().await;
    let front = free_addr();
    let dir = std::env::temp_dir().join(format!("trueip-proxy-listener-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("haproxy.cfg");
    // TCP mode, as an NLB: HAProxy reads nothing of the HTTP and prepends a v2 header.
    std::fs::write(
        &config,
        format!(
            "defaults\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend fe\n  mode tcp\n  bind {front}\n  default_backend be\n\
             backend be\n  mode tcp\n  server app {addr} send-proxy-v2 source 127.0.0.30\n"
        ),
    )
    .unwrap();
    let mut child = Child(
        std::process::Command::new(haproxy)
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(front, &mut child).await;
    // The client comes from 127.0.0.77 and forges X-Forwarded-For (see `send_from`): the
    // policy trusts HAProxy for the PROXY header only.
    let reply = send_from("127.0.0.77", front, b"").await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.starts_with("127.0.0.77:") && reply.body.ends_with(" ProxyProtocol vpce=-"),
        "{}",
        reply.body
    );
}

/// Attack (review of the layer's connection lookup): a `ProxyProtocolListener` given
/// `tap_io` (for `set_nodelay`, as `ProxiedStream::get_ref` suggests) is served with
/// axum's connect info. The balancer's subnet is trusted as a hop too (loopback here,
/// `private` in a VPC): harmless when the PROXY source is the effective peer. The
/// tapped listener's connect info was its `SocketAddr`, the balancer's TCP address,
/// which the layer took for a peer that sent no header and answered with the client's
/// own `X-Forwarded-For` (198.51.100.66). Now that connect info does not compile (the
/// `compile_fail` example on the listener's `Listener` impl), and the one that does
/// decides from the PROXY header's source.
#[tokio::test]
async fn a_tapped_listener_still_decides_from_the_proxy_header() {
    use axum::serve::ListenerExt;
    let policy = Policy::builder()
        .proxy_protocol_from("127.0.0.30/31".parse().unwrap())
        .trust_str("127.0.0.0/8")
        .unwrap()
        .build()
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = ProxyProtocolListener::new(tcp, &policy).timeout(TIMEOUT).tap_io(|s| {
        let _ = s.get_ref().set_nodelay(true);
    });
    let app = Router::new()
        .route(
            "/",
            get(|ClientResolution(r): ClientResolution| async move {
                format!("{} {:?}", r.client, r.source)
            }),
        )
        .layer(ClientIpLayer::new(policy));
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<Connection>())
            .await
            .unwrap();
    });
    let reply =
        send_from(SENDER, addr, b"PROXY TCP4 203.0.113.7 10.0.0.9 51000 80\r\n").await.unwrap();
    assert_eq!(reply.body, "203.0.113.7:51000 ProxyProtocol");
}

/// A v2 header a byte per read (the AWS TLV's too), and a stranger's request whose first
/// read is one byte of `POST` or `PRI` (`PROXY`'s first letters): the header names the
/// client, the stranger is served as a direct client, neither waits out the timeout.
#[tokio::test]
async fn a_header_or_a_request_a_byte_at_a_time() {
    let addr = start().await;
    let started = Instant::now();
    let mut stream = connect_from(SENDER, addr).await;
    for byte in [v2_with_vpce(), request("/", &[])].concat() {
        stream.write_all(&[byte]).await.unwrap();
        stream.flush().await.unwrap();
    }
    let reply = read_reply(&mut stream).await.unwrap();
    assert_eq!(reply.body, "203.0.113.7:51000 ProxyProtocol vpce=vpce-08d2bf15fac5001c9");
    for method in ["POST", "PUT", "PRI"] {
        let mut stream = connect_from(ATTACKER, addr).await;
        let bytes = request("/", &[]);
        let bytes = [method.as_bytes(), bytes.strip_prefix(b"GET".as_slice()).unwrap()].concat();
        for piece in [&bytes[..1], &bytes[1..2], &bytes[2..]] {
            stream.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not the PROXY listener's to judge: hyper answers whatever the method.
        let reply = read_reply(&mut stream).await;
        assert!(reply.is_some_and(|r| r.status != 0), "{method}");
    }
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
}

/// With `proxy_protocol_from` empty no one may send a header: a client is served as a
/// direct one, and a PROXY header from anyone, loopback included, closes its connection.
#[tokio::test]
async fn with_no_sender_every_header_is_refused_and_every_client_direct() {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = serve_on(tcp, Policy::default());
    let reply = send_from(ATTACKER, addr, b"").await.unwrap();
    assert_eq!((reply.status, reply.body.split(':').next()), (200, Some(ATTACKER)));
    for from in [ATTACKER, SENDER] {
        assert!(
            send_from(from, addr, b"PROXY TCP4 203.0.113.7 10.0.0.9 51000 80\r\n").await.is_none()
        );
        assert!(send_from(from, addr, &v2_with_vpce()).await.is_none());
    }
}

/// On a dual-stack listener (`[::]`) an IPv4 sender's peer is IPv4-mapped
/// (`::ffff:127.0.0.31`): it is still the trusted sender, its header names the client, and
/// the attacker's mapped address still may not send one.
#[tokio::test]
async fn a_dual_stack_listener_knows_its_senders_by_their_ipv4_address() {
    let policy =
        Policy::builder().proxy_protocol_from("127.0.0.30/31".parse().unwrap()).build().unwrap();
    let Ok(tcp) = tokio::net::TcpListener::bind("[::]:0").await else {
        return;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], serve_on(tcp, policy).port()));
    let reply =
        send_from(SENDER, addr, b"PROXY TCP4 203.0.113.7 10.0.0.9 51000 80\r\n").await.unwrap();
    assert_eq!(
        reply.body.split(' ').take(2).collect::<Vec<_>>(),
        ["203.0.113.7:51000", "ProxyProtocol"]
    );
    assert!(
        send_from(ATTACKER, addr, b"PROXY TCP4 203.0.113.7 10.0.0.9 51000 80\r\n").await.is_none()
    );
    let reply = send_from(ATTACKER, addr, b"").await.unwrap();
    assert!(reply.body.starts_with("127.0.0.1:"), "{}", reply.body);
}
