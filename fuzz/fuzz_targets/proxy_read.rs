//! The PROXY preamble as a listener reads it, from a stream that hands the bytes over in
//! pieces the input chooses: the reader never takes more than `max_bytes` from the
//! stream, a header it accepts is the one `decode` reads from the same bytes, the bytes
//! it hands on are exactly those after the header, and how the bytes were cut into
//! reads does not change a header it accepts.
#![no_main]

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use trueip::TrustSet;
use trueip::proxy_protocol::{
    Accept, Decode, PreambleError, ProxyHeader, ReadRules, Untrusted, V1_MAX_LEN, V2_MAX_LEN,
    decode, decode_v1, decode_v2, looks_like_proxy, read_preamble_until,
};

/// Hands `data` over `piece` bytes at a time (all of it at once when 0), counting what
/// was taken.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
    taken: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let rest = self.data.get(self.taken..).unwrap_or_default();
        let n = rest.len().min(buf.remaining());
        let n = if self.piece == 0 { n } else { n.min(self.piece) };
        buf.put_slice(&rest[..n]);
        self.taken += n;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap())
}

/// Reads the preamble; the header (or `None`), the bytes handed on, and how many bytes
/// were taken from the stream.
fn read(
    data: &[u8],
    piece: usize,
    trusted: bool,
    rules: &ReadRules,
) -> (Result<(Option<ProxyHeader>, Vec<u8>), PreambleError>, usize) {
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    let senders: TrustSet = if trusted {
        ["10.0.0.0/8".parse().unwrap()].into_iter().collect()
    } else {
        TrustSet::default()
    };
    let mut stream = Pieces { data, piece, taken: 0 };
    let mut buf = Vec::new();
    let out = runtime().block_on(read_preamble_until(
        &mut stream,
        peer,
        &senders,
        rules,
        &mut buf,
        std::future::pending(),
        |h| h,
    ));
    let out = out.map(|r| (r.header, buf.get(r.rest).expect("rest lies in the buffer").to_vec()));
    (out, stream.taken)
}

fuzz_target!(|input: &[u8]| {
    let Some((&[mode, piece, max_lo, max_hi], data)) = input.split_first_chunk::<4>() else {
        return;
    };
    let accept = match mode % 3 {
        0 => Accept::Any,
        1 => Accept::V1,
        _ => Accept::V2,
    };
    let trusted = mode & 4 == 0;
    let untrusted = if mode & 8 == 0 { Untrusted::ServeDirect } else { Untrusted::Refuse };
    let max = usize::from(u16::from_le_bytes([max_lo, max_hi])) % 1024 + 1;
    let rules = ReadRules::new(untrusted).accept(accept).max_bytes(max);
    // As documented: never below a whole v1 line, never above the largest v2 header.
    let max = max.clamp(V1_MAX_LEN, V2_MAX_LEN);

    let (whole, taken) = read(data, 0, trusted, &rules);
    let (split, taken_split) = read(data, usize::from(piece % 8) + 1, trusted, &rules);
    for (out, taken) in [(&whole, taken), (&split, taken_split)] {
        assert!(taken <= max, "took {taken} bytes, bound {max}");
        match out {
            Ok((Some(header), rest)) => {
                assert!(trusted);
                let decoder = match accept {
                    Accept::Any => decode,
                    Accept::V1 => decode_v1,
                    Accept::V2 => decode_v2,
                };
                let Ok(Decode::Complete { header: whole, consumed }) = decoder(data) else {
                    panic!("accepted a header decode refuses: {header:?}");
                };
                assert_eq!(&whole, header);
                assert_eq!(data.get(consumed..consumed + rest.len()), Some(rest.as_slice()));
                assert_eq!(consumed + rest.len(), taken);
            }
            Ok((None, rest)) => {
                assert!(!trusted && untrusted == Untrusted::ServeDirect);
                assert_eq!(data.get(..rest.len()), Some(rest.as_slice()));
                assert_eq!(rest.len(), taken);
                assert_eq!(looks_like_proxy(rest), Some(false));
            }
            Err(PreambleError::UntrustedSender) => {
                assert!(!trusted && untrusted == Untrusted::Refuse)
            }
            Err(PreambleError::UntrustedHeader) => {
                assert!(!trusted);
                assert_eq!(looks_like_proxy(&data[..taken]), Some(true));
            }
            Err(PreambleError::Timeout(_) | PreambleError::Io(_)) => panic!("{out:?}"),
            Err(_) => {}
        }
    }
    // The cut into reads changes no accepted header.
    if let (Ok((h1, _)), Ok((h2, _))) = (&whole, &split) {
        assert_eq!(h1, h2);
    } else if let Ok((Some(header), _)) = whole.as_ref().or(split.as_ref()) {
        panic!("{header:?} accepted by one cut only: {whole:?} / {split:?}");
    }
});
