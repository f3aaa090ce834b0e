//! `trueip::lambda::resolve_request` over the `lambda_http::Request` lambda_http makes
//! from each event of `tests/lambda_events/`: the same decision as `resolve_event` on
//! the raw JSON.

#![cfg(feature = "lambda-http")]
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

use serde_json::json;
use trueip::Policy;
use trueip::lambda::{self, EventError, EventKind, Preset};

mod lambda_support;
use lambda_support::{policies, text, vpc_event, vpc_policy};

#[test]
fn requests_resolve_as_their_events() {
    for name in [
        "alb",
        "alb_multi",
        "alb_multi_observed",
        "api_gateway_v1",
        "api_gateway_v2",
        "api_gateway_websocket",
        "function_url",
        "api_gateway_v1_observed",
        "api_gateway_v1_edge_observed",
        "function_url_observed",
        "function_url_cloudfront_observed",
        "api_gateway_v2_mtls_observed",
    ] {
        let text = text(name);
        let event: serde_json::Value = serde_json::from_str(&text).unwrap();
        let request = lambda_http::request::from_str(&text).unwrap();
        for policy in policies() {
            let from_event = lambda::resolve_event(&policy, &event).unwrap();
            let from_request = lambda::resolve_request(&policy, &request).unwrap();
            assert_eq!(from_request, from_event, "{name}");
            let explained = lambda::explain_request(&policy, &request).unwrap();
            assert_eq!(explained.resolution, from_event, "{name}");
            assert_eq!(
                explained.steps,
                lambda::explain_event(&policy, &event).unwrap().steps,
                "{name}"
            );
        }
    }
}

/// A request lambda_http made from an event decides as the event does where the event
/// carries more than headers: query arguments as each kind writes them (lambda_http
/// builds the request's query string from them), payload 2.0 `cookies` (its `Cookie`
/// line), and a REST API's repeated header (lambda_http keeps the `headers` line, the
/// last). Each of these failed on the old code: `resolve_event` read no argument and no
/// cookie (the stand-in, where the request read the client), and every line of the
/// repeated header (203.0.113.9, where the request had only the trusted 10.1.1.1 left).
#[test]
fn requests_resolve_as_their_events_beyond_headers() {
    let query = vpc_policy("query:client");
    let cookie = vpc_policy("cookie:client");
    let walk = vpc_policy("rightmost-untrusted");
    let cases = [
        (
            &query,
            vpc_event("alb", &[("/queryStringParameters", json!({"client": "2001%3Adb8%3A%3A4"}))]),
        ),
        (
            &query,
            vpc_event(
                "alb_multi",
                &[("/multiValueQueryStringParameters", json!({"cl%69ent": ["198.51.100.4"]}))],
            ),
        ),
        (
            &query,
            vpc_event(
                "api_gateway_v1",
                &[
                    ("/queryStringParameters", json!({"client": "2001:db8::4"})),
                    ("/multiValueQueryStringParameters", json!({"client": ["2001:db8::4"]})),
                ],
            ),
        ),
        (
            &query,
            vpc_event(
                "api_gateway_v1",
                &[
                    ("/queryStringParameters", json!({"client": "198.51.100.4"})),
                    (
                        "/multiValueQueryStringParameters",
                        json!({"client": ["6.6.6.6", "198.51.100.4"]}),
                    ),
                ],
            ),
        ),
        (
            &query,
            vpc_event(
                "api_gateway_v2",
                &[
                    ("/rawQueryString", json!("page=2&client=198.51.100.4")),
                    ("/queryStringParameters", json!({"page": "2", "client": "198.51.100.4"})),
                ],
            ),
        ),
        (
            &query,
            vpc_event(
                "function_url",
                &[
                    ("/rawQueryString", json!("client=6.6.6.6&client=198.51.100.4")),
                    ("/queryStringParameters", json!({"client": "6.6.6.6,198.51.100.4"})),
                ],
            ),
        ),
        (
            &cookie,
            vpc_event(
                "api_gateway_v2",
                &[("/cookies", json!(["session=abc", "client=198.51.100.4"]))],
            ),
        ),
        (
            &cookie,
            vpc_event(
                "function_url",
                &[
                    ("/cookies", json!(["client=198.51.100.4"])),
                    ("/headers/cookie", json!("client=6.6.6.6")),
                ],
            ),
        ),
        (
            &walk,
            vpc_event(
                "api_gateway_v1",
                &[
                    ("/multiValueHeaders/X-Forwarded-For", json!(["203.0.113.9", "10.1.1.1"])),
                    ("/headers/X-Forwarded-For", json!("10.1.1.1")),
                ],
            ),
        ),
    ];
    for (i, (policy, event)) in cases.iter().enumerate() {
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let from_event = lambda::resolve_event(policy, event).unwrap();
        let from_request = lambda::resolve_request(policy, &request).unwrap();
        assert_eq!(from_request, from_event, "case {i}");
        assert_eq!(
            lambda::explain_request(policy, &request).unwrap().steps,
            lambda::explain_event(policy, event).unwrap().steps,
            "case {i}"
        );
        if i < 3 || i == 4 || i == 6 || i == 7 {
            assert_ne!(from_event.source, trueip::Source::Peer, "case {i}");
        }
    }
}

/// lambda_http's default features read WebSocket and VPC Lattice events too: a WebSocket
/// request decides as its event does, and a VPC Lattice one is refused by name, as
/// `resolve_event` refuses the event (they were both an unknown kind).
#[test]
fn websocket_requests_decide_and_vpc_lattice_ones_are_refused_by_name() {
    let text_ws = text("api_gateway_websocket");
    let request = lambda_http::request::from_str(&text_ws).unwrap();
    let event: serde_json::Value = serde_json::from_str(&text_ws).unwrap();
    let policy = Preset::ApiGateway.builder().build().unwrap();
    assert_eq!(
        lambda::resolve_request(&policy, &request).unwrap(),
        lambda::resolve_event(&policy, &event).unwrap()
    );
    let text_lattice = text("vpc_lattice_v2");
    let request = lambda_http::request::from_str(&text_lattice).unwrap();
    let err = lambda::resolve_request(&policy, &request).unwrap_err();
    assert!(matches!(err, EventError::Unsupported { .. }), "{err}");
    let event: serde_json::Value = serde_json::from_str(&text_lattice).unwrap();
    assert_eq!(err.to_string(), lambda::resolve_event(&policy, &event).unwrap_err().to_string());
}

#[test]
fn the_alb_story_through_lambda_http() {
    let request = lambda_http::request::from_str(&text("alb")).unwrap();
    let policy = Preset::Alb.builder().build().unwrap();
    let resolution = lambda::resolve_request(&policy, &request).unwrap();
    assert_eq!(resolution.ip().unwrap().to_string(), "150.172.238.178");
    assert!(resolution.warnings.contains(trueip::Warnings::SPOOF_ATTEMPT));
}

#[test]
fn missing_fields_are_named() {
    let mut event: serde_json::Value = serde_json::from_str(&text("api_gateway_v2")).unwrap();
    event["requestContext"]["http"].as_object_mut().unwrap().remove("sourceIp");
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert_eq!(
        lambda::resolve_request(&Policy::default(), &request).unwrap_err(),
        EventError::Missing {
            kind: EventKind::ApiGatewayV2,
            field: "requestContext.http.sourceIp"
        }
    );
    let mut event: serde_json::Value = serde_json::from_str(&text("alb")).unwrap();
    event["headers"].as_object_mut().unwrap().remove("x-forwarded-for");
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert!(matches!(
        lambda::resolve_request(&Policy::default(), &request).unwrap_err(),
        EventError::Missing { kind: EventKind::Alb, .. }
    ));
}

/// The event a CloudFront distribution in front of a Function URL hands the function
/// when the client sent `X-Forwarded-For: 6.6.6.6`: the URL keeps only that first value
/// (reported by
/// <https://speedrun.nobackspacecrew.com/blog/2026/03/06/obtaining-caller-ip-address-with-lambda-furls.html>),
/// and `sourceIp` is the edge.
fn function_url_behind_cloudfront() -> String {
    let mut event: serde_json::Value = serde_json::from_str(&text("function_url")).unwrap();
    event["headers"]["x-forwarded-for"] = "6.6.6.6".into();
    event["requestContext"]["http"]["sourceIp"] = "130.176.3.3".into();
    event.to_string()
}

/// lambda_http reads a Function URL event as an HTTP API one; its host tells them apart
/// here as in `resolve_event`. Before, `cloudfront-api-gateway` answered 6.6.6.6.
#[test]
fn a_function_url_request_never_has_its_x_forwarded_for_read() {
    let text = function_url_behind_cloudfront();
    let event: serde_json::Value = serde_json::from_str(&text).unwrap();
    let request = lambda_http::request::from_str(&text).unwrap();
    for policy in policies() {
        let resolution = lambda::resolve_request(&policy, &request).unwrap();
        assert_eq!(resolution.client.to_string(), "130.176.3.3");
        assert_eq!(resolution, lambda::resolve_event(&policy, &event).unwrap());
        let explained = lambda::explain_request(&policy, &request).unwrap();
        assert_eq!(explained.steps[0].subject, "function-url");
    }
    // Without a host the kind is unknown, and refused as the event is.
    let mut event = event;
    event["requestContext"].as_object_mut().unwrap().remove("domainName");
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert_eq!(
        lambda::resolve_request(&Policy::default(), &request).unwrap_err(),
        EventError::Missing { kind: EventKind::ApiGatewayV2, field: "requestContext.domainName" }
    );
}

/// What docs/SECURITY.md says `resolve_request` cannot do: lambda_http builds a REST API
/// request's header map from `headers`, one line per name, the value of the spelling whose
/// key comes last in the JSON. A header under two spellings, which `resolve_event` does not
/// read (`a_clients_two_spellings_of_an_ordered_header_leave_the_event_its_client` in
/// tests/lambda.rs), reaches `resolve_request` as one ordinary line. If lambda_http ever
/// keeps both, this fails, and so should the limitation written there.
#[test]
fn lambda_http_keeps_one_spelling_of_a_rest_header() {
    let mut event: serde_json::Value = serde_json::from_str(&text("api_gateway_v1")).unwrap();
    event["headers"]["x-forwarded-for"] = "6.6.6.6".into();
    event["multiValueHeaders"]["x-forwarded-for"] = json!(["6.6.6.6"]);
    let text = event.to_string();
    assert!(text.find("\"x-forwarded-for\"") > text.find("\"X-Forwarded-For\""));
    let request = lambda_http::request::from_str(&text).unwrap();
    let lines: Vec<_> = request.headers().get_all("x-forwarded-for").iter().collect();
    assert_eq!(lines, ["6.6.6.6"]);
    let resolution = lambda::resolve_event(&Policy::default(), &event).unwrap();
    assert!(resolution.warnings.contains(trueip::Warnings::UNVOUCHED_HEADER));
}

#[test]
fn a_request_not_made_from_an_event_is_refused() {
    let request = lambda_http::Request::new(lambda_http::Body::Empty);
    assert!(matches!(
        lambda::resolve_request(&Policy::default(), &request).unwrap_err(),
        EventError::UnknownKind { .. }
    ));
}

/// An axum app under `lambda_http::run`: lambda_http hands the router the request it made
/// from the event, with no connection; `ClientIpLayer` takes the address AWS's front end
/// saw from its request context.
#[cfg(feature = "axum")]
mod axum_under_lambda_http {
    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use trueip::axum::{ClientIp, ClientResolution};
    use trueip::lambda::Preset;
    use trueip::tower::ClientIpLayer;

    async fn answer(policy: trueip::Policy, event: &str) -> (u16, String) {
        // Every method and path: the events are GETs and POSTs to several paths.
        let app = Router::new()
            .fallback(|ClientIp(ip): ClientIp| async move { ip.to_string() })
            .layer(ClientIpLayer::new(policy));
        let request = lambda_http::request::from_str(event).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn run(policy: trueip::Policy, event: &str) -> (u16, String) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(answer(policy, event))
    }

    #[test]
    fn the_layer_decides_from_the_event_as_resolve_event_does() {
        for name in ["alb", "alb_multi", "api_gateway_v1", "api_gateway_v2", "function_url"] {
            let text = super::text(name);
            let event: serde_json::Value = serde_json::from_str(&text).unwrap();
            for policy in super::policies() {
                let expected = trueip::lambda::resolve_event(&policy, &event).unwrap();
                let (status, body) = run(policy, &text);
                assert_eq!(status, 200, "{name}");
                assert_eq!(body, expected.ip().unwrap().to_string(), "{name}");
            }
        }
    }

    #[test]
    fn a_forged_first_entry_behind_the_alb_is_not_the_client() {
        let mut event: serde_json::Value = serde_json::from_str(&super::text("alb")).unwrap();
        event["headers"]["x-forwarded-for"] = "6.6.6.6, 150.172.238.178".into();
        let policy = Preset::Alb.builder().build().unwrap();
        assert_eq!(run(policy, &event.to_string()), (200, "150.172.238.178".to_owned()));
    }

    /// The same function reached through its Function URL, which keeps only the first
    /// `X-Forwarded-For` value the client sent: the ALB preset does not believe it (the
    /// layer answered 6.6.6.6 before the preset named the kinds of its chain).
    #[test]
    fn the_alb_preset_does_not_believe_a_function_urls_forwarded_for() {
        let mut event: serde_json::Value =
            serde_json::from_str(&super::text("function_url")).unwrap();
        event["headers"]["x-forwarded-for"] = "6.6.6.6".into();
        let policy = Preset::Alb.builder().build().unwrap();
        assert_eq!(
            run(policy, &event.to_string()),
            (200, "2001:db8:85a3:8d3:1319:8a2e:370:7348".to_owned())
        );
    }

    /// CloudFront → Function URL under `lambda_http::run`: the layer reads no
    /// `X-Forwarded-For` of a Function URL event (it answered 6.6.6.6 before), and takes
    /// `CloudFront-Viewer-Address`, which the edge overwrites, when the distribution
    /// forwards it.
    #[test]
    fn the_layer_does_not_believe_a_function_urls_forwarded_for_behind_cloudfront() {
        let policy = || super::policies().remove(3);
        assert_eq!(policy().lambda_preset(), Some(Preset::CloudfrontApiGateway));
        let text = super::function_url_behind_cloudfront();
        assert_eq!(run(policy(), &text), (200, "130.176.3.3".to_owned()));
        let mut event: serde_json::Value = serde_json::from_str(&text).unwrap();
        event["headers"]["cloudfront-viewer-address"] = "198.51.100.7:50123".into();
        assert_eq!(run(policy(), &event.to_string()), (200, "198.51.100.7".to_owned()));
    }

    /// `ClientIpLayer::signed` under lambda_http: the peer a signature that does not verify
    /// falls back to is the event's stand-in, decided as an event is. It was flagged
    /// `no_lambda_event`, untrusted, and logged the line for a request without an event
    /// (`Signed::decide` asked `Policy::resolve`, which took the stand-in for a connection).
    #[cfg(feature = "provenance")]
    #[test]
    fn a_signature_that_falls_back_under_lambda_http_keeps_the_events_stand_in() {
        use trueip::provenance::{DEFAULT_WINDOW, Key, Signed, Verifier};
        let policy = Preset::Alb.builder().build().unwrap();
        let verifier = Verifier::new([Key::new(&[1; 40]).unwrap()], DEFAULT_WINDOW).unwrap();
        let app = Router::new()
            .fallback(|ClientResolution(r): ClientResolution| async move {
                format!("{} {}", r.client, r.warnings)
            })
            .layer(ClientIpLayer::new(policy).signed(Signed::or_peer(verifier)));
        let request = lambda_http::request::from_str(&super::text("alb")).unwrap();
        let response = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(app.oneshot(request))
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        // Decided over no headers, as `rejected_resolution` decides any peer: `hops:1` finds
        // no element to walk.
        assert_eq!(body, "150.172.238.178 fewer_hops_than_configured,signature_rejected");
    }

    #[test]
    fn an_event_without_its_stand_in_is_a_500_naming_the_missing_field() {
        let mut event: serde_json::Value =
            serde_json::from_str(&super::text("api_gateway_v2")).unwrap();
        event["requestContext"]["http"].as_object_mut().unwrap().remove("sourceIp");
        let policy = Preset::ApiGateway.builder().build().unwrap();
        let (status, body) = run(policy, &event.to_string());
        assert_eq!(status, 500);
        assert_eq!(body, trueip::tower::MISSING_STAND_IN);
    }

    #[test]
    fn a_request_lambda_http_did_not_make_still_gets_the_missing_connection_500() {
        let policy = Preset::Alb.builder().build().unwrap();
        let app = Router::new()
            .route("/", get(|ClientIp(ip): ClientIp| async move { ip.to_string() }))
            .layer(ClientIpLayer::new(policy));
        let response = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(app.oneshot(http::Request::new(axum::body::Body::empty())))
            .unwrap();
        assert_eq!(response.status(), 500);
    }
}
