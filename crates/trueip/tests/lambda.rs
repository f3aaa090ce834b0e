//! Lambda events, shaped as AWS documents them (`tests/lambda_events/`), through
//! `trueip::lambda`: every kind, single- and multi-value headers, names in any case,
//! forged first entries, missing headers, IPv6 `sourceIp`, and malformed events.

#![cfg(feature = "lambda")]
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

use proptest::prelude::*;
use serde_json::{Value, json};
use trueip::lambda::{self, EventError, EventKind, Preset};
use trueip::{Connection, Policy, Source, Warnings};

mod lambda_support;
use lambda_support::{event, policy, set, vpc_event, vpc_policy};

fn xff_of(event: Value, xff: &str) -> Value {
    set(event, "/headers/x-forwarded-for", Some(json!(xff)))
}

struct Case {
    name: &'static str,
    event: Value,
    preset: Preset,
    kind: EventKind,
    client: &'static str,
    source: &'static str,
    warnings: &'static [Warnings],
}

fn cases() -> Vec<Case> {
    let alb = event("alb");
    let v1 = event("api_gateway_v1");
    let v2 = event("api_gateway_v2");
    let url = event("function_url");
    vec![
        Case {
            name: "alb: the story, forged first entries: the ALB's element, spoof flagged",
            event: alb.clone(),
            preset: Preset::Alb,
            kind: EventKind::Alb,
            client: "150.172.238.178",
            source: "x-forwarded-for[-1]",
            warnings: &[Warnings::SPOOF_ATTEMPT],
        },
        Case {
            name: "alb: multiValueHeaders, the list on two lines: the last element of the last line",
            event: event("alb_multi"),
            preset: Preset::Alb,
            kind: EventKind::Alb,
            client: "150.172.238.178",
            source: "x-forwarded-for[-1]",
            warnings: &[Warnings::SPOOF_ATTEMPT],
        },
        Case {
            name: "alb: the shape a real ALB sent: the client's line untouched, the ALB's after it",
            event: event("alb_multi_observed"),
            preset: Preset::Alb,
            kind: EventKind::Alb,
            client: "198.51.100.9",
            source: "x-forwarded-for[-1]",
            warnings: &[Warnings::SPOOF_ATTEMPT],
        },
        Case {
            name: "alb: one entry, nothing forged",
            event: xff_of(alb.clone(), "150.172.238.178"),
            preset: Preset::Alb,
            kind: EventKind::Alb,
            client: "150.172.238.178",
            source: "x-forwarded-for[-1]",
            warnings: &[],
        },
        Case {
            name: "alb: header name in capitals",
            event: set(
                set(alb.clone(), "/headers/x-forwarded-for", None),
                "/headers/X-Forwarded-For",
                Some(json!("6.6.6.6, 150.172.238.178")),
            ),
            preset: Preset::Alb,
            kind: EventKind::Alb,
            client: "150.172.238.178",
            source: "x-forwarded-for[-1]",
            warnings: &[Warnings::SPOOF_ATTEMPT],
        },
        Case {
            name: "alb: the client port the ALB appends with routing.http.xff_client_port.enabled",
            event: xff_of(alb.clone(), "150.172.238.178:51234"),
            preset: Preset::Alb,
            kind: EventKind::Alb,
            client: "150.172.238.178:51234",
            source: "x-forwarded-for[-1]",
            warnings: &[],
        },
        Case {
            name: "alb: IPv6 client",
            event: xff_of(alb.clone(), "2001:db8::5"),
            preset: Preset::Alb,
            kind: EventKind::Alb,
            client: "2001:db8::5",
            source: "x-forwarded-for[-1]",
            warnings: &[],
        },
        Case {
            name: "alb, trust nothing: the address the ALB saw; the rest came from it",
            event: alb.clone(),
            preset: Preset::ApiGateway,
            kind: EventKind::Alb,
            client: "150.172.238.178",
            source: "peer",
            warnings: &[Warnings::UNTRUSTED_HEADER],
        },
        Case {
            name: "cloudfront-alb: CloudFront appended the client, the ALB the edge",
            event: xff_of(alb.clone(), "198.51.100.7, 130.176.12.9"),
            preset: Preset::CloudfrontAlb,
            kind: EventKind::Alb,
            client: "198.51.100.7",
            source: "x-forwarded-for[-2]",
            warnings: &[],
        },
        Case {
            name: "cloudfront-alb: forged first entry through CloudFront",
            event: xff_of(alb.clone(), "1.2.3.4, 198.51.100.7, 130.176.12.9"),
            preset: Preset::CloudfrontAlb,
            kind: EventKind::Alb,
            client: "198.51.100.7",
            source: "x-forwarded-for[-2]",
            warnings: &[Warnings::SPOOF_ATTEMPT],
        },
        Case {
            name: "cloudfront-alb: sent to the ALB directly, CloudFront's headers forged: the sender",
            event: set(
                xff_of(alb.clone(), "198.51.100.7, 130.176.12.9, 203.0.113.66"),
                "/headers/cloudfront-viewer-address",
                Some(json!("198.51.100.7:443")),
            ),
            preset: Preset::CloudfrontAlb,
            kind: EventKind::Alb,
            client: "203.0.113.66",
            source: "peer",
            warnings: &[Warnings::UNTRUSTED_HEADER],
        },
        Case {
            name: "cloudfront-alb: CloudFront-Viewer-Address from the edge the ALB saw",
            event: set(
                xff_of(alb.clone(), "1.2.3.4, 198.51.100.7, 130.176.12.9"),
                "/headers/cloudfront-viewer-address",
                Some(json!("198.51.100.7:50123")),
            ),
            preset: Preset::CloudfrontAlb,
            kind: EventKind::Alb,
            client: "198.51.100.7:50123",
            source: "cloudfront-viewer-address",
            warnings: &[],
        },
        Case {
            name: "v1, edge-optimized: sourceIp is the client, AWS's CloudFront hop already walked; X-Forwarded-For API Gateway's own",
            event: v1.clone(),
            preset: Preset::ApiGateway,
            kind: EventKind::ApiGatewayV1,
            client: "52.255.255.12",
            source: "peer",
            warnings: &[],
        },
        Case {
            name: "v1: a forged X-Forwarded-For does not move sourceIp",
            event: set(
                set(v1.clone(), "/multiValueHeaders/X-Forwarded-For", Some(json!(["1.2.3.4"]))),
                "/headers/X-Forwarded-For",
                Some(json!("1.2.3.4")),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::ApiGatewayV1,
            client: "52.255.255.12",
            source: "peer",
            warnings: &[Warnings::UNTRUSTED_HEADER],
        },
        Case {
            name: "v1, cloudfront-api-gateway: sourceIp an edge, two lines in multiValueHeaders, the last in headers",
            event: set(
                set(
                    set(
                        v1.clone(),
                        "/multiValueHeaders/X-Forwarded-For",
                        Some(json!(["1.2.3.4, 198.51.100.7", "198.51.100.7, 130.176.91.14"])),
                    ),
                    "/headers/X-Forwarded-For",
                    Some(json!("198.51.100.7, 130.176.91.14")),
                ),
                "/requestContext/identity/sourceIp",
                Some(json!("130.176.91.14")),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::ApiGatewayV1,
            client: "198.51.100.7",
            source: "x-forwarded-for[-2]",
            warnings: &[],
        },
        Case {
            name: "v1: headers and multiValueHeaders null",
            event: set(
                set(v1.clone(), "/headers", Some(Value::Null)),
                "/multiValueHeaders",
                Some(Value::Null),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::ApiGatewayV1,
            client: "52.255.255.12",
            source: "peer",
            warnings: &[],
        },
        Case {
            name: "v2: sourceIp; X-Forwarded-For API Gateway's own",
            event: v2.clone(),
            preset: Preset::ApiGateway,
            kind: EventKind::ApiGatewayV2,
            client: "205.255.255.176",
            source: "peer",
            warnings: &[],
        },
        Case {
            name: "v2: no x-forwarded-for",
            event: set(v2.clone(), "/headers/x-forwarded-for", None),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::ApiGatewayV2,
            client: "205.255.255.176",
            source: "peer",
            warnings: &[],
        },
        Case {
            name: "v2, cloudfront-api-gateway: forged first entry, the edge appended by API Gateway",
            event: set(
                xff_of(v2.clone(), "10.1.1.1, 198.51.100.7, 130.176.3.3"),
                "/requestContext/http/sourceIp",
                Some(json!("130.176.3.3")),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::ApiGatewayV2,
            client: "198.51.100.7",
            source: "x-forwarded-for[-2]",
            warnings: &[Warnings::SPOOF_ATTEMPT],
        },
        Case {
            name: "v2, cloudfront-api-gateway: IPv6 edge, IPv6 client",
            event: set(
                xff_of(v2.clone(), "2001:db8::9, 2600:9000:5:1::7"),
                "/requestContext/http/sourceIp",
                Some(json!("2600:9000:5:1::7")),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::ApiGatewayV2,
            client: "2001:db8::9",
            source: "x-forwarded-for[-2]",
            warnings: &[],
        },
        Case {
            name: "v2, cloudfront-api-gateway: an HTTP API under a custom domain walks as before",
            event: set(
                set(
                    xff_of(v2.clone(), "10.1.1.1, 198.51.100.7, 130.176.3.3"),
                    "/requestContext/http/sourceIp",
                    Some(json!("130.176.3.3")),
                ),
                "/requestContext/domainName",
                Some(json!("api.example.com")),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::ApiGatewayV2,
            client: "198.51.100.7",
            source: "x-forwarded-for[-2]",
            warnings: &[Warnings::SPOOF_ATTEMPT],
        },
        // A Function URL writes its own x-forwarded-for (the first value it received, or
        // sourceIp): never read, so never flagged as from an untrusted peer either.
        Case {
            name: "function url: IPv6 sourceIp",
            event: url.clone(),
            preset: Preset::ApiGateway,
            kind: EventKind::FunctionUrl,
            client: "2001:db8:85a3:8d3:1319:8a2e:370:7348",
            source: "peer",
            warnings: &[],
        },
        Case {
            name: "function url: IPv4-mapped sourceIp is the IPv4 address",
            event: set(
                url.clone(),
                "/requestContext/http/sourceIp",
                Some(json!("::ffff:192.0.2.44")),
            ),
            preset: Preset::ApiGateway,
            kind: EventKind::FunctionUrl,
            client: "192.0.2.44",
            source: "peer",
            warnings: &[],
        },
        Case {
            name: "function url, direct, forged x-forwarded-for: sourceIp",
            event: xff_of(url.clone(), "6.6.6.6"),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::FunctionUrl,
            client: "2001:db8:85a3:8d3:1319:8a2e:370:7348",
            source: "peer",
            warnings: &[],
        },
        Case {
            name: "function url behind cloudfront, forged x-forwarded-for (all the URL kept): the edge, never the forgery",
            event: set(
                xff_of(url.clone(), "6.6.6.6"),
                "/requestContext/http/sourceIp",
                Some(json!("130.176.3.3")),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::FunctionUrl,
            client: "130.176.3.3",
            source: "peer",
            warnings: &[Warnings::XFF_NOT_KEPT],
        },
        Case {
            name: "function url behind cloudfront, cloudfront-alb preset: the edge, never the forgery",
            event: set(
                xff_of(url.clone(), "6.6.6.6"),
                "/requestContext/http/sourceIp",
                Some(json!("2600:9000:5:1::7")),
            ),
            preset: Preset::CloudfrontAlb,
            kind: EventKind::FunctionUrl,
            client: "2600:9000:5:1::7",
            source: "peer",
            warnings: &[Warnings::XFF_NOT_KEPT],
        },
        Case {
            name: "function url behind cloudfront: CloudFront-Viewer-Address, which the edge overwrites",
            event: set(
                set(
                    xff_of(url.clone(), "6.6.6.6"),
                    "/requestContext/http/sourceIp",
                    Some(json!("130.176.3.3")),
                ),
                "/headers/cloudfront-viewer-address",
                Some(json!("198.51.100.7:50123")),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::FunctionUrl,
            client: "198.51.100.7:50123",
            source: "cloudfront-viewer-address",
            warnings: &[Warnings::XFF_NOT_KEPT],
        },
        Case {
            name: "function url, direct, CloudFront-Viewer-Address forged: sourceIp, flagged",
            event: set(
                url.clone(),
                "/headers/cloudfront-viewer-address",
                Some(json!("198.51.100.7:50123")),
            ),
            preset: Preset::CloudfrontApiGateway,
            kind: EventKind::FunctionUrl,
            client: "2001:db8:85a3:8d3:1319:8a2e:370:7348",
            source: "peer",
            warnings: &[Warnings::UNTRUSTED_HEADER],
        },
        Case {
            name: "websocket $connect: no version, requestContext.identity: sourceIp",
            event: event("api_gateway_websocket"),
            preset: Preset::ApiGateway,
            kind: EventKind::ApiGatewayV1,
            client: "192.0.2.1",
            source: "peer",
            warnings: &[Warnings::UNTRUSTED_HEADER],
        },
        Case {
            name: "websocket message: no headers at all, sourceIp",
            event: set(
                set(
                    set(event("api_gateway_websocket"), "/headers", None),
                    "/multiValueHeaders",
                    None,
                ),
                "/requestContext/eventType",
                Some(json!("MESSAGE")),
            ),
            preset: Preset::ApiGateway,
            kind: EventKind::ApiGatewayV1,
            client: "192.0.2.1",
            source: "peer",
            warnings: &[],
        },
    ]
}

#[test]
fn every_kind_resolves_as_documented() {
    for case in cases() {
        let policy = policy(case.preset);
        let parsed =
            lambda::Event::parse(&case.event).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(parsed.kind(), case.kind, "{}", case.name);
        let resolution = lambda::resolve_event(&policy, &case.event).unwrap();
        assert_eq!(resolution.client.to_string(), case.client, "{}", case.name);
        assert_eq!(policy.describe_source(&resolution), case.source, "{}", case.name);
        let expected = case.warnings.iter().fold(Warnings::NONE, |all, w| all | *w);
        assert_eq!(resolution.warnings, expected, "{}", case.name);
        // The explanation is the same decision, its first step the stand-in.
        let explanation = lambda::explain_event(&policy, &case.event).unwrap();
        assert_eq!(explanation.resolution, resolution, "{}", case.name);
        assert_eq!(explanation.steps[0].subject, case.kind.name(), "{}", case.name);
        assert_eq!(explanation.peer, parsed.peer().to_string(), "{}", case.name);
    }
}

#[test]
fn the_alb_story_explained() {
    let explanation = lambda::explain_event(&policy(Preset::Alb), &event("alb")).unwrap();
    assert_eq!(explanation.client_ip.as_deref(), Some("150.172.238.178"));
    assert_eq!(explanation.chain, ["203.0.113.195", "70.41.3.18", "150.172.238.178"]);
    assert_eq!(explanation.warnings, ["spoof_attempt"]);
    let text = explanation.to_string();
    assert!(text.contains("only the ALB invokes its target"), "{text}");
}

/// A forged `X-Forwarded-For` and `X-Real-IP`, and what an honest ALB would have appended.
const FORGED: &[(&str, &str)] =
    &[("X-Forwarded-For", "6.6.6.6, 150.172.238.178"), ("X-Real-IP", "6.6.6.6")];

#[test]
fn a_preset_policy_over_a_connection_trusts_no_proxy() {
    // The same code run outside Lambda: a TCP peer sends the ALB's header itself. Before
    // the core had the rule, `Preset::Alb` through `Policy::resolve` answered
    // 150.172.238.178, the last element the client wrote.
    let peer: std::net::SocketAddr = "198.51.100.20:41000".parse().unwrap();
    let conn = Connection::from_peer(peer);
    for preset in Preset::ALL {
        let policy = policy(preset);
        assert_eq!(policy.lambda_preset(), Some(preset));
        for resolution in [policy.resolve(&conn, FORGED), policy.explain(&conn, FORGED).0] {
            assert_eq!(resolution.client.to_string(), "198.51.100.20:41000", "{preset}");
            assert_eq!(resolution.source, Source::Peer, "{preset}");
            assert_eq!(
                resolution.warnings,
                Warnings::UNTRUSTED_HEADER | Warnings::NO_LAMBDA_EVENT,
                "{preset}"
            );
            assert_eq!(resolution.strategy, None, "{preset}");
            assert!(!policy.came_through_trusted_hop(&resolution), "{preset}");
            assert!(matches!(policy.hop(&resolution), trueip::headers::Hop::Untrusted), "{preset}");
        }
        // Exactly what a policy that trusts no one decides, but for the flag saying why.
        let mut untrusted = Policy::default().resolve(&conn, FORGED);
        untrusted.warnings.insert(Warnings::NO_LAMBDA_EVENT);
        assert_eq!(policy.resolve(&conn, FORGED), untrusted, "{preset}");
        let (_, steps) = policy.explain(&conn, FORGED);
        assert_eq!(steps[0].subject, "lambda-preset", "{preset}");
        assert_eq!(steps[0].value, preset.name(), "{preset}");
    }
}

#[test]
fn a_preset_policy_stays_event_only_with_more_settings() {
    let peer: std::net::SocketAddr = "198.51.100.20:41000".parse().unwrap();
    let policy = Preset::Alb
        .builder()
        .ipv6_prefix(48)
        .proxy_protocol_from(trueip::TrustSpec::Named(trueip::NamedSet::Any))
        .build()
        .unwrap();
    let mut conn = Connection::from_peer(peer);
    conn.proxy_source = Some("150.172.238.178:1".parse::<std::net::SocketAddr>().unwrap().into());
    let resolution = policy.resolve(&conn, FORGED);
    assert_eq!(resolution.client.to_string(), "198.51.100.20:41000");
    assert!(resolution.warnings.contains(Warnings::NO_LAMBDA_EVENT));
    assert!(resolution.warnings.contains(Warnings::UNTRUSTED_PROXY_PROTOCOL));
    // A policy the caller writes out the same way is an ordinary one.
    let written = Policy::builder()
        .trust_str("any")
        .unwrap()
        .strategy_str("hops:1")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(written.lambda_preset(), None);
    assert_eq!(
        written.resolve(&Connection::from_peer(peer), FORGED).client.to_string(),
        "150.172.238.178"
    );
}

#[test]
fn a_preset_policy_decides_from_the_event_as_it_reads() {
    // The ALB's element, unchanged, and a hop the adapters trust.
    let policy = policy(Preset::Alb);
    let alb = xff_of(event("alb"), "6.6.6.6, 150.172.238.178");
    let resolution = lambda::resolve_event(&policy, &alb).unwrap();
    assert_eq!(resolution.client.to_string(), "150.172.238.178");
    assert_eq!(resolution.warnings, Warnings::SPOOF_ATTEMPT);
    assert!(policy.came_through_trusted_hop(&resolution));
    let explanation = lambda::explain_event(&policy, &alb).unwrap();
    assert_eq!(explanation.resolution, resolution);
    assert!(explanation.steps.iter().all(|s| s.subject != "lambda-preset"));
}

/// The ALB preset trusts the last `X-Forwarded-For` element because an ALB appended it. A
/// Function URL keeps only the first value a client sent, and API Gateway appends after
/// the client's text (behind its own CloudFront hop for an edge-optimized REST API), so in
/// their events that element is not the front end's. Before the preset named the kinds of
/// its chain, a client of the same function's Function URL that sent
/// `X-Forwarded-For: 6.6.6.6` was 6.6.6.6, and the REST API event answered AWS's
/// CloudFront hop, 130.176.91.14.
#[test]
fn the_alb_preset_decides_another_kinds_event_as_if_no_proxy_were_trusted() {
    let alb = policy(Preset::Alb);
    assert_eq!(Preset::Alb.event_kinds(), &[EventKind::Alb]);
    for (name, event, source_ip) in [
        (
            "function_url",
            xff_of(event("function_url"), "6.6.6.6"),
            "2001:db8:85a3:8d3:1319:8a2e:370:7348",
        ),
        ("api_gateway_v2", xff_of(event("api_gateway_v2"), "6.6.6.6"), "205.255.255.176"),
        ("api_gateway_v1", event("api_gateway_v1"), "52.255.255.12"),
    ] {
        let resolution = lambda::resolve_event(&alb, &event).unwrap();
        assert_eq!(resolution.client.to_string(), source_ip, "{name}");
        assert_eq!(resolution.source, Source::Peer, "{name}");
        assert!(resolution.warnings.contains(Warnings::NO_LAMBDA_EVENT), "{name}");
        assert!(!alb.came_through_trusted_hop(&resolution), "{name}");
        // What the API Gateway preset, which trusts no one, answers, but for the flag.
        let mut untrusted = lambda::resolve_event(&policy(Preset::ApiGateway), &event).unwrap();
        untrusted.warnings.insert(Warnings::NO_LAMBDA_EVENT);
        assert_eq!(resolution, untrusted, "{name}");
        let explanation = lambda::explain_event(&alb, &event).unwrap();
        assert_eq!(explanation.resolution, resolution, "{name}");
        assert!(explanation.steps.iter().any(|step| step.subject == "lambda-preset"), "{name}");
    }
    // Every other preset trusts by the stand-in's address, which every kind's front end
    // writes: an event of any kind is decided as it reads.
    for preset in [Preset::CloudfrontAlb, Preset::ApiGateway, Preset::CloudfrontApiGateway] {
        assert_eq!(preset.event_kinds(), &EventKind::ALL, "{preset}");
        for name in ["alb", "api_gateway_v1", "api_gateway_v2", "function_url"] {
            let resolution = lambda::resolve_event(&policy(preset), &event(name)).unwrap();
            assert!(!resolution.warnings.contains(Warnings::NO_LAMBDA_EVENT), "{preset} {name}");
        }
    }
}

/// A Function URL keeps only the first `X-Forwarded-For` value it received (reported by
/// <https://speedrun.nobackspacecrew.com/blog/2026/03/06/obtaining-caller-ip-address-with-lambda-furls.html>):
/// behind CloudFront, the client's own text. Before Function URL events were told from
/// HTTP API ones, every policy that trusts CloudFront walked it: a client of CloudFront
/// → Function URL that sent `X-Forwarded-For: 6.6.6.6` was 6.6.6.6.
#[test]
fn a_function_url_event_never_has_its_x_forwarded_for_read() {
    let through_cloudfront = set(
        xff_of(event("function_url"), "6.6.6.6"),
        "/requestContext/http/sourceIp",
        Some(json!("130.176.3.3")),
    );
    // Whatever the policy trusts and however it walks.
    let mut policies: Vec<(String, Policy)> =
        Preset::ALL.iter().map(|preset| (preset.to_string(), policy(*preset))).collect();
    for strategy in ["rightmost-untrusted", "hops:1", "leftmost", "rightmost"] {
        let custom = Policy::builder()
            .trust_str("any")
            .unwrap()
            .strategy_str(strategy)
            .unwrap()
            .build()
            .unwrap();
        policies.push((format!("trust any, {strategy}"), custom));
    }
    for (name, policy) in &policies {
        let resolution = lambda::resolve_event(policy, &through_cloudfront).unwrap();
        assert_eq!(resolution.client.to_string(), "130.176.3.3", "{name}");
        assert_eq!(resolution.source, Source::Peer, "{name}");
        let explanation = lambda::explain_event(policy, &through_cloudfront).unwrap();
        assert_eq!(explanation.resolution, resolution, "{name}");
        assert_eq!(explanation.steps[0].subject, "function-url", "{name}");
        let ignored = explanation
            .steps
            .iter()
            .find(|step| step.subject == "x-forwarded-for")
            .unwrap_or_else(|| panic!("{name}: {:?}", explanation.steps));
        assert_eq!(ignored.value, "6.6.6.6", "{name}");
        assert!(ignored.why.contains("Function URL"), "{name}: {}", ignored.why);
    }
    // The same headers in an HTTP API event are a list API Gateway appended to.
    let http_api = set(
        set(
            through_cloudfront.clone(),
            "/requestContext/domainName",
            Some(json!("r3pmxmplak.execute-api.us-east-2.amazonaws.com")),
        ),
        "/headers/x-forwarded-for",
        Some(json!("6.6.6.6, 130.176.3.3")),
    );
    let resolution =
        lambda::resolve_event(&policy(Preset::CloudfrontApiGateway), &http_api).unwrap();
    assert_eq!(resolution.client.to_string(), "6.6.6.6");
}

/// The middlewares pass a trusted hop's `X-Forwarded-For` to the app when the decision
/// read it. Behind CloudFront a Function URL event's comes through a trusted hop (the
/// edge) but is the client's text, never read: the hop says so
/// (`Warnings::XFF_NOT_KEPT`, `Hop::Trusted::unkept`), and the withholding rule keeps it
/// from the app with `X-Forwarded-Proto` and `-Port`, which the URL passes on as it
/// received them, while `X-Forwarded-Host` and the CloudFront-Viewer-Address that decided
/// pass. Before, `Policy::hop` asked only the policy, which reads
/// `X-Forwarded-For`, and the app behind the Python middlewares saw 6.6.6.6.
#[test]
fn a_function_urls_x_forwarded_for_is_withheld_from_a_trusted_hop() {
    use trueip::headers::{ForwardingSet, Hop};
    let through_cloudfront = set(
        xff_of(event("function_url"), "6.6.6.6"),
        "/requestContext/http/sourceIp",
        Some(json!("130.176.3.3")),
    );
    let with_viewer = set(
        through_cloudfront.clone(),
        "/headers/cloudfront-viewer-address",
        Some(json!("198.51.100.7:50123")),
    );
    let http_api = set(
        xff_of(through_cloudfront.clone(), "6.6.6.6, 198.51.100.7"),
        "/requestContext/domainName",
        Some(json!("r3pmxmplak.execute-api.us-east-2.amazonaws.com")),
    );
    for preset in [Preset::CloudfrontApiGateway, Preset::CloudfrontAlb] {
        let policy = policy(preset);
        let set = ForwardingSet::for_policy(&policy);
        let passes = |event: &Value, name: &str| {
            let resolution = lambda::resolve_event(&policy, event).unwrap();
            assert!(policy.came_through_trusted_hop(&resolution), "{preset}");
            let hop = policy.hop(&resolution);
            assert!(matches!(hop, Hop::Trusted { .. }), "{preset}");
            !set.withheld(name.as_bytes(), hop)
        };
        for event in [&through_cloudfront, &with_viewer] {
            assert!(!passes(event, "X-Forwarded-For"), "{preset}");
            // Passed on as received, as a client may have written them (`UNKEPT_CLAIMS`).
            assert!(!passes(event, "X-Forwarded-Proto"), "{preset}");
            assert!(!passes(event, "X-Forwarded-Port"), "{preset}");
            assert!(passes(event, "X-Forwarded-Host"), "{preset}");
        }
        assert!(passes(&http_api, "X-Forwarded-Proto"), "{preset}");
        assert!(passes(&with_viewer, "CloudFront-Viewer-Address"), "{preset}");
        if preset == Preset::CloudfrontApiGateway {
            assert!(passes(&http_api, "X-Forwarded-For"));
        }
    }
    // Sent to the URL directly: no hop is trusted, and every client-IP header is withheld
    // as before, unflagged.
    let policy = policy(Preset::CloudfrontApiGateway);
    let direct = lambda::resolve_event(&policy, &xff_of(event("function_url"), "6.6.6.6")).unwrap();
    assert!(matches!(policy.hop(&direct), Hop::Untrusted));
    assert!(!direct.warnings.contains(Warnings::XFF_NOT_KEPT));
}

/// A Function URL's `X-Forwarded-Proto` and `-Port` name no viewer's scheme or port:
/// behind a trusted CloudFront edge they are the client's or the URL's own for
/// CloudFront's connection, and `origin` reports neither, where it does an HTTP API's,
/// which AWS writes for its client (fails on the old code: `http` and 80, the client's).
#[test]
fn a_function_urls_scheme_and_port_are_not_reported() {
    let policy = policy(Preset::CloudfrontApiGateway);
    let forged = |name: &str| {
        let event = set(
            set(
                set(event(name), "/requestContext/http/sourceIp", Some(json!("130.176.3.3"))),
                "/headers/x-forwarded-proto",
                Some(json!("http")),
            ),
            "/headers/x-forwarded-port",
            Some(json!("80")),
        );
        set(
            set(event, "/headers/x-forwarded-host", Some(json!("example.com"))),
            "/headers/cloudfront-viewer-address",
            Some(json!("198.51.100.7:50123")),
        )
    };
    let furl = forged("function_url");
    let resolution = lambda::resolve_event(&policy, &furl).unwrap();
    assert_eq!(resolution.client.to_string(), "198.51.100.7:50123");
    let origin = trueip::origin::origin(&lambda::Event::parse(&furl).unwrap(), &resolution);
    assert_eq!(origin.proto, None);
    assert_eq!(origin.port, None);
    assert_eq!(origin.host.as_deref(), Some("example.com"));

    let http_api = forged("api_gateway_v2");
    let resolution = lambda::resolve_event(&policy, &http_api).unwrap();
    let origin = trueip::origin::origin(&lambda::Event::parse(&http_api).unwrap(), &resolution);
    assert_eq!(origin.proto, Some(trueip::origin::Scheme::Http));
    assert_eq!(origin.port, Some(80));
}

/// The host AWS gives a Function URL, `<url-id>.lambda-url.<region>.on.aws`, in any case,
/// is what tells its events from an HTTP API's; any other host (execute-api, a custom
/// domain) is an HTTP API's.
#[test]
fn a_function_url_is_told_by_its_host() {
    for (domain, kind) in [
        ("a3ymxmplrmz4w6khwt4wxdpd3u0qabqy.lambda-url.us-west-2.on.aws", EventKind::FunctionUrl),
        ("ABC.Lambda-Url.eu-west-1.ON.AWS", EventKind::FunctionUrl),
        ("r3pmxmplak.execute-api.us-east-2.amazonaws.com", EventKind::ApiGatewayV2),
        ("api.example.com", EventKind::ApiGatewayV2),
        ("lambda-url.example.com", EventKind::ApiGatewayV2),
        ("lambda-url.on.aws", EventKind::ApiGatewayV2),
        ("", EventKind::ApiGatewayV2),
    ] {
        let event = set(event("api_gateway_v2"), "/requestContext/domainName", Some(json!(domain)));
        let parsed = lambda::Event::parse(&event).unwrap();
        assert_eq!(parsed.kind(), kind, "{domain}");
    }
    let numeric = set(event("function_url"), "/requestContext/domainName", Some(json!(5)));
    assert!(
        matches!(error(&numeric), EventError::Invalid { ref field, .. } if field == "requestContext.domainName"),
        "{:?}",
        error(&numeric)
    );
}

#[test]
fn the_line_a_preset_logs_without_an_event_names_the_fix() {
    let line = Preset::CloudfrontAlb.without_event();
    for part in ["\"cloudfront-alb\"", "as if no proxy were trusted", "resolve_event", "Mangum"] {
        assert!(line.contains(part), "{part}: {line}");
    }
}

#[test]
fn ipv6_rate_limit_key_is_the_64() {
    let resolution = lambda::resolve_event(&Policy::default(), &event("function_url")).unwrap();
    assert_eq!(resolution.rate_limit_key.unwrap().to_string(), "2001:db8:85a3:8d3::");
}

fn error(event: &Value) -> EventError {
    lambda::resolve_event(&Policy::default(), event).unwrap_err()
}

#[test]
fn malformed_events_name_what_is_missing() {
    let alb = event("alb");
    let v1 = event("api_gateway_v1");
    let v2 = event("api_gateway_v2");
    let missing = |kind, field| EventError::Missing { kind, field };
    let cases: Vec<(&str, Value, EventError)> = vec![
        (
            "alb without x-forwarded-for (mode remove)",
            set(alb.clone(), "/headers/x-forwarded-for", None),
            missing(EventKind::Alb, "headers.x-forwarded-for"),
        ),
        (
            "alb without any headers",
            set(alb.clone(), "/headers", None),
            missing(EventKind::Alb, "headers.x-forwarded-for"),
        ),
        (
            "multi-value alb without x-forwarded-for",
            set(event("alb_multi"), "/multiValueHeaders/x-forwarded-for", None),
            missing(EventKind::Alb, "multiValueHeaders.x-forwarded-for"),
        ),
        (
            "v1 without sourceIp",
            set(v1.clone(), "/requestContext/identity/sourceIp", None),
            missing(EventKind::ApiGatewayV1, "requestContext.identity.sourceIp"),
        ),
        (
            "v1 with a null sourceIp",
            set(v1.clone(), "/requestContext/identity/sourceIp", Some(Value::Null)),
            missing(EventKind::ApiGatewayV1, "requestContext.identity.sourceIp"),
        ),
        (
            "v1 payload 1.0 without identity",
            set(set(v1.clone(), "/requestContext/identity", None), "/version", Some(json!("1.0"))),
            missing(EventKind::ApiGatewayV1, "requestContext.identity.sourceIp"),
        ),
        (
            "v2 without sourceIp",
            set(v2.clone(), "/requestContext/http/sourceIp", None),
            missing(EventKind::ApiGatewayV2, "requestContext.http.sourceIp"),
        ),
        (
            "v2 without requestContext.http",
            set(v2.clone(), "/requestContext/http", None),
            missing(EventKind::ApiGatewayV2, "requestContext.http.sourceIp"),
        ),
        // AWS writes it for an HTTP API and a Function URL alike, and it is what tells
        // whether x-forwarded-for may be read.
        (
            "v2 without requestContext.domainName",
            set(v2.clone(), "/requestContext/domainName", None),
            missing(EventKind::ApiGatewayV2, "requestContext.domainName"),
        ),
        (
            "function url without requestContext.domainName",
            set(event("function_url"), "/requestContext/domainName", Some(Value::Null)),
            missing(EventKind::ApiGatewayV2, "requestContext.domainName"),
        ),
    ];
    for (name, event, expected) in cases {
        assert_eq!(error(&event), expected, "{name}");
        let message = expected.to_string();
        assert!(message.contains("hint:"), "{name}: {message}");
    }
}

#[test]
fn events_of_no_kind_are_refused() {
    let v2 = event("api_gateway_v2");
    for (name, event) in [
        ("an array", json!([1, 2])),
        ("no requestContext", json!({"headers": {}})),
        ("requestContext a string", json!({"requestContext": "x"})),
        (
            "a requestContext that names no kind",
            json!({"requestContext": {"accountId": "123456789012"}}),
        ),
        ("payload version 3.0", set(v2, "/version", Some(json!("3.0")))),
    ] {
        assert!(
            matches!(error(&event), EventError::UnknownKind { .. }),
            "{name}: {:?}",
            error(&event)
        );
    }
}

#[test]
fn fields_aws_never_writes_that_way_are_refused() {
    let alb = event("alb");
    let v1 = event("api_gateway_v1");
    let v2 = event("api_gateway_v2");
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "the ALB's element is not an address (preserve mode, client text)",
            xff_of(alb.clone(), "150.172.238.178, unknown"),
            "the last element of headers.x-forwarded-for",
            "\"unknown\"",
        ),
        (
            "the ALB's element is malformed",
            xff_of(alb.clone(), "1.2.3.4, 010.1.1.1"),
            "the last element of headers.x-forwarded-for",
            "\"010.1.1.1\"",
        ),
        (
            "an x-forwarded-for of empty elements",
            xff_of(alb.clone(), " , "),
            "headers.x-forwarded-for",
            "\"\"",
        ),
        (
            "a header value that is a number",
            set(alb.clone(), "/headers/x-forwarded-port", Some(json!(443))),
            "headers.x-forwarded-port",
            "a number",
        ),
        (
            "headers a string",
            set(alb.clone(), "/headers", Some(json!("x-forwarded-for: 1.2.3.4"))),
            "headers",
            "\"x-forwarded-for: 1.2.3.4\"",
        ),
        (
            "a multi-value header that is a string",
            set(v1.clone(), "/multiValueHeaders/X-Forwarded-For", Some(json!("1.2.3.4"))),
            "multiValueHeaders.X-Forwarded-For",
            "\"1.2.3.4\"",
        ),
        (
            "a multi-value header line that is null",
            set(v1.clone(), "/multiValueHeaders/X-Forwarded-For", Some(json!(["1.2.3.4", null]))),
            "multiValueHeaders.X-Forwarded-For[1]",
            "null",
        ),
        (
            "the API Gateway console's test invoke",
            set(
                v1.clone(),
                "/requestContext/identity/sourceIp",
                Some(json!("test-invoke-source-ip")),
            ),
            "requestContext.identity.sourceIp",
            "\"test-invoke-source-ip\"",
        ),
        (
            "sourceIp a number",
            set(v2.clone(), "/requestContext/http/sourceIp", Some(json!(7))),
            "requestContext.http.sourceIp",
            "a number",
        ),
        (
            "sourceIp with a port no connection has",
            set(v2.clone(), "/requestContext/http/sourceIp", Some(json!("192.0.2.1:99999"))),
            "requestContext.http.sourceIp",
            "\"192.0.2.1:99999\"",
        ),
        (
            "sourceIp in brackets without a port",
            set(v2.clone(), "/requestContext/http/sourceIp", Some(json!("[2001:db8::1]"))),
            "requestContext.http.sourceIp",
            "\"[2001:db8::1]\"",
        ),
        (
            "sourceIp with a port, padded",
            set(v2.clone(), "/requestContext/http/sourceIp", Some(json!(" 192.0.2.1:443"))),
            "requestContext.http.sourceIp",
            "\" 192.0.2.1:443\"",
        ),
        (
            "sourceIp with a port that no connection comes from",
            set(v2.clone(), "/requestContext/http/sourceIp", Some(json!("0.0.0.0:443"))),
            "requestContext.http.sourceIp",
            "\"0.0.0.0:443\"",
        ),
        (
            "sourceIp that no connection comes from",
            set(v2.clone(), "/requestContext/http/sourceIp", Some(json!("0.0.0.0"))),
            "requestContext.http.sourceIp",
            "\"0.0.0.0\"",
        ),
    ];
    for (name, event, field, found) in cases {
        match error(&event) {
            EventError::Invalid { field: f, found: got, .. } => {
                assert_eq!(f, field, "{name}");
                assert_eq!(got, found, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let message =
        error(&set(v1, "/requestContext/identity/sourceIp", Some(json!("test-invoke-source-ip"))))
            .to_string();
    assert!(message.contains("deployed stage"), "{message}");
}

/// A REST API event keeps the case each line was sent in, so a client can send a header
/// whose lines' order counts under two spellings, whose order JSON does not keep. That
/// header is not read, and no hop is trusted with the client-IP headers; the client is
/// still decided. Such a pair once made the event unreadable (`AmbiguousHeader`): any client
/// left the app without an address, out of reach of any per-address limit or ban, even
/// under a policy that reads no header (`api-gateway`), and with a header AWS never writes
/// (`X-Forwarded-Host`, `X-Scheme`).
#[test]
fn a_clients_two_spellings_of_an_ordered_header_leave_the_event_its_client() {
    let v1 = event("api_gateway_v1");
    let source = lambda::Event::parse(&v1).unwrap().peer();
    let both = |event: Value, a: &str, b: &str, value: &str| {
        let mut event = event;
        for field in ["headers", "multiValueHeaders"] {
            let headers = event[field].as_object_mut().unwrap();
            let (one, two) = match field {
                "headers" => (json!("h1"), json!(value)),
                _ => (json!(["h1"]), json!([value])),
            };
            headers.insert(a.into(), one);
            headers.insert(b.into(), two);
        }
        event
    };
    // Under the policy that reads no header, the stand-in is the client whatever the
    // client sends, and what it spelled twice is withheld from the app.
    let api = policy(Preset::ApiGateway);
    for (a, b) in [
        ("X-Forwarded-Host", "x-forwarded-host"),
        ("X-Scheme", "x-scheme"),
        ("Forwarded", "FORWARDED"),
        ("x-forwarded-for", "X-FORWARDED-FOR"),
    ] {
        let event = both(v1.clone(), a, b, "6.6.6.6");
        let resolution = lambda::resolve_event(&api, &event).unwrap();
        assert_eq!(resolution.client, source.into(), "{a}");
        assert!(!api.came_through_trusted_hop(&resolution), "{a}");
        let explained = lambda::explain_event(&api, &event).unwrap();
        assert_eq!(explained.resolution, resolution, "{a}");
        assert!(explained.warnings.contains(&"header_writer_not_trusted"), "{a}");
        assert!(explained.steps.iter().any(|s| s.why.contains("two spellings")), "{a}");
    }

    // Behind a trusted CloudFront edge (the event's sourceIp), a client's own spelling of
    // X-Forwarded-For is never read, whichever key JSON puts last: the edge is the client,
    // unless CloudFront-Viewer-Address says who the viewer was.
    let cf = policy(Preset::CloudfrontApiGateway);
    let edge = set(v1.clone(), "/requestContext/identity/sourceIp", Some(json!("130.176.91.14")));
    for (a, b) in [("X-Forwarded-For", "x-forwarded-for"), ("x-forwarded-for", "X-Forwarded-For")] {
        let event = both(edge.clone(), a, b, "6.6.6.6");
        let resolution = lambda::resolve_event(&cf, &event).unwrap();
        assert_eq!(resolution.client.to_string(), "130.176.91.14", "{a}");
        assert!(resolution.warnings.contains(Warnings::UNVOUCHED_HEADER));
        assert!(!cf.came_through_trusted_hop(&resolution));
        let viewer = set(
            set(event, "/headers/CloudFront-Viewer-Address", Some(json!("203.0.113.7:443"))),
            "/multiValueHeaders/CloudFront-Viewer-Address",
            Some(json!(["203.0.113.7:443"])),
        );
        let resolution = lambda::resolve_event(&cf, &viewer).unwrap();
        assert_eq!(resolution.client.to_string(), "203.0.113.7:443", "{a}");
    }

    // Many headers take the sorting path: the same answer.
    let mut many = both(v1.clone(), "X-Forwarded-Host", "x-forwarded-host", "a");
    let headers = many["multiValueHeaders"].as_object_mut().unwrap();
    for i in 0..100 {
        headers.insert(format!("X-Filler-{i}"), json!(["1"]));
    }
    let resolution = lambda::resolve_event(&api, &many).unwrap();
    assert_eq!(resolution.client, source.into());
    assert!(resolution.warnings.contains(Warnings::UNVOUCHED_HEADER));

    // The ALB's stand-in is the last element of its own line: with the order lost there is
    // none, and the event is refused.
    let alb = event("alb");
    let mut spelled = alb.clone();
    let headers = spelled["headers"].as_object_mut().unwrap();
    headers.insert("X-Forwarded-For".into(), json!("6.6.6.6"));
    // Another pair, which JSON's order puts first: the refusal still names the one it is for.
    headers.insert("FORWARDED".into(), json!("for=1.1.1.1"));
    headers.insert("Forwarded".into(), json!("for=2.2.2.2"));
    match error(&spelled) {
        EventError::AmbiguousHeader { field, names, .. } => {
            assert_eq!(field, "headers");
            assert_eq!(names, ("X-Forwarded-For".to_string(), "x-forwarded-for".to_string()));
        }
        other => panic!("{other:?}"),
    }
}

/// A REST API event keeps the case each line was sent in. A header read in order under two
/// spellings is refused (`one_header_under_two_spellings_is_refused`); any other is read under each, so a client's `Foo` and
/// `FOO` leave the answer as it was (they once made every such event unreadable: no
/// client for the app), and a single-address header under two spellings is two lines, a
/// duplicate, ignored.
#[test]
fn a_header_whose_order_decides_nothing_may_come_under_two_spellings() {
    let v1 = event("api_gateway_v1");
    let api = policy(Preset::ApiGateway);
    let plain = lambda::resolve_event(&api, &v1).unwrap();
    let mut spelled = v1.clone();
    for field in ["headers", "multiValueHeaders"] {
        let headers = spelled[field].as_object_mut().unwrap();
        let (one, two) = if field == "headers" {
            (json!("1"), json!("2"))
        } else {
            (json!(["1"]), json!(["2"]))
        };
        headers.insert("Foo".into(), one);
        headers.insert("FOO".into(), two);
    }
    assert_eq!(lambda::resolve_event(&api, &spelled).unwrap(), plain);

    let header = Policy::builder()
        .trust_str("any")
        .unwrap()
        .strategy_str("header:x-real-ip")
        .unwrap()
        .build()
        .unwrap();
    let mut doubled = v1.clone();
    let headers = doubled["multiValueHeaders"].as_object_mut().unwrap();
    headers.insert("X-Real-IP".into(), json!(["6.6.6.6"]));
    headers.insert("x-real-ip".into(), json!(["203.0.113.9"]));
    let resolution = lambda::resolve_event(&header, &doubled).unwrap();
    assert_eq!(resolution.client, lambda::Event::parse(&v1).unwrap().peer().into());
    assert!(resolution.warnings.contains(Warnings::DUPLICATE_HEADER));
}

/// The ALB adds its own `X-Forwarded-For` line after the request's (the event in
/// `alb_multi_observed.json`, from laravel/vapor-core#25). What that line holds when the
/// request had several lines is not documented: the first line, the last, or all of them,
/// then the address the ALB saw. In every case, and with multi-value headers off (the ALB
/// keeps the last value it received), the stand-in is the ALB's element, and never a
/// client's line that came after the first.
#[test]
fn the_albs_line_is_the_last_whatever_it_repeats() {
    let seen = "198.51.100.9";
    let client_lines: [&[&str]; 3] =
        [&["6.6.6.6"], &["6.6.6.6", "7.7.7.7"], &["6.6.6.6, 10.0.0.1", "7.7.7.7", "8.8.8.8"]];
    let policy = policy(Preset::Alb);
    for lines in client_lines {
        let repeats = [
            lines.first().unwrap().to_string(),
            lines.last().unwrap().to_string(),
            lines.join(", "),
        ];
        for repeated in repeats {
            let albs = format!("{repeated}, {seen}");
            let mut multi: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            multi.push(albs.clone());
            for (shape, event) in [
                (
                    "multi",
                    set(
                        event("alb_multi_observed"),
                        "/multiValueHeaders/x-forwarded-for",
                        Some(json!(multi)),
                    ),
                ),
                ("single", xff_of(event("alb"), &albs)),
            ] {
                let name = format!("{shape}: {lines:?} then {albs:?}");
                let parsed = lambda::Event::parse(&event).unwrap();
                assert_eq!(parsed.peer().to_string(), seen, "{name}");
                let resolution = lambda::resolve_event(&policy, &event).unwrap();
                assert_eq!(resolution.client.to_string(), seen, "{name}");
                assert!(resolution.warnings.contains(Warnings::SPOOF_ATTEMPT), "{name}");
            }
        }
    }
}

/// An ALB in `append` mode never writes a last line without an element: such a line is
/// the request's (or a `preserve` mode ALB's), and the element of the line before it is
/// client text. Refused, as a single line without an element is.
#[test]
fn a_last_line_without_an_element_is_refused_not_read_from_the_line_before() {
    for last in ["", " ", " , ", ","] {
        let event = set(
            event("alb_multi_observed"),
            "/multiValueHeaders/x-forwarded-for",
            Some(json!(["203.0.113.7", "203.0.113.7, 6.6.6.6", last])),
        );
        match error(&event) {
            EventError::Invalid { kind: EventKind::Alb, field, found, .. } => {
                assert_eq!(field, "multiValueHeaders.x-forwarded-for", "{last:?}");
                assert_eq!(found, "\"\"", "{last:?}");
            }
            other => panic!("{last:?}: {other:?}"),
        }
    }
}

/// What a Lambda target receives under each `routing.http.xff_header_processing.mode`, row by
/// row as AWS's ELB guide tabulates it ("HTTP headers and Application Load Balancers", whose
/// last hop is `127.0.0.1`), and with `routing.http.xff_client_port.enabled` (its examples).
/// `append` (the default): the ALB's element stands in, what the client wrote is flagged.
/// `remove`, and `preserve` for a client that sent none: no header, refused with a hint naming
/// the mode (the hint named only `remove`: fails on the old code). `preserve` for a client that
/// sent one: the event holds the client's text, which nothing in it tells from the ALB's; its
/// last element stands in, the hazard the docs warn of.
#[test]
fn the_albs_documented_forwarded_for_modes() {
    let policy = policy(Preset::Alb);
    let received =
        |xff: Option<&str>| set(event("alb"), "/headers/x-forwarded-for", xff.map(|x| json!(x)));
    let client = |xff: Option<&str>| lambda::resolve_event(&policy, &received(xff)).unwrap();
    // (the request's X-Forwarded-For, what `append` passes on)
    let rows = [
        (None, "127.0.0.1"),
        (Some("127.0.0.4"), "127.0.0.4, 127.0.0.1"),
        (Some("127.0.0.4, 127.0.0.8"), "127.0.0.4, 127.0.0.8, 127.0.0.1"),
    ];
    for (sent, appended) in rows {
        let resolution = client(Some(appended));
        assert_eq!(resolution.client.to_string(), "127.0.0.1", "append {sent:?}");
        assert_eq!(
            resolution.warnings.contains(Warnings::SPOOF_ATTEMPT),
            sent.is_some(),
            "{sent:?}"
        );
        match sent {
            // `preserve` passes the client's header as it came.
            Some(sent) => {
                let preserved = client(Some(sent));
                assert_eq!(Some(preserved.client.to_string().as_str()), sent.rsplit(", ").next());
            }
            // `remove` passes no header whatever the client sent; `preserve` none when it
            // sent none.
            None => {
                let err = error(&received(None));
                assert!(
                    matches!(
                        err,
                        EventError::Missing {
                            kind: EventKind::Alb,
                            field: "headers.x-forwarded-for"
                        }
                    ),
                    "{err:?}"
                );
                for mode in ["`remove`", "`preserve`"] {
                    assert!(
                        err.hint().contains(mode),
                        "preserve or remove, nothing sent: {}",
                        err.hint()
                    );
                }
            }
        }
    }
    // The guide's IPv6 example, and the client port (`append` only; IPv6 then in brackets).
    for (appended, stand_in) in [
        ("12.34.56.78:8080", "12.34.56.78:8080"),
        (
            "[2001:db8:85a3:8d3:1319:8a2e:370:7348]:8080",
            "[2001:db8:85a3:8d3:1319:8a2e:370:7348]:8080",
        ),
        ("2001:DB8::21f:5bff:febf:ce22:8a2e", "2001:db8:0:21f:5bff:febf:ce22:8a2e"),
    ] {
        assert_eq!(
            lambda::Event::parse(&received(Some(appended))).unwrap().peer().to_string(),
            stand_in
        );
    }
}

/// Events shaped as AWS was seen to send them, field for field, with the addresses and ids
/// replaced by documentation ones (docs/SECURITY.md, "AWS Lambda: what AWS sends, and the
/// evidence"):
/// - `api_gateway_v1_observed`: the REST API event LocalStack recorded from AWS for a request
///   with repeated query arguments (localstack/localstack,
///   tests/aws/services/apigateway/test_apigateway_lambda.snapshot.json,
///   `invocation-payload-with-params-encoding-multi`, 2024-08-02), its redacted
///   `X-Forwarded-For` in the shape aws-solutions/aws-waf-security-automations#123 logged:
///   `sourceIp`, then AWS's own CloudFront edge; a client's entries come before them.
/// - `api_gateway_v1_edge_observed`: an edge-optimized REST API's event logged in 2017,
///   before multi-value headers (silvaren/spray-example,
///   src/test/scala/com/example/InputEventStrings.scala, `inputStringForRouteA`), its
///   `X-Forwarded-For` unredacted: `sourceIp`, then a CloudFront address (54.182.233.77),
///   nothing else, as in the same file's other requests.
/// - `function_url_observed`: a direct Function URL request (aws/aws-lambda-rust-runtime,
///   lambda-http/tests/data/lambda_function_url_request.json, 2023-01-11): its
///   `X-Forwarded-For` is `sourceIp`, and its cookie is in `cookies` and `headers.cookie`.
/// - `function_url_cloudfront_observed`: CloudFront → Function URL, the headers as a demo page
///   served that way printed them (ssr-poc-2.spribe-sandbox1.click, 2026-04-25): one
///   `X-Forwarded-For` element, where a URL that appended its peer would show two. Its
///   `requestContext` was not printed: AWS's documented one, `sourceIp` an edge.
#[test]
fn observed_events_decide_as_documented() {
    let rest = event("api_gateway_v1_observed");
    let forged = "6.6.6.6, 198.51.100.23, 130.176.20.90";
    let rest_forged = set(
        set(rest.clone(), "/headers/X-Forwarded-For", Some(json!(forged))),
        "/multiValueHeaders/X-Forwarded-For",
        Some(json!([forged])),
    );
    let rest_edge = event("api_gateway_v1_edge_observed");
    let url = event("function_url_observed");
    let behind_cloudfront = event("function_url_cloudfront_observed");
    // What the report says a URL keeps of `6.6.6.6, <viewer>`: the client's first value.
    let url_forged =
        set(behind_cloudfront.clone(), "/headers/x-forwarded-for", Some(json!("6.6.6.6")));
    for (name, event, kind, client) in [
        ("rest", &rest, EventKind::ApiGatewayV1, "198.51.100.23"),
        ("rest, forged first entry", &rest_forged, EventKind::ApiGatewayV1, "198.51.100.23"),
        ("rest, edge-optimized, 2017", &rest_edge, EventKind::ApiGatewayV1, "203.0.113.71"),
        ("function url", &url, EventKind::FunctionUrl, "198.51.100.54"),
        (
            "function url behind cloudfront",
            &behind_cloudfront,
            EventKind::FunctionUrl,
            "130.176.17.71",
        ),
        (
            "function url behind cloudfront, forged",
            &url_forged,
            EventKind::FunctionUrl,
            "130.176.17.71",
        ),
    ] {
        assert_eq!(lambda::Event::parse(event).unwrap().kind(), kind, "{name}");
        for preset in Preset::ALL {
            let resolution = lambda::resolve_event(&policy(preset), event).unwrap();
            assert_eq!(resolution.client.to_string(), client, "{name}, {preset:?}");
        }
    }
    // Behind a trusted edge the URL's client is the edge, flagged and logged, until
    // CloudFront-Viewer-Address is forwarded.
    let cloudfront = policy(Preset::CloudfrontApiGateway);
    let resolution = lambda::resolve_event(&cloudfront, &url_forged).unwrap();
    assert!(resolution.warnings.contains(Warnings::XFF_NOT_KEPT));
    assert!(lambda::edge_is_client(&resolution).is_some());
    let viewer =
        set(url_forged, "/headers/cloudfront-viewer-address", Some(json!("203.0.113.44:50123")));
    let resolution = lambda::resolve_event(&cloudfront, &viewer).unwrap();
    assert_eq!(resolution.client.to_string(), "203.0.113.44:50123");

    // A repeated argument as a REST API writes it: every value in
    // `multiValueQueryStringParameters`, the last in `queryStringParameters`. Both values
    // are read, so two clients are a duplicate, never the last alone.
    let query = vpc_policy("query:client");
    let arguments = set(
        set(
            set(rest, "/requestContext/identity/sourceIp", Some(json!("10.0.0.5"))),
            "/multiValueQueryStringParameters",
            Some(json!({"client": ["203.0.113.1", "203.0.113.2"]})),
        ),
        "/queryStringParameters",
        Some(json!({"client": "203.0.113.2"})),
    );
    let resolution = lambda::resolve_event(&query, &arguments).unwrap();
    assert_eq!(resolution.client.to_string(), "10.0.0.5");
    assert!(resolution.warnings.contains(Warnings::DUPLICATE_HEADER));

    // A Function URL's cookie, in `cookies` and again in `headers.cookie`, is one line, as
    // lambda_http has read it since aws/aws-lambda-rust-runtime#586: not a duplicate.
    let cookie = vpc_policy("cookie:client");
    let cookies = set(
        set(
            set(url, "/requestContext/http/sourceIp", Some(json!("10.0.0.5"))),
            "/cookies",
            Some(json!(["client=203.0.113.9"])),
        ),
        "/headers/cookie",
        Some(json!("client=203.0.113.9")),
    );
    let resolution = lambda::resolve_event(&cookie, &cookies).unwrap();
    assert_eq!(resolution.client.to_string(), "203.0.113.9");
    assert!(!resolution.warnings.contains(Warnings::DUPLICATE_HEADER));

    // An HTTP API joins a repeated header with commas (AWS, payload format 2.0): a
    // single-address header sent twice is one malformed line, never either half.
    let joined =
        vpc_event("api_gateway_v2", &[("/headers/x-real-ip", json!("203.0.113.1,203.0.113.2"))]);
    let resolution = lambda::resolve_event(&vpc_policy("header:X-Real-IP"), &joined).unwrap();
    assert_eq!(resolution.client.to_string(), "10.0.0.5");
    assert!(resolution.warnings.contains(Warnings::MALFORMED));
}

/// API Gateway writes `sourceIp` with a port when a mutual-TLS custom domain fronts it: an
/// HTTP API event logged behind Cloudflare's authenticated origin pulls held
/// `"sourceIp": "10.1.22.195:32554"`, an address of AWS's own, where the same API reached
/// without mutual TLS wrote a bare public address (aws-powertools/powertools-lambda-python#7288,
/// 2025; AWS's Powertools parser has accepted `ip:port` and `[ipv6]:port` there since #7315
/// and #7351). Refused as "a field AWS never writes that way", every request of such a
/// deployment had no client at all (an `EventError`, the tower layer's 500, an empty
/// `REMOTE_ADDR`): fails on the old code. The stand-in is the address with its port, as
/// the ALB's with `xff_client_port`; anything else about the field is still refused.
#[test]
fn a_source_ip_with_a_port_stands_in_with_it() {
    let event = event("api_gateway_v2_mtls_observed");
    let parsed = lambda::Event::parse(&event).unwrap();
    assert_eq!(parsed.kind(), EventKind::ApiGatewayV2);
    assert_eq!(parsed.peer().to_string(), "10.1.22.195:32554");
    for preset in Preset::ALL {
        let resolution = lambda::resolve_event(&policy(preset), &event).unwrap();
        assert_eq!(resolution.client.to_string(), "10.1.22.195:32554", "{preset:?}");
    }
    for (source_ip, stand_in) in [
        ("[2001:db8::7]:443", "[2001:db8::7]:443"),
        ("[::ffff:192.0.2.1]:443", "192.0.2.1:443"),
        ("192.0.2.1", "192.0.2.1"),
    ] {
        for (name, at) in [
            ("api_gateway_v2", "/requestContext/http/sourceIp"),
            ("function_url", "/requestContext/http/sourceIp"),
            ("api_gateway_v1", "/requestContext/identity/sourceIp"),
        ] {
            let event = set(lambda_support::event(name), at, Some(json!(source_ip)));
            let peer = lambda::Event::parse(&event).unwrap().peer();
            assert_eq!(peer.to_string(), stand_in, "{name}: {source_ip}");
        }
    }
}

/// API Gateway writes `X-Forwarded-For` itself, after whatever the client sent: `sourceIp`
/// (a regional REST API, an HTTP API), or `sourceIp` and then the CloudFront edge in front
/// of an edge-optimized REST API (AWS's example event; the event LocalStack recorded). With
/// nothing left of `sourceIp` nothing in it is a client's, yet a policy that trusts no proxy
/// flagged every such event `header_from_untrusted_peer` (fails on the old code: every
/// "API Gateway's own" case below). What a client wrote is still flagged, the client is
/// `sourceIp` either way, and a policy that trusts the stand-in still walks the header.
#[test]
fn api_gateways_own_forwarded_for_is_not_a_strangers() {
    let v1 = event("api_gateway_v1");
    let v2 = event("api_gateway_v2");
    let rest = |xff: &str| {
        let event = set(v1.clone(), "/headers/X-Forwarded-For", Some(json!(xff)));
        set(event, "/multiValueHeaders/X-Forwarded-For", Some(json!([xff])))
    };
    let http = |xff: &str| set(v2.clone(), "/headers/x-forwarded-for", Some(json!(xff)));
    // Each decides with no proxy trusted: `sourceIp` is in no range of theirs, and the ALB
    // preset decides another kind's event as if none were (flagged `no_lambda_event`).
    let policies = [
        ("api-gateway", policy(Preset::ApiGateway), Warnings::NONE),
        ("cloudfront-api-gateway", policy(Preset::CloudfrontApiGateway), Warnings::NONE),
        ("default", Policy::default(), Warnings::NONE),
        ("alb", policy(Preset::Alb), Warnings::NO_LAMBDA_EVENT),
    ];
    let own = [
        ("rest, edge-optimized, AWS's example", v1.clone(), "52.255.255.12"),
        ("rest, edge-optimized, recorded", event("api_gateway_v1_observed"), "198.51.100.23"),
        ("rest, edge-optimized, logged", event("api_gateway_v1_edge_observed"), "203.0.113.71"),
        ("rest, regional", rest("52.255.255.12"), "52.255.255.12"),
        ("http api", v2.clone(), "205.255.255.176"),
    ];
    let clients = [
        ("rest, edge-optimized, forged first entry", rest("6.6.6.6, 52.255.255.12, 130.176.91.14")),
        ("rest, regional, forged first entry", rest("6.6.6.6, 52.255.255.12")),
        (
            "rest, the client's own address before sourceIp's",
            rest("52.255.255.12, 52.255.255.12, 130.176.91.14"),
        ),
        ("rest, one address not sourceIp", rest("6.6.6.6")),
        ("rest, unknown before sourceIp", rest("unknown, 52.255.255.12")),
        ("http api, forged first entry", http("6.6.6.6, 205.255.255.176")),
        // An HTTP API was seen to write the address it saw in place of the client's
        // header: what follows `sourceIp` there is not known to be AWS's.
        ("http api, an entry after sourceIp", http("205.255.255.176, 6.6.6.6")),
    ];
    for (policy_name, policy, always) in &policies {
        for (name, event, client) in &own {
            let name = format!("{name}, {policy_name}");
            let resolution = lambda::resolve_event(policy, event).unwrap();
            assert_eq!(resolution.client.to_string(), *client, "{name}");
            assert_eq!(resolution.source, Source::Peer, "{name}");
            assert_eq!(resolution.warnings, *always, "{name}");
            let explanation = lambda::explain_event(policy, event).unwrap();
            assert_eq!(explanation.resolution, resolution, "{name}");
            let step = explanation.steps.iter().find(|s| s.subject == "x-forwarded-for");
            let step = step.unwrap_or_else(|| panic!("{name}: {explanation}"));
            assert_eq!(step.verdict, trueip::Verdict::Ignored, "{name}");
            assert!(step.why.starts_with("written by API Gateway"), "{name}: {}", step.why);
        }
        for (name, event) in &clients {
            let name = format!("{name}, {policy_name}");
            let resolution = lambda::resolve_event(policy, event).unwrap();
            let source_ip = lambda::Event::parse(event).unwrap().peer().to_string();
            assert_eq!(resolution.client.to_string(), source_ip, "{name}");
            assert_eq!(resolution.warnings, *always | Warnings::UNTRUSTED_HEADER, "{name}");
            let explanation = lambda::explain_event(policy, event).unwrap();
            let text = explanation.to_string();
            assert!(!text.contains("written by API Gateway"), "{name}: {text}");
        }
    }
    // A stand-in the policy trusts: the header is walked, not set aside. CloudFront in
    // front of a regional API, the viewer's own entry missing: every entry trusted.
    let edge = set(
        rest("130.176.91.14"),
        "/requestContext/identity/sourceIp",
        Some(json!("130.176.91.14")),
    );
    let cloudfront = policy(Preset::CloudfrontApiGateway);
    let resolution = lambda::resolve_event(&cloudfront, &edge).unwrap();
    assert!(resolution.warnings.contains(Warnings::ALL_TRUSTED), "{resolution:?}");
    let text = lambda::explain_event(&cloudfront, &edge).unwrap().to_string();
    assert!(!text.contains("written by API Gateway"), "{text}");
    // An ALB's stand-in is the header's own last element: nothing to tell apart there.
    let alb = xff_of(event("alb"), "150.172.238.178");
    let resolution = lambda::resolve_event(&policy(Preset::ApiGateway), &alb).unwrap();
    assert_eq!(resolution.warnings, Warnings::UNTRUSTED_HEADER);
}

/// VPC Lattice events carry no address Lattice vouches for: refused by name, with the
/// reason, not taken for an API Gateway event (v2 shares `version: "2.0"`) or "unknown".
#[test]
fn vpc_lattice_events_are_refused_by_name() {
    for (name, payload) in [("vpc_lattice_v1", "v1"), ("vpc_lattice_v2", "v2")] {
        let event = event(name);
        let err = error(&event);
        match &err {
            EventError::Unsupported { service, why } => {
                assert_eq!(*service, format!("VPC Lattice (payload {payload})"), "{name}");
                assert!(why.contains("x-forwarded-for"), "{name}: {why}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(
            lambda::Event::parse(&event).unwrap_err(),
            err,
            "{name}: parse and resolve agree"
        );
        let message = err.to_string();
        assert!(
            message.contains("VPC Lattice") && message.contains("IAM identity"),
            "{name}: {message}"
        );
        let explained = lambda::explain_event(&policy(Preset::Alb), &event).unwrap_err();
        assert_eq!(explained, err, "{name}");
    }
}

#[test]
fn error_text_is_bounded() {
    let long = "9".repeat(10_000);
    let message =
        error(&set(event("api_gateway_v2"), "/requestContext/http/sourceIp", Some(json!(long))))
            .to_string();
    assert!(message.len() < 600, "{}", message.len());
    // A header's name is the client's to choose, and errors name the field it is in.
    let name = "X-".repeat(5_000);
    let invalid =
        set(event("api_gateway_v1"), &format!("/multiValueHeaders/{name}"), Some(json!([1])));
    let message = error(&invalid).to_string();
    assert!(message.len() < 600, "{}", message.len());
}

// ---------------------------------------------------------------------------------------
// Prepending entries to X-Forwarded-For never changes the answer.
// ---------------------------------------------------------------------------------------

/// What a client may put in front: addresses (trusted ones too), garbage, `unknown`,
/// empty elements, whole extra lines.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        (0u8..255, 0u8..255).prop_map(|(a, b)| format!("130.176.{a}.{b}")),
        Just("unknown".to_string()),
        Just(String::new()),
        Just("[2600:9000::1]:443".to_string()),
        "[ -~]{0,12}",
    ]
}

/// A client no trust set here holds.
fn client() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u8..100, 0u8..255, 1u8..255).prop_map(|(a, b, c)| format!("{a}.{b}.7.{c}")),
        any::<u16>().prop_map(|x| format!("2001:db8::{x:x}")),
    ]
}

/// The hops the event recorded after the client: CloudFront edges.
fn edges() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((0u8..255, 1u8..255).prop_map(|(a, b)| format!("130.176.{a}.{b}")), 0..3)
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Alb,
    AlbMulti,
    V1,
    V2,
    /// What a Function URL leaves of the lines: the first value only.
    FunctionUrl,
}

fn build(shape: Shape, lines: &[String], source_ip: &str) -> Value {
    match shape {
        Shape::Alb => xff_of(event("alb"), &lines.join(", ")),
        Shape::AlbMulti => {
            set(event("alb_multi"), "/multiValueHeaders/x-forwarded-for", Some(json!(lines)))
        }
        // As AWS writes a REST API event: `headers` holds the last line.
        Shape::V1 => set(
            set(
                set(
                    event("api_gateway_v1"),
                    "/multiValueHeaders/X-Forwarded-For",
                    Some(json!(lines)),
                ),
                "/headers/X-Forwarded-For",
                lines.last().map(|line| json!(line)),
            ),
            "/requestContext/identity/sourceIp",
            Some(json!(source_ip)),
        ),
        Shape::V2 => set(
            xff_of(event("api_gateway_v2"), &lines.join(",")),
            "/requestContext/http/sourceIp",
            Some(json!(source_ip)),
        ),
        Shape::FunctionUrl => {
            let first = lines.first().and_then(|line| line.split(',').next()).unwrap_or_default();
            set(
                xff_of(event("function_url"), first.trim()),
                "/requestContext/http/sourceIp",
                Some(json!(source_ip)),
            )
        }
    }
}

proptest! {
    #[test]
    fn prepending_to_x_forwarded_for_never_changes_the_answer(
        client in client(),
        edges in edges(),
        prefix in prop::collection::vec(junk(), 1..6),
        as_lines in any::<bool>(),
        shape in prop_oneof![
            Just(Shape::Alb),
            Just(Shape::AlbMulti),
            Just(Shape::V1),
            Just(Shape::V2),
            Just(Shape::FunctionUrl),
        ],
        preset in prop::sample::select(Preset::ALL.to_vec()),
    ) {
        let policy = policy(preset);
        let mut chain = vec![client.clone()];
        chain.extend(edges);
        // AWS's front end saw the last hop: the ALB appended it, API Gateway reports it.
        let seen = chain.last().cloned().unwrap_or_default();
        let lines = vec![chain.join(", ")];
        let before = build(shape, &lines, &seen);
        let prefixed: Vec<String> = if as_lines {
            prefix.iter().cloned().chain(lines.iter().cloned()).collect()
        } else {
            vec![format!("{}, {}", prefix.join(", "), lines.join(", "))]
        };
        let after = build(shape, &prefixed, &seen);
        let a = lambda::resolve_event(&policy, &before).unwrap();
        let b = lambda::resolve_event(&policy, &after).unwrap();
        prop_assert_eq!(a.client, b.client);
        prop_assert_eq!(a.source, b.source);
        prop_assert_eq!(a.trusted_hops, b.trusted_hops);
        // Never an address from the prefix: the answer is the client or a hop after it.
        prop_assert!(
            a.source == Source::Peer || chain.contains(&a.client.to_string()),
            "{:?}", a
        );
    }
}

/// Attack (review of the VPC Lattice refusal): the names that tell a Lattice event
/// (`raw_path`, `requestContext.serviceNetworkArn`, `serviceArn`) added to every
/// documented ALB, API Gateway and Function URL event change nothing: the event is read
/// as its kind and decided as before, never refused as Lattice or read another way.
#[test]
fn lattice_names_change_no_other_kinds_decision() {
    for case in cases() {
        let policy = policy(case.preset);
        let before = lambda::resolve_event(&policy, &case.event).unwrap();
        let mut event = set(case.event.clone(), "/raw_path", Some(json!("/")));
        for key in ["serviceNetworkArn", "serviceArn"] {
            event = set(
                event,
                &format!("/requestContext/{key}"),
                Some(json!("arn:aws:vpc-lattice:us-east-2:123456789012:x/y")),
            );
        }
        let parsed = lambda::Event::parse(&event).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(parsed.kind(), case.kind, "{}", case.name);
        assert_eq!(lambda::resolve_event(&policy, &event).unwrap(), before, "{}", case.name);
    }
}

/// The query-argument events of every kind: (what, event, the client, or `None` for the
/// stand-in, flagged `warning`).
fn query_cases() -> Vec<(&'static str, Value, Option<&'static str>, Warnings)> {
    const SINGLE: &str = "/queryStringParameters";
    const MULTI: &str = "/multiValueQueryStringParameters";
    const RAW: &str = "/rawQueryString";
    let none = Warnings::NONE;
    vec![
        (
            "alb: queryStringParameters",
            vpc_event("alb", &[(SINGLE, json!({"client": "198.51.100.4", "page": "2"}))]),
            Some("198.51.100.4"),
            none,
        ),
        (
            "alb: as sent, percent-encoded (the ALB decodes nothing)",
            vpc_event("alb", &[(SINGLE, json!({"client": "2001%3Adb8%3A%3A4"}))]),
            Some("2001:db8::4"),
            none,
        ),
        (
            "alb: the name as sent, decoded as the app decodes it",
            vpc_event("alb", &[(SINGLE, json!({"cl%69ent": "198.51.100.4"}))]),
            Some("198.51.100.4"),
            none,
        ),
        (
            "alb: the name under two spellings is two arguments",
            vpc_event("alb", &[(SINGLE, json!({"cl%69ent": "6.6.6.6", "client": "198.51.100.4"}))]),
            None,
            Warnings::DUPLICATE_HEADER,
        ),
        (
            "alb, multi-value: multiValueQueryStringParameters",
            vpc_event("alb_multi", &[(MULTI, json!({"client": ["198.51.100.4"]}))]),
            Some("198.51.100.4"),
            none,
        ),
        (
            "alb, multi-value: two values are ambiguous",
            vpc_event("alb_multi", &[(MULTI, json!({"client": ["6.6.6.6", "198.51.100.4"]}))]),
            None,
            Warnings::DUPLICATE_HEADER,
        ),
        (
            "alb: a bad escape is malformed",
            vpc_event("alb", &[(SINGLE, json!({"client": "198.51.100.4%zz"}))]),
            None,
            Warnings::MALFORMED,
        ),
        (
            "v1: multiValueQueryStringParameters, decoded",
            vpc_event(
                "api_gateway_v1",
                &[
                    (SINGLE, json!({"client": "2001:db8::4"})),
                    (MULTI, json!({"client": ["2001:db8::4"]})),
                ],
            ),
            Some("2001:db8::4"),
            none,
        ),
        (
            "v1: two values, queryStringParameters keeps the last",
            vpc_event(
                "api_gateway_v1",
                &[
                    (SINGLE, json!({"client": "198.51.100.4"})),
                    (MULTI, json!({"client": ["6.6.6.6", "198.51.100.4"]})),
                ],
            ),
            None,
            Warnings::DUPLICATE_HEADER,
        ),
        (
            "v1: decoded already, not decoded twice (the app saw %2E, not a dot)",
            vpc_event(
                "api_gateway_v1",
                &[
                    (SINGLE, json!({"client": "198%2E51.100.4"})),
                    (MULTI, json!({"client": ["198%2E51.100.4"]})),
                ],
            ),
            None,
            Warnings::MALFORMED,
        ),
        (
            "v1: queryStringParameters alone",
            vpc_event("api_gateway_v1", &[(SINGLE, json!({"client": "198.51.100.4"}))]),
            Some("198.51.100.4"),
            none,
        ),
        (
            "v2: rawQueryString",
            vpc_event(
                "api_gateway_v2",
                &[
                    (RAW, json!("page=2&client=2001%3adb8%3a%3a4")),
                    (SINGLE, json!({"page": "2", "client": "2001:db8::4"})),
                ],
            ),
            Some("2001:db8::4"),
            none,
        ),
        (
            "v2: a repeated argument (queryStringParameters joins it with a comma)",
            vpc_event(
                "api_gateway_v2",
                &[
                    (RAW, json!("client=6.6.6.6&client=198.51.100.4")),
                    (SINGLE, json!({"client": "6.6.6.6,198.51.100.4"})),
                ],
            ),
            None,
            Warnings::DUPLICATE_HEADER,
        ),
        (
            "v2 without rawQueryString: queryStringParameters",
            set(
                vpc_event("api_gateway_v2", &[(SINGLE, json!({"client": "198.51.100.4"}))]),
                RAW,
                None,
            ),
            Some("198.51.100.4"),
            none,
        ),
        (
            "v2 without rawQueryString: a joined value is several",
            set(
                vpc_event("api_gateway_v2", &[(SINGLE, json!({"client": "6.6.6.6,198.51.100.4"}))]),
                RAW,
                None,
            ),
            None,
            Warnings::DUPLICATE_HEADER,
        ),
        (
            "function url: rawQueryString",
            vpc_event(
                "function_url",
                &[(RAW, json!("client=198.51.100.4")), (SINGLE, json!({"client": "198.51.100.4"}))],
            ),
            Some("198.51.100.4"),
            none,
        ),
    ]
}

/// Review34: `resolve_event` passed the policy an event's headers alone, so a
/// `query:NAME` strategy always answered the stand-in. Each kind's arguments are read as
/// AWS writes them (fails on the old code: every `Some` case answered 10.0.0.5).
#[test]
fn a_query_strategy_reads_each_kinds_arguments() {
    let policy = vpc_policy("query:client");
    for (what, event, client, warning) in query_cases() {
        let resolution = lambda::resolve_event(&policy, &event).unwrap();
        match client {
            Some(client) => {
                assert_eq!(resolution.client.to_string(), client, "{what}");
                assert_eq!(resolution.source, Source::Query, "{what}");
            }
            None => {
                assert_eq!(resolution.client.to_string(), "10.0.0.5", "{what}");
                assert_eq!(resolution.source, Source::Peer, "{what}");
            }
        }
        assert!(
            warning.is_empty() || resolution.warnings.contains(warning),
            "{what}: {:?}",
            resolution.warnings
        );
        let explained = lambda::explain_event(&policy, &event).unwrap();
        assert_eq!(explained.resolution, resolution, "{what}");
    }
    // From a stranger the argument is the client's text.
    let stranger = vpc_event(
        "api_gateway_v2",
        &[
            ("/requestContext/http/sourceIp", json!("203.0.113.9")),
            ("/rawQueryString", json!("client=198.51.100.4")),
        ],
    );
    let resolution = lambda::resolve_event(&policy, &stranger).unwrap();
    assert_eq!(resolution.client.to_string(), "203.0.113.9");
    assert!(resolution.warnings.contains(Warnings::UNTRUSTED_HEADER));
}

/// Query fields AWS never writes that way are refused, naming the field.
#[test]
fn query_fields_of_the_wrong_shape_are_refused() {
    for (name, at, value, field) in [
        ("alb", "/queryStringParameters", json!(["a"]), "queryStringParameters"),
        ("alb", "/queryStringParameters", json!({"client": 1}), "queryStringParameters.client"),
        (
            "alb_multi",
            "/multiValueQueryStringParameters",
            json!({"client": "1.2.3.4"}),
            "multiValueQueryStringParameters.client",
        ),
        (
            "api_gateway_v1",
            "/multiValueQueryStringParameters",
            json!({"client": ["1.2.3.4", null]}),
            "multiValueQueryStringParameters.client[1]",
        ),
        ("api_gateway_v2", "/rawQueryString", json!(1), "rawQueryString"),
        ("function_url", "/cookies", json!("a=1"), "cookies"),
        ("api_gateway_v2", "/cookies", json!(["a=1", 2]), "cookies[1]"),
    ] {
        let event = set(vpc_event(name, &[]), at, Some(value));
        let text = lambda::resolve_event(&Policy::default(), &event).unwrap_err().to_string();
        assert!(text.contains(field), "{name} {at}: {text}");
    }
}

/// Review34: payload 2.0 moves the request's `Cookie` header into `cookies`, one cookie a
/// string, which lambda_http joins with `; ` into its `Cookie` line; `resolve_event` read
/// no cookie (fails on the old code: the stand-in, 10.0.0.5).
#[test]
fn a_cookie_strategy_reads_a_payload_2_events_cookies() {
    let policy = vpc_policy("cookie:client");
    for name in ["api_gateway_v2", "function_url"] {
        let event = set(
            vpc_event(name, &[]),
            "/cookies",
            Some(json!(["session=abc", "client=198.51.100.4"])),
        );
        let resolution = lambda::resolve_event(&policy, &event).unwrap();
        assert_eq!(resolution.client.to_string(), "198.51.100.4", "{name}");
        assert_eq!(resolution.source, Source::Cookie, "{name}");
        // The cookies stand for the Cookie header, as lambda_http's line does.
        let event = set(event, "/headers/cookie", Some(json!("client=6.6.6.6")));
        let resolution = lambda::resolve_event(&policy, &event).unwrap();
        assert_eq!(resolution.client.to_string(), "198.51.100.4", "{name}");
        let twice = set(event, "/cookies", Some(json!(["client=6.6.6.6", "client=198.51.100.4"])));
        let resolution = lambda::resolve_event(&policy, &twice).unwrap();
        assert_eq!(resolution.client.to_string(), "10.0.0.5", "{name}");
        assert!(resolution.warnings.contains(Warnings::DUPLICATE_HEADER));
    }
}
