//! `trueip::lambda::resolve_request` over the `lambda_http::Request` lambda_http makes
//! from each event of `tests/lambda_events/`: the same decision as `resolve_event` on
//! the raw JSON.

#![cfg(feature = "lambda-http")]
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

use trueip::lambda::{self, EventError, EventKind, Preset};
use trueip::{Policy, TrustSet};

fn text(name: &str) -> String {
    let path = format!(
        "{}/tests/lambda_events/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

fn policies() -> Vec<Policy> {
    let cloudfront = TrustSet::from_cidrs(["130.176.0.0/16".parse().unwrap()]);
    Preset::ALL
        .iter()
        .map(|preset| {
            preset
                .builder()
                .provider("cloudfront", cloudfront.clone())
                .build()
                .unwrap()
        })
        .collect()
}

#[test]
fn requests_resolve_as_their_events() {
    for name in [
        "alb",
        "alb_multi",
        "alb_multi_observed",
        "api_gateway_v1",
        "api_gateway_v2",
        "function_url",
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

#[test]
fn the_alb_story_through_lambda_http() {
    let request = lambda_http::request::from_str(&text("alb")).unwrap();
    let policy = Preset::Alb.builder().build().unwrap();
    let resolution = lambda::resolve_request(&policy, &request).unwrap();
    assert_eq!(resolution.ip().unwrap().to_string(), "150.172.238.178");
    assert!(
        resolution
            .warnings
            .contains(trueip::Warnings::SPOOF_ATTEMPT)
    );
}

#[test]
fn missing_fields_are_named() {
    let mut event: serde_json::Value = serde_json::from_str(&text("api_gateway_v2")).unwrap();
    event["requestContext"]["http"]
        .as_object_mut()
        .unwrap()
        .remove("sourceIp");
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert_eq!(
        lambda::resolve_request(&Policy::default(), &request).unwrap_err(),
        EventError::Missing {
            kind: EventKind::ApiGatewayV2,
            field: "requestContext.http.sourceIp"
        }
    );
    let mut event: serde_json::Value = serde_json::from_str(&text("alb")).unwrap();
    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("x-forwarded-for");
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert!(matches!(
        lambda::resolve_request(&Policy::default(), &request).unwrap_err(),
        EventError::Missing {
            kind: EventKind::Alb,
            ..
        }
    ));
}

#[test]
fn a_request_not_made_from_an_event_is_refused() {
    let request = lambda_http::Request::new(lambda_http::Body::Empty);
    assert!(matches!(
        lambda::resolve_request(&Policy::default(), &request).unwrap_err(),
        EventError::UnknownKind { .. }
    ));
}
