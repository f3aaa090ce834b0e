//! What the full record of a decision costs, beside `Policy::resolve` on the same
//! request: `Explanation::new` (every step, owned fields), and with serde_json writing
//! it (`trueip explain --format json`; the whoami page's `/json` is this object and two
//! more members).
//!
//! ```text
//! CARGO_TARGET_DIR=target-bench cargo bench -p trueip --features http,serde --bench explain
//! ```

use std::hint::black_box;

/// The allocator `trueip serve` ships with: an explanation is a dozen small allocations,
/// and what they cost depends on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use http::{HeaderMap, HeaderValue};
use trueip::{Connection, Explanation, ListHeader, Policy};

fn policy() -> Policy {
    Policy::builder()
        .trust_str("127.0.0.0/8")
        .and_then(|b| b.trust_str("10.0.0.0/8"))
        .and_then(|b| b.strategy_str("rightmost-untrusted"))
        .map(|b| b.from_list(ListHeader::XForwardedFor))
        .and_then(|b| b.build())
        .expect("a policy")
}

/// What the gateway's benchmark sends: a client behind one trusted proxy, through a
/// trusted peer.
fn request() -> (Connection, HeaderMap) {
    let mut headers = HeaderMap::new();
    for (name, value) in [("host", "127.0.0.1:8080"), ("x-forwarded-for", "203.0.113.7, 10.0.0.1")]
    {
        headers.append(name, HeaderValue::from_static(value));
    }
    let peer: std::net::SocketAddr = "127.0.0.1:41000".parse().expect("an address");
    let conn = Connection::from_peer(peer);
    (conn, headers)
}

#[divan::bench(sample_count = 300, sample_size = 100)]
fn resolve(bencher: divan::Bencher) {
    let (policy, (conn, headers)) = (policy(), request());
    bencher.bench_local(|| black_box(&policy).resolve(black_box(&conn), black_box(&headers)));
}

#[divan::bench(sample_count = 300, sample_size = 100)]
fn explanation(bencher: divan::Bencher) {
    let (policy, (conn, headers)) = (policy(), request());
    bencher.bench_local(|| {
        Explanation::new(black_box(&policy), black_box(&conn), black_box(&headers))
    });
}

/// The owned explanation, then the same JSON through serde_json (what `trueip explain
/// --format json` prints).
#[divan::bench(sample_count = 300, sample_size = 100)]
fn explanation_serde_json(bencher: divan::Bencher) {
    let (policy, (conn, headers)) = (policy(), request());
    let mut out = Vec::with_capacity(2048);
    bencher.bench_local(|| {
        out.clear();
        let explanation =
            Explanation::new(black_box(&policy), black_box(&conn), black_box(&headers));
        serde_json::to_writer_pretty(&mut out, &explanation).unwrap_or_default();
        black_box(out.len())
    });
}

fn main() {
    divan::main();
}
