//! The whoami page in a real browser: headless Chromium (Debian's `chromium`) loads it through
//! nginx, the test reads the client address from the rendered DOM, and keeps a screenshot in
//! `target/test-output/browser/whoami/whoami.png`.
//!
//! Chain: Chromium (127.0.0.1) → nginx (`$proxy_add_x_forwarded_for`, from 127.0.0.20) → trueip
//! (trusts 127.0.0.16/28, no upstream). The page must name 127.0.0.1, the browser, and 127.0.0.20
//! as the direct connection.
//!
//! Needs `chromium` and `nginx`; `.ci/run` installs them. Without them this test fails, unless
//! `TRUEIP_SKIP_EXTERNAL=1`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs headless Chromium with `args` then `url`; returns its stdout. Bounded to 60 s.
fn chromium(bin: &Path, dir: &Path, name: &str, args: &[String], url: &str) -> String {
    let profile = dir.join(format!("{name}-profile"));
    let _ = fs::remove_dir_all(&profile);
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url);
    let mut proc = Proc::spawn(name, cmd, dir);
    let status = proc
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("chromium ({name}) did not finish within 60 s:\n{}", proc.log()));
    assert!(status.success(), "chromium ({name}) failed: {status}\n{}", proc.log());
    fs::read_to_string(dir.join(format!("{name}.stdout"))).unwrap_or_default()
}

/// The text inside the first `<div class="{class}">`, tags removed.
fn div_text(dom: &str, class: &str) -> Option<String> {
    let open = format!("<div class=\"{class}\">");
    let start = dom.find(&open)? + open.len();
    let rest = dom.get(start..)?;
    let end = rest.find("</div>")?;
    let inner = rest.get(..end)?;
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text.trim().to_string())
}

#[test]
fn chromium_renders_the_client_behind_nginx() {
    let dir = test_dir("browser/whoami");
    let Some(chrome) = external("chromium", "chromium") else {
        return;
    };
    let gw_addr = free_addr();
    let _gw = Gateway::behind_proxies(&dir, gw_addr, None);
    let front = free_addr();
    let Some(_nginx) = Nginx::appending(&dir, front, gw_addr) else {
        return;
    };
    let url = format!("http://{front}/");

    let dom = chromium(&chrome, &dir, "dump-dom", &["--dump-dom".to_string()], &url);
    fs::write(dir.join("whoami.dom.html"), &dom).expect("keep the DOM");
    let client = div_text(&dom, "ip")
        .unwrap_or_else(|| panic!("no <div class=\"ip\"> in the rendered page:\n{dom}"));
    // The port, when shown, follows the address in a <small>.
    let client_ip = client.split([' ', '\n']).next().unwrap_or_default();
    let client_ip = client_ip
        .rsplit_once(':')
        .filter(|(ip, _)| !ip.contains(':'))
        .map_or(client_ip, |(ip, _)| ip);
    assert_eq!(client_ip, CLIENT_IP, "rendered client {client:?}");
    let direct = div_text(&dom, "value").unwrap_or_default();
    assert!(
        direct.contains(NGINX_SOURCE),
        "the direct connection card shows {direct:?}, not nginx's {NGINX_SOURCE}"
    );

    let shot = dir.join("whoami.png");
    chromium(
        &chrome,
        &dir,
        "screenshot",
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,900".to_string(),
            "--hide-scrollbars".to_string(),
        ],
        &url,
    );
    let png =
        fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a plausible PNG ({} bytes)",
        shot.display(),
        png.len()
    );
}
