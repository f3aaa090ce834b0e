//! `trueip explain` as a user runs it: arguments in, text or JSON out, exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn trueip(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trueip"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trueip");
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("trueip output");
    writer.join().expect("writer thread").expect("write stdin");
    out
}

/// The JSON of a run that succeeded.
fn answer(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    json(out)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("trueip-explain-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An AWS `ip-ranges.json` in `dir` whose CloudFront origin-facing range is `prefix`, as
/// `--trust cloudfront=FILE` and `[client_ip.providers]` read it.
fn cloudfront_ranges(dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    let ranges = dir.join("ip-ranges.json");
    let text = format!(
        r#"{{"syncToken":"1","createDate":"2025-07-24-20-23-14","prefixes":[
            {{"ip_prefix":"{prefix}","region":"GLOBAL","service":"CLOUDFRONT_ORIGIN_FACING","network_border_group":"GLOBAL"}}],
            "ipv6_prefixes":[]}}"#
    );
    std::fs::write(&ranges, text).expect("ranges");
    ranges
}

#[test]
fn text_walks_the_chain_step_by_step() {
    let out = trueip(
        &[
            "explain",
            "--peer",
            "10.0.0.5",
            "--trust",
            "10.0.0.0/8",
            "--strategy",
            "rightmost-untrusted",
            "-H",
            "X-Forwarded-For: 1.2.3.4, 203.0.113.9, 10.0.0.7",
        ],
        None,
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("client   203.0.113.9"), "{text}");
    assert!(text.contains("x-forwarded-for[-1]") && text.contains("in trust set: skip"), "{text}");
    assert!(text.contains("spoof_attempt"), "{text}");
}

#[test]
fn json_has_the_documented_fields() {
    let out = trueip(
        &[
            "explain",
            "--peer",
            "127.0.0.1:5000",
            "--trust",
            "loopback",
            "--strategy",
            "header:X-Real-IP",
            "-H",
            "X-Real-IP: 198.51.100.4",
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["client_ip"], "198.51.100.4");
    assert_eq!(v["source"], "x-real-ip");
    assert_eq!(v["trusted_hops"], 1);
    assert!(v["chain"].is_array() && v["warnings"].is_array() && v["steps"].is_array());
}

#[test]
fn bad_input_exits_2_and_names_the_fix() {
    for (args, needle) in [
        (
            vec![
                "explain",
                "--peer",
                "10.0.0.1",
                "--trust",
                "10.0.0.0/33",
                "--strategy",
                "rightmost-untrusted",
            ],
            "--trust 10.0.0.0/33",
        ),
        (
            vec!["explain", "--peer", "10.0.0.1", "--trust", "private", "--strategy", "rightmst"],
            "unknown strategy",
        ),
        (vec!["explain", "--peer", "not-an-ip"], "invalid peer"),
        (vec!["explain", "--peer", "10.0.0.1", "-H", "no colon here"], "invalid header"),
        (
            vec!["explain", "--peer", "10.0.0.1", "--config", "/nonexistent/trueip.toml"],
            "cannot read config",
        ),
        (
            vec![
                "explain",
                "--peer",
                "10.0.0.1",
                "--trust",
                "cloudflare=/nonexistent/ips",
                "--strategy",
                "cloudflare",
            ],
            "cannot read",
        ),
    ] {
        let out = trueip(&args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn batch_keeps_order_reports_bad_lines_and_goes_on() {
    let input = [
        r#"{"peer":"10.0.0.5","headers":[["X-Forwarded-For","203.0.113.9"]]}"#,
        r#"{"peer":"nope"}"#,
        r#"{"peer":"10.0.0.5","headers":[["X-Forwarded-For","1.1.1.1, 203.0.113.8, 10.0.0.9"]],"strategy":"hops:2","trust":["any"]}"#,
        r#"not json"#,
        r#"{"peer":"198.51.100.1","headers":[["X-Forwarded-For","1.1.1.1"]]}"#,
    ]
    .join("\n");
    let out = trueip(
        &["explain", "--batch", "--trust", "10.0.0.0/8", "--strategy", "rightmost-untrusted"],
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(2), "a bad line makes the exit status 2");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["client_ip"], "203.0.113.9");
    assert!(lines[1]["error"].as_str().unwrap().contains("invalid peer"));
    assert_eq!(lines[2]["client_ip"], "203.0.113.8");
    assert!(lines[3]["error"].as_str().unwrap().contains("invalid case"));
    assert_eq!(lines[4]["client_ip"], "198.51.100.1");
}

#[test]
fn batch_of_ten_thousand_lines_answers_every_line_in_order() {
    let input: String = (0..10_000)
        .map(|i| {
            format!(
                "{{\"peer\":\"10.0.0.1\",\"headers\":[[\"X-Forwarded-For\",\"198.51.{}.{}\"]]}}\n",
                i / 250,
                i % 250
            )
        })
        .collect();
    let out = trueip(
        &["explain", "--batch", "--trust", "10.0.0.0/8", "--strategy", "rightmost-untrusted"],
        Some(&input),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["client_ip"], format!("198.51.{}.{}", i / 250, i % 250));
        count += 1;
    }
    assert_eq!(count, 10_000);
}

#[test]
fn config_file_and_provider_files() {
    let dir = temp_dir("config");
    let ranges = dir.join("cloudflare-ips-v4.txt");
    std::fs::write(&ranges, "173.245.48.0/20\n").unwrap();
    let config = dir.join("trueip.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\nignored = true\n\n[client_ip]\ntrusted = [\"loopback\"]\nstrategy = [\"cloudflare\", \"rightmost-untrusted\"]\n\n[client_ip.providers]\ncloudflare = {:?}\n",
            ranges.display().to_string()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let out = trueip(
        &[
            "explain",
            "--config",
            cfg,
            "--peer",
            "173.245.48.1",
            "-H",
            "CF-Connecting-IP: 2001:db8::5",
            "--format",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["client_ip"], "2001:db8::5");
    // The chain falls back to X-Forwarded-For from loopback.
    let out = trueip(
        &[
            "explain",
            "--config",
            cfg,
            "--peer",
            "127.0.0.1",
            "-H",
            "X-Forwarded-For: 198.51.100.3",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(json(&out)["client_ip"], "198.51.100.3");
    // Flags replace the config's trust: from loopback, headers no longer count.
    let out = trueip(
        &[
            "explain",
            "--config",
            cfg,
            "--trust",
            "10.0.0.0/8",
            "--peer",
            "127.0.0.1",
            "-H",
            "X-Forwarded-For: 198.51.100.3",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(json(&out)["client_ip"], "127.0.0.1");
    // A bad key names the section.
    std::fs::write(&config, "[client_ip]\ntrusted = [\"10.0.0.0/33\"]\n").unwrap();
    let out = trueip(&["explain", "--config", cfg, "--peer", "127.0.0.1"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("client_ip.trusted[0]"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn proxy_source_from_a_trusted_sender() {
    let out = trueip(
        &[
            "explain",
            "--peer",
            "10.1.0.7",
            "--proxy-source",
            "203.0.113.50:4000",
            "--proxy-protocol-from",
            "10.1.0.0/16",
            "--format",
            "json",
        ],
        None,
    );
    let v = json(&out);
    assert_eq!(v["client_ip"], "203.0.113.50");
    assert_eq!(v["source"], "proxy-protocol");
    // The step says why the sender counts, not its verdict twice ("trusted trusted
    // PROXY protocol sender", as it once read).
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["verdict"], "trusted");
    assert_eq!(steps[0]["why"], "in proxy_protocol_from: its PROXY header names the client", "{v}");
}

/// Behind AWS PrivateLink or Azure Private Link, the endpoint id the PROXY v2 header named
/// is shown beside the client, in text and JSON, and in `--batch`; only when the header's
/// sender is trusted (the id is believed exactly when the source is), and only with a
/// proxy source (an id comes in no other way).
#[test]
fn private_endpoint_ids_are_shown_with_the_proxy_source() {
    let args = |from: &'static str, format: &'static str| {
        vec![
            "explain",
            "--peer",
            "10.1.0.7",
            "--proxy-source",
            "172.31.7.9:50000",
            "--proxy-vpce-id",
            "vpce-08d2bf15fac5001c9",
            "--proxy-azure-link-id",
            "305419896",
            "--proxy-protocol-from",
            from,
            "--format",
            format,
        ]
    };
    let out = trueip(&args("10.1.0.0/16", "text"), None);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("link     AWS VPC endpoint vpce-08d2bf15fac5001c9"), "{text}");
    assert!(text.contains("link     Azure Private Link 305419896"), "{text}");

    let v = json(&trueip(&args("10.1.0.0/16", "json"), None));
    assert_eq!(v["client_ip"], "172.31.7.9");
    assert_eq!(v["aws_vpce_id"], "vpce-08d2bf15fac5001c9");
    assert_eq!(v["azure_link_id"], 305_419_896);

    // The sender is not trusted: neither its source nor the ids it named are believed.
    let v = json(&trueip(&args("192.0.2.0/24", "json"), None));
    assert_eq!(v["client_ip"], "10.1.0.7");
    assert!(v["aws_vpce_id"].is_null() && v["azure_link_id"].is_null(), "{v}");
    let out = trueip(&args("192.0.2.0/24", "text"), None);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("link "));

    // Without a PROXY source there is no header for an id to come in.
    let out = trueip(&["explain", "--peer", "10.1.0.7", "--proxy-vpce-id", "vpce-0abc"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--proxy-source"));

    let input = concat!(
        r#"{"peer":"10.1.0.7","proxy_source":"172.31.7.9","aws_vpce_id":"vpce-0abc","azure_link_id":7}"#,
        "\n",
        r#"{"peer":"10.1.0.7","aws_vpce_id":"vpce-0abc"}"#,
        "\n",
    );
    let out = trueip(&["explain", "--batch", "--proxy-protocol-from", "10.1.0.0/16"], Some(input));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["aws_vpce_id"], "vpce-0abc");
    assert_eq!(lines[0]["azure_link_id"], 7);
    let error = lines[1]["error"].as_str().unwrap_or_default();
    assert!(error.contains("proxy_source"), "{error}");
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// Header lines: explain refuses what `trueip serve` refuses (RFC 9110 §5.1, RFC 9112 §5), with the
// same rule for `--header`, `--batch` and the config. Each case would otherwise let a line that
// never reaches an app through serve (400) decide the client in explain.

/// Runs `explain --header LINE` with every hop trusted, so an accepted line decides the answer.
fn explain_header(line: &str) -> Output {
    trueip(&["explain", "--peer", "10.0.0.5", "--trust", "any", "-H", line], None)
}

/// The line is refused: usage exit code, no answer, and a message that quotes the line, says
/// what is wrong with it and how to fix it.
fn assert_refused(line: &str, reason: &str) {
    let out = explain_header(line);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{line:?} must exit 2: {err}");
    assert!(out.stdout.is_empty(), "{line:?}: no answer: {err}");
    assert!(err.contains("--header"), "{line:?}: names the flag: {err}");
    assert!(err.contains(&format!("{line:?}")), "{line:?}: names the line: {err}");
    assert!(err.contains(reason), "{line:?}: says {reason:?}: {err}");
    assert!(err.contains("hint:"), "{line:?}: hints at the fix: {err}");
}

#[test]
fn explain_refuses_a_space_before_the_colon() {
    assert_refused("X-Forwarded-For : 6.6.6.6", "whitespace between the name and the colon");
    let out = explain_header("X-Forwarded-For : 6.6.6.6");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("X-Forwarded-For: 6.6.6.6"), "suggests the fixed line: {err}");
}

#[test]
fn explain_refuses_a_tab_before_the_colon() {
    assert_refused("X-Forwarded-For\t: 6.6.6.6", "whitespace between the name and the colon");
}

#[test]
fn explain_refuses_a_leading_space_obs_fold() {
    assert_refused(" X-Forwarded-For: 6.6.6.6", "obsolete line folding");
    assert_refused("\tX-Forwarded-For: 6.6.6.6", "obsolete line folding");
}

#[test]
fn explain_refuses_a_cr_or_lf_inside_a_value() {
    assert_refused("X-Forwarded-For: 1.1.1.1\r\nX-Real-IP: 6.6.6.6", "holds '\\r'");
    assert_refused("X-Forwarded-For: 1.1.1.1\nX-Real-IP: 6.6.6.6", "holds '\\n'");
    assert_refused("X-Forwarded-For: 6.6.6.6\r", "holds '\\r'");
}

/// A NUL cannot be passed in an argument at all; `--batch` below and the unit tests cover it.
#[test]
fn explain_refuses_a_control_byte_in_a_value() {
    assert_refused("X-Forwarded-For: 6.6.6.6\x01", "holds '\\u{1}'");
    assert_refused("X-Forwarded-For: 6.6.6.6\x7f", "holds '\\u{7f}'");
    assert_refused("X-Forwarded-For: 6.6.6.6\x1b[0m", "holds '\\u{1b}'");
}

#[test]
fn explain_refuses_an_empty_name() {
    assert_refused(": 6.6.6.6", "empty");
}

#[test]
fn explain_refuses_a_name_with_a_non_token_byte() {
    assert_refused("X-Forwarded\\For: 6.6.6.6", "not a token character");
    assert_refused("X-Forwarded-For\r\nX: 6.6.6.6", "not a token character");
}

#[test]
fn explain_accepts_what_serve_accepts() {
    for line in [
        "X-Forwarded-For: 6.6.6.6",
        "X-Forwarded-For:6.6.6.6",
        "x-forwarded-for:\t6.6.6.6\t ",
        "X-Forwarded-For: 6.6.6.6, 10.0.0.9",
    ] {
        let out = trueip(
            &[
                "explain",
                "--peer",
                "10.0.0.5",
                "--trust",
                "10.0.0.0/8",
                "-H",
                line,
                "--format",
                "json",
            ],
            None,
        );
        assert!(out.status.success(), "{line:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json(&out)["client_ip"], "6.6.6.6", "{line:?}");
    }
}

#[test]
fn explain_batch_refuses_the_same_header_fields() {
    let input = [
        r#"{"peer":"10.0.0.5","headers":[["X-Forwarded-For ","6.6.6.6"]]}"#,
        r#"{"peer":"10.0.0.5","headers":[[" X-Forwarded-For","6.6.6.6"]]}"#,
        r#"{"peer":"10.0.0.5","headers":[["X-Forwarded-For","1.1.1.1\r\nX-Real-IP: 6.6.6.6"]]}"#,
        r#"{"peer":"10.0.0.5","headers":[["X-Forwarded-For","6.6.6.6\u0000"]]}"#,
        r#"{"peer":"10.0.0.5","headers":[["","6.6.6.6"]]}"#,
        r#"{"peer":"10.0.0.5","headers":[["X-Forwarded-For","\t6.6.6.6 "]]}"#,
    ]
    .join("\n");
    let out = trueip(&["explain", "--batch", "--trust", "any"], Some(&input));
    assert_eq!(out.status.code(), Some(2), "a refused line makes the exit status 2");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for (i, reason) in [
        "whitespace between the name and the colon",
        "obsolete line folding",
        "holds '\\r'",
        "holds '\\0'",
        "empty",
    ]
    .into_iter()
    .enumerate()
    {
        let error = lines[i]["error"].as_str().unwrap_or_else(|| panic!("line {i}: {}", lines[i]));
        assert!(error.contains(reason), "line {i}: {error}");
        assert!(lines[i]["client_ip"].is_null(), "line {i}");
    }
    // Spaces and tabs around a value are not part of it, on the wire as here.
    assert_eq!(lines[5]["client_ip"], "6.6.6.6");
}

#[test]
fn explain_config_refuses_an_origin_secret_serve_could_never_receive() {
    let dir = temp_dir("secret");
    for (secret, reason) in [
        (r#"{ header = "X-Origin-Verify ", value = "s3cret" }"#, "whitespace"),
        (r#"{ header = "X-Origin-Verify", value = "s3cret\r\nX: y" }"#, "holds '\\r'"),
        (r#"{ header = "X-Origin-Verify", value = " s3cret" }"#, "whitespace"),
    ] {
        let path = dir.join("trueip.toml");
        std::fs::write(
            &path,
            format!("[client_ip]\ntrusted = [\"any\"]\norigin_secret = {secret}\n"),
        )
        .unwrap();
        let out =
            trueip(&["explain", "--peer", "10.0.0.5", "--config", path.to_str().unwrap()], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{secret}: {err}");
        assert!(err.contains("client_ip.origin_secret"), "{secret}: {err}");
        assert!(err.contains(reason), "{secret}: {err}");
        assert!(!err.contains("s3cret"), "{secret}: the secret is not echoed: {err}");
    }
}

/// The attacker skips CloudFront and talks to the ALB (10.0.0.5, trusted) directly: the ALB
/// records their address, which is not CloudFront's, so the header CloudFront would have
/// written is not believed.
#[test]
fn explain_a_cloudfront_header_from_around_cloudfront_is_not_believed() {
    let dir = temp_dir("cloudfront-around");
    let ranges = cloudfront_ranges(&dir, "13.32.0.0/15");
    let cloudfront = format!("cloudfront={}", ranges.display());
    let run = |xff: &str| {
        trueip(
            &[
                "explain",
                "--peer",
                "10.0.0.5",
                "--trust",
                "10.0.0.0/16",
                "--trust",
                &cloudfront,
                "--strategy",
                "cloudfront",
                "-H",
                &format!("X-Forwarded-For: {xff}"),
                "-H",
                "CloudFront-Viewer-Address: 1.2.3.4:1234",
                "--format",
                "json",
            ],
            None,
        )
    };
    let out = run("203.0.113.66");
    let v = answer(&out);
    assert_eq!(v["client_ip"], "203.0.113.66", "{v}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("header_writer_not_trusted"), "{v}");

    // Through CloudFront: the ALB recorded a CloudFront edge.
    let out = run("198.51.100.7, 13.32.0.9");
    let v = json(&out);
    assert_eq!(v["client_ip"], "1.2.3.4", "{v}");
    assert_eq!(v["client_port"], 1234, "{v}");
}

// ---------------------------------------------------------------------------------------
// --lambda-event: the events of the core's tests (crates/trueip/tests/lambda_events).
// ---------------------------------------------------------------------------------------

fn lambda_event(name: &str) -> String {
    format!("{}/../trueip/tests/lambda_events/{name}.json", env!("CARGO_MANIFEST_DIR"))
}

fn lambda_event_text(name: &str) -> String {
    std::fs::read_to_string(lambda_event(name)).expect("event")
}

/// The story: the ALB appended 150.172.238.178; the entries left of it are the client's.
#[test]
fn lambda_event_alb_story_text() {
    let event = lambda_event("alb");
    let out = trueip(
        &["explain", "--lambda-event", &event, "--strategy", "hops:1", "--trust", "any"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("client   150.172.238.178"), "{text}");
    assert!(text.contains("peer     150.172.238.178"), "{text}");
    assert!(text.contains("spoof_attempt"), "{text}");
    assert!(text.contains("only the ALB invokes its target"), "{text}");
    assert!(text.contains("x-forwarded-for: 203.0.113.195, 70.41.3.18, 150.172.238.178"), "{text}");
}

/// `-` reads stdin; `--format json` is the explain object of any request.
#[test]
fn lambda_event_from_stdin_as_json() {
    let out = trueip(
        &[
            "explain",
            "--lambda-event",
            "-",
            "--strategy",
            "hops:1",
            "--trust",
            "any",
            "--format",
            "json",
        ],
        Some(&lambda_event_text("alb_multi")),
    );
    let v = answer(&out);
    assert_eq!(v["client_ip"], "150.172.238.178", "{v}");
    assert_eq!(v["source"], "x-forwarded-for[-1]", "{v}");
    assert_eq!(v["warnings"], serde_json::json!(["spoof_attempt"]), "{v}");
    assert_eq!(v["steps"][0]["subject"], "alb", "{v}");
    assert_eq!(v["steps"][0]["verdict"], "trusted", "{v}");
}

/// `query:NAME` reads an event's query arguments (here an HTTP API's `rawQueryString`),
/// as `resolve_event` does; it answered the stand-in (10.0.0.5) before.
#[test]
fn lambda_event_query_argument() {
    let mut event: serde_json::Value =
        serde_json::from_str(&lambda_event_text("api_gateway_v2")).expect("event");
    event["requestContext"]["http"]["sourceIp"] = "10.0.0.5".into();
    event["rawQueryString"] = "page=2&client=198.51.100.4".into();
    let out = trueip(
        &[
            "explain",
            "--lambda-event",
            "-",
            "--trust",
            "10.0.0.0/8",
            "--strategy",
            "query:client",
            "--format",
            "json",
        ],
        Some(&event.to_string()),
    );
    let v = answer(&out);
    assert_eq!(v["client_ip"], "198.51.100.4", "{v}");
    assert_eq!(v["source"], "query:client", "{v}");
}

/// No flags: trust nothing, `sourceIp` (here IPv6) is the client.
#[test]
fn lambda_event_function_url_ipv6() {
    let event = lambda_event("function_url");
    let out = trueip(&["explain", "--lambda-event", &event, "--format", "json"], None);
    let v = answer(&out);
    assert_eq!(v["client_ip"], "2001:db8:85a3:8d3:1319:8a2e:370:7348", "{v}");
    assert_eq!(v["steps"][0]["subject"], "function-url", "{v}");
    assert_eq!(v["rate_limit_key"], "2001:db8:85a3:8d3::", "{v}");
}

/// API Gateway's own `X-Forwarded-For` (nothing left of `sourceIp`: here an HTTP API's,
/// `sourceIp` alone, and an edge-optimized REST API's, `sourceIp` and AWS's CloudFront
/// edge) is named as API Gateway's, not flagged as a stranger's header; flagged
/// `header_from_untrusted_peer` before. An entry a client wrote left of `sourceIp` still is.
#[test]
fn lambda_event_api_gateways_own_forwarded_for_is_named_as_its() {
    let out = trueip(
        &["explain", "--lambda-event", &lambda_event("api_gateway_v2"), "--format", "json"],
        None,
    );
    let v = answer(&out);
    assert_eq!(v["client_ip"], "205.255.255.176", "{v}");
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");
    let steps = v["steps"].as_array().expect("steps");
    let step = steps.iter().find(|s| s["subject"] == "x-forwarded-for").expect("the header's step");
    assert_eq!(step["value"], "205.255.255.176", "{v}");
    assert_eq!(step["verdict"], "ignored", "{v}");
    assert!(step["why"].as_str().is_some_and(|w| w.starts_with("written by API Gateway")), "{v}");

    let out = trueip(&["explain", "--lambda-event", &lambda_event("api_gateway_v1")], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("client   52.255.255.12"), "{text}");
    assert!(text.contains("x-forwarded-for: 52.255.255.12, 130.176.91.14"), "{text}");
    assert!(text.contains("edge-optimized"), "{text}");
    assert!(!text.contains("header_from_untrusted_peer"), "{text}");

    let mut forged: serde_json::Value =
        serde_json::from_str(&lambda_event_text("api_gateway_v2")).expect("event");
    forged["headers"]["x-forwarded-for"] = "6.6.6.6, 205.255.255.176".into();
    let out =
        trueip(&["explain", "--lambda-event", "-", "--format", "json"], Some(&forged.to_string()));
    let v = answer(&out);
    assert_eq!(v["client_ip"], "205.255.255.176", "{v}");
    assert_eq!(v["warnings"], serde_json::json!(["header_from_untrusted_peer"]), "{v}");
    assert!(!v["steps"].to_string().contains("written by API Gateway"), "{v}");
}

/// CloudFront → Function URL, the client having sent `X-Forwarded-For: 6.6.6.6`: the URL
/// keeps only that first value (reported by
/// <https://speedrun.nobackspacecrew.com/blog/2026/03/06/obtaining-caller-ip-address-with-lambda-furls.html>),
/// so the explanation shows it ignored and answers the edge, or the
/// `CloudFront-Viewer-Address` the edge wrote. It answered 6.6.6.6 before.
#[test]
fn lambda_event_function_url_behind_cloudfront_ignores_x_forwarded_for() {
    let dir = temp_dir("lambda-function-url-cloudfront");
    let ranges = cloudfront_ranges(&dir, "130.176.0.0/16");
    let cloudfront = format!("cloudfront={}", ranges.display());
    let mut event: serde_json::Value =
        serde_json::from_str(&lambda_event_text("function_url")).expect("event");
    event["headers"]["x-forwarded-for"] = "6.6.6.6".into();
    event["requestContext"]["http"]["sourceIp"] = "130.176.3.3".into();
    let explain = |event: &serde_json::Value, format: &str| {
        let path = dir.join("event.json");
        std::fs::write(&path, event.to_string()).expect("event");
        let path = path.display().to_string();
        let out = trueip(
            &[
                "explain",
                "--lambda-event",
                &path,
                "--lambda-preset",
                "cloudfront-api-gateway",
                "--trust",
                &cloudfront,
                "--format",
                format,
            ],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        out
    };
    let v = json(&explain(&event, "json"));
    assert_eq!(v["client_ip"], "130.176.3.3", "{v}");
    assert_eq!(v["steps"][0]["subject"], "function-url", "{v}");
    let steps = v["steps"].as_array().expect("steps");
    assert!(
        steps.iter().any(|s| s["subject"] == "x-forwarded-for"
            && s["value"] == "6.6.6.6"
            && s["why"].as_str().is_some_and(|w| w.contains("Function URL"))),
        "{v}"
    );
    let text = String::from_utf8_lossy(&explain(&event, "text").stdout).into_owned();
    assert!(text.contains("client   130.176.3.3"), "{text}");
    assert!(text.contains("keeps only the first X-Forwarded-For value"), "{text}");

    event["headers"]["cloudfront-viewer-address"] = "198.51.100.7:50123".into();
    let v = json(&explain(&event, "json"));
    assert_eq!(v["client_ip"], "198.51.100.7", "{v}");
    assert_eq!(v["source"], "cloudfront-viewer-address", "{v}");
}

/// CloudFront → API Gateway with the provider file, as the preset's help line says; the
/// config's [client_ip] works as for any explain.
#[test]
fn lambda_event_cloudfront_api_gateway_with_ranges_and_config() {
    let dir = temp_dir("lambda-cloudfront");
    let ranges = cloudfront_ranges(&dir, "130.176.0.0/16");
    let mut event: serde_json::Value =
        serde_json::from_str(&lambda_event_text("api_gateway_v2")).expect("event");
    event["headers"]["x-forwarded-for"] = "1.2.3.4, 198.51.100.7, 130.176.3.3".into();
    event["requestContext"]["http"]["sourceIp"] = "130.176.3.3".into();
    let event_path = dir.join("event.json");
    std::fs::write(&event_path, event.to_string()).expect("event");
    let event_path = event_path.display().to_string();
    let cloudfront = format!("cloudfront={}", ranges.display());
    let out = trueip(
        &[
            "explain",
            "--lambda-event",
            &event_path,
            "--strategy",
            "cloudfront",
            "--trust",
            &cloudfront,
            "--format",
            "json",
        ],
        None,
    );
    let v = answer(&out);
    assert_eq!(v["client_ip"], "198.51.100.7", "{v}");
    assert_eq!(v["warnings"], serde_json::json!(["spoof_attempt"]), "{v}");

    let config = dir.join("trueip.toml");
    std::fs::write(
        &config,
        format!(
            "[client_ip]\nstrategy = \"cloudfront\"\n[client_ip.providers]\ncloudfront = {:?}\n",
            ranges.display().to_string()
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let out = trueip(&["explain", "--lambda-event", &event_path, "--config", &config], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("client   198.51.100.7"), "{text}");
}

/// Bad events exit 2 with the file and the missing field named; nothing on stdout.
#[test]
fn lambda_event_errors_name_the_field() {
    let dir = temp_dir("lambda-errors");
    let mut alb: serde_json::Value =
        serde_json::from_str(&lambda_event_text("alb")).expect("event");
    alb["headers"].as_object_mut().expect("headers").remove("x-forwarded-for");
    let mut v1: serde_json::Value =
        serde_json::from_str(&lambda_event_text("api_gateway_v1")).expect("event");
    v1["requestContext"]["identity"]["sourceIp"] = "test-invoke-source-ip".into();
    let cases = [
        ("no-xff.json", alb.to_string(), "headers.x-forwarded-for"),
        ("test-invoke.json", v1.to_string(), "requestContext.identity.sourceIp"),
        ("s3.json", r#"{"Records": []}"#.to_string(), "unknown Lambda event"),
        ("not-json.json", "x-forwarded-for: 1.2.3.4".to_string(), "not JSON"),
    ];
    for (file, text, expected) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).expect("event");
        let path = path.display().to_string();
        let out = trueip(&["explain", "--lambda-event", &path], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(expected) && err.contains(file), "{file}: {err}");
        assert!(out.stdout.is_empty(), "{file}");
    }
    let out = trueip(&["explain", "--lambda-event", "/nonexistent/event.json"], None);
    assert_eq!(out.status.code(), Some(2));
    // The event says who the peer is: --peer with it is a usage error.
    let event = lambda_event("alb");
    let out = trueip(&["explain", "--lambda-event", &event, "--peer", "10.0.0.5"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

/// `--batch` reads a line at most as large as an event: stdin without a newline once
/// grew until memory ran out.
#[test]
fn batch_input_is_bounded() {
    let out = flooded(&["explain", "--batch"], b"{\"peer\":\"198.51.100.1\"}\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("stdin line 2: more than 16 MiB"), "{err}");
    let first = String::from_utf8_lossy(&out.stdout);
    assert!(first.contains("198.51.100.1"), "{first}");
}

/// `trueip ARGS` fed `first` on stdin, then spaces until it stops reading (a broken
/// pipe), at most 64 MiB.
fn flooded(args: &[&str], first: &'static [u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trueip"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trueip");
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(first);
        let block = vec![b' '; 1 << 20];
        for _ in 0..64 {
            if pipe.write_all(&block).is_err() {
                return;
            }
        }
    });
    let out = child.wait_with_output().expect("trueip output");
    writer.join().expect("writer thread");
    out
}

/// An event is read to a bound (16 MiB; AWS sends at most 6 MB), from stdin or a file:
/// input without end (`-` fed forever, `/dev/zero`) once made explain read until memory
/// ran out. Past the bound it stops, exits 2 and says why.
#[test]
fn lambda_event_input_is_bounded() {
    let out = flooded(&["explain", "--lambda-event", "-"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("stdin: more than 16 MiB"), "{err}");

    let dir = temp_dir("lambda-big");
    let path = dir.join("big.json");
    std::fs::write(&path, vec![b' '; (16 << 20) + 1]).expect("event");
    let path = path.display().to_string();
    let out = trueip(&["explain", "--lambda-event", &path], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("big.json: more than 16 MiB"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// --lambda-preset: the policies of trueip::lambda::Preset, by name.
// ---------------------------------------------------------------------------------------

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The preset is the policy its help line spells out in flags: the same record.
#[test]
fn lambda_preset_alb_is_the_policy_of_its_flags() {
    let event = lambda_event("alb");
    let preset = trueip(
        &["explain", "--lambda-event", &event, "--lambda-preset", "alb", "--format", "json"],
        None,
    );
    assert!(preset.status.success(), "{}", stderr(&preset));
    let flags = trueip(
        &[
            "explain",
            "--lambda-event",
            &event,
            "--strategy",
            "hops:1",
            "--trust",
            "any",
            "--format",
            "json",
        ],
        None,
    );
    assert!(flags.status.success(), "{}", stderr(&flags));
    let v = json(&preset);
    assert_eq!(v["client_ip"], "150.172.238.178", "{v}");
    assert_eq!(v["warnings"], serde_json::json!(["spoof_attempt"]), "{v}");
    assert_eq!(v, json(&flags));
}

/// The fixture event `kind` with a client-written `X-Forwarded-For: xff`, explained as JSON
/// under `--lambda-preset preset`: the answer and the event's `sourceIp`.
fn explain_with_client_xff(
    kind: &str,
    xff: &str,
    preset: &str,
) -> (serde_json::Value, serde_json::Value) {
    let mut event: serde_json::Value =
        serde_json::from_str(&lambda_event_text(kind)).expect("event");
    event["headers"]["x-forwarded-for"] = xff.into();
    let source_ip = event["requestContext"]["http"]["sourceIp"].clone();
    let out = trueip(
        &["explain", "--lambda-event", "-", "--lambda-preset", preset, "--format", "json"],
        Some(&event.to_string()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    (json(&out), source_ip)
}

/// `sourceIp` is the client whatever the headers say. The name is matched without regard
/// to case, as `Preset::from_str` does.
#[test]
fn lambda_preset_api_gateway_believes_only_source_ip() {
    // A client-written header: the API Gateway preset trusts no one to have written it.
    let (v, source_ip) = explain_with_client_xff("api_gateway_v2", "1.2.3.4", "API-Gateway");
    assert_eq!(v["client_ip"], source_ip, "{v}");
    assert_eq!(v["source"], "peer", "{v}");
}

/// The ALB preset given a Function URL event, which keeps only the first
/// `X-Forwarded-For` value a client sent: it trusts no one there (`--help` says so), where
/// `--strategy hops:1 --trust any` answered the client's 6.6.6.6.
#[test]
fn lambda_preset_alb_trusts_no_one_in_a_function_url_event() {
    let (v, source_ip) = explain_with_client_xff("function_url", "6.6.6.6", "alb");
    assert_eq!(v["client_ip"], source_ip, "{v}");
    assert!(v["warnings"].as_array().expect("warnings").contains(&"no_lambda_event".into()), "{v}");
    let help = String::from_utf8_lossy(&trueip(&["explain", "--help"], None).stdout).into_owned();
    assert!(help.contains("alb decides ALB events only"), "{help}");
}

/// CloudFront → ALB: CloudFront's ranges come from `--trust cloudfront=FILE`; without
/// them the preset says how to load them.
#[test]
fn lambda_preset_cloudfront_alb_loads_the_ranges_it_needs() {
    let dir = temp_dir("lambda-preset-cloudfront");
    let ranges = cloudfront_ranges(&dir, "130.176.0.0/16");
    let mut event: serde_json::Value =
        serde_json::from_str(&lambda_event_text("alb")).expect("event");
    event["headers"]["x-forwarded-for"] = "1.2.3.4, 198.51.100.7, 130.176.12.9".into();
    // A file rather than stdin: without the ranges trueip stops before reading the event,
    // and a write to its closed stdin would fail the harness, not the test.
    let event_path = dir.join("event.json");
    std::fs::write(&event_path, event.to_string()).expect("event");
    let event_path = event_path.display().to_string();
    let cloudfront = format!("cloudfront={}", ranges.display());
    let args = [
        "explain",
        "--lambda-event",
        &event_path,
        "--lambda-preset",
        "cloudfront-alb",
        "--format",
        "json",
    ];
    let out = trueip(&[&args[..], &["--trust", &cloudfront]].concat(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["client_ip"], "198.51.100.7", "{v}");
    assert_eq!(v["warnings"], serde_json::json!(["spoof_attempt"]), "{v}");

    let out = trueip(&args, None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--lambda-preset cloudfront-alb") && err.contains("--trust cloudfront=FILE"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn lambda_preset_unknown_name_lists_the_known_ones() {
    let event = lambda_event("alb");
    let out = trueip(&["explain", "--lambda-event", &event, "--lambda-preset", "nlb"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown Lambda preset \"nlb\""), "{err}");
    for name in ["alb", "cloudfront-alb", "api-gateway", "cloudfront-api-gateway"] {
        assert!(err.contains(name), "{name}: {err}");
    }
    assert!(out.stdout.is_empty());
}

/// Flags that would make the preset another policy, or describe no Lambda event, are
/// usage errors (exit 2) that say what is wrong.
#[test]
fn lambda_preset_refuses_flags_that_would_change_it() {
    let event = lambda_event("alb");
    let with = |extra: &[&str]| {
        trueip(
            &[&["explain", "--lambda-event", &event, "--lambda-preset", "alb"][..], extra].concat(),
            None,
        )
    };
    let out = with(&["--trust", "10.0.0.0/8"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--trust 10.0.0.0/8") && err.contains("NAME=FILE"), "{err}");
    let out = with(&["--trust", "nosuch=/dev/null"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown provider"), "{}", stderr(&out));
    for flag in [&["--strategy", "peer"][..], &["--from", "forwarded"], &["--peer", "10.0.0.5"]] {
        let out = with(flag);
        assert_eq!(out.status.code(), Some(2), "{flag:?}");
        assert!(stderr(&out).contains("cannot be used with"), "{flag:?}: {}", stderr(&out));
    }
    // A preset is for an event: without one it is a usage error, whatever else is given.
    let out = trueip(&["explain", "--lambda-preset", "alb", "--peer", "10.0.0.5"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = trueip(&["explain", "--lambda-preset", "alb"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--lambda-event"), "{}", stderr(&out));
}

#[test]
fn lambda_preset_is_in_the_help() {
    let out = trueip(&["explain", "--help"], None);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--lambda-preset <NAME>"), "{help}");
    for name in ["cloudfront-alb", "cloudfront-api-gateway", "api-gateway"] {
        assert!(help.contains(name), "{name}: {help}");
    }
}

/// `query:NAME` and `cookie:NAME` through explain: the argument decides when the gateway
/// that wrote it is trusted, the trace names it, and two of them are flagged.
#[test]
fn explain_query_and_cookie_sources() {
    let base = ["explain", "--peer", "10.0.0.7", "--trust", "10.0.0.7", "--format", "json"];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        trueip(&args, None)
    };
    let out = run(&[
        "--strategy",
        "query:client_ip",
        "--query",
        "/orders?page=2&client_ip=%5B2001%3Adb8%3A%3A4%5D%3A443",
    ]);
    let v = answer(&out);
    assert_eq!(v["client_ip"], "2001:db8::4", "{v}");
    assert_eq!(v["source"], "query:client_ip", "{v}");
    let text = v.to_string();
    assert!(text.contains("\"subject\":\"query:client_ip\""), "{text}");

    // Without --query the argument is absent and the peer stands.
    let v = json(&run(&["--strategy", "query:client_ip"]));
    assert_eq!(v["client_ip"], "10.0.0.7", "{v}");

    // Two arguments of the name: ambiguous, flagged, the peer stands.
    let v = json(&run(&[
        "--strategy",
        "query:client_ip",
        "--query",
        "client_ip=6.6.6.6&client_ip=198.51.100.4",
    ]));
    assert_eq!(v["client_ip"], "10.0.0.7", "{v}");
    assert!(v["warnings"].to_string().contains("duplicate"), "{v}");

    // Cookies: HTTP/2's split Cookie lines are one cookie list.
    let v = json(&run(&[
        "--strategy",
        "cookie:ip",
        "-H",
        "Cookie: session=abc",
        "-H",
        "Cookie: ip=198.51.100.4",
    ]));
    assert_eq!(v["client_ip"], "198.51.100.4", "{v}");
    assert_eq!(v["source"], "cookie:ip", "{v}");

    // A query string serve would refuse is refused here too.
    let out = run(&["--strategy", "query:client_ip", "--query", "client_ip=1.2.3.4 x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--query"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Batch lines carry their query too.
    let out = trueip(
        &["explain", "--batch", "--trust", "10.0.0.7", "--strategy", "query:c"],
        Some("{\"peer\":\"10.0.0.7\",\"query\":\"c=198.51.100.9\"}\n"),
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"client_ip\":\"198.51.100.9\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_unix_socket_peer_counts_only_with_trust_unix() {
    let args = |trust: &str| {
        trueip(
            &[
                "explain",
                "--peer",
                "unix",
                "--trust",
                trust,
                "-H",
                "X-Forwarded-For: 203.0.113.9",
                "--format",
                "json",
            ],
            None,
        )
    };
    let out = args("unix");
    let j = answer(&out);
    assert_eq!(j["client_ip"], "203.0.113.9", "{j}");
    assert_eq!(j["peer"], "unix:", "{j}");
    let out = args("any");
    let j = json(&out);
    assert_eq!(j["client_ip"], serde_json::Value::Null, "{j}");
    assert_eq!(j["rate_limit_key"], serde_json::Value::Null, "{j}");
    assert_eq!(j["warnings"][0], "header_from_untrusted_peer", "{j}");
    let text = trueip(&["explain", "--peer", "unix:", "-H", "X-Forwarded-For: 203.0.113.9"], None);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("client   unix: (a process on this host"), "{text}");
}

/// `--listener` decides as `trueip serve` does for that `[[listen]]` table: with its own
/// `client_ip` when it has one, else with `[client_ip]`; named by place or address.
#[test]
fn explain_decides_as_the_listener_named() {
    let dir = temp_dir("listener");
    let config = dir.join("trueip.toml");
    std::fs::write(
        &config,
        "[client_ip]\ntrusted = [\"10.0.0.0/8\"]\n\n[[listen]]\naddress = \"127.0.0.1:8080\"\n\n\
         [[listen]]\naddress = \"127.0.0.1:8081\"\nclient_ip = { trusted = [\"loopback\"] }\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let ask = |listener: &str| {
        trueip(
            &[
                "explain",
                "--config",
                cfg,
                "--listener",
                listener,
                "--peer",
                "127.0.0.1",
                "-H",
                "X-Forwarded-For: 203.0.113.9",
                "--format",
                "json",
            ],
            None,
        )
    };
    for (listener, client) in [
        ("0", "127.0.0.1"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("1", "203.0.113.9"),
        ("127.0.0.1:8081", "203.0.113.9"),
    ] {
        let out = ask(listener);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(json(&out)["client_ip"], client, "--listener {listener}");
    }
    let out = ask("2");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such listener") && err.contains("1 (127.0.0.1:8081)"), "{err}");
    // An address is an address however it is written.
    std::fs::write(
        &config,
        "[[listen]]\naddress = \"[::1]:8081\"\nclient_ip = { trusted = [\"loopback\"] }\n\n\
         [[listen]]\naddress = \"127.0.0.1:9000\"\nmode = \"tcp\"\nupstream = \"127.0.0.1:9001\"\n\n\
         [upstream]\nurl = \"http://127.0.0.1:9002\"\n",
    )
    .unwrap();
    let out = ask("[0:0::1]:8081");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["client_ip"], "203.0.113.9");
    // A tcp-mode listener reads no header: explaining one with headers is refused.
    let out = ask("1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mode = \"tcp\"") && err.contains("without -H"), "{err}");
    // Without [[listen]], serve's default listener is 0.
    std::fs::write(&config, "[client_ip]\ntrusted = [\"loopback\"]\n").unwrap();
    let out = ask("0");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["client_ip"], "203.0.113.9");
    assert!(!ask("1").status.success());
}

/// A provider file is read bounded, on both paths that load one (`--config`'s
/// `[client_ip.providers]`, `--lambda-preset`'s `--trust NAME=FILE`): a path naming
/// `/dev/zero` was read until memory ran out. The old read took this sparse file of zeros
/// whole, then failed on its first line; now it is refused at the bound.
#[test]
fn a_provider_file_past_the_bound_is_refused_unread() {
    let dir = temp_dir("provider-bound");
    let huge = dir.join("ips-v4");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(trueip::config::MAX_PROVIDER_FILE_BYTES + 1))
        .expect("sparse file");
    let config = dir.join("trueip.toml");
    std::fs::write(
        &config,
        format!(
            "[client_ip]\ntrusted = [\"cloudflare\"]\n[client_ip.providers]\ncloudflare = {:?}\n",
            huge.display().to_string()
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let trust = format!("cloudfront={}", huge.display());
    for args in [
        vec!["explain", "--config", &config, "--peer", "127.0.0.1"],
        vec![
            "explain",
            "--lambda-preset",
            "cloudfront-alb",
            "--trust",
            &trust,
            "--lambda-event",
            "-",
        ],
    ] {
        let out = trueip(&args, None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", err.get(..300).unwrap_or(&err));
        assert!(
            err.contains("larger than 33554432 bytes"),
            "{args:?}: {}",
            err.get(..300).unwrap_or(&err)
        );
    }
}

/// What no output may hold as written: ESC (`ESC [` starts a control sequence), CSI
/// (`U+009B`, the same in one character), a bidi override, a line separator, NUL.
const HOSTILE: [char; 5] = ['\u{1b}', '\u{9b}', '\u{202e}', '\u{2028}', '\0'];

/// `text` holds none of [`HOSTILE`] as written, and `escaped` as terminal mode writes it.
fn assert_escaped(what: &str, text: &str, escaped: &str) {
    for c in HOSTILE {
        assert!(!text.contains(c), "{what}: {c:?} as written: {text:?}");
    }
    assert!(text.contains(escaped), "{what}: lacks {escaped}: {text}");
}

// Pins terminal mode (`trueip::shown`) on explain's text, JSON and messages: the header value
// (text, JSON, batch), the event's header and the hint's host name reached the terminal as
// written before.
#[test]
fn text_from_headers_events_and_files_is_shown_escaped() {
    let hostile = "1.2.3.4\u{9b}31m\u{202e}\u{2028}";
    let header = format!("X-Real-IP: {hostile}");
    let args = [
        "explain",
        "--peer",
        "10.0.0.5",
        "--trust",
        "10.0.0.0/8",
        "--strategy",
        "header:X-Real-IP",
        "-H",
        &header,
    ];
    let out = trueip(&args, None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_escaped("--header", &text, r"1.2.3.4\u{9b}31m\u{202e}\u{2028}");
    // JSON escapes them as JSON does, and reads back as written.
    let out = trueip(&[&args[..], &["--format", "json"]].concat(), None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_escaped("--format json", &text, r"1.2.3.4\u009b31m\u202e\u2028");
    assert_eq!(answer(&out)["steps"][2]["value"], hostile);
    let batch = format!(
        "{}\n",
        serde_json::json!({"peer": "10.0.0.5", "headers": [["X-Real-IP", hostile]]})
    );
    let out = trueip(
        &["explain", "--batch", "--trust", "10.0.0.0/8", "--strategy", "header:X-Real-IP"],
        Some(&batch),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_escaped("--batch", &text, r"1.2.3.4\u009b31m\u202e\u2028");

    let dir = temp_dir("hostile");
    let event = dir.join("event.json");
    std::fs::write(
        &event,
        r#"{"requestContext":{"elb":{"targetGroupArn":"arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/x/y"}},
            "httpMethod":"GET","path":"/","headers":{"x-forwarded-for":"10.0.0.1","x-real-ip":"\u009b31m\u202e\u2028"}}"#,
    )
    .expect("event");
    let out = trueip(
        &[
            "explain",
            "--lambda-event",
            event.to_str().expect("UTF-8 path"),
            "--trust",
            "any",
            "--strategy",
            "header:X-Real-IP",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_escaped("--lambda-event", &text, r"\u{9b}31m\u{202e}\u{2028}");

    let config = dir.join("trueip.toml");
    std::fs::write(&config, "[client_ip]\ntrusted = [\"bad\\u001b[2J\\u202e\\u0000\"]\n")
        .expect("config");
    let out = trueip(
        &["explain", "--config", config.to_str().expect("UTF-8 path"), "--peer", "10.0.0.5"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_escaped("--config", &err, r"host:bad\u{1b}[2J\u{202e}\u{0}");
    let _ = std::fs::remove_dir_all(dir);
}
