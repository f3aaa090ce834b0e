//! Trust per listener: a `[[listen]]` table with its own `client_ip` decides for its
//! connections, and the whoami page, the access log and the metrics name that policy.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn each_listener_decides_with_its_own_policy_and_says_which() {
    let dir = test_dir("listener_policies/two");
    let (public, internal) = (free_addr(), free_addr());
    // The public listener trusts no one ([client_ip]); the internal one trusts loopback
    // and walks X-Forwarded-For.
    let toml = format!(
        "[[listen]]\naddress = \"{public}\"\n\n[[listen]]\naddress = \"{internal}\"\n\
         client_ip = {{ trusted = [\"loopback\"] }}\n"
    );
    let gw = Gateway::start_with_config(&dir, &toml, &[public, internal], &[]);
    let xff = ("X-Forwarded-For", "203.0.113.9");

    let json = Req::get("/json").header(xff.0, xff.1).must_send(public).json();
    assert_eq!(json.str_at("client_ip"), CLIENT_IP, "{json:?}");
    assert_eq!(json.str_at("policy"), "client_ip");

    for _ in 0..2 {
        let json = Req::get("/json").header(xff.0, xff.1).must_send(internal).json();
        assert_eq!(json.str_at("client_ip"), "203.0.113.9", "{json:?}");
        assert_eq!(json.str_at("source"), "x-forwarded-for[-1]");
        assert_eq!(json.str_at("policy"), "listen[1].client_ip");
    }
    let text = Req::get("/text").must_send(internal).text();
    assert!(text.contains("policy   listen[1].client_ip"), "{text}");

    let metrics = Req::get("/metrics").must_send(public).text();
    let count = |labels: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("trueip_requests_by_listener_total{{{labels}}} "))
            })
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(count("listener=\"listen[0]\",policy=\"client_ip\""), Some(1), "{metrics}");
    assert_eq!(
        count("listener=\"listen[1]\",policy=\"listen[1].client_ip\""),
        Some(3),
        "{metrics}"
    );

    // The access log names the policy of each line.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = gw.proc.log();
        if log.contains("policy=listen[1].client_ip") && log.contains("policy=client_ip") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "access log without policy:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_listener_policy_is_checked_like_client_ip() {
    let toml =
        "[[listen]]\naddress = \"127.0.0.1:1\"\nclient_ip = { trusted = [\"10.0.0.0/33\"] }\n";
    let (code, stderr) = serve_check("listener_policies/bad", toml);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("listen[0].client_ip") && stderr.contains("10.0.0.0/33"), "{stderr}");
}

/// `--check` runs the trust lint (`trueip check`'s) over `[client_ip]` with the listeners it
/// decides for and over each listener's own policy: a valid config, and still dangerous.
#[test]
fn check_names_what_lets_a_client_forge_per_listener() {
    let dir = test_dir("listener_policies/lint");
    let toml = "[client_ip]\ntrusted = [\"10.50.1.0/24\"]\nstrategy = \"rightmost-untrusted\"\n\
                [[listen]]\naddress = \"0.0.0.0:1\"\n\
                [[listen]]\naddress = \"0.0.0.0:2\"\nclient_ip = { trusted = [\"any\"], strategy = \"hops:1\" }\n";
    let out = serve_check_in(&dir, toml);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("danger: hops_with_any_on_a_public_listener: listen[1].client_ip:"),
        "{stdout}"
    );
    assert!(stdout.contains("fix: "), "{stdout}");
    // The shared policy, trusting one subnet, is clean: one finding in all.
    assert_eq!(
        stdout.matches("danger:").count() + stdout.matches("warning:").count(),
        1,
        "{stdout}"
    );
}
