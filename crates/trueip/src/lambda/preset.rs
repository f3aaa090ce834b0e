//! The policies for the common chains in front of a function.

use std::fmt;
use std::str::FromStr;

use super::EventKind;
use crate::error::ConfigError;
use crate::policy::{Policy, PolicyBuilder, TrustSpec};
use crate::strategy::{Preset as Provider, StrategySpec};
use crate::trust::NamedSet;

/// A chain in front of a function, and the policy that is safe for it.
///
/// Each is a [`PolicyBuilder`] of the strategies any policy uses; add an origin secret or
/// an IPv6 prefix before [`build`](PolicyBuilder::build). The CloudFront chains need
/// CloudFront's origin-facing ranges, loaded as everywhere else:
/// `.provider("cloudfront", ranges)` (see [`crate::providers::aws_ip_ranges`]); without
/// them `build` says how to load them.
///
/// A preset is for the events of its chain: the ALB one believes the last element of
/// `X-Forwarded-For` whoever stands in for the peer, which only an ALB event makes safe.
/// So the [`Policy`] it builds decides as it reads only from the peer stand-in of an event
/// of one of its [`event_kinds`](Self::event_kinds) (the ALB preset's: ALB events; an API
/// Gateway or Function URL event is decided as if no proxy were trusted, its `sourceIp`
/// the client, flagged `no_lambda_event`):
/// [`resolve_event`](super::resolve_event), [`explain_event`](super::explain_event),
/// `resolve_request` and `explain_request` (feature `lambda-http`), and
/// [`ClientIpLayer`](crate::tower::ClientIpLayer) on a request `lambda_http::run` made from
/// an event. Any other decision ([`Policy::resolve`] or [`Policy::explain`] on a
/// connection, the layer under `axum::serve`, the actix middleware: the same code run
/// outside Lambda, a test server) is made as if no proxy were trusted: the peer is the
/// client, a forwarding header is flagged `header_from_untrusted_peer`, the result is
/// flagged `no_lambda_event`, and [`Policy::came_through_trusted_hop`] is false, so the
/// adapters withhold every client-IP header as from an untrusted peer. The first such
/// decision in a process logs [`without_event`](Self::without_event) (through `log`).
/// `trueip serve` takes no preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// ALB → Lambda: `hops:1` trusting `any`. The stand-in is the element the ALB
    /// appended (the last), so the client is that element, and entries left of it are
    /// flagged `spoof_attempt` — what `trueip serve` answers behind the same ALB.
    /// *Safe when* the ALB appends (`routing.http.xff_header_processing.mode = append`,
    /// the default). *Unsafe when* a CDN or proxy stands in front of the ALB: its
    /// address becomes every client's (use [`Preset::CloudfrontAlb`]).
    Alb,
    /// CloudFront → ALB → Lambda: the `cloudfront` strategy (`CloudFront-Viewer-Address`
    /// when the origin request policy forwards it, else `X-Forwarded-For` walked from the
    /// right through CloudFront's ranges). The stand-in is the CloudFront edge the ALB
    /// saw, so CloudFront's word counts only when the ALB's element is in its ranges: a
    /// request sent to the ALB directly answers with its sender, headers ignored.
    /// *Safe when* the ranges are current; an origin secret (a custom origin header,
    /// [`PolicyBuilder::origin_secret`]) shuts out other CloudFront distributions.
    CloudfrontAlb,
    /// API Gateway → Lambda, Function URL → Lambda: trust nothing; `sourceIp` is the
    /// client. Also right for an edge-optimized API, whose `sourceIp` is already the
    /// address before AWS's own CloudFront hop.
    ApiGateway,
    /// CloudFront → API Gateway → Lambda (a regional API or an HTTP API behind your
    /// distribution), and CloudFront → Function URL → Lambda: the same policy as
    /// [`Preset::CloudfrontAlb`], since `sourceIp` is the CloudFront edge the API or the
    /// URL saw. A request sent to the API or the URL directly answers with its
    /// `sourceIp`, headers ignored.
    ///
    /// Behind a Function URL, forward `CloudFront-Viewer-Address` in the origin request
    /// policy: the URL keeps only the first `X-Forwarded-For` value it received, the
    /// client's own text, so that header is never read in a Function URL event (see
    /// "Function URLs" in [the module docs](super)), and without `CloudFront-Viewer-Address`
    /// every client is the edge's address.
    CloudfrontApiGateway,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 4] =
        [Preset::Alb, Preset::CloudfrontAlb, Preset::ApiGateway, Preset::CloudfrontApiGateway];

    /// The preset's name: `alb`, `cloudfront-alb`, `api-gateway`, `cloudfront-api-gateway`.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Alb => "alb",
            Preset::CloudfrontAlb => "cloudfront-alb",
            Preset::ApiGateway => "api-gateway",
            Preset::CloudfrontApiGateway => "cloudfront-api-gateway",
        }
    }

    /// The chain, as the docs draw it.
    pub fn chain(self) -> &'static str {
        match self {
            Preset::Alb => "ALB → Lambda",
            Preset::CloudfrontAlb => "CloudFront → ALB → Lambda",
            Preset::ApiGateway => "API Gateway or Function URL → Lambda",
            Preset::CloudfrontApiGateway => "CloudFront → API Gateway or Function URL → Lambda",
        }
    }

    /// The policy, ready for more settings and [`build`](PolicyBuilder::build); it
    /// decides from an event's peer stand-in only (see [`Preset`]).
    pub fn builder(self) -> PolicyBuilder {
        let builder = Policy::builder().lambda_preset(self.name(), self.event_kinds());
        match self {
            Preset::Alb => {
                builder.trust(TrustSpec::Named(NamedSet::Any)).strategy(StrategySpec::Hops(1))
            }
            Preset::CloudfrontAlb | Preset::CloudfrontApiGateway => {
                builder.strategy(StrategySpec::Preset(Provider::Cloudfront))
            }
            Preset::ApiGateway => builder,
        }
    }

    /// The kinds of event whose peer stand-in this preset's trust rests on; its policy
    /// decides an event of another kind as if no proxy were trusted (flagged
    /// `no_lambda_event`), the address that event's front end saw being the client.
    ///
    /// The ALB preset trusts the last `X-Forwarded-For` element because the ALB appended
    /// it: [`EventKind::Alb`] only. In an API Gateway or Function URL event that element
    /// is not the front end's (a Function URL keeps only the first value the client sent),
    /// so the same function reached through a Function URL would believe a client's
    /// `X-Forwarded-For: 6.6.6.6`. The other presets trust by the stand-in's address (none,
    /// or CloudFront's ranges), which every kind's front end writes: every kind. (Whatever
    /// the preset, no policy reads a Function URL event's `X-Forwarded-For`.)
    pub fn event_kinds(self) -> &'static [EventKind] {
        match self {
            Preset::Alb => &[EventKind::Alb],
            Preset::CloudfrontAlb | Preset::ApiGateway | Preset::CloudfrontApiGateway => {
                &EventKind::ALL
            }
        }
    }

    /// The line logged the first time a policy from this preset decides a request that
    /// came without a Lambda event of its chain: the misuse and the fix. The Python package logs the
    /// same line to its `trueip` logger.
    pub fn without_event(self) -> String {
        crate::policy::without_event(self.name())
    }
}

impl Policy {
    /// The Lambda preset this policy was built from, if any: such a policy decides from an
    /// event's peer stand-in only (see [`Preset`]).
    pub fn lambda_preset(&self) -> Option<Preset> {
        let name = self.lambda_preset_name()?;
        Preset::ALL.into_iter().find(|preset| preset.name() == name)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        Preset::ALL
            .into_iter()
            .find(|preset| preset.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                ConfigError::new(format!("unknown Lambda preset \"{text}\""))
                    .hint(format!("use {}", Preset::ALL.map(Preset::name).join(", ")))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for preset in Preset::ALL {
            assert_eq!(preset.name().parse::<Preset>().unwrap(), preset);
            assert_eq!(preset.to_string(), preset.name());
        }
        let err = "nlb".parse::<Preset>().unwrap_err().to_string();
        assert!(err.contains("cloudfront-api-gateway"), "{err}");
    }

    #[test]
    fn cloudfront_presets_say_how_to_load_the_ranges() {
        let err = Preset::CloudfrontAlb.builder().build().unwrap_err().to_string();
        assert!(err.contains("cloudfront") && err.contains("FILE"), "{err}");
    }
}
