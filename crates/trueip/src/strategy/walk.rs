//! The one walk every list strategy shares: a list header's entries, right to left.

use crate::entry::Entry;
use crate::headers::{FieldName, Headers, Lines};
use crate::list::Rev;
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Text, Tracer, Verdict};
use crate::trust::TrustSet;

use super::{Ctx, Found};

/// The most entries any walk visits. Real chains are a handful of hops; a request with
/// more is either broken or an attempt to make us work, and stops here, flagged.
pub const MAX_WALK: u16 = 128;

/// Reads a list header's lines, noting when the header came from a peer that may not send it.
pub(crate) fn read_lines<'a, H: Headers + ?Sized, T: Tracer<'a>>(
    headers: &'a H,
    list: ListHeader,
    peer_trusted: bool,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Lines<'a>> {
    let mut lines = Lines::new();
    ctx.other_list = Some(lines.fill_noting(headers, list.field_ref(), list.other().field_ref()));
    admit(&lines, list, peer_trusted, ctx).then_some(lines)
}

/// Whether the walk may read `lines`: the peer is trusted and the header is present.
/// Takes the lines by reference: they are a few hundred bytes, not worth moving.
pub(crate) fn admit<'h, T: Tracer<'h>>(
    lines: &Lines<'_>,
    list: ListHeader,
    peer_trusted: bool,
    ctx: &mut Ctx<'_, '_, T>,
) -> bool {
    if !peer_trusted {
        if !lines.is_empty() {
            ctx.warnings.insert(Warnings::UNTRUSTED_HEADER);
        }
        ctx.trace.step(|| {
            let why = if lines.is_empty() {
                "peer not trusted"
            } else {
                "present, but the peer is not trusted to send it"
            };
            Mark::new(list.field_str(), join(lines), Verdict::Ignored, why)
        });
        return false;
    }
    if lines.is_empty() {
        ctx.trace.step(|| {
            Mark::new(
                list.field_str(),
                "(absent)",
                Verdict::NotApplicable,
                "header not present",
            )
        });
        return false;
    }
    true
}

/// Records the peer step.
pub(crate) fn trace_peer<'h, T: Tracer<'h>>(ctx: &mut Ctx<'_, '_, T>, trusted: bool) {
    let peer = ctx.peer.client.node();
    let subject = if ctx.peer.source == Source::ProxyProtocol {
        "proxy-protocol"
    } else {
        "peer"
    };
    ctx.trace.step(|| {
        if trusted {
            Mark::new(
                subject,
                peer,
                Verdict::Trusted,
                "in trust set: its forwarding headers count",
            )
        } else {
            Mark::new(
                subject,
                peer,
                Verdict::Client,
                "not in trust set: the peer is the client",
            )
        }
    });
}

/// Finds the hop that wrote `header` when the peer only relayed it, and says whether
/// that hop is trusted to write it (in `writers`).
///
/// The peer is one of the `relays` (trusted proxies that pass headers on but do not
/// write this one: an ALB or nginx behind a CDN). Each relay records the address it
/// saw in `list`, so the list, read from the right past further relays, names the
/// hop that handed the request to the first relay: the header's writer. Returns that
/// entry's position from the right when it is in `writers`.
///
/// Anything else — the hop is not a writer (an attacker who went around the CDN and
/// reached the ALB directly), the list is absent, or an entry cannot be read — means
/// nobody we trust vouches for the header: `None`, flagged
/// [`Warnings::UNVOUCHED_HEADER`]. Never a guess further left.
pub(crate) fn writer_position<'h, H: Headers + ?Sized, T: Tracer<'h>>(
    headers: &'h H,
    list: ListHeader,
    header: &FieldName,
    writers: &TrustSet,
    relays: &TrustSet,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<u16> {
    let lines = Lines::read(headers, list.field_ref());
    let mut rev = Rev::new(list, &lines);
    let mut n: u16 = 0;
    loop {
        let Some(entry) = rev.next() else {
            ctx.trace.step(|| {
                let why = if lines.truncated {
                    "more header lines than trueip reads: the writer of "
                } else {
                    "no record of the hop before the trusted proxies: the writer of "
                };
                Mark::new(
                    list.field_str(),
                    join(&lines),
                    Verdict::Stop,
                    format!("{why}{header} is unknown"),
                )
            });
            break;
        };
        n += 1;
        let Some(node) = entry.node() else {
            ctx.trace.step(|| {
                Mark::new(
                    subject(list, n),
                    entry,
                    Verdict::Stop,
                    format!("not an address: the writer of {header} is unknown"),
                )
            });
            break;
        };
        if writers.contains(node.ip) {
            ctx.trace.step(|| {
                Mark::new(
                    subject(list, n),
                    node,
                    Verdict::Trusted,
                    format!("handed the request to the trusted proxies: trusted to write {header}"),
                )
            });
            return Some(n);
        }
        if !relays.contains(node.ip) {
            ctx.trace.step(|| {
                Mark::new(
                    subject(list, n),
                    node,
                    Verdict::Stop,
                    format!("handed the request to the trusted proxies, but is not trusted to write {header}"),
                )
            });
            break;
        }
        ctx.trace.step(|| {
            Mark::new(
                subject(list, n),
                node,
                Verdict::Trusted,
                "trusted proxy: look further for the header's writer",
            )
        });
        if n == MAX_WALK {
            ctx.warnings.insert(Warnings::TRUNCATED);
            break;
        }
    }
    ctx.warnings.insert(Warnings::UNVOUCHED_HEADER);
    None
}

/// The subject name of the `n`-th entry from the right.
pub(crate) fn subject(list: ListHeader, n: u16) -> Text {
    Text::Entry(list, n)
}

/// Stops the walk at a non-address entry: the answer is the last address we could vouch for.
pub(crate) fn stop_at<'h, T: Tracer<'h>>(
    ctx: &mut Ctx<'_, '_, T>,
    list: ListHeader,
    n: u16,
    entry: &Entry<'_>,
    last: Found,
) -> Option<Found> {
    let flag = if matches!(entry, Entry::Malformed { .. }) {
        Warnings::MALFORMED
    } else {
        Warnings::OPAQUE
    };
    ctx.warnings.insert(flag);
    ctx.trace.step(|| {
        let why = match entry {
            Entry::Malformed { why, .. } => {
                format!("malformed ({why}): stop at the last vouched-for hop")
            }
            _ => "not an address: stop at the last vouched-for hop".to_string(),
        };
        Mark::new(subject(list, n), entry, Verdict::Stop, why)
    });
    Some(last)
}

fn join(lines: &Lines<'_>) -> String {
    lines
        .as_slice()
        .iter()
        .map(|l| String::from_utf8_lossy(l))
        .collect::<Vec<_>>()
        .join(", ")
}
