//! Counters and one histogram, rendered in the Prometheus text format.
//!
//! Hand-written rather than a metrics crate: the label sets are small and fixed, so
//! every metric is an array of atomics indexed by an enum, and recording is one
//! relaxed `fetch_add` — no map lookup, no lock, no allocation on the request path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use trueip::{ListHeader, Resolution, Source, Warnings};

use crate::ranges::PROVIDERS;
use crate::ranges::cache::Meta;

/// Where a client address came from, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceLabel {
    /// The TCP peer.
    Peer,
    /// A PROXY header.
    ProxyProtocol,
    /// X-Forwarded-For.
    XForwardedFor,
    /// Forwarded.
    Forwarded,
    /// A single-address header.
    Header,
    /// A query argument (`query:NAME`).
    Query,
    /// A cookie (`cookie:NAME`).
    Cookie,
}

impl SourceLabel {
    /// The label values, in the order of the variants (`label as usize` indexes them).
    const LABELS: [&'static str; 7] =
        ["peer", "proxy-protocol", "x-forwarded-for", "forwarded", "header", "query", "cookie"];

    /// The label for a resolution's source.
    pub(crate) fn of(source: &Source) -> Self {
        match source {
            Source::Peer => SourceLabel::Peer,
            Source::ProxyProtocol => SourceLabel::ProxyProtocol,
            Source::List { header: ListHeader::XForwardedFor, .. } => SourceLabel::XForwardedFor,
            Source::List { header: ListHeader::Forwarded, .. } => SourceLabel::Forwarded,
            Source::Header => SourceLabel::Header,
            Source::Query => SourceLabel::Query,
            Source::Cookie => SourceLabel::Cookie,
        }
    }
}

/// Why a PROXY header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyErrorKind {
    /// Not a valid header.
    Malformed,
    /// The connection closed before the header was complete.
    Truncated,
    /// It did not arrive within the read timeout.
    Timeout,
    /// Larger than the configured bound.
    TooLarge,
    /// A version the listener does not accept.
    WrongVersion,
    /// The peer may not speak PROXY on this listener.
    UntrustedSender,
}

impl ProxyErrorKind {
    /// The label values, in the order of the variants.
    const LABELS: [&'static str; 6] =
        ["malformed", "truncated", "timeout", "too_large", "wrong_version", "untrusted_sender"];
}

/// Why a valid header's addresses and TLVs are not used: the sender stays the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyIgnored {
    /// A v2 header for a datagram flow (`\x12` UDP over IPv4, `\x22` over IPv6, `\x32`
    /// a UNIX datagram socket) on this stream connection. Its source is whoever sent a
    /// datagram, not who opened this connection; nginx ("unsupported transport") and
    /// HAProxy keep the sender as the peer, and so does the gateway.
    Datagram,
}

impl ProxyIgnored {
    /// The label values, in the order of the variants.
    const LABELS: [&'static str; 1] = ["datagram"];

    /// The label value.
    pub(crate) fn name(self) -> &'static str {
        Self::LABELS.get(self as usize).copied().unwrap_or_default()
    }
}

/// Why forwarding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamErrorKind {
    /// Could not connect.
    Connect,
    /// The TLS handshake failed (the certificate refused).
    Tls,
    /// No response in time.
    Timeout,
    /// The connection broke or the response was not HTTP.
    Protocol,
    /// A body stalled longer than `body_timeout`.
    BodyTimeout,
}

impl UpstreamErrorKind {
    /// The label values, in the order of the variants.
    const LABELS: [&'static str; 5] = ["connect", "tls", "timeout", "protocol", "body_timeout"];
}

/// Why a request was refused for the client's own fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientErrorKind {
    /// 431: more header lines than `limits.max_headers` (HTTP/1.1 and HTTP/2), or an
    /// HTTP/1.1 head larger than `limits.max_header_bytes` (hyper's parser does not tell
    /// the two apart). An HTTP/2 header block over the size limit is refused by the
    /// HTTP/2 layer itself and not counted here.
    HeadersOverLimit,
    /// A request body with broken framing (a malformed chunked encoding) or cut short
    /// (400).
    BadRequestBody,
    /// A request body that stalled longer than `upstream.body_timeout` (408).
    RequestBodyTimeout,
    /// A request head begun and not finished within `limits.header_read_timeout` (408).
    HeaderTimeout,
    /// A Host or trusted X-Forwarded-Host outside `headers.allowed_hosts` (421).
    HostNotAllowed,
    /// A request with more than one `Host` line (400).
    SeveralHosts,
    /// A client that read nothing of its response for `limits.send_timeout` (the
    /// connection closed).
    SendTimeout,
}

impl ClientErrorKind {
    /// The label values, in the order of the variants.
    const LABELS: [&'static str; 7] = [
        "headers_over_limit",
        "bad_request_body",
        "request_body_timeout",
        "header_timeout",
        "host_not_allowed",
        "several_hosts",
        "send_timeout",
    ];
}

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const WARNINGS: usize = 16;

/// Listeners counted one by one in `trueip_requests_by_listener_total`.
const LISTENERS: usize = 32;

/// Every metric the gateway exports.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    requests: [AtomicU64; SourceLabel::LABELS.len()],
    responses: [AtomicU64; 6],
    warnings: [AtomicU64; WARNINGS],
    proxy_errors: [AtomicU64; ProxyErrorKind::LABELS.len()],
    proxy_ignored: [AtomicU64; ProxyIgnored::LABELS.len()],
    upstream_errors: [AtomicU64; UpstreamErrorKind::LABELS.len()],
    client_errors: [AtomicU64; ClientErrorKind::LABELS.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_micros: AtomicU64,
    connections_total: AtomicU64,
    connections_open: AtomicU64,
    connections_rejected: AtomicU64,
    tcp_connections: AtomicU64,
    tls_errors: AtomicU64,
    stripped_headers: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    log_dropped: AtomicU64,
    /// Decided requests on each of the first [`LISTENERS`] listeners.
    by_listener: [AtomicU64; LISTENERS],
    /// Each listener's label and the name of the policy that decides for it (set at start
    /// and on every reload; read only by `render`).
    listener_labels: std::sync::Mutex<Vec<(String, String)>>,
    ranges: [RangeGauges; PROVIDERS.len()],
    /// Per trusted host name: the addresses in use, and the refreshes that failed. A
    /// lock, not atomics: names are few, change on refresh only, and are read by scrapes.
    names: std::sync::Mutex<std::collections::BTreeMap<String, NameGauges>>,
}

/// One trusted host name.
#[derive(Debug, Default)]
struct NameGauges {
    /// Addresses in use; `None` once the name is no longer in the config.
    addresses: Option<u64>,
    resolve_failures: u64,
}

/// One provider's list in use, by its index in [`PROVIDERS`].
#[derive(Debug, Default)]
struct RangeGauges {
    /// Whether the current policy reads this list from the cache.
    in_use: AtomicBool,
    fetched_at_unix: AtomicU64,
    prefixes: AtomicU64,
    refresh_failures: AtomicU64,
}

impl Metrics {
    /// Counts one resolved request and its warnings.
    pub(crate) fn resolved(&self, resolution: &Resolution) {
        bump(&self.requests, SourceLabel::of(&resolution.source) as usize);
        if !resolution.warnings.is_empty() {
            // The flags alone: naming each (`warning_table`) would look every one up in
            // the core's table, on every request from a forger.
            for (i, &flag) in WARNING_FLAGS.iter().enumerate() {
                if resolution.warnings.contains(flag) {
                    bump(&self.warnings, i);
                }
            }
        }
    }

    /// Counts a response by status class and records its duration.
    pub(crate) fn responded(&self, status: u16, elapsed: Duration) {
        bump(&self.responses, usize::from(status / 100).min(5));
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            bump(&self.buckets, i);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_micros
            .fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Counts a refused PROXY header.
    pub(crate) fn proxy_error(&self, kind: ProxyErrorKind) {
        bump(&self.proxy_errors, kind as usize);
    }

    /// Counts a valid PROXY header whose addresses were not used.
    pub(crate) fn proxy_ignored(&self, why: ProxyIgnored) {
        bump(&self.proxy_ignored, why as usize);
    }

    /// Counts a failed upstream exchange.
    pub(crate) fn upstream_error(&self, kind: UpstreamErrorKind) {
        bump(&self.upstream_errors, kind as usize);
    }

    /// Counts a request refused for the client's own fault.
    pub(crate) fn client_error(&self, kind: ClientErrorKind) {
        bump(&self.client_errors, kind as usize);
    }

    /// A connection was accepted.
    pub(crate) fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
    }

    /// A connection ended.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// Connections refused at the limit.
    pub(crate) fn connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Relaxed);
    }

    /// A TCP-mode relay started.
    pub(crate) fn tcp_connection(&self) {
        self.tcp_connections.fetch_add(1, Relaxed);
    }

    /// A TLS handshake failed or timed out.
    pub(crate) fn tls_error(&self) {
        self.tls_errors.fetch_add(1, Relaxed);
    }

    /// Client-IP header lines removed from a request.
    pub(crate) fn stripped(&self, lines: u64) {
        if lines > 0 {
            self.stripped_headers.fetch_add(lines, Relaxed);
        }
    }

    /// A reload finished.
    pub(crate) fn reloaded(&self, ok: bool) {
        if ok { &self.reloads_ok } else { &self.reloads_failed }.fetch_add(1, Relaxed);
    }

    /// Counts a decision made on `listen[listener]`.
    pub(crate) fn decided_on(&self, listener: usize) {
        bump(&self.by_listener, listener);
    }

    /// The policy that decides for each listener, by name (`client_ip`, or
    /// `listen[1].client_ip`), in listener order.
    pub(crate) fn listener_policies<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let labels = names
            .take(LISTENERS)
            .enumerate()
            .map(|(i, name)| (format!("listen[{i}]"), name.to_string()))
            .collect();
        if let Ok(mut l) = self.listener_labels.lock() {
            *l = labels;
        }
    }

    /// The cached lists the current policy reads (the others are no longer in use).
    pub(crate) fn ranges_in_use(&self, metas: &[Meta]) {
        for (p, g) in PROVIDERS.iter().zip(&self.ranges) {
            match metas.iter().find(|m| m.provider == p.name) {
                Some(m) => {
                    g.fetched_at_unix.store(m.fetched_at_unix, Relaxed);
                    g.prefixes.store(m.prefixes() as u64, Relaxed);
                    g.in_use.store(true, Relaxed);
                }
                None => g.in_use.store(false, Relaxed),
            }
        }
    }

    /// The host names the policy in use trusts, and how many addresses each has.
    pub(crate) fn names_in_use(&self, names: &crate::names::Addresses) {
        let mut map = self.names.lock().unwrap_or_else(|p| p.into_inner());
        for g in map.values_mut() {
            g.addresses = None;
        }
        for (name, addrs) in names {
            map.entry(name.clone()).or_default().addresses = Some(addrs.len() as u64);
        }
    }

    /// A refresh could not resolve `name` (its last good addresses stay).
    pub(crate) fn name_resolve_failed(&self, name: &str) {
        let mut map = self.names.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_owned()).or_default().resolve_failures += 1;
    }

    /// The host name families: addresses for names in use, failures for names in use or
    /// that once failed. Names are checked host names: nothing in them needs escaping.
    fn render_names(&self, out: &mut String) {
        let map = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let in_use: Vec<(&str, u64)> =
            map.iter().filter_map(|(n, g)| g.addresses.map(|a| (n.as_str(), a))).collect();
        if !in_use.is_empty() {
            let _ = writeln!(
                out,
                "# HELP trueip_trust_name_addresses Addresses a trusted host name resolved to, in use.\n# TYPE trueip_trust_name_addresses gauge"
            );
            for (name, n) in &in_use {
                let _ = writeln!(out, "trueip_trust_name_addresses{{name=\"{name}\"}} {n}");
            }
        }
        let failures: Vec<(&str, u64)> = map
            .iter()
            .filter(|(_, g)| g.addresses.is_some() || g.resolve_failures > 0)
            .map(|(n, g)| (n.as_str(), g.resolve_failures))
            .collect();
        if !failures.is_empty() {
            counter(
                out,
                "trueip_trust_name_resolve_failures_total",
                "Refreshes that could not resolve a trusted host name (its last good addresses stay).",
                "name",
                failures,
            );
        }
    }

    /// A background refresh of `provider`'s list failed.
    pub(crate) fn range_refresh_failed(&self, provider: &str) {
        if let Some(g) =
            PROVIDERS.iter().position(|p| p.name == provider).and_then(|i| self.ranges.get(i))
        {
            g.refresh_failures.fetch_add(1, Relaxed);
        }
    }

    /// A log line was dropped because the writer fell behind.
    pub(crate) fn log_dropped(&self) {
        self.log_dropped.fetch_add(1, Relaxed);
    }

    /// Open connections now.
    pub(crate) fn open_connections(&self) -> u64 {
        self.connections_open.load(Relaxed)
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let n = |c: &AtomicU64| c.load(Relaxed);
        let out_ = &mut out;
        counter(
            out_,
            "trueip_requests_total",
            "HTTP requests, by where the client address came from.",
            "source",
            labelled(&SourceLabel::LABELS, &self.requests),
        );
        let _ = writeln!(
            out_,
            "# HELP trueip_requests_by_listener_total HTTP requests decided on each listener (the first {LISTENERS}), with the policy that decided: its own [[listen]] client_ip, or [client_ip].\n# TYPE trueip_requests_by_listener_total counter"
        );
        if let Ok(labels) = self.listener_labels.lock() {
            for ((listener, policy), c) in labels.iter().zip(&self.by_listener) {
                let _ = writeln!(
                    out_,
                    "trueip_requests_by_listener_total{{listener=\"{listener}\",policy=\"{policy}\"}} {}",
                    n(c)
                );
            }
        }
        counter(
            out_,
            "trueip_responses_total",
            "HTTP responses, by status class.",
            "class",
            ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .into_iter()
                .zip(self.responses.iter().skip(1).map(n)),
        );
        let spoof =
            self.warning(Warnings::SPOOF_ATTEMPT) + self.warning(Warnings::UNTRUSTED_HEADER);
        counter(
            out_,
            "trueip_spoof_attempts_total",
            "Requests carrying untrusted entries left of the client, or forwarding headers from an untrusted peer.",
            "",
            [("", spoof)],
        );
        counter(
            out_,
            "trueip_malformed_headers_total",
            "Requests whose forwarding headers held an element that could not be read.",
            "",
            [("", self.warning(Warnings::MALFORMED))],
        );
        counter(
            out_,
            "trueip_warnings_total",
            "Resolution warnings, by name (see `trueip explain`).",
            "warning",
            warning_table().zip(&self.warnings).map(|((_, name), c)| (name, n(c))),
        );
        counter(
            out_,
            "trueip_stripped_headers_total",
            "Client-IP header lines removed from requests that did not come through a trusted hop.",
            "",
            [("", n(&self.stripped_headers))],
        );
        counter(
            out_,
            "trueip_proxy_protocol_errors_total",
            "Connections closed because of their PROXY header.",
            "reason",
            labelled(&ProxyErrorKind::LABELS, &self.proxy_errors),
        );
        counter(
            out_,
            "trueip_proxy_protocol_ignored_total",
            "Connections served with the sender as the peer because their PROXY header, though valid, described another kind of connection (a UDP flow).",
            "reason",
            labelled(&ProxyIgnored::LABELS, &self.proxy_ignored),
        );
        counter(
            out_,
            "trueip_upstream_errors_total",
            "Failed upstream exchanges.",
            "kind",
            labelled(&UpstreamErrorKind::LABELS, &self.upstream_errors),
        );
        counter(
            out_,
            "trueip_client_errors_total",
            "Requests refused for the client's own fault (never counted as upstream errors).",
            "reason",
            labelled(&ClientErrorKind::LABELS, &self.client_errors),
        );
        for (name, help, c) in [
            ("trueip_connections_total", "Accepted connections.", &self.connections_total),
            (
                "trueip_connections_rejected_total",
                "Connections closed at once because limits.max_connections was reached.",
                &self.connections_rejected,
            ),
            ("trueip_tcp_relays_total", "TCP-mode connections relayed.", &self.tcp_connections),
            (
                "trueip_tls_handshake_errors_total",
                "TLS handshakes that failed or timed out.",
                &self.tls_errors,
            ),
        ] {
            counter(out_, name, help, "", [("", n(c))]);
        }
        counter(
            out_,
            "trueip_config_reloads_total",
            "Config reloads (SIGHUP), by result.",
            "result",
            [("ok", n(&self.reloads_ok)), ("error", n(&self.reloads_failed))],
        );
        counter(
            out_,
            "trueip_log_lines_dropped_total",
            "Log lines dropped because the writer fell behind.",
            "",
            [("", n(&self.log_dropped))],
        );
        let _ = writeln!(
            out,
            "# HELP trueip_connections_open Connections open now.\n# TYPE trueip_connections_open gauge"
        );
        let _ = writeln!(out, "trueip_connections_open {}", self.connections_open.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP trueip_request_duration_seconds Time from request to the end of the response body.\n# TYPE trueip_request_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, c) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(
                out,
                "trueip_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "trueip_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "trueip_request_duration_seconds_sum {}",
            self.latency_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "trueip_request_duration_seconds_count {count}");
        self.render_ranges(&mut out);
        self.render_names(&mut out);
        out
    }

    /// The range list families, for the lists in use (failures also for those that
    /// once failed).
    fn render_ranges(&self, out: &mut String) {
        let in_use: Vec<(&str, &RangeGauges)> = PROVIDERS
            .iter()
            .zip(&self.ranges)
            .filter(|(_, g)| g.in_use.load(Relaxed))
            .map(|(p, g)| (p.name, g))
            .collect();
        let now = crate::clock::unix_now();
        if !in_use.is_empty() {
            let _ = writeln!(
                out,
                "# HELP trueip_ranges_age_seconds Seconds since the provider's range list in use was fetched.\n# TYPE trueip_ranges_age_seconds gauge"
            );
            for (name, g) in &in_use {
                let age = now.saturating_sub(g.fetched_at_unix.load(Relaxed));
                let _ = writeln!(out, "trueip_ranges_age_seconds{{provider=\"{name}\"}} {age}");
            }
            let _ = writeln!(
                out,
                "# HELP trueip_ranges_prefixes Prefixes in the provider's range list in use.\n# TYPE trueip_ranges_prefixes gauge"
            );
            for (name, g) in &in_use {
                let _ = writeln!(
                    out,
                    "trueip_ranges_prefixes{{provider=\"{name}\"}} {}",
                    g.prefixes.load(Relaxed)
                );
            }
        }
        let failures: Vec<(&str, u64)> = PROVIDERS
            .iter()
            .zip(&self.ranges)
            .filter(|(_, g)| g.in_use.load(Relaxed) || g.refresh_failures.load(Relaxed) > 0)
            .map(|(p, g)| (p.name, g.refresh_failures.load(Relaxed)))
            .collect();
        if !failures.is_empty() {
            counter(
                out,
                "trueip_ranges_refresh_failures_total",
                "Background refreshes of a provider's range list that failed (the last good list stays).",
                "provider",
                failures,
            );
        }
    }

    fn warning(&self, flag: Warnings) -> u64 {
        warning_table()
            .position(|(f, _)| f == flag)
            .and_then(|i| self.warnings.get(i))
            .map_or(0, |c| c.load(Relaxed))
    }
}

/// Adds one to `counters[i]`.
fn bump(counters: &[AtomicU64], i: usize) {
    if let Some(c) = counters.get(i) {
        c.fetch_add(1, Relaxed);
    }
}

/// Each label value with its count.
fn labelled<'a>(
    labels: &'a [&'a str],
    counters: &'a [AtomicU64],
) -> impl Iterator<Item = (&'a str, u64)> {
    labels.iter().copied().zip(counters.iter().map(|c| c.load(Relaxed)))
}

/// Writes a counter family: its help and type, then one sample per `(label value,
/// count)`, labelled `label` (one unlabelled sample when `label` is empty).
fn counter<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, n) in samples {
        let _ = if label.is_empty() {
            writeln!(out, "{name} {n}")
        } else {
            writeln!(out, "{name}{{{label}=\"{value}\"}} {n}")
        };
    }
}

/// Each warning flag with its name, in the core's fixed order.
fn warning_table() -> impl Iterator<Item = (Warnings, &'static str)> {
    // Every flag has a name (`every_warning_flag_is_counted_under_its_name`), so each
    // keeps its place: its counter's index.
    WARNING_FLAGS.into_iter().filter_map(|f| f.names().next().map(|n| (f, n)))
}

/// Each warning flag a gateway's decision can carry, in the core's fixed order:
/// `warnings[i]` counts `WARNING_FLAGS[i]`. (Not those of the adapters alone: a signed
/// header's, a Lambda event's.)
const WARNING_FLAGS: [Warnings; 13] = [
    Warnings::SPOOF_ATTEMPT,
    Warnings::MALFORMED,
    Warnings::OPAQUE,
    Warnings::UNTRUSTED_HEADER,
    Warnings::FEWER_HOPS,
    Warnings::DISAGREE,
    Warnings::ALL_TRUSTED,
    Warnings::SPOOFABLE,
    Warnings::ORIGIN_SECRET,
    Warnings::TRUNCATED,
    Warnings::UNTRUSTED_PROXY_PROTOCOL,
    Warnings::DUPLICATE_HEADER,
    Warnings::UNVOUCHED_HEADER,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `header_writer_not_trusted` (rule 7a: a vendor header through trusted hops whose
    /// writer is not trusted) is a forgery the record keeps, and had no counter: an alert
    /// on `trueip_warnings_total` never saw it. Fails on the code before the fix.
    #[test]
    fn every_forgery_a_decision_can_carry_is_counted() {
        for name in Warnings::FORGERY.names() {
            assert!(
                warning_table().any(|(_, n)| n == name),
                "{name} has no trueip_warnings_total line"
            );
        }
    }

    #[test]
    fn every_warning_flag_is_counted_under_its_name() {
        assert_eq!(warning_table().count(), WARNING_FLAGS.len());
        assert!(WARNING_FLAGS.len() <= WARNINGS);
        let m = Metrics::default();
        for (i, &flag) in WARNING_FLAGS.iter().enumerate() {
            let before = m.warning(flag);
            let mut r = trueip::Policy::builder().build().unwrap().resolve(
                &trueip::Connection {
                    peer: std::net::SocketAddr::from(([192, 0, 2, 1], 1)).into(),
                    proxy_source: None,
                    private_link: Default::default(),
                },
                &http::HeaderMap::new(),
            );
            r.warnings = flag;
            m.resolved(&r);
            assert_eq!(m.warning(flag), before + 1, "{i}");
        }
    }

    #[test]
    fn range_lists_in_use_have_an_age_a_size_and_failures() {
        let m = Metrics::default();
        assert!(!m.render().contains("trueip_ranges"), "no list in use, no family");
        let now = crate::clock::unix_now();
        let meta = Meta {
            trueip_ranges: 1,
            provider: "cloudfront".into(),
            sources: vec![],
            fetched_at: String::new(),
            fetched_at_unix: now - 100,
            token: None,
            published: None,
            ipv4: 46,
            ipv6: 8,
            sha256: String::new(),
        };
        m.ranges_in_use(std::slice::from_ref(&meta));
        m.range_refresh_failed("cloudfront");
        m.range_refresh_failed("fastly");
        let text = m.render();
        let age: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("trueip_ranges_age_seconds{provider=\"cloudfront\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((100..200).contains(&age), "{text}");
        assert!(text.contains("trueip_ranges_prefixes{provider=\"cloudfront\"} 54"), "{text}");
        assert!(text.contains("trueip_ranges_refresh_failures_total{provider=\"cloudfront\"} 1"));
        assert!(text.contains("trueip_ranges_refresh_failures_total{provider=\"fastly\"} 1"));
        assert!(!text.contains("trueip_ranges_prefixes{provider=\"fastly\"}"), "{text}");
        m.ranges_in_use(&[]);
        assert!(!m.render().contains("trueip_ranges_age_seconds{"), "no longer in use");
    }

    /// Each label array follows its enum's variants, to the last one.
    #[test]
    fn labels_follow_the_variants() {
        let m = Metrics::default();
        m.proxy_error(ProxyErrorKind::UntrustedSender);
        m.proxy_ignored(ProxyIgnored::Datagram);
        m.upstream_error(UpstreamErrorKind::BodyTimeout);
        m.client_error(ClientErrorKind::SendTimeout);
        let text = m.render();
        for line in [
            "trueip_proxy_protocol_errors_total{reason=\"untrusted_sender\"} 1",
            "trueip_proxy_protocol_ignored_total{reason=\"datagram\"} 1",
            "trueip_upstream_errors_total{kind=\"body_timeout\"} 1",
            "trueip_client_errors_total{reason=\"send_timeout\"} 1",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.responded(200, Duration::from_millis(3));
        m.responded(502, Duration::from_secs(20));
        m.proxy_error(ProxyErrorKind::Timeout);
        let text = m.render();
        for line in [
            "trueip_responses_total{class=\"2xx\"} 1",
            "trueip_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "trueip_request_duration_seconds_bucket{le=\"+Inf\"} 2",
            "trueip_proxy_protocol_errors_total{reason=\"timeout\"} 1",
            "trueip_warnings_total{warning=\"spoof_attempt\"} 0",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
