//! One connection's preamble read from an async stream (feature `tokio`): the sender
//! rule, the size bound and the timeout around the decoder, so that every listener
//! built on this crate refuses the same connections for the same reasons.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::IpAddr;
use std::ops::Range;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

use super::{
    Decode, ProxyError, ProxyHeader, V1_MAX_LEN, V2_MAX_LEN, decode, decode_v1, decode_v2,
};
use crate::addr::normalize;
use crate::trust::TrustSet;

/// Which header versions a trusted sender may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accept {
    /// v1 or v2, told apart by the first byte.
    #[default]
    Any,
    /// Only the text header: a v2 signature is a malformed header.
    V1,
    /// Only the binary header: a `PROXY ` line is a malformed header.
    V2,
}

/// What a connection from a sender *not* trusted to send PROXY headers gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untrusted {
    /// Closed before anything is read: the listener exists for its load balancers
    /// (the gateway's `proxy_protocol` listeners).
    Refuse,
    /// Served as a direct client — unless its first bytes are a PROXY header, which
    /// closes it: someone claiming to relay a client without being trusted to is either
    /// forging or a balancer missing from the trust set, and neither should be served
    /// as if the header were not there. (`trueip::axum::ProxyProtocolListener`.)
    ServeDirect,
}

/// How [`read_preamble`] reads: the sender rule, the versions, the bound and the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRules {
    untrusted: Untrusted,
    accept: Accept,
    max_bytes: usize,
    timeout: Duration,
}

impl ReadRules {
    /// The default [`timeout`](Self::timeout): long enough for a balancer across a
    /// congested link, short enough that a silent connection does not hold a slot.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default [`max_bytes`](Self::max_bytes): room for a v2 header with addresses
    /// and the TLVs load balancers send (AWS, Azure, SSL, authority).
    pub const DEFAULT_MAX_BYTES: usize = 512;

    /// Untrusted senders as `untrusted` says; any version, 512 bytes, 5 seconds.
    pub fn new(untrusted: Untrusted) -> Self {
        ReadRules {
            untrusted,
            accept: Accept::Any,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Which versions a trusted sender may use.
    pub fn accept(mut self, accept: Accept) -> Self {
        self.accept = accept;
        self
    }

    /// The most bytes read before the header must be complete. Held between
    /// [`V1_MAX_LEN`] (a v1 line must fit) and [`V2_MAX_LEN`] (the largest v2 header).
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max.clamp(V1_MAX_LEN, V2_MAX_LEN);
        self
    }

    /// How long the sender has to complete its header (or, with
    /// [`Untrusted::ServeDirect`], to show it is not sending one).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What came before the application's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preamble {
    /// The trusted sender's header; `None` for a direct client ([`Untrusted::ServeDirect`]).
    pub header: Option<ProxyHeader>,
    /// Bytes read after the header (or, from a direct client, its first bytes): the
    /// application's, to be handed to it before anything else is read from the stream.
    pub rest: Vec<u8>,
}

/// Why [`read_preamble`] closed a connection. Its `Display` names what the sender did
/// and, where a setting decides, which one.
#[derive(Debug)]
pub enum PreambleError {
    /// The sender is not trusted to send PROXY headers and the rules refuse it
    /// ([`Untrusted::Refuse`]). Nothing was read.
    UntrustedSender,
    /// A sender not trusted to send PROXY headers began with one
    /// ([`Untrusted::ServeDirect`]).
    UntrustedHeader,
    /// The header was not complete within this long.
    Timeout(Duration),
    /// The header would not fit in this many bytes.
    TooLarge(usize),
    /// The sender closed the connection after this many bytes, before the header was
    /// complete (0: before sending anything, as health checks and port scanners do).
    Closed(usize),
    /// Not a valid header, or a version the rules do not accept.
    Malformed(ProxyError),
    /// Reading from the stream failed.
    Io(io::Error),
}

impl fmt::Display for PreambleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreambleError::UntrustedSender => f.write_str(
                "this peer may not send PROXY headers (if it is your load balancer, add its \
                 address to the policy's proxy_protocol_from)",
            ),
            PreambleError::UntrustedHeader => f.write_str(
                "sent a PROXY header but may not (if it is your load balancer, add its \
                 address to the policy's proxy_protocol_from)",
            ),
            PreambleError::Timeout(t) => write!(f, "no complete PROXY header within {t:?}"),
            PreambleError::TooLarge(max) => write!(f, "PROXY header larger than {max} bytes"),
            PreambleError::Closed(0) => f.write_str("closed before sending anything"),
            PreambleError::Closed(n) => write!(f, "closed after {n} bytes of a PROXY header"),
            PreambleError::Malformed(e) => write!(f, "invalid PROXY header: {e}"),
            PreambleError::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
    }
}

impl std::error::Error for PreambleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PreambleError::Malformed(e) => Some(e),
            PreambleError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads the PROXY preamble of a connection from `peer`.
///
/// - `peer` in `senders` (IPv4-mapped addresses count as IPv4): a header must come, of a
///   version `rules` accept, within the bound and the timeout.
/// - anyone else: [`Untrusted::Refuse`] fails at once with
///   [`PreambleError::UntrustedSender`]; [`Untrusted::ServeDirect`] reads until the
///   first bytes show whether they are a PROXY header (within the bound and timeout)
///   and fails with [`PreambleError::UntrustedHeader`] if they are.
///
/// On any error the caller must close the connection: the specification forbids
/// reading the bytes as anything else. Nothing past `rules.max_bytes` is ever read.
/// [`read_preamble_into`] is the same reader over the caller's own buffer.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use trueip::proxy_protocol::{ReadRules, Untrusted, read_preamble};
///
/// let senders: trueip::TrustSet = ["10.0.0.0/8".parse::<trueip::Cidr>()?].into_iter().collect();
/// let rules = ReadRules::new(Untrusted::Refuse);
/// let mut stream: &[u8] = b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 443\r\nGET / HTTP/1.1\r\n";
/// let preamble = read_preamble(&mut stream, "10.0.0.5".parse()?, &senders, &rules).await?;
/// let addrs = preamble.header.and_then(|h| h.addrs).expect("TCP4 carries addresses");
/// assert_eq!(addrs.source.to_string(), "192.0.2.1:56324");
/// assert_eq!(preamble.rest, b"GET / HTTP/1.1\r\n");
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(demo()).unwrap();
/// ```
pub async fn read_preamble<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    peer: IpAddr,
    senders: &TrustSet,
    rules: &ReadRules,
) -> Result<Preamble, PreambleError> {
    let mut buf = Vec::new();
    let read = read_preamble_into(stream, peer, senders, rules, &mut buf).await?;
    buf.truncate(read.rest.end);
    buf.drain(..read.rest.start.min(buf.len()));
    Ok(Preamble { header: read.header, rest: buf })
}

/// What [`read_preamble_into`] read. `H` is what was kept of the header: all of it, or
/// what [`read_preamble_until`]'s caller keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreambleRead<H = ProxyHeader> {
    /// The trusted sender's header; `None` for a direct client ([`Untrusted::ServeDirect`]).
    pub header: Option<H>,
    /// Where, in the buffer, the bytes read after the header lie (or, from a direct
    /// client, its first bytes): the application's, to be handed to it before anything
    /// else is read from the stream. Every byte before `rest.end` was read from the stream.
    pub rest: Range<usize>,
}

/// [`read_preamble`], reading into `buf` from its start, so that a server can read the
/// header and the first bytes after it (usually one read holds both) into the buffer
/// it reads the application's bytes into.
///
/// `buf`'s length is storage to read into: its bytes are overwritten, never read before
/// they were read from the stream, so a buffer kept from an earlier connection needs no
/// zeroing. It is grown (zeroed) only when a header needs more room than it has, and
/// never shortened. However long it is, nothing past `rules.max_bytes` is read.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use trueip::proxy_protocol::{ReadRules, Untrusted, read_preamble_into};
///
/// let senders: trueip::TrustSet = ["10.0.0.0/8".parse::<trueip::Cidr>()?].into_iter().collect();
/// let rules = ReadRules::new(Untrusted::Refuse);
/// let mut stream: &[u8] = b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 443\r\nGET / HTTP/1.1\r\n";
/// let mut buf = vec![b'x'; 8192];
/// let read = read_preamble_into(&mut stream, "10.0.0.5".parse()?, &senders, &rules, &mut buf).await?;
/// assert_eq!(&buf[read.rest], b"GET / HTTP/1.1\r\n");
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(demo()).unwrap();
/// ```
pub async fn read_preamble_into<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    peer: IpAddr,
    senders: &TrustSet,
    rules: &ReadRules,
    buf: &mut Vec<u8>,
) -> Result<PreambleRead, PreambleError> {
    // Made at the first poll, which comes only when a read waits: a header that came with
    // the connection (a balancer writes it with the client's first bytes) is read with no
    // timer, which cost a clock reading and a timer handle per connection. Everything
    // before that first wait ran without waiting, so the bound on waiting is the same.
    // (Boxed, the timer leaves this future small: inline, it made it, and the box a
    // server keeps it in, a timer entry's size and alignment.)
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    let expired = poll_fn(|cx| {
        timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(rules.timeout))).as_mut().poll(cx)
    });
    read_preamble_until(stream, peer, senders, rules, buf, expired, |header| header).await
}

/// [`read_preamble_into`], timed by the caller, keeping what the caller needs of the header.
///
/// - The sender's time is up when `expired` completes, and `rules`' timeout is only what
///   the error then reports. `expired` is polled only while a read waits, so a header that
///   came with the connection never touches it; a timer it makes at its first poll is made
///   only for connections that wait. For a server that times the connection's next steps
///   (its request head, its upstream's answer) with one timer it re-aims: lent here first,
///   that timer covers the PROXY header too, and a connection whose header was late arms
///   one timer, not two.
/// - `keep` makes what is returned of a trusted sender's header, as soon as it is decoded:
///   a server that needs the addresses and a TLV or two returns those, and the header with
///   all its TLVs (a few hundred bytes) is not moved out through every layer of the read.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use trueip::proxy_protocol::{PreambleError, ReadRules, Untrusted, read_preamble_until};
///
/// let senders: trueip::TrustSet = ["10.0.0.0/8".parse::<trueip::Cidr>()?].into_iter().collect();
/// let rules = ReadRules::new(Untrusted::Refuse).timeout(Duration::from_millis(10));
/// let (_sender, mut stream) = tokio::io::duplex(64); // a balancer that sends nothing
/// let mut timer = std::pin::pin!(tokio::time::sleep(Duration::from_millis(10)));
/// let late = read_preamble_until(&mut stream, "10.0.0.5".parse()?, &senders, &rules,
///     &mut Vec::new(), timer.as_mut(), |header| header.addrs).await;
/// assert!(matches!(late, Err(PreambleError::Timeout(_))));
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(demo()).unwrap();
/// ```
pub async fn read_preamble_until<S: AsyncRead + Unpin + ?Sized, H>(
    stream: &mut S,
    peer: IpAddr,
    senders: &TrustSet,
    rules: &ReadRules,
    buf: &mut Vec<u8>,
    expired: impl Future<Output = ()>,
    keep: impl FnOnce(ProxyHeader) -> H,
) -> Result<PreambleRead<H>, PreambleError> {
    let trusted = senders.contains(normalize(peer));
    if !trusted && rules.untrusted == Untrusted::Refuse {
        return Err(PreambleError::UntrustedSender);
    }
    let read = async {
        if trusted {
            header(stream, rules, buf, keep).await
        } else {
            not_a_header(stream, rules.max_bytes, buf).await
        }
    };
    let mut read = pin!(read);
    let mut expired = pin!(expired);
    poll_fn(|cx| {
        if let Poll::Ready(out) = read.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        expired.as_mut().poll(cx).map(|()| Err(PreambleError::Timeout(rules.timeout)))
    })
    .await
}

/// A trusted sender's header and where the bytes after it lie.
async fn header<S: AsyncRead + Unpin + ?Sized, H>(
    stream: &mut S,
    rules: &ReadRules,
    buf: &mut Vec<u8>,
    keep: impl FnOnce(ProxyHeader) -> H,
) -> Result<PreambleRead<H>, PreambleError> {
    let decode: fn(&[u8]) -> Result<Decode, ProxyError> = match rules.accept {
        Accept::Any => decode,
        Accept::V1 => decode_v1,
        Accept::V2 => decode_v2,
    };
    let max = rules.max_bytes;
    // No version's header is decoded from nothing: read before the first decode.
    let mut filled = read_more(stream, buf, 0, max).await?;
    loop {
        let read = buf.get(..filled).unwrap_or_default();
        // The decoded header is not held across the read below: this future stays the
        // size of what it waits with, not of a header with its TLVs.
        let needed = match decode(read).map_err(PreambleError::Malformed)? {
            Decode::Complete { header, consumed } => {
                return Ok(PreambleRead {
                    header: Some(keep(header)),
                    rest: consumed.min(filled)..filled,
                });
            }
            Decode::Incomplete { needed } => needed,
        };
        // Refused before reading what would not fit: a v2 length field announcing
        // 60 KB is enough to know.
        if filled.saturating_add(needed) > max {
            return Err(PreambleError::TooLarge(max));
        }
        filled = read_more(stream, buf, filled, max).await?;
    }
}

/// An untrusted sender's first bytes, once they show they are not a PROXY header.
async fn not_a_header<S: AsyncRead + Unpin + ?Sized, H>(
    stream: &mut S,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<PreambleRead<H>, PreambleError> {
    let mut filled = 0;
    loop {
        match super::looks_like_proxy(buf.get(..filled).unwrap_or_default()) {
            Some(true) => return Err(PreambleError::UntrustedHeader),
            Some(false) => {
                return Ok(PreambleRead { header: None, rest: 0..filled });
            }
            None => filled = read_more(stream, buf, filled, max).await?,
        }
    }
}

/// Reads what the stream has (at least one byte) into `buf` after its first `filled`
/// bytes, never past `max`; returns how many bytes are filled then.
async fn read_more<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    filled: usize,
    max: usize,
) -> Result<usize, PreambleError> {
    let room = max.saturating_sub(filled);
    if room == 0 {
        return Err(PreambleError::TooLarge(max));
    }
    let end = filled + room.min(4096);
    // Zeroed rather than read into spare capacity: that needs `unsafe`. A buffer kept
    // for reuse is long enough already, and is not touched here.
    if buf.len() < end {
        buf.resize(end, 0);
    }
    let read = poll_fn(|cx| {
        let mut free = ReadBuf::new(buf.get_mut(filled..end).unwrap_or_default());
        match Pin::new(&mut *stream).poll_read(cx, &mut free) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(free.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match read {
        Ok(0) => Err(PreambleError::Closed(filled)),
        Ok(n) => Ok(filled + n),
        Err(e) => Err(PreambleError::Io(e)),
    }
}
