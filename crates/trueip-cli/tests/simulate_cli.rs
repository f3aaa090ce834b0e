//! `trueip simulate` as a command: output formats, exit codes, error messages.

use std::process::{Command, Output};

const TRUEIP: &str = env!("CARGO_BIN_EXE_trueip");
const ISSUE: &str = r#"client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> cloudfront -> alb(append) -> nginx(realip 10.50.0.0/16) -> app"#;

fn simulate(args: &[&str]) -> Output {
    Command::new(TRUEIP).arg("simulate").args(args).output().expect("run trueip simulate")
}

#[test]
fn json_has_hops_at_app_and_config() {
    let out = simulate(&["--format", "json", ISSUE]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let hops = v["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 4, "three hops and the app");
    assert_eq!(hops[3]["name"], "app");
    assert_eq!(hops[1]["receives"]["peer"], "13.32.0.10:41001");
    let xff = &hops[2]["receives"]["headers"][1];
    assert_eq!(xff["name"], "X-Forwarded-For");
    assert_eq!(xff["value"], "1.2.3.4, 198.51.100.7, 13.32.0.10");
    assert_eq!(xff["forged"], serde_json::json!(["1.2.3.4"]));
    assert_eq!(v["at_app"]["expected"], "198.51.100.7");
    assert_eq!(v["at_app"]["recommended"]["explanation"]["client_ip"], "198.51.100.7");
    assert_eq!(v["at_app"]["recommended"]["right"], true);
    let layers: Vec<&str> = v["config"]
        .as_array()
        .expect("config")
        .iter()
        .filter_map(|s| s["layer"].as_str())
        .collect();
    assert_eq!(
        layers,
        [
            "hop 1 cloudfront",
            "hop 2 alb(append)",
            "hop 3 nginx(realip 10.50.0.0/16)",
            "app: trueip policy",
            "app: Werkzeug ProxyFix",
            "app: nginx in front of the app"
        ]
    );
}

#[test]
fn text_svg_and_mermaid() {
    let text = String::from_utf8(simulate(&[ISSUE]).stdout).expect("UTF-8");
    assert!(text.contains("X-Forwarded-For: «1.2.3.4», 198.51.100.7, 13.32.0.10, 13.32.0.10"));
    assert!(text.contains("routing.http.xff_header_processing.mode,Value=append"));
    assert!(text.contains(
        "realip took 13.32.0.10, the address of hop 1 `cloudfront`, not the client: add set_real_ip_from 13.32.0.0/15 and turn real_ip_recursive on"
    ), "{text}");
    let svg = String::from_utf8(simulate(&["--format", "svg", ISSUE]).stdout).expect("UTF-8");
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    let mermaid =
        String::from_utf8(simulate(&["--format", "mermaid", ISSUE]).stdout).expect("UTF-8");
    assert!(mermaid.starts_with("flowchart TD"));
    // Node titles break their lines as Mermaid markup, not as escaped text.
    assert!(mermaid.contains("<br/>") && !mermaid.contains("#lt;br/#gt;"), "{mermaid}");
}

#[test]
fn bad_topologies_exit_2_with_the_position_and_no_panic() {
    let cases = [
        ("client 198.51.100.7 -> nginx", "end with `-> app`"),
        ("client 198.51.100.7 -> varnish -> app", "hop 1: unknown hop `varnish`"),
        ("client 198.51.100.7 -> alb(fast) -> app", "hop 1 `alb(fast)`: unknown option `fast`"),
        ("client 1.2.3 -> app", "bad address `1.2.3`"),
        (
            "client 198.51.100.7 -> nlb(proxy-v2) -> alb -> app",
            "hop 2 `alb` gets a PROXY v2 header",
        ),
        ("client 198.51.100.7 -> trueip(trust nowhere) -> app", "trust nowhere"),
    ];
    for (line, want) in cases {
        let out = simulate(&[line]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {err}");
        assert!(err.starts_with("trueip simulate: "), "{line}: {err}");
        assert!(err.contains(want), "{line}: {err:?} lacks {want:?}");
        assert!(!err.contains("panicked"), "{line}: {err}");
    }
    let long = format!("client 198.51.100.7 {}-> app", "-> nat ".repeat(17));
    let out = simulate(&[&long]);
    assert_eq!(out.status.code(), Some(2));
    let out = simulate(&["--file", "/nonexistent/chain.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/chain.toml"));
}

#[test]
fn help_has_examples() {
    let out = Command::new(TRUEIP).args(["simulate", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Examples:") && help.contains("--format svg"), "{help}");
}

/// `text` holds none of ESC, CSI (`U+009B`), a bidi override, a line separator or NUL as
/// written, and each of `escaped`.
fn assert_escaped(what: &str, text: &str, escaped: &[&str]) {
    for c in ['\u{1b}', '\u{9b}', '\u{202e}', '\u{2028}', '\0'] {
        assert!(!text.contains(c), "{what}: {c:?} as written: {text:?}");
    }
    for e in escaped {
        assert!(text.contains(e), "{what}: lacks {e}: {text}");
    }
}

// Pins terminal mode (`trueip::shown`) on what a topology file writes: the forged value (text,
// Mermaid, JSON), the option and the error reached the terminal as written before.
#[test]
fn what_a_topology_file_writes_is_shown_escaped() {
    let dir = std::env::temp_dir().join(format!("trueip-simulate-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("chain.toml");
    let path = file.to_str().expect("UTF-8 path");
    std::fs::write(
        &file,
        r#"[client]
address = "198.51.100.7"
forges = ["X-Forwarded-For: 1.2.3.4\u009b31m\u202e\u2028, 5.6.7.8"]
[[hop]]
kind = "afd"
options = ["fdid a\u202eb"]
"#,
    )
    .expect("topology");
    for format in ["text", "mermaid"] {
        let out = simulate(&["--file", path, "--format", format]);
        assert!(out.status.success(), "{format}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_escaped(format, &text, &[r"1.2.3.4\u{9b}31m\u{202e}\u{2028}", r"a\u{202e}b"]);
    }
    let out = simulate(&["--file", path, "--format", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_escaped("json", &text, &[r"1.2.3.4\u009b31m\u202e\u2028"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        v["hops"][0]["receives"]["headers"][1]["value"],
        "1.2.3.4\u{9b}31m\u{202e}\u{2028}, 5.6.7.8"
    );
    std::fs::write(
        &file,
        "[client]\naddress = \"198.51.100.7\"\n[[hop]]\nkind = \"nginx\"\noptions = [\"bogus\\u001b[2J\\u0000\"]\n",
    )
    .expect("topology");
    let out = simulate(&["--file", path]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_escaped("error", &err, &[r"unknown option `bogus\u{1b}[2J\u{0}`"]);
    let _ = std::fs::remove_dir_all(dir);
}
