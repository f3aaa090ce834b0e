//! `hops:N`: exactly N proxies stand in front of the app; the client is the N-th
//! element from the right.
//!
//! Werkzeug's `ProxyFix(x_for=N)` and Envoy's `xff_num_trusted_hops`. The entries
//! right of the N-th are taken to be proxies without checking their addresses.
//! The peer itself must still be in the trust set (use `any` when the app can only be
//! reached through the proxies, e.g. it listens on a private network).
//!
//! With fewer than N elements the answer is the peer, flagged
//! `fewer_hops_than_configured` (as ProxyFix and Envoy do): a hop did not append,
//! so the count no longer says who wrote what — whatever the elements are. With N or
//! more, a non-address element among the N stops the walk at the last address seen.
//!
//! *Safe when* the number of proxies is fixed and every one of them appends.
//!
//! *Unsafe when* the count is wrong: one too many and the client picks their own
//! address by prepending one entry; one too few and every request seems to come from
//! the outermost proxy. Requests that skip a proxy (reaching the ALB directly, not
//! through the CDN) shift the count too: prefer `rightmost-untrusted` where the
//! proxies' addresses are known.

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
    hops: u16,
    trusted: &TrustSet,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Found> {
    let peer_trusted = ctx.peer.client.trusted_by(trusted);
    trace_peer(ctx, peer_trusted);
    let peer = *ctx.peer;
    let Some(lines) = read_lines(headers, list, peer_trusted, ctx) else {
        if peer_trusted {
            ctx.warnings.insert(Warnings::FEWER_HOPS);
            return Some(peer);
        }
        return None;
    };
    // Counted before any element is judged: with too few, no hop's position says who
    // wrote what, so nothing in them (an `unknown`, garbage) may decide the answer or
    // hide the misconfiguration.
    let present = Rev::new(list, &lines).take(usize::from(hops)).count();
    if present < usize::from(hops) {
        ctx.warnings.insert(Warnings::FEWER_HOPS);
        ctx.trace.step(|| {
            Mark::new(
                list.field_str(),
                format!("{present} element(s)"),
                Verdict::Stop,
                format!("fewer than {hops}: the peer stands"),
            )
        });
        return Some(peer);
    }
    let mut rev = Rev::new(list, &lines);
    let mut last = peer;
    for n in 1..=hops {
        let Some(entry) = rev.next() else {
            // Counted above: there are `hops` elements.
            return Some(peer);
        };
        ctx.trace.hop(list, &lines, &rev, n, Hop::Entry(entry));
        let node = match entry {
            Entry::Addr(node) => node,
            other => return stop_at(ctx, list, n, &other, last),
        };
        let found = Found {
            client: node.into(),
            source: Source::List {
                header: list,
                from_right: n,
            },
            trusted_hops: peer.trusted_hops + n,
        };
        if n < hops {
            ctx.trace.step(|| {
                Mark::new(
                    subject(list, n),
                    node,
                    Verdict::Trusted,
                    format!("proxy {n} of {hops}"),
                )
            });
            last = found;
        } else {
            let more = rev.next().is_some();
            if more {
                ctx.warnings.insert(Warnings::SPOOF_ATTEMPT);
            }
            ctx.trace.step(|| {
                Mark::new(
                    subject(list, n),
                    node,
                    Verdict::Client,
                    format!("{hops} hop(s) from the right"),
                )
            });
            return Some(found);
        }
    }
    None
}
