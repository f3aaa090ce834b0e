//! The built-in upstream: a page that shows the client what the server decided.
//!
//! HTML for browsers; JSON for `Accept: application/json` or the path `/json` — the
//! object `trueip explain --format json` prints, plus `direct_ip` (the TCP peer's
//! address) and `headers` (the forwarding headers as received, lower-case name to
//! lines); plain text for `Accept: text/plain` or `/text`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;
use trueip::{Explanation, Source};

use crate::body::Body;

const PAGE: &str = include_str!("whoami.html");

/// The JSON answer.
#[derive(Serialize)]
pub struct Whoami<'a> {
    /// Everything `trueip explain` says.
    #[serde(flatten)]
    pub explanation: &'a Explanation,
    /// The TCP peer's address, without port.
    pub direct_ip: String,
    /// Forwarding headers as received: lower-case name → lines, in order.
    pub headers: BTreeMap<String, Vec<String>>,
}

/// Which representation to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The page.
    Html,
    /// The explain object.
    Json,
    /// The explain trace.
    Text,
}

/// Picks a format from the path and `Accept`.
pub fn negotiate(path: &str, headers: &HeaderMap) -> Format {
    negotiate_with(
        path,
        headers
            .get_all(header::ACCEPT)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// Picks a format from the path and the `Accept` lines.
pub fn negotiate_with<'a>(path: &str, accept: impl Iterator<Item = &'a [u8]>) -> Format {
    match path {
        "/json" => return Format::Json,
        "/text" => return Format::Text,
        _ => {}
    }
    let accept = accept
        .filter_map(|v| std::str::from_utf8(v).ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    let rank = |media: &str| {
        accept
            .split(',')
            .position(|part| part.split(';').next().is_some_and(|m| m.trim() == media))
    };
    let html = rank("text/html");
    match (rank("application/json"), rank("text/plain")) {
        (Some(j), _) if html.is_none_or(|h| j < h) => Format::Json,
        (_, Some(t)) if html.is_none_or(|h| t < h) => Format::Text,
        _ => Format::Html,
    }
}

/// The forwarding headers of a request, as received. `is_forwarding` says whether a
/// lower-case name (underscores already mapped to dashes) is one.
pub fn forwarding_headers(
    headers: &HeaderMap,
    is_forwarding: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<String>> {
    forwarding_headers_of(
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        is_forwarding,
    )
}

/// [`forwarding_headers`] over (name, value) lines; names in any case.
pub fn forwarding_headers_of<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    is_forwarding: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        // Most names are lower-case and have no underscore: no copy to check them.
        let forwarding = if name.contains('_') || name.bytes().any(|b| b.is_ascii_uppercase()) {
            let dashed = name.to_ascii_lowercase().replace('_', "-");
            is_forwarding(&dashed) || dashed == "via"
        } else {
            is_forwarding(name) || name == "via"
        };
        if forwarding {
            out.entry(name.to_ascii_lowercase())
                .or_default()
                .push(String::from_utf8_lossy(value).into_owned());
        }
    }
    out
}

/// Links shown on the page.
pub struct Links<'a> {
    /// Where `/healthz` is.
    pub healthz: &'a str,
    /// Where `/metrics` is.
    pub metrics: &'a str,
    /// This page's URL, for the curl example.
    pub self_url: &'a str,
}

/// Builds the response.
pub fn respond(
    method: &Method,
    format: Format,
    whoami: &Whoami<'_>,
    links: &Links<'_>,
) -> Response<Body> {
    let (content_type, body) = match format {
        Format::Json => {
            // Sized for a typical answer, so the buffer is not grown step by step.
            let mut out = Vec::with_capacity(2048);
            if serde_json::to_writer_pretty(&mut out, whoami).is_err() {
                out.clear();
            }
            out.push(b'\n');
            ("application/json", out)
        }
        Format::Text => ("text/plain; charset=utf-8", text(whoami).into_bytes()),
        Format::Html => ("text/html; charset=utf-8", html(whoami, links).into_bytes()),
    };
    let len = body.len();
    let mut resp = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::full(body)
    });
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if format == Format::Html {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        );
    }
    *resp.status_mut() = StatusCode::OK;
    resp
}

fn text(w: &Whoami<'_>) -> String {
    let mut out = w.explanation.to_string();
    let _ = writeln!(out, "\ndirect   {}", w.direct_ip);
    for (name, lines) in &w.headers {
        for line in lines {
            let _ = writeln!(out, "header   {name}: {line}");
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// What a warning means, for people.
fn warning_text(name: &str) -> (&'static str, bool) {
    match name {
        "spoof_attempt" => (
            "Entries left of the client were written by the client itself (a forgery attempt, or a proxy on the client's side). They were ignored.",
            true,
        ),
        "malformed" => (
            "A forwarding header held an element that could not be read; the walk stopped at the last address it could vouch for.",
            true,
        ),
        "opaque" => (
            "The chain held `unknown`, an obfuscated identifier or an element without for=; the walk stopped there.",
            false,
        ),
        "header_from_untrusted_peer" => (
            "Forwarding headers arrived from a peer that is not a trusted proxy; they were ignored.",
            true,
        ),
        "fewer_hops_than_configured" => (
            "The list had fewer entries than the configured hop count.",
            false,
        ),
        "xff_forwarded_disagree" => (
            "X-Forwarded-For and Forwarded name different clients.",
            true,
        ),
        "all_trusted" => (
            "Every entry was a trusted proxy; the configured all_trusted rule chose the answer.",
            false,
        ),
        "spoofable" => (
            "The answer came from client-written text (leftmost): anyone can forge it.",
            true,
        ),
        "origin_secret_mismatch" => (
            "The origin secret was missing or wrong, so forwarding headers were ignored.",
            true,
        ),
        "truncated" => (
            "The header was longer than trueip reads; the walk stopped at the cap.",
            false,
        ),
        "proxy_protocol_from_untrusted_peer" => (
            "A PROXY protocol header came from a sender not trusted to send one; it was ignored.",
            true,
        ),
        "duplicate_header" => (
            "A single-address header appeared on several lines: ambiguous, ignored.",
            true,
        ),
        _ => ("", false),
    }
}

fn source_text(e: &Explanation) -> String {
    match &e.resolution.source {
        Source::Peer => "the TCP connection itself".to_string(),
        Source::ProxyProtocol => "the PROXY protocol header of a trusted load balancer".to_string(),
        Source::List { header, from_right } => {
            format!("{} entry {from_right} from the right", header.field())
        }
        Source::Header => format!("the {} header of a trusted proxy", e.source),
    }
}

fn html(w: &Whoami<'_>, links: &Links<'_>) -> String {
    let e = w.explanation;
    let r = &e.resolution;
    let mut pills = String::new();
    let source_class = if matches!(r.source, Source::Peer) {
        "plain"
    } else {
        "ok"
    };
    let _ = write!(
        pills,
        r#"<span class="pill {source_class}">source: {}</span>"#,
        escape(&e.source)
    );
    let hops = match e.trusted_hops {
        0 => "no trusted proxy".to_string(),
        1 => "1 trusted hop".to_string(),
        n => format!("{n} trusted hops"),
    };
    let _ = write!(pills, r#"<span class="pill plain">{hops}</span>"#);
    if e.warnings.is_empty() {
        pills.push_str(r#"<span class="pill ok">no warnings</span>"#);
    }
    for name in &e.warnings {
        let class = if warning_text(name).1 { "bad" } else { "warn" };
        let _ = write!(
            pills,
            r#"<span class="pill {class}">{}</span>"#,
            escape(name)
        );
    }
    let mut verdict = format!("Decided from {}.", source_text(e));
    if e.trusted_hops == 0 && !w.headers.is_empty() {
        verdict.push_str(" The forwarding headers below were ignored: they did not come through a trusted proxy.");
    }
    let mut alerts = String::new();
    if !e.warnings.is_empty() {
        alerts.push_str(r#"<div class="alerts">"#);
        for name in &e.warnings {
            let (text, bad) = warning_text(name);
            let _ = write!(
                alerts,
                r#"<div class="alert{}"><b>{}</b><span>{}</span></div>"#,
                if bad { " bad" } else { "" },
                escape(name),
                escape(text)
            );
        }
        alerts.push_str("</div>");
    }
    let peer_note = if e.proxy_source.is_some() {
        "the load balancer that opened the connection"
    } else {
        "the address that opened the TCP connection"
    };
    let (proxy_source, proxy_note) = match &e.proxy_source {
        Some(p) => (escape(p), "from a trusted sender: it replaced the peer"),
        None => (
            "—".to_string(),
            "no PROXY header, or not from a trusted sender",
        ),
    };

    let page = PAGE
        .replace("{{healthz}}", &escape(links.healthz))
        .replace("{{metrics}}", &escape(links.metrics))
        .replace("{{self_url}}", &escape(links.self_url))
        .replace(
            "{{client_port}}",
            &e.client_port
                .map(|p| format!(" <small>port {p}</small>"))
                .unwrap_or_default(),
        )
        .replace("{{pills}}", &pills)
        .replace("{{verdict}}", &escape(&verdict))
        .replace("{{alerts}}", &alerts)
        .replace("{{peer}}", &escape(&e.peer))
        .replace("{{peer_note}}", peer_note)
        .replace("{{proxy_source}}", &proxy_source)
        .replace("{{proxy_note}}", proxy_note)
        .replace(
            "{{strategy}}",
            &escape(e.strategy.as_deref().unwrap_or("peer (default)")),
        )
        .replace("{{trusted_hops}}", &escape(&hops))
        .replace("{{rate_limit_key}}", &escape(&e.rate_limit_key))
        .replace("{{chain_header}}", &escape(&e.chain_header))
        .replace("{{chain}}", &chain(w))
        .replace("{{headers}}", &headers_table(w))
        .replace("{{steps}}", &steps_table(e));
    // Last: the client address is the one value an attacker shapes most directly.
    page.replace("{{client_ip}}", &escape(&e.client_ip))
}

fn chain(w: &Whoami<'_>) -> String {
    let e = w.explanation;
    let r = &e.resolution;
    if e.chain.is_empty() {
        return format!(
            r#"<div class="empty">No {} header. {}</div>"#,
            escape(&e.chain_header),
            if matches!(r.source, Source::Peer) {
                "The TCP peer is the client."
            } else {
                ""
            }
        );
    }
    // Which chain element the client is, counted from the left.
    let client_at = match r.source {
        Source::List { header, from_right } if header.field().as_str() == e.chain_header => {
            e.chain.len().checked_sub(usize::from(from_right))
        }
        _ => None,
    };
    let mut out = String::from(r#"<div class="chain">"#);
    for (i, entry) in e.chain.iter().enumerate() {
        let (class, note) = match client_at {
            Some(c) if i < c => ("forged", "client-written, ignored"),
            Some(c) if i == c => ("client", "client"),
            Some(_) => ("trusted", "trusted proxy"),
            None if e.trusted_hops == 0 => ("forged", "from an untrusted peer, ignored"),
            None => ("", "not used"),
        };
        if i > 0 {
            out.push_str(r#"<span class="arrow">→</span>"#);
        }
        let _ = write!(
            out,
            r#"<span class="hop {class}"><span class="addr">{}</span><em>{note}</em></span>"#,
            escape(entry)
        );
    }
    let _ = write!(
        out,
        r#"<span class="arrow">→</span><span class="hop self">{}<em>direct peer</em></span>"#,
        escape(&w.direct_ip)
    );
    out.push_str(r#"<span class="arrow">→</span><span class="hop self">trueip<em>this server</em></span></div>"#);
    out
}

fn headers_table(w: &Whoami<'_>) -> String {
    if w.headers.is_empty() {
        return r#"<div class="empty">None: the request carried no forwarding headers.</div>"#
            .to_string();
    }
    let mut out =
        String::from("<table><thead><tr><th>Header</th><th>Value</th></tr></thead><tbody>");
    for (name, lines) in &w.headers {
        for line in lines {
            let _ = write!(
                out,
                r#"<tr><td class="mono">{}</td><td class="mono">{}</td></tr>"#,
                escape(name),
                escape(line)
            );
        }
    }
    out.push_str("</tbody></table>");
    out
}

fn steps_table(e: &Explanation) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>#</th><th>Looked at</th><th>Value</th><th>Verdict</th><th>Why</th></tr></thead><tbody>",
    );
    for (i, step) in e.steps.iter().enumerate() {
        let verdict = step.verdict.to_string();
        let _ = write!(
            out,
            r#"<tr><td class="num">{}</td><td class="mono">{}</td><td class="mono">{}</td><td><span class="v v-{}">{}</span></td><td>{}</td></tr>"#,
            i + 1,
            escape(&step.subject),
            escape(&step.value),
            escape(&verdict),
            escape(&verdict),
            escape(&step.why)
        );
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use http::HeaderName;
    use trueip::{Connection, Policy};

    fn request(peer: &str, pairs: &[(&str, &str)]) -> (Policy, Connection, HeaderMap) {
        let policy = Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .build()
            .unwrap();
        let conn = Connection::from_peer(peer.parse::<std::net::SocketAddr>().unwrap());
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        (policy, conn, h)
    }

    #[test]
    fn json_is_explain_plus_direct_ip_and_headers() {
        let (policy, conn, h) = request(
            "10.0.0.5:4000",
            &[
                ("X-Forwarded-For", "6.6.6.6, 203.0.113.9"),
                ("x_real_ip", "1.1.1.1"),
                ("User-Agent", "t"),
            ],
        );
        let explanation = Explanation::new(&policy, &conn, &h);
        let is_fwd = |n: &str| {
            trueip::headers::names::FORWARDING
                .iter()
                .any(|f| f.as_str() == n)
        };
        let w = Whoami {
            explanation: &explanation,
            direct_ip: "10.0.0.5".into(),
            headers: forwarding_headers(&h, is_fwd),
        };
        let got: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        let explain: serde_json::Value = serde_json::to_value(&explanation).unwrap();
        for (k, v) in explain.as_object().unwrap() {
            assert_eq!(&got[k], v, "{k}");
        }
        assert_eq!(got["client_ip"], "203.0.113.9");
        assert_eq!(got["direct_ip"], "10.0.0.5");
        assert_eq!(
            got["headers"]["x-forwarded-for"],
            serde_json::json!(["6.6.6.6, 203.0.113.9"])
        );
        assert_eq!(got["headers"]["x_real_ip"], serde_json::json!(["1.1.1.1"]));
        assert!(got["headers"].get("user-agent").is_none());
        assert_eq!(
            got.as_object().unwrap().len(),
            explain.as_object().unwrap().len() + 2
        );
    }

    #[test]
    fn html_escapes_everything_the_client_wrote() {
        let (policy, conn, h) = request(
            "10.0.0.5:4000",
            &[
                ("X-Forwarded-For", "<script>x</script>, 203.0.113.9"),
                ("X-Real-IP", "\"><img src=x>"),
            ],
        );
        let explanation = Explanation::new(&policy, &conn, &h);
        let w = Whoami {
            explanation: &explanation,
            direct_ip: "10.0.0.5".into(),
            headers: forwarding_headers(&h, |_| true),
        };
        let page = html(
            &w,
            &Links {
                healthz: "/healthz",
                metrics: "/metrics",
                self_url: "http://x/",
            },
        );
        assert!(
            !page.contains("<script>") && !page.contains("<img"),
            "unescaped input"
        );
        assert!(page.contains("203.0.113.9") && page.contains("spoof_attempt"));
        assert!(!page.contains("{{"), "placeholder left");
        assert!(
            !page.contains("http://") || !page.contains("src=\"http"),
            "no external assets"
        );
    }

    #[test]
    fn negotiation() {
        let h = |accept: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            m
        };
        assert_eq!(negotiate("/", &HeaderMap::new()), Format::Html);
        assert_eq!(negotiate("/", &h("*/*")), Format::Html);
        assert_eq!(negotiate("/json", &h("text/html")), Format::Json);
        assert_eq!(negotiate("/x", &h("application/json")), Format::Json);
        assert_eq!(
            negotiate(
                "/",
                &h("text/html,application/xhtml+xml,application/json;q=0.9")
            ),
            Format::Html
        );
        assert_eq!(negotiate("/", &h("text/plain")), Format::Text);
    }
}
