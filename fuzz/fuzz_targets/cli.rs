//! The inputs of the `trueip` command, through the command's own modules: a `simulate`
//! chain (one line, or a TOML file) and every output format; an `audit --read` spec and a
//! target's answer read by it; an `explain --batch` case; an `explain --header` line.
//! Nothing panics, and no error is much longer than the input it names (the command's
//! own arguments are quoted whole; what a target or a file sent is quoted in part). An answer `audit` reads keeps at most 256 bytes
//! of text and only an address that text writes; a batch case's client is its peer, its
//! PROXY source, or an address its headers or query write.
#![no_main]
#![allow(dead_code, unreachable_pub, reason = "the command's modules, used in part")]

#[path = "../../crates/trueip-cli/src/audit/client.rs"]
mod client;
#[path = "../../crates/trueip-cli/src/explain.rs"]
mod explain;
#[path = "../../crates/trueip-cli/src/audit/read.rs"]
mod read;
#[path = "../../crates/trueip-cli/src/simulate/mod.rs"]
mod simulate;

use std::collections::HashMap;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

/// Every string in `v`, percent-decoded too.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => {
            out.push(s.clone());
            let mut bytes = Vec::new();
            let mut it = s.bytes();
            while let Some(b) = it.next() {
                if b == b'%' {
                    let hex: Vec<u8> = it.clone().take(2).collect();
                    if let Some(d) =
                        std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        bytes.push(d);
                        it.nth(1);
                        continue;
                    }
                } else if b == b'+' {
                    bytes.push(b' ');
                    continue;
                }
                bytes.push(b);
            }
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Whether `text` writes `ip`: as text, or as an address between separators.
fn writes(text: &str, ip: IpAddr) -> bool {
    text.to_ascii_lowercase().contains(&ip.to_string())
        || text.split(|c: char| " ,;\"[]=&\t".contains(c)).any(|p| {
            trueip::addr::parse_node(p.as_bytes()).is_ok_and(|n| n.ip == ip)
                || trueip::addr::parse_ip_port_last_colon(p.as_bytes()).is_ok_and(|n| n.ip == ip)
        })
}

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Host names a case trusts are looked up in an empty hosts file, not the network.
        let hosts = std::env::temp_dir().join("trueip-fuzz-empty-hosts");
        std::fs::write(&hosts, "").unwrap();
        // SAFETY: once, before any thread of this process reads the environment.
        unsafe { std::env::set_var(trueip::hosts::HOSTS_FILE_ENV, hosts) };
    });
}

fuzz_target!(|input: &[u8]| {
    init();
    // No error amplifies its input: quoted (escaped) at most twice, plus the text around it.
    let quoted = format!("{:?}", String::from_utf8_lossy(input)).len();
    let short = |e: &str| assert!(e.len() <= 2000 + 2 * quoted, "{e}");
    let Some((&mode, data)) = input.split_first() else { return };
    let Ok(text) = std::str::from_utf8(data) else { return };
    match mode % 5 {
        0 | 1 => {
            let sim = if mode % 5 == 0 {
                simulate::simulate_line(text)
            } else {
                simulate::simulate_toml("fuzz.toml".into(), text)
            };
            match sim {
                Ok(sim) => {
                    for format in [
                        simulate::Format::Text,
                        simulate::Format::Json,
                        simulate::Format::Svg,
                        simulate::Format::Mermaid,
                    ] {
                        let out = simulate::output(&sim, format).unwrap();
                        assert!(out.len() < 4 << 20, "{format:?}: {} bytes", out.len());
                    }
                }
                Err(e) => short(&e),
            }
        }
        2 => {
            // The spec on the first line, the answer's body after it.
            let (spec, body) = text.split_once('\n').unwrap_or((text, ""));
            let reader = match spec.parse::<read::Reader>() {
                Ok(r) => r,
                Err(e) => return short(&e),
            };
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(body.lines().next().unwrap_or_default()) {
                headers.insert("x-client-ip", v);
            }
            let answer = client::Answer {
                status: http::StatusCode::OK,
                headers,
                body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            };
            let _ = read::detect(&answer);
            match reader.read(&answer) {
                Ok(seen) => {
                    assert!(seen.text.len() <= 256);
                    if let Some(ip) = seen.ip {
                        assert!(writes(&seen.text, ip), "{seen:?}");
                    }
                }
                Err(e) => short(&e),
            }
        }
        3 => {
            let dirs = explain::Dirs {
                flag: Some(std::path::Path::new("/nonexistent/trueip-fuzz")),
                config: None,
            };
            let mut policies = HashMap::new();
            let base = trueip::config::ClientIpConfig::default();
            match explain::batch_case(text, &base, dirs, &mut policies) {
                Ok(e) => {
                    let case: serde_json::Value = serde_json::from_str(text).unwrap();
                    let Some(client) = e.client_ip else { return };
                    let ip: IpAddr = client.parse().unwrap();
                    let node = |key: &str| {
                        case[key]
                            .as_str()
                            .and_then(|s| trueip::addr::parse_node(s.trim().as_bytes()).ok())
                    };
                    let mut written = Vec::new();
                    strings(&case["headers"], &mut written);
                    strings(&case["query"], &mut written);
                    let ok = node("peer").is_some_and(|n| n.ip == ip)
                        || node("proxy_source").is_some_and(|n| n.ip == ip)
                        || written.iter().any(|s| writes(s, ip));
                    assert!(ok, "client {ip} from {text}");
                }
                Err(e) => short(&e),
            }
        }
        _ => match trueip::headers::parse_header_line(text) {
            Ok((name, value)) => {
                assert!(text.contains(value), "{value:?}");
                assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0), "{value:?}");
                assert!(!name.as_str().is_empty());
            }
            Err(e) => short(&e.to_string()),
        },
    }
});
