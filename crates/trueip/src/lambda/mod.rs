//! AWS Lambda: the client of a request that reached a function through an ALB, API
//! Gateway or a Function URL, from the event the function received (feature `lambda`;
//! `lambda-http` adds the same for `lambda_http::Request`).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use trueip::lambda::{self, Preset};
//!
//! // ALB → Lambda. The client forged the first entry; the ALB appended what it saw.
//! let event: serde_json::Value = serde_json::from_str(r#"{
//!     "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:..."}},
//!     "httpMethod": "GET", "path": "/",
//!     "headers": {"x-forwarded-for": "203.0.113.195, 70.41.3.18, 150.172.238.178"}
//! }"#)?;
//! let policy = Preset::Alb.builder().build()?;
//! let resolution = lambda::resolve_event(&policy, &event)?;
//! assert_eq!(resolution.client.to_string(), "150.172.238.178");
//! assert!(resolution.warnings.contains(trueip::Warnings::SPOOF_ATTEMPT));
//! # Ok(()) }
//! ```
//!
//! # The kinds, told from the event's shape
//!
//! | kind | told by | peer stand-in |
//! | --- | --- | --- |
//! | [`EventKind::Alb`] | `requestContext.elb` | the last element of `x-forwarded-for` |
//! | [`EventKind::FunctionUrl`] | `version: "2.0"`, `requestContext.domainName` `<url-id>.lambda-url.<region>.on.aws` | `requestContext.http.sourceIp` |
//! | [`EventKind::ApiGatewayV2`] (HTTP API payload 2.0) | `version: "2.0"`, any other `requestContext.domainName` | `requestContext.http.sourceIp` |
//! | [`EventKind::ApiGatewayV1`] (REST API; HTTP API payload 1.0; WebSocket) | `version: "1.0"`, or no `version` and `requestContext.identity` | `requestContext.identity.sourceIp` |
//!
//! A WebSocket API event (`requestContext.eventType`, `routeKey`, `connectionId`) has no
//! `version` and the REST API's `requestContext.identity`, so it is read as
//! [`EventKind::ApiGatewayV1`]: its `sourceIp` is the address that opened the connection.
//! A VPC Lattice event (payload v1: `raw_path`, no `requestContext`; v2: `version: "2.0"`
//! and `requestContext.serviceNetworkArn`, no `http`) is refused with [`EventError::Unsupported`]:
//! it carries no address VPC Lattice vouches for (no `sourceIp`; AWS documents that
//! Lattice adds `x-forwarded-for`, not whether it replaces or appends to one the caller
//! sent), only the caller's IAM identity and source VPC.
//!
//! In that order: `requestContext.elb` decides first. A payload 2.0 event without
//! `requestContext.domainName` (AWS writes one for both of its kinds) is refused: the
//! host is what says whether its `X-Forwarded-For` may be read. Headers are read as
//! lambda_http hands them to a handler, so that `resolve_request` decides as
//! [`resolve_event`] does: from `multiValueHeaders` (several values of one header are
//! several lines, in order) and `headers`, whose value of a name replaces that name's
//! lines (a REST API event's `headers` holds the last line of a repeated header: the right
//! end of a list, where the walk starts); a payload 2.0 event's `cookies` are its `Cookie`
//! lines; names match in any case. A REST API event keeps
//! the case each line was sent in (an event recorded from AWS holds a client's
//! `tEsT-HEADeR` as sent), so one header may come under two spellings, whose order JSON
//! does not keep (whether API Gateway hands two spellings as two keys is neither
//! documented nor observed; this is safe either way). `X-Forwarded-For`, `Forwarded` and the claims about the
//! request (`X-Forwarded-Proto`, `-Host`, `-Port`, `-Prefix`, ...), whose lines' order
//! decides what is read, are then not read at all, and the decision is flagged
//! `header_writer_not_trusted`, so no hop is trusted with the request's client-IP headers
//! (an ALB event, whose stand-in is the last element of that order, is an
//! [`EventError::AmbiguousHeader`]); any other header is read under each spelling (a
//! single-address header then has two lines, a duplicate, ignored). Either way a client's
//! two spellings cannot make the event unreadable and leave the app without an address.
//! An event of no kind,
//! without the field its stand-in comes from, or with a field AWS never writes that way
//! (a non-string header, a `sourceIp` that is not an address, such as the API Gateway
//! console's `test-invoke-source-ip`) is an [`EventError`] naming the field, never a
//! guess.
//!
//! # Query arguments
//!
//! A `query:NAME` strategy reads the event's arguments as AWS writes them
//! ([`Headers::for_each_query_value`], the
//! one place it looks, in an event as in a request target):
//!
//! | kind | read from | written |
//! | --- | --- | --- |
//! | HTTP API payload 2.0, Function URL | `rawQueryString`, as a request target's query string | as sent, percent-encoded |
//! | the same, without `rawQueryString` | `queryStringParameters`; a repeated argument's values are joined by commas, read as several | decoded |
//! | ALB | `multiValueQueryStringParameters` when it has any, else `queryStringParameters` | as sent, names too (the ALB decodes nothing) |
//! | API Gateway REST (payload 1.0) | the same | decoded, and not decoded again |
//!
//! With multi-value off, an ALB's `queryStringParameters` keeps the last value of a
//! repeated argument (AWS documents it): two cannot be told from one there, as for a
//! header. A REST API always writes both fields, the last value in
//! `queryStringParameters` and every one in `multiValueQueryStringParameters` (an event
//! recorded from AWS), so its arguments are read whole; only an event without the
//! multi-value field has the last alone.
//!
//! What each rule of this module rests on, AWS's documents or events logged from real
//! deployments, and what neither says: docs/SECURITY.md, "AWS Lambda: what AWS sends, and
//! the evidence".
//!
//! # What stands in for the peer
//!
//! A function has no TCP peer: AWS's front end accepted the connection and invoked the
//! function. In every kind the stand-in is **the address that front end saw**, and the
//! policy decides from there as it would for a connection from that address, over the
//! headers as they arrived. So a policy describes the hops *in front of* AWS's front
//! end, and [`Policy::default`](crate::Policy::default) (trust nothing) answers with the
//! address the front end saw.
//!
//! - **ALB.** Only the load balancer can invoke its target, and it appends the address
//!   it saw to `X-Forwarded-For` (the default `append` mode of
//!   `routing.http.xff_header_processing.mode`; `remove` leaves no header, an error here,
//!   and `preserve` leaves the client's own text in that place, which nothing in the
//!   event can tell apart, or no header when it sent none — do not use it). The ALB is the trusted peer; the element it
//!   wrote, the list's last, stands in for the peer's address. It stays in the list,
//!   so a walk from the right starts at it: `hops:1` trusting `any` ([`Preset::Alb`])
//!   answers with it and flags what stands left of it, as `trueip serve` behind the
//!   same ALB would.
//!   See "Several `X-Forwarded-For` lines" below for what the last element is when the
//!   request had more than one line.
//! - **API Gateway.** `sourceIp` is the address the API's front end saw (for an
//!   edge-optimized API, the one before AWS's own CloudFront hop). The headers are
//!   walked only as far as the policy trusts that address: `X-Forwarded-For` entries
//!   written in front of it (your CloudFront distribution → API Gateway) count when the
//!   policy trusts CloudFront's ranges and `sourceIp` is in them. Behind a custom domain
//!   with mutual TLS, API Gateway was seen to write an address of AWS's own with a port
//!   (`10.1.22.195:32554`): it stands in, port and all, and is then no client's address,
//!   the same for every request; no preset describes that chain. API Gateway writes
//!   `X-Forwarded-For` itself, after the client's text: with nothing left of `sourceIp`
//!   (`sourceIp` alone, or an edge-optimized REST API's `sourceIp, <edge>`), it is no
//!   header a stranger sent, and a policy that trusts no proxy reads it as absent rather
//!   than flag it `header_from_untrusted_peer` (`FrontEndRecord`, beside [`EventKind`]);
//!   anything left of `sourceIp` is still flagged.
//! - **Function URLs.** `sourceIp` is the address the URL saw, as for API Gateway, but
//!   `X-Forwarded-For` is never read: see below.
//!
//! # Function URLs: `X-Forwarded-For` is the client's text
//!
//! A Function URL does not append to `X-Forwarded-For`: it keeps only the first value
//! the request carried, the leftmost, and drops the rest — reported by
//! <https://speedrun.nobackspacecrew.com/blog/2026/03/06/obtaining-caller-ip-address-with-lambda-furls.html>
//! ("Obtaining caller ip address with Lambda FURLs"), and an event logged behind
//! CloudFront holds one element where an appending URL would give two; not verified
//! against AWS. Sent
//! directly, the event's header is what the client wrote (or `sourceIp` when it wrote
//! none); behind CloudFront, which appended the viewer after the client's text, it is
//! still the client's text, and `sourceIp` is a CloudFront edge. A walk that trusts
//! CloudFront's ranges would pass the edge and take that text: a client of CloudFront →
//! Function URL that sent `X-Forwarded-For: 6.6.6.6` would be 6.6.6.6.
//!
//! So in an event of [`EventKind::FunctionUrl`] no policy reads `X-Forwarded-For`: the
//! decision is made as if the header were absent (one rule, under every entry:
//! [`resolve_event`], [`explain_event`], `resolve_request`, `explain_request`,
//! [`ClientIpLayer`](crate::tower::ClientIpLayer) under `lambda_http::run`, and the Python
//! package through them), and the explanation says it was ignored. Behind CloudFront the
//! client is then `CloudFront-Viewer-Address`, which the edge writes over anything the
//! client sent, when the origin request policy forwards it (the `cloudfront` strategy of
//! the CloudFront presets reads it); without it, the edge's own address, and the first
//! such decision in a process logs a warning (through `log`) naming the fix.
//! `X-Forwarded-Proto` and `X-Forwarded-Port` in such an event name no viewer's scheme
//! or port: CloudFront removes a viewer's `X-Forwarded-Proto` (its docs), yet an event
//! logged behind it held `x-forwarded-proto: https`, which the URL wrote for CloudFront's
//! own HTTPS connection to it, and a port header may be either's. Behind a trusted edge
//! they are withheld from the app and never the request's scheme or port
//! ([`UNKEPT_CLAIMS`](crate::headers::UNKEPT_CLAIMS)). The kind is
//! told by `requestContext.domainName`: a Function URL has no custom domain and refuses
//! a request whose `Host` is not its own, so its events always carry its own host.
//!
//! # Several `X-Forwarded-For` lines (ALB)
//!
//! A client can send `X-Forwarded-For` on several lines (HTTP/1.1 or HTTP/2 alike; AWS
//! documents nothing about joining them, only that HTTP/2 header names arrive in lower
//! case). The ALB stand-in is **the last element of the last line**, and only of that
//! line; this rests on the ALB writing its own line after the request's lines:
//!
//! - AWS, *Lambda functions as targets*, "Multi-value headers": with multi-value headers
//!   off, "the load balancer uses the last value that it receives"; with them on, the
//!   lines arrive as an array in request order.
//! - An event logged from a real ALB with multi-value headers on
//!   (<https://github.com/laravel/vapor-core/pull/25>, pinned in that project's
//!   `tests/Unit/FpmRequestTest.php`): the client sent one line `8.8.8.8`, and the event
//!   held `["8.8.8.8", "8.8.8.8, <the client's address>"]`: the client's line untouched,
//!   the ALB's line after it, holding what it received and then the address it saw. The
//!   ALB's `X-Forwarded-Port`, `X-Forwarded-Proto` and `X-Amzn-Trace-Id` lines came last
//!   in the same way. So the ALB does not append to the request's first line in place,
//!   and with multi-value headers off the value kept is the ALB's line.
//!
//! Not documented, and not observed: what the ALB's line holds when the request had two
//! or more lines. Whatever it holds, it ends in the ALB's element and comes last, which is
//! all the stand-in reads. No event-only check could do better: a target cannot tell the
//! ALB's line from a client's by its text, and with multi-value headers off only one line
//! arrives. A last line with no element is refused (an ALB in `append` mode never writes
//! one), never answered from a line before it. The policy's walk still reads every line,
//! right to left, as one list: the lines before the ALB's are the request's own, which
//! the ALB's line repeats, so they can only be flagged (`spoof_attempt`) or reached after
//! every element the ALB wrote was trusted.
//!
//! # Presets
//!
//! [`Preset`] names the policy for each common chain; CloudFront's ranges come from the
//! provider file as everywhere else (`PolicyBuilder::provider("cloudfront", ...)`).

mod error;
mod event;
#[cfg(feature = "lambda-http")]
pub(crate) mod http;
mod preset;

use std::borrow::Cow;

use serde_json::Value;

use crate::addr::Node;
use crate::entry::Entry;
use crate::explain::Explanation;
use crate::headers::{Headers, names};
use crate::policy::Policy;
use crate::resolution::Resolution;
use crate::trace::{Step, Verdict};

pub use crate::event_kind::EventKind;
pub use error::EventError;
pub use event::Event;
#[cfg(feature = "lambda-http")]
pub use http::{explain_request, resolve_request};
pub use preset::Preset;

use error::Found;

/// Decides who the client of `event` is: its kind told from its shape, the address
/// AWS's front end saw standing in for the peer (see [the module docs](self)).
pub fn resolve_event(policy: &Policy, event: &Value) -> Result<Resolution, EventError> {
    Event::parse(event).map(|event| event.resolve(policy))
}

/// [`resolve_event`], with every step recorded, the first saying where the peer
/// stand-in came from: what `trueip explain --lambda-event` prints.
pub fn explain_event(policy: &Policy, event: &Value) -> Result<Explanation, EventError> {
    Event::parse(event).map(|event| event.explain(policy))
}

/// The warning for a Function URL event whose client is the trusted hop in front of it
/// (flagged [`Warnings::XFF_NOT_KEPT`](crate::Warnings::XFF_NOT_KEPT), decided by the
/// peer: behind CloudFront, no `CloudFront-Viewer-Address` came), naming the fix; `None`
/// for any other resolution. The core logs it once through `log`; the Python package
/// once to its `trueip` logger.
pub fn edge_is_client(resolution: &Resolution) -> Option<String> {
    crate::policy::edge_is_client(resolution)
}

/// The first step of an event's explanation: where the peer stand-in came from.
pub(crate) fn stand_in_step(kind: EventKind, peer: Node) -> Step {
    Step {
        subject: Cow::Borrowed(kind.name()),
        value: peer.to_string(),
        verdict: Verdict::Trusted,
        why: Cow::Borrowed(kind.stand_in_why()),
    }
}

/// The address an ALB appended to X-Forwarded-For: the last element of the header's last
/// line, and only of that line. `field` names the header object, for errors.
///
/// The ALB writes its own line after the request's lines (see "Several
/// `X-Forwarded-For` lines" in [the module docs](self)), so a last line with no element is
/// not one it wrote: refused, never answered from a line before it, which is the
/// request's own text.
pub(crate) fn alb_peer<H: Headers + ?Sized>(
    headers: &H,
    field: &'static str,
) -> Result<Node, EventError> {
    let mut last_line: Option<&[u8]> = None;
    headers.for_each_value(&names::X_FORWARDED_FOR, |line| last_line = Some(line));
    let kind = EventKind::Alb;
    let Some(line) = last_line else {
        return Err(EventError::Missing {
            kind,
            field: match field {
                "multiValueHeaders" => "multiValueHeaders.x-forwarded-for",
                _ => "headers.x-forwarded-for",
            },
        });
    };
    match crate::xff::Rev::new(std::slice::from_ref(&line)).next() {
        Some(Entry::Addr(node)) => Ok(node),
        Some(other) => {
            let text = match other {
                Entry::Malformed { text, .. } | Entry::Obfuscated(text) => {
                    String::from_utf8_lossy(text).into_owned()
                }
                other => other.to_string(),
            };
            Err(EventError::invalid(
                kind,
                format!("the last element of {field}.x-forwarded-for"),
                "an address",
                Found::Text(&text),
            ))
        }
        None => Err(EventError::invalid(
            kind,
            format!("{field}.x-forwarded-for"),
            "a last line ending in the address the ALB saw",
            Found::Text(""),
        )),
    }
}

/// The address in a `sourceIp` field: an address that can be a connection's source, bare
/// or with a port (`192.0.2.1:443`, `[2001:db8::7]:443`), which API Gateway writes when a
/// mutual-TLS custom domain fronts it (docs/SECURITY.md, "AWS Lambda: what AWS sends, and
/// the evidence"). Nothing else: no brackets without a port, no padding.
pub(crate) fn source_ip(kind: EventKind, value: Option<&Value>) -> Result<Node, EventError> {
    let field = kind.stand_in_field();
    match value {
        None | Some(Value::Null) => Err(EventError::Missing { kind, field }),
        Some(Value::String(text)) => source_ip_text(kind, text),
        Some(other) => Err(EventError::invalid(kind, field, "an IP address", event::what(other))),
    }
}

/// [`source_ip`] of text.
pub(crate) fn source_ip_text(kind: EventKind, text: &str) -> Result<Node, EventError> {
    let bytes = text.as_bytes();
    let node = match crate::addr::parse_ip(bytes) {
        Ok(ip) => Some(Node::from(ip)),
        // `parse_node` also takes a bracketed address without a port and trims padding,
        // neither of which AWS writes.
        Err(_) => crate::addr::parse_node(bytes)
            .ok()
            .filter(|node| node.port.is_some() && crate::addr::trim(bytes).len() == bytes.len()),
    };
    match node {
        Some(node) if crate::addr::can_be_source(node.ip) => Ok(node),
        _ => Err(EventError::invalid(
            kind,
            kind.stand_in_field(),
            "an IP address",
            Found::Text(text),
        )),
    }
}
