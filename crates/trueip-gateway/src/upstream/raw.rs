//! The bare HTTP/1.1 exchange with the upstream, without hyper's client: the request
//! head in one buffer, the response head parsed by `httparse` (hyper's own parser) on
//! the requesting task. The lean path writes its own head from the raw lines and copies
//! the response through; hyper's path, for HTTP/2 requests without a body, writes it
//! from the request's header map ([`request_head`]) and gets the answer back as a header
//! map and a [`RawBody`] ([`Upstream::exchange_raw`]). Both read the response head and
//! its framing here ([`parse_head`], [`framing`]), so both frame alike.
//!
//! hyper's client spends a connection task, two channels and its own encoder and parser
//! per exchange: about 14,400 instructions per request on the h2 bench row
//! (`PROTOCOL=h2 bash bench/instructions.sh`), against about 6,600 here, httparse and the
//! answer's header map included.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::pool::{Pooled, Private, RawConn};
use super::{BoxError, Delivery, Upstream, may_resend};
use crate::rules::Failure;
use crate::rules::headers::{
    Codings, OwnValues, add_content_length, bodiless_keeps_length, connection_tokens,
    is_lower_name, length_value, may_tunnel, response_keeps, valid_value,
};

/// The most header lines an upstream response may carry (as in hyper's client).
const MAX_HEADERS: usize = 100;
/// The largest upstream response head.
pub(crate) const MAX_RESPONSE_HEAD: usize = 256 * 1024;
/// The longest chunk-size or trailer line.
const MAX_CHUNK_LINE: usize = 4096;

/// How an upstream response body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug)]
pub(crate) enum Failed {
    Connect(io::Error),
    Timeout,
    Protocol(&'static str),
    /// A `101` to a request that asked for no upgrade.
    Unasked,
}

impl Failed {
    /// The failure the client is answered with.
    pub(crate) fn failure(&self) -> Failure {
        match self {
            Failed::Connect(e) if e.kind() == io::ErrorKind::TimedOut => Failure::Timeout,
            Failed::Connect(e) if super::tls_refused(e) => Failure::Tls,
            Failed::Connect(_) => Failure::Unreachable,
            Failed::Timeout => Failure::Timeout,
            Failed::Protocol(_) => Failure::Broken,
            Failed::Unasked => Failure::Unasked,
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Connect(e) => write!(f, "{e}"),
            Failed::Timeout => f.write_str("no response in time (upstream.response_timeout)"),
            Failed::Protocol(why) => f.write_str(why),
            Failed::Unasked => f.write_str("the upstream switched protocols unasked"),
        }
    }
}

/// What a response head's framing lines say.
pub(crate) struct Head<'r> {
    pub(crate) status: StatusCode,
    pub(crate) framing: Framing,
    /// Whether the connection can take another request after this response.
    pub(crate) reusable: bool,
    /// What the response's `Connection` lines name.
    pub(crate) named: Tokens<'r>,
    /// The `Content-Length`, when one was sent (and agreed with itself) and no
    /// `Transfer-Encoding` overrides it.
    pub(crate) length: Option<u64>,
}

/// The tokens of a response's `Connection` lines: nearly always one (`keep-alive`), kept
/// without allocating up to four.
pub(crate) struct Tokens<'r> {
    few: [&'r [u8]; 4],
    len: usize,
    more: Vec<&'r [u8]>,
}

impl<'r> Tokens<'r> {
    fn new() -> Self {
        Tokens { few: [&[]; 4], len: 0, more: Vec::new() }
    }

    fn push(&mut self, token: &'r [u8]) {
        match self.few.get_mut(self.len) {
            Some(slot) if self.more.is_empty() => {
                *slot = token;
                self.len += 1;
            }
            _ => {
                if self.more.is_empty() {
                    self.more.extend_from_slice(&self.few);
                }
                self.more.push(token);
            }
        }
    }

    /// The tokens, in order.
    pub(crate) fn as_slice(&self) -> &[&'r [u8]] {
        if self.more.is_empty() { self.few.get(..self.len).unwrap_or_default() } else { &self.more }
    }
}

/// Reads the framing of a response head to a request that asked for no upgrade (a `HEAD`
/// one when `head_only`): a `101` is refused (`headers::may_tunnel`, asked nothing), a
/// `Content-Length` that is not one number fails, and a head with both framings is
/// answered once and its connection never reused. `Content-Length` is read by the one rule
/// every path reads it by ([`add_content_length`]), `Transfer-Encoding` by [`Codings`]: a
/// coding but `chunked` fails, and any coding in an HTTP/1.0 response.
pub(crate) fn framing<'r>(
    resp: &httparse::Response<'_, 'r>,
    head_only: bool,
) -> Result<Head<'r>, Failed> {
    let code = resp.code.unwrap_or(0);
    if code == 101 {
        let answered =
            resp.headers.iter().find(|h| is_lower_name(h.name, "upgrade")).map(|h| h.value);
        if !may_tunnel(None, answered) {
            return Err(Failed::Unasked);
        }
    }
    let status = StatusCode::from_u16(code).map_err(|_| Failed::Protocol("invalid status"))?;
    let mut named = Tokens::new();
    let mut upstream_close = resp.version != Some(1);
    let mut length: Option<u64> = None;
    let mut codings: Option<Codings> = None;
    for h in resp.headers.iter() {
        if is_lower_name(h.name, "connection") {
            for token in connection_tokens(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    upstream_close = true;
                }
                named.push(token);
            }
        } else if is_lower_name(h.name, "content-length") {
            length = add_content_length(length, h.value)
                .map_err(|_| Failed::Protocol("invalid or conflicting content-length"))?;
        } else if is_lower_name(h.name, "transfer-encoding") {
            codings.get_or_insert_default().add(h.value);
        }
    }
    let coded = codings.is_some();
    if codings.is_some_and(|c| !c.only_chunked()) {
        return Err(Failed::Protocol("a transfer coding other than chunked"));
    }
    // An HTTP/1.0 message has no transfer codings: its framing is faulty (RFC 9112 §6.1),
    // and hyper's client refuses it, so every path does.
    if codings.is_some() && resp.version != Some(1) {
        return Err(Failed::Protocol("Transfer-Encoding in an HTTP/1.0 response"));
    }
    let no_body = head_only || code == 204 || code == 304;
    let framing = match (no_body, coded, length) {
        (true, ..) => Framing::None,
        (false, true, _) => Framing::Chunked,
        (false, false, Some(n)) => Framing::Length(n),
        (false, false, None) => Framing::Close,
    };
    // Both framings at once: smuggling territory; answer once, never reuse, and pass the
    // coding on without the length (RFC 9112 §6.3), as `one_content_length` does.
    let both = coded && length.is_some();
    Ok(Head {
        status,
        framing,
        reusable: !(upstream_close || both),
        named,
        length: length.filter(|_| !coded),
    })
}

/// Where parsing a response head from the bytes read so far got.
pub(crate) enum Step<T> {
    /// The head is not all there yet.
    Partial,
    /// An interim (1xx) response of this many bytes, to skip.
    Interim(usize),
    /// The head, this many bytes long, as `build` made it.
    Done(usize, T),
}

/// Parses the response head at the start of `bytes` and hands it to `build`.
pub(crate) fn parse_head<T>(
    bytes: &[u8],
    build: impl FnOnce(&httparse::Response<'_, '_>) -> Result<T, Failed>,
) -> Result<Step<T>, Failed> {
    // Left uninitialised: httparse fills the slots a head has and hands back only those.
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, bytes, &mut lines)
    {
        Ok(httparse::Status::Complete(n)) => {
            let code = resp.code.unwrap_or(0);
            if (100..200).contains(&code) && code != 101 {
                return Ok(Step::Interim(n));
            }
            Ok(Step::Done(n, build(&resp)?))
        }
        Ok(httparse::Status::Partial) if bytes.len() > MAX_RESPONSE_HEAD => {
            Err(Failed::Protocol("response head too large"))
        }
        Ok(httparse::Status::Partial) => Ok(Step::Partial),
        Err(_) => Err(Failed::Protocol("invalid response head")),
    }
}

/// The size of a chunk from its size line (without the line end): hex digits from the
/// line's first byte, then perhaps spaces or tabs and extensions (RFC 9112 §7.1.1), which
/// are ignored but may hold no control byte. The lean path passes the line on to the
/// client as it came, so it must mean one size to every reader: a size after a space or a
/// form feed, or a bare CR in an extension (a line end to some parsers), once passed,
/// where hyper's client refuses them.
pub(crate) fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (size, rest) = line.split_at(digits);
    if size.is_empty() || size.len() > 15 {
        return None;
    }
    let blank = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    match rest.get(blank..).unwrap_or_default() {
        [] => {}
        [b';', ext @ ..] if valid_value(ext) => {}
        _ => return None,
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

/// An upstream response for hyper's path: the head as a header map (hop-by-hop lines
/// gone, by [`response_keeps`]; `Content-Length` as the framing says), the body framing.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    pub(crate) reusable: bool,
}

fn answer(resp: &httparse::Response<'_, '_>, head_only: bool) -> Result<Answer, Failed> {
    let head = framing(resp, head_only)?;
    let mut headers = HeaderMap::with_capacity(resp.headers.len() + 1);
    for h in resp.headers.iter() {
        // The length goes back below, as the framing decided it.
        if is_lower_name(h.name, "content-length") || !response_keeps(h.name, head.named.as_slice())
        {
            continue;
        }
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
        else {
            return Err(Failed::Protocol("invalid response header"));
        };
        headers.append(name, value);
    }
    match head.framing {
        Framing::Length(n) => {
            headers.insert(header::CONTENT_LENGTH, length_value(n));
        }
        Framing::None if bodiless_keeps_length(head.status.as_u16()) => {
            if let Some(n) = head.length {
                headers.insert(header::CONTENT_LENGTH, length_value(n));
            }
        }
        Framing::None | Framing::Chunked | Framing::Close => {}
    }
    Ok(Answer { status: head.status, headers, framing: head.framing, reusable: head.reusable })
}

/// Reads a response head on `conn`, skipping interim responses. `heard` is set once any
/// byte of a response came (an interim one too): the request was read, and is not sent
/// again.
async fn read_answer(
    conn: &mut RawConn,
    head_only: bool,
    heard: &mut bool,
) -> Result<Answer, Failed> {
    loop {
        if !conn.buf.is_empty() {
            match parse_head(conn.buf.filled(), |resp| answer(resp, head_only))? {
                Step::Done(n, answer) => {
                    conn.buf.consume(n);
                    return Ok(answer);
                }
                Step::Interim(n) => {
                    conn.buf.consume(n);
                    continue;
                }
                Step::Partial => {}
            }
        }
        match std::future::poll_fn(|cx| read_more(conn, cx)).await {
            Ok(0) | Err(_) => return Err(Failed::Protocol("the upstream closed the connection")),
            Ok(_) => *heard = true,
        }
    }
}

/// Reads what the connection has into its buffer: `Ok(0)` at its end.
fn read_more(conn: &mut RawConn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    let mut read = tokio::io::ReadBuf::new(conn.buf.spare());
    match Pin::new(&mut conn.io).poll_read(cx, &mut read) {
        Poll::Ready(Ok(())) => {
            let n = read.filled().len();
            conn.buf.grew(n);
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

fn put_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The head of a request without a body: `METHOD target HTTP/1.1`, `host` (when it is a
/// valid value), the received lines the header rules left in `headers` but those of
/// `Host` and of the gateway's own headers, then `own`, as hyper's path would send them
/// once [`set_own`](crate::rules::headers::set_own) had written them into the map.
pub(crate) fn request_head(
    method: &Method,
    target: &str,
    host: &[u8],
    headers: &HeaderMap,
    own: &OwnValues<'_>,
) -> Vec<u8> {
    // Room for 96 bytes a line: a browser's request averages 50-60 (its user-agent, accept
    // and cookie lines run to 100-200). Growing the head midway copies it; sizing it exactly
    // takes a pass over the map that costs about as much as the copy.
    let mut head = Vec::with_capacity(256 + target.len() + 96 * headers.len() + own.buf.len());
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if valid_value(host) {
        put_line(&mut head, b"host", host);
    }
    for (name, value) in headers {
        if name == header::HOST || own.sets(name.as_str()) {
            continue;
        }
        put_line(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    for (field, value) in &own.values {
        if let Some(bytes) = own.bytes(value) {
            put_line(&mut head, field.as_str().as_bytes(), bytes);
        }
    }
    head.extend_from_slice(b"\r\n");
    head
}

impl Upstream {
    /// Sends `head` (a request without a body, made by [`request_head`]) on an idle bare
    /// connection for `key`, or a new one, and reads the response head. A reused
    /// connection that fails before any byte of a response came is tried once more when
    /// [`may_resend`] allows it (the request may have been written: `MaybeSent`). The
    /// caller bounds the whole by `upstream.response_timeout`. `now`: a clock reading
    /// the caller took as the exchange began, for the pool's idle check (a resend reads
    /// the clock again).
    pub(crate) async fn exchange_raw(
        &self,
        head: &[u8],
        method: &Method,
        key: Authority,
        private: &Private,
        now: Instant,
    ) -> Result<(Answer, Settled), Failed> {
        let head_only = *method == Method::HEAD;
        let mut resent = false;
        loop {
            let now = if resent { Instant::now() } else { now };
            let mut conn = match self.take_raw(&key, now, private) {
                Some(c) => c,
                // Boxed: a connection (TCP, perhaps TLS) is set up rarely, and inline its
                // future would make this one, and every future holding it, over 1 KiB
                // larger, copied whole at each step of every exchange.
                None => Box::pin(self.connect_raw(&key)).await.map_err(Failed::Connect)?,
            };
            let again = may_resend(method, conn.reused, Delivery::MaybeSent, resent);
            if conn.io.write_all(head).await.is_err() {
                if again {
                    resent = true;
                    continue;
                }
                return Err(Failed::Protocol("the upstream closed the connection"));
            }
            let mut heard = false;
            match read_answer(&mut conn, head_only, &mut heard).await {
                Ok(answer) => {
                    let left = match answer.framing {
                        Framing::None => Left::Length(0),
                        Framing::Length(n) => Left::Length(n),
                        Framing::Chunked => Left::Chunked(Chunk::Size),
                        Framing::Close => Left::Close,
                    };
                    let body = RawBody {
                        conn: Some(conn),
                        left,
                        reusable: answer.reusable && answer.framing != Framing::Close,
                        lease: self.lease(key, private),
                    };
                    return Ok((answer, body.take_whole()));
                }
                Err(Failed::Protocol(_))
                    if may_resend(method, conn.reused, Delivery::written(heard), resent) =>
                {
                    resent = true;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// What is left of a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Left {
    Length(u64),
    Chunked(Chunk),
    Close,
}

/// Where a chunked body's reader stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes to go.
    Data(u64),
    /// At the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines, then a blank line.
    Trailers,
}

/// An upstream response body read from a bare connection, its framing taken off (hyper
/// frames it again for the client). The connection goes back to its pool as soon as
/// the body ended cleanly with nothing read past it; a body dropped before its end
/// closes it.
pub(crate) struct RawBody {
    conn: Option<RawConn>,
    left: Left,
    reusable: bool,
    lease: Pooled,
}

/// The bytes of a body that ends in the buffer, taken when the head is parsed.
pub(crate) enum Settled {
    /// The whole body, read with the head; the connection has gone back to its pool.
    Whole(Bytes),
    /// Still to be read.
    Streamed(RawBody),
}

impl RawBody {
    /// The whole body, when every byte of it came with the head (then its connection
    /// goes back now, before the response is even written); else the body to read.
    fn take_whole(mut self) -> Settled {
        let Some(conn) = self.conn.as_mut() else {
            return Settled::Whole(Bytes::new());
        };
        if let Left::Length(n) = self.left
            && usize::try_from(n).is_ok_and(|n| n <= conn.buf.len())
        {
            let n = usize::try_from(n).unwrap_or_default();
            let bytes = Bytes::copy_from_slice(conn.buf.filled().get(..n).unwrap_or_default());
            conn.buf.consume(n);
            self.left = Left::Length(0);
            self.end();
            return Settled::Whole(bytes);
        }
        Settled::Streamed(self)
    }

    /// The body ended cleanly: its connection goes back to the pool, when it may take
    /// another request and nothing came past the body.
    fn end(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            self.lease.keep_raw(conn);
        }
    }
}

/// The body broke off or was malformed.
#[derive(Debug)]
struct Broken(&'static str);

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Broken {}

fn broken(why: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Err(Box::new(Broken(why)))))
}

impl http_body::Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let have = conn.buf.filled();
            match this.left {
                Left::Length(0) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Left::Length(n) if !have.is_empty() => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(have.len());
                    let data = Bytes::copy_from_slice(have.get(..take).unwrap_or_default());
                    conn.buf.consume(take);
                    this.left = Left::Length(n - take as u64);
                    if this.left == Left::Length(0) {
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Left::Close if !have.is_empty() => {
                    let data = Bytes::copy_from_slice(have);
                    conn.buf.consume(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Left::Chunked(Chunk::Data(n)) if !have.is_empty() => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(have.len());
                    let data = Bytes::copy_from_slice(have.get(..take).unwrap_or_default());
                    conn.buf.consume(take);
                    this.left = Left::Chunked(match n - take as u64 {
                        0 => Chunk::DataEnd,
                        more => Chunk::Data(more),
                    });
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Left::Chunked(Chunk::DataEnd) => match have {
                    [b'\r', b'\n', ..] => {
                        conn.buf.consume(2);
                        this.left = Left::Chunked(Chunk::Size);
                        continue;
                    }
                    [] | [b'\r'] => {}
                    _ => return broken("invalid chunked body from the upstream"),
                },
                Left::Chunked(Chunk::Size) => {
                    if let Some(nl) = have.iter().position(|&b| b == b'\n') {
                        let line = have.get(..nl).unwrap_or_default();
                        let Some(n) = line.strip_suffix(b"\r").and_then(chunk_size) else {
                            return broken("invalid chunked body from the upstream");
                        };
                        conn.buf.consume(nl + 1);
                        this.left = Left::Chunked(match n {
                            0 => Chunk::Trailers,
                            n => Chunk::Data(n),
                        });
                        continue;
                    }
                    if have.len() > MAX_CHUNK_LINE {
                        return broken("invalid chunked body from the upstream");
                    }
                }
                Left::Chunked(Chunk::Trailers) => {
                    if have.starts_with(b"\r\n") {
                        conn.buf.consume(2);
                        this.left = Left::Length(0);
                        continue;
                    }
                    let mut lines = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(have, &mut lines) {
                        Ok(httparse::Status::Complete((n, lines))) => {
                            let mut trailers = HeaderMap::with_capacity(lines.len());
                            for h in lines.iter() {
                                let (Ok(name), Ok(value)) = (
                                    HeaderName::from_bytes(h.name.as_bytes()),
                                    HeaderValue::from_bytes(h.value),
                                ) else {
                                    return broken("invalid trailers from the upstream");
                                };
                                trailers.append(name, value);
                            }
                            conn.buf.consume(n);
                            this.left = Left::Length(0);
                            if trailers.is_empty() {
                                continue;
                            }
                            this.end();
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        Ok(httparse::Status::Partial) if have.len() <= MAX_CHUNK_LINE => {}
                        _ => return broken("invalid trailers from the upstream"),
                    }
                }
                Left::Length(_) | Left::Close | Left::Chunked(Chunk::Data(_)) => {}
            }
            // Nothing to hand out from the buffer: read more.
            match std::task::ready!(read_more(conn, cx)) {
                Ok(0) if this.left == Left::Close => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return broken("the upstream closed the connection mid-body"),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.left == Left::Length(0)
    }

    fn size_hint(&self) -> SizeHint {
        match (self.left, &self.conn) {
            (_, None) => SizeHint::with_exact(0),
            (Left::Length(n), Some(_)) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// The answer's lines are the received ones `response_keeps` keeps, each value as it
    /// came, named as `HeaderName::from_bytes` names them, with `Content-Length` as the
    /// framing decided it.
    #[test]
    fn answers_keep_the_kept_lines_as_they_came() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "Server: nginx/1.22.1\r\nDate: Mon, 07 Dec 2026 04:00:00 GMT\r\n\
                 Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n",
                &[
                    ("server", "nginx/1.22.1"),
                    ("date", "Mon, 07 Dec 2026 04:00:00 GMT"),
                    ("content-type", "text/plain"),
                    ("content-length", "5"),
                ],
            ),
            (
                "X-Custom: a\u{1}b\r\nCONTENT-LENGTH: 007\r\nKeep-Alive: timeout=5\r\n\
                 Connection: x-drop\r\nX-Drop: secret\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n",
                &[
                    ("x-custom", "a\u{1}b"),
                    ("set-cookie", "a=1"),
                    ("set-cookie", "b=2"),
                    ("content-length", "7"),
                ],
            ),
            (
                "Content-Length: 12, 12\r\nETag: \"x\"\r\n",
                &[("etag", "\"x\""), ("content-length", "12")],
            ),
            ("Content-Length: 0\r\n", &[("content-length", "0")]),
        ];
        for (lines, want) in cases {
            // `\u{1}` stands for an obs-text byte, which a `str` cannot hold.
            let obs =
                |s: &str| -> Vec<u8> { s.bytes().map(|b| if b == 1 { 0xe9 } else { b }).collect() };
            let head = obs(&format!("HTTP/1.1 200 OK\r\n{lines}\r\nbody after"));
            let Ok(Step::Done(_, answer)) = parse_head(&head, |resp| answer(resp, false)) else {
                panic!("{lines}");
            };
            let got: Vec<(String, Vec<u8>)> = answer
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            let want: Vec<(String, Vec<u8>)> =
                want.iter().map(|(n, v)| ((*n).to_owned(), obs(v))).collect();
            assert_eq!(got, want, "{lines}");
        }
    }

    #[test]
    fn connection_tokens_keep_their_order_past_four() {
        let words: Vec<Vec<u8>> = (0..9).map(|i| format!("t{i}").into_bytes()).collect();
        for n in 0..words.len() {
            let mut tokens = Tokens::new();
            for w in words.iter().take(n) {
                tokens.push(w);
            }
            let want: Vec<&[u8]> = words.iter().take(n).map(Vec::as_slice).collect();
            assert_eq!(tokens.as_slice(), want.as_slice(), "{n} tokens");
        }
    }

    /// `framing` keeps a response's `Connection` tokens in a `Tokens` (in place, four
    /// before it allocates); hyper's path collects the same reader's tokens into a `Vec`:
    /// the same tokens, in order, for any lines, or one path would keep a line the other
    /// drops.
    #[test]
    fn framing_reads_the_connection_tokens_hypers_path_reads() {
        let long = vec!["x-t"; 40].join(" ,\t");
        let cases: Vec<Vec<&str>> = vec![
            vec![],
            vec!["keep-alive"],
            vec!["close"],
            vec![""],
            vec![",,,"],
            vec!["a, b ,c,\td\t, e", "f"],
            vec!["Keep-Alive, X-Real-IP, x-forwarded-for, Forwarded, X-Secret, trueip-signature"],
            vec!["a", "b", "c", "d", "e", ""],
            vec![long.as_str(), "close, last"],
            vec!["caf\u{e9}, x"],
        ];
        for lines in cases {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for l in &lines {
                head.extend_from_slice(b"Connection: ");
                head.extend_from_slice(l.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"X-Other: 1\r\nContent-Length: 0\r\n\r\n");
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut slots);
            assert!(resp.parse(&head).is_ok_and(|s| s.is_complete()), "{lines:?}");
            let framed = framing(&resp, false);
            assert!(framed.is_ok(), "{lines:?}: no framing");
            let Ok(framed) = framed else { return };
            let hypers: Vec<&[u8]> =
                lines.iter().flat_map(|l| connection_tokens(l.as_bytes())).collect();
            assert_eq!(framed.named.as_slice(), hypers.as_slice(), "{lines:?}");
        }
    }

    /// An HTTP/1.0 response naming a transfer coding is refused, as hyper's client refuses
    /// it: the lean path passed its body on as chunked. (Fails on the code before.)
    #[test]
    fn an_http10_response_with_a_transfer_coding_is_refused() {
        for (head, ok) in [
            (&b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..], false),
            (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true),
        ] {
            let mut slots = [httparse::EMPTY_HEADER; 8];
            let mut resp = httparse::Response::new(&mut slots);
            assert!(resp.parse(head).is_ok_and(|s| s.is_complete()));
            assert_eq!(framing(&resp, false).is_ok(), ok, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn chunk_sizes_are_hex_with_extensions_ignored() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"7;ext=1"), Some(7));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"-1"), None);
        assert_eq!(chunk_size(b"1000000000000000"), None, "16 digits: past u64 safety");
        assert_eq!(chunk_size(b"7 \t;ext=\"a b\""), Some(7));
        assert_eq!(chunk_size(b"7\t"), Some(7));
        // What a client reading the line as it came could read apart from the gateway.
        for odd in [
            &b" 7"[..],
            b"\t7",
            b"7\x0c",
            b"\x0c7",
            b"7 8",
            b"7;x\r5",
            b"7;x\x00",
            b"7;x\x7f",
            b"7\r;x",
            b"0x7",
        ] {
            assert_eq!(chunk_size(odd), None, "{odd:?}");
        }
    }
}
