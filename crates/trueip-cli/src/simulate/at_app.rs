//! At the app: what the common ways of reading the client give on the request that
//! arrived, which of them are right, and the trueip policy to use — decided by the core's
//! own `Policy::resolve`, from a policy written as the TOML the user will copy.

use std::net::IpAddr;

use trueip::config::ClientIpConfig;
use trueip::{Cidr, Connection, Explanation};

use super::hops::{self, Run};
use super::model::{Kind, Part, RealIp, RealIpHeader, Request, Topology};

/// The address every forged header names in the attack run: TEST-NET-1.
pub(crate) const SENTINEL: &str = "192.0.2.66";

/// Every client-IP header an attacker tries at once (the attack run).
const ATTACK: &[&str] = &[
    "X-Forwarded-For",
    "X-Real-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Azure-ClientIP",
    "True-Client-IP",
    "X-Client-IP",
];

/// One way of reading the client.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Approach {
    pub(crate) name: String,
    /// What it gives; `None` when it has nothing to read.
    pub(crate) answer: Option<String>,
    /// The answer came from text the client wrote.
    pub(crate) forged: bool,
    /// It equals the expected client.
    pub(crate) right: bool,
    /// It stays right when the client forges every client-IP header.
    pub(crate) survives_forgery: bool,
}

/// The trueip policy for the app.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Recommended {
    /// The `[client_ip]` section.
    pub(crate) toml: String,
    /// Whether it finds the expected client, on this request and under forgery.
    pub(crate) right: bool,
    /// Why no policy can, when none can.
    pub(crate) problem: Option<String>,
    /// The core's explanation of its decision on the app's request.
    pub(crate) explanation: Explanation,
    #[serde(skip)]
    pub(crate) trusted: Vec<Cidr>,
    #[serde(skip)]
    pub(crate) proxy_protocol_from: Vec<Cidr>,
    #[serde(skip)]
    pub(crate) strategy: String,
}

/// What the app learns.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct AtApp {
    /// The address a right answer gives.
    pub(crate) expected: String,
    /// The hop that lost the client, if one did.
    pub(crate) lost_at: Option<usize>,
    pub(crate) approaches: Vec<Approach>,
    pub(crate) recommended: Recommended,
    /// ProxyFix's `x_for` for this chain, when some count finds the client.
    pub(crate) proxyfix_x_for: Option<usize>,
}

/// The topology with the client forging every client-IP header as [`SENTINEL`].
fn attacked(top: &Topology) -> Topology {
    let mut t = top.clone();
    t.client.forges = ATTACK.iter().map(|n| ((*n).to_string(), SENTINEL.to_string())).collect();
    t.client.query = top.client.query.as_ref().map(|q| {
        q.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}={SENTINEL}"),
                None => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    t
}

/// The ranges the app's side must trust: every hop after the client (or after the hop
/// that lost it) that the request is seen to come from, plus a GCP load balancer's
/// address, which it writes into X-Forwarded-For.
fn trusted_ranges(top: &Topology, run: &Run) -> Vec<Cidr> {
    let start = run.truth.lost_at.unwrap_or(0);
    let mut out: Vec<Cidr> = Vec::new();
    for hop in top.hops.iter().skip(start) {
        let mut add = |c: Cidr| {
            if !out.contains(&c) {
                out.push(c);
            }
        };
        if matches!(hop.kind, Kind::Nlb { preserve_client_ip: true, .. }) {
            continue;
        }
        add(hop.range);
        if let Kind::Gcp { lb_ip } = hop.kind {
            add(Cidr::host(lb_ip));
        }
    }
    out
}

fn quoted_list(items: &[String]) -> String {
    items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
}

/// The `[client_ip]` TOML of a candidate.
fn policy_toml(trusted: &[Cidr], pp: &[Cidr], strategy: &str) -> String {
    let strings = |v: &[Cidr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let mut t = format!(
        "[client_ip]\ntrusted = [{}]\nstrategy = {strategy:?}\n",
        quoted_list(&strings(trusted))
    );
    if !pp.is_empty() {
        t.push_str(&format!("proxy_protocol_from = [{}]\n", quoted_list(&strings(pp))));
    }
    t
}

#[derive(serde::Deserialize)]
struct Section {
    client_ip: ClientIpConfig,
}

/// The core's explanation of `request` under the policy `toml` (the text shown to the user).
fn explain(toml: &str, request: &Request) -> Result<Explanation, String> {
    let section: Section = toml::from_str(toml).map_err(|e| e.message().to_string())?;
    let policy = section
        .client_ip
        .build(&mut |name| Err(format!("no provider file {name}")))
        .map_err(|e| e.to_string())?;
    Ok(Explanation::new(&policy, &connection(request), &headers(request)))
}

pub(crate) fn connection(request: &Request) -> Connection {
    Connection {
        peer: request.peer.into(),
        proxy_source: request.proxy.as_ref().map(|p| p.source.into()),
        private_link: trueip::PrivateLink::default(),
    }
}

pub(crate) fn headers(request: &Request) -> Vec<(String, String)> {
    request.headers.iter().map(|l| (l.name.clone(), l.value.text())).collect()
}

fn same(answer: Option<&str>, expected: IpAddr) -> bool {
    answer
        .and_then(|a| trueip::addr::parse_node(a.as_bytes()).ok())
        .is_some_and(|n| n.ip == expected)
}

/// The plain readings: (name, answer and whether forged) on one request.
fn readings(request: &Request, trusted: &[Cidr], x_for: &[usize]) -> Vec<(String, Option<Part>)> {
    let xff = request.joined("X-Forwarded-For").map(|v| v.elements()).unwrap_or_default();
    let peer = Part::honest(request.peer.ip().to_string());
    let mut out = vec![
        ("peer (REMOTE_ADDR)".to_string(), Some(peer.clone())),
        ("first X-Forwarded-For entry".to_string(), xff.first().cloned()),
        ("last X-Forwarded-For entry".to_string(), xff.last().cloned()),
    ];
    for &n in x_for {
        // Werkzeug: values[-n] when there are at least n, else REMOTE_ADDR unchanged.
        let answer = match xff.len().checked_sub(n) {
            Some(i) => xff.get(i).cloned(),
            None => Some(peer.clone()),
        };
        out.push((format!("ProxyFix(x_for={n})"), answer));
    }
    for recursive in [false, true] {
        let realip = RealIp {
            from: trusted.to_vec(),
            header: RealIpHeader::Header("X-Forwarded-For".to_string()),
            recursive,
        };
        let peer_trusted = trusted.iter().any(|c| c.contains(request.peer.ip()));
        let answer = match request.joined("X-Forwarded-For") {
            Some(v) if peer_trusted => hops::nginx_realip(&v, &realip, peer.clone()),
            _ => peer.clone(),
        };
        out.push((
            format!("nginx realip, recursive {}", if recursive { "on" } else { "off" }),
            Some(answer),
        ));
    }
    out.push((
        "X-Real-IP".to_string(),
        request
            .joined("X-Real-IP")
            .map(|v| v.elements().into_iter().next().unwrap_or(Part::honest(""))),
    ));
    out
}

/// ProxyFix's count for this chain: the position from the right of the expected address
/// in the honest part of X-Forwarded-For.
fn x_for(request: &Request, expected: IpAddr) -> Option<usize> {
    let xff = request.joined("X-Forwarded-For")?.elements();
    let from_right = xff.iter().rev().position(|p| !p.forged && same(Some(&p.text), expected))?;
    Some(from_right + 1)
}

/// Every candidate policy is safe by construction (trust only this chain's hops, read
/// only what they write): rightmost-untrusted over X-Forwarded-For, then the single-address
/// headers this chain's hops set, then the peer. The first that is right on this request
/// and on the attacked one is recommended.
fn candidates(top: &Topology, app: &Request) -> Vec<String> {
    let mut out = vec!["rightmost-untrusted".to_string()];
    let headers = [
        "X-Real-IP",
        "CF-Connecting-IP",
        "X-Azure-ClientIP",
        "Fastly-Client-IP",
        "CloudFront-Viewer-Address",
    ];
    for h in headers {
        if app.lines(h).next().is_some() {
            out.push(format!("header:{h}"));
        }
    }
    let _ = top;
    out.push("peer".to_string());
    out
}

/// The analysis at the app.
pub(crate) fn analyse(top: &Topology, run: &Run) -> Result<AtApp, String> {
    let app = run.app().ok_or("the chain has no app")?;
    let attack = hops::run(&attacked(top))?;
    let attacked_app = attack.app().ok_or("the chain has no app")?;
    let expected = run.truth.expected;
    let trusted = trusted_ranges(top, run);
    let pp: Vec<Cidr> = match (&app.proxy, top.hops.last()) {
        (Some(_), Some(last)) => vec![last.range],
        _ => Vec::new(),
    };
    let count = x_for(app, expected);
    let mut counts = vec![1];
    if let Some(n) = count.filter(|&n| n != 1) {
        counts.push(n);
    }
    let now = readings(app, &trusted, &counts);
    let then = readings(attacked_app, &trusted, &counts);
    let approaches = now
        .into_iter()
        .zip(then)
        .map(|((name, answer), (_, attacked))| {
            let right = same(answer.as_ref().map(|p| p.text.as_str()), expected);
            Approach {
                name,
                forged: answer.as_ref().is_some_and(|p| p.forged),
                right: right && !answer.as_ref().is_some_and(|p| p.forged),
                survives_forgery: same(attacked.as_ref().map(|p| p.text.as_str()), expected),
                answer: answer.map(|p| p.text),
            }
        })
        .collect::<Vec<_>>();

    let mut first = None;
    let mut chosen = None;
    for strategy in candidates(top, app) {
        if trusted.is_empty() && strategy != "peer" {
            continue;
        }
        let toml = policy_toml(&trusted, &pp, &strategy);
        let e = explain(&toml, app)?;
        let under_attack = explain(&toml, attacked_app)?;
        let ok = same(e.client_ip.as_deref(), expected)
            && same(under_attack.client_ip.as_deref(), expected);
        if first.is_none() {
            first = Some((toml.clone(), e.clone(), strategy.clone()));
        }
        if ok {
            chosen = Some((toml, e, strategy));
            break;
        }
    }
    let (recommended, problem) = match (chosen, first) {
        (Some(c), _) => (c, None),
        (None, Some(f)) => (f, Some(no_policy_reason(top, run))),
        (None, None) => return Err("no candidate policy".to_string()),
    };
    let (toml, explanation, strategy) = recommended;
    let mut problem = problem;
    if let Some(at) = run.truth.lost_at {
        let hop = top.hops.get(at - 1).map_or("", |h| h.label.as_str());
        problem.get_or_insert(format!(
            "hop {at} `{hop}` hides the client: the app can know only {expected}; \
             carry the client past it (a PROXY header, or a header written before it)"
        ));
    }
    Ok(AtApp {
        expected: expected.to_string(),
        lost_at: run.truth.lost_at,
        approaches,
        recommended: Recommended {
            right: problem.is_none() || run.truth.lost_at.is_some(),
            toml,
            problem,
            explanation,
            trusted,
            proxy_protocol_from: pp,
            strategy,
        },
        proxyfix_x_for: count,
    })
}

/// Why no safe policy finds the client: the first hop after which the client's address
/// appears in nothing the app receives.
fn no_policy_reason(top: &Topology, run: &Run) -> String {
    let client = run.truth.expected.to_string();
    for (i, r) in run.received.iter().enumerate().skip(1) {
        let carried = r.request.peer.ip().to_string() == client
            || r.request.proxy.as_ref().is_some_and(|p| p.source.ip().to_string() == client)
            || r.request.headers.iter().any(|l| {
                l.value
                    .elements()
                    .iter()
                    .any(|p| !p.forged && same(Some(&p.text), run.truth.expected))
            });
        if !carried {
            let hop = top.hops.get(i - 1).map_or("", |h| h.label.as_str());
            return format!(
                "after hop {i} `{hop}` no header or PROXY header carries the client {client}: \
                 no policy at the app can find it; change hop {i}"
            );
        }
    }
    format!(
        "the client {client} reaches the app only in text the client could also have written: \
         make the hop in front of the app write it (X-Real-IP, an appended X-Forwarded-For)"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::super::topology::parse_line;
    use super::*;

    fn at_app(line: &str) -> AtApp {
        let top = parse_line(line).unwrap();
        let run = hops::run(&top).unwrap();
        analyse(&top, &run).unwrap()
    }

    fn approach<'a>(a: &'a AtApp, prefix: &str) -> &'a Approach {
        a.approaches
            .iter()
            .find(|x| x.name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no approach {prefix}"))
    }

    #[test]
    fn issue_chain_verdicts() {
        let a = at_app(
            r#"client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> cloudfront -> alb(append) -> nginx(realip 10.50.0.0/16) -> app"#,
        );
        assert_eq!(a.expected, "198.51.100.7");
        let first = approach(&a, "first X-Forwarded-For");
        assert_eq!(
            (first.answer.as_deref(), first.forged, first.right),
            (Some("1.2.3.4"), true, false)
        );
        let last = approach(&a, "last X-Forwarded-For");
        assert_eq!((last.answer.as_deref(), last.right), (Some("13.32.0.10"), false));
        let real = approach(&a, "X-Real-IP");
        assert_eq!((real.answer.as_deref(), real.right), (Some("13.32.0.10"), false));
        let on = approach(&a, "nginx realip, recursive on");
        assert!(on.right && on.survives_forgery, "{on:?}");
        assert_eq!(a.proxyfix_x_for, Some(3));
        let pf = approach(&a, "ProxyFix(x_for=3)");
        assert!(pf.right && pf.survives_forgery);
        assert!(a.recommended.right);
        assert_eq!(a.recommended.strategy, "rightmost-untrusted");
        assert_eq!(a.recommended.explanation.client_ip.as_deref(), Some("198.51.100.7"));
        assert!(a.recommended.explanation.warnings.contains(&"spoof_attempt"));
        assert!(
            a.recommended.toml.contains("trusted = [\"13.32.0.0/15\", \"10.50.0.0/16\"]"),
            "{}",
            a.recommended.toml
        );
    }

    #[test]
    fn x_real_ip_from_a_correct_nginx_is_recommended_when_xff_is_not_written() {
        let a = at_app(
            "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> alb(preserve) -> nginx(realip 10.50.0.0/16, x-real-ip) -> app",
        );
        // preserve: the ALB does not write the client, so nothing can find it.
        assert!(!a.recommended.right);
        assert!(
            a.recommended.problem.as_deref().unwrap().contains("hop 1 `alb(preserve)`"),
            "{:?}",
            a.recommended.problem
        );
        // The ALB's X-Forwarded-For reaches the app: the list walk finds the client first.
        let a = at_app(
            "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> alb -> nginx(realip 10.50.0.0/16, recursive, x-real-ip) -> app",
        );
        assert!(a.recommended.right);
        assert_eq!(a.recommended.strategy, "rightmost-untrusted");
        // nginx alone writes only X-Real-IP: the list holds nothing but forged text.
        let a = at_app(
            "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> nginx(x-real-ip) -> app",
        );
        assert!(a.recommended.right);
        assert_eq!(a.recommended.strategy, "header:X-Real-IP");
        assert!(!approach(&a, "nginx realip, recursive on").right);
    }

    #[test]
    fn fastly_client_ip_is_not_recommended_because_it_can_be_forged() {
        let a = at_app("client 198.51.100.7 -> fastly -> app");
        assert_eq!(a.recommended.strategy, "rightmost-untrusted");
        let a = at_app("client 198.51.100.7 -> cloudflare -> nginx(pass) -> app");
        assert!(a.recommended.right);
    }

    #[test]
    fn proxy_v2_at_the_app() {
        let a = at_app(
            "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> nlb(proxy-v2) -> app",
        );
        assert!(a.recommended.right, "{:?}", a.recommended.problem);
        assert!(a.recommended.toml.contains("proxy_protocol_from = [\"10.50.0.0/16\"]"));
        assert_eq!(a.recommended.explanation.source, "proxy-protocol");
    }

    #[test]
    fn nat_first_means_the_nat_is_the_best_answer() {
        let a = at_app("client 198.51.100.7 -> nat -> alb -> app");
        assert_eq!(a.expected, "203.0.113.1");
        assert_eq!(a.lost_at, Some(1));
        assert!(a.recommended.problem.as_deref().unwrap().contains("hop 1 `nat` hides the client"));
        assert_eq!(a.recommended.explanation.client_ip.as_deref(), Some("203.0.113.1"));
    }

    #[test]
    fn gcp_needs_its_load_balancer_address_trusted() {
        let a = at_app("client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> gcp -> app");
        assert!(a.recommended.right);
        assert!(a.recommended.toml.contains("34.120.0.10/32"));
        assert_eq!(a.proxyfix_x_for, Some(2));
    }

    #[test]
    fn api_gateway_that_believes_a_query_argument_is_never_right() {
        let a = at_app("client 198.51.100.7 query \"ip=1.2.3.4\" -> apigw(query ip) -> app");
        let real = approach(&a, "X-Real-IP");
        assert!(real.forged && !real.right);
        assert!(!a.recommended.right);
    }
}
