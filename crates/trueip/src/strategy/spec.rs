//! The strategies as config and the command line name them, and the one table that
//! describes them: `FromStr`, `Display`, the `--strategy` help and the README's policy
//! table all come from [`StrategySpec::TABLE`].

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;
use crate::headers::FieldName;
use crate::params::ParamName;

/// A strategy as written in config and on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrategySpec {
    /// `peer`: the TCP peer is the client; headers are ignored. The default.
    Peer,
    /// `rightmost-untrusted`: walk the list from the right, skipping trusted proxies.
    RightmostUntrusted,
    /// `rightmost`: the last element of the list, if the peer is trusted.
    Rightmost,
    /// `hops:N`: exactly N proxies in front; the client is the N-th element from the right.
    Hops(u16),
    /// `header:NAME`: a single-address header, honoured from trusted peers only.
    Header(FieldName),
    /// `query:NAME`: an address in a query argument, honoured from trusted peers only.
    Query(ParamName),
    /// `cookie:NAME`: an address in a cookie, honoured from trusted peers only.
    Cookie(ParamName),
    /// `leftmost`: the first element, as the client wrote it. For analytics only.
    Leftmost,
    /// A provider preset: sets the header and trust for that provider.
    Preset(Preset),
}

/// Provider presets: a provider's own client-address header, believed only when the
/// provider wrote it, or a list walked through the provider's ranges.
///
/// A preset's provider ranges are loaded by the caller (`--trust NAME=FILE`,
/// `[client_ip.providers]`), except Google's, which are built in. The strategy's trust
/// (the policy's `trusted`, or the strategy's own) names *your* proxies behind the
/// provider — an ALB, nginx — which relay its header and record the hop before them in
/// the policy's list header (X-Forwarded-For unless `from` says otherwise); the header
/// then counts when that recorded hop is in the provider's ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Amazon CloudFront: `CloudFront-Viewer-Address` (`ip:port`, sent when the origin
    /// request policy forwards it), written by CloudFront's origin-facing ranges
    /// (`CLOUDFRONT_ORIGIN_FACING` in AWS's `ip-ranges.json`); without it,
    /// `rightmost-untrusted` over X-Forwarded-For through those ranges and your proxies.
    /// The ranges serve every CloudFront customer: set an origin secret (a custom origin
    /// header such as `X-Origin-Verify`) so that only your distribution counts.
    Cloudfront,
    /// Cloudflare: `CF-Connecting-IP`, written by Cloudflare's published ranges
    /// (`ips-v4`, `ips-v6`). The ranges serve every Cloudflare customer: accept only
    /// authenticated origin pulls, or set an origin secret header in a Transform Rule.
    Cloudflare,
    /// Fastly: `Fastly-Client-IP`, written by Fastly's public IP list. Fastly keeps a
    /// `Fastly-Client-IP` the client sent unless the service overwrites it — in
    /// `vcl_recv`, `if (fastly.ff.visits_this_service == 0 && req.restarts == 0) { set
    /// req.http.Fastly-Client-IP = client.ip; }` — and its ranges serve every Fastly
    /// customer: set an origin secret header in the service too.
    Fastly,
    /// Fly.io: `Fly-Client-IP`, written by Fly's proxy, which reaches the app over Fly's
    /// private network: the writers are the strategy's trust, or `private` when none is
    /// given; the policy's trusted proxies relay it. Safe while the app is reachable only
    /// through Fly's proxy (no public service port of its own).
    Fly,
    /// AWS Application Load Balancer: `rightmost-untrusted` over X-Forwarded-For through
    /// the ALB's VPC ranges, which must be given as the strategy's trust. No header of
    /// its own and no shared ranges: the ALB's addresses are yours, so no origin secret
    /// is needed unless something else can reach the app from the VPC.
    AwsAlb,
    /// Google Cloud external Application Load Balancer: it appends the client and then
    /// its own forwarding-rule address, so the client is 2nd from the right (`hops:2`
    /// over X-Forwarded-For), from the Google Front End ranges (`35.191.0.0/16`,
    /// `130.211.0.0/22`, built in) and your proxies. The ranges serve every Google Cloud
    /// customer's load balancers: restrict the backend to your load balancer (serverless
    /// NEG, or an origin secret as a custom request header).
    GcpLb,
    /// Azure Front Door: `X-Azure-ClientIP`, written by the `AzureFrontDoor.Backend`
    /// ranges of Azure's service tags. The ranges serve every Front Door customer: pair it
    /// with an origin secret on `X-Azure-FDID`, your Front Door's id.
    AzureFrontDoor,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 7] = [
        Preset::Cloudfront,
        Preset::Cloudflare,
        Preset::Fastly,
        Preset::Fly,
        Preset::AwsAlb,
        Preset::GcpLb,
        Preset::AzureFrontDoor,
    ];

    /// The preset's name, which is also the name of its provider range list where it has one.
    pub fn name(self) -> &'static str {
        doc(Form::Preset(self)).name
    }

    /// The provider range list the preset reads, which the caller loads (from a file or
    /// the `trueip ranges` cache): `None` for presets whose trust is built in (`gcp-lb`)
    /// or given by the user (`fly`, `aws-alb`).
    pub fn ranges(self) -> Option<&'static str> {
        match self {
            Preset::Cloudfront => Some("cloudfront"),
            Preset::Cloudflare => Some("cloudflare"),
            Preset::Fastly => Some("fastly"),
            Preset::AzureFrontDoor => Some("azure-front-door"),
            Preset::Fly | Preset::AwsAlb | Preset::GcpLb => None,
        }
    }
}

/// One row of [`StrategySpec::TABLE`]: how a strategy is written, and when to use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrategyDoc {
    /// As `--strategy` and the config spell it; `hops:N`, `header:NAME`, `query:NAME` and
    /// `cookie:NAME` take an argument.
    pub name: &'static str,
    /// What it reads.
    pub reads: &'static str,
    /// Where it is used.
    pub deployment: &'static str,
    /// When its answer cannot be forged.
    pub safe_when: &'static str,
    /// One line, for `--help`.
    pub summary: &'static str,
    form: Form,
}

/// Which [`StrategySpec`] a row's name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Peer,
    RightmostUntrusted,
    Rightmost,
    Hops,
    Header,
    Query,
    Cookie,
    Leftmost,
    Preset(Preset),
}

impl StrategyDoc {
    /// The name up to its argument: `hops` of `hops:N`.
    fn keyword(&self) -> &'static str {
        self.name.split_once(':').map_or(self.name, |(keyword, _)| keyword)
    }

    fn takes_argument(&self) -> bool {
        self.name.contains(':')
    }
}

/// The row of `form`. Every form has one (a test checks), so the empty row is never seen.
fn doc(form: Form) -> &'static StrategyDoc {
    const NONE: StrategyDoc = StrategyDoc {
        name: "",
        reads: "",
        deployment: "",
        safe_when: "",
        summary: "",
        form: Form::Peer,
    };
    StrategySpec::TABLE.iter().find(|row| row.form == form).unwrap_or(&NONE)
}

impl StrategySpec {
    /// Every strategy and preset, in the order the help and the README list them.
    pub const TABLE: &'static [StrategyDoc] = &[
        StrategyDoc {
            name: "peer",
            reads: "nothing",
            deployment: "the app faces the internet (the default)",
            safe_when: "always",
            summary: "the TCP peer is the client, headers ignored (default without --trust)",
            form: Form::Peer,
        },
        StrategyDoc {
            name: "rightmost-untrusted",
            reads: "X-Forwarded-For or Forwarded, from the right, skipping trusted proxies",
            deployment: "nginx `$proxy_add_x_forwarded_for`, ALB, CloudFront → ALB → nginx",
            safe_when: "every proxy that appends is in the trust set (nginx `real_ip_recursive on`)",
            summary: "walk the list from the right, skip trusted proxies",
            form: Form::RightmostUntrusted,
        },
        StrategyDoc {
            name: "rightmost",
            reads: "the last list element",
            deployment: "exactly one appending proxy",
            safe_when: "one trusted proxy appends (nginx `real_ip_recursive off`)",
            summary: "the last element, if the peer is trusted",
            form: Form::Rightmost,
        },
        StrategyDoc {
            name: "hops:N",
            reads: "the N-th element from the right",
            deployment: "a fixed chain of N proxies (ProxyFix `x_for=N`, Envoy `xff_num_trusted_hops`)",
            safe_when: "the count is exact and every hop appends; fewer elements than N → the peer, flagged",
            summary: "exactly N proxies in front: N-th element from the right",
            form: Form::Hops,
        },
        StrategyDoc {
            name: "header:NAME",
            reads: "one address in one header line",
            deployment: "nginx `proxy_set_header X-Real-IP $remote_addr`, CDN headers",
            safe_when: "the trusted proxy always overwrites the header",
            summary: "a single-address header (X-Real-IP, CF-Connecting-IP...)",
            form: Form::Header,
        },
        StrategyDoc {
            name: "query:NAME",
            reads: "one address in one query argument, percent-decoded",
            deployment: "an API gateway that appends `?NAME=client` (APISIX `arg_NAME`)",
            safe_when: "the trusted gateway always overwrites the argument; `strip_client_source` keeps it from the app",
            summary: "a query argument set by a trusted gateway (?NAME=1.2.3.4)",
            form: Form::Query,
        },
        StrategyDoc {
            name: "cookie:NAME",
            reads: "one address in one cookie",
            deployment: "an API gateway or edge worker that sets a cookie (APISIX `cookie_NAME`)",
            safe_when: "the trusted gateway always overwrites the cookie; `strip_client_source` keeps it from the app",
            summary: "a cookie set by a trusted gateway (Cookie: NAME=1.2.3.4)",
            form: Form::Cookie,
        },
        StrategyDoc {
            name: "leftmost",
            reads: "the first element",
            deployment: "analytics only",
            safe_when: "never: always flagged `spoofable`",
            summary: "first element, client-written: spoofable, analytics only",
            form: Form::Leftmost,
        },
        StrategyDoc {
            name: "cloudfront",
            reads: "CloudFront-Viewer-Address, then XFF through CloudFront's origin-facing ranges",
            deployment: "CloudFront → origin",
            safe_when: "the origin only accepts CloudFront (or an origin secret is set)",
            summary: "CloudFront-Viewer-Address, else XFF through CloudFront",
            form: Form::Preset(Preset::Cloudfront),
        },
        StrategyDoc {
            name: "cloudflare",
            reads: "CF-Connecting-IP from Cloudflare's ranges",
            deployment: "Cloudflare → origin",
            safe_when: "the origin only accepts Cloudflare (or an origin secret is set)",
            summary: "CF-Connecting-IP from Cloudflare's ranges",
            form: Form::Preset(Preset::Cloudflare),
        },
        StrategyDoc {
            name: "fastly",
            reads: "Fastly-Client-IP from Fastly's ranges",
            deployment: "Fastly → origin",
            safe_when: "the service overwrites Fastly-Client-IP, and the origin only accepts Fastly (or an origin secret is set)",
            summary: "Fastly-Client-IP from Fastly's ranges",
            form: Form::Preset(Preset::Fastly),
        },
        StrategyDoc {
            name: "fly",
            reads: "Fly-Client-IP from Fly's proxies (your trust, or `private`)",
            deployment: "Fly.io",
            safe_when: "the app is only reachable through Fly's proxy",
            summary: "Fly-Client-IP from Fly's proxies",
            form: Form::Preset(Preset::Fly),
        },
        StrategyDoc {
            name: "aws-alb",
            reads: "XFF through your VPC ranges (required)",
            deployment: "ALB → app, Lambda behind ALB",
            safe_when: "the VPC ranges are given",
            summary: "X-Forwarded-For through the ALB's VPC ranges (--trust)",
            form: Form::Preset(Preset::AwsAlb),
        },
        StrategyDoc {
            name: "gcp-lb",
            reads: "the 2nd XFF element from the right, from Google Front Ends",
            deployment: "GCP external Application LB",
            safe_when: "the backend only accepts GFE ranges",
            summary: "2nd X-Forwarded-For element from the right, from GFEs",
            form: Form::Preset(Preset::GcpLb),
        },
        StrategyDoc {
            name: "azure-front-door",
            reads: "X-Azure-ClientIP from AzureFrontDoor.Backend ranges",
            deployment: "Azure Front Door",
            safe_when: "with an origin secret on `X-Azure-FDID`",
            summary: "X-Azure-ClientIP from Front Door's ranges",
            form: Form::Preset(Preset::AzureFrontDoor),
        },
    ];

    /// The `--strategy` help: one line per strategy, its name and summary.
    pub fn help() -> String {
        let mut out = String::new();
        for row in Self::TABLE {
            out.push_str(&format!("  {:<22}{}\n", row.name, row.summary));
        }
        out
    }

    fn form(&self) -> Form {
        match self {
            StrategySpec::Peer => Form::Peer,
            StrategySpec::RightmostUntrusted => Form::RightmostUntrusted,
            StrategySpec::Rightmost => Form::Rightmost,
            StrategySpec::Hops(_) => Form::Hops,
            StrategySpec::Header(_) => Form::Header,
            StrategySpec::Query(_) => Form::Query,
            StrategySpec::Cookie(_) => Form::Cookie,
            StrategySpec::Leftmost => Form::Leftmost,
            StrategySpec::Preset(preset) => Form::Preset(*preset),
        }
    }
}

/// The range `hops:N` accepts.
pub(crate) const HOPS: std::ops::RangeInclusive<u16> = 1..=64;

/// The error for a hop count outside [`HOPS`].
pub(crate) fn bad_hops(text: &str) -> ConfigError {
    ConfigError::new(format!("invalid hop count in strategy \"{text}\""))
        .hint("hops:N takes N from 1 to 64, the number of proxies in front of the app")
}

impl FromStr for StrategySpec {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let trimmed = text.trim();
        let (keyword, argument) = match trimmed.split_once(':') {
            Some((keyword, argument)) => (keyword, Some(argument)),
            None => (trimmed, None),
        };
        let row = Self::TABLE.iter().find(|row| {
            row.keyword().eq_ignore_ascii_case(keyword)
                && row.takes_argument() == argument.is_some()
        });
        let Some(row) = row else {
            let (fixed, presets): (Vec<_>, Vec<_>) =
                Self::TABLE.iter().partition(|row| !matches!(row.form, Form::Preset(_)));
            let names = |rows: Vec<&StrategyDoc>| {
                rows.iter().map(|row| row.name).collect::<Vec<_>>().join(", ")
            };
            return Err(ConfigError::new(format!("unknown strategy \"{text}\"")).hint(format!(
                "use {}, or a preset: {}",
                names(fixed),
                names(presets)
            )));
        };
        Ok(match (row.form, argument) {
            (Form::Hops, Some(n)) => match n.parse::<u16>() {
                Ok(n) if HOPS.contains(&n) => StrategySpec::Hops(n),
                _ => return Err(bad_hops(text)),
            },
            (Form::Header, Some(name)) => StrategySpec::Header(FieldName::new(name.trim())?),
            (Form::Query, Some(name)) => StrategySpec::Query(ParamName::new(name.trim())?),
            (Form::Cookie, Some(name)) => StrategySpec::Cookie(ParamName::new(name.trim())?),
            (Form::Peer, _) => StrategySpec::Peer,
            (Form::RightmostUntrusted, _) => StrategySpec::RightmostUntrusted,
            (Form::Rightmost, _) => StrategySpec::Rightmost,
            (Form::Leftmost, _) => StrategySpec::Leftmost,
            (Form::Preset(preset), _) => StrategySpec::Preset(preset),
            // A row takes an argument exactly when its name has one: matched above.
            (Form::Hops | Form::Header | Form::Query | Form::Cookie, None) => {
                return Err(ConfigError::new(format!("unknown strategy \"{text}\"")));
            }
        })
    }
}

impl fmt::Display for StrategySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = doc(self.form());
        match self {
            StrategySpec::Hops(n) => write!(f, "{}:{n}", row.keyword()),
            StrategySpec::Header(name) => write!(f, "{}:{name}", row.keyword()),
            StrategySpec::Query(name) | StrategySpec::Cookie(name) => {
                write!(f, "{}:{name}", row.keyword())
            }
            _ => f.write_str(row.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let mut names: Vec<String> = [
            "peer",
            "rightmost-untrusted",
            "rightmost",
            "hops:3",
            "header:x-real-ip",
            "query:client_ip",
            "cookie:Real-IP",
            "leftmost",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        names.extend(Preset::ALL.iter().map(|p| p.name().to_string()));
        for name in names {
            let spec: StrategySpec = name.parse().unwrap();
            assert_eq!(spec.to_string(), name);
        }
        assert_eq!(
            "Header:CF-Connecting-IP".parse::<StrategySpec>().unwrap().to_string(),
            "header:cf-connecting-ip"
        );
        for bad in [
            "hops:0",
            "hops:65",
            "hops:x",
            "header:",
            "header:bad name",
            "query:",
            "query:a=b",
            "cookie:a;b",
            "cookie",
            "nope",
        ] {
            let err = bad.parse::<StrategySpec>().unwrap_err().to_string();
            assert!(
                err.contains("hint") || err.contains("header name") || err.contains("cookie name"),
                "{bad}: {err}"
            );
        }
    }

    /// Every strategy has exactly one row, and every row parses to its strategy.
    #[test]
    fn the_table_covers_every_strategy_once() {
        let mut forms: Vec<Form> = [
            Form::Peer,
            Form::RightmostUntrusted,
            Form::Rightmost,
            Form::Hops,
            Form::Header,
            Form::Query,
            Form::Cookie,
            Form::Leftmost,
        ]
        .into();
        forms.extend(Preset::ALL.map(Form::Preset));
        let rows: Vec<Form> = StrategySpec::TABLE.iter().map(|row| row.form).collect();
        assert_eq!(rows, forms);
        for row in StrategySpec::TABLE {
            let written = row.name.replace(":NAME", ":x-real-ip").replace(":N", ":2");
            let spec: StrategySpec = written.parse().unwrap();
            assert_eq!(spec.form(), row.form, "{}", row.name);
            assert_eq!(spec.to_string(), written);
        }
    }

    #[test]
    fn unknown_names_list_every_strategy() {
        let err = "nope".parse::<StrategySpec>().unwrap_err().to_string();
        assert!(
            err.contains(
                "use peer, rightmost-untrusted, rightmost, hops:N, header:NAME, query:NAME, \
                 cookie:NAME, leftmost, \
                 or a preset: cloudfront, cloudflare, fastly, fly, aws-alb, gcp-lb, azure-front-door"
            ),
            "{err}"
        );
    }
}
