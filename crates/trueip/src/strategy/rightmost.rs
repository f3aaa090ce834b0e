//! `rightmost`: the last element of the list, if the peer is trusted.

use crate::headers::Headers;
use crate::resolution::ListHeader;
use crate::trace::Tracer;
use crate::trust::TrustSet;

use super::walk::{Stop, walk};
use super::{Ctx, Decide, Found};

/// `rightmost`: the last element of the list, the one the trusted peer appended.
///
/// nginx's `real_ip_recursive off`. Returns, when the peer is trusted, the rightmost
/// element; flagged `spoof_attempt` when elements are left of it and it is not itself a
/// trusted proxy. A malformed or opaque element is no address to return: the peer
/// stands, flagged. With no element at all, the next strategy decides. An untrusted
/// peer is the client.
///
/// *Safe when* exactly one trusted proxy stands in front of the app and it appends its
/// peer to the header (nginx `$proxy_add_x_forwarded_for`, an ALB in `append` mode):
/// that element is the address the proxy saw, which nobody can forge. A client who sends
/// `X-Forwarded-For: 1.2.3.4` arrives as `1.2.3.4, <their address>`, and the answer is
/// their address.
///
/// *Unsafe when* there are more proxies: the answer is then the address of the next
/// proxy out, not the client — wrong, though not forgeable. And when the one proxy
/// passes the header on without appending (nginx with `proxy_set_header
/// X-Forwarded-For $http_x_forwarded_for`): the client's `1.2.3.4` is then the last
/// element, and the answer. Use `rightmost-untrusted` or `hops:N` behind several proxies.
#[derive(Clone, Debug)]
pub(crate) struct Rightmost {
    /// The peers whose list counts.
    pub(crate) trusted: TrustSet,
}

impl Decide for Rightmost {
    fn decide<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        walk(headers, list, &self.trusted, Stop::First, ctx)
    }

    fn trusts(&self, peer: crate::addr::Peer) -> bool {
        self.trusted.contains_peer(peer)
    }
}
