//! The built-in upstream: a page that shows the client what the server decided.
//!
//! HTML for browsers; JSON for `Accept: application/json` or the path `/json` — the
//! object `trueip explain --format json` prints, plus `direct_ip` (the TCP peer's
//! address; `null` for a Unix-socket peer), `headers` (the forwarding headers as received,
//! lower-case name to lines) and `policy` (which decided: `client_ip`, or the listener's
//! own, `listen[1].client_ip`); plain text for `Accept: text/plain` or `/text`.
//!
//! The HTML page is `whoami.html` with its `{{slots}}` filled in one pass over the
//! template, split once: what the request says is never read as a slot, and every page
//! stays within [`page_size_bound`], linear in the request.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

#[cfg(test)]
use http::HeaderMap;
use http::StatusCode;
use trueip::shown::{markup, markup_into};
use trueip::{Connection, Decision, Explanation, Policy, Source};

use crate::config::HeaderSettings;
use crate::pages::Page;
use crate::rules::Hygiene;
use crate::rules::headers::same_name;

const PAGE: &str = include_str!("whoami.html");

/// The answer, in every format.
pub(crate) struct Whoami<'a> {
    /// Everything `trueip explain` says.
    pub(crate) decision: &'a Decision<'a>,
    /// The peer: its address (without the port), or `unix:` on a Unix-socket listener.
    pub(crate) direct_ip: trueip::addr::Peer,
    /// Forwarding headers as received.
    pub(crate) headers: Forwarding<'a>,
    /// The policy that decided: `client_ip`, or the listener's own, `listen[1].client_ip`.
    pub(crate) policy: &'a str,
}

/// The forwarding header lines of a request, as received: lower-case names (underscores
/// kept), grouped by name in name order, lines of one name in the order they came — the
/// `headers` object of the JSON answer. Borrowed from the request: names are lower-cased
/// and values shown as UTF-8 (invalid bytes replaced by U+FFFD) only when written.
#[derive(Clone, Debug, Default)]
pub(crate) struct Forwarding<'a> {
    /// Names as received, in any case.
    lines: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Forwarding<'a> {
    /// Whether the request carried none.
    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Every line, grouped by name: (lower-case name, value).
    pub(crate) fn lines(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + '_ {
        self.lines.iter().map(|(n, v)| (lower_case(n), String::from_utf8_lossy(v)))
    }

    /// Replaces the value of every line whose name, in any case and underscores read as
    /// dashes, is `name` (lower-case).
    pub(crate) fn redact(&mut self, name: &str, with: &'static [u8]) {
        for (n, v) in &mut self.lines {
            if same_name(name, n) {
                *v = with;
            }
        }
    }
}

/// The `headers` object: each lower-case name to its lines, invalid UTF-8 replaced.
impl serde::Serialize for Forwarding<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let groups = self.lines.chunk_by(|a, b| a.0.eq_ignore_ascii_case(b.0));
        s.collect_map(groups.map(|group| {
            let name = group.first().map_or("", |(name, _)| *name);
            let lines: Vec<_> = group.iter().map(|(_, v)| String::from_utf8_lossy(v)).collect();
            (lower_case(name), lines)
        }))
    }
}

/// `name` in lower case, borrowed when it already is.
fn lower_case(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Orders names as their lower-case spellings order.
fn cmp_lower(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes().map(|b| b.to_ascii_lowercase()).cmp(b.bytes().map(|b| b.to_ascii_lowercase()))
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

/// Picks a format from the path and the `Accept` lines: the first of `application/json`,
/// `text/plain` and `text/html` in the lines (joined by commas; lines that are not
/// UTF-8 left out) decides, HTML when none is named.
pub(crate) fn negotiate_with<'a>(path: &str, accept: impl Iterator<Item = &'a [u8]>) -> Format {
    match path {
        "/json" => return Format::Json,
        "/text" => return Format::Text,
        _ => {}
    }
    let (mut json, mut text, mut html) = (None, None, None);
    let mut at = 0usize;
    for line in accept.filter_map(|v| std::str::from_utf8(v).ok()) {
        for part in line.split(',') {
            let media = part.split(';').next().unwrap_or("").trim();
            for (name, slot) in [
                ("application/json", &mut json),
                ("text/plain", &mut text),
                ("text/html", &mut html),
            ] {
                if slot.is_none() && media.eq_ignore_ascii_case(name) {
                    *slot = Some(at);
                }
            }
            at += 1;
        }
    }
    match (json, text) {
        (Some(j), _) if html.is_none_or(|h| j < h) => Format::Json,
        (_, Some(t)) if html.is_none_or(|h| t < h) => Format::Text,
        _ => Format::Html,
    }
}

/// The forwarding headers of a request, as received. `is_forwarding` says whether a
/// name, as received (any case, underscores for dashes: see
/// [`same_name`](crate::rules::headers::same_name)), is one; `Via` always is.
#[cfg(test)]
fn forwarding_headers<'a>(
    headers: &'a HeaderMap,
    is_forwarding: impl Fn(&str) -> bool,
) -> Forwarding<'a> {
    forwarding_headers_of(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())), is_forwarding)
}

/// [`forwarding_headers`] over (name, value) lines; names in any case.
pub(crate) fn forwarding_headers_of<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    is_forwarding: impl Fn(&str) -> bool,
) -> Forwarding<'a> {
    let mut lines: Vec<(&'a str, &'a [u8])> =
        headers.filter(|(name, _)| is_forwarding(name) || same_name("via", name)).collect();
    // Stable: the lines of one name keep their order.
    lines.sort_by(|a, b| cmp_lower(a.0, b.0));
    Forwarding { lines }
}

/// The `Content-Security-Policy` of the HTML page.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The response headers of a page in `format`, in order, the content type first.
pub(crate) fn response_headers(format: Format) -> &'static [(&'static str, &'static str)] {
    const fn lines(content_type: &'static str) -> [(&'static str, &'static str); 6] {
        [
            ("content-type", content_type),
            ("cache-control", "no-store"),
            ("vary", "Accept"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("content-security-policy", CSP),
        ]
    }
    static HTML: [(&str, &str); 6] = lines("text/html; charset=utf-8");
    static JSON: [(&str, &str); 6] = lines("application/json");
    static TEXT: [(&str, &str); 6] = lines("text/plain; charset=utf-8");
    // Only the HTML page has markup for a content security policy to govern.
    let without_csp = |all: &'static [(&'static str, &'static str)]| {
        all.split_last().map_or(all, |(_, rest)| rest)
    };
    match format {
        Format::Html => &HTML,
        Format::Json => without_csp(&JSON),
        Format::Text => without_csp(&TEXT),
    }
}

/// What the whoami page reads of a request.
pub(crate) struct Asked<'a, L> {
    /// The path, without the query.
    pub(crate) path: &'a str,
    /// The host it asked for (`:authority` or `Host`).
    pub(crate) host: Option<&'a [u8]>,
    /// Its header lines, names in any case, as often as asked.
    pub(crate) lines: L,
    /// Whether TLS was terminated here.
    pub(crate) tls: bool,
    /// The peer: a TCP peer's address, or `Peer::Unix`.
    pub(crate) peer: trueip::addr::Peer,
    /// The policy deciding on this listener (see [`Whoami::policy`]).
    pub(crate) policy: &'a str,
}

/// The whoami page for a request decided as `decision`, in the format the path or
/// `Accept` asks for, written into `body`.
pub(crate) fn page<'a, L, I>(
    asked: &Asked<'a, L>,
    decision: &'a Decision<'a>,
    hygiene: &Hygiene,
    body: Vec<u8>,
) -> Page
where
    L: Fn() -> I,
    I: Iterator<Item = (&'a str, &'a [u8])>,
{
    let format = negotiate_with(
        asked.path,
        (asked.lines)().filter(|(n, _)| n.eq_ignore_ascii_case("accept")).map(|(_, v)| v),
    );
    Page {
        status: StatusCode::OK,
        headers: response_headers(format),
        body: write_page(asked, decision, hygiene, format, body),
    }
}

/// The body of the page in `format`, written into `body`: the forwarding headers as
/// `hygiene` names them, the origin secret redacted.
fn write_page<'a, L, I>(
    asked: &Asked<'a, L>,
    decision: &'a Decision<'a>,
    hygiene: &Hygiene,
    format: Format,
    mut body: Vec<u8>,
) -> Vec<u8>
where
    L: Fn() -> I,
    I: Iterator<Item = (&'a str, &'a [u8])>,
{
    let mut forwarding =
        forwarding_headers_of((asked.lines)(), |name| hygiene.is_managed_spelled(name));
    // The origin secret proves the request came through *your* CDN distribution;
    // echoing it would hand it to anyone who can reach that distribution.
    if let Some(secret) = hygiene.origin_secret() {
        forwarding.redact(secret.as_str(), b"<redacted>");
    }
    // Only the HTML page shows its own URL.
    let self_url = if format == Format::Html {
        let scheme = if asked.tls { "https" } else { "http" };
        let host = asked.host.and_then(|h| std::str::from_utf8(h).ok());
        format!("{scheme}://{}/", host.unwrap_or("localhost"))
    } else {
        String::new()
    };
    let whoami = Whoami {
        decision,
        direct_ip: asked.peer.ip().map_or(trueip::addr::Peer::Unix, trueip::addr::Peer::from),
        headers: forwarding,
        policy: asked.policy,
    };
    body.clear();
    write_body(&mut body, format, &whoami, &self_url);
    body
}

/// The most bytes a page (in any format) can take for a request of `request` bytes,
/// under a policy of `strategies` strategies: linear in the request. The private
/// endpoint id of the connection's PROXY header, shown once per format, counts as bytes
/// of the request.
///
/// - Each byte of the request is shown in at most `4 + strategies` places: the headers
///   table, the chain, the element's step, the client address, and once more in the
///   step with which each strategy reads the header; and each time escaped to at most
///   six bytes (`"` is `&quot;` in HTML, a control byte `\u00XX` in JSON).
/// - The markup around each chain entry and each step does not grow with the bytes of
///   an element, but the core caps both: at most 256 chain entries (under 256 bytes of
///   markup each) and, per strategy, one walk of at most 128 elements plus a few steps
///   of its own (under 512 bytes each).
///
/// The template is filled in one pass, so nothing the request says is read as a slot.
/// Tests hold every format to this bound, hostile input included.
pub fn page_size_bound(request: usize, strategies: usize) -> usize {
    const CHAIN_MARKUP: usize = 256 * 256;
    const WALK_MARKUP: usize = (128 + 8) * 512;
    let strategies = strategies.max(1);
    let per_byte = 6 * (4 + strategies);
    PAGE.len()
        .saturating_add(CHAIN_MARKUP)
        .saturating_add(strategies.saturating_mul(WALK_MARKUP))
        .saturating_add(per_byte.saturating_mul(request))
}

/// The bytes of a `GET /` request carrying `host` and the header `lines`, as it comes
/// on the wire: the `request` that [`page_size_bound`] is a bound for.
pub fn request_len(host: &str, lines: &[(&str, &[u8])]) -> usize {
    "GET / HTTP/1.1\r\nHost: \r\n\r\n".len()
        + host.len()
        + lines.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>()
}

/// The body of the page in `format` for a request from `peer` with `host` and the
/// header `lines` (names in any spelling), decided under `policy`, under the default
/// header rules: what the tests and the `whoami` fuzz target hold to [`page_size_bound`].
pub fn render(
    policy: &Policy,
    peer: SocketAddr,
    host: &str,
    lines: &[(&str, &[u8])],
    format: Format,
) -> Vec<u8> {
    let conn = Connection::from_peer(peer);
    let decision = Decision::new(policy, &conn, lines);
    let asked = Asked {
        path: "/",
        host: Some(host.as_bytes()),
        lines: || lines.iter().copied(),
        tls: false,
        peer: peer.into(),
        policy: "client_ip",
    };
    let hygiene = Hygiene::new(HeaderSettings::default());
    write_page(&asked, &decision, &hygiene, format, Vec::new())
}

/// Writes the body of the page in `format` to `out`; the HTML page shows `self_url`, its
/// own URL, in its curl example.
pub(crate) fn write_body(out: &mut Vec<u8>, format: Format, whoami: &Whoami<'_>, self_url: &str) {
    match format {
        Format::Json => {
            write_json(out, whoami);
            out.push(b'\n');
        }
        Format::Text => out.extend_from_slice(text(whoami).as_bytes()),
        Format::Html => write_html(out, whoami, self_url),
    }
}

/// Writes the JSON answer: the object `trueip explain --format json` prints, then
/// `direct_ip`, `headers` and `policy`.
pub(crate) fn write_json(out: &mut Vec<u8>, w: &Whoami<'_>) {
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        #[serde(flatten)]
        explanation: Explanation,
        /// `null` for a Unix-socket peer, which has no address.
        direct_ip: Option<IpAddr>,
        headers: &'a Forwarding<'a>,
        /// Which policy decided: `client_ip`, or a listener's own.
        policy: &'a str,
    }
    let answer = Answer {
        explanation: w.decision.to_explanation(),
        direct_ip: w.direct_ip.ip(),
        policy: w.policy,
        headers: &w.headers,
    };
    // Into a `Vec` serde_json fails only on a map key that is not a string, and every
    // key here is one.
    let _ = serde_json::to_writer_pretty(out, &answer);
}

fn text(w: &Whoami<'_>) -> String {
    let mut out = w.decision.to_explanation().to_string();
    let _ = writeln!(out, "\ndirect   {}", w.direct_ip);
    let _ = writeln!(out, "policy   {}", w.policy);
    for (name, line) in w.headers.lines() {
        let _ = writeln!(out, "header   {name}: {line}");
    }
    out
}

/// A place in `whoami.html` that the page fills, written `{{name}}` there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    SelfUrl,
    ClientIp,
    ClientPort,
    Pills,
    Verdict,
    Alerts,
    Peer,
    PeerNote,
    ProxySource,
    ProxyNote,
    PrivateLink,
    Strategy,
    TrustedHops,
    RateLimitKey,
    ChainHeader,
    Chain,
    Headers,
    Steps,
}

impl Slot {
    /// Every slot, by its name in the template.
    const NAMES: [(&'static str, Slot); 18] = [
        ("self_url", Slot::SelfUrl),
        ("client_ip", Slot::ClientIp),
        ("client_port", Slot::ClientPort),
        ("pills", Slot::Pills),
        ("verdict", Slot::Verdict),
        ("alerts", Slot::Alerts),
        ("peer", Slot::Peer),
        ("peer_note", Slot::PeerNote),
        ("proxy_source", Slot::ProxySource),
        ("proxy_note", Slot::ProxyNote),
        ("private_link", Slot::PrivateLink),
        ("strategy", Slot::Strategy),
        ("trusted_hops", Slot::TrustedHops),
        ("rate_limit_key", Slot::RateLimitKey),
        ("chain_header", Slot::ChainHeader),
        ("chain", Slot::Chain),
        ("headers", Slot::Headers),
        ("steps", Slot::Steps),
    ];

    fn named(name: &str) -> Option<Slot> {
        Slot::NAMES.iter().find(|(n, _)| *n == name).map(|&(_, slot)| slot)
    }
}

/// A piece of the template: its own text, or a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Text(&'static str),
    Slot(Slot),
}

/// `page` split at its slots, once. The page is then written piece by piece: what goes
/// into a slot is never scanned for slots again, so text from the request (which may
/// well spell `{{steps}}`) is shown as text and the page stays linear in the request.
/// A `{{…}}` that names no slot stays text.
fn split(page: &'static str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = page;
    while let Some((before, after)) = rest.split_once("{{") {
        let slot = after
            .split_once("}}")
            .and_then(|(name, tail)| Slot::named(name).map(|slot| (slot, tail)));
        match slot {
            Some((slot, tail)) => {
                pieces.push(Piece::Text(before));
                pieces.push(Piece::Slot(slot));
                rest = tail;
            }
            None => {
                let literal = rest.get(..before.len() + 2).unwrap_or(rest);
                pieces.push(Piece::Text(literal));
                rest = after;
            }
        }
    }
    pieces.push(Piece::Text(rest));
    pieces.retain(|p| *p != Piece::Text(""));
    pieces
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
        "fewer_hops_than_configured" => {
            ("The list had fewer entries than the configured hop count.", false)
        }
        "xff_forwarded_disagree" => ("X-Forwarded-For and Forwarded name different clients.", true),
        "all_trusted" => (
            "Every entry was a trusted proxy; the configured all_trusted rule chose the answer.",
            false,
        ),
        "spoofable" => {
            ("The answer came from client-written text (leftmost): anyone can forge it.", true)
        }
        "origin_secret_mismatch" => {
            ("The origin secret was missing or wrong, so forwarding headers were ignored.", true)
        }
        "truncated" => {
            ("The header was longer than trueip reads; the walk stopped at the cap.", false)
        }
        "proxy_protocol_from_untrusted_peer" => (
            "A PROXY protocol header came from a sender not trusted to send one; it was ignored.",
            true,
        ),
        "duplicate_header" => {
            ("A single-address header appeared on several lines: ambiguous, ignored.", true)
        }
        "header_writer_not_trusted" => (
            "A CDN's client header came through your proxies, but the hop they recorded before them is not the CDN: whoever wrote it went around the CDN. It was ignored.",
            true,
        ),
        "signature_rejected" => (
            "The signed client header was missing, forged, stale or made for another request; the TCP peer stands.",
            true,
        ),
        "no_lambda_event" => (
            "A Lambda preset's policy decided a request that came without its chain's Lambda event: no proxy was trusted.",
            false,
        ),
        "x_forwarded_for_not_kept" => (
            "A Lambda Function URL keeps only the first X-Forwarded-For value, which the client wrote; it was not read.",
            false,
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
        Source::Query | Source::Cookie => format!("{} set by a trusted proxy", e.source),
    }
}

/// Writes the HTML page: the template, its slots filled in one pass.
fn write_html(out: &mut Vec<u8>, w: &Whoami<'_>, self_url: &str) {
    let e = &w.decision.to_explanation();
    let r = &e.resolution;
    let mut pills = String::new();
    let source_class = if matches!(r.source, Source::Peer) { "plain" } else { "ok" };
    let _ =
        write!(pills, r#"<span class="pill {source_class}">source: {}</span>"#, markup(&e.source));
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
        let _ = write!(pills, r#"<span class="pill {class}">{}</span>"#, markup(name));
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
                markup(name),
                markup(text)
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
        Some(p) => (markup(p), "from a trusted sender: it replaced the peer"),
        None => ("—".to_string(), "no PROXY header, or not from a trusted sender"),
    };

    // The template, split at its slots once (see [`split`]).
    static TEMPLATE: std::sync::LazyLock<Vec<Piece>> = std::sync::LazyLock::new(|| split(PAGE));
    let mut page = String::with_capacity(PAGE.len() + 4096);
    for piece in TEMPLATE.iter() {
        let slot = match *piece {
            Piece::Text(text) => {
                page.push_str(text);
                continue;
            }
            Piece::Slot(slot) => slot,
        };
        match slot {
            Slot::SelfUrl => markup_into(&mut page, self_url),
            Slot::ClientIp => markup_into(&mut page, e.client_ip.as_deref().unwrap_or("unix:")),
            Slot::ClientPort => {
                if let Some(p) = e.client_port {
                    let _ = write!(page, " <small>port {p}</small>");
                }
            }
            Slot::Pills => page.push_str(&pills),
            Slot::Verdict => markup_into(&mut page, &verdict),
            Slot::Alerts => page.push_str(&alerts),
            Slot::Peer => markup_into(&mut page, &e.peer),
            Slot::PeerNote => page.push_str(peer_note),
            Slot::ProxySource => page.push_str(&proxy_source),
            Slot::ProxyNote => page.push_str(proxy_note),
            Slot::PrivateLink => private_link_cards(&mut page, e),
            Slot::Strategy => {
                markup_into(&mut page, e.strategy.as_deref().unwrap_or("peer (default)"));
            }
            Slot::TrustedHops => markup_into(&mut page, &hops),
            Slot::RateLimitKey => markup_into(
                &mut page,
                e.rate_limit_key.as_deref().unwrap_or("none (a Unix-socket peer has no address)"),
            ),
            Slot::ChainHeader => markup_into(&mut page, &e.chain_header),
            Slot::Chain => page.push_str(&chain(w, e)),
            Slot::Headers => page.push_str(&headers_table(w)),
            Slot::Steps => page.push_str(&steps_table(e)),
        }
    }
    out.extend_from_slice(page.as_bytes());
}

/// A card per private endpoint id the PROXY header named; nothing when it named none.
fn private_link_cards(page: &mut String, e: &Explanation) {
    const NOTE: &str = "named by the PROXY header: behind the private endpoint, the \
                        client's identity; its address is one in its own network";
    if let Some(id) = &e.aws_vpce_id {
        page.push_str(
            r#"<div class="card"><div class="label">AWS VPC endpoint</div><div class="value">"#,
        );
        markup_into(page, id);
        let _ = write!(page, r#"</div><div class="note">PrivateLink, {NOTE}</div></div>"#);
    }
    if let Some(id) = e.azure_link_id {
        let _ = write!(
            page,
            r#"<div class="card"><div class="label">Azure Private Link id</div><div class="value">{id}</div><div class="note">{NOTE}</div></div>"#
        );
    }
}

/// The HTML page as text.
#[cfg(test)]
fn html(w: &Whoami<'_>, self_url: &str) -> String {
    let mut out = Vec::new();
    write_html(&mut out, w, self_url);
    String::from_utf8(out).unwrap_or_default()
}

fn chain(w: &Whoami<'_>, e: &Explanation) -> String {
    let r = &e.resolution;
    if e.chain.is_empty() {
        return format!(
            r#"<div class="empty">No {} header. {}</div>"#,
            markup(&e.chain_header),
            if matches!(r.source, Source::Peer) { "The TCP peer is the client." } else { "" }
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
            markup(entry)
        );
    }
    let _ = write!(
        out,
        r#"<span class="arrow">→</span><span class="hop self">{}<em>direct peer</em></span>"#,
        w.direct_ip
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
    for (name, line) in w.headers.lines() {
        let _ = write!(
            out,
            r#"<tr><td class="mono">{}</td><td class="mono">{}</td></tr>"#,
            markup(&name),
            markup(&line)
        );
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
            markup(&step.subject),
            markup(&step.value),
            markup(&verdict),
            markup(&verdict),
            markup(&step.why)
        );
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trueip::{Connection, Policy, Warnings};

    #[test]
    fn every_warning_has_a_sentence() {
        for name in Warnings::all_names() {
            assert!(!warning_text(name).0.is_empty(), "{name} has no sentence");
        }
    }

    fn request(peer: &str, pairs: &[(&str, &str)]) -> (Policy, Connection, HeaderMap) {
        let conn = Connection::from_peer(peer.parse::<std::net::SocketAddr>().unwrap());
        let policy = crate::test_support::trusting_ten();
        (policy, conn, crate::test_support::header_map(pairs))
    }

    /// The JSON answer built the plain way (the headers grouped in a `BTreeMap` by
    /// lower-case name): what `write_json` must match byte for byte.
    #[derive(serde::Serialize)]
    struct Reference<'a> {
        #[serde(flatten)]
        explanation: &'a Explanation,
        direct_ip: String,
        headers: std::collections::BTreeMap<String, Vec<String>>,
        policy: &'a str,
    }

    fn reference(
        w: &Whoami<'_>,
        explanation: &Explanation,
        lines: &[(&str, &[u8])],
        is_fwd: impl Fn(&str) -> bool,
    ) -> Vec<u8> {
        // The plain grouping: lower-case name (underscores kept) → lossy lines, in order.
        let mut headers: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (name, value) in lines {
            let lower = name.to_ascii_lowercase();
            let dashed = lower.replace('_', "-");
            if is_fwd(&dashed) || dashed == "via" {
                headers.entry(lower).or_default().push(String::from_utf8_lossy(value).into_owned());
            }
        }
        let r = Reference {
            explanation,
            direct_ip: w.direct_ip.to_string(),
            headers,
            policy: w.policy,
        };
        let mut out = serde_json::to_vec_pretty(&r).unwrap();
        out.push(b'\n');
        out
    }

    /// A lower-case name with dashes: what the reference reads.
    fn is_fwd(n: &str) -> bool {
        trueip::headers::names::FORWARDING.iter().any(|f| f.as_str() == n)
    }

    /// A name as received (any case, underscores for dashes): what the gateway reads.
    fn is_forwarding_spelled(name: &str) -> bool {
        trueip::headers::names::FORWARDING.iter().any(|f| same_name(f.as_str(), name))
    }

    fn json_of(w: &Whoami<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        write_body(&mut out, Format::Json, w, "");
        out
    }

    #[test]
    fn json_is_serde_json_byte_for_byte_on_hostile_input() {
        let every_byte: Vec<u8> = (0..=255u8).collect();
        let ascii: String = (0..0x80u8).map(char::from).collect();
        type Lines<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(&str, Lines<'_>)> = vec![
            ("10.0.0.5:4000", vec![]),
            (
                "10.0.0.5:4000",
                vec![
                    ("X-Forwarded-For", b"6.6.6.6, 203.0.113.9"),
                    ("x_real_ip", b"1.1.1.1"),
                    ("User-Agent", b"t"),
                    ("X-FORWARDED-FOR", b"10.0.0.9"),
                    ("Via", b"1.1 a"),
                ],
            ),
            (
                "10.0.0.5:4000",
                vec![
                    ("X-Forwarded-For", b"\"quoted\", back\\slash, 203.0.113.9"),
                    ("X-Forwarded-For", b"\xff\xfe\x80, caf\xc3\xa9, \xe2\x80\xa8, 10.0.0.1"),
                    ("Forwarded", b"for=\"\\\"x\";proto=</script>"),
                    ("X-Real-IP", b"\t\x7f<>&'"),
                ],
            ),
            ("10.0.0.5:4000", vec![("X-Forwarded-For", &every_byte)]),
            (
                "10.0.0.5:4000",
                vec![
                    ("X-Forwarded-For", ascii.as_bytes()),
                    ("Via", ascii.as_bytes()),
                    ("X-Forwarded-For", b"\x00, \x1f\"\\, 10.0.0.1"),
                ],
            ),
            ("[2001:db8::7]:443", vec![("x-forwarded-for", b"2001:db8::1, 10.0.0.1")]),
            ("198.51.100.1:1", vec![("Forwarded", b"for=1.2.3.4"), ("True-Client-IP", b"1.1.1.1")]),
        ];
        let policy = crate::test_support::trusting_ten();
        for (peer, lines) in &cases {
            let conn = Connection::from_peer(peer.parse::<std::net::SocketAddr>().unwrap());
            let decision = Decision::new(&policy, &conn, &lines[..]);
            let explanation = Explanation::new(&policy, &conn, &lines[..]);
            let w = Whoami {
                policy: "client_ip",
                decision: &decision,
                direct_ip: conn
                    .peer
                    .ip()
                    .map_or(trueip::addr::Peer::Unix, trueip::addr::Peer::from),
                headers: forwarding_headers_of(lines.iter().copied(), is_forwarding_spelled),
            };
            let want = reference(&w, &explanation, lines, is_fwd);
            let got = json_of(&w);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{peer} {lines:?}"
            );
            assert_eq!(got, want);
        }
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
        let decision = Decision::new(&policy, &conn, &h);
        let w = Whoami {
            policy: "client_ip",
            decision: &decision,
            direct_ip: "10.0.0.5".parse::<IpAddr>().unwrap().into(),
            headers: forwarding_headers(&h, is_forwarding_spelled),
        };
        let got: serde_json::Value = serde_json::from_slice(&json_of(&w)).unwrap();
        let explain: serde_json::Value = serde_json::to_value(&explanation).unwrap();
        for (k, v) in explain.as_object().unwrap() {
            assert_eq!(&got[k], v, "{k}");
        }
        assert_eq!(got["client_ip"], "203.0.113.9");
        assert_eq!(got["direct_ip"], "10.0.0.5");
        assert_eq!(got["headers"]["x-forwarded-for"], serde_json::json!(["6.6.6.6, 203.0.113.9"]));
        assert_eq!(got["headers"]["x_real_ip"], serde_json::json!(["1.1.1.1"]));
        assert!(got["headers"].get("user-agent").is_none());
        assert_eq!(got["policy"], "client_ip");
        assert_eq!(got.as_object().unwrap().len(), explain.as_object().unwrap().len() + 3);
    }

    #[test]
    fn negotiation_reads_the_path_then_accept_lines_as_one_list() {
        let f = |path: &str, lines: &[&[u8]]| negotiate_with(path, lines.iter().copied());
        assert_eq!(f("/", &[]), Format::Html);
        assert_eq!(f("/", &[b"*/*"]), Format::Html);
        assert_eq!(f("/json", &[b"text/html"]), Format::Json);
        assert_eq!(f("/x", &[b"application/json"]), Format::Json);
        let browser: &[u8] = b"text/html,application/xhtml+xml,application/json;q=0.9";
        assert_eq!(f("/", &[browser]), Format::Html);
        assert_eq!(f("/", &[b"text/plain"]), Format::Text);
        assert_eq!(f("/", &[b"text/html", b"application/json"]), Format::Html);
        assert_eq!(f("/", &[b"APPLICATION/JSON ; q=1", b"text/html"]), Format::Json);
        assert_eq!(f("/", &[b"\xff application/json", b"text/plain"]), Format::Text);
        assert_eq!(f("/", &[b"", b",text/plain,text/html"]), Format::Text);
    }

    #[test]
    fn redaction_matches_any_spelling() {
        let lines: [(&str, &[u8]); 3] =
            [("X_Origin_Verify", b"s"), ("x-origin-verify", b"s"), ("x-forwarded-for", b"1.1.1.1")];
        let mut f = forwarding_headers_of(lines.iter().copied(), |_| true);
        f.redact("x-origin-verify", b"<redacted>");
        let got: Vec<_> = f.lines().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(
            got,
            ["x-forwarded-for=1.1.1.1", "x-origin-verify=<redacted>", "x_origin_verify=<redacted>"]
        );
    }

    #[test]
    fn forwarding_names_are_matched_in_any_spelling_and_any_length() {
        let long = format!("X_{}_Client_IP", "Very".repeat(20));
        let wanted = format!("x-{}-client-ip", "very".repeat(20));
        let lines: Vec<(&str, &[u8])> = vec![
            ("Host", b"a"),
            ("X_Forwarded_For", b"1.1.1.1"),
            ("VIA", b"1.1 p"),
            (long.as_str(), b"2.2.2.2"),
            ("User-Agent", b"t"),
        ];
        let f = forwarding_headers_of(lines.iter().copied(), |n| {
            same_name("x-forwarded-for", n) || same_name(&wanted, n)
        });
        let got: Vec<_> = f.lines().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(
            got,
            [
                "via=1.1 p".to_string(),
                "x_forwarded_for=1.1.1.1".to_string(),
                format!("{}=2.2.2.2", long.to_ascii_lowercase()),
            ]
        );
    }

    #[test]
    fn html_escapes_everything_the_client_wrote() {
        let (policy, conn, h) = request(
            "10.0.0.5:4000",
            &[
                ("X-Forwarded-For", "<script>x</script>, 203.0.113.9"),
                ("X-Real-IP", "\"><img src=x>"),
                // A bidi override would draw the rest of its line backwards.
                ("X-Client-IP", "1.2.3.4\u{202e}9.9.9.9"),
            ],
        );
        let decision = Decision::new(&policy, &conn, &h);
        let w = Whoami {
            policy: "client_ip",
            decision: &decision,
            direct_ip: "10.0.0.5".parse::<IpAddr>().unwrap().into(),
            headers: forwarding_headers(&h, |_| true),
        };
        let page = html(&w, "http://x/");
        assert!(!page.contains("<script>") && !page.contains("<img"), "unescaped input");
        assert!(
            !page.contains('\u{202e}') && page.contains("1.2.3.4\u{fffd}9.9.9.9"),
            "bidi override"
        );
        assert!(page.contains("203.0.113.9") && page.contains("spoof_attempt"));
        assert!(!page.contains("{{"), "placeholder left");
        assert!(!page.contains("http://") || !page.contains("src=\"http"), "no external assets");
    }

    /// Every slot name of the template, as a client would write them into a header.
    fn every_slot() -> String {
        let page = include_str!("whoami.html");
        let mut slots: Vec<&str> = page
            .match_indices("{{")
            .filter_map(|(i, _)| {
                let rest = page.get(i..)?;
                rest.find("}}").and_then(|end| rest.get(..end + 2))
            })
            .collect();
        slots.sort_unstable();
        slots.dedup();
        assert!(slots.len() >= 18, "{slots:?}");
        slots.concat()
    }

    /// A policy trusting 10.0.0.0/8 with these strategies, and how many there are.
    fn policy_with(strategies: &[&str]) -> (Policy, usize) {
        let mut b = Policy::builder().trust_str("10.0.0.0/8").unwrap();
        for s in strategies {
            b = b.strategy_str(s).unwrap();
        }
        (b.build().unwrap(), strategies.len())
    }

    /// Renders the page for a request from `peer`.
    fn render_with(
        policy: &Policy,
        peer: &str,
        host: &str,
        lines: &[(&str, &[u8])],
        format: Format,
    ) -> Vec<u8> {
        super::render(policy, peer.parse().unwrap(), host, lines, format)
    }

    /// The headers the page shows (forwarding headers, in several spellings; `Via`),
    /// each carrying `value`.
    fn shown_headers(value: &[u8]) -> Vec<(&'static str, &[u8])> {
        [
            "X-Forwarded-For",
            "X-Forwarded-For",
            "Forwarded",
            "X-Real-IP",
            "True-Client-IP",
            "CF-Connecting-IP",
            "X_Forwarded_For",
            "Via",
            "X-Forwarded-Host",
            "X-Forwarded-Proto",
        ]
        .into_iter()
        .map(|n| (n, value))
        .collect()
    }

    /// `X-Forwarded-For: {{steps}}{{headers}}, …` (1.2 KB) made a 1.9 MB page: request
    /// text was pasted in before later slots were replaced, and expanded there. Now the
    /// page is filled in one pass and stays within [`page_size_bound`], a linear bound.
    #[test]
    fn slot_names_in_every_shown_header_do_not_expand_the_page() {
        let slots = every_slot();
        let values = [
            format!("{slots}, 203.0.113.9"),
            format!("{slots}{slots}, {slots}, 10.0.0.7"),
            format!("for=\"{slots}\", for=203.0.113.9"),
            slots.repeat(8),
        ];
        let (policy, strategies) = policy_with(&["rightmost-untrusted"]);
        for value in &values {
            let lines = shown_headers(value.as_bytes());
            for peer in ["10.0.0.5:4000", "198.51.100.1:1"] {
                for format in [Format::Html, Format::Json, Format::Text] {
                    let page = render_with(&policy, peer, &slots, &lines, format);
                    let request = request_len(&slots, &lines);
                    assert!(
                        page.len() <= page_size_bound(request, strategies),
                        "{format:?} from {peer}: a {request}-byte request made a {}-byte page",
                        page.len()
                    );
                }
            }
        }
    }

    /// Normal requests render exactly as the template with its slots filled: every
    /// slot filled, no text of the request read as a slot.
    #[test]
    fn slot_names_from_the_request_are_shown_as_text() {
        let lines: Vec<(&str, &[u8])> = vec![("X-Forwarded-For", b"{{client_ip}}, 203.0.113.9")];
        let policy = crate::test_support::trusting_ten();
        let page = render_with(&policy, "10.0.0.5:4000", "x", &lines, Format::Html);
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("{{client_ip}}, 203.0.113.9"), "{page}");
        assert_eq!(page.matches("{{").count(), 2, "only the client's two slot names");
        assert_eq!(page.matches("203.0.113.9 — trueip</title>").count(), 1);
    }

    mod size {
        use super::*;
        use proptest::prelude::*;

        /// Header values built from what makes a page large: slot names, characters
        /// that escaping grows (`"` → `&quot;`), list separators, short elements.
        fn value() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("{{steps}}".to_string()),
                Just("{{headers}}".to_string()),
                Just("{{chain}}".to_string()),
                Just("{{client_ip}}".to_string()),
                Just("\"".to_string()),
                Just("'".to_string()),
                Just("&".to_string()),
                Just(",".to_string()),
                Just(", ".to_string()),
                Just(";".to_string()),
                Just("for=".to_string()),
                Just("1".to_string()),
                Just("10.0.0.1".to_string()),
                Just("203.0.113.9".to_string()),
                Just("[2001:db8::1]:443".to_string()),
                Just("unknown".to_string()),
                "[ -~]{0,8}",
                "\\PC{0,4}",
            ];
            prop::collection::vec(piece, 0..64).prop_map(|p| p.concat())
        }

        fn name() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "X-Forwarded-For",
                "Forwarded",
                "X-Real-IP",
                "X_Forwarded_For",
                "True-Client-IP",
                "CF-Connecting-IP",
                "Via",
                "X-Forwarded-Host",
                "Accept",
                "User-Agent",
            ])
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// No request makes a page larger than [`page_size_bound`], in any format.
            #[test]
            fn pages_grow_at_most_linearly_with_the_request(
                lines in prop::collection::vec((name(), value()), 0..24),
                host in "[ -~]{0,40}",
                trusted in any::<bool>(),
                policy in prop::sample::select(vec![
                    vec!["rightmost-untrusted"],
                    vec!["hops:2"],
                    vec!["header:X-Real-IP", "rightmost-untrusted"],
                    vec!["hops:64", "hops:3", "rightmost-untrusted", "rightmost"],
                ]),
            ) {
                let (policy, strategies) = policy_with(&policy);
                let lines: Vec<(&str, &[u8])> =
                    lines.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
                let peer = if trusted { "10.0.0.5:4000" } else { "198.51.100.1:1" };
                let request = request_len(&host, &lines);
                for format in [Format::Html, Format::Json, Format::Text] {
                    let page = render_with(&policy, peer, &host, &lines, format);
                    prop_assert!(
                        page.len() <= page_size_bound(request, strategies),
                        "{:?}: a {}-byte request made a {}-byte page", format, request, page.len()
                    );
                }
            }
        }
    }
}
