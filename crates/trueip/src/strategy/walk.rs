//! The one walk every list strategy shares: a list header's entries, right to left,
//! from the peer outwards, until the strategy's [`Stop`] rule names the client.
//!
//! Everything else is the same for every list strategy and lives here once: the peer
//! must be trusted before the list counts; a non-address entry stops the walk at the
//! last hop vouched for ([`stop_at`]); the walk ends at [`MAX_WALK`] entries, or where
//! the header had more lines than are read; entries left of the answer flag a spoof
//! attempt; and every step is traced.
//!
//! The header strategies' search for a header's writer ([`writer_position`]) also
//! reads a list from the right, but it asks a different question (who wrote this
//! header, not who the client is) and has its own ending: no answer rather than the
//! last hop vouched for.

use std::borrow::Cow;

use crate::entry::Entry;
use crate::headers::{Headers, Lines};
use crate::list::{Client, Rev, node_at};
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Text, Tracer, Verdict};
use crate::trust::{TrustSet, V4Lookup};

use super::{AllTrusted, Ctx, Found};

/// The most entries any walk visits. Real chains are a handful of hops; a request with
/// more is either broken or an attempt to make us work, and stops here, flagged.
pub(crate) const MAX_WALK: u16 = 128;

/// Where a walk stops: the one thing the list strategies differ in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// At the first entry the trust set does not hold (`rightmost-untrusted`). When
    /// every entry is trusted, the policy's [`AllTrusted`] choice decides.
    FirstUntrusted,
    /// At the first entry from the right, the one the trusted peer appended
    /// (`rightmost`). With no entry there is no answer (the next strategy decides). An
    /// answer in the trust set does not make the entries left of it suspect: the proxy
    /// it names wrote them.
    First,
    /// At the `n`-th entry, whatever the entries right of it hold (`hops:N`). The
    /// entries are counted before any is judged: with fewer than `n`, or no list at all
    /// from a trusted peer, a hop did not append, the count no longer says who wrote
    /// what, and the answer is the peer, flagged.
    Nth(u16),
}

impl Stop {
    /// Why the walk stopped at the `n`-th entry; `more`: entries are left of it.
    fn client_why(self, more: bool) -> Cow<'static, str> {
        match self {
            Stop::FirstUntrusted if more => Cow::Borrowed(
                "first untrusted entry from the right; entries left of it are client-written",
            ),
            Stop::FirstUntrusted => Cow::Borrowed("first untrusted entry from the right"),
            Stop::First => Cow::Borrowed("the element the trusted peer appended"),
            Stop::Nth(hops) => Cow::Owned(format!("{hops} hop(s) from the right")),
        }
    }

    /// Why the walk went past the `n`-th entry.
    fn skip_why(self, n: u16) -> Cow<'static, str> {
        match self {
            Stop::Nth(hops) => Cow::Owned(format!("proxy {n} of {hops}")),
            Stop::FirstUntrusted | Stop::First => Cow::Borrowed("in trust set: skip"),
        }
    }
}

/// Walks `list` from the right and returns where `stop` puts the client, or `None`
/// when this strategy has no answer (the next one decides).
///
/// Inlined into each strategy, so that `stop` is a constant there and the branches
/// for the other rules fold away: `rightmost-untrusted` keeps its tight IPv4 loop, and
/// nothing else, on the common path.
#[inline(always)]
pub(crate) fn walk<'h, H: Headers + ?Sized, T: Tracer<'h>>(
    headers: &'h H,
    list: ListHeader,
    trusted: &TrustSet,
    stop: Stop,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Found> {
    let peer = ctx.peer;
    let peer_trusted = peer.client.trusted_by(trusted);
    trace_peer(ctx, peer_trusted);
    let mut lines = Lines::new();
    ctx.other_list = Some(lines.fill_noting(headers, list.field_ref(), list.other().field_ref()));
    if !admit(&lines, list, peer_trusted, ctx) {
        return match stop {
            Stop::Nth(_) if peer_trusted => {
                ctx.warnings.insert(Warnings::FEWER_HOPS);
                Some(*peer)
            }
            _ => None,
        };
    }
    let mut rev = Rev::new(list, &lines);
    let mut n: u16 = 0;
    match stop {
        Stop::Nth(hops) => {
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
                return Some(*peer);
            }
        }
        Stop::FirstUntrusted => {
            if let Rev::Xff(xff) = &mut rev
                && !T::RECORDS
            {
                // Trusted IPv4 hops need no step recorded: skip them in one tight loop,
                // which also hands back the usual answer, an untrusted IPv4 address.
                // Anything else goes on in `steps` as if it had walked there itself. One
                // loop per kind of trust set: the loop then neither re-reads the set nor
                // re-tests its kind at every element.
                let (skipped, untrusted) = match trusted.v4_lookup() {
                    V4Lookup::Scan(set) => {
                        xff.skip_trusted_v4(MAX_WALK - 1, move |ip| set.contains(ip))
                    }
                    V4Lookup::Indexed(set) => {
                        xff.skip_trusted_v4(MAX_WALK - 1, move |ip| set.contains(ip))
                    }
                };
                n = skipped;
                if let Some(ip) = untrusted {
                    if xff.next_raw().is_some() {
                        ctx.warnings.insert(Warnings::SPOOF_ATTEMPT);
                    }
                    return Some(Found {
                        client: Client::v4(std::net::Ipv4Addr::from_bits(ip), None),
                        source: Source::List { header: list, from_right: n + 1 },
                        trusted_hops: peer.trusted_hops + 1 + n,
                    });
                }
            }
        }
        Stop::First => {}
    }
    steps(list, trusted, stop, &lines, rev, n, ctx)
}

/// The walk past the first `n` entries (which it has passed), one entry at a time,
/// recording every step. Kept out of line: it is the path of `explain`, of chains the
/// IPv4 loop leaves to it (IPv6, ports, obfuscated or malformed entries) and of the
/// strategies without that loop; inlined, it doubled the code around the common path,
/// which then ran slower.
#[inline(never)]
fn steps<'a, T: Tracer<'a>>(
    list: ListHeader,
    trusted: &TrustSet,
    stop: Stop,
    lines: &Lines<'a>,
    mut rev: Rev<'a, '_>,
    mut n: u16,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Found> {
    let peer = ctx.peer;
    // The answer when the walk stops past the `from_right`-th entry, which it vouched
    // for. Only the position is kept while walking: the address is re-read on the rare
    // ways out that need it (a stop, the cap, all trusted).
    let vouched = |from_right: u16| match from_right {
        0 => *peer,
        n => Found {
            client: node_at(list, lines, n).map_or(peer.client, Client::from),
            source: Source::List { header: list, from_right: n },
            trusted_hops: peer.trusted_hops + n,
        },
    };
    while let Some(hop) = rev.next_hop() {
        n += 1;
        let Some(client) = hop.client() else {
            return stop_at(ctx, list, n, &hop.entry(), vouched(n - 1));
        };
        let here = match stop {
            Stop::FirstUntrusted => !client.trusted_by(trusted),
            Stop::First => true,
            Stop::Nth(hops) => n == hops,
        };
        if here {
            let more = rev.has_more();
            // What is left of the answer, the client wrote: unless `rightmost` took the
            // address of a trusted proxy, which wrote them.
            if more && (stop != Stop::First || !client.trusted_by(trusted)) {
                ctx.warnings.insert(Warnings::SPOOF_ATTEMPT);
            }
            ctx.trace.step(|| {
                Mark::new(subject(list, n), client.peer(), Verdict::Client, stop.client_why(more))
            });
            return Some(Found {
                client,
                source: Source::List { header: list, from_right: n },
                trusted_hops: peer.trusted_hops + n,
            });
        }
        ctx.trace.step(|| {
            Mark::new(subject(list, n), client.peer(), Verdict::Trusted, stop.skip_why(n))
        });
        if n == MAX_WALK {
            ctx.warnings.insert(Warnings::TRUNCATED);
            ctx.trace.step(|| {
                Mark::new(
                    subject(list, n),
                    client.peer(),
                    Verdict::Stop,
                    format!("walked {MAX_WALK} entries: stop"),
                )
            });
            return Some(vouched(n));
        }
    }
    match stop {
        Stop::FirstUntrusted => {}
        // No entry at all (a header of empty elements).
        Stop::First => return None,
        // Not reached: the entries were counted before the walk.
        Stop::Nth(_) => return Some(*peer),
    }
    if lines.truncated {
        ctx.warnings.insert(Warnings::TRUNCATED);
        ctx.trace.step(|| {
            Mark::new(
                list.field_str(),
                "",
                Verdict::Stop,
                "more header lines than trueip reads: stop",
            )
        });
        return Some(vouched(n));
    }
    ctx.warnings.insert(Warnings::ALL_TRUSTED);
    let found = match ctx.all_trusted {
        AllTrusted::Leftmost => Some(vouched(n)),
        AllTrusted::Peer => Some(*peer),
        AllTrusted::Fail => None,
    };
    let all_trusted = ctx.all_trusted;
    ctx.trace.step(|| {
        let verdict = if found.is_some() { Verdict::Client } else { Verdict::NotApplicable };
        let value = found.as_ref().map(|f| f.client.peer().to_string()).unwrap_or_default();
        Mark::new(
            "all-trusted",
            value,
            verdict,
            format!("every entry is trusted: all_trusted = {all_trusted}"),
        )
    });
    found
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
            Mark::new(list.field_str(), lines.joined(", "), Verdict::Ignored, why)
        });
        return false;
    }
    if lines.is_empty() {
        ctx.trace.step(|| {
            Mark::new(list.field_str(), "(absent)", Verdict::NotApplicable, "header not present")
        });
        return false;
    }
    true
}

/// Records the peer step.
pub(crate) fn trace_peer<'h, T: Tracer<'h>>(ctx: &mut Ctx<'_, '_, T>, trusted: bool) {
    let peer = ctx.peer.client.peer();
    let subject = if ctx.peer.source == Source::ProxyProtocol { "proxy-protocol" } else { "peer" };
    ctx.trace.step(|| {
        if trusted {
            Mark::new(subject, peer, Verdict::Trusted, "in trust set: its forwarding headers count")
        } else {
            Mark::new(subject, peer, Verdict::Client, "not in trust set: the peer is the client")
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
    header: &impl std::fmt::Display,
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
                    lines.joined(", "),
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
