//! `leftmost`: the first element of the list, as the client wrote it.
//!
//! This is what "take the first X-Forwarded-For entry" does, and it is **always
//! spoofable**: anyone can send `X-Forwarded-For: 1.2.3.4` and become 1.2.3.4. The
//! answer is flagged `spoofable` every time. Use it only for analytics where a lie
//! costs nothing — never for rate limits, allow-lists, audit trails or signatures.

use crate::entry::Entry;
use crate::headers::{Headers, Lines};
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Tracer, Verdict};
use crate::{forwarded, xff};

use super::{Ctx, Found};

pub(super) fn resolve<'h, H: Headers + ?Sized, T: Tracer<'h>>(
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
                source: Source::List {
                    header: list,
                    from_right: 0,
                },
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
