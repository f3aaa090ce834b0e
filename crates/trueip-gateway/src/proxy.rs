//! Reading the PROXY protocol header a load balancer sends before anything else, and
//! writing one for an upstream.
//!
//! The listener knows from its configuration whether a header comes (the specification
//! forbids guessing from the bytes), and only senders in `client_ip.proxy_protocol_from`
//! may use such a listener. A header that is malformed, of the wrong version, larger
//! than the bound, cut short, or not complete within the timeout closes the connection.
//! A valid header that describes another kind of connection (a v2 header for a UDP
//! flow) is read and set aside: the connection is served with the sender as the peer.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use tokio::io::AsyncRead;
use trueip::TrustSet;
use trueip::proxy_protocol::{
    self as pp, Accept, Command, PreambleError, ProxyAddrs, ProxyHeader, ReadRules, Untrusted,
};

use crate::config::{Limits, ProxyProtocol, SendProxy};
use crate::metrics::{ProxyErrorKind, ProxyIgnored};

/// The metric label of a refusal.
pub(crate) fn error_kind(e: &PreambleError) -> ProxyErrorKind {
    match e {
        PreambleError::Timeout(_) => ProxyErrorKind::Timeout,
        PreambleError::TooLarge(_) => ProxyErrorKind::TooLarge,
        PreambleError::Closed(_) | PreambleError::Io(_) => ProxyErrorKind::Truncated,
        // `UntrustedHeader`: on a `from-senders` listener, a PROXY header from outside the
        // trust set; the same fault as a refused sender.
        PreambleError::UntrustedSender | PreambleError::UntrustedHeader => {
            ProxyErrorKind::UntrustedSender
        }
        PreambleError::Malformed(
            pp::ProxyError::NotProxy { .. }
            | pp::ProxyError::V1BadPrefix { .. }
            | pp::ProxyError::V2BadSignature { .. },
        ) => ProxyErrorKind::WrongVersion,
        PreambleError::Malformed(_) => ProxyErrorKind::Malformed,
    }
}

/// The setting that decided a refusal, for the log line.
pub(crate) fn error_setting(e: &PreambleError) -> &'static str {
    match e {
        PreambleError::Timeout(_) => " (limits.proxy_protocol_timeout)",
        PreambleError::TooLarge(_) => " (limits.proxy_protocol_max_bytes)",
        PreambleError::UntrustedSender | PreambleError::UntrustedHeader => {
            " (client_ip.proxy_protocol_from)"
        }
        _ => "",
    }
}

/// What a valid header said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    /// The relayed client and the address it connected to (`None` for `LOCAL`/`UNKNOWN`,
    /// and for a header whose addresses are not used: see `ignored`).
    pub(crate) addrs: Option<ProxyAddrs>,
    /// The client reached the load balancer over TLS (v2 `PP2_TYPE_SSL`).
    pub(crate) client_tls: bool,
    /// The private endpoint the client came through (v2 AWS and Azure TLVs): empty when
    /// the addresses are not used either.
    pub(crate) private_link: trueip::PrivateLink,
    /// Why the header, though valid, says nothing about this connection.
    pub(crate) ignored: Option<ProxyIgnored>,
}

/// Reads the header of a connection from `peer` on a listener in `mode` (not `Off`), with
/// the core's reader, into `buf` (storage, see [`pp::read_preamble_into`]): only
/// `senders` may send one, and it must come within the limits, before `expired`
/// completes (`limits.proxy_protocol_timeout` after it is first polled; see
/// [`pp::read_preamble_until`]). Returns it (`None`: a plain connection from someone
/// else, which `from-senders` serves) and where in `buf` the bytes read after it
/// (application data) lie.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: IpAddr,
    senders: &TrustSet,
    mode: ProxyProtocol,
    limits: &Limits,
    buf: &mut Vec<u8>,
    expired: impl Future<Output = ()>,
) -> Result<(Option<Received>, Range<usize>), PreambleError> {
    // `from-senders`: a sender must send a header; anyone else is served as a direct
    // client, and closed if its first bytes are a PROXY header (never parsed). Which of
    // the two a connection is, is decided by its peer address alone.
    let untrusted = match mode {
        ProxyProtocol::FromSenders => Untrusted::ServeDirect,
        _ => Untrusted::Refuse,
    };
    let rules = ReadRules::new(untrusted)
        .accept(match mode {
            ProxyProtocol::V1 => Accept::V1,
            ProxyProtocol::V2 => Accept::V2,
            ProxyProtocol::Any | ProxyProtocol::FromSenders | ProxyProtocol::Off => Accept::Any,
        })
        .max_bytes(limits.proxy_protocol_max_bytes)
        .timeout(limits.proxy_protocol_timeout);
    let read =
        pp::read_preamble_until(stream, peer, senders, &rules, buf, expired, received).await?;
    Ok((read.header, read.rest))
}

/// What the gateway keeps of a valid header, made as soon as it is decoded (see
/// [`pp::read_preamble_until`]).
fn received(header: ProxyHeader) -> Received {
    if header.command == Command::Proxy && header.transport == pp::Transport::Datagram {
        return Received {
            addrs: None,
            client_tls: false,
            private_link: trueip::PrivateLink::default(),
            ignored: Some(ProxyIgnored::Datagram),
        };
    }
    let (addrs, private_link, client_tls) = match header.command {
        Command::Proxy => (
            header.addrs,
            trueip::PrivateLink::from_tlvs(&header.tlvs),
            header.tlvs.ssl.as_ref().is_some_and(|ssl| ssl.client & 0x01 != 0),
        ),
        // A health check of the sender's own: nothing in it is about a client, its TLVs
        // included (an SSL TLV there would make the sender's plain connection `https`).
        Command::Local => (None, trueip::PrivateLink::default(), false),
    };
    Received { addrs, client_tls, private_link, ignored: None }
}

/// Encodes a header announcing `source` connected to `destination`. Mixed families are
/// written as IPv6 (IPv4-mapped), which every receiver normalises back.
pub(crate) fn encode(version: SendProxy, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let addrs = ProxyAddrs { source, destination };
    let mut out = Vec::with_capacity(64);
    match version {
        SendProxy::Off => {}
        SendProxy::V1 => pp::encode_v1(Some(&addrs), &mut out),
        SendProxy::V2 => {
            let header = ProxyHeader {
                version: pp::Version::V2,
                command: Command::Proxy,
                transport: pp::Transport::Stream,
                addrs: Some(addrs),
                tlvs: pp::Tlvs::default(),
            };
            if pp::encode_v2(&header, &mut out).is_err() {
                // Cannot happen for a PROXY/STREAM header with same-family addresses and
                // no TLVs; fall back to the one header that always encodes.
                out.clear();
                pp::encode_v1(None, &mut out);
            }
        }
    }
    out
}

fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    match (a, b) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => (a, b),
        _ => (v6(a), v6(b)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// A trusted sender writes `chunks` to a listener in `mode`.
    async fn feed(
        chunks: Vec<&'static [u8]>,
        mode: ProxyProtocol,
        max: usize,
        close: bool,
    ) -> Result<(Received, Bytes), PreambleError> {
        // From a sender, a success always carries a header.
        feed_from("10.0.0.5", chunks, mode, max, close).await.map(|(r, rest)| (r.unwrap(), rest))
    }

    async fn feed_from(
        peer: &str,
        chunks: Vec<&'static [u8]>,
        mode: ProxyProtocol,
        max: usize,
        close: bool,
    ) -> Result<(Option<Received>, Bytes), PreambleError> {
        let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            for c in chunks {
                tx.write_all(c).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !close {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        let limits = Limits {
            proxy_protocol_max_bytes: max,
            proxy_protocol_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let senders: TrustSet =
            ["10.0.0.0/8".parse::<trueip::Cidr>().unwrap()].into_iter().collect();
        // Storage as a kept buffer leaves it: longer than the bound, and holding an
        // earlier connection's bytes, none of which may show through.
        // Read and timed as a connection's start is: into the lean path's buffers, by the
        // deadline it goes on with.
        let mut bufs = crate::http::lean::Buffers::take();
        let (buf, expired) = bufs.for_preamble(limits.proxy_protocol_timeout);
        buf.clear();
        buf.extend_from_slice(&b"GET /earlier HTTP/1.1\r\n".repeat(400));
        let result =
            read_header(&mut rx, peer.parse().unwrap(), &senders, mode, &limits, buf, expired)
                .await
                .map(|(r, rest)| (r, Bytes::copy_from_slice(buf.get(rest).unwrap())));
        writer.abort();
        result
    }

    #[tokio::test]
    async fn v1_in_pieces_keeps_the_data_after_it() {
        let (r, rest) = feed(
            vec![b"PROXY TCP4 192.0.2.1 198.51", b".100.7 56324 443\r\nGET / HTTP/1.1\r\n"],
            ProxyProtocol::Any,
            512,
            true,
        )
        .await
        .unwrap();
        let addrs = r.addrs.unwrap();
        assert_eq!(addrs.source.to_string(), "192.0.2.1:56324");
        assert_eq!(addrs.destination.to_string(), "198.51.100.7:443");
        assert_eq!(&rest[..], b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn v2_round_trip_from_our_encoder() {
        let bytes = encode(
            SendProxy::V2,
            "[2001:db8::1]:5000".parse().unwrap(),
            "[2001:db8::2]:443".parse().unwrap(),
        );
        let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let (r, rest) = feed(vec![leaked, b"hello"], ProxyProtocol::V2, 512, true).await.unwrap();
        assert_eq!(r.addrs.unwrap().source.to_string(), "[2001:db8::1]:5000");
        assert!(rest.is_empty() || &rest[..] == b"hello");
    }

    #[tokio::test]
    async fn refusals() {
        let slow =
            feed(vec![b"PROXY TCP4 192.0.2.1"], ProxyProtocol::Any, 512, false).await.unwrap_err();
        assert!(matches!(slow, PreambleError::Timeout(_)), "{slow}");
        assert_eq!(error_kind(&slow), ProxyErrorKind::Timeout);
        let cut =
            feed(vec![b"PROXY TCP4 192.0.2.1"], ProxyProtocol::Any, 512, true).await.unwrap_err();
        assert!(matches!(cut, PreambleError::Closed(20)), "{cut}");
        assert_eq!(error_kind(&cut), ProxyErrorKind::Truncated);
        let refused =
            async |line: &'static [u8], mode| feed(vec![line], mode, 512, true).await.unwrap_err();
        let bad = refused(b"PROXY TCP4 999.0.2.1 198.51.100.7 1 2\r\n", ProxyProtocol::Any).await;
        assert_eq!(error_kind(&bad), ProxyErrorKind::Malformed, "{bad}");
        let http = refused(b"GET / HTTP/1.1\r\n\r\n", ProxyProtocol::Any).await;
        assert_eq!(error_kind(&http), ProxyErrorKind::WrongVersion, "{http}");
        let v1_on_v2 =
            refused(b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n", ProxyProtocol::V2).await;
        assert_eq!(error_kind(&v1_on_v2), ProxyErrorKind::WrongVersion, "{v1_on_v2}");
        // A v2 header announcing a 60000-byte payload is refused before it is read.
        let big: &'static [u8] = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xea\x60";
        let too_large = feed(vec![big], ProxyProtocol::V2, 512, false).await.unwrap_err();
        assert!(matches!(too_large, PreambleError::TooLarge(512)), "{too_large}");
        assert_eq!(error_setting(&too_large), " (limits.proxy_protocol_max_bytes)");
        let stranger = feed_from(
            "198.51.100.7",
            vec![b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n"],
            ProxyProtocol::Any,
            512,
            true,
        )
        .await
        .unwrap_err();
        assert_eq!(error_kind(&stranger), ProxyErrorKind::UntrustedSender, "{stranger}");
    }

    #[tokio::test]
    async fn a_datagram_header_keeps_the_sender_as_the_peer() {
        for fam in [0x12u8, 0x22] {
            let mut bytes = encode(
                SendProxy::V2,
                if fam == 0x12 {
                    "192.0.2.1:5000".parse().unwrap()
                } else {
                    "[2001:db8::1]:5000".parse().unwrap()
                },
                if fam == 0x12 {
                    "192.0.2.2:443".parse().unwrap()
                } else {
                    "[2001:db8::2]:443".parse().unwrap()
                },
            );
            bytes[13] = fam;
            let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            let (r, _) = feed(vec![leaked], ProxyProtocol::V2, 512, true).await.unwrap();
            assert_eq!(r.addrs, None, "{fam:#x}");
            assert_eq!(r.ignored, Some(ProxyIgnored::Datagram), "{fam:#x}");
        }
    }

    #[tokio::test]
    async fn local_command_has_no_addresses() {
        let (r, _) = feed(vec![b"PROXY UNKNOWN\r\n"], ProxyProtocol::V1, 512, true).await.unwrap();
        assert_eq!(r.addrs, None);
    }

    /// A v2 LOCAL header is the sender's own connection (a health check): a TLS or
    /// private-endpoint TLV in it says nothing about a client. The same TLVs in a PROXY
    /// header do. (Before, a LOCAL header's SSL TLV made the sender's plain connection
    /// `https`: X-Forwarded-Proto and the origin scheme.)
    #[tokio::test]
    async fn a_local_headers_tlvs_say_nothing_about_a_client() {
        // SSL: client used TLS (0x01), verified (0); AWS: a VPC endpoint id.
        const TLVS: &[u8] = b"\x20\x00\x05\x01\x00\x00\x00\x00\
\xEA\x00\x17\x01vpce-08d2bf15fac5001c9";
        for (what, head) in [
            // v2 LOCAL, AF_UNSPEC: no address block, the TLVs follow at once.
            ("LOCAL", &[0x20u8, 0x00][..]),
            // v2 PROXY, AF_UNSPEC: no addresses either, and the TLVs are about the client.
            ("PROXY", &[0x21u8, 0x00][..]),
        ] {
            let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            bytes.extend_from_slice(head);
            bytes.extend_from_slice(&u16::try_from(TLVS.len()).unwrap().to_be_bytes());
            bytes.extend_from_slice(TLVS);
            let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            let (r, rest) = feed(vec![leaked], ProxyProtocol::V2, 512, true).await.unwrap();
            assert!(rest.is_empty(), "{what}");
            assert_eq!(r.addrs, None, "{what}");
            let proxy = what == "PROXY";
            assert_eq!(r.client_tls, proxy, "{what}");
            assert_eq!(r.private_link.is_empty(), !proxy, "{what}");
        }
    }

    #[test]
    fn mixed_families_encode_as_v6() {
        let v1 = encode(
            SendProxy::V1,
            "192.0.2.1:5".parse().unwrap(),
            "[2001:db8::2]:443".parse().unwrap(),
        );
        assert_eq!(
            String::from_utf8(v1).unwrap(),
            "PROXY TCP6 ::ffff:c000:201 2001:db8::2 5 443\r\n"
        );
    }
}
