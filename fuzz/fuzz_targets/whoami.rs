//! The whoami page over arbitrary requests: no page, in any format, is larger than
//! `page_size_bound` of the request that asked for it (a request once spelling
//! `{{steps}}` in its headers made a page a thousand times its size).
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use trueip::{ListHeader, Policy};
use trueip_gateway::testing::{Format, page_size_bound, render, request_len};

/// The names a line may take: the client-IP headers the page shows, in the spellings
/// clients use (underscores, any case), and two it does not show.
const NAMES: [&str; 16] = [
    "X-Forwarded-For",
    "x-forwarded-for",
    "X_Forwarded_For",
    "Forwarded",
    "X-Real-IP",
    "x_real_ip",
    "CF-Connecting-IP",
    "cf_connecting_ip",
    "True-Client-IP",
    "CloudFront-Viewer-Address",
    "Via",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "Accept",
    "User-Agent",
];

/// Peers: trusted, untrusted, trusted as an IPv4-mapped IPv6 address, untrusted IPv6.
const PEERS: [&str; 4] =
    ["10.0.0.5:4000", "198.51.100.1:1", "[::ffff:10.0.0.5]:4000", "[2001:db8::7]:443"];

/// Policies, each with the number of strategies `page_size_bound` is told.
fn policies() -> &'static [(Policy, usize)] {
    static P: OnceLock<Vec<(Policy, usize)>> = OnceLock::new();
    P.get_or_init(|| {
        let build = |trust: &str, from: ListHeader, strategies: &[&str]| {
            let mut b = Policy::builder().trust_str(trust).unwrap().from_list(from);
            for s in strategies {
                b = b.strategy_str(s).unwrap();
            }
            (b.build().unwrap(), strategies.len())
        };
        let (xff, fwd) = (ListHeader::XForwardedFor, ListHeader::Forwarded);
        vec![
            build("10.0.0.0/8", xff, &["rightmost-untrusted"]),
            build("10.0.0.0/8", xff, &["hops:2"]),
            build("10.0.0.0/8", xff, &["header:X-Real-IP", "rightmost-untrusted"]),
            build("10.0.0.0/8", xff, &["hops:64", "hops:3", "rightmost-untrusted", "rightmost"]),
            build("10.0.0.0/8", fwd, &["rightmost-untrusted"]),
            build("10.0.0.0/8", fwd, &["hops:64", "rightmost"]),
            build("any", xff, &["leftmost"]),
            build("any", xff, &["header:cf-connecting-ip", "header:true-client-ip", "hops:2"]),
        ]
    })
}

/// Every `{{slot}}` of the page template, read from the template itself.
fn slots() -> &'static [&'static str] {
    static S: OnceLock<Vec<&'static str>> = OnceLock::new();
    S.get_or_init(|| {
        let page: &'static str = include_str!("../../crates/trueip-gateway/src/pages/whoami.html");
        let mut slots: Vec<&str> = page
            .match_indices("{{")
            .filter_map(|(i, _)| {
                let rest = &page[i..];
                rest.find("}}").map(|end| &rest[..end + 2])
            })
            .collect();
        slots.sort_unstable();
        slots.dedup();
        // The slots that show the request's own text must be among them.
        assert!(
            ["{{headers}}", "{{steps}}", "{{chain}}"].iter().all(|s| slots.contains(s)),
            "{slots:?}"
        );
        slots
    })
}

/// A header value: the bytes as given, except that 0x01 followed by a byte spells the
/// slot that byte picks, so slot names come up far more often than by chance.
fn value(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match (b, bytes.clone().next()) {
            (1, Some(&pick)) => {
                bytes.next();
                out.extend_from_slice(slots()[usize::from(pick) % slots().len()].as_bytes());
            }
            _ => out.push(b),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the peer (bits 0-1) and the policy (bits 2-4); the rest,
    // split at NUL, is the Host value, then one header line per chunk, whose first
    // byte picks its name.
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let peer: SocketAddr = PEERS[usize::from(control & 3)].parse().unwrap();
    let (policy, strategies) = &policies()[usize::from(control >> 2) % policies().len()];
    let mut chunks = rest.split(|&b| b == 0);
    let host = String::from_utf8_lossy(&value(chunks.next().unwrap_or_default())).into_owned();
    let owned: Vec<(&str, Vec<u8>)> = chunks
        .filter_map(|chunk| chunk.split_first())
        .map(|(&pick, raw)| (NAMES[usize::from(pick) % NAMES.len()], value(raw)))
        .collect();
    let lines: Vec<(&str, &[u8])> = owned.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let request = request_len(&host, &lines);
    let bound = page_size_bound(request, *strategies);
    for format in [Format::Html, Format::Json, Format::Text] {
        let page = render(policy, peer, &host, &lines, format);
        assert!(
            page.len() <= bound,
            "{format:?} from {peer}: a {request}-byte request made a {}-byte page (bound {bound})",
            page.len()
        );
    }
});
