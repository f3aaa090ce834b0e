//! A CDN's client header through `trueip serve`: believed only when the hop that wrote it
//! is the CDN, and otherwise neither believed nor handed to the upstream.
//!
//! The test client connects from 127.0.0.1, which stands for the ALB in front of the
//! gateway (trusted). Each preset gets a small range file in its provider's own format.

mod common;

use common::*;

struct Vendor {
    preset: &'static str,
    header: &'static str,
    /// The range file, in the provider's format, and an address inside it.
    file: (&'static str, &'static str),
    edge: &'static str,
    /// The client as the vendor writes it, and as the upstream must see it.
    value: &'static str,
    client: &'static str,
}

const VENDORS: [Vendor; 4] = [
    Vendor {
        preset: "cloudfront",
        header: "CloudFront-Viewer-Address",
        file: (
            "ip-ranges.json",
            r#"{"syncToken":"1","createDate":"2025-07-24-20-23-14","prefixes":[
              {"ip_prefix":"13.32.0.0/15","region":"GLOBAL","service":"CLOUDFRONT_ORIGIN_FACING","network_border_group":"GLOBAL"}],
              "ipv6_prefixes":[]}"#,
        ),
        edge: "13.32.0.9",
        value: "198.51.100.7:4444",
        client: "198.51.100.7",
    },
    Vendor {
        preset: "cloudflare",
        header: "CF-Connecting-IP",
        file: ("ips-v4", "173.245.48.0/20\n103.21.244.0/22"),
        edge: "173.245.48.9",
        value: "198.51.100.7",
        client: "198.51.100.7",
    },
    Vendor {
        preset: "fastly",
        header: "Fastly-Client-IP",
        file: (
            "public-ip-list.json",
            r#"{"addresses":["151.101.0.0/16"],"ipv6_addresses":["2a04:4e40::/32"]}"#,
        ),
        edge: "151.101.1.1",
        value: "198.51.100.7",
        client: "198.51.100.7",
    },
    Vendor {
        preset: "azure-front-door",
        header: "X-Azure-ClientIP",
        file: (
            "service-tags.json",
            r#"{"changeNumber":363,"cloud":"Public","values":[{"name":"AzureFrontDoor.Backend","id":"AzureFrontDoor.Backend",
              "properties":{"changeNumber":1,"region":"","platform":"Azure","systemService":"AzureFrontDoor","addressPrefixes":["147.243.0.0/16"]}}]}"#,
        ),
        edge: "147.243.1.1",
        value: "198.51.100.7",
        client: "198.51.100.7",
    },
];

fn start(v: &Vendor, up: &Upstream) -> Gateway {
    let dir = test_dir(&format!("vendor_headers/{}", v.preset));
    let ranges = dir.join(v.file.0);
    std::fs::write(&ranges, v.file.1).expect("write ranges");
    let url = up.url();
    let provider = format!("{}={}", v.preset, ranges.display());
    Gateway::start(
        &dir,
        free_addr(),
        &[
            "--upstream",
            url.as_str(),
            "--trust",
            "127.0.0.1",
            "--trust",
            &provider,
            "--strategy",
            v.preset,
            "--strategy",
            "rightmost-untrusted",
        ],
    )
}

#[test]
fn each_cdn_header_is_believed_through_the_cdn_and_not_around_it() {
    for v in &VENDORS {
        let up = Upstream::start(Behavior::Echo);
        let gw = start(v, &up);

        // Through the CDN: the ALB appended the CDN edge it saw.
        let resp = Req::get("/")
            .header("X-Forwarded-For", &format!("6.6.6.6, {}", v.edge))
            .header(v.header, v.value)
            .must_send(gw.addr);
        assert_eq!(resp.status, 200, "{}: {}", v.preset, resp.text());
        assert_eq!(up.last().one("X-Real-IP"), v.client, "{} through", v.preset);

        // Around the CDN: the attacker reached the ALB directly; it recorded them.
        let resp = Req::get("/")
            .header("X-Forwarded-For", "203.0.113.66")
            .header(v.header, "1.2.3.4")
            .header("True-Client-IP", "1.2.3.5")
            .must_send(gw.addr);
        assert_eq!(resp.status, 200, "{}: {}", v.preset, resp.text());
        let seen = up.last();
        assert_eq!(seen.one("X-Real-IP"), "203.0.113.66", "{} around", v.preset);
        for name in [v.header, "True-Client-IP"] {
            assert!(
                seen.all(name).is_empty(),
                "{}: forged {name} reached the upstream: {:?}",
                v.preset,
                seen.all(name)
            );
        }
        for line in seen.all("X-Forwarded-For") {
            assert!(!line.contains("1.2.3."), "{}: {line}", v.preset);
        }
    }
}
