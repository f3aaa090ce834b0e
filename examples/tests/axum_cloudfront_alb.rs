//! The axum-cloudfront-alb story, run for real: the example on 127.0.0.1 trusting
//! 127.0.0.16/28 (nginx and the ALB) and its stand-in CloudFront range, `/usr/sbin/nginx` in
//! front with the example's own `nginx.conf`, and the test as the ALB (127.0.0.21) or the
//! attacker (127.0.0.1).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod support;

use support::*;

#[tokio::test]
async fn axum_behind_cloudfront_alb_nginx() {
    let (_app, app) = example(env!("CARGO_BIN_EXE_axum-cloudfront-alb"), &[PROXIES]);
    let front = free_addr();
    if let Some(_nginx) = nginx("axum-cloudfront-alb/nginx.conf", front, app).await {
        // As the ALB forwards it: the viewer forged 198.51.100.66; CloudFront appended the
        // viewer, the ALB the CloudFront edge (13.32.4.5, in the stand-in range).
        let xff = [("X-Forwarded-For", "198.51.100.66, 203.0.113.195, 13.32.4.5")];
        let body = get(ALB, front, b"", &xff).await.unwrap();
        assert_eq!(
            body,
            "client: 203.0.113.195\nnginx: 127.0.0.20\ntrusted hops: 3\nwarnings: spoof_attempt\n"
        );
        // Someone who reaches nginx without the CDN and the ALB is recorded by nginx.
        let xff = [("X-Forwarded-For", "203.0.113.195, 13.32.4.5")];
        let body = get(ATTACKER, front, b"", &xff).await.unwrap();
        assert!(body.starts_with("client: 127.0.0.1\n"), "{body}");
    }
    // Someone who goes around nginx too is the peer, whatever the headers say.
    let xff = [("X-Forwarded-For", "203.0.113.195, 13.32.4.5, 127.0.0.21")];
    let body = get(ATTACKER, app, b"", &xff).await.unwrap();
    assert_eq!(
        body,
        "client: 127.0.0.1\nnginx: 127.0.0.1\ntrusted hops: 0\nwarnings: header_from_untrusted_peer\n"
    );
}
