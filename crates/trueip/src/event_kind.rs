//! The kinds of AWS Lambda event trueip reads (feature `lambda`), apart from the reading
//! (`crate::lambda`): the policy decides by kind which events a preset's trust rests on.

use std::fmt;

/// The kinds of event trueip reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// An Application Load Balancer target event (`requestContext.elb`).
    Alb,
    /// API Gateway REST API, HTTP API with payload format 1.0, or WebSocket API
    /// (`requestContext.identity.sourceIp`).
    ApiGatewayV1,
    /// API Gateway HTTP API with payload format 2.0, or a Lambda Function URL
    /// (`version: "2.0"`, `requestContext.http.sourceIp`).
    ApiGatewayV2,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 3] = [
        EventKind::Alb,
        EventKind::ApiGatewayV1,
        EventKind::ApiGatewayV2,
    ];

    /// The short name explanations use: `alb`, `api-gateway-v1`, `api-gateway-v2`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Alb => "alb",
            EventKind::ApiGatewayV1 => "api-gateway-v1",
            EventKind::ApiGatewayV2 => "api-gateway-v2",
        }
    }

    /// The field the peer stand-in comes from.
    pub fn stand_in_field(self) -> &'static str {
        match self {
            EventKind::Alb => "x-forwarded-for[-1]",
            EventKind::ApiGatewayV1 => "requestContext.identity.sourceIp",
            EventKind::ApiGatewayV2 => "requestContext.http.sourceIp",
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
                "requestContext.http.sourceIp, the address API Gateway or the Function URL saw, stands in for the peer"
            }
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Alb => "ALB target",
            EventKind::ApiGatewayV1 => "API Gateway REST (payload 1.0)",
            EventKind::ApiGatewayV2 => "API Gateway HTTP API or Function URL (payload 2.0)",
        })
    }
}
