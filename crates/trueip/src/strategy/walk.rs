//! The one walk every list strategy shares: a list header's entries, right to left.

use std::net::IpAddr;

use crate::addr::Node;
use crate::entry::Entry;
use crate::headers::{FieldName, Headers, Lines};
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Text, Tracer, Verdict};
use crate::trust::TrustSet;
use crate::{forwarded, xff};

use super::{Client, Ctx, Found};

/// The most entries any walk visits. Real chains are a handful of hops; a request with
/// more is either broken or an attempt to make us work, and stops here, flagged.
pub const MAX_WALK: u16 = 128;

/// A list header's entries from the right. Each header kind only chooses its parser.
#[derive(Clone)]
pub(crate) enum Rev<'a, 'l> {
    Xff(xff::Rev<'a, 'l>),
    Forwarded(forwarded::Rev<'a, 'l>),
}

impl<'a, 'l> Rev<'a, 'l> {
    pub(crate) fn new(list: ListHeader, lines: &'l Lines<'a>) -> Self {
        match list {
            ListHeader::XForwardedFor => Rev::Xff(xff::Rev::new(lines.as_slice())),
            ListHeader::Forwarded => Rev::Forwarded(forwarded::Rev::new(lines.as_slice())),
        }
    }

    /// Where the iteration stands, so that another one can [`resume`](Self::resume)
    /// there. X-Forwarded-For only: `None` for `Forwarded`, whose iterations start over.
    pub(crate) fn position(&self) -> Option<Position<'a>> {
        match self {
            Rev::Xff(rev) => Some(Position(rev.position())),
            Rev::Forwarded(_) => None,
        }
    }

    /// An iteration over `lines` (those of the one `position` came from) from `position` on.
    pub(crate) fn resume(
        list: ListHeader,
        lines: &'l Lines<'a>,
        position: Option<Position<'a>>,
    ) -> Self {
        match (list, position) {
            (ListHeader::XForwardedFor, Some(Position(at))) => {
                Rev::Xff(xff::Rev::resume(lines.as_slice(), at))
            }
            _ => Rev::new(list, lines),
        }
    }
}

/// Where an iteration over X-Forwarded-For stands (see [`Rev::position`]).
#[derive(Clone, Copy)]
pub(crate) struct Position<'a>((usize, Option<&'a [u8]>));

impl<'a> Iterator for Rev<'a, '_> {
    type Item = Entry<'a>;

    #[inline]
    fn next(&mut self) -> Option<Entry<'a>> {
        match self {
            Rev::Xff(rev) => rev.next(),
            Rev::Forwarded(rev) => rev.next().map(|element| match element {
                Ok(element) => element.for_node,
                Err((text, why)) => Entry::Malformed { text, why },
            }),
        }
    }
}

/// One list entry as the walk needs it: an IPv4 address (the common case, kept in
/// registers), or any other entry as [`Entry`] classifies it.
#[derive(Clone, Copy)]
pub(crate) enum Hop<'a> {
    V4(std::net::Ipv4Addr, Option<u16>),
    Entry(Entry<'a>),
}

impl<'a> Hop<'a> {
    /// The address, if the entry is one, as the walk carries it.
    #[inline(always)]
    pub(crate) fn client(self) -> Option<Client> {
        match self {
            Hop::V4(ip, port) => Some(Client::v4(ip, port)),
            Hop::Entry(entry) => entry.node().map(Client::from),
        }
    }

    /// The entry, as [`Entry`] classifies it.
    #[inline]
    pub(crate) fn entry(self) -> Entry<'a> {
        match self {
            Hop::V4(ip, port) => Entry::Addr(Node {
                ip: IpAddr::V4(ip),
                port,
            }),
            Hop::Entry(entry) => entry,
        }
    }

    /// The address, if the entry is one.
    #[inline]
    pub(crate) fn node(self) -> Option<Node> {
        match self {
            Hop::V4(ip, port) => Some(Node {
                ip: IpAddr::V4(ip),
                port,
            }),
            Hop::Entry(entry) => entry.node(),
        }
    }
}

/// The address of the `n`-th entry from the right (1-based), re-read from the lines.
pub(crate) fn node_at(list: ListHeader, lines: &Lines<'_>, n: u16) -> Option<Node> {
    Rev::new(list, lines)
        .nth(usize::from(n).checked_sub(1)?)?
        .node()
}

impl<'a> Rev<'a, '_> {
    /// Like `next`, with X-Forwarded-For's IPv4 elements parsed on the fast path.
    #[inline(always)]
    pub(crate) fn next_hop(&mut self) -> Option<Hop<'a>> {
        match self {
            Rev::Xff(rev) => Some(match rev.next_fast()? {
                xff::Raw::V4(bits) => Hop::V4(std::net::Ipv4Addr::from_bits(bits), None),
                xff::Raw::Other(raw) => match crate::addr::parse_v4_node_fast(raw) {
                    Some((ip, port)) => Hop::V4(ip, port),
                    None => Hop::Entry(xff::parse_element(raw)),
                },
            }),
            Rev::Forwarded(_) => self.next().map(Hop::Entry),
        }
    }

    /// Whether any entry is left, without parsing it where that can be avoided.
    pub(crate) fn has_more(&mut self) -> bool {
        match self {
            Rev::Xff(rev) => rev.next_raw().is_some(),
            Rev::Forwarded(_) => self.next().is_some(),
        }
    }
}

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
                    &entry,
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
