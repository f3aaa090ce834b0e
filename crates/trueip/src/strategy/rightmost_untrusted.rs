//! `rightmost-untrusted`: the first address, walking from the right, that is not a trusted proxy.
//!
//! This is nginx's `real_ip_recursive on` and the strategy to use whenever you can
//! list your proxies' addresses (or their provider's ranges).
//!
//! Returns: if the peer is trusted, the first list entry (from the right) that is not
//! in the trust set. Trusted entries are skipped. A malformed or opaque entry stops
//! the walk at the last trusted address (flagged), never skipping left past it. When
//! every entry is trusted, the policy's [`AllTrusted`](super::AllTrusted) choice decides.
//!
//! *Safe when* the trust set holds every proxy that appends to the header and nothing
//! else: each entry we skip was written by a proxy we trust, so the entry we stop at
//! was written by a trusted hop too, and a client cannot forge it.
//!
//! *Unsafe when* the trust set is too wide. Trust all of a CDN's ranges and an
//! attacker who sends requests through the same CDN, adding `X-Forwarded-For: 9.9.9.9`,
//! still ends as the entry left of the CDN's — their own address, correctly. But trust
//! `any` and every entry is "trusted": the leftmost, client-written one wins.

use crate::entry::Entry;
use crate::headers::{Headers, Lines};
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Tracer, Verdict};
use crate::trust::{TrustSet, V4Lookup};

use crate::list::{Client, Hop, Rev, node_at};

use super::walk::{MAX_WALK, admit, stop_at, subject, trace_peer};
use super::{AllTrusted, Ctx, Found};

#[inline(always)]
pub(super) fn resolve<'h, H: Headers + ?Sized, T: Tracer<'h>>(
    headers: &'h H,
    list: ListHeader,
    trusted: &TrustSet,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Found> {
    let peer = ctx.peer;
    let peer_trusted = peer.client.trusted_by(trusted);
    trace_peer(ctx, peer_trusted);
    let mut lines = Lines::new();
    ctx.other_list = Some(lines.fill_noting(headers, list.field_ref(), list.other().field_ref()));
    if !admit(&lines, list, peer_trusted, ctx) {
        return None;
    }
    let mut rev = Rev::new(list, &lines);
    let mut n: u16 = 0;
    if let Rev::Xff(xff) = &mut rev
        && !T::RECORDS
    {
        // Trusted IPv4 hops need no step recorded: skip them in one tight loop, which
        // also hands back the usual answer, an untrusted IPv4 address. Anything else
        // goes on in the loop below as if it had walked there itself (`explain` walks
        // every element there, and tests hold the two to the same answers). One loop per
        // kind of trust set: the loop then neither re-reads the set nor re-tests its kind
        // at every element.
        let (skipped, untrusted) = match trusted.v4_lookup() {
            V4Lookup::Scan(set) => xff.skip_trusted_v4(MAX_WALK - 1, move |ip| set.contains(ip)),
            V4Lookup::Indexed(set) => xff.skip_trusted_v4(MAX_WALK - 1, move |ip| set.contains(ip)),
        };
        n = skipped;
        if let Some(ip) = untrusted {
            if xff.next_raw().is_some() {
                ctx.warnings.insert(Warnings::SPOOF_ATTEMPT);
            }
            return Some(Found {
                client: Client::v4(std::net::Ipv4Addr::from_bits(ip), None),
                source: Source::List {
                    header: list,
                    from_right: n + 1,
                },
                trusted_hops: peer.trusted_hops + 1 + n,
            });
        }
    }
    walk(list, trusted, &lines, rev, n, ctx)
}

/// The walk from the `n`-th element on (all before it trusted), one element at a time,
/// recording every step. Kept out of line: it is the path of `explain` and of chains
/// the IPv4 loop above leaves to it (IPv6, ports, obfuscated or malformed entries), and
/// inlined, it doubled the code around the common path, which then ran slower.
#[inline(never)]
fn walk<'a, T: Tracer<'a>>(
    list: ListHeader,
    trusted: &TrustSet,
    lines: &Lines<'a>,
    mut rev: Rev<'a, '_>,
    mut n: u16,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Found> {
    let peer = ctx.peer;
    // The position (from the right; 0 is the peer) of the last address we can vouch
    // for. Only the position is kept: the loop runs once per element, and the address is
    // re-read on the rare ways out that need it (stop, cap, all trusted).
    let mut last: u16 = n;
    let mut hops = peer.trusted_hops + 1 + n;
    let vouched = |from_right: u16, trusted_hops: u16| match from_right {
        0 => Found {
            trusted_hops,
            ..*peer
        },
        n => Found {
            client: node_at(list, lines, n).map_or(peer.client, Client::from),
            source: Source::List {
                header: list,
                from_right: n,
            },
            trusted_hops,
        },
    };
    while let Some(hop) = rev.next_hop() {
        n += 1;
        ctx.trace.hop(list, lines, &rev, n, hop);
        let is_trusted = match hop {
            Hop::V4(ip, _) => trusted.contains_v4(ip),
            Hop::Entry(Entry::Addr(node)) => trusted.contains(node.ip),
            Hop::Entry(other) => return stop_at(ctx, list, n, &other, vouched(last, hops - 1)),
        };
        if !is_trusted {
            let client = hop.client().unwrap_or(peer.client);
            let more = rev.has_more();
            if more {
                ctx.warnings.insert(Warnings::SPOOF_ATTEMPT);
            }
            ctx.trace.step(|| {
                let why = if more {
                    "first untrusted entry from the right; entries left of it are client-written"
                } else {
                    "first untrusted entry from the right"
                };
                Mark::new(subject(list, n), client.node(), Verdict::Client, why)
            });
            return Some(Found {
                client,
                source: Source::List {
                    header: list,
                    from_right: n,
                },
                trusted_hops: hops,
            });
        }
        ctx.trace.step(|| {
            let node = hop.node().unwrap_or(peer.client.node());
            Mark::new(
                subject(list, n),
                node,
                Verdict::Trusted,
                "in trust set: skip",
            )
        });
        last = n;
        hops += 1;
        if n == MAX_WALK {
            ctx.warnings.insert(Warnings::TRUNCATED);
            ctx.trace.step(|| {
                Mark::new(
                    subject(list, n),
                    hop.node().unwrap_or(peer.client.node()),
                    Verdict::Stop,
                    format!("walked {MAX_WALK} entries: stop"),
                )
            });
            return Some(vouched(last, hops - 1));
        }
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
        return Some(vouched(last, hops - 1));
    }
    ctx.warnings.insert(Warnings::ALL_TRUSTED);
    let found = match ctx.all_trusted {
        AllTrusted::Leftmost => Some(vouched(last, hops - 1)),
        AllTrusted::Peer => Some(Found {
            trusted_hops: peer.trusted_hops,
            ..*peer
        }),
        AllTrusted::Fail => None,
    };
    let all_trusted = ctx.all_trusted;
    ctx.trace.step(|| {
        let verdict = if found.is_some() {
            Verdict::Client
        } else {
            Verdict::NotApplicable
        };
        let value = found
            .as_ref()
            .map(|f| f.client.node().to_string())
            .unwrap_or_default();
        Mark::new(
            "all-trusted",
            value,
            verdict,
            format!("every entry is trusted: all_trusted = {all_trusted}"),
        )
    });
    found
}
