//! The signed client header per request: what `trueip serve` adds to each forwarded
//! request (`sign`, into a reused buffer) and what an app's middleware adds (`verify`,
//! including the parse). Both are one HMAC-SHA256 over about 150 bytes plus formatting.
//!
//! ```text
//! cargo bench -p trueip --features provenance,http --bench provenance
//! ```

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use trueip::provenance::{Claim, Key, RequestLine, Signed, Verifier, sign};
use trueip::{Connection, ListHeader, Node, Policy, Source};

const REQUEST: RequestLine<'static> = RequestLine {
    method: "GET",
    host: "shop.example.com",
    target: "/api/v1/orders/1234?expand=items&page=2",
};

fn key(fill: u8) -> Key {
    Key::new(&[fill; 48]).unwrap_or_else(|e| panic!("{e}"))
}

fn claim(time: u64) -> Claim {
    Claim {
        client: Node {
            ip: "2001:db8:85a3::8a2e:370:7334"
                .parse()
                .unwrap_or(std::net::Ipv6Addr::LOCALHOST.into()),
            port: Some(51234),
        },
        source: Source::List { header: ListHeader::XForwardedFor, from_right: 2 },
        hops: 1,
        time,
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The gateway's side: the header value written into a buffer it reuses.
#[divan::bench(sample_count = 300, sample_size = 100)]
fn sign_per_request(bencher: divan::Bencher) {
    let key = key(b'a');
    let claim = claim(now());
    let mut out = String::with_capacity(256);
    bencher.bench_local(|| {
        out.clear();
        sign(black_box(&key), black_box(&claim), black_box(&REQUEST), &mut out);
        black_box(out.len())
    });
}

/// The app's side: parse and verify a value the gateway signed (two keys held, as during
/// a rotation; the value is under the second), and remember it. Each iteration verifies a
/// new value (a verifier accepts a header once), signed outside the timing.
#[divan::bench(sample_count = 300, sample_size = 100)]
fn verify_per_request(bencher: divan::Bencher) {
    let (old, new) = (key(b'a'), key(b'b'));
    let verifier = Verifier::new([old, new.clone()], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let at = SystemTime::now();
    bencher
        .with_inputs(|| {
            let mut value = String::new();
            sign(&new, &claim(now()), &REQUEST, &mut value);
            value
        })
        .bench_local_refs(|value| {
            let verified =
                verifier.verify_at(black_box(Some(value.as_bytes())), black_box(&REQUEST), at);
            assert!(verified.is_ok(), "{verified:?}");
            black_box(verified)
        });
}

/// An adapter's whole step: read the header from an `http::HeaderMap` of ten lines,
/// verify, and build the `Resolution` (what `ClientIpLayer::signed` does per request).
#[divan::bench(sample_count = 300, sample_size = 100)]
fn signed_decide_per_request(bencher: divan::Bencher) {
    let k = key(b'a');
    let mut value = String::new();
    sign(&k, &claim(now()), &REQUEST, &mut value);
    let mut headers = http::HeaderMap::new();
    for (n, v) in [
        ("host", "shop.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("x-real-ip", "2001:db8:85a3::8a2e:370:7334"),
        ("x-forwarded-for", "2001:db8:85a3::8a2e:370:7334, 10.0.0.7"),
        ("forwarded", "for=\"[2001:db8:85a3::8a2e:370:7334]\""),
        ("x-forwarded-proto", "https"),
        ("cookie", "session=abc123"),
        ("trueip-signature", value.as_str()),
    ] {
        if let (Ok(n), Ok(v)) =
            (http::HeaderName::from_bytes(n.as_bytes()), http::HeaderValue::from_str(v))
        {
            headers.append(n, v);
        }
    }
    let signed = Signed::required(
        Verifier::new([k.clone()], Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}")),
    );
    let policy = Policy::default();
    let conn = Connection::from_peer(std::net::SocketAddr::from(([127, 0, 0, 1], 40000)));
    // A new signature for each iteration (a verifier accepts a header once), outside the
    // timing.
    bencher
        .with_inputs(|| {
            let mut value = String::new();
            sign(&k, &claim(now()), &REQUEST, &mut value);
            let mut headers = headers.clone();
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                headers.insert("trueip-signature", v);
            }
            headers
        })
        .bench_local_refs(|headers| {
            black_box(signed.decide(black_box(&policy), &conn, black_box(&*headers), &REQUEST))
        });
}

fn main() {
    divan::main();
}
