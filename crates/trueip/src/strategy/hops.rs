//! `hops:N`: exactly N proxies stand in front of the app; the client is the N-th
//! element from the right.

use crate::headers::Headers;
use crate::resolution::ListHeader;
use crate::trace::Tracer;
use crate::trust::TrustSet;

use super::walk::{Stop, walk};
use super::{Ctx, Decide, Found};

/// `hops:N`: exactly N proxies stand in front of the app; the client is the N-th
/// element from the right.
///
/// Werkzeug's `ProxyFix(x_for=N)` and Envoy's `xff_num_trusted_hops`. The entries right
/// of the N-th are taken to be proxies without checking their addresses. The peer itself
/// must still be in the trust set (use `any` when the app can only be reached through
/// the proxies, e.g. it listens on a private network).
///
/// Returns the N-th element from the right, flagged `spoof_attempt` when elements are
/// left of it. With fewer than N elements — or no header at all from a trusted peer —
/// the answer is the peer, flagged `fewer_hops_than_configured` (as ProxyFix and Envoy
/// do): a hop did not append, so the count no longer says who wrote what, whatever the
/// elements are. With N or more, a non-address element among the N stops the walk at
/// the last address seen. An untrusted peer is the client.
///
/// *Safe when* the number of proxies is fixed and every one of them appends. Behind a
/// CDN and an ALB (`hops:2`), a client who sends `X-Forwarded-For: 1.2.3.4` arrives as
/// `1.2.3.4, <their address>, <CDN edge>`: the 2nd from the right is their address.
///
/// *Unsafe when* the count is wrong: one too many and the client picks their own address
/// by prepending one entry (`hops:3` above answers `1.2.3.4`); one too few and every
/// request seems to come from the outermost proxy. Requests that skip a proxy (reaching
/// the ALB directly, not through the CDN) shift the count too: the attacker's
/// `X-Forwarded-For: 1.2.3.4` then arrives as `1.2.3.4, <their address>`, and `hops:2`
/// answers `1.2.3.4`. Prefer `rightmost-untrusted` where the proxies' addresses are known.
#[derive(Clone, Debug)]
pub(crate) struct Hops {
    /// N: how many proxies append, the peer included.
    pub(crate) hops: u16,
    /// The peers whose list counts.
    pub(crate) trusted: TrustSet,
}

impl Decide for Hops {
    fn decide<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        walk(headers, list, &self.trusted, Stop::Nth(self.hops), ctx)
    }

    fn trusts(&self, peer: crate::addr::Peer) -> bool {
        self.trusted.contains_peer(peer)
    }
}
