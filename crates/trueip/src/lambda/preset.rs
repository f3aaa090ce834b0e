//! The policies for the common chains in front of a function.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;
use crate::policy::{Policy, PolicyBuilder, TrustSpec};
use crate::strategy::{Preset as Provider, StrategySpec};
use crate::trust::NamedSet;

/// A chain in front of a function, and the policy that is safe for it.
///
/// Each is an ordinary [`PolicyBuilder`], built from the strategies any policy uses;
/// add an origin secret or an IPv6 prefix before [`build`](PolicyBuilder::build). The
/// CloudFront chains need CloudFront's origin-facing ranges, loaded as everywhere else:
/// `.provider("cloudfront", ranges)` (see [`crate::providers::aws_ip_ranges`]); without
/// them `build` says how to load them.
///
/// A preset is for the events of its chain: the ALB one believes the last element of
/// `X-Forwarded-For` whoever stands in for the peer, which only an ALB event makes safe.
/// Decide with it through [`resolve_event`](super::resolve_event) (or
/// `resolve_request` with feature `lambda-http`) only: the [`Policy`] it builds is an
/// ordinary one, and [`Policy::resolve`] on a TCP connection (the same code run outside
/// Lambda, a test server) believes the last `X-Forwarded-For` element any client sends.
/// The Python package marks a preset's policy and decides a request without an event as if
/// no proxy were trusted (`python/src/lib.rs`, `EventOnly`); a Rust caller has no such
/// guard, and `trueip serve` takes no preset.
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
    /// distribution): the same policy as [`Preset::CloudfrontAlb`], since `sourceIp` is
    /// the CloudFront edge API Gateway saw. A request sent to the API directly answers
    /// with its `sourceIp`, headers ignored.
    CloudfrontApiGateway,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 4] = [
        Preset::Alb,
        Preset::CloudfrontAlb,
        Preset::ApiGateway,
        Preset::CloudfrontApiGateway,
    ];

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
            Preset::CloudfrontApiGateway => "CloudFront → API Gateway → Lambda",
        }
    }

    /// The policy, ready for more settings and [`build`](PolicyBuilder::build).
    pub fn builder(self) -> PolicyBuilder {
        match self {
            Preset::Alb => Policy::builder()
                .trust(TrustSpec::Named(NamedSet::Any))
                .strategy(StrategySpec::Hops(1)),
            Preset::CloudfrontAlb | Preset::CloudfrontApiGateway => {
                Policy::builder().strategy(StrategySpec::Preset(Provider::Cloudfront))
            }
            Preset::ApiGateway => Policy::builder(),
        }
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
                ConfigError::new(format!("unknown Lambda preset {text:?}"))
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
        let err = Preset::CloudfrontAlb
            .builder()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("cloudfront") && err.contains("FILE"), "{err}");
    }
}
