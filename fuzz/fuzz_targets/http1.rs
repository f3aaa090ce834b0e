//! The gateway's own HTTP/1.1 readers, over arbitrary bytes: where a request head ends
//! (never past the input, at its first blank line), a chunk-size line, an upstream's
//! chunked body (never more consumed than given, the same end and the same bytes to the
//! client however the body is cut into reads), and an upstream's response head as the
//! lean path rewrites it for the client (one framing line at most, no hop-by-hop line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use trueip_gateway::testing::{
    Chunked, ResponseHead, chunk_size, head_end, partial_request, response_head,
};

/// Scans `body` as the lean path does: reads of `piece` bytes appended to what is left,
/// the consumed bytes dropped. The bytes passed on, where it ended, or `None` on a
/// refused body.
fn scan(body: &[u8], piece: usize) -> Option<(Vec<u8>, Option<usize>)> {
    let mut c = Chunked::default();
    let mut buf = Vec::new();
    let mut passed = Vec::new();
    let mut consumed = 0;
    for read in body.chunks(piece.max(1)) {
        buf.extend_from_slice(read);
        let (n, pass, done) = c.scan(&buf).ok()?;
        assert!(pass <= n && n <= buf.len(), "{pass} {n} {}", buf.len());
        passed.extend_from_slice(&buf[..pass]);
        consumed += n;
        buf.drain(..n);
        if done {
            return Some((passed, Some(consumed)));
        }
    }
    Some((passed, None))
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else { return };

    if let Some(n) = head_end(data) {
        assert!(n <= data.len());
        let head = &data[..n];
        assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"), "{head:?}");
        assert_eq!(head_end(&data[..n - 1]), None, "an earlier end");
    }
    let _ = partial_request(data);

    if let Some(size) = chunk_size(data) {
        let digits = format!("{size:x}");
        let given = &data[..data.iter().take_while(|b| b.is_ascii_hexdigit()).count()];
        assert_eq!(
            u64::from_str_radix(std::str::from_utf8(given).unwrap(), 16).ok(),
            Some(size),
            "{digits}"
        );
    }

    let whole = scan(data, data.len());
    let cut = scan(data, usize::from(mode % 16) + 1);
    assert_eq!(whole, cut, "cut into reads of {}", mode % 16 + 1);
    if let Some((passed, Some(end))) = &whole {
        assert!(*end <= data.len() && passed.len() <= *end);
    }

    match response_head(data, mode & 0x80 != 0) {
        Ok(ResponseHead::Interim(n)) => assert!(n <= data.len()),
        Ok(ResponseHead::Done(n, head)) => {
            assert!(n <= data.len());
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let framing = text
                .lines()
                .filter(|l| l.starts_with("content-length:") || l.starts_with("transfer-encoding:"))
                .count();
            assert!(framing <= 1, "{text}");
            for hop in ["connection:", "keep-alive:", "upgrade:", "proxy-connection:"] {
                assert!(!text.lines().any(|l| l.starts_with(hop)), "{text}");
            }
        }
        Ok(ResponseHead::Partial) => assert!(data.len() <= 256 * 1024),
        Err(e) => assert!(e.len() < 200, "{e}"),
    }
});
