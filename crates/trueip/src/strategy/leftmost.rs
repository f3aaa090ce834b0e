//! `leftmost`: the first element of the list, as the client wrote it.

use crate::entry::Entry;
use crate::headers::{Headers, Lines};
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Tracer, Verdict};
use crate::trust::TrustSet;
use crate::{forwarded, xff};

use super::{Ctx, Decide, Found};

/// `leftmost`: the first element of the list, as the client wrote it.
///
/// This is what "take the first X-Forwarded-For entry" does. It reads the first element
/// and nothing else: it is not a walk, and it does not look at who sent the header.
///
/// Returns that element when it is an address, flagged `spoofable` every time. When it
/// is not an address (`unknown`, garbage), the next strategy decides, flagged
/// `malformed`.
///
/// *Safe when* a lie costs nothing: analytics, a guess at a visitor's country.
///
/// *Unsafe when* anything depends on it: anyone can send `X-Forwarded-For: 1.2.3.4`
/// and become 1.2.3.4 — to a rate limit, an allow-list, an audit trail or a signature.
#[derive(Clone, Debug)]
pub(crate) struct Leftmost {
    /// Not consulted for the answer. The proxies named here are still proxies to the
    /// policy ([`Policy::trusts`](crate::Policy::trusts)): their forwarding headers
    /// are passed on.
    pub(crate) trusted: TrustSet,
}

impl Decide for Leftmost {
    fn decide<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        let lines = Lines::read(headers, list.field_ref());
        let entry = match list {
            ListHeader::XForwardedFor => xff::first(lines.as_slice()),
            ListHeader::Forwarded => forwarded::first(lines.as_slice()).map(|e| match e {
                Ok(element) => element.for_node,
                Err((text, why)) => Entry::Malformed { text, why },
            }),
        }?;
        match entry {
            Entry::Addr(node) => {
                ctx.warnings.insert(Warnings::SPOOFABLE);
                ctx.trace.step(|| {
                    Mark::new(
                        format!("{}[0]", list.field()),
                        node,
                        Verdict::Client,
                        "leftmost entry: client-written, spoofable",
                    )
                });
                Some(Found {
                    client: node.into(),
                    source: Source::List { header: list, from_right: 0 },
                    trusted_hops: 0,
                })
            }
            other => {
                ctx.warnings.insert(Warnings::MALFORMED);
                ctx.trace.step(|| {
                    Mark::new(
                        format!("{}[0]", list.field()),
                        other,
                        Verdict::NotApplicable,
                        "leftmost entry is not an address",
                    )
                });
                None
            }
        }
    }

    fn trusts(&self, peer: crate::addr::Peer) -> bool {
        self.trusted.contains_peer(peer)
    }
}
