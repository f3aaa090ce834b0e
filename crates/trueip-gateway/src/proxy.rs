//! Reading the PROXY protocol header a load balancer sends before anything else, and
//! writing one for an upstream.
//!
//! The listener knows from its configuration whether a header comes (the specification
//! forbids guessing from the bytes), and only senders in `client_ip.proxy_protocol_from`
//! may use such a listener. A header that is malformed, of the wrong version, larger
//! than the bound, cut short, or not complete within the timeout closes the connection.
//! A valid header that describes another kind of connection (a v2 header for a UDP
//! flow) is read and set aside: the connection is served with the sender as the peer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use trueip::proxy_protocol::{self as pp, Command, Decode, ProxyAddrs, ProxyHeader};

use crate::config::{ProxyProtocol, SendProxy};
use crate::metrics::{ProxyErrorKind, ProxyIgnored};

/// Why a header was refused.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Not complete within the timeout.
    Timeout,
    /// Larger than the bound.
    TooLarge(usize),
    /// The peer closed the connection first, after this many bytes.
    Truncated(usize),
    /// Not a valid header.
    Malformed(pp::ProxyError),
    /// A socket error.
    Io(io::Error),
}

impl ReadError {
    /// The metric label.
    pub(crate) fn kind(&self) -> ProxyErrorKind {
        match self {
            ReadError::Timeout => ProxyErrorKind::Timeout,
            ReadError::TooLarge(_) => ProxyErrorKind::TooLarge,
            ReadError::Truncated(_) | ReadError::Io(_) => ProxyErrorKind::Truncated,
            ReadError::Malformed(
                pp::ProxyError::NotProxy { .. }
                | pp::ProxyError::V1BadPrefix { .. }
                | pp::ProxyError::V2BadSignature { .. },
            ) => ProxyErrorKind::WrongVersion,
            ReadError::Malformed(_) => ProxyErrorKind::Malformed,
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Timeout => f.write_str("no complete PROXY header within the timeout"),
            ReadError::TooLarge(max) => write!(
                f,
                "PROXY header larger than {max} bytes (limits.proxy_protocol_max_bytes)"
            ),
            ReadError::Truncated(0) => f.write_str("connection closed before a PROXY header"),
            ReadError::Truncated(n) => {
                write!(f, "connection closed after {n} bytes of a PROXY header")
            }
            ReadError::Malformed(e) => write!(f, "invalid PROXY header: {e}"),
            ReadError::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
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

/// Reads one header. Returns it and the bytes read after it (application data).
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyProtocol,
    max: usize,
    timeout: Duration,
) -> Result<(Received, Bytes), ReadError> {
    match tokio::time::timeout(timeout, read_inner(stream, mode, max)).await {
        Ok(result) => result,
        Err(_) => Err(ReadError::Timeout),
    }
}

async fn read_inner<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyProtocol,
    max: usize,
) -> Result<(Received, Bytes), ReadError> {
    let decode: fn(&[u8]) -> Result<Decode, pp::ProxyError> = match mode {
        ProxyProtocol::V1 => pp::decode_v1,
        ProxyProtocol::V2 => pp::decode_v2,
        ProxyProtocol::Any | ProxyProtocol::Off => pp::decode,
    };
    // A v1 line fits in 107 bytes and a typical v2 header (addresses, a few TLVs) in
    // well under 256, so one read usually holds the whole header.
    let mut buf = BytesMut::with_capacity(max.min(512));
    loop {
        let needed = match decode(&buf).map_err(ReadError::Malformed)? {
            Decode::Complete { header, consumed } => {
                let rest = buf.split_off(consumed.min(buf.len())).freeze();
                return Ok((received(&header), rest));
            }
            Decode::Incomplete { needed } => needed,
        };
        if buf.len().saturating_add(needed) > max {
            return Err(ReadError::TooLarge(max));
        }
        let room = max - buf.len();
        buf.reserve(room.min(4096));
        let mut limited = (&mut *stream).take(room as u64);
        let n = limited.read_buf(&mut buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Truncated(buf.len()));
        }
    }
}

fn received(header: &ProxyHeader) -> Received {
    if header.command == Command::Proxy && header.transport == pp::Transport::Datagram {
        return Received {
            addrs: None,
            client_tls: false,
            private_link: trueip::PrivateLink::default(),
            ignored: Some(ProxyIgnored::Datagram),
        };
    }
    let (addrs, private_link) = match header.command {
        Command::Proxy => (header.addrs, trueip::PrivateLink::from_tlvs(&header.tlvs)),
        // A health check of the sender's own: nothing in it is about a client.
        Command::Local => (None, trueip::PrivateLink::default()),
    };
    let client_tls = header
        .tlvs
        .ssl
        .as_ref()
        .is_some_and(|ssl| ssl.client & 0x01 != 0);
    Received {
        addrs,
        client_tls,
        private_link,
        ignored: None,
    }
}

/// Encodes a header announcing `source` connected to `destination`. Mixed families are
/// written as IPv6 (IPv4-mapped), which every receiver normalises back.
pub(crate) fn encode(version: SendProxy, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let addrs = ProxyAddrs {
        source,
        destination,
    };
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
    use tokio::io::AsyncWriteExt;

    async fn feed(
        chunks: Vec<&'static [u8]>,
        mode: ProxyProtocol,
        max: usize,
        close: bool,
    ) -> Result<(Received, Bytes), ReadError> {
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
        let result = read_header(&mut rx, mode, max, Duration::from_millis(300)).await;
        writer.abort();
        result
    }

    #[tokio::test]
    async fn v1_in_pieces_keeps_the_data_after_it() {
        let (r, rest) = feed(
            vec![
                b"PROXY TCP4 192.0.2.1 198.51",
                b".100.7 56324 443\r\nGET / HTTP/1.1\r\n",
            ],
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
        let (r, rest) = feed(vec![leaked, b"hello"], ProxyProtocol::V2, 512, true)
            .await
            .unwrap();
        assert_eq!(r.addrs.unwrap().source.to_string(), "[2001:db8::1]:5000");
        assert!(rest.is_empty() || &rest[..] == b"hello");
    }

    #[tokio::test]
    async fn refusals() {
        let slow = feed(
            vec![b"PROXY TCP4 192.0.2.1"],
            ProxyProtocol::Any,
            512,
            false,
        )
        .await
        .unwrap_err();
        assert!(matches!(slow, ReadError::Timeout), "{slow}");
        let cut = feed(vec![b"PROXY TCP4 192.0.2.1"], ProxyProtocol::Any, 512, true)
            .await
            .unwrap_err();
        assert!(matches!(cut, ReadError::Truncated(20)), "{cut}");
        let bad = feed(
            vec![b"PROXY TCP4 999.0.2.1 198.51.100.7 1 2\r\n"],
            ProxyProtocol::Any,
            512,
            true,
        )
        .await
        .unwrap_err();
        assert_eq!(bad.kind(), ProxyErrorKind::Malformed, "{bad}");
        let http = feed(
            vec![b"GET / HTTP/1.1\r\n\r\n"],
            ProxyProtocol::Any,
            512,
            true,
        )
        .await
        .unwrap_err();
        assert_eq!(http.kind(), ProxyErrorKind::WrongVersion, "{http}");
        let v1_on_v2 = feed(
            vec![b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\n"],
            ProxyProtocol::V2,
            512,
            true,
        )
        .await
        .unwrap_err();
        assert_eq!(v1_on_v2.kind(), ProxyErrorKind::WrongVersion, "{v1_on_v2}");
        // A v2 header announcing a 60000-byte payload is refused before it is read.
        let big: &'static [u8] = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xea\x60";
        let too_large = feed(vec![big], ProxyProtocol::V2, 512, false)
            .await
            .unwrap_err();
        assert!(matches!(too_large, ReadError::TooLarge(512)), "{too_large}");
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
            let (r, _) = feed(vec![leaked], ProxyProtocol::V2, 512, true)
                .await
                .unwrap();
            assert_eq!(r.addrs, None, "{fam:#x}");
            assert_eq!(r.ignored, Some(ProxyIgnored::Datagram), "{fam:#x}");
        }
    }

    #[tokio::test]
    async fn local_command_has_no_addresses() {
        let (r, _) = feed(vec![b"PROXY UNKNOWN\r\n"], ProxyProtocol::V1, 512, true)
            .await
            .unwrap();
        assert_eq!(r.addrs, None);
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
