//! Trust by host name through `trueip serve` and `trueip explain`: names come from a hosts
//! file the test writes (`TRUEIP_HOSTS_FILE`), never the network. The test client connects
//! from 127.0.0.1, the balancer `lb.internal` resolves to (or stops resolving to).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

fn trueip(dir: &Path, hosts: &Path, args: &[&str]) -> Output {
    Command::new(trueip_bin())
        .args(args)
        .env("TRUEIP_HOSTS_FILE", hosts)
        .current_dir(dir)
        .output()
        .expect("run trueip")
}

/// `trueip serve` with config `toml`, names resolved from the hosts file `hosts`.
fn serve(dir: &Path, hosts: &Path, toml: &str) -> Gateway {
    std::fs::write(dir.join("trueip.toml"), toml).expect("write config");
    let addr = free_addr();
    let mut cmd = Command::new(trueip_bin());
    cmd.args(["serve", "--config"])
        .arg(dir.join("trueip.toml"))
        .args(["--listen", &addr.to_string()])
        .env("TRUEIP_HOSTS_FILE", hosts);
    let mut proc = Proc::spawn("trueip", cmd, dir);
    wait_for_port(addr, &mut proc);
    Gateway { proc, addr, dir: dir.to_path_buf() }
}

/// X-Real-IP for a request that claims 198.51.100.4 in X-Forwarded-For.
fn decided(gw: &Gateway, up: &Upstream) -> String {
    let resp = Req::get("/").header("X-Forwarded-For", "198.51.100.4").must_send(gw.addr);
    assert_eq!(resp.status, 200, "{}", resp.text());
    up.last().one("X-Real-IP").to_string()
}

/// Waits until `check` holds, at most 10 s (the refresh runs every 1 s).
fn eventually(what: &str, gw: &Gateway, mut check: impl FnMut() -> bool) {
    let why = || format!("{what}: not within 10 s\n{}", gw.proc.log());
    common::eventually(Duration::from_secs(10), || check().then_some(()), why);
}

#[test]
fn a_trusted_name_follows_its_addresses_and_keeps_the_last_good_ones() {
    let dir = test_dir("trust_names/refresh");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 lb.internal\n").expect("write hosts");
    let up = Upstream::start(Behavior::Echo);
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n[client_ip]\ntrusted = [\"lb.internal\"]\nresolve_every = \"1s\"\n",
        up.url()
    );
    let gw = serve(&dir, &hosts, &toml);

    // The name resolves to the peer: its X-Forwarded-For counts.
    assert_eq!(decided(&gw, &up), "198.51.100.4");
    let text = metrics(gw.addr);
    assert!(text.contains("trueip_trust_name_addresses{name=\"lb.internal\"} 1"), "{text}");
    assert!(
        text.contains("trueip_trust_name_resolve_failures_total{name=\"lb.internal\"} 0"),
        "{text}"
    );

    // The name stops resolving: counted, logged, and the last good address stays trusted.
    std::fs::write(&hosts, "# lb.internal is gone\n").expect("write hosts");
    eventually("a failed refresh is counted", &gw, || {
        !metrics(gw.addr)
            .contains("trueip_trust_name_resolve_failures_total{name=\"lb.internal\"} 0")
    });
    assert_eq!(decided(&gw, &up), "198.51.100.4", "the last good address stays");
    assert!(gw.proc.log().contains("last good addresses stay"), "{}", gw.proc.log());

    // It resolves elsewhere: the new policy is swapped in, the peer is no longer trusted.
    std::fs::write(&hosts, "127.0.0.9 lb.internal\n127.0.0.10 lb.internal\n").expect("write hosts");
    eventually("the new addresses are in use", &gw, || decided(&gw, &up) == "127.0.0.1");
    let text = metrics(gw.addr);
    assert!(text.contains("trueip_trust_name_addresses{name=\"lb.internal\"} 2"), "{text}");
}

#[test]
fn check_and_explain_show_the_addresses_and_refuse_a_name_that_does_not_resolve() {
    let dir = test_dir("trust_names/check");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "10.0.0.5 lb.internal\n10.0.0.6 lb.internal nginx\n")
        .expect("write hosts");

    let out = trueip(
        &dir,
        &hosts,
        &["serve", "--check", "--trust", "lb.internal", "--trust", "host:nginx"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("trust name lb.internal: 10.0.0.5, 10.0.0.6, resolved again every 30s"),
        "{stdout}"
    );
    assert!(stdout.contains("trust name nginx: 10.0.0.6"), "{stdout}");

    // Not resolving at start-up is an error, and so is an address with a typo.
    for (spec, says) in [
        ("missing.internal", "\"missing.internal\" does not resolve"),
        ("nginx", "host:nginx"),
        ("10.0.0.256", "invalid"),
    ] {
        let out = trueip(&dir, &hosts, &["serve", "--check", "--trust", spec]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(says), "{spec}: {stderr}");
    }

    // explain decides with the name's addresses and shows them.
    let args = [
        "explain",
        "--peer",
        "10.0.0.6",
        "--trust",
        "lb.internal",
        "-H",
        "X-Forwarded-For: 198.51.100.4",
    ];
    let out = trueip(&dir, &hosts, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("198.51.100.4"), "{stdout}");
    assert!(stdout.contains("trust name lb.internal: 10.0.0.5, 10.0.0.6"), "{stdout}");
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let out = trueip(&dir, &hosts, &json_args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("\"client_ip\": \"198.51.100.4\"")
            && stdout.contains("\"lb.internal\": [")
            && stdout.contains("\"10.0.0.6\""),
        "{stdout}"
    );
    // A peer the name does not resolve to is not trusted.
    let mut other = args.to_vec();
    other[2] = "10.0.0.7";
    let out = trueip(&dir, &hosts, &other);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("client   10.0.0.7"), "{stdout}");
}

// A rebuild a name's new addresses start reads the provider files again: a file rewritten
// since (a cron job that downloads a list) quotes its bad line in the rejection, as written.
// The log showed that line's CR, U+2028 and U+202E as they were, before (a second log line,
// text drawn backwards); tracing's message escaping covers ESC, not them.
#[test]
fn a_rebuild_that_a_name_starts_logs_a_rejected_provider_file_in_log_mode() {
    let dir = test_dir("trust_names/rejected_file");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 lb.internal\n").expect("write hosts");
    let list = dir.join("cf.txt");
    std::fs::write(&list, "173.245.48.0/20\n").expect("write list");
    let up = Upstream::start(Behavior::Echo);
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n[client_ip]\ntrusted = [\"lb.internal\", \"cloudflare\"]\n\
         resolve_every = \"1s\"\n[client_ip.providers]\ncloudflare = \"{}\"\n",
        up.url(),
        list.display()
    );
    let gw = serve(&dir, &hosts, &toml);
    assert_eq!(decided(&gw, &up), "198.51.100.4");

    std::fs::write(&list, "173.245.48.0/20\n10.0.0.1\r2026-12-07 forged\u{2028}x\u{202e}y\n")
        .expect("write list");
    std::fs::write(&hosts, "127.0.0.9 lb.internal\n").expect("write hosts");
    eventually("the rebuild is rejected", &gw, || {
        gw.proc.log().contains("trust names: cannot use the new addresses")
    });
    let log = gw.proc.log();
    let line = log.lines().find(|l| l.contains("cannot use the new addresses")).expect("logged");
    assert!(line.contains(r"10.0.0.1\x0d2026-12-07 forged\xe2\x80\xa8x\xe2\x80\xaey"), "{line}");
    assert!(!log.contains(['\r', '\u{2028}', '\u{202e}']), "{log:?}");
    assert_eq!(decided(&gw, &up), "198.51.100.4", "the old policy stays");
}
