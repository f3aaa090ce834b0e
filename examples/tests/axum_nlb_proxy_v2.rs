//! The axum-nlb-proxy-v2 story, run for real: the example on 127.0.0.1 trusting 127.0.0.30
//! (the NLB) to send PROXY headers, fed a hand-written v2 header as an NLB behind
//! PrivateLink writes it, and `/usr/sbin/haproxy` in front with the example's own
//! `haproxy.cfg` (`send-proxy-v2`).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod support;

use support::*;

/// 203.0.113.7:51000 → 10.0.0.9:80, and TLV 0xEA subtype 0x01: the VPC endpoint.
fn nlb_header() -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    out.extend_from_slice(&[0, 38, 203, 0, 113, 7, 10, 0, 0, 9, 0xC7, 0x38, 0, 80]);
    out.extend_from_slice(&[0xEA, 0, 23, 0x01]);
    out.extend_from_slice(b"vpce-08d2bf15fac5001c9");
    out
}

#[tokio::test]
async fn axum_behind_an_nlb_with_proxy_protocol_v2() {
    let nlb = format!("{NLB}/32");
    let (_app, app) = example(env!("CARGO_BIN_EXE_axum-nlb-proxy-v2"), &[&nlb]);
    let body = get(NLB, app, &nlb_header(), &[]).await.unwrap();
    assert_eq!(
        body,
        "client: 203.0.113.7:51000\nsource: ProxyProtocol\nnlb: 127.0.0.30\nvpc endpoint: vpce-08d2bf15fac5001c9\n"
    );
    // The same header from anyone else closes the connection.
    assert_eq!(get(ATTACKER, app, &nlb_header(), &[]).await, None);
    // Without one, they are a direct client, whatever their headers say.
    let body = get(ATTACKER, app, b"", &[("X-Forwarded-For", "203.0.113.7")]).await.unwrap();
    assert!(body.starts_with("client: 127.0.0.1:"), "{body}");
    assert!(body.contains("\nsource: Peer\n"), "{body}");

    let front = free_addr();
    if let Some(_haproxy) = haproxy("axum-nlb-proxy-v2/haproxy.cfg", front, app).await {
        let body = get("127.0.0.77", front, b"", &[]).await.unwrap();
        assert!(body.starts_with("client: 127.0.0.77:"), "{body}");
        assert!(body.ends_with("\nnlb: 127.0.0.30\nvpc endpoint: -\n"), "{body}");
    }
}
