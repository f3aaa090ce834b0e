//! What the Lambda event tests (`lambda.rs`, `lambda_http.rs`) share: the events of
//! `tests/lambda_events/`, ways to edit them, and their policies. Apart from
//! `tests/support`, which needs tokio, and the Lambda-only test builds have none.

#![allow(dead_code, reason = "each test file uses a different part")]
#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed test")]

use serde_json::{Value, json};
use trueip::lambda::Preset;
use trueip::{Policy, TrustSet};

/// Stands in for CloudFront's origin-facing ranges in these tests.
const CLOUDFRONT: [&str; 2] = ["130.176.0.0/16", "2600:9000::/28"];

fn cloudfront() -> TrustSet {
    TrustSet::from_cidrs(CLOUDFRONT.iter().map(|c| c.parse().unwrap()))
}

/// `preset`'s policy, CloudFront's ranges [`CLOUDFRONT`].
pub fn policy(preset: Preset) -> Policy {
    preset.builder().provider("cloudfront", cloudfront()).build().unwrap()
}

/// Every preset's policy, in [`Preset::ALL`]'s order.
pub fn policies() -> Vec<Policy> {
    Preset::ALL.iter().map(|preset| policy(*preset)).collect()
}

/// A policy that trusts the VPC (`10.0.0.0/8`), where a gateway in front of AWS's front
/// end hands the client over in `strategy` (`query:client`, `cookie:client`).
pub fn vpc_policy(strategy: &str) -> Policy {
    Policy::builder()
        .trust_str("10.0.0.0/8")
        .unwrap()
        .strategy_str(strategy)
        .unwrap()
        .build()
        .unwrap()
}

/// The text of `tests/lambda_events/{name}.json`.
pub fn text(name: &str) -> String {
    let path = format!("{}/tests/lambda_events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

/// [`text`], parsed.
pub fn event(name: &str) -> Value {
    serde_json::from_str(&text(name)).unwrap()
}

/// `event` with the value at JSON pointer `at` (whose parent exists) set to `value`, or
/// removed when `value` is `None`.
pub fn set(mut event: Value, at: &str, value: Option<Value>) -> Value {
    let (parent, key) = at.rsplit_once('/').unwrap();
    let parent = event.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    match value {
        Some(value) => parent.insert(key.to_string(), value),
        None => parent.remove(key),
    };
    event
}

/// `name`'s event, its stand-in for the peer the VPC gateway at 10.0.0.5, with `fields`
/// ((JSON pointer, value); `null` removes) set.
pub fn vpc_event(name: &str, fields: &[(&str, Value)]) -> Value {
    let stand_in = match name {
        "alb" => ("/headers/x-forwarded-for", json!("203.0.113.195, 10.0.0.5")),
        "alb_multi" => ("/multiValueHeaders/x-forwarded-for", json!(["203.0.113.195, 10.0.0.5"])),
        "api_gateway_v1" => ("/requestContext/identity/sourceIp", json!("10.0.0.5")),
        _ => ("/requestContext/http/sourceIp", json!("10.0.0.5")),
    };
    std::iter::once(&stand_in).chain(fields).fold(event(name), |event, (at, value)| {
        set(event, at, (!value.is_null()).then(|| value.clone()))
    })
}
