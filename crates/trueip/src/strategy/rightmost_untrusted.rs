//! `rightmost-untrusted`: the first address, walking from the right, that is not a trusted proxy.

use crate::headers::Headers;
use crate::resolution::ListHeader;
use crate::trace::Tracer;
use crate::trust::TrustSet;

use super::walk::{Stop, walk};
use super::{Ctx, Decide, Found};

/// `rightmost-untrusted`: walks the list from the right past every trusted proxy; the
/// first entry that is not one is the client.
///
/// This is nginx's `real_ip_recursive on`, and the strategy to use whenever you can
/// list your proxies' addresses (or their provider's ranges).
///
/// Returns, when the peer is trusted, the first list entry from the right that is not
/// in the trust set, flagged `spoof_attempt` when entries are left of it. A malformed
/// or opaque entry stops the walk at the last trusted address (flagged), never skipping
/// left past it. When every entry is trusted, the policy's
/// [`AllTrusted`](super::AllTrusted) choice decides. An untrusted peer is the client.
///
/// *Safe when* the trust set holds every proxy that appends to the header and nothing
/// else: each entry skipped was written by a proxy we trust, so the entry the walk stops
/// at was written by a trusted hop too, and a client cannot forge it. A client who sends
/// `X-Forwarded-For: 1.2.3.4` through nginx arrives as `1.2.3.4, <their address>`: the
/// walk stops at their address, and `1.2.3.4` is only evidence of the attempt.
///
/// *Unsafe when* the trust set is too wide. Trust `any` (or a range holding addresses
/// clients can send from) and their entries are "trusted" too: with `--trust any` the
/// same client's `1.2.3.4` is skipped like a proxy, every entry is trusted, and the
/// leftmost, client-written one wins. Trusting a CDN's ranges is fine: an attacker who
/// sends through the same CDN is recorded by it, and ends as the entry left of the
/// CDN's — their own address, correctly.
#[derive(Clone, Debug)]
pub(crate) struct RightmostUntrusted {
    /// The proxies the walk skips.
    pub(crate) trusted: TrustSet,
}

impl Decide for RightmostUntrusted {
    #[inline(always)]
    fn decide<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        walk(headers, list, &self.trusted, Stop::FirstUntrusted, ctx)
    }

    fn trusts(&self, peer: crate::addr::Peer) -> bool {
        self.trusted.contains_peer(peer)
    }
}
