//! The hyper-alb-whoami story: the example on 127.0.0.1 trusting 127.0.0.16/28 (the ALB's
//! subnets), and the test as the ALB (127.0.0.21) or the attacker (127.0.0.1) sending the
//! same headers.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod support;

use support::*;

#[tokio::test]
async fn hyper_show_me_my_original_ip_behind_an_alb() {
    let (_app, app) = example(env!("CARGO_BIN_EXE_hyper-alb-whoami"), &[PROXIES]);
    // The ALB appended the client it saw and set the scheme and port.
    let alb = [
        ("X-Forwarded-For", "198.51.100.66, 203.0.113.195"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
    ];
    let body = get(ALB, app, b"", &alb).await.unwrap();
    assert_eq!(
        body,
        "original ip: 203.0.113.195\ndirect ip: 127.0.0.21\n\
         x-forwarded-for: 198.51.100.66, 203.0.113.195\nx-forwarded-proto: https\n\
         x-forwarded-port: 443\nbelieved proto: https\nbelieved port: 443\n\
         warnings: spoof_attempt\n"
    );
    // The same headers straight from the attacker: shown, not believed.
    let body = get(ATTACKER, app, b"", &alb).await.unwrap();
    assert!(body.starts_with("original ip: 127.0.0.1\ndirect ip: 127.0.0.1\n"), "{body}");
    assert!(body.contains("\nbelieved proto: -\nbelieved port: -\n"), "{body}");
}
