//! `trueip simulate --format svg` in a real browser: headless Chromium (Debian's `chromium`)
//! parses the SVG (no XML error page, the forged text in the DOM) and screenshots it; the
//! screenshot must hold far more than a blank picture of the same size. Files are kept in
//! `$CARGO_TARGET_TMPDIR/simulate-svg/`.
//!
//! Needs `chromium`; without it the test fails, unless `TRUEIP_SKIP_EXTERNAL=1`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const TRUEIP: &str = env!("CARGO_BIN_EXE_trueip");
const CHAIN: &str = r#"client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> cloudfront -> alb(append) -> nginx(realip 10.50.0.0/16) -> app"#;

fn chromium_bin() -> Option<PathBuf> {
    for bin in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(bin).exists() {
            return Some(PathBuf::from(bin));
        }
    }
    support::skip_without("chromium", "apt-get install -y chromium");
    None
}

/// Runs headless Chromium on `url` with `args`; its stdout. Bounded to 60 s.
fn chromium(bin: &Path, dir: &Path, name: &str, args: &[String], url: &str) -> String {
    let profile = dir.join(format!("{name}-profile"));
    let _ = fs::remove_dir_all(&profile);
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).expect("stdout file"))
        .stderr(fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ({name}) did not finish within 60 s: {}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium ({name}) failed: {status}\n{}",
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    let _ = fs::remove_dir_all(&profile);
    fs::read_to_string(&stdout).unwrap_or_default()
}

fn svg_of(chain: &str) -> String {
    let out = Command::new(TRUEIP)
        .args(["simulate", "--format", "svg", chain])
        .output()
        .expect("run trueip simulate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 SVG")
}

/// The `width` and `height` attributes of the root element.
fn size(svg: &str) -> (u32, u32) {
    let attr = |name: &str| -> u32 {
        let key = format!(" {name}=\"");
        let start = svg.find(&key).expect("attribute") + key.len();
        let rest = svg.get(start..).expect("value");
        rest.split('"').next().and_then(|v| v.parse().ok()).expect("a number")
    };
    (attr("width"), attr("height"))
}

#[test]
fn chromium_renders_the_simulate_svg() {
    let Some(bin) = chromium_bin() else {
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("simulate-svg");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("output dir");
    let svg = svg_of(CHAIN);
    let (w, h) = size(&svg);
    let path = dir.join("chain.svg");
    fs::write(&path, &svg).expect("write svg");
    // The same size, nothing drawn: what a blank rendering compresses to.
    let blank = dir.join("blank.svg");
    fs::write(
        &blank,
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"><rect width="100%" height="100%" fill="#ffffff"/></svg>"##
        ),
    )
    .expect("write blank svg");
    let url = |p: &Path| format!("file://{}", p.display());

    let dom = chromium(&bin, &dir, "dump-dom", &["--dump-dom".to_string()], &url(&path));
    assert!(
        !dom.contains("parsererror") && !dom.contains("This page contains the following errors"),
        "Chromium could not parse the SVG:\n{dom}"
    );
    assert!(
        dom.contains(r#"class="forged""#) && dom.contains("1.2.3.4"),
        "the rendered DOM lacks the forged entry:\n{dom}"
    );

    let window = format!("--window-size={w},{h}");
    let shot = |name: &str, file: &Path| -> usize {
        let png = dir.join(format!("{name}.png"));
        chromium(
            &bin,
            &dir,
            name,
            &[
                format!("--screenshot={}", png.display()),
                window.clone(),
                "--hide-scrollbars".to_string(),
            ],
            &url(file),
        );
        let bytes =
            fs::read(&png).unwrap_or_else(|e| panic!("no screenshot {}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", png.display());
        bytes.len()
    };
    let drawn = shot("chain", &path);
    let empty = shot("blank", &blank);
    assert!(
        drawn > 10_000 && drawn > 4 * empty,
        "the screenshot ({drawn} bytes) is not much more than a blank one ({empty} bytes): \
         the SVG rendered empty; see {}",
        dir.display()
    );
}
