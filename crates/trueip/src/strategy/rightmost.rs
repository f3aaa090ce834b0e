//! `rightmost`: the last element of the list, if the peer is trusted.
//!
//! nginx's `real_ip_recursive off`. Returns the element the peer appended.
//!
//! *Safe when* exactly one trusted proxy stands in front of the app and it appends
//! its peer to the header (nginx `$proxy_add_x_forwarded_for`, an ALB in `append`
//! mode): that element is the address the proxy saw, which nobody can forge.
//!
//! *Unsafe when* there are more proxies: the answer is then the address of the next
//! proxy out, not the client — wrong, though not forgeable. Use
//! `rightmost-untrusted` or `hops:N` instead.

use crate::entry::Entry;
use crate::headers::Headers;
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Tracer, Verdict};
use crate::trust::TrustSet;

use crate::list::{Hop, Rev};

use super::walk::{read_lines, stop_at, subject, trace_peer};
use super::{Ctx, Found};

pub(super) fn resolve<'h, H: Headers + ?Sized, T: Tracer<'h>>(
    headers: &'h H,
    list: ListHeader,
    trusted: &TrustSet,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Found> {
    let peer_trusted = ctx.peer.client.trusted_by(trusted);
    trace_peer(ctx, peer_trusted);
    let lines = read_lines(headers, list, peer_trusted, ctx)?;
    let mut rev = Rev::new(list, &lines);
    let entry = rev.next()?;
    ctx.trace.hop(list, &lines, &rev, 1, Hop::Entry(entry));
    let peer = *ctx.peer;
    match entry {
        Entry::Addr(node) => {
            let more = rev.next().is_some();
            if more && !trusted.contains(node.ip) {
                ctx.warnings.insert(Warnings::SPOOF_ATTEMPT);
            }
            ctx.trace.step(|| {
                Mark::new(
                    subject(list, 1),
                    node,
                    Verdict::Client,
                    "the element the trusted peer appended",
                )
            });
            Some(Found {
                client: node.into(),
                source: Source::List {
                    header: list,
                    from_right: 1,
                },
                trusted_hops: peer.trusted_hops + 1,
            })
        }
        other => stop_at(ctx, list, 1, &other, peer),
    }
}
