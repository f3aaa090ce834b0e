//! `trueip ranges` against a mirror on loopback serving the providers' real published
//! files (/work/shared/ranges, or $TRUEIP_RANGES_FIXTURES) and broken variants of them.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TRUEIP: &str = env!("CARGO_BIN_EXE_trueip");

fn fixtures() -> PathBuf {
    std::env::var_os("TRUEIP_RANGES_FIXTURES")
        .map_or_else(|| PathBuf::from("/work/shared/ranges"), PathBuf::from)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// What the mirror answers for a path.
enum Reply {
    Ok(&'static str, Vec<u8>),
    Status(u16),
    Redirect(&'static str),
    /// Headers, then nothing for this long.
    Stall(Duration),
    /// A 64 MiB body announced, a few bytes sent.
    Announced,
    /// Chunks of 1 MiB without an announced length, 40 of them at most.
    Endless,
    /// A whole body in 8 parts, 80 ms apart: a download slow enough to show progress.
    Trickle(Vec<u8>),
}

/// AWS's list with every CLOUDFRONT_ORIGIN_FACING entry ten times over, and a later token.
fn ten_times_larger(aws: &[u8]) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_slice(aws).expect("AWS JSON");
    let v4: Vec<serde_json::Value> = doc["prefixes"]
        .as_array()
        .expect("prefixes")
        .iter()
        .filter(|p| p["service"] == "CLOUDFRONT_ORIGIN_FACING")
        .cloned()
        .collect();
    let mut more = Vec::new();
    for _ in 0..10 {
        more.extend(v4.iter().cloned());
    }
    doc["prefixes"] = serde_json::Value::Array(more);
    // A later edition than the file's own, and not ahead of the clock (AWS's token is a time).
    let token: u64 = doc["syncToken"].as_str().and_then(|t| t.parse().ok()).expect("syncToken");
    doc["syncToken"] = serde_json::Value::String((token + 1).to_string());
    serde_json::to_vec(&doc).expect("JSON")
}

fn route(path: &str) -> Reply {
    let aws = || fixture("aws-ip-ranges.json");
    match path {
        "/aws.json" => Reply::Ok("application/json", aws()),
        "/aws-old.json" => Reply::Ok("application/json", fixture("aws-ip-ranges.2025-04-07.json")),
        "/cf-v4" => Reply::Ok("text/plain", fixture("cloudflare-ips-v4.txt")),
        "/cf-v6" => Reply::Ok("text/plain", fixture("cloudflare-ips-v6.txt")),
        "/fastly.json" => Reply::Ok("application/json", fixture("fastly-public-ip-list.json")),
        "/404" => Reply::Status(404),
        "/500" => Reply::Status(500),
        "/truncated.json" => {
            let mut a = aws();
            a.truncate(a.len() / 2);
            Reply::Ok("application/json", a)
        }
        "/empty.json" => Reply::Ok(
            "application/json",
            br#"{"syncToken":"1853388594","createDate":"2026-01-01-00-00-00","prefixes":[],"ipv6_prefixes":[]}"#.to_vec(),
        ),
        "/ten-times.json" => Reply::Ok("application/json", ten_times_larger(&aws())),
        "/html" => Reply::Ok(
            "text/html",
            b"<!doctype html><html><body>Sign in to continue</body></html>".to_vec(),
        ),
        "/loop" => Reply::Redirect("/loop"),
        "/slow" => Reply::Stall(Duration::from_secs(10)),
        "/huge" => Reply::Announced,
        "/endless" => Reply::Endless,
        "/trickle.json" => Reply::Trickle(aws()),
        _ => Reply::Status(404),
    }
}

/// A mirror on 127.0.0.1: one thread per connection, each bounded by read timeouts and
/// the stall's length.
fn mirror() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    format!("http://{addr}")
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let _ = match route(&path) {
        Reply::Ok(kind, body) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(&body)
        }
        Reply::Status(code) => write!(
            stream,
            "HTTP/1.1 {code} Oops\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops"
        ),
        Reply::Redirect(to) => write!(
            stream,
            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        Reply::Stall(d) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n1.2."
            );
            std::thread::sleep(d);
            Ok(())
        }
        Reply::Trickle(body) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            for part in body.chunks(body.len().div_ceil(8).max(1)) {
                if stream.write_all(part).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(80));
            }
            Ok(())
        }
        Reply::Announced => write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{{\"syncToken\"",
            64u64 << 20
        ),
        Reply::Endless => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            );
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..40 {
                if write!(stream, "{:x}\r\n", chunk.len()).is_err()
                    || stream.write_all(&chunk).is_err()
                    || stream.write_all(b"\r\n").is_err()
                {
                    break;
                }
            }
            Ok(())
        }
    };
}

/// A fresh directory under the target's temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ranges-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn trueip(args: &[&str]) -> Output {
    Command::new(TRUEIP).args(args).stdin(Stdio::null()).output().expect("run trueip")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn update(dir: &Path, provider: &str, from: &[String], extra: &[&str]) -> Output {
    let mut args = vec!["ranges", "update", provider, "--ranges-dir"];
    let dir = dir.to_str().expect("utf-8 path");
    args.push(dir);
    let from: Vec<String> = from.iter().map(|f| format!("{provider}={f}")).collect();
    for f in &from {
        args.push("--from");
        args.push(f);
    }
    args.extend_from_slice(extra);
    trueip(&args)
}

fn cache_file(dir: &Path, provider: &str) -> PathBuf {
    dir.join(format!("{provider}.ranges"))
}

#[test]
fn lists_fetched_from_a_mirror_are_shown_checked_and_read_by_presets() {
    let url = mirror();
    let dir = temp_dir("fetched");
    let d = dir.to_str().expect("utf-8");
    let out = update(&dir, "cloudfront", &[format!("{url}/aws.json")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    // Piped, not a terminal: no progress line drawn over itself.
    assert!(!out.stderr.iter().any(|b| *b == b'\r' || *b == 0x1b), "{}", text(&out));
    let out = update(&dir, "cloudflare", &[format!("{url}/cf-v4"), format!("{url}/cf-v6")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = update(&dir, "fastly", &[format!("{url}/fastly.json")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let azure = fixtures().join("azure-service-tags-public.json");
    let out = update(&dir, "azure-front-door", &[azure.display().to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out));

    let out = trueip(&["ranges", "show", "--format", "json", "--ranges-dir", d]);
    assert!(out.status.success(), "{}", text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let lists = shown["lists"].as_array().expect("lists");
    let count = |p: &str| {
        let l = lists.iter().find(|l| l["provider"] == p).expect(p);
        (l["ipv4"].as_u64().unwrap_or(0), l["ipv6"].as_u64().unwrap_or(0))
    };
    assert_eq!(count("cloudfront").0, 46, "{shown}");
    assert_eq!(count("cloudflare"), (15, 7));
    assert_eq!(count("fastly"), (19, 2));
    let cf = lists.iter().find(|l| l["provider"] == "cloudfront").expect("cloudfront");
    assert_eq!(cf["token"], 1_753_388_594u64);
    assert_eq!(cf["published"], "2025-07-24-20-23-14");
    let sha = cf["sources"][0]["sha256"].as_str().expect("sha256");
    assert_eq!(sha.len(), 64);

    let out = trueip(&["ranges", "check", "--max-age", "1h", "--ranges-dir", d]);
    assert!(out.status.success(), "{}", text(&out));

    let out = trueip(&["serve", "--strategy", "cloudfront", "--ranges-dir", d, "--check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cloudfront ranges: 54 prefixes, fetched "), "{}", text(&out));

    // A CloudFront origin-facing address from the cached list vouches for the header.
    let doc: serde_json::Value =
        serde_json::from_slice(&fixture("aws-ip-ranges.json")).expect("JSON");
    let prefix = doc["prefixes"]
        .as_array()
        .expect("prefixes")
        .iter()
        .find(|p| p["service"] == "CLOUDFRONT_ORIGIN_FACING")
        .and_then(|p| p["ip_prefix"].as_str())
        .expect("an origin-facing prefix");
    let peer = prefix.split('/').next().expect("address");
    let out = trueip(&[
        "explain",
        "--peer",
        peer,
        "--strategy",
        "cloudfront",
        "--ranges-dir",
        d,
        "-H",
        "CloudFront-Viewer-Address: 203.0.113.9:443",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let decided: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(decided["client_ip"], "203.0.113.9", "{decided}");
}

#[test]
fn every_broken_source_is_refused_and_the_cached_list_survives() {
    let url = mirror();
    let dir = temp_dir("broken");
    let out = update(&dir, "cloudfront", &[format!("{url}/aws.json")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let before = std::fs::read(cache_file(&dir, "cloudfront")).expect("cache");
    let cases: [(&str, &str); 11] = [
        ("/huge", "larger than"),
        ("/endless", "larger than"),
        ("/404", "404"),
        ("/500", "500"),
        ("/truncated.json", "not an AWS ip-ranges.json"),
        ("/empty.json", "no prefixes"),
        ("/html", "HTML"),
        ("/loop", "redirects"),
        ("/slow", "within"),
        ("/ten-times.json", "--force"),
        ("/aws-old.json", "older than the cached one"),
    ];
    for (path, expected) in cases {
        let started = Instant::now();
        let out = update(&dir, "cloudfront", &[format!("{url}{path}")], &["--timeout", "2s"]);
        assert_eq!(out.status.code(), Some(1), "{path}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{path}: {}", text(&out));
        assert!(stderr.contains("the cached list, if any, is kept"), "{path}");
        assert!(started.elapsed() < Duration::from_secs(8), "{path} took {:?}", started.elapsed());
        let after = std::fs::read(cache_file(&dir, "cloudfront")).expect("cache");
        assert!(after == before, "{path} changed the cached list");
    }
    // What --force may accept, it does; what does not parse it never does.
    let out = update(&dir, "cloudfront", &[format!("{url}/ten-times.json")], &["--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = update(&dir, "cloudfront", &[format!("{url}/truncated.json")], &["--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn downloads_refuse_plain_http_off_the_machine_and_tls_to_a_plain_server() {
    let url = mirror();
    let dir = temp_dir("schemes");
    let out = update(&dir, "cloudfront", &["http://192.0.2.1/ip-ranges.json".into()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("plain http is refused"), "{}", text(&out));
    // The mirror waits for an HTTP request that a TLS client never sends: the download
    // fails within its time bound (or on the handshake), it does not hang.
    let https = url.replace("http://", "https://");
    let started = Instant::now();
    let out = update(&dir, "cloudfront", &[format!("{https}/aws.json")], &["--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("TLS") || text(&out).contains("no complete answer within 2s"),
        "{}",
        text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(!cache_file(&dir, "cloudfront").exists());
}

#[test]
fn check_fails_on_a_missing_or_old_list() {
    let url = mirror();
    let dir = temp_dir("check");
    let d = dir.to_str().expect("utf-8");
    let out = trueip(&["ranges", "check", "cloudflare", "--max-age", "1h", "--ranges-dir", d]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("trueip ranges update cloudflare"), "{}", text(&out));
    let out = update(&dir, "cloudflare", &[format!("{url}/cf-v4"), format!("{url}/cf-v6")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = trueip(&["ranges", "check", "--max-age", "1h", "--ranges-dir", d]);
    assert!(out.status.success(), "{}", text(&out));
    // Back-date the fetch (the metadata line is outside the list's checksum).
    let path = cache_file(&dir, "cloudflare");
    let file = String::from_utf8(std::fs::read(&path).expect("cache")).expect("utf-8");
    let (line, rest) = file.split_once('\n').expect("metadata line");
    let mut meta: serde_json::Value = serde_json::from_str(line).expect("metadata");
    let two_days_ago = meta["fetched_at_unix"].as_u64().expect("time") - 2 * 86_400;
    meta["fetched_at_unix"] = two_days_ago.into();
    std::fs::write(&path, format!("{meta}\n{rest}")).expect("write");
    let out =
        trueip(&["ranges", "check", "--max-age", "36h", "--ranges-dir", d, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    let out = trueip(&["ranges", "check", "--max-age", "3d", "--ranges-dir", d]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_preset_whose_list_is_missing_fails_at_start_with_the_command_that_fetches_it() {
    let dir = temp_dir("missing");
    let d = dir.to_str().expect("utf-8");
    let out = trueip(&["serve", "--strategy", "cloudflare", "--ranges-dir", d, "--check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let expected = format!("trueip ranges update cloudflare --ranges-dir {d}");
    assert!(text(&out).contains(&expected), "{}", text(&out));
    let out = trueip(&[
        "explain",
        "--peer",
        "10.0.0.1",
        "--strategy",
        "azure-front-door",
        "--ranges-dir",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "trueip ranges update azure-front-door --from azure-front-door=ServiceTags_Public.json --ranges-dir {d}"
        )),
        "{}",
        text(&out)
    );
    // A file named on the command line still wins, without the cache.
    let file = fixtures().join("cloudflare-ips-v4.txt");
    let trust = format!("cloudflare={}", file.display());
    let out = trueip(&[
        "serve",
        "--strategy",
        "cloudflare",
        "--trust",
        &trust,
        "--ranges-dir",
        d,
        "--check",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_writer_killed_mid_write_leaves_the_old_list_whole() {
    let url = mirror();
    let dir = temp_dir("killed");
    let d = dir.to_str().expect("utf-8");
    let out = update(&dir, "cloudfront", &[format!("{url}/aws-old.json")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let before = std::fs::read(cache_file(&dir, "cloudfront")).expect("cache");
    let from = format!("cloudfront={url}/aws.json");
    let mut child = Command::new(TRUEIP)
        .args(["ranges", "update", "cloudfront", "--ranges-dir", d, "--from", &from])
        .env("TRUEIP_RANGES_TEST_WRITE_PAUSE_MS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run trueip");
    // The writer's temporary: `.cloudfront.ranges.<pid>-<random>.tmp`.
    let prefix = format!(".cloudfront.ranges.{}-", child.id());
    let temp_len = || {
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while temp_len().is_none_or(|len| len < 200_000) {
        assert!(Instant::now() < deadline, "the writer never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill the writer");
    let _ = child.wait();
    assert!(temp_len().is_some(), "killed mid-write, the temporary file stays");
    let after = std::fs::read(cache_file(&dir, "cloudfront")).expect("cache");
    assert!(after == before, "the cached list changed under a killed writer");
    let out = trueip(&["ranges", "show", "cloudfront", "--ranges-dir", d]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2025-04-07"), "{}", text(&out));
    // The next update completes and clears what the killed writer left.
    let out = update(&dir, "cloudfront", &[format!("{url}/aws.json")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(temp_len().is_none(), "the stale temporary file was removed");
    let out = trueip(&["ranges", "show", "cloudfront", "--ranges-dir", d]);
    assert!(text(&out).contains("2025-07-24"), "{}", text(&out));
}

/// A cache file's metadata line is outside its checksum, and `show`, `check` and a refused
/// `update` printed its values as written: an edited cache drew on the terminal (ESC, a bidi
/// override) and printed a line of its own under trueip's name. Now each value is shown in
/// terminal mode. Fails on the old code.
#[test]
fn a_cache_files_metadata_is_shown_in_terminal_mode() {
    let dir = temp_dir("odd-metadata");
    let d = dir.to_str().expect("utf-8");
    let aws = |name: &str| fixtures().join(name).display().to_string();
    let out = update(&dir, "cloudfront", &[aws("aws-ip-ranges.json")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = update(&dir, "fastly", &[aws("fastly-public-ip-list.json")], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let forged = "\ntrueip ranges: all lists fresh\u{1b}[2J\u{202e}";
    let edit = |provider: &str, key: &str| {
        let path = cache_file(&dir, provider);
        let file = String::from_utf8(std::fs::read(&path).expect("cache")).expect("utf-8");
        let (line, rest) = file.split_once('\n').expect("metadata line");
        let mut meta: serde_json::Value = serde_json::from_str(line).expect("metadata");
        meta[key] = format!("x{forged}").into();
        std::fs::write(&path, format!("{meta}\n{rest}")).expect("write");
    };
    edit("cloudfront", "published");
    edit("cloudfront", "fetched_at");
    edit("fastly", "provider");
    let shown_in_terminal_mode = |out: &Output, lines: usize| {
        let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        let all = String::from_utf8_lossy(&all);
        assert!(!all.contains(['\u{1b}', '\u{202e}']), "{}", text(out));
        assert!(
            all.contains(r"x\u{a}trueip ranges: all lists fresh\u{1b}[2J\u{202e}"),
            "{}",
            text(out)
        );
        assert_eq!(all.lines().count(), lines, "{}", text(out));
    };
    let out = trueip(&["ranges", "show", "cloudfront", "fastly", "--ranges-dir", d]);
    shown_in_terminal_mode(&out, 2);
    let out =
        trueip(&["ranges", "check", "cloudfront", "fastly", "--max-age", "1h", "--ranges-dir", d]);
    shown_in_terminal_mode(&out, 1);
    // An older edition is refused, naming the cached one's.
    let out = update(&dir, "cloudfront", &[aws("aws-ip-ranges.2025-04-07.json")], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    shown_in_terminal_mode(&out, 1);
}

#[test]
fn diff_names_the_prefixes_added_and_removed() {
    let old = fixtures().join("aws-ip-ranges.2025-04-07.json");
    let new = fixtures().join("aws-ip-ranges.json");
    let out = trueip(&[
        "ranges",
        "diff",
        old.to_str().expect("utf-8"),
        new.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let removed: Vec<&str> =
        d["removed"].as_array().expect("removed").iter().filter_map(|v| v.as_str()).collect();
    let added = d["added"].as_array().expect("added");
    assert!(removed.contains(&"52.46.0.0/22"), "{d}");
    assert!(!added.is_empty(), "{d}");
    // Reversed, added and removed swap.
    let back = trueip(&[
        "ranges",
        "diff",
        new.to_str().expect("utf-8"),
        old.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    let b: serde_json::Value = serde_json::from_slice(&back.stdout).expect("JSON");
    assert_eq!(b["added"], d["removed"]);
    assert_eq!(b["removed"], d["added"]);
}

/// Kills (by its own id) and reaps the gateway when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `addr`, the whole answer as text.
fn get(addr: &str, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

/// Polls `addr`'s /metrics until `line` shows, for at most 30 s.
fn wait_for_metric(addr: &str, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = get(addr, "/.trueip/metrics");
        if metrics.contains(line) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "no {line:?} in\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Moves the cached list's fetch time back by `secs` (the metadata line is outside the
/// list's checksum).
fn back_date(dir: &Path, provider: &str, secs: u64) {
    let path = cache_file(dir, provider);
    let file = String::from_utf8(std::fs::read(&path).expect("cache")).expect("utf-8");
    let (line, rest) = file.split_once('\n').expect("metadata line");
    let mut meta: serde_json::Value = serde_json::from_str(line).expect("metadata");
    let at = meta["fetched_at_unix"].as_u64().expect("time") - secs;
    meta["fetched_at_unix"] = at.into();
    std::fs::write(&path, format!("{meta}\n{rest}")).expect("write");
}

#[test]
fn the_gateway_refreshes_stale_lists_keeps_the_last_good_one_and_reloads_the_cache_on_sighup() {
    let url = mirror();
    let dir = temp_dir("gateway");
    let d = dir.to_str().expect("utf-8");
    // Cloudflare's IPv4 list only, and Fastly's whole list; both two days old.
    let v4 = fixtures().join("cloudflare-ips-v4.txt");
    let out = update(&dir, "cloudflare", &[v4.display().to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let fastly = fixtures().join("fastly-public-ip-list.json");
    let out = update(&dir, "fastly", &[fastly.display().to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    back_date(&dir, "cloudflare", 2 * 86_400);
    back_date(&dir, "fastly", 2 * 86_400);
    let config = dir.join("trueip.toml");
    std::fs::write(
        &config,
        format!(
            "[client_ip]\nstrategy = [\"cloudflare\", \"fastly\"]\n\
             [[listen]]\naddress = \"127.0.0.1:0\"\n\
             [log]\naccess_log = false\n\
             [ranges]\ndir = \"{d}\"\nrefresh = \"24h\"\n\
             [ranges.from]\ncloudflare = [\"{url}/cf-v4\", \"{url}/cf-v6\"]\nfastly = \"{url}/500\"\n"
        ),
    )
    .expect("config");
    let (gateway, addr, mut log, rx) =
        serve_logging(&["--config", config.to_str().expect("utf-8")]);
    // The stale Cloudflare list is fetched again (IPv4 and IPv6 now); Fastly's mirror
    // fails and its cached list stays in use.
    let metrics = wait_for_metric(&addr, "trueip_ranges_prefixes{provider=\"cloudflare\"} 22");
    let metrics = if metrics.contains("trueip_ranges_refresh_failures_total{provider=\"fastly\"} 1")
    {
        metrics
    } else {
        wait_for_metric(&addr, "trueip_ranges_refresh_failures_total{provider=\"fastly\"} 1")
    };
    assert!(metrics.contains("trueip_ranges_prefixes{provider=\"fastly\"} 21"), "{metrics}");
    assert!(
        metrics.contains("trueip_ranges_refresh_failures_total{provider=\"cloudflare\"} 0"),
        "{metrics}"
    );
    let age = metrics
        .lines()
        .find_map(|l| l.strip_prefix("trueip_ranges_age_seconds{provider=\"cloudflare\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("cloudflare's age");
    assert!(age < 3600, "refreshed just now: {age}");
    assert!(get(&addr, "/json").starts_with("HTTP/1.1 200"), "still answering");
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push(line);
    }
    assert!(
        log.iter().any(|l| l.contains("cloudflare refreshed: 7 added, 0 removed, 22 prefixes")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("refresh failed, the last good list stays") && l.contains("500")),
        "{log:#?}"
    );

    // SIGHUP reads the cache again: Fastly's list, replaced by its IPv4 half.
    let half = dir.join("fastly-v4.txt");
    let doc: serde_json::Value =
        serde_json::from_slice(&fixture("fastly-public-ip-list.json")).expect("JSON");
    let lines: Vec<&str> =
        doc["addresses"].as_array().expect("addresses").iter().filter_map(|v| v.as_str()).collect();
    std::fs::write(&half, lines.join("\n")).expect("write");
    let out = update(&dir, "fastly", &[half.display().to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = gateway.0.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
    assert!(hup.success());
    wait_for_metric(&addr, "trueip_ranges_prefixes{provider=\"fastly\"} 19");
}

/// `trueip serve ARGS` started and its address read from its log.
fn start_serve(args: &[&str]) -> (Running, String) {
    let (running, addr, _, _) = serve_logging(args);
    (running, addr)
}

/// [`start_serve`], with the log's lines up to the address and a receiver of the rest.
fn serve_logging(
    args: &[&str],
) -> (Running, String, Vec<String>, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(TRUEIP)
        .arg("serve")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trueip serve");
    let stderr = child.stderr.take().expect("stderr");
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no 'listening on' line in {log:#?}"));
        let found = line
            .split("listening on ")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .map(str::to_string);
        log.push(line);
        if let Some(addr) = found {
            return (running, addr, log, rx);
        }
    }
}

#[test]
fn every_request_during_swaps_is_answered_from_a_whole_trust_set() {
    let dir = temp_dir("swaps");
    let d = dir.to_str().expect("utf-8");
    // Two editions of Cloudflare's list, both holding 173.245.48.0/20. Every request comes
    // "from" 173.245.48.1, named in a PROXY header the loopback sender is trusted to send (no
    // list may hold loopback itself), so it is trusted under either edition, and under
    // nothing less.
    let v4 = String::from_utf8(fixture("cloudflare-ips-v4.txt")).expect("utf-8");
    let v6 = String::from_utf8(fixture("cloudflare-ips-v6.txt")).expect("utf-8");
    assert!(v4.contains("173.245.48.0/20"));
    let a = dir.join("a.txt");
    let b = dir.join("b.txt");
    std::fs::write(&a, &v4).expect("write");
    std::fs::write(&b, format!("{v4}\n{v6}")).expect("write");
    let out = update(&dir, "cloudflare", &[a.display().to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let (gateway, addr) = start_serve(&[
        "--listen",
        "127.0.0.1:0",
        "--strategy",
        "cloudflare",
        "--proxy-protocol",
        "v1",
        "--proxy-protocol-from",
        "127.0.0.1",
        "--ranges-dir",
        d,
    ]);
    // Requests go on until the swaps are done (at most 20,000 of them).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let addr = addr.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut wrong = Vec::new();
            let mut sent = 0;
            for i in 0..20_000 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                sent += 1;
                let Ok(mut stream) = TcpStream::connect(&addr) else {
                    wrong.push(format!("request {i}: cannot connect"));
                    continue;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = write!(
                    stream,
                    "PROXY TCP4 173.245.48.1 127.0.0.1 40000 80\r\nGET /json HTTP/1.1\r\nhost: t\r\ncf-connecting-ip: 198.51.100.7\r\nconnection: close\r\n\r\n"
                );
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if !answer.starts_with("HTTP/1.1 200")
                    || !answer.contains("\"client_ip\": \"198.51.100.7\"")
                {
                    wrong.push(format!("request {i}: {answer}"));
                }
            }
            (sent, wrong)
        })
    };
    let pid = gateway.0.id().to_string();
    for i in 0..20 {
        let edition = if i % 2 == 0 { &b } else { &a };
        let out = update(&dir, "cloudflare", &[edition.display().to_string()], &[]);
        assert!(out.status.success(), "{}", text(&out));
        let hup = Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
        assert!(hup.success());
        std::thread::sleep(Duration::from_millis(50));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, wrong) = client.join().expect("client thread");
    assert!(sent > 20, "requests kept coming during the swaps: {sent}");
    assert!(
        wrong.is_empty(),
        "{} of {sent} wrong answers, first: {:?}",
        wrong.len(),
        wrong.first()
    );
    // The swaps happened: the last edition (a, IPv4 only) is the one in use.
    let want = "trueip_ranges_prefixes{provider=\"cloudflare\"} 15";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut metrics = String::new();
        if let Ok(mut stream) = TcpStream::connect(&addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                stream,
                "PROXY TCP4 127.0.0.1 127.0.0.1 40000 80\r\nGET /.trueip/metrics HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.read_to_string(&mut metrics);
        }
        if metrics.contains(want) {
            break;
        }
        assert!(Instant::now() < deadline, "no {want:?} in\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `openssl`, or `None` (with a notice) when TRUEIP_SKIP_EXTERNAL=1 lets the test skip.
fn openssl() -> Option<PathBuf> {
    let found = ["/usr/bin/openssl", "/usr/local/bin/openssl"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        support::skip_without("openssl", "install the Debian package `openssl`");
    }
    found
}

#[test]
fn an_https_mirror_whose_certificate_no_public_root_signed_is_refused() {
    let Some(openssl) = openssl() else {
        return;
    };
    let dir = temp_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", text(&out));
    let config = dir.join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n[log]\naccess_log = false\n",
            cert.display(),
            key.display()
        ),
    )
    .expect("config");
    let (_gateway, addr) = start_serve(&["--config", config.to_str().expect("utf-8")]);
    let started = Instant::now();
    let out = update(&dir, "cloudfront", &[format!("https://{addr}/json")], &["--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS") && stderr.contains("certificate"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(5), "refused at the handshake");
    assert!(!cache_file(&dir, "cloudfront").exists());
}

/// Why `trueip ranges` has no Google list: `gcp-lb` trusts the Google Front End ranges,
/// which Google documents for its load balancers and which its published `cloud.json`
/// (customers' ranges) does not hold — trusting `cloud.json` would trust every customer.
#[test]
fn googles_cloud_json_does_not_hold_the_front_end_ranges_gcp_lb_trusts() {
    let doc: serde_json::Value =
        serde_json::from_slice(&fixture("google-cloud.json")).expect("JSON");
    let prefixes = doc["prefixes"].as_array().expect("prefixes");
    assert!(prefixes.len() > 100, "the real file");
    let front_ends: Vec<trueip::Cidr> =
        ["35.191.0.0/16", "130.211.0.0/22"].iter().map(|c| c.parse().expect("CIDR")).collect();
    for p in prefixes {
        let Some(text) = p["ipv4Prefix"].as_str() else {
            continue;
        };
        let cidr: trueip::Cidr = text.parse().expect("cloud.json CIDR");
        for gfe in &front_ends {
            let overlap = gfe.contains(cidr.network()) || cidr.contains(gfe.network());
            assert!(!overlap, "{cidr} overlaps {gfe}");
        }
    }
}

#[test]
fn a_refresh_stuck_on_a_slow_mirror_does_not_hold_up_the_shutdown() {
    let url = mirror();
    let dir = temp_dir("shutdown");
    let d = dir.to_str().expect("utf-8");
    let v4 = fixtures().join("cloudflare-ips-v4.txt");
    let out = update(&dir, "cloudflare", &[v4.display().to_string()], &[]);
    assert!(out.status.success(), "{}", text(&out));
    back_date(&dir, "cloudflare", 2 * 86_400);
    let config = dir.join("trueip.toml");
    std::fs::write(
        &config,
        format!(
            "[client_ip]\nstrategy = \"cloudflare\"\n[[listen]]\naddress = \"127.0.0.1:0\"\n\
             [ranges]\ndir = \"{d}\"\nrefresh = \"24h\"\ntimeout = \"60s\"\n\
             [ranges.from]\ncloudflare = \"{url}/slow\"\n"
        ),
    )
    .expect("config");
    let (mut gateway, addr) = start_serve(&["--config", config.to_str().expect("utf-8")]);
    // The refresh is under way (the mirror stalls for 10 s); the gateway still answers.
    std::thread::sleep(Duration::from_millis(300));
    assert!(get(&addr, "/json").starts_with("HTTP/1.1 200"));
    let pid = gateway.0.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = gateway.0.try_wait().expect("wait") {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = trueip(&["ranges", "show", "cloudflare", "--ranges-dir", d]);
    assert!(out.status.success(), "the cached list is whole: {}", text(&out));
}

/// On a terminal `update` draws one progress line over itself (the provider, the source and
/// the KiB so far, of the announced size) and clears it at the end; in a pipe it draws none
/// (`lists_fetched_from_a_mirror_are_shown_checked_and_read_by_presets`).
#[test]
fn progress_is_drawn_on_a_terminal() {
    if !Path::new("/usr/bin/script").is_file() {
        support::skip_without("script", "apt-get install util-linux");
        return;
    }
    let url = mirror();
    let dir = temp_dir("progress");
    let cmd = format!(
        "{TRUEIP} ranges update cloudfront --ranges-dir {} --from cloudfront={url}/trickle.json >/dev/null",
        dir.display()
    );
    let out = Command::new("/usr/bin/script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("\r\x1b[Kcloudfront: ") && tty.contains(" KiB / "),
        "no progress line: {tty:?}"
    );
    assert!(
        tty.contains("\r\x1b[K\r\n") || tty.ends_with("\r\x1b[K"),
        "the line is cleared: {tty:?}"
    );
    assert!(cache_file(&dir, "cloudfront").is_file());
}
