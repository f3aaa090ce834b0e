//! The same decision for `lambda_http::Request` (feature `lambda-http`): the kind and the
//! peer stand-in from the request context lambda_http stores in the request's
//! extensions, the headers from its `HeaderMap`.
//!
//! lambda_http builds that map from an event's `multiValueHeaders` and then lets the
//! `headers` value of a name replace its lines; for a header repeated on several lines
//! of a REST API event only the last line is left, the right end of the list.
//! [`resolve_event`](super::resolve_event) reads the event the same way, its `cookies`
//! as lambda_http's `Cookie` line and its query arguments as the request target
//! lambda_http builds from them holds them, so both decide alike.
//!
//! Except where lambda_http keeps less than the event: a REST API event's header under two
//! spellings (`X-Forwarded-For`, `x-forwarded-for`) becomes one line here, the value of the
//! key that comes last in the JSON, which [`resolve_event`](super::resolve_event) does not
//! read at all (its order is lost). Nothing in the request can tell: behind CloudFront → a
//! REST API, decide from the raw event, or forward `CloudFront-Viewer-Address`
//! (docs/SECURITY.md).

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::addr::Node;
use crate::explain::Explanation;
use crate::policy::{Connection, Policy};
use crate::resolution::Resolution;

use super::{EventError, EventKind, alb_peer, source_ip_text, stand_in_step};

/// Decides who the client of a `lambda_http` request is, as
/// [`resolve_event`](super::resolve_event) does for the event it was made from.
///
/// ```no_run
/// use lambda_http::{Body, Error, Request, Response, run, service_fn};
/// use trueip::lambda::{Preset, resolve_request};
///
/// # async fn main_() -> Result<(), Error> {
/// let policy = Preset::Alb.builder().build()?;
/// run(service_fn(|request: Request| {
///     let answer = match resolve_request(&policy, &request) {
///         Ok(resolution) => resolution.client.to_string(),
///         Err(e) => e.to_string(),
///     };
///     async move { Ok::<_, Error>(Response::new(Body::from(answer))) }
/// }))
/// .await
/// # }
/// ```
pub fn resolve_request(policy: &Policy, request: &Request) -> Result<Resolution, EventError> {
    let (kind, peer) = stand_in(request.request_context_ref(), request.headers())?;
    Ok(policy.resolve_stand_in(kind, &Connection::from_peer(peer), request))
}

/// [`resolve_request`], with every step recorded, the first saying where the peer
/// stand-in came from.
pub fn explain_request(policy: &Policy, request: &Request) -> Result<Explanation, EventError> {
    let (kind, peer) = stand_in(request.request_context_ref(), request.headers())?;
    let mut explanation =
        Explanation::stand_in(policy, kind, &Connection::from_peer(peer), request);
    explanation.steps.insert(0, stand_in_step(kind, peer));
    Ok(explanation)
}

/// The kind of the event a request lambda_http made from one, and the connection it
/// stands for, for [`ClientIpLayer`](crate::tower::ClientIpLayer) under
/// `lambda_http::run`: the address AWS's front end saw as its peer. `None` when
/// lambda_http stored no request context.
#[cfg(feature = "tower")]
pub(crate) fn stand_in_connection(
    extensions: &http::Extensions,
    headers: &http::HeaderMap,
) -> Option<Result<(EventKind, Connection), EventError>> {
    let context = extensions.get::<RequestContext>()?;
    Some(stand_in(Some(context), headers).map(|(kind, peer)| (kind, Connection::from_peer(peer))))
}

/// The request's kind and the address AWS's front end saw.
fn stand_in(
    context: Option<&RequestContext>,
    headers: &http::HeaderMap,
) -> Result<(EventKind, Node), EventError> {
    let source_ip = |kind: EventKind, text: Option<&str>| match text {
        Some(text) => source_ip_text(kind, text),
        None => Err(EventError::Missing { kind, field: kind.stand_in_field() }),
    };
    match context {
        Some(RequestContext::Alb(_)) => Ok((EventKind::Alb, alb_peer(headers, "headers")?)),
        Some(RequestContext::ApiGatewayV1(context)) => {
            let kind = EventKind::ApiGatewayV1;
            Ok((kind, source_ip(kind, context.identity.source_ip.as_deref())?))
        }
        Some(RequestContext::ApiGatewayV2(context)) => {
            // A Function URL event too: the same payload, told apart by its host, as
            // `Event::parse` does.
            let kind = match context.domain_name.as_deref() {
                Some(domain) => EventKind::of_payload_v2(domain),
                None => {
                    return Err(EventError::Missing {
                        kind: EventKind::ApiGatewayV2,
                        field: "requestContext.domainName",
                    });
                }
            };
            Ok((kind, source_ip(kind, context.http.source_ip.as_deref())?))
        }
        // A WebSocket API event carries the REST API's identity.
        Some(RequestContext::WebSocket(context)) => {
            let kind = EventKind::ApiGatewayV1;
            Ok((kind, source_ip(kind, context.identity.source_ip.as_deref())?))
        }
        Some(RequestContext::VpcLattice(_)) => Err(EventError::Unsupported {
            service: "VPC Lattice (payload v2)",
            why: super::event::LATTICE,
        }),
        // `PassThrough`, when another crate turns on lambda_http's feature for it.
        Some(_) => Err(EventError::UnknownKind {
            why: "a lambda_http request context trueip does not read",
        }),
        None => Err(EventError::UnknownKind {
            why: "the request carries no lambda_http request context: it was not made from an event",
        }),
    }
}
