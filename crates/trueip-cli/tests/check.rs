//! `trueip check`: each danger found in a config file, with exit codes for CI.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::path::PathBuf;
use std::process::{Command, Output};

const TRUEIP: &str = env!("CARGO_BIN_EXE_trueip");

fn file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(path: &PathBuf, extra: &[&str]) -> Output {
    Command::new(TRUEIP).arg("check").arg(path).args(extra).output().expect("run trueip check")
}

fn codes(out: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dangers_are_named_with_the_fix_and_fail_the_exit_code() {
    let cases = [
        (
            "[[listen]]\naddress = \"0.0.0.0:8080\"\n[client_ip]\ntrusted = [\"any\"]\nstrategy = \"rightmost-untrusted\"\n",
            vec!["trust_any_on_a_public_listener"],
        ),
        (
            "[[listen]]\naddress = \"[::]:8080\"\n[client_ip]\ntrusted = [\"0.0.0.0/0\"]\nstrategy = \"hops:1\"\n",
            vec!["hops_with_any_on_a_public_listener"],
        ),
        (
            "[[listen]]\naddress = \"0.0.0.0:8080\"\nproxy_protocol = \"v2\"\n[client_ip]\nproxy_protocol_from = [\"any\"]\n",
            vec!["proxy_protocol_from_anyone"],
        ),
        (
            "[[listen]]\naddress = \"0.0.0.0:8080\"\n[client_ip]\ntrusted = [\"private\"]\nstrategy = \"leftmost\"\n",
            vec!["private_ranges_trusted_on_a_public_listener", "leftmost_is_the_clients_text"],
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = file(&format!("danger{i}.toml"), text);
        let out = check(&path, &["--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let got = codes(&out);
        for code in want {
            assert!(got.iter().any(|c| c == code), "{text}: {got:?}");
        }
        let text_out = check(&path, &[]);
        let shown = String::from_utf8_lossy(&text_out.stdout);
        assert!(shown.contains("fix: "), "{shown}");
    }
}

/// `trusted` without `strategy` runs rightmost-untrusted, and a listener's own
/// `client_ip` decides for it: `trueip check` found neither danger before (it saw an
/// empty strategy chain, and read only `[client_ip]`), while `serve` believed any
/// X-Forwarded-For on these listeners.
#[test]
fn the_policy_that_runs_on_each_listener_is_the_one_checked() {
    let implied = file(
        "implied.toml",
        "[[listen]]\naddress = \"0.0.0.0:8080\"\n[client_ip]\ntrusted = [\"any\"]\n",
    );
    let out = check(&implied, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(codes(&out), ["trust_any_on_a_public_listener"]);
    let own = file(
        "own.toml",
        "[[listen]]\naddress = \"127.0.0.1:8080\"\n\n[[listen]]\naddress = \"0.0.0.0:8081\"\nclient_ip = { trusted = [\"any\"], strategy = \"hops:1\" }\n",
    );
    let out = check(&own, &[]);
    assert_eq!(out.status.code(), Some(1));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("hops_with_any_on_a_public_listener: listen[1].client_ip: "), "{shown}");
}

#[test]
fn safe_configs_pass() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = repo.join("trueip.example.toml");
    let out = check(&example, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let behind_alb = file(
        "alb.toml",
        "[[listen]]\naddress = \"0.0.0.0:8080\"\n[client_ip]\ntrusted = [\"10.50.1.0/24\", \"10.50.2.0/24\"]\nstrategy = \"rightmost-untrusted\"\n",
    );
    assert_eq!(check(&behind_alb, &[]).status.code(), Some(0));
    // `any` behind a local nginx is only a note.
    let local = file(
        "local.toml",
        "[[listen]]\naddress = \"127.0.0.1:8080\"\n[client_ip]\ntrusted = [\"any\"]\nstrategy = \"rightmost-untrusted\"\n",
    );
    let out = check(&local, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(codes(&out), ["trust_any_on_loopback"]);
}

#[test]
fn unreadable_or_invalid_files_exit_2() {
    for (name, text, why) in [
        ("bad.toml", "[client_ip\n", "bad.toml"),
        ("unknown.toml", "[client_ip]\ntrusts = []\n", "trusts"),
        ("listen.toml", "[[listen]]\naddress = \"nowhere\"\n", "not ip:port"),
        // Values serve refuses: the lint once skipped what it could not parse and said
        // "nothing dangerous found", exit 0.
        ("cidr.toml", "[client_ip]\ntrusted = [\"10.0.0.0/33\"]\n", "client_ip.trusted[0]"),
        (
            "strategy.toml",
            "[client_ip]\ntrusted = [\"10.0.0.0/16\"]\nstrategy = \"rightmost-untrustd\"\n",
            "client_ip.strategy[0]",
        ),
        (
            "own.toml",
            "[[listen]]\naddress = \"0.0.0.0:8080\"\nclient_ip = { proxy_protocol_from = [\"10.0.0.1/8x\"] }\n",
            "listen[0].client_ip",
        ),
    ] {
        let out = check(&file(name, text), &[]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{name}: {err}");
    }
    let out = Command::new(TRUEIP).args(["check", "/nonexistent/trueip.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn aws_ranges_of_another_service_are_a_danger() {
    let aws = file(
        "ip-ranges.json",
        r#"{"syncToken":"1","createDate":"2025-07-24-20-23-14","prefixes":[
            {"ip_prefix":"3.0.0.0/15","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"},
            {"ip_prefix":"13.32.0.0/15","region":"GLOBAL","service":"CLOUDFRONT_ORIGIN_FACING","network_border_group":"GLOBAL"}],
            "ipv6_prefixes":[]}"#,
    );
    let config = file(
        "aws.toml",
        "[[listen]]\naddress = \"0.0.0.0:8080\"\n[client_ip]\ntrusted = [\"3.0.0.0/15\"]\nstrategy = \"rightmost-untrusted\"\n",
    );
    assert_eq!(check(&config, &[]).status.code(), Some(0), "without the list nothing is known");
    let aws_arg = aws.to_str().unwrap();
    let out = check(&config, &["--aws-ip-ranges", aws_arg, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(codes(&out), ["aws_range_not_cloudfront_origin_facing"]);
    let origin = file(
        "origin.toml",
        "[[listen]]\naddress = \"0.0.0.0:8080\"\n[client_ip]\ntrusted = [\"13.32.0.0/15\"]\nstrategy = \"rightmost-untrusted\"\n",
    );
    assert_eq!(check(&origin, &["--aws-ip-ranges", aws_arg]).status.code(), Some(0));
}
