//! `trueip::lambda::resolve_event` on events already parsed into a `serde_json::Value`
//! (the Lambda runtime hands a function its event that way): the target is at most 1 µs
//! for an ALB event.
//!
//! ```text
//! cargo bench -p trueip --features lambda --bench lambda
//! ```
//!
//! The events are the ones the tests use (`tests/lambda_events/`), shaped as AWS
//! documents them: ten headers for the ALB, eighteen under mixed-case names in both
//! `headers` and `multiValueHeaders` for the REST API.

use std::hint::black_box;

use serde_json::Value;
use trueip::lambda::{self, Event, Preset};
use trueip::{Policy, TrustSet};

fn event(name: &str) -> Value {
    let path = format!("{}/tests/lambda_events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

fn policy(preset: Preset) -> Policy {
    let cloudfront = TrustSet::from_cidrs(["130.176.0.0/16".parse().ok()].into_iter().flatten());
    preset.builder().provider("cloudfront", cloudfront).build().unwrap_or_default()
}

/// The story: `x-forwarded-for: 203.0.113.195, 70.41.3.18, 150.172.238.178` behind an
/// ALB, `Preset::Alb` (the number the target is about).
#[divan::bench(sample_count = 300, sample_size = 100)]
fn alb_story(bencher: divan::Bencher) {
    let (policy, event) = (policy(Preset::Alb), event("alb"));
    assert_eq!(
        lambda::resolve_event(&policy, &event).map(|r| r.client.to_string()),
        Ok("150.172.238.178".to_string())
    );
    bencher.bench_local(|| lambda::resolve_event(black_box(&policy), black_box(&event)));
}

/// The same event with CloudFront in front (`Preset::CloudfrontAlb`): the walk goes
/// one hop further.
#[divan::bench(sample_count = 300, sample_size = 100)]
fn cloudfront_alb(bencher: divan::Bencher) {
    let policy = policy(Preset::CloudfrontAlb);
    let mut event = event("alb");
    event["headers"]["x-forwarded-for"] = "1.2.3.4, 198.51.100.7, 130.176.12.9".into();
    bencher.bench_local(|| lambda::resolve_event(black_box(&policy), black_box(&event)));
}

/// The event read alone (kind, stand-in, header checks), with no decision.
#[divan::bench(sample_count = 300, sample_size = 100)]
fn alb_parse_only(bencher: divan::Bencher) {
    let event = event("alb");
    bencher.bench_local(|| Event::parse(black_box(&event)).map(|e| e.peer()));
}

/// A REST API event: mixed-case names, so header lookups scan and the two-spellings
/// check compares pairs.
#[divan::bench(sample_count = 300, sample_size = 100)]
fn api_gateway_v1(bencher: divan::Bencher) {
    let (policy, event) = (policy(Preset::CloudfrontApiGateway), event("api_gateway_v1"));
    bencher.bench_local(|| lambda::resolve_event(black_box(&policy), black_box(&event)));
}

/// A Function URL event (payload 2.0), IPv6 `sourceIp`.
#[divan::bench(sample_count = 300, sample_size = 100)]
fn function_url(bencher: divan::Bencher) {
    let (policy, event) = (policy(Preset::ApiGateway), event("function_url"));
    bencher.bench_local(|| lambda::resolve_event(black_box(&policy), black_box(&event)));
}

/// CloudFront → Function URL (`Preset::CloudfrontApiGateway`), the viewer in
/// `CloudFront-Viewer-Address`: the stand-in is trusted, and the policy reads the event's
/// headers without `X-Forwarded-For`, which a Function URL cuts to the client's first value.
#[divan::bench(sample_count = 300, sample_size = 100)]
fn cloudfront_function_url(bencher: divan::Bencher) {
    let policy = policy(Preset::CloudfrontApiGateway);
    let mut event = event("function_url");
    event["headers"]["x-forwarded-for"] = "6.6.6.6".into();
    event["headers"]["cloudfront-viewer-address"] = "198.51.100.7:50123".into();
    event["requestContext"]["http"]["sourceIp"] = "130.176.3.3".into();
    assert_eq!(
        lambda::resolve_event(&policy, &event).map(|r| r.client.to_string()),
        Ok("198.51.100.7:50123".to_string())
    );
    bencher.bench_local(|| lambda::resolve_event(black_box(&policy), black_box(&event)));
}

/// The full record for the ALB story: what `trueip explain --lambda-event` prints from.
#[divan::bench(sample_count = 300, sample_size = 100)]
fn alb_story_explain(bencher: divan::Bencher) {
    let (policy, event) = (policy(Preset::Alb), event("alb"));
    bencher.bench_local(|| lambda::explain_event(black_box(&policy), black_box(&event)));
}

fn main() {
    divan::main();
}
