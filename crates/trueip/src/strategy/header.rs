//! `header:NAME`: a header that carries one address, set by a trusted proxy.
//!
//! `X-Real-IP` (nginx `proxy_set_header X-Real-IP $remote_addr`), `CF-Connecting-IP`,
//! `True-Client-IP`, `Fastly-Client-IP`, `Fly-Client-IP`, `X-Azure-ClientIP`, and
//! `CloudFront-Viewer-Address` (`ip:port`, IPv6 unbracketed, port after the last colon).
//!
//! Returns the header's address if the peer is trusted and the header appears on
//! exactly one line with one address. Several lines are ambiguous (which one did the
//! proxy set?) and are ignored, flagged; so is a value that is not an address. Either
//! way the next strategy in the chain decides.
//!
//! *Safe when* the trusted proxy always sets (overwrites) the header. nginx's
//! `proxy_set_header` and the CDNs named above do.
//!
//! *Unsafe when* the proxy only passes the header through: then it carries whatever
//! the client sent. And when the trust set is a shared provider range (any customer of
//! the CDN can send through it), pair it with an origin secret.

use crate::addr::{parse_ip_port_last_colon, parse_node};
use crate::headers::{FieldName, Headers, Lines, names};
use crate::resolution::{Source, Warnings};
use crate::trace::{Mark, Tracer, Verdict};
use crate::trust::TrustSet;

use super::walk::trace_peer;
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

pub(super) fn resolve<'h, H: Headers + ?Sized, T: Tracer<'h>>(
    headers: &'h H,
    name: &FieldName,
    format: SingleFormat,
    trusted: &TrustSet,
    ctx: &mut Ctx<'_, '_, T>,
) -> Option<Found> {
    let peer_trusted = ctx.peer.client.trusted_by(trusted);
    trace_peer(ctx, peer_trusted);
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
        _ if !peer_trusted => {
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
        _ => {
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
    let parsed = match format {
        SingleFormat::Node => parse_node(value),
        SingleFormat::LastColonPort => parse_ip_port_last_colon(value),
    };
    match parsed {
        Ok(node) => {
            ctx.trace.step(|| {
                Mark::new(
                    name.to_string(),
                    node,
                    Verdict::Client,
                    "set by the trusted peer",
                )
            });
            Some(Found {
                client: node.into(),
                source: Source::Header,
                trusted_hops: ctx.peer.trusted_hops + 1,
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
