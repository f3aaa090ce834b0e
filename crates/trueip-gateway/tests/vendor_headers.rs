//! A CDN's client header through `trueip serve`: believed only when the hop that wrote it
//! is the CDN, and otherwise never handed to the upstream.
//!
//! The test client connects from 127.0.0.1, which stands for the ALB in front of the
//! gateway (trusted); 13.32.0.0/15 stands for CloudFront's origin-facing ranges.

mod common;

use common::*;

fn start(name: &str, up: &Upstream) -> Gateway {
    let dir = test_dir(&format!("vendor_headers/{name}"));
    let ranges = dir.join("ip-ranges.json");
    std::fs::write(
        &ranges,
        r#"{"syncToken":"1","createDate":"2025-07-24-20-23-14","prefixes":[
            {"ip_prefix":"13.32.0.0/15","region":"GLOBAL","service":"CLOUDFRONT_ORIGIN_FACING","network_border_group":"GLOBAL"}],
            "ipv6_prefixes":[]}"#,
    )
    .expect("write ranges");
    let url = up.url();
    let cloudfront = format!("cloudfront={}", ranges.display());
    Gateway::start(
        &dir,
        free_addr(),
        &[
            "--upstream",
            url.as_str(),
            "--trust",
            "127.0.0.1",
            "--trust",
            &cloudfront,
            "--strategy",
            "cloudfront",
        ],
    )
}

#[test]
fn cloudfront_viewer_address_through_cloudfront_is_believed() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("through", &up);
    let resp = Req::get("/")
        .header("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 13.32.0.9")
        .header("CloudFront-Viewer-Address", "198.51.100.7:4444")
        .must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_eq!(seen.one("X-Real-IP"), "198.51.100.7");
}

#[test]
fn forged_cloudfront_viewer_address_around_cloudfront_is_neither_believed_nor_forwarded() {
    let up = Upstream::start(Behavior::Echo);
    let gw = start("around", &up);
    // The attacker reached the ALB directly; the ALB recorded their address.
    let resp = Req::get("/")
        .header("X-Forwarded-For", "203.0.113.66")
        .header("CloudFront-Viewer-Address", "1.2.3.4:1234")
        .header("CF-Connecting-IP", "1.2.3.5")
        .header("True-Client-IP", "1.2.3.6")
        .must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = up.last();
    assert_eq!(seen.one("X-Real-IP"), "203.0.113.66");
    for name in [
        "CloudFront-Viewer-Address",
        "CF-Connecting-IP",
        "True-Client-IP",
    ] {
        assert!(
            seen.all(name).is_empty(),
            "{name} reached the upstream: {:?}",
            seen.all(name)
        );
    }
    for line in seen.all("X-Forwarded-For") {
        assert!(!line.contains("1.2.3."), "{line}");
    }
}
