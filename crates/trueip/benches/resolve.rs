//! `Policy::resolve` next to the Rust crates that do this job today, on the same inputs.
//!
//! Every case builds one `http::HeaderMap` (with distractor headers, as a real request has)
//! and hands the same map to each crate; each group runs `trueip`, a std-parse +
//! binary-search baseline written here (`std_baseline`), and the peers whose API can
//! express the case. Before the benchmarks, `main` prints what each crate answers on the
//! benchmark inputs and on a few inputs where they disagree.
//!
//! ```text
//! CARGO_TARGET_DIR=target-bench cargo bench -p trueip --features http --bench resolve
//! ```
//!
//! Compare numbers within one run only: the machines this runs on are small and shared.

mod common;

use std::fmt::Display;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use axum::extract::FromRequestParts;
use divan::Bencher;
use divan::counter::ItemsCount;
use http::header::{FORWARDED, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request};
use real_ip::IpNet;
use trueip::proxy_protocol::{self, Decode};
use trueip::{Cidr, Connection, ListHeader, Policy, TrustSet};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The "5 trusted CIDRs" of a typical deployment: private ranges, CGNAT, ULA.
const FIVE_CIDRS: [&str; 5] =
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fd00::/8"];

/// The peer of every header case: a trusted proxy (in the 5 CIDRs).
const PEER: &str = "10.0.0.5:41000";

/// The client of the header cases; never trusted.
const CLIENT: &str = "203.0.113.9";

const LARGE_SET: usize = 10_000;

/// Fixed sample shape: divan's auto-tuning stops at one iteration per sample whenever the
/// first sample is hit by noise, which on a shared 2-core machine is often.
const SAMPLES: u32 = 300;
const SIZE: u32 = 100;

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

/// One request as every crate sees it.
struct Case {
    peer: SocketAddr,
    headers: HeaderMap,
    trusted: Vec<String>,
    list: ListHeader,
}

fn socket(text: &str) -> SocketAddr {
    text.parse().expect("socket address literal")
}

/// A request's ordinary headers; forwarding headers are added after them.
fn distractors() -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in common::ORDINARY {
        map.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    map
}

fn with_header(name: HeaderName, value: &str) -> HeaderMap {
    let mut map = distractors();
    map.append(name, HeaderValue::from_str(value).expect("header value"));
    map
}

fn five() -> Vec<String> {
    FIVE_CIDRS.iter().map(|s| s.to_string()).collect()
}

fn case_no_header() -> Case {
    Case {
        peer: socket(PEER),
        headers: distractors(),
        trusted: five(),
        list: ListHeader::XForwardedFor,
    }
}

fn case_xff_3hop_5cidr() -> Case {
    let xff = format!("{CLIENT}, 10.1.2.3, 192.168.4.5");
    Case {
        peer: socket(PEER),
        headers: with_header(X_FORWARDED_FOR, &xff),
        trusted: five(),
        list: ListHeader::XForwardedFor,
    }
}

/// 64 elements, every one trusted except the leftmost: the walk visits them all.
fn case_xff_64() -> Case {
    let mut xff = String::from(CLIENT);
    for i in 1..64u32 {
        xff.push_str(&format!(", 10.{}.{}.{}", i % 7, i * 3 % 251, i + 1));
    }
    Case {
        peer: socket(PEER),
        headers: with_header(X_FORWARDED_FOR, &xff),
        trusted: five(),
        list: ListHeader::XForwardedFor,
    }
}

fn case_forwarded_3() -> Case {
    let value = format!(
        "for={CLIENT};proto=https;host=example.com, for=10.1.2.3;proto=https, for=192.168.4.5;by=10.0.0.5"
    );
    Case {
        peer: socket(PEER),
        headers: with_header(FORWARDED, &value),
        trusted: five(),
        list: ListHeader::Forwarded,
    }
}

/// 10,000 deterministic pseudo-random IPv4 prefixes, /16 to /28, like a provider's
/// published range list, and addresses that hit and miss them.
struct LargeSet {
    texts: Vec<String>,
    hits: [Ipv4Addr; 3],
    miss: Ipv4Addr,
}

static LARGE: LazyLock<LargeSet> = LazyLock::new(|| {
    let mut rng = SplitMix(0x7275_6569_705f_6265);
    let mut nets = Vec::with_capacity(LARGE_SET);
    while nets.len() < LARGE_SET {
        let len = 16 + (rng.next() % 13) as u32;
        let start = (rng.next() as u32) & (u32::MAX << (32 - len));
        nets.push((start, len));
    }
    let texts: Vec<String> =
        nets.iter().map(|&(start, len)| format!("{}/{len}", Ipv4Addr::from(start))).collect();
    let set: TrustSet = texts.iter().map(|t| t.parse::<Cidr>().expect("generated CIDR")).collect();
    // One address inside three different prefixes, spread through the list.
    let hits = [nets[LARGE_SET / 7], nets[LARGE_SET / 2], nets[LARGE_SET - 3]]
        .map(|(start, _)| Ipv4Addr::from(start + 1));
    let mut miss = u32::from(Ipv4Addr::new(203, 0, 113, 9));
    while set.contains(IpAddr::V4(Ipv4Addr::from(miss))) {
        miss = miss.wrapping_add(65_537);
    }
    let miss = Ipv4Addr::from(miss);
    assert!(hits.iter().all(|h| set.contains(IpAddr::V4(*h))), "hits must be trusted");
    LargeSet { texts, hits, miss }
});

fn case_xff_3hop_10k() -> Case {
    let large = &*LARGE;
    let [peer, near, far] = large.hits;
    let xff = format!("{}, {far}, {near}", large.miss);
    Case {
        peer: SocketAddr::new(IpAddr::V4(peer), 41000),
        headers: with_header(X_FORWARDED_FOR, &xff),
        trusted: large.texts.clone(),
        list: ListHeader::XForwardedFor,
    }
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A PROXY v2 TCP4 header with ALPN (`h2`) and authority (`example.com`) TLVs, built by hand.
fn proxy_v2_bytes() -> Vec<u8> {
    let mut out = vec![0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
    let alpn: &[u8] = b"h2";
    let authority: &[u8] = b"example.com";
    let len = 12 + 3 + alpn.len() + 3 + authority.len();
    out.extend_from_slice(&[0x21, 0x11]);
    out.extend_from_slice(&u16::try_from(len).expect("short header").to_be_bytes());
    out.extend_from_slice(&[203, 0, 113, 9, 198, 51, 100, 7]);
    out.extend_from_slice(&56324u16.to_be_bytes());
    out.extend_from_slice(&443u16.to_be_bytes());
    for (kind, value) in [(0x01u8, alpn), (0x02, authority)] {
        out.push(kind);
        out.extend_from_slice(&u16::try_from(value.len()).expect("short TLV").to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"GET / HTTP/1.1\r\n");
    out
}

// ---------------------------------------------------------------------------------------
// Each crate, set up once per case
// ---------------------------------------------------------------------------------------

fn trueip_policy(trusted: &[String], list: ListHeader) -> Policy {
    let mut builder = Policy::builder();
    for spec in trusted {
        builder = builder.trust_str(spec).expect("trust spec");
    }
    builder
        .from_list(list)
        .strategy_str("rightmost-untrusted")
        .expect("strategy")
        .build()
        .expect("policy")
}

fn trueip_answer(case: &Case) -> trueip::Resolution {
    let policy = trueip_policy(&case.trusted, case.list);
    policy.resolve(&Connection::from_peer(case.peer), &case.headers)
}

/// The straightforward version: `str::parse::<IpAddr>()` per element, trusted ranges
/// merged into sorted `(start, end)` pairs over one u128 space (IPv4 mapped into
/// `::ffff:0:0/96`), looked up by binary search.
struct StdBaseline {
    ranges: Vec<(u128, u128)>,
}

impl StdBaseline {
    fn new(trusted: &[String]) -> Self {
        let mut ranges: Vec<(u128, u128)> = trusted
            .iter()
            .map(|text| {
                let (addr, len) = text.split_once('/').expect("CIDR with a prefix length");
                let addr: IpAddr = addr.parse().expect("CIDR address");
                let len: u32 = len.parse().expect("CIDR length");
                let len = if addr.is_ipv4() { len + 96 } else { len };
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                let start = key(addr) & mask;
                (start, start | !mask)
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        StdBaseline { ranges: merged }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let k = key(ip);
        let after = self.ranges.partition_point(|&(start, _)| start <= k);
        after.checked_sub(1).and_then(|i| self.ranges.get(i)).is_some_and(|&(_, end)| k <= end)
    }

    /// Rightmost-untrusted over X-Forwarded-For or Forwarded; stops at the first element
    /// it cannot parse, answering the last trusted address.
    fn resolve(&self, peer: IpAddr, headers: &HeaderMap, list: ListHeader) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let name = match list {
            ListHeader::Forwarded => FORWARDED,
            _ => X_FORWARDED_FOR,
        };
        let mut last = peer;
        for line in headers.get_all(name).iter().rev() {
            let Ok(line) = line.to_str() else { return last };
            for element in line.rsplit(',') {
                let element = element.trim();
                if element.is_empty() {
                    continue;
                }
                let text = match list {
                    ListHeader::Forwarded => match forwarded_for(element) {
                        Some(text) => text,
                        None => return last,
                    },
                    _ => element,
                };
                let Ok(ip) = text.parse::<IpAddr>() else {
                    return last;
                };
                let ip = ip.to_canonical();
                if !self.contains(ip) {
                    return ip;
                }
                last = ip;
            }
        }
        last
    }
}

fn key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address text of a `Forwarded` element's `for=`: unquoted, brackets and port removed.
fn forwarded_for(element: &str) -> Option<&str> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.eq_ignore_ascii_case("for").then_some(value.trim_matches('"'))
    })?;
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']').map(|(v6, _)| v6);
    }
    Some(value.split_once(':').map_or(value, |(v4, _)| v4))
}

fn ipnets(trusted: &[String]) -> Vec<IpNet> {
    trusted.iter().map(|t| t.parse().expect("IpNet")).collect()
}

fn trusted_proxies_config(trusted: &[String], list: ListHeader) -> trusted_proxies::Config {
    let mut config = trusted_proxies::Config::new();
    match list {
        ListHeader::Forwarded => config.trust_forwarded(),
        _ => config.trust_x_forwarded_for(),
    }
    for spec in trusted {
        config.add_trusted_ip(spec).expect("trusted-proxies CIDR");
    }
    config
}

fn request(headers: &HeaderMap) -> Request<()> {
    let mut request = Request::new(());
    *request.headers_mut() = headers.clone();
    request
}

fn parts(headers: &HeaderMap) -> Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.headers = headers.clone();
    parts
}

/// Runs a future that cannot wait (axum-client-ip's extractors only read headers).
fn ready<F: Future>(future: F) -> Option<F::Output> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// axum-client-ip has no trust set: it reads the rightmost element, whoever wrote it.
fn axum_client_ip(parts: &mut Parts, list: ListHeader) -> Result<IpAddr, String> {
    let got = match list {
        ListHeader::Forwarded => {
            ready(axum_client_ip::RightmostForwarded::from_request_parts(parts, &()))
                .map(|r| r.map(|ip| ip.0))
        }
        _ => ready(axum_client_ip::RightmostXForwardedFor::from_request_parts(parts, &()))
            .map(|r| r.map(|ip| ip.0)),
    };
    match got {
        Some(Ok(ip)) => Ok(ip),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("pending".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Benchmarks: one group per case, the crates side by side
// ---------------------------------------------------------------------------------------

fn bench_trueip(bencher: Bencher, case: &Case) {
    let policy = trueip_policy(&case.trusted, case.list);
    let conn = Connection::from_peer(case.peer);
    bencher.bench_local(|| policy.resolve(black_box(&conn), black_box(&case.headers)));
}

fn bench_std(bencher: Bencher, case: &Case) {
    let baseline = StdBaseline::new(&case.trusted);
    bencher.bench_local(|| {
        baseline.resolve(black_box(case.peer.ip()), black_box(&case.headers), case.list)
    });
}

fn bench_axum_client_ip(bencher: Bencher, case: &Case) {
    let mut parts = parts(&case.headers);
    bencher.bench_local(|| axum_client_ip(black_box(&mut parts), case.list));
}

fn bench_real_ip(bencher: Bencher, case: &Case) {
    let nets = ipnets(&case.trusted);
    bencher.bench_local(|| {
        real_ip::real_ip(black_box(&case.headers), black_box(case.peer.ip()), &nets)
    });
}

fn bench_trusted_proxies(bencher: Bencher, case: &Case) {
    let config = trusted_proxies_config(&case.trusted, case.list);
    let request = request(&case.headers);
    bencher.bench_local(|| {
        trusted_proxies::Trusted::from(black_box(case.peer.ip()), black_box(&request), &config).ip()
    });
}

/// Declares a group with one benchmark per crate for a case.
macro_rules! case_group {
    ($group:ident, $case:expr, $counter:expr) => {
        mod $group {
            use super::*;

            static CASE: LazyLock<Case> = LazyLock::new(|| $case);

            #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
            fn trueip(bencher: Bencher) {
                bench_trueip(bencher.counter($counter), &CASE);
            }

            #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
            fn std_baseline(bencher: Bencher) {
                bench_std(bencher.counter($counter), &CASE);
            }

            /// No trust set: answers the rightmost element (see the answers table).
            #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
            fn axum_client_ip(bencher: Bencher) {
                bench_axum_client_ip(bencher.counter($counter), &CASE);
            }

            #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
            fn real_ip(bencher: Bencher) {
                bench_real_ip(bencher.counter($counter), &CASE);
            }

            #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
            fn trusted_proxies(bencher: Bencher) {
                bench_trusted_proxies(bencher.counter($counter), &CASE);
            }
        }
    };
}

case_group!(no_header, case_no_header(), ItemsCount::new(1usize));
case_group!(xff_3hop_5cidr, case_xff_3hop_5cidr(), ItemsCount::new(1usize));
case_group!(xff_3hop_10k, case_xff_3hop_10k(), ItemsCount::new(1usize));
case_group!(xff_64_adversarial, case_xff_64(), ItemsCount::new(64usize));
case_group!(forwarded_3, case_forwarded_3(), ItemsCount::new(1usize));

mod proxy_v2_decode {
    use super::*;

    static BYTES: LazyLock<Vec<u8>> = LazyLock::new(proxy_v2_bytes);

    /// Decodes addresses and every TLV into owned fields (ALPN `Vec`, authority `String`).
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip(bencher: Bencher) {
        let bytes: &[u8] = &BYTES;
        bencher.bench_local(|| proxy_protocol::decode(black_box(bytes)));
    }

    /// Parses the fixed part; TLVs are walked here to find ALPN and authority (borrowed).
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn ppp(bencher: Bencher) {
        let bytes: &[u8] = &BYTES;
        bencher.bench_local(|| {
            let header = ppp::v2::Header::try_from(black_box(bytes)).ok()?;
            let (mut alpn, mut authority) = (None, None);
            for tlv in header.tlvs() {
                let tlv = tlv.ok()?;
                match tlv.kind {
                    0x01 => alpn = Some(tlv.value.len()),
                    0x02 => authority = Some(tlv.value.len()),
                    _ => {}
                }
            }
            Some((header.addresses, alpn, authority))
        });
    }

    /// Parses the header; ALPN and authority through its accessors (borrowed).
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn proxy_header(bencher: Bencher) {
        let bytes: &[u8] = &BYTES;
        bencher.bench_local(|| {
            let (header, consumed) = proxy_header::ProxyHeader::parse(
                black_box(bytes),
                proxy_header::ParseConfig::default(),
            )
            .ok()?;
            Some((
                header.proxied_address().map(|a| a.source),
                header.alpn().map(<[u8]>::len),
                header.authority().map(str::len),
                consumed,
            ))
        });
    }
}

mod trust_build_10k {
    use super::*;

    /// Parse 10,000 CIDR strings and merge them into the sorted-interval set.
    #[divan::bench(sample_count = 100, sample_size = 1)]
    fn trueip(bencher: Bencher) {
        let texts = &LARGE.texts;
        bencher.bench_local(|| {
            black_box(texts).iter().map(|t| t.parse::<Cidr>()).collect::<Result<TrustSet, _>>()
        });
    }

    /// The whole `Policy::builder().trust_str(..) x 10,000 .build()` path.
    #[divan::bench(sample_count = 100, sample_size = 1)]
    fn trueip_policy(bencher: Bencher) {
        let texts = &LARGE.texts;
        bencher.bench_local(|| super::trueip_policy(black_box(texts), ListHeader::XForwardedFor));
    }

    #[divan::bench(sample_count = 100, sample_size = 1)]
    fn std_baseline(bencher: Bencher) {
        let texts = &LARGE.texts;
        bencher.bench_local(|| StdBaseline::new(black_box(texts)));
    }

    /// A `Vec<IpNet>`: parsed, not merged; looked up linearly.
    #[divan::bench(sample_count = 100, sample_size = 1)]
    fn real_ip(bencher: Bencher) {
        let texts = &LARGE.texts;
        bencher.bench_local(|| ipnets(black_box(texts)));
    }

    /// `Config::add_trusted_ip` per prefix: parsed, pushed onto a `Vec`, looked up linearly.
    #[divan::bench(sample_count = 100, sample_size = 1)]
    fn trusted_proxies(bencher: Bencher) {
        let texts = &LARGE.texts;
        bencher.bench_local(|| trusted_proxies_config(black_box(texts), ListHeader::XForwardedFor));
    }
}

/// The pieces of `xff_3hop_5cidr`, for reading where trueip's time goes.
mod components {
    use super::*;

    static CASE: LazyLock<Case> = LazyLock::new(case_xff_3hop_5cidr);
    static SET_5: LazyLock<TrustSet> =
        LazyLock::new(|| FIVE_CIDRS.iter().map(|t| t.parse::<Cidr>().expect("CIDR")).collect());
    static SET_10K: LazyLock<TrustSet> =
        LazyLock::new(|| LARGE.texts.iter().map(|t| t.parse::<Cidr>().expect("CIDR")).collect());

    /// One `HeaderMap` lookup of `x-forwarded-for` (a custom name: hashed byte by byte).
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn headermap_get_xff(bencher: Bencher) {
        bencher.bench_local(|| {
            black_box(&CASE.headers)
                .get_all(X_FORWARDED_FOR)
                .iter()
                .next_back()
                .map(HeaderValue::len)
        });
    }

    /// One `HeaderMap` lookup of `forwarded` (a standard name), absent here.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn headermap_get_forwarded(bencher: Bencher) {
        bencher.bench_local(|| {
            black_box(&CASE.headers).get_all(FORWARDED).iter().next_back().map(HeaderValue::len)
        });
    }

    /// The one-pass read `resolve` does instead of the two lookups above: every line of
    /// `x-forwarded-for`, and whether `forwarded` is present, over a small map.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn headermap_scan_xff_and_forwarded(bencher: Bencher) {
        use trueip::Headers;
        use trueip::headers::names;
        bencher.bench_local(|| {
            let mut last = 0;
            let forwarded = black_box(&CASE.headers).for_each_value_noting(
                &names::X_FORWARDED_FOR,
                &names::FORWARDED,
                |value| last = value.len(),
            );
            (last, forwarded)
        });
    }

    /// `xff::Rev` over the 3-element value: split, classify and parse each element.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_xff_rev_3(bencher: Bencher) {
        let value = CASE.headers.get(X_FORWARDED_FOR).expect("xff").as_bytes();
        bencher.bench_local(|| {
            let lines = [black_box(value)];
            trueip::xff::Rev::new(&lines).filter_map(|e| e.node()).count()
        });
    }

    /// The same three elements with `str::split` + `str::parse::<IpAddr>()`.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn std_split_parse_3(bencher: Bencher) {
        let value = CASE.headers.get(X_FORWARDED_FOR).expect("xff").to_str().expect("ascii");
        bencher.bench_local(|| {
            black_box(value).rsplit(',').filter_map(|e| e.trim().parse::<IpAddr>().ok()).count()
        });
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_parse_node_v4(bencher: Bencher) {
        bencher.bench_local(|| trueip::addr::parse_node(black_box(b"192.168.4.5")));
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_parse_ipv4(bencher: Bencher) {
        bencher.bench_local(|| trueip::addr::parse_ipv4(black_box(b"192.168.4.5")));
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn std_parse_v4(bencher: Bencher) {
        bencher.bench_local(|| black_box("192.168.4.5").parse::<IpAddr>());
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_contains_5(bencher: Bencher) {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 168, 4, 5));
        bencher.bench_local(|| SET_5.contains(black_box(ip)));
    }

    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_contains_10k(bencher: Bencher) {
        let ip = IpAddr::V4(LARGE.hits[1]);
        bencher.bench_local(|| SET_10K.contains(black_box(ip)));
    }

    /// The whole resolve with the headers as a `(name, value)` slice: no hashing.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_resolve_slice_headers(bencher: Bencher) {
        let policy = trueip_policy(&CASE.trusted, CASE.list);
        let conn = Connection::from_peer(CASE.peer);
        let headers: Vec<(String, Vec<u8>)> = CASE
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        bencher.bench_local(|| policy.resolve(black_box(&conn), black_box(headers.as_slice())));
    }

    /// The peer alone is not trusted: the smallest amount of work `resolve` can do.
    #[divan::bench(sample_count = SAMPLES, sample_size = SIZE)]
    fn trueip_resolve_untrusted_peer(bencher: Bencher) {
        let policy = trueip_policy(&CASE.trusted, CASE.list);
        let conn = Connection::from_peer(socket("198.51.100.7:5000"));
        bencher.bench_local(|| policy.resolve(black_box(&conn), black_box(&CASE.headers)));
    }
}

// ---------------------------------------------------------------------------------------
// What each crate answers
// ---------------------------------------------------------------------------------------

fn show<T: Display, E: Display>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => v.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

fn row(name: &str, case: &Case) -> String {
    let resolution = trueip_answer(case);
    let mut trueip = resolution.client.to_string();
    if !resolution.warnings.is_empty() {
        trueip.push_str(&format!(" ({})", resolution.warnings));
    }
    let std = StdBaseline::new(&case.trusted)
        .resolve(case.peer.ip(), &case.headers, case.list)
        .to_string();
    let axum = show(axum_client_ip(&mut parts(&case.headers), case.list));
    let axum =
        axum.split(" header").next().unwrap_or_default().chars().take(40).collect::<String>();
    let real = real_ip::real_ip(&case.headers, case.peer.ip(), &ipnets(&case.trusted))
        .map_or("none".into(), |ip| ip.to_string());
    let config = trusted_proxies_config(&case.trusted, case.list);
    let tp = trusted_proxies::Trusted::from(case.peer.ip(), &request(&case.headers), &config)
        .ip()
        .to_string();
    format!("| {name} | {trueip} | {std} | {axum} | {real} | {tp} |")
}

fn print_answers() {
    let header = "| input | trueip | std baseline | axum-client-ip | real-ip | trusted-proxies |\n| --- | --- | --- | --- | --- | --- |";
    println!(
        "Answers on the benchmark inputs (peer {PEER} unless noted; client {CLIENT}; 10k: peer/hits {:?}, miss {}):",
        LARGE.hits, LARGE.miss
    );
    println!("{header}");
    for (name, case) in [
        ("no_header", case_no_header()),
        ("xff_3hop_5cidr", case_xff_3hop_5cidr()),
        ("xff_3hop_10k", case_xff_3hop_10k()),
        ("xff_64_adversarial", case_xff_64()),
        ("forwarded_3", case_forwarded_3()),
    ] {
        println!("{}", row(name, &case));
    }

    println!();
    println!(
        "Answers where the crates differ (trust: {}; peer {PEER} unless noted):",
        FIVE_CIDRS.join(", ")
    );
    println!("{header}");
    let xff = |peer: &str, value: &str| Case {
        peer: socket(peer),
        headers: with_header(X_FORWARDED_FOR, value),
        trusted: five(),
        list: ListHeader::XForwardedFor,
    };
    let two_lines = {
        let mut case = xff(PEER, "203.0.113.9");
        case.headers.append(X_FORWARDED_FOR, HeaderValue::from_static("10.1.2.3"));
        case
    };
    let rows = [
        ("forged first entry: `1.2.3.4, 203.0.113.9`", xff(PEER, "1.2.3.4, 203.0.113.9")),
        (
            "IPv4-mapped peer `[::ffff:10.0.0.5]`: `203.0.113.9`",
            xff("[::ffff:10.0.0.5]:41000", "203.0.113.9"),
        ),
        ("`1.2.3.4:80, 10.1.2.3`", xff(PEER, "1.2.3.4:80, 10.1.2.3")),
        ("`[2001:db8::1]:443, 10.1.2.3`", xff(PEER, "[2001:db8::1]:443, 10.1.2.3")),
        ("`203.0.113.9, unknown`", xff(PEER, "203.0.113.9, unknown")),
        (
            "garbage mid-chain: `203.0.113.9, garbage, 10.1.2.3`",
            xff(PEER, "203.0.113.9, garbage, 10.1.2.3"),
        ),
        ("all trusted: `10.1.2.3, 192.168.4.5`", xff(PEER, "10.1.2.3, 192.168.4.5")),
        ("untrusted peer 198.51.100.7: `1.2.3.4`", xff("198.51.100.7:5000", "1.2.3.4")),
        ("two lines: `203.0.113.9` + `10.1.2.3`", two_lines),
    ];
    for (name, case) in rows {
        println!("{}", row(name, &case));
    }
    println!();
}

/// Fails the run if trueip does not answer the benchmark inputs as intended, so a
/// benchmark never measures a shortcut.
fn check_inputs() {
    let client: IpAddr = CLIENT.parse().expect("client literal");
    assert_eq!(trueip_answer(&case_no_header()).ip(), Some(socket(PEER).ip()));
    assert_eq!(trueip_answer(&case_xff_3hop_5cidr()).ip(), Some(client));
    assert_eq!(trueip_answer(&case_xff_3hop_10k()).ip(), Some(IpAddr::V4(LARGE.miss)));
    let adversarial = trueip_answer(&case_xff_64());
    assert_eq!((adversarial.ip(), adversarial.trusted_hops), (Some(client), 64));
    assert_eq!(trueip_answer(&case_forwarded_3()).ip(), Some(client));
    match proxy_protocol::decode(&proxy_v2_bytes()) {
        Ok(Decode::Complete { header, .. }) => {
            assert_eq!(header.tlvs.alpn.as_deref(), Some(&b"h2"[..]));
            assert_eq!(header.tlvs.authority.as_deref(), Some("example.com"));
        }
        other => panic!("PROXY v2 input does not decode: {other:?}"),
    }
}

fn main() {
    check_inputs();
    print_answers();
    divan::main();
}
