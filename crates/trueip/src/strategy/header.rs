//! `header:NAME`: a header that carries one address, set by a trusted proxy.
//!
//! `X-Real-IP` (nginx `proxy_set_header X-Real-IP $remote_addr`), `CF-Connecting-IP`,
//! `True-Client-IP`, `Fastly-Client-IP`, `Fly-Client-IP`, `X-Azure-ClientIP`, and
//! `CloudFront-Viewer-Address` (`ip:port`, IPv6 unbracketed, port after the last colon).
//!
//! Returns the header's address if the hop that wrote it is trusted to write it, and
//! the header appears on exactly one line with one address. Several lines are
//! ambiguous (which one did the proxy set?) and are ignored, flagged; so is a value
//! that is not an address. Either way the next strategy in the chain decides.
//!
//! The writer is the peer when the peer is in the strategy's trust set. When the peer
//! is instead one of the policy's other trusted proxies (a *relay*: an ALB or nginx
//! behind the CDN that wrote the header), the writer is the hop the relays recorded in
//! the policy's list header, read from the right past further relays; it must be in the
//! header's own trust set. An attacker who goes around the CDN and talks to the ALB
//! directly can send `CloudFront-Viewer-Address: 1.2.3.4:1`, but the ALB records the
//! attacker's own address as the hop before it, which is not CloudFront's: the header is
//! ignored, flagged `header_writer_not_trusted`.
//!
//! *Safe when* the trusted writer always sets (overwrites) the header. nginx's
//! `proxy_set_header` and the CDNs named above do, and every relay between the writer
//! and the app appends to the list header.
//!
//! *Unsafe when* the writer only passes the header through: then it carries whatever
//! the client sent. And when the trust set is a shared provider range (any customer of
//! the CDN can send through it), pair it with an origin secret.

use crate::addr::{parse_ip_port_last_colon, parse_node};
use crate::headers::{FieldName, Headers, Lines, names};
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Tracer, Verdict};
use crate::trust::TrustSet;

use super::walk::{trace_peer, writer_position};
use super::{Ctx, Found};

/// How a single-address header writes its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SingleFormat {
    /// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`.
    Node,
    /// `ip:port` with the port after the last colon (`2001:db8::1:443`).
    LastColonPort,
}

impl SingleFormat {
    pub(crate) fn for_header(name: &FieldName) -> Self {
        if *name == names::CLOUDFRONT_VIEWER_ADDRESS {
            SingleFormat::LastColonPort
        } else {
            SingleFormat::Node
        }
    }
}

/// A single-address header strategy: the header, and who may hand it over.
#[derive(Clone, Debug)]
pub(crate) struct Single {
    pub(crate) name: FieldName,
    pub(crate) format: SingleFormat,
    /// Trusted proxies that may stand between the header's writer and the app.
    pub(crate) relays: TrustSet,
    /// The list header in which the relays record the hop before them.
    pub(crate) via: ListHeader,
}

impl Single {
    pub(crate) fn new(name: FieldName, relays: TrustSet, via: ListHeader) -> Self {
        Single {
            format: SingleFormat::for_header(&name),
            name,
            relays,
            via,
        }
    }
}

/// `writers`: the strategy's trust set, the hops trusted to write the header.
pub(super) fn resolve<'h, H: Headers + ?Sized, T: Tracer<'h>>(
    headers: &'h H,
    single: &Single,
    writers: &TrustSet,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Found> {
    let Single {
        name, format, via, ..
    } = single;
    let peer_writes = ctx.peer.client.trusted_by(writers);
    let peer_relays = !peer_writes && ctx.peer.client.trusted_by(&single.relays);
    trace_peer(ctx, peer_writes || peer_relays);
    let lines = Lines::read(headers, name);
    let value = match lines.as_slice() {
        [] => {
            ctx.trace.step(|| {
                Mark::new(
                    name.to_string(),
                    "(absent)",
                    Verdict::NotApplicable,
                    "header not present",
                )
            });
            return None;
        }
        _ if !peer_writes && !peer_relays => {
            ctx.warnings.insert(Warnings::UNTRUSTED_HEADER);
            ctx.trace.step(|| {
                Mark::new(
                    name.to_string(),
                    show(&lines),
                    Verdict::Ignored,
                    "present, but the peer is not trusted to send it",
                )
            });
            return None;
        }
        [value] => *value,
        [_, _, ..] => {
            ctx.warnings.insert(Warnings::DUPLICATE_HEADER);
            ctx.trace.step(|| {
                Mark::new(
                    name.to_string(),
                    show(&lines),
                    Verdict::NotApplicable,
                    "several lines: ambiguous, ignored",
                )
            });
            return None;
        }
    };
    // Before the value is read: who wrote it decides whether it is worth reading.
    let writer = match peer_relays {
        false => 0,
        true => writer_position(headers, *via, name, writers, &single.relays, ctx)?,
    };
    let parsed = match format {
        SingleFormat::Node => parse_node(value),
        SingleFormat::LastColonPort => parse_ip_port_last_colon(value),
    };
    match parsed {
        Ok(node) => {
            ctx.trace.step(|| {
                let why = match writer {
                    0 => "set by the trusted peer",
                    _ => "set by the trusted hop the proxies recorded",
                };
                Mark::new(name.to_string(), node, Verdict::Client, why)
            });
            Some(Found {
                client: node.into(),
                source: Source::Header,
                // The peer, the relays between it and the writer, and the writer.
                trusted_hops: ctx.peer.trusted_hops + 1 + writer,
            })
        }
        Err(e) => {
            ctx.warnings.insert(Warnings::MALFORMED);
            ctx.trace.step(|| {
                Mark::new(
                    name.to_string(),
                    String::from_utf8_lossy(value).into_owned(),
                    Verdict::NotApplicable,
                    format!("malformed: {e}"),
                )
            });
            None
        }
    }
}

fn show(lines: &Lines<'_>) -> String {
    lines
        .as_slice()
        .iter()
        .map(|l| String::from_utf8_lossy(l))
        .collect::<Vec<_>>()
        .join(" | ")
}
