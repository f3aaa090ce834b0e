//! `header:NAME` (and `query:NAME`, `cookie:NAME`): one address, set by a trusted proxy.

use std::fmt;

use crate::addr::{parse_ip_port_last_colon, parse_node};
use crate::headers::{FieldName, Headers, Lines, names};
use crate::params::{self, MAX_PARAM_VALUE, ParamName};
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::{Mark, Tracer, Verdict};
use crate::trust::TrustSet;

use super::walk::{trace_peer, writer_position};
use super::{Ctx, Decide, Found};

/// `header:NAME`: the address in a header that carries one, set by a trusted proxy.
///
/// `X-Real-IP` (nginx `proxy_set_header X-Real-IP $remote_addr`), `CF-Connecting-IP`,
/// `True-Client-IP`, `Fastly-Client-IP`, `Fly-Client-IP`, `X-Azure-ClientIP`, and
/// `CloudFront-Viewer-Address` (`ip:port`, IPv6 unbracketed, port after the last colon).
/// The provider presets are this strategy with the provider's header and ranges.
///
/// Returns the header's address if the hop that wrote it is trusted to write it (in
/// `writers`), and the header appears on exactly one line with one address. Several
/// lines are ambiguous (which one did the proxy set?) and are ignored, flagged; so is a
/// value that is not an address, and a header from a peer trusted for neither. Either
/// way the next strategy in the chain decides.
///
/// The writer is the peer when the peer is one of the `writers`. When the peer is
/// instead one of the `relays` (the policy's other trusted proxies: an ALB or nginx
/// behind the CDN that wrote the header), the writer is the hop the relays recorded in
/// the policy's list header, read from the right past further relays
/// ([`writer_position`]); it must be one of the `writers`.
///
/// *Safe when* the trusted writer always sets (overwrites) the header — nginx's
/// `proxy_set_header` and the CDNs named above do — and every relay between the writer
/// and the app appends to the list header. An attacker who goes around the CDN and talks
/// to the ALB directly can send `CloudFront-Viewer-Address: 1.2.3.4:1`, but the ALB
/// records the attacker's own address as the hop before it, which is not CloudFront's:
/// the header is ignored, flagged `header_writer_not_trusted`.
///
/// *Unsafe when* the writer only passes the header through: then it carries whatever
/// the client sent (nginx without `proxy_set_header X-Real-IP` forwards the client's own
/// `X-Real-IP: 1.2.3.4`). And when `writers` is a shared provider range: any customer of
/// the CDN can send through it, with their own distribution writing whatever address they
/// like — pair it with an origin secret.
///
/// `query:NAME` and `cookie:NAME` are this strategy over another carrier ([`Carrier`]):
/// the same writers and relays, the same refusal of several occurrences (two arguments or
/// two cookies of the name, whichever lines they came on), the same trace.
#[derive(Clone, Debug)]
pub(crate) struct Single {
    pub(crate) carrier: Carrier,
    pub(crate) format: SingleFormat,
    /// The hops trusted to write the header.
    pub(crate) writers: TrustSet,
    /// Trusted proxies that may stand between the header's writer and the app.
    pub(crate) relays: TrustSet,
}

/// Where a [`Single`] strategy finds its one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// A header (`header:NAME`, the presets).
    Header(FieldName),
    /// A query argument (`query:NAME`), percent-decoded.
    Query(ParamName),
    /// A cookie (`cookie:NAME`), from every `Cookie` line.
    Cookie(ParamName),
}

impl Carrier {
    /// The occurrences of the carrier in the request, into `lines` (empty), and how a query
    /// argument's are written (a header's and a cookie's are read as they are).
    #[inline(always)]
    fn fill<'h, H: Headers + ?Sized>(
        &self,
        headers: &'h H,
        lines: &mut Lines<'h>,
    ) -> params::QueryForm {
        match self {
            Carrier::Header(name) => lines.fill(headers, name),
            Carrier::Query(name) => {
                return headers.for_each_query_value(name, |value| lines.push(value));
            }
            Carrier::Cookie(name) => headers.for_each_value(&names::COOKIE, |line| {
                params::cookie_values(line, name, |value| lines.push(value));
            }),
        }
        params::QueryForm::Decoded
    }
}

impl fmt::Display for Carrier {
    /// As the trace names it: the header name, or the strategy's spelling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Carrier::Header(name) => write!(f, "{name}"),
            Carrier::Query(name) => write!(f, "query:{name}"),
            Carrier::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

impl Single {
    pub(crate) fn new(name: FieldName, writers: TrustSet, relays: TrustSet) -> Self {
        Single {
            format: SingleFormat::for_header(&name),
            carrier: Carrier::Header(name),
            writers,
            relays,
        }
    }

    /// `query:NAME` or `cookie:NAME`.
    pub(crate) fn param(carrier: Carrier, writers: TrustSet, relays: TrustSet) -> Self {
        let format = match &carrier {
            Carrier::Query(_) => SingleFormat::Query,
            _ => SingleFormat::Node,
        };
        Single { carrier, format, writers, relays }
    }
}

impl Decide for Single {
    /// `via`: the list header in which the relays record the hop before them.
    fn decide<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        via: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        let Single { carrier: name, format, writers, relays } = self;
        let peer_writes = ctx.peer.client.trusted_by(writers);
        let peer_relays = !peer_writes && ctx.peer.client.trusted_by(relays);
        trace_peer(ctx, peer_writes || peer_relays);
        let mut lines = Lines::new();
        let form = name.fill(headers, &mut lines);
        if lines.is_empty() {
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
        if !peer_writes && !peer_relays {
            ctx.warnings.insert(Warnings::UNTRUSTED_HEADER);
            ctx.trace.step(|| {
                Mark::new(
                    name.to_string(),
                    lines.joined(" | "),
                    Verdict::Ignored,
                    "present, but the peer is not trusted to send it",
                )
            });
            return None;
        }
        // Who wrote it decides whether it is worth reading at all, before its lines are: a
        // header nobody vouches for is flagged as such, doubled or not.
        let writer = match peer_relays {
            false => 0,
            true => writer_position(headers, via, name, writers, relays, ctx)?,
        };
        let [value] = lines.as_slice() else {
            ctx.warnings.insert(Warnings::DUPLICATE_HEADER);
            ctx.trace.step(|| {
                Mark::new(
                    name.to_string(),
                    lines.joined(" | "),
                    Verdict::NotApplicable,
                    "several lines: ambiguous, ignored",
                )
            });
            return None;
        };
        let parsed = match format {
            SingleFormat::Node => parse_node(value).map_err(Malformed::Addr),
            SingleFormat::LastColonPort => parse_ip_port_last_colon(value).map_err(Malformed::Addr),
            // The buffer only here: the header strategies do not pay for clearing it.
            SingleFormat::Query => {
                let mut decoded = [0; MAX_PARAM_VALUE];
                match form {
                    params::QueryForm::Encoded => params::percent_decode(value, &mut decoded),
                    params::QueryForm::Decoded if value.len() > MAX_PARAM_VALUE => {
                        Err(params::DecodeError::TooLong)
                    }
                    params::QueryForm::Decoded => Ok(&value[..]),
                }
                .map_err(Malformed::Decode)
                .and_then(|value| parse_node(value).map_err(Malformed::Addr))
            }
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
                    source: match name {
                        Carrier::Header(_) => Source::Header,
                        Carrier::Query(_) => Source::Query,
                        Carrier::Cookie(_) => Source::Cookie,
                    },
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

    fn trusts(&self, peer: crate::addr::Peer) -> bool {
        self.writers.contains_peer(peer) || self.relays.contains_peer(peer)
    }
}

/// How a single-address header writes its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SingleFormat {
    /// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`.
    Node,
    /// `ip:port` with the port after the last colon (`2001:db8::1:443`).
    LastColonPort,
    /// [`Node`](Self::Node), percent-encoded (a query argument).
    Query,
}

/// Why a value is not an address.
enum Malformed {
    Addr(crate::addr::AddrError),
    Decode(params::DecodeError),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Addr(e) => write!(f, "{e}"),
            Malformed::Decode(e) => write!(f, "{e}"),
        }
    }
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
