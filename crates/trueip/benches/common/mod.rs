//! What the benches send: one browser request's ordinary headers, and the 3-hop story the
//! framework benches decide, so that their rows are the same request.

#![allow(dead_code, reason = "each bench uses the part it needs; the rest is another bench's")]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use trueip::Policy;

/// A browser request's ordinary header lines (no forwarding header), as a proxy passes them.
pub const ORDINARY: [(&str, &str); 6] = [
    ("host", "example.com"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.5"),
    ("x-request-id", "5f0c6d2e-8b1a-4c3e-9d7f-2a6b8c9e0f11"),
];

/// The client forged nothing; two trusted proxies appended after it. The peer (a third
/// proxy) is trusted too.
pub const XFF: &str = "203.0.113.9, 10.1.2.3, 192.168.4.5";
pub const PEER: &str = "10.0.0.5:41000";

/// Trusts the five CIDRs of the core table (private, shared and ULA ranges).
pub fn policy() -> Policy {
    let mut builder = Policy::builder();
    for cidr in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fd00::/8"] {
        builder = builder.trust(cidr.parse().expect("CIDR literal"));
    }
    builder.build().expect("policy")
}

/// Polls until ready: every future the benches poll is ready at once (no I/O), so no waker
/// is needed.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
