//! The kinds of AWS Lambda event trueip reads (feature `lambda`), apart from the reading
//! (`crate::lambda`): the policy decides by kind which events a preset's trust rests on,
//! and which `X-Forwarded-For` API Gateway wrote all of (`FrontEndRecord`).

use std::fmt;

/// The kinds of event trueip reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// An Application Load Balancer target event (`requestContext.elb`).
    Alb,
    /// API Gateway REST API, HTTP API with payload format 1.0, or WebSocket API
    /// (`requestContext.identity.sourceIp`).
    ApiGatewayV1,
    /// API Gateway HTTP API with payload format 2.0 (`version: "2.0"`,
    /// `requestContext.http.sourceIp`, a `requestContext.domainName` that is not a
    /// Function URL's).
    ApiGatewayV2,
    /// A Lambda Function URL: payload 2.0 whose `requestContext.domainName` is the URL's
    /// own host, `<url-id>.lambda-url.<region>.on.aws`. Its `X-Forwarded-For` is never
    /// read: see "Function URLs" in the `trueip::lambda` module docs.
    FunctionUrl,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 4] =
        [EventKind::Alb, EventKind::ApiGatewayV1, EventKind::ApiGatewayV2, EventKind::FunctionUrl];

    /// The kind of a payload 2.0 event whose `requestContext.domainName` is `domain`:
    /// [`FunctionUrl`](Self::FunctionUrl) when the host's second label is `lambda-url`
    /// (`<url-id>.lambda-url.<region>.on.aws`, the only host a Function URL has: it takes
    /// no custom domain, and answers 403 to a request whose `Host` is not its own, so a
    /// CloudFront distribution in front of it sends that host), else
    /// [`ApiGatewayV2`](Self::ApiGatewayV2).
    ///
    /// The suffix is not checked, so a host AWS might add under another one is still read
    /// as a Function URL's; an HTTP API custom domain spelled `x.lambda-url.example.com`
    /// is read so too, which costs it its `X-Forwarded-For` walk, never a forged answer.
    pub(crate) fn of_payload_v2(domain: &str) -> EventKind {
        // Bytes, not `split('.')`: this runs on every payload 2.0 event, and a splitter
        // costs more than the map lookup that found the host.
        const LABEL: &[u8] = b"lambda-url.";
        let domain = domain.as_bytes();
        let after_id = match domain.iter().position(|&b| b == b'.') {
            Some(dot) if dot > 0 => domain.get(dot + 1..).unwrap_or_default(),
            _ => return EventKind::ApiGatewayV2,
        };
        match after_id.get(..LABEL.len()) {
            Some(label) if label.eq_ignore_ascii_case(LABEL) && after_id.len() > LABEL.len() => {
                EventKind::FunctionUrl
            }
            _ => EventKind::ApiGatewayV2,
        }
    }

    /// The short name explanations use: `alb`, `api-gateway-v1`, `api-gateway-v2`,
    /// `function-url`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Alb => "alb",
            EventKind::ApiGatewayV1 => "api-gateway-v1",
            EventKind::ApiGatewayV2 => "api-gateway-v2",
            EventKind::FunctionUrl => "function-url",
        }
    }

    /// The field the peer stand-in comes from.
    pub fn stand_in_field(self) -> &'static str {
        match self {
            EventKind::Alb => "x-forwarded-for[-1]",
            EventKind::ApiGatewayV1 => "requestContext.identity.sourceIp",
            EventKind::ApiGatewayV2 | EventKind::FunctionUrl => "requestContext.http.sourceIp",
        }
    }

    /// Why the stand-in may be believed, for the first step of an explanation.
    pub(crate) fn stand_in_why(self) -> &'static str {
        match self {
            EventKind::Alb => {
                "only the ALB invokes its target; the address it appended to x-forwarded-for (the last element of the last line, which the ALB writes after the request's own) stands in for the peer"
            }
            EventKind::ApiGatewayV1 => {
                "requestContext.identity.sourceIp, the address API Gateway saw, stands in for the peer"
            }
            EventKind::ApiGatewayV2 => {
                "requestContext.http.sourceIp, the address API Gateway saw, stands in for the peer"
            }
            EventKind::FunctionUrl => {
                "requestContext.http.sourceIp, the address the Function URL saw, stands in for the peer (requestContext.domainName is a Function URL's host)"
            }
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Alb => "ALB target",
            EventKind::ApiGatewayV1 => "API Gateway REST (payload 1.0)",
            EventKind::ApiGatewayV2 => "API Gateway HTTP API (payload 2.0)",
            EventKind::FunctionUrl => "Lambda Function URL (payload 2.0)",
        })
    }
}

/// An API Gateway event's `X-Forwarded-For` as API Gateway writes it when the client sent
/// none: nothing in it is the client's text (docs/SECURITY.md, "AWS Lambda: what AWS
/// sends, and the evidence").
///
/// API Gateway appends after whatever the client wrote: a regional REST API or an HTTP
/// API the address it saw (`sourceIp`); an edge-optimized REST API the viewer its own
/// CloudFront edge saw (again `sourceIp`), then that edge. So a header whose elements are
/// `sourceIp` alone, or in a REST-shaped event `sourceIp` and one address after it, holds
/// nothing a client wrote: a client's text lands left of `sourceIp`. Any element left of
/// it, any element not an address, more lines than are kept, or an HTTP API's two
/// elements (an HTTP API behind a mutual-TLS domain was seen to write the address it saw
/// in place of the client's header, not after it, so what stands after `sourceIp` there
/// is not known to be AWS's) is not such a record, and is read or flagged as any header.
/// An HTTP API's payload 1.0 event is of the REST API's kind, so its `sourceIp, X` is
/// taken as the REST API's: no front end of AWS's was seen to leave a client's text right
/// of `sourceIp` there either, which is all a client could forge such a header by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrontEndRecord {
    /// `sourceIp` alone.
    SourceIp,
    /// `sourceIp`, then the edge of the CloudFront hop in front of an edge-optimized REST
    /// API.
    SourceIpThenEdge,
}

impl FrontEndRecord {
    /// The header of an event of `kind` whose stand-in is `stand_in`, if it is API
    /// Gateway's own record.
    pub(crate) fn of<H: crate::headers::Headers + ?Sized>(
        kind: EventKind,
        stand_in: crate::addr::Node,
        headers: &H,
    ) -> Option<FrontEndRecord> {
        // An ALB's stand-in is the header's own last element, so a match there says
        // nothing; a Function URL's header is never read.
        if !matches!(kind, EventKind::ApiGatewayV1 | EventKind::ApiGatewayV2) {
            return None;
        }
        let lines = crate::headers::Lines::read(headers, &crate::headers::names::X_FORWARDED_FOR);
        if lines.truncated {
            return None;
        }
        let is_stand_in = |entry: Option<crate::entry::Entry<'_>>| {
            matches!(entry, Some(crate::entry::Entry::Addr(node))
                if crate::addr::normalize(node.ip) == crate::addr::normalize(stand_in.ip)
                    && node.port.is_none_or(|port| Some(port) == stand_in.port))
        };
        let mut elements = crate::xff::Rev::new(lines.as_slice());
        let last = elements.next();
        if is_stand_in(last) {
            return elements.next().is_none().then_some(FrontEndRecord::SourceIp);
        }
        let edge_optimized = kind == EventKind::ApiGatewayV1
            && matches!(last, Some(crate::entry::Entry::Addr(_)))
            && is_stand_in(elements.next())
            && elements.next().is_none();
        edge_optimized.then_some(FrontEndRecord::SourceIpThenEdge)
    }

    /// Why the header is not read, for an explanation.
    pub(crate) fn why(self) -> &'static str {
        match self {
            FrontEndRecord::SourceIp => {
                "written by API Gateway: its one element is sourceIp, the address API Gateway saw; nothing a client sent, and no proxy is trusted: not read"
            }
            FrontEndRecord::SourceIpThenEdge => {
                "written by API Gateway: sourceIp, then the edge of the CloudFront hop in front of an edge-optimized API; nothing left of sourceIp, so nothing a client sent, and no proxy is trusted: not read"
            }
        }
    }
}
