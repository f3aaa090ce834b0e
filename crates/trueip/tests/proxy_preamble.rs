//! `read_preamble`, the one async reader of a PROXY preamble that the gateway and
//! `ProxyProtocolListener` share: each rule through a real tokio stream (an in-memory
//! duplex pipe), with the sender writing on its own schedule.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: fixed inputs, and a panic is a test failure"
)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use trueip::proxy_protocol::{
    Accept, Command, PreambleError, ProxyAddrs, ProxyError, ProxyHeader, ReadRules, Tlvs,
    Transport, Untrusted, Version, encode_v2, read_preamble, read_preamble_into,
    read_preamble_until,
};
use trueip::{Cidr, TrustSet};

const BALANCER: &str = "10.0.0.5";
const STRANGER: &str = "198.51.100.7";
const V1: &[u8] = b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 443\r\n";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";

fn senders() -> TrustSet {
    ["10.0.0.0/8".parse::<Cidr>().unwrap()].into_iter().collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v2() -> Vec<u8> {
    let header = ProxyHeader {
        version: Version::V2,
        command: Command::Proxy,
        transport: Transport::Stream,
        addrs: Some(ProxyAddrs {
            source: "[2001:db8::1]:5000".parse().unwrap(),
            destination: "[2001:db8::2]:443".parse().unwrap(),
        }),
        tlvs: Tlvs::default(),
    };
    let mut out = Vec::new();
    encode_v2(&header, &mut out).unwrap();
    out
}

/// How the sender writes: its chunks, the pause after each, and whether it then closes
/// or stays silent with the connection open.
struct Sender {
    chunks: Vec<Vec<u8>>,
    pause: Duration,
    close: bool,
}

impl Sender {
    fn at_once(bytes: &[u8]) -> Self {
        Sender { chunks: vec![bytes.to_vec()], pause: Duration::ZERO, close: true }
    }
}

/// The reading end of a pipe `sender` writes into, chunk by chunk, and the task writing.
fn feed(sender: Sender) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
    let (mut tx, rx) = tokio::io::duplex(1 << 16);
    let writer = tokio::spawn(async move {
        for chunk in sender.chunks {
            // The reader may close its end early (a refusal): not this task's failure.
            if tx.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(sender.pause).await;
        }
        if !sender.close {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
    (rx, writer)
}

async fn read(
    sender: Sender,
    peer: &str,
    rules: ReadRules,
) -> Result<trueip::proxy_protocol::Preamble, PreambleError> {
    let (mut rx, writer) = feed(sender);
    let result = read_preamble(&mut rx, ip(peer), &senders(), &rules).await;
    writer.abort();
    result
}

fn refuse() -> ReadRules {
    ReadRules::new(Untrusted::Refuse).timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn v1_from_a_trusted_sender_keeps_the_bytes_after_it() {
    let preamble =
        read(Sender::at_once(&[V1, REQUEST].concat()), BALANCER, refuse()).await.unwrap();
    let addrs = preamble.header.unwrap().addrs.unwrap();
    assert_eq!(addrs.source.to_string(), "192.0.2.1:56324");
    assert_eq!(addrs.destination.to_string(), "10.0.0.2:443");
    assert_eq!(preamble.rest, REQUEST);
}

#[tokio::test]
async fn v2_from_a_trusted_sender_keeps_the_bytes_after_it() {
    let preamble =
        read(Sender::at_once(&[&v2()[..], REQUEST].concat()), BALANCER, refuse()).await.unwrap();
    let header = preamble.header.unwrap();
    assert_eq!(header.version, Version::V2);
    assert_eq!(header.addrs.unwrap().source.to_string(), "[2001:db8::1]:5000");
    assert_eq!(preamble.rest, REQUEST);
}

#[tokio::test]
async fn an_ipv4_mapped_peer_is_the_trusted_ipv4_sender() {
    let preamble = read(Sender::at_once(V1), "::ffff:10.0.0.5", refuse()).await.unwrap();
    assert!(preamble.header.is_some());
}

#[tokio::test]
async fn slowloris_byte_at_a_time_within_the_bound_and_timeout_is_read() {
    let bytes = [V1, REQUEST].concat();
    let sender = Sender {
        chunks: bytes.iter().map(|b| vec![*b]).collect(),
        pause: Duration::from_millis(1),
        close: false,
    };
    let preamble = read(sender, BALANCER, refuse()).await.unwrap();
    assert_eq!(preamble.header.unwrap().addrs.unwrap().source.to_string(), "192.0.2.1:56324");
    // Byte at a time, the reader stops at the header's last byte: nothing after it was
    // waited for.
    assert!(REQUEST.starts_with(&preamble.rest), "{:?}", preamble.rest);
}

#[tokio::test]
async fn slowloris_past_the_timeout_is_refused_on_time() {
    let sender = Sender {
        chunks: V1.iter().map(|b| vec![*b]).collect(),
        pause: Duration::from_millis(50),
        close: false,
    };
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = read(sender, BALANCER, refuse().timeout(timeout)).await.unwrap_err();
    assert!(matches!(err, PreambleError::Timeout(t) if t == timeout), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_silent_trusted_sender_times_out() {
    let sender = Sender {
        chunks: vec![b"PROXY TCP4 192.0.2.1".to_vec()],
        pause: Duration::ZERO,
        close: false,
    };
    let err =
        read(sender, BALANCER, refuse().timeout(Duration::from_millis(200))).await.unwrap_err();
    assert!(matches!(err, PreambleError::Timeout(_)), "{err}");
    assert_eq!(err.to_string(), "no complete PROXY header within 200ms");
}

/// The caller's timer decides when a slow sender's time is up (the rules' timeout is only
/// what the error reports), and it is polled only while a read waits: a header that came
/// with the connection never touches it, so a server that makes its timer at the first
/// poll makes none for such a connection. What is returned of the header is what the
/// caller keeps.
#[tokio::test]
async fn timed_by_the_caller_the_timer_is_polled_only_while_a_read_waits() {
    let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
    tx.write_all(&[V1, REQUEST].concat()).await.unwrap();
    let mut polled = 0;
    let never_due = std::future::poll_fn(|_| {
        polled += 1;
        std::task::Poll::<()>::Pending
    });
    let mut buf = Vec::new();
    let read = read_preamble_until(
        &mut rx,
        ip(BALANCER),
        &senders(),
        &refuse(),
        &mut buf,
        never_due,
        |header| header.addrs.map(|a| a.source),
    )
    .await
    .unwrap();
    assert_eq!(read.header, Some(Some("192.0.2.1:56324".parse().unwrap())));
    assert_eq!(&buf[read.rest], REQUEST);
    assert_eq!(polled, 0, "the header was there: no timer asked");

    // A sender that stalls mid-header: the caller's timer, due long before the rules'
    // five seconds, ends it.
    let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
    tx.write_all(b"PROXY TCP4 192.0.2.1").await.unwrap();
    let started = Instant::now();
    let err = read_preamble_until(
        &mut rx,
        ip(BALANCER),
        &senders(),
        &refuse(),
        &mut Vec::new(),
        tokio::time::sleep(Duration::from_millis(50)),
        |header| header,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PreambleError::Timeout(t) if t == Duration::from_secs(5)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    drop(tx);
}

#[tokio::test]
async fn a_v2_length_past_the_bound_is_refused_before_it_is_read() {
    // Signature, v2 PROXY, TCP4, and a length of 0xea60 (60,000) bytes.
    let big = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xea\x60".to_vec();
    let sender = Sender { chunks: vec![big], pause: Duration::ZERO, close: false };
    let err = read(sender, BALANCER, refuse().max_bytes(512)).await.unwrap_err();
    assert!(matches!(err, PreambleError::TooLarge(512)), "{err}");
}

#[tokio::test]
async fn a_v2_header_past_a_small_bound_is_refused() {
    // A valid header of 16 + 36 + 200 bytes (a padding-like TLV of type 0x04, NOOP).
    let mut bytes = v2();
    let tlv_len: u16 = 200;
    let body_len = u16::from_be_bytes([bytes[14], bytes[15]]) + 3 + tlv_len;
    bytes[14..16].copy_from_slice(&body_len.to_be_bytes());
    bytes.extend_from_slice(&[0x04]);
    bytes.extend_from_slice(&tlv_len.to_be_bytes());
    bytes.extend(std::iter::repeat_n(0u8, usize::from(tlv_len)));
    let ok = read(Sender::at_once(&bytes), BALANCER, refuse().max_bytes(512)).await;
    assert!(ok.is_ok(), "the header fits in 512 bytes: {ok:?}");
    let err = read(Sender::at_once(&bytes), BALANCER, refuse().max_bytes(200)).await.unwrap_err();
    assert!(matches!(err, PreambleError::TooLarge(200)), "{err}");
}

#[tokio::test]
async fn the_bound_is_held_between_a_v1_line_and_the_largest_v2_header() {
    // Asked for 10 bytes, the reader still takes a full v1 line.
    let preamble = read(Sender::at_once(V1), BALANCER, refuse().max_bytes(10)).await.unwrap();
    assert!(preamble.header.is_some());
}

#[tokio::test]
async fn an_untrusted_sender_is_refused_before_anything_is_read() {
    let err = read(Sender::at_once(V1), STRANGER, refuse()).await.unwrap_err();
    assert!(matches!(err, PreambleError::UntrustedSender), "{err}");
    assert!(err.to_string().contains("proxy_protocol_from"), "{err}");
}

#[tokio::test]
async fn an_untrusted_sender_served_directly_keeps_its_first_bytes() {
    let rules = ReadRules::new(Untrusted::ServeDirect);
    let preamble = read(Sender::at_once(REQUEST), STRANGER, rules).await.unwrap();
    assert_eq!(preamble.header, None);
    assert!(
        !preamble.rest.is_empty() && REQUEST.starts_with(&preamble.rest),
        "{:?}",
        preamble.rest
    );
}

#[tokio::test]
async fn an_untrusted_sender_opening_with_a_header_is_refused() {
    let rules = ReadRules::new(Untrusted::ServeDirect);
    for header in [V1.to_vec(), v2()] {
        let err = read(Sender::at_once(&header), STRANGER, rules).await.unwrap_err();
        assert!(matches!(err, PreambleError::UntrustedHeader), "{err}");
    }
}

#[tokio::test]
async fn a_trusted_sender_must_send_a_header_even_when_others_are_served_directly() {
    let rules = ReadRules::new(Untrusted::ServeDirect);
    let err = read(Sender::at_once(REQUEST), BALANCER, rules).await.unwrap_err();
    assert!(matches!(err, PreambleError::Malformed(ProxyError::NotProxy { .. })), "{err}");
}

#[tokio::test]
async fn a_version_the_rules_do_not_accept_is_malformed() {
    let v1_only = refuse().accept(Accept::V1);
    let err = read(Sender::at_once(&v2()), BALANCER, v1_only).await.unwrap_err();
    assert!(matches!(err, PreambleError::Malformed(_)), "{err}");
    let v2_only = refuse().accept(Accept::V2);
    let err = read(Sender::at_once(V1), BALANCER, v2_only).await.unwrap_err();
    assert!(matches!(err, PreambleError::Malformed(_)), "{err}");
    let ok = read(Sender::at_once(V1), BALANCER, refuse().accept(Accept::V1)).await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn closing_mid_header_says_how_far_it_got() {
    let err = read(Sender::at_once(&V1[..20]), BALANCER, refuse()).await.unwrap_err();
    assert!(matches!(err, PreambleError::Closed(20)), "{err}");
    let err = read(Sender::at_once(b""), BALANCER, refuse()).await.unwrap_err();
    assert!(matches!(err, PreambleError::Closed(0)), "{err}");
    assert_eq!(err.to_string(), "closed before sending anything");
}

#[tokio::test]
async fn a_malformed_header_is_refused_with_the_decoders_reason() {
    let err = read(Sender::at_once(b"PROXY TCP4 999.0.2.1 10.0.0.2 1 2\r\n"), BALANCER, refuse())
        .await
        .unwrap_err();
    assert!(matches!(err, PreambleError::Malformed(_)), "{err}");
    assert!(err.to_string().starts_with("invalid PROXY header: "), "{err}");
}

/// A server's own buffer, kept from an earlier connection: longer than the bound and
/// full of that connection's bytes.
fn kept_buffer() -> Vec<u8> {
    b"GET /earlier HTTP/1.1\r\nx-secret: 1\r\n".repeat(250)
}

#[tokio::test]
async fn into_a_kept_buffer_only_bytes_read_are_handed_on_and_none_past_the_bound() {
    let request = [REQUEST; 20].concat();
    let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
    tx.write_all(&[V1, &request[..]].concat()).await.unwrap();
    let mut buf = kept_buffer();
    let len = buf.len();
    let rules = refuse().max_bytes(256);
    let read =
        read_preamble_into(&mut rx, ip(BALANCER), &senders(), &rules, &mut buf).await.unwrap();
    let addrs = read.header.unwrap().addrs.unwrap();
    assert_eq!(addrs.source.to_string(), "192.0.2.1:56324");
    assert_eq!(read.rest, V1.len()..256, "read up to the bound, and no further");
    assert_eq!(&buf[read.rest.clone()], &request[..256 - V1.len()]);
    assert_eq!(buf.len(), len, "the storage is neither shortened nor grown");
    // What the bound kept unread is still the stream's.
    let mut next = vec![0; request.len()];
    let n = tokio::io::AsyncReadExt::read(&mut rx, &mut next).await.unwrap();
    assert_eq!(&next[..n], &request[256 - V1.len()..]);
}

#[tokio::test]
async fn into_a_kept_buffer_the_bound_and_the_senders_hold_as_they_do_alone() {
    // Signature, v2 PROXY, TCP4, and a length of 0xea60 (60,000) bytes: the storage
    // has room for more than the bound, which still refuses it.
    let big = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xea\x60".to_vec();
    let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
    tx.write_all(&big).await.unwrap();
    let mut buf = vec![0; 1 << 17];
    let err = read_preamble_into(&mut rx, ip(BALANCER), &senders(), &refuse(), &mut buf)
        .await
        .unwrap_err();
    assert!(matches!(err, PreambleError::TooLarge(512)), "{err}");

    let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
    tx.write_all(V1).await.unwrap();
    let err = read_preamble_into(&mut rx, ip(STRANGER), &senders(), &refuse(), &mut kept_buffer())
        .await
        .unwrap_err();
    assert!(matches!(err, PreambleError::UntrustedSender), "{err}");

    // A direct client's first bytes, from a short buffer that must grow.
    let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
    tx.write_all(REQUEST).await.unwrap();
    let direct = ReadRules::new(Untrusted::ServeDirect);
    let mut buf = vec![b'x'; 4];
    let read =
        read_preamble_into(&mut rx, ip(STRANGER), &senders(), &direct, &mut buf).await.unwrap();
    assert_eq!(read.header, None);
    assert_eq!(&buf[read.rest], REQUEST);
}

/// A v2 header from `source` (IPv6, TCP).
fn v2_from(source: &str) -> Vec<u8> {
    let header = ProxyHeader {
        version: Version::V2,
        command: Command::Proxy,
        transport: Transport::Stream,
        addrs: Some(ProxyAddrs {
            source: source.parse().unwrap(),
            destination: "[2001:db8::2]:443".parse().unwrap(),
        }),
        tlvs: Tlvs::default(),
    };
    let mut out = Vec::new();
    encode_v2(&header, &mut out).unwrap();
    out
}

/// [`read`], into `buf` with [`read_preamble_into`]: the header's source, if any, and
/// the bytes handed on.
async fn read_into(
    sender: Sender,
    peer: &str,
    rules: ReadRules,
    buf: &mut Vec<u8>,
) -> Result<(Option<String>, Vec<u8>), PreambleError> {
    let (mut rx, writer) = feed(sender);
    let result = read_preamble_into(&mut rx, ip(peer), &senders(), &rules, buf).await;
    writer.abort();
    let read = result?;
    let source = read.header.and_then(|h| h.addrs).map(|a| a.source.to_string());
    Ok((source, buf[read.rest].to_vec()))
}

/// Attack (review of the read into a kept buffer): the buffer a server kept from an
/// earlier connection holds that connection's whole header, naming 6.6.6.6 (or
/// 2001:db8::66), and its request. The next connection's trusted sender sends only the
/// start of the same header, then closes, stalls, or sends a request: were the kept
/// bytes ever decoded, the header would be complete, and 6.6.6.6 the peer. It must be
/// cut short, late or malformed instead, every time.
#[tokio::test]
async fn a_kept_buffers_header_is_never_completed_from_its_stale_bytes() {
    let forged_v1: &[u8] = b"PROXY TCP4 6.6.6.6 10.0.0.2 1111 443\r\n";
    let forged_v2 = v2_from("[2001:db8::66]:1111");
    for forged in [forged_v1.to_vec(), forged_v2] {
        let kept = || {
            let mut buf = [&forged[..], REQUEST].concat();
            buf.resize(4096, b'x');
            buf
        };
        for cut in [1, 6, 13, forged.len() / 2, forged.len() - 1] {
            let start = forged[..cut].to_vec();
            let closed = read_into(Sender::at_once(&start), BALANCER, refuse(), &mut kept()).await;
            assert!(
                matches!(closed, Err(PreambleError::Closed(n)) if n == cut),
                "cut {cut}, then closed: {closed:?}"
            );
            let stalled =
                Sender { chunks: vec![start.clone()], pause: Duration::ZERO, close: false };
            let rules = refuse().timeout(Duration::from_millis(200));
            let late = read_into(stalled, BALANCER, rules, &mut kept()).await;
            assert!(
                matches!(late, Err(PreambleError::Timeout(_))),
                "cut {cut}, then silent: {late:?}"
            );
        }
    }
    // The start of the forged v1 line, then a request: the line the stream holds is
    // malformed, whatever the buffer held after it.
    let sender = Sender {
        chunks: vec![forged_v1[..17].to_vec(), REQUEST.to_vec()],
        pause: Duration::from_millis(20),
        close: false,
    };
    let mut buf = [forged_v1, REQUEST].concat();
    buf.resize(4096, b'x');
    let mixed = read_into(sender, BALANCER, refuse(), &mut buf).await;
    assert!(matches!(mixed, Err(PreambleError::Malformed(_))), "{mixed:?}");
}

/// Attack: byte at a time into a kept buffer that holds a forged header. The header
/// read is the one sent, and what is handed on is only what followed it on the stream.
#[tokio::test]
async fn byte_at_a_time_into_a_kept_buffer_reads_only_the_stream() {
    let mut buf = [&b"PROXY TCP4 6.6.6.6 10.0.0.2 1111 443\r\n"[..], b"GET /stale"].concat();
    buf.resize(4096, b'x');
    let bytes = [V1, REQUEST].concat();
    let sender = Sender {
        chunks: bytes.iter().map(|b| vec![*b]).collect(),
        pause: Duration::from_millis(1),
        close: false,
    };
    let (source, rest) = read_into(sender, BALANCER, refuse(), &mut buf).await.unwrap();
    assert_eq!(source.as_deref(), Some("192.0.2.1:56324"));
    assert!(REQUEST.starts_with(&rest), "{rest:?}");
    // A direct client's first bytes, from a buffer that opens as a PROXY header: only
    // what the client sent.
    let rules = ReadRules::new(Untrusted::ServeDirect);
    let (source, rest) =
        read_into(Sender::at_once(b"GE"), STRANGER, rules, &mut buf).await.unwrap();
    assert_eq!((source, rest), (None, b"GE".to_vec()));
}
