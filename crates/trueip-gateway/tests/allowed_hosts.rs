//! `[headers] allowed_hosts`: a request naming a host outside the list — in its Host, or in
//! the X-Forwarded-Host a trusted hop reported — gets 421 with a body naming the fix, is
//! counted in `trueip_client_errors_total{reason="host_not_allowed"}`, and never reaches
//! the upstream; on both wire paths (a plain GET takes the lean path, a POST with a body
//! hyper's). nginx in front passes the Host it got (`proxy_set_header Host $host`).

mod common;

use common::*;

fn refused(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("trueip_client_errors_total{reason=\"host_not_allowed\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn only_the_allowed_hosts_reach_the_upstream_on_both_paths() {
    let dir = test_dir("allowed_hosts/both_paths");
    let up = Upstream::start(Behavior::Echo);
    let addr = free_addr();
    let toml = format!(
        "[client_ip]\ntrusted = [\"loopback\"]\n\n[[listen]]\naddress = \"{addr}\"\n\n\
         [upstream]\nurl = \"{}\"\n\n[headers]\nallowed_hosts = [\"example.com\", \"*.example.com\", \"[::1]\"]\n",
        up.url()
    );
    let _gw = Gateway::start_with_config(&dir, &toml, &[addr], &[]);
    let cases: [(&[(&str, &str)], u16); 10] = [
        (&[("Host", "example.com")], 200),
        (&[("Host", "API.Example.com:8443")], 200),
        (&[("Host", "example.com.")], 200),
        (&[("Host", "[::1]:8080")], 200),
        (&[("Host", "evil.test")], 421),
        (&[("Host", "badexample.com")], 421),
        (&[("Host", "example.com.evil.test")], 421),
        // From a trusted hop, the reported host is what the upstream will be told.
        (
            &[
                ("Host", "example.com"),
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Host", "evil.test"),
            ],
            421,
        ),
        (
            &[
                ("Host", "example.com"),
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Host", "www.example.com"),
            ],
            200,
        ),
        // Not what the gateway passes on (no trusted chain reported it): not checked.
        (&[("Host", "example.com"), ("X-Forwarded-Host", "evil.test")], 200),
    ];
    let mut refusals = 0.0;
    for (headers, status) in cases {
        for req in [Req::get("/p"), Req::post("/p", b"body".to_vec())] {
            let mut req = req;
            for (n, v) in headers {
                req = req.header(n, v);
            }
            let before = up.requests().len();
            let resp = req.must_send(addr);
            assert_eq!(resp.status, status, "{} {headers:?}: {}", req.method, resp.text());
            if status == 421 {
                refusals += 1.0;
                let body = resp.text();
                assert!(
                    body.contains("host_not_allowed") && body.contains("allowed_hosts"),
                    "{body}"
                );
                assert_eq!(up.requests().len(), before, "a refused request reached the upstream");
            }
        }
    }
    let metrics = Req::get("/.trueip/metrics").header("Host", "example.com").must_send(addr).text();
    assert_eq!(refused(&metrics), refusals, "{metrics}");
}

#[test]
fn behind_nginx_the_client_host_is_checked() {
    let dir = test_dir("allowed_hosts/nginx");
    let up = Upstream::start(Behavior::Echo);
    let gw_addr = free_addr();
    let toml = format!(
        "[client_ip]\ntrusted = [\"{PROXIES_CIDR}\"]\n\n[[listen]]\naddress = \"{gw_addr}\"\n\n\
         [upstream]\nurl = \"{}\"\n\n[headers]\nallowed_hosts = [\"shop.example\"]\n",
        up.url()
    );
    let _gw = Gateway::start_with_config(&dir, &toml, &[gw_addr], &[]);
    let front = free_addr();
    let server = format!(
        "  server {{
    listen {front};
    location / {{
      proxy_pass http://{gw_addr};
      proxy_bind {NGINX_SOURCE};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}"
    );
    let Some(_nginx) = Nginx::start(&dir, front, &server) else {
        return;
    };
    let ok = Req::get("/").header("Host", "shop.example").must_send(front);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(up.last().one("Host"), "shop.example");
    let refused = Req::get("/").header("Host", "attacker.test").must_send(front);
    assert_eq!(refused.status, 421, "{}", refused.text());
    assert!(refused.text().contains("allowed_hosts"));
}

/// Two `Host` lines leave the request's host unknown (RFC 9112 §3.2 asks for 400): a
/// cache or proxy before the gateway may have taken one, the app the other. Refused on
/// both wire paths, with or without `allowed_hosts`, before a page or the upstream reads
/// either.
#[test]
fn several_host_lines_get_400_and_never_reach_the_upstream() {
    let up = Upstream::start(Behavior::Echo);
    let open = free_addr();
    let listed = free_addr();
    let toml = format!(
        "[client_ip]\ntrusted = [\"loopback\"]\n\n[[listen]]\naddress = \"{open}\"\n\n\
         [upstream]\nurl = \"{}\"\n",
        up.url()
    );
    let _gw =
        Gateway::start_with_config(&test_dir("allowed_hosts/several_open"), &toml, &[open], &[]);
    let toml = toml.replace(&open.to_string(), &listed.to_string())
        + "\n[headers]\nallowed_hosts = [\"example.com\"]\n";
    let _listed = Gateway::start_with_config(
        &test_dir("allowed_hosts/several_listed"),
        &toml,
        &[listed],
        &[],
    );
    for addr in [open, listed] {
        for req in [Req::get("/p"), Req::post("/p", b"body".to_vec())] {
            let req = req.header("Host", "example.com").header("Host", "evil.test");
            let before = up.requests().len();
            let resp = req.must_send(addr);
            assert_eq!(resp.status, 400, "{} {addr}: {}", req.method, resp.text());
            assert!(resp.text().contains("several_hosts"), "{}", resp.text());
            assert_eq!(up.requests().len(), before, "reached the upstream");
        }
        let metrics =
            Req::get("/.trueip/metrics").header("Host", "example.com").must_send(addr).text();
        assert!(
            metrics.contains("trueip_client_errors_total{reason=\"several_hosts\"} 2"),
            "{metrics}"
        );
    }
}
