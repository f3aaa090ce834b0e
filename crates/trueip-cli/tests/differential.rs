//! Differential tests: `trueip explain --batch` against two implementations people already run,
//! on the same inputs.
//!
//! | trueip strategy (trust)         | reference                                                      |
//! | ------------------------------- | -------------------------------------------------------------- |
//! | `rightmost-untrusted` (the set) | nginx realip: `set_real_ip_from` the set, `real_ip_recursive on`  |
//! | `rightmost` (the set)           | nginx realip: `set_real_ip_from` the set, `real_ip_recursive off` |
//! | `hops:N` (`any`)                | Werkzeug `ProxyFix(app, x_for=N)`                              |
//!
//! ProxyFix has no peer check, so trueip is given `trust = any` there: every peer is a proxy.
//!
//! Two families of cases:
//! - *generated*: a few thousand cases from a seeded xorshift PRNG: loopback peers, trust sets
//!   from [`TRUST_SETS`], X-Forwarded-For chains of 0..8 well-formed IPv4/IPv6 entries, one or two
//!   header lines, assorted spacing and header-name case, `IP` or `IP:port` peers, distractor
//!   headers. No difference is allowed on these.
//! - *tricky*: [`TRICKY`], hand-written elements the references treat differently (ports,
//!   brackets, empty elements, `unknown`, garbage, leading zeros, IPv4-mapped IPv6, an empty trust
//!   set, a chain longer than trueip's walk cap). Every difference on these must be listed, with
//!   the reason, in [`EXPECTED_DIFFERENCES`]; the test fails on a difference missing from the
//!   table *and* on a table entry that no longer differs. The table was written against nginx
//!   1.22.1 (Debian bookworm) and Werkzeug 3.1.
//!
//! How nginx sees the case's peer: nginx's `$remote_addr` is the TCP peer, so the request must
//! come *from* `127.0.0.N` (Linux routes all of 127/8 to `lo`). `std::net::TcpStream` cannot bind
//! before connecting (that needs `socket2`/`libc` or `unsafe`, none of which this test may use),
//! so the test talks to a front `server` of the same nginx, which forwards the request unchanged
//! to the back `server` under test with `proxy_bind $http_x_difftest_peer`: nginx itself binds
//! the upstream socket to the case's peer. The front does not touch `X-Forwarded-For`; the
//! self-check test [`oracles_answer_known_cases`] proves the back sees the intended peer.
//!
//! Needs `/usr/sbin/nginx` (with the realip module) and a Python with Werkzeug 3.1:
//! `$TRUEIP_PYTHON`, else `.venv/bin/python` at the repository root, else `python3` (see
//! [`python`]). `scripts/test-deps` installs nginx and makes `.venv/` with Werkzeug. Without them the tests fail, unless `TRUEIP_SKIP_EXTERNAL=1` is set. To explore
//! beyond the fixed run: `TRUEIP_DIFFTEST_SEED=7 TRUEIP_DIFFTEST_CASES=20000 cargo test -p
//! trueip-cli --test differential -- --nocapture`. The fixed run takes about 2 s.

mod support;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const NGINX: &str = "/usr/sbin/nginx";
const TRUEIP: &str = env!("CARGO_BIN_EXE_trueip");
const SEED: u64 = 0x7472_7565_6970_2d64;
const GENERATED_CASES: usize = 3000;
/// Werkzeug is compared with `trust = any`: ProxyFix counts hops and never looks at the peer.
const ANY: &[&str] = &["0.0.0.0/0", "::/0"];

/// Per-request socket timeouts, and the bound on each whole phase (nginx, Werkzeug, trueip).
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const PHASE_TIMEOUT: Duration = Duration::from_secs(180);

struct TrustSet {
    name: &'static str,
    cidrs: &'static [&'static str],
}

/// The peers are `127.0.0.1..=127.0.0.6`, so each set trusts some peers and not others.
#[rustfmt::skip]
const TRUST_SETS: &[TrustSet] = &[
    TrustSet { name: "lo/30", cidrs: &["127.0.0.0/30"] },
    TrustSet { name: "one address", cidrs: &["127.0.0.2"] },
    TrustSet { name: "lo/30 + 10/8", cidrs: &["127.0.0.0/30", "10.0.0.0/8"] },
    TrustSet { name: "private", cidrs: &["127.0.0.0/30", "10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"] },
    TrustSet { name: "mixed", cidrs: &["127.0.0.2", "192.168.0.0/16", "2001:db8::/32"] },
    TrustSet { name: "nothing", cidrs: &[] },
];

/// The trust set most [`TRICKY`] cases use: "private".
const PRIVATE: usize = 3;
/// The empty trust set, last in [`TRUST_SETS`]. The generator leaves it out: trueip rejects a
/// list strategy that trusts no one as a configuration error, a deliberate difference that
/// [`TRICKY`] names once instead of in every generated case.
const NOTHING: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Oracle {
    NginxRecursive,
    NginxNonRecursive,
    ProxyFix,
}

impl Oracle {
    const ALL: [Oracle; 3] = [Oracle::NginxRecursive, Oracle::NginxNonRecursive, Oracle::ProxyFix];

    fn name(self) -> &'static str {
        match self {
            Oracle::NginxRecursive => "nginx real_ip_recursive on",
            Oracle::NginxNonRecursive => "nginx real_ip_recursive off",
            Oracle::ProxyFix => "werkzeug ProxyFix",
        }
    }
}

/// A hand-written case: X-Forwarded-For lines as sent, peer `127.0.0.<peer>`, a trust set
/// ("private" unless said otherwise: `127.0.0.0/30, 10/8, 192.168/16, 2001:db8::/32`), other
/// headers, and the hop count ProxyFix and `hops:N` use (chosen so the N-th element from the right
/// is the interesting one).
struct Tricky {
    name: &'static str,
    peer: u8,
    lines: &'static [&'static str],
    x_for: u32,
    trust: usize,
    extra: &'static [(&'static str, &'static str)],
}

const fn t(name: &'static str, peer: u8, lines: &'static [&'static str], x_for: u32) -> Tricky {
    Tricky { name, peer, lines, x_for, trust: PRIVATE, extra: &[] }
}

#[rustfmt::skip]
const TRICKY: &[Tricky] = &[
    // Agreement anchors: the references and trueip must say the same on these.
    t("ok: all trusted gives leftmost", 1, &["10.0.0.3, 10.0.0.2, 10.0.0.1"], 3),
    t("ok: untrusted peer ignores header", 9, &["203.0.113.7"], 1),
    t("ok: garbage left of client is never read", 1, &["garbage, 203.0.113.7, 10.0.0.1"], 2),
    t("ok: unknown left of client is never read", 1, &["unknown, 203.0.113.7, 10.0.0.1"], 2),
    t("ok: two lines form one list", 1, &["203.0.113.7", "10.0.0.2, 10.0.0.1"], 3),
    t("ok: uppercase IPv6", 1, &["2001:DB9::7, 2001:DB8::1"], 2),
    t("ok: IPv6 client behind IPv6 proxy", 1, &["2001:db9::7, 2001:db8::1"], 2),
    t("ok: spaces around elements", 1, &["  203.0.113.7   ,  10.0.0.1  "], 2),
    t("ok: trusted hop with port", 1, &["203.0.113.7, 10.0.0.1:443"], 2),
    t("ok: mapped trusted hop is the IPv4 hop", 1, &["203.0.113.7, ::ffff:10.0.0.9, 10.0.0.1"], 3),
    Tricky { extra: &[("X_Forwarded_For", "198.51.100.66")],
        ..t("ok: X_Forwarded_For is another header", 1, &["203.0.113.7, 10.0.0.1"], 2) },
    Tricky { extra: &[("X_Forwarded_For", "198.51.100.66")],
        ..t("ok: only X_Forwarded_For means no header", 1, &[], 1) },
    // Configuration.
    Tricky { trust: NOTHING, ..t("config: empty trust set", 1, &["203.0.113.7, 10.0.0.1"], 1) },
    // Ports and brackets.
    t("port: client v4 with port", 1, &["203.0.113.7:8080, 10.0.0.1"], 2),
    t("port: rightmost v4 with port", 1, &["203.0.113.7:8080"], 1),
    t("port: bracketed v6 with port", 1, &["[2001:db9::7]:443, 10.0.0.1"], 2),
    t("port: bracketed v6 without port", 1, &["[2001:db9::7], 10.0.0.1"], 2),
    t("port: port zero", 1, &["203.0.113.7:0, 10.0.0.1"], 2),
    t("port: port out of range", 1, &["203.0.113.7:99999, 10.0.0.1"], 2),
    // Empty elements.
    t("empty: element in the trusted walk", 1, &["203.0.113.7, , 10.0.0.1"], 2),
    t("empty: double comma", 1, &["203.0.113.7,,10.0.0.1"], 2),
    t("empty: trailing comma", 1, &["203.0.113.7, 10.0.0.1,"], 1),
    t("empty: leading comma, client found first", 1, &[",203.0.113.7, 10.0.0.1"], 2),
    t("empty: leading comma, all trusted", 1, &[",10.0.0.2, 10.0.0.1"], 2),
    t("empty: second header line", 1, &["203.0.113.7, 10.0.0.1", ""], 1),
    t("empty: first header line", 1, &["", "203.0.113.7, 10.0.0.1"], 2),
    // Opaque and malformed elements.
    t("opaque: unknown in the trusted walk", 1, &["203.0.113.7, unknown, 10.0.0.1"], 2),
    t("opaque: unknown rightmost", 1, &["203.0.113.7, unknown"], 1),
    t("opaque: obfuscated id in the walk", 1, &["203.0.113.7, _hidden, 10.0.0.1"], 2),
    t("garbage: in the trusted walk", 1, &["203.0.113.7, not-an-ip, 10.0.0.1"], 2),
    t("garbage: rightmost", 1, &["203.0.113.7, <script>"], 1),
    t("garbage: whole first line", 1, &["not-an-ip", "10.0.0.2, 10.0.0.1"], 3),
    t("garbage: untrusted peer", 9, &["not-an-ip"], 1),
    t("garbage: quoted element", 1, &["\"203.0.113.7\", 10.0.0.1"], 2),
    t("garbage: space instead of comma", 1, &["203.0.113.7 10.0.0.1"], 1),
    t("garbage: tab after comma", 1, &["203.0.113.7,\t10.0.0.1"], 2),
    t("garbage: zone id", 1, &["fe80::1%eth0, 10.0.0.1"], 2),
    // IPv4 spellings nginx reads and trueip rejects, or the reverse.
    t("v4: leading-zero octet on client", 1, &["203.0.113.07, 10.0.0.1"], 2),
    t("v4: leading-zero octets on trusted hop", 1, &["203.0.113.7, 010.0.0.9, 10.0.0.1"], 3),
    t("v4: trailing dot", 1, &["203.0.113., 10.0.0.1"], 2),
    t("v4: empty octet", 1, &["203..113.7, 10.0.0.1"], 2),
    t("v4: broadcast address", 1, &["255.255.255.255, 10.0.0.1"], 2),
    // IPv4-mapped IPv6.
    t("mapped: client", 1, &["::ffff:203.0.113.7, 10.0.0.1"], 2),
    t("mapped: leading zeros in the embedded IPv4", 1, &["203.0.113.7, ::ffff:010.0.0.9, 10.0.0.1"], 3),
];

/// A deliberate difference: trueip and a reference disagree on a [`TRICKY`] case, and why
/// trueip's answer is the one we want.
struct Expected {
    case: &'static str,
    oracle: Oracle,
    why: &'static str,
}

const ON: Oracle = Oracle::NginxRecursive;
const OFF: Oracle = Oracle::NginxNonRecursive;
const PROXYFIX: Oracle = Oracle::ProxyFix;

const WHY_VERBATIM: &str = "ProxyFix copies the element into REMOTE_ADDR as text, whatever it is; \
    trueip parses it, and stops at the last vouched-for hop when it is not an address";
const WHY_NGINX_LEADING_COMMA: &str = "nginx's scanner stops at the start of the value without \
    treating a leading ',' as a separator, so the leftmost element reads `,203.0.113.7`, does not \
    parse, and nginx stops at the trusted hop; trueip skips empty elements (RFC 9110 list syntax)";
const WHY_NGINX_SPACE: &str = "nginx splits X-Forwarded-For on spaces as well as commas; trueip \
    splits on commas only, so `203.0.113.7 10.0.0.1` is one malformed element and the walk stops \
    at the peer, flagged `malformed`";
const WHY_NGINX_TAB: &str = "nginx treats only ' ' and ',' as separators, so `\\t10.0.0.1` is \
    unparsable and nginx gives up (peer); trueip trims HTAB as optional whitespace (RFC 9110 OWS)";
const WHY_NGINX_EMPTY_LINE: &str = "nginx 1.22 reads the last X-Forwarded-For line first and an \
    empty one does not parse, so it ignores the whole header (peer); trueip reads an empty line as \
    an empty list, as RFC 9110 says, and walks on";
const WHY_NGINX_LAX_V4: &str = "nginx's ngx_inet_addr reads leading zeros as decimal, an empty \
    or missing octet as 0 (`203..113.7`, `203.0.113.`); trueip rejects such text rather than \
    guess (octal to some parsers) and stops at the last vouched-for hop, flagged `malformed`";
const WHY_MAPPED: &str = "trueip normalises IPv4-mapped IPv6 to the IPv4 address (DESIGN: \
    normalise before comparing); the reference reports the IPv6 spelling";

#[rustfmt::skip]
const EXPECTED_DIFFERENCES: &[Expected] = &[
    Expected { case: "config: empty trust set", oracle: ON, why: "trueip refuses a list strategy \
        that trusts no one as a configuration error naming the fix (--trust); nginx without \
        set_real_ip_from silently leaves $remote_addr alone" },
    Expected { case: "config: empty trust set", oracle: OFF, why: "as for recursive on" },

    Expected { case: "port: client v4 with port", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "port: rightmost v4 with port", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "port: bracketed v6 with port", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "port: bracketed v6 without port", oracle: ON, why: "nginx's \
        ngx_parse_addr_port accepts brackets only with a port and stops at the trusted hop; \
        trueip reads `[2001:db9::7]` as the address (DESIGN: elements may carry brackets)" },
    Expected { case: "port: bracketed v6 without port", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "port: port zero", oracle: ON, why: "nginx rejects port 0 and with it the \
        element; trueip keeps the well-formed address (the port is reported, not used)" },
    Expected { case: "port: port zero", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "port: port out of range", oracle: PROXYFIX, why: WHY_VERBATIM },

    Expected { case: "empty: leading comma, client found first", oracle: ON, why: WHY_NGINX_LEADING_COMMA },
    Expected { case: "empty: leading comma, all trusted", oracle: ON, why: WHY_NGINX_LEADING_COMMA },
    Expected { case: "empty: second header line", oracle: ON, why: WHY_NGINX_EMPTY_LINE },
    Expected { case: "empty: second header line", oracle: OFF, why: WHY_NGINX_EMPTY_LINE },

    Expected { case: "opaque: unknown in the trusted walk", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "opaque: unknown rightmost", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "opaque: obfuscated id in the walk", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "garbage: in the trusted walk", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "garbage: rightmost", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "garbage: whole first line", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "garbage: untrusted peer", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "garbage: quoted element", oracle: PROXYFIX, why: "ProxyFix unquotes \
        `\"203.0.113.7\"` (parse_list_header); quotes are not X-Forwarded-For syntax, so trueip \
        (like nginx) stops at the trusted hop, flagged `malformed`" },
    Expected { case: "garbage: space instead of comma", oracle: ON, why: WHY_NGINX_SPACE },
    Expected { case: "garbage: space instead of comma", oracle: OFF, why: WHY_NGINX_SPACE },
    Expected { case: "garbage: space instead of comma", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "garbage: tab after comma", oracle: ON, why: WHY_NGINX_TAB },
    Expected { case: "garbage: tab after comma", oracle: OFF, why: WHY_NGINX_TAB },
    Expected { case: "garbage: zone id", oracle: ON, why: "nginx cannot parse a zone id and stops \
        at the trusted hop; trueip drops the zone id (DESIGN: zone ids are dropped)" },
    Expected { case: "garbage: zone id", oracle: PROXYFIX, why: WHY_VERBATIM },

    Expected { case: "v4: leading-zero octet on client", oracle: ON, why: WHY_NGINX_LAX_V4 },
    Expected { case: "v4: leading-zero octet on client", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "v4: leading-zero octets on trusted hop", oracle: ON, why: WHY_NGINX_LAX_V4 },
    Expected { case: "v4: leading-zero octets on trusted hop", oracle: PROXYFIX, why: "ProxyFix \
        never looks at the hops it counts; trueip stops at `010.0.0.9` (leading zeros rejected)" },
    Expected { case: "v4: trailing dot", oracle: ON, why: WHY_NGINX_LAX_V4 },
    Expected { case: "v4: trailing dot", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "v4: empty octet", oracle: ON, why: WHY_NGINX_LAX_V4 },
    Expected { case: "v4: empty octet", oracle: PROXYFIX, why: WHY_VERBATIM },
    Expected { case: "v4: broadcast address", oracle: PROXYFIX, why: "ProxyFix passes any \
        text on; 255.255.255.255 is never a TCP source, so trueip stops at the trusted hop (as \
        nginx does: its ngx_inet_addr cannot read it either)" },

    Expected { case: "mapped: client", oracle: ON, why: WHY_MAPPED },
    Expected { case: "mapped: client", oracle: PROXYFIX, why: WHY_MAPPED },
    Expected { case: "mapped: leading zeros in the embedded IPv4", oracle: ON, why: WHY_NGINX_LAX_V4 },
    Expected { case: "mapped: leading zeros in the embedded IPv4", oracle: PROXYFIX, why: "ProxyFix \
        never looks at the hops it counts; trueip stops at `::ffff:010.0.0.9` (leading zeros \
        rejected in embedded IPv4 too)" },

    Expected { case: "cap: 200 trusted hops after the client", oracle: ON, why: "trueip walks at \
        most trueip::MAX_WALK (128) entries and stops there, flagged `truncated` (DESIGN: bounded \
        work); nginx walks any length" },
];

// ---------------------------------------------------------------------------------------------
// Cases

#[derive(Clone, Debug)]
struct Case {
    name: String,
    peer: Ipv4Addr,
    /// Written as `IP:port` in trueip's input (the contract accepts both spellings).
    peer_port: Option<u16>,
    trust: usize,
    header_name: &'static str,
    /// X-Forwarded-For lines, in order; none means no header at all.
    lines: Vec<String>,
    distractors: Vec<(&'static str, &'static str)>,
    x_for: u32,
}

impl Case {
    fn trust_set(&self) -> &'static TrustSet {
        TRUST_SETS.get(self.trust).expect("trust index comes from TRUST_SETS")
    }

    fn describe(&self) -> String {
        let set = self.trust_set();
        format!(
            "case {:?}: peer {}, trust {:?} {:?}, {} lines {:?}, x_for {}, distractors {:?}",
            self.name,
            self.peer,
            set.name,
            set.cidrs,
            self.header_name,
            self.lines,
            self.x_for,
            self.distractors
        )
    }
}

/// xorshift64: deterministic, tiny, good enough to spread cases.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0)");
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let i = self.below(items.len());
        *items.get(i).expect("index below len")
    }
}

/// A random address inside `cidr` (`a.b.c.d/len`, `v6/len`, or a bare address).
fn random_in(cidr: &str, rng: &mut XorShift) -> IpAddr {
    let (addr, len) = match cidr.split_once('/') {
        Some((addr, len)) => (addr, Some(len.parse::<u32>().expect("prefix length"))),
        None => (cidr, None),
    };
    match addr.parse::<IpAddr>().expect("CIDR address") {
        IpAddr::V4(net) => {
            let len = len.unwrap_or(32);
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from((u32::from(net) & mask) | (rng.next() as u32 & !mask)))
        }
        IpAddr::V6(net) => {
            let len = len.unwrap_or(128);
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            // Mostly short host parts, so addresses look like ones people write.
            let host = if rng.chance(3, 4) {
                u128::from(rng.next() as u16)
            } else {
                (u128::from(rng.next()) << 64) | u128::from(rng.next())
            };
            IpAddr::V6(Ipv6Addr::from((u128::from(net) & mask) | (host & !mask)))
        }
    }
}

/// Whether `addr` is in one of the IPv4 `cidrs` (the generator's bias only; the references and
/// trueip decide trust for themselves).
fn in_set(cidrs: &[&str], addr: Ipv4Addr) -> bool {
    cidrs.iter().any(|cidr| {
        let (net, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
        match (net.parse::<Ipv4Addr>(), len.parse::<u32>()) {
            (Ok(net), Ok(len)) => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(net) & mask == u32::from(addr) & mask
            }
            _ => false,
        }
    })
}

fn untrusted_addr(rng: &mut XorShift) -> IpAddr {
    // Some of these fall inside other trust sets (127.0.0.4/30 is trusted by none, 10/8 by some):
    // the references decide, the generator only biases.
    const POOLS: &[&str] = &[
        "203.0.113.0/24",
        "198.51.100.0/24",
        "1.0.0.0/8",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "2001:db9::/32",
        "2a00:1450::/32",
        "fd00::/8",
        "127.0.0.4/30",
        "10.0.0.0/8",
        "192.168.0.0/16",
        "2001:db8::/32",
    ];
    let pool = rng.pick(POOLS);
    random_in(pool, rng)
}

fn generated_cases(seed: u64, count: usize) -> Vec<Case> {
    const SEPARATORS: &[&str] = &[", ", ",", " , ", ",  ", " ,"];
    const NAMES: &[&str] = &["X-Forwarded-For", "x-forwarded-for", "X-FORWARDED-FOR"];
    assert!(
        TRUST_SETS.get(NOTHING).is_some_and(|s| s.cidrs.is_empty())
            && NOTHING + 1 == TRUST_SETS.len(),
        "NOTHING must be the last, empty trust set"
    );
    let mut rng = XorShift(seed);
    let mut cases = Vec::with_capacity(count);
    for i in 0..count {
        let trust = rng.below(NOTHING);
        let cidrs = TRUST_SETS.get(trust).map(|s| s.cidrs).unwrap_or(&[]);
        // Two thirds of the peers are trusted proxies where the set has any, so most cases
        // exercise the walk rather than the untrusted-peer short cut.
        let trusted_peers: Vec<u8> =
            (1..=6).filter(|&n| in_set(cidrs, Ipv4Addr::new(127, 0, 0, n))).collect();
        let peer = if !trusted_peers.is_empty() && rng.chance(2, 3) {
            Ipv4Addr::new(127, 0, 0, rng.pick(&trusted_peers))
        } else {
            Ipv4Addr::new(127, 0, 0, 1 + rng.below(6) as u8)
        };
        let len = rng.below(9);
        // Half the chains end in a run of trusted hops, so recursive walks go deep.
        let trusted_tail = if rng.chance(1, 2) { rng.below(len + 1) } else { 0 };
        let entries: Vec<String> = (0..len)
            .map(|pos| {
                let trusted = pos >= len - trusted_tail || rng.chance(1, 4);
                let addr = if trusted && !cidrs.is_empty() {
                    random_in(rng.pick(cidrs), &mut rng)
                } else {
                    untrusted_addr(&mut rng)
                };
                addr.to_string()
            })
            .collect();
        let split = if len >= 2 && rng.chance(1, 3) { 1 + rng.below(len - 1) } else { len };
        let (first, second) = entries.split_at(split);
        let mut lines = Vec::new();
        for part in [first, second] {
            if part.is_empty() {
                continue;
            }
            let mut line = String::new();
            if rng.chance(1, 8) {
                line.push(' ');
            }
            for (j, entry) in part.iter().enumerate() {
                if j > 0 {
                    line.push_str(rng.pick(SEPARATORS));
                }
                line.push_str(entry);
            }
            if rng.chance(1, 8) {
                line.push_str("  ");
            }
            lines.push(line);
        }
        let mut distractors = Vec::new();
        if rng.chance(1, 4) {
            distractors.push(("X-Real-IP", "198.51.100.250"));
        }
        if rng.chance(1, 8) {
            distractors.push(("Forwarded", "for=198.51.100.251"));
        }
        cases.push(Case {
            name: format!("generated #{i}"),
            peer,
            peer_port: rng.chance(1, 4).then(|| 1024 + rng.below(60000) as u16),
            trust,
            header_name: rng.pick(NAMES),
            lines,
            distractors,
            x_for: 1 + rng.below(4) as u32,
        });
    }
    cases
}

fn tricky_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = TRICKY
        .iter()
        .map(|t| {
            let mut distractors = vec![("X-Real-IP", "198.51.100.250")];
            distractors.extend_from_slice(t.extra);
            Case {
                name: t.name.to_owned(),
                peer: Ipv4Addr::new(127, 0, 0, t.peer),
                peer_port: None,
                trust: t.trust,
                header_name: "X-Forwarded-For",
                lines: t.lines.iter().map(|l| (*l).to_owned()).collect(),
                distractors,
                x_for: t.x_for,
            }
        })
        .collect();
    // Long chains: a client behind `hops` trusted proxies, all of 10/8.
    for (name, hops) in [
        ("ok: 40 trusted hops after the client", 40),
        ("cap: 200 trusted hops after the client", 200),
    ] {
        let mut line = String::from("203.0.113.7");
        for i in (0..hops).rev() {
            let _ = write!(line, ", 10.0.{}.{}", i / 250, i % 250 + 1);
        }
        cases.push(Case {
            name: name.to_owned(),
            peer: Ipv4Addr::new(127, 0, 0, 1),
            peer_port: None,
            trust: PRIVATE,
            header_name: "X-Forwarded-For",
            lines: vec![line],
            distractors: vec![],
            x_for: 1,
        });
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// External programs

/// Whether nginx and Werkzeug are here. Missing ones fail the test, unless
/// `TRUEIP_SKIP_EXTERNAL=1`, which turns that into a printed skip.
fn externals_present(test: &str) -> bool {
    let mut missing = Vec::new();
    match Command::new(NGINX).arg("-V").output() {
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("http_realip_module") => {}
        Ok(_) => missing.push(format!("{NGINX} without the realip module")),
        Err(e) => missing.push(format!("nginx ({NGINX}: {e})")),
    }
    let python = python();
    let werkzeug = Command::new(&python)
        .args(["-c", "import werkzeug.middleware.proxy_fix"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !werkzeug.is_ok_and(|s| s.success()) {
        missing.push(format!("{} with werkzeug", python.display()));
    }
    if missing.is_empty() {
        return true;
    }
    let fix = "run `bash scripts/test-deps` (installs nginx, makes .venv/ with Werkzeug), or \
               `apt-get install -y nginx` and `python3 -m venv .venv && .venv/bin/pip install \
               'werkzeug==3.1.*'`";
    support::skip_without(&format!("{} (for {test})", missing.join(", ")), fix);
    false
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that runs Werkzeug: `$TRUEIP_PYTHON` (scripts/test sets it), else the virtual
/// environment scripts/test-deps makes, else `python3` on the PATH. Debian and Ubuntu refuse
/// `pip install` into their own Python (PEP 668), so Werkzeug usually lives in the venv.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("TRUEIP_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(python);
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs `cmd`, feeds it `input` (one line per case), returns its stdout lines; one line per
/// input line is required. Writing and reading run on their own threads so neither pipe can fill
/// up and stall the other; the child is killed after `timeout`. A non-zero exit is accepted when
/// `exit_ok` says so (`trueip explain --batch` exits non-zero when any line was an error, and
/// those errors are compared line by line).
fn run_batch(
    cmd: &mut Command,
    input: String,
    timeout: Duration,
    exit_ok: fn(std::process::ExitStatus) -> bool,
) -> Result<Vec<String>, String> {
    let expected_lines = input.lines().count();
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut s = String::new();
        let r = stdout.read_to_string(&mut s).map(|_| s);
        let _ = tx.send(r);
    });
    let out = rx.recv_timeout(timeout);
    if out.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("{what}: wait: {e}"))?;
    let written = writer.join().map_err(|_| format!("{what}: writer thread panicked"))?;
    let stderr = err_reader.join().unwrap_or_default();
    let out = match out {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("{what}: reading stdout: {e}\nstderr:\n{stderr}")),
        Err(_) => {
            return Err(format!("{what}: no answer within {timeout:?}; killed\nstderr:\n{stderr}"));
        }
    };
    if let Err(e) = written {
        return Err(format!("{what}: writing stdin: {e} ({status})\nstderr:\n{stderr}"));
    }
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    if !exit_ok(status) || lines.len() != expected_lines {
        return Err(format!(
            "{what}: {} output lines for {expected_lines} input lines, exit {status}\nstderr:\n{stderr}",
            lines.len()
        ));
    }
    Ok(lines)
}

/// One nginx (no daemon, no master) with a front server and one back server per
/// (trust set, recursive on/off). Killed, and its files removed, on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    front: u16,
    /// `(trust set index, recursive, port)`.
    backs: Vec<(usize, bool, u16)>,
}

impl Nginx {
    fn start() -> Nginx {
        let mut last_error = String::new();
        // Ports are picked free and released before nginx binds them; retry if one was taken.
        for _ in 0..3 {
            match Nginx::try_start() {
                Ok(nginx) => return nginx,
                Err(e) => last_error = e,
            }
        }
        panic!("nginx did not start: {last_error}");
    }

    fn try_start() -> Result<Nginx, String> {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "trueip-difftest-{}-{nanos}-{}",
            std::process::id(),
            STARTS.fetch_add(1, Ordering::Relaxed)
        ));
        for sub in ["logs", "tmp"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
        }

        let mut listeners = Vec::new();
        let mut port = || -> Result<u16, String> {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
            let p = l.local_addr().map_err(|e| e.to_string())?.port();
            listeners.push(l);
            Ok(p)
        };
        let front = port()?;
        let mut backs = Vec::new();
        for trust in 0..TRUST_SETS.len() {
            for recursive in [true, false] {
                backs.push((trust, recursive, port()?));
            }
        }
        drop(listeners);

        let conf = nginx_conf(&dir, front, &backs);
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).map_err(|e| format!("{}: {e}", conf_path.display()))?;
        let stderr = fs::File::create(dir.join("logs/stderr")).map_err(|e| e.to_string())?;
        let mut prefix = dir.clone().into_os_string();
        prefix.push("/");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {NGINX}: {e}"))?;
        let mut nginx = Nginx { child, dir, front, backs };

        let deadline = Instant::now() + Duration::from_secs(10);
        let ports: Vec<u16> =
            std::iter::once(front).chain(nginx.backs.iter().map(|&(_, _, p)| p)).collect();
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!("nginx exited with {status}: {}", nginx.logs()));
            }
            let up = ports.iter().all(|&p| {
                TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], p)), IO_TIMEOUT)
                    .is_ok()
            });
            if up {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                return Err(format!("nginx not listening after 10s: {}", nginx.logs()));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        let read =
            |name: &str| fs::read_to_string(self.dir.join("logs").join(name)).unwrap_or_default();
        format!("stderr:\n{}\nerror.log:\n{}", read("stderr"), read("error.log"))
    }

    fn back(&self, trust: usize, recursive: bool) -> u16 {
        self.backs
            .iter()
            .find(|&&(t, r, _)| t == trust && r == recursive)
            .map(|&(_, _, p)| p)
            .expect("a back server for every trust set")
    }

    /// `$remote_addr` as the back server for (`case.trust`, `recursive`) sets it, for a request
    /// from `case.peer` carrying the case's headers.
    fn remote_addr(&self, case: &Case, recursive: bool) -> Result<String, String> {
        let mut req = format!(
            "GET / HTTP/1.1\r\nHost: difftest\r\nX-Difftest-Peer: {}\r\nX-Difftest-Port: {}\r\n",
            case.peer,
            self.back(case.trust, recursive)
        );
        for (name, value) in &case.distractors {
            let _ = write!(req, "{name}: {value}\r\n");
        }
        for line in &case.lines {
            let _ = write!(req, "{}: {line}\r\n", case.header_name);
        }
        req.push_str("Connection: close\r\n\r\n");

        let addr = SocketAddr::from(([127, 0, 0, 1], self.front));
        let mut stream =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.write_all(req.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut resp = Vec::new();
        (&mut stream).take(64 * 1024).read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
        let resp = String::from_utf8_lossy(&resp);
        let (head, body) =
            resp.split_once("\r\n\r\n").ok_or_else(|| format!("no header end in {resp:?}"))?;
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(format!("nginx answered {head:?} {body:?}; {}", self.logs()));
        }
        Ok(body.trim().to_owned())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("nginx config and logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn nginx_conf(dir: &Path, front: u16, backs: &[(usize, bool, u16)]) -> String {
    let d = dir.display();
    let mut conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid "{d}/nginx.pid";
error_log "{d}/logs/error.log" warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path "{d}/tmp/body";
    proxy_temp_path "{d}/tmp/proxy";
    fastcgi_temp_path "{d}/tmp/fastcgi";
    uwsgi_temp_path "{d}/tmp/uwsgi";
    scgi_temp_path "{d}/tmp/scgi";
    default_type text/plain;

    # Front: forwards the request, headers untouched, from the case's peer address.
    server {{
        listen 127.0.0.1:{front};
        location / {{
            proxy_pass http://127.0.0.1:$http_x_difftest_port;
            proxy_bind $http_x_difftest_peer;
            proxy_set_header X-Difftest-Peer "";
            proxy_set_header X-Difftest-Port "";
            proxy_connect_timeout 5s;
            proxy_read_timeout 5s;
        }}
    }}
"#
    );
    for &(trust, recursive, port) in backs {
        let set = TRUST_SETS.get(trust).expect("trust index");
        let _ = write!(
            conf,
            "\n    # trust set {:?}, real_ip_recursive {}\n",
            set.name,
            on_off(recursive)
        );
        let _ = writeln!(conf, "    server {{\n        listen 127.0.0.1:{port};");
        for cidr in set.cidrs {
            let _ = writeln!(conf, "        set_real_ip_from {cidr};");
        }
        let _ = writeln!(conf, "        real_ip_header X-Forwarded-For;");
        let _ = writeln!(conf, "        real_ip_recursive {};", on_off(recursive));
        let _ = writeln!(conf, "        location / {{ return 200 \"$remote_addr\\n\"; }}\n    }}");
    }
    conf.push_str("}\n");
    conf
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn werkzeug_answers(cases: &[Case]) -> Result<Vec<String>, String> {
    let script = repo_root().join("tests/differential/werkzeug_proxyfix.py");
    let mut input = String::new();
    for case in cases {
        let xff = if case.lines.is_empty() { Value::Null } else { json!(case.lines) };
        let line = json!({"remote_addr": case.peer.to_string(), "xff": xff, "x_for": case.x_for});
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let lines = run_batch(Command::new(python()).arg(&script), input, PHASE_TIMEOUT, |status| {
        status.success()
    })?;
    lines
        .iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).map_err(|e| format!("werkzeug said {l:?}: {e}"))?;
            v.get("remote_addr")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("werkzeug said {l:?}"))
        })
        .collect()
}

fn trueip_input(case: &Case, oracle: Oracle) -> String {
    let mut headers: Vec<Value> = case.distractors.iter().map(|(n, v)| json!([n, v])).collect();
    headers.extend(case.lines.iter().map(|l| json!([case.header_name, l])));
    let (trust, strategy) = match oracle {
        Oracle::NginxRecursive => (case.trust_set().cidrs, "rightmost-untrusted".to_owned()),
        Oracle::NginxNonRecursive => (case.trust_set().cidrs, "rightmost".to_owned()),
        Oracle::ProxyFix => (ANY, format!("hops:{}", case.x_for)),
    };
    let peer = match case.peer_port {
        Some(port) => format!("{}:{port}", case.peer),
        None => case.peer.to_string(),
    };
    json!({"peer": peer, "headers": headers, "trust": trust, "strategy": strategy, "from": "xff"})
        .to_string()
}

/// trueip's answers, `[case][oracle]`, from one `trueip explain --batch` process. Each answer is
/// the `client_ip`, or the error, with the whole output line for the report.
fn trueip_answers(cases: &[Case]) -> Result<Vec<[TrueipAnswer; 3]>, String> {
    let mut input = String::new();
    for case in cases {
        for oracle in Oracle::ALL {
            input.push_str(&trueip_input(case, oracle));
            input.push('\n');
        }
    }
    // Exit 2 means "some line was an error"; those lines are compared like any other answer.
    // A crash (a signal, or a panic's 101) fails the run.
    let lines = run_batch(
        Command::new(TRUEIP).args(["explain", "--batch"]),
        input,
        PHASE_TIMEOUT,
        |status| matches!(status.code(), Some(0 | 2)),
    )?;
    let answers: Vec<TrueipAnswer> = lines.iter().map(|l| TrueipAnswer::parse(l)).collect();
    Ok(answers
        .chunks_exact(3)
        .map(|c| match c {
            [a, b, c] => [a.clone(), b.clone(), c.clone()],
            _ => unreachable!("chunks_exact(3)"),
        })
        .collect())
}

#[derive(Clone, Debug)]
struct TrueipAnswer {
    client_ip: Result<String, String>,
    line: String,
}

impl TrueipAnswer {
    fn parse(line: &str) -> TrueipAnswer {
        let client_ip = match serde_json::from_str::<Value>(line) {
            Err(e) => Err(format!("not JSON: {e}")),
            Ok(v) => match (v.get("error"), v.get("client_ip").and_then(Value::as_str)) {
                (Some(err), _) => Err(format!("error: {err}")),
                (None, Some(ip)) => Ok(ip.to_owned()),
                (None, None) => Err("no client_ip".to_owned()),
            },
        };
        TrueipAnswer { client_ip, line: line.to_owned() }
    }
}

/// Same address, whatever the spelling (`2001:DB8::1` = `2001:db8:0::1`). An IPv4-mapped IPv6
/// address is *not* the IPv4 address here: that difference is reported, not hidden.
fn same_ip(a: &str, b: &str) -> bool {
    matches!((a.parse::<IpAddr>(), b.parse::<IpAddr>()), (Ok(x), Ok(y)) if x == y)
}

// ---------------------------------------------------------------------------------------------
// Tests

/// The references themselves, on cases whose answers are known: proves the harness (the
/// proxy_bind front, the Werkzeug script) before anything is compared with trueip.
#[test]
fn oracles_answer_known_cases() {
    if !externals_present("oracles_answer_known_cases") {
        return;
    }
    let case = |peer: u8, trust: usize, lines: &[&str], x_for: u32| Case {
        name: String::new(),
        peer: Ipv4Addr::new(127, 0, 0, peer),
        peer_port: None,
        trust,
        header_name: "X-Forwarded-For",
        lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        distractors: vec![("X-Real-IP", "198.51.100.250")],
        x_for,
    };
    // Trust set 3 is "private" (127.0.0.0/30, 10/8, ...), 1 is "127.0.0.2", 5 is "nothing".
    #[rustfmt::skip]
    let known = [
        // (case: peer, trust, lines, x_for),                         on,            off,           ProxyFix
        // The back server sees the peer the front bound to.
        (case(5, 3, &[], 1),                                          "127.0.0.5",   "127.0.0.5",   "127.0.0.5"),
        // No set_real_ip_from: nginx ignores the header; ProxyFix has no peer check.
        (case(6, 5, &["203.0.113.7"], 1),                             "127.0.0.6",   "127.0.0.6",   "203.0.113.7"),
        // Untrusted peer for nginx; too few elements for ProxyFix.
        (case(5, 3, &["203.0.113.7"], 2),                             "127.0.0.5",   "127.0.0.5",   "127.0.0.5"),
        (case(1, 3, &["203.0.113.7, 10.0.0.2"], 1),                   "203.0.113.7", "10.0.0.2",    "10.0.0.2"),
        // A single-address trust set, peer in it and not.
        (case(2, 1, &["10.0.0.1"], 1),                                "10.0.0.1",    "10.0.0.1",    "10.0.0.1"),
        (case(3, 1, &["10.0.0.1"], 1),                                "127.0.0.3",   "127.0.0.3",   "10.0.0.1"),
        // Two header lines are one list.
        (case(1, 3, &["203.0.113.7", "10.0.0.2, 10.0.0.3"], 2),       "203.0.113.7", "10.0.0.3",    "10.0.0.2"),
        (case(1, 3, &["203.0.113.7", "10.0.0.2, 10.0.0.3"], 3),       "203.0.113.7", "10.0.0.3",    "203.0.113.7"),
        // All trusted: nginx takes the leftmost.
        (case(1, 3, &["10.0.0.3, 10.0.0.2"], 3),                      "10.0.0.3",    "10.0.0.2",    "127.0.0.1"),
        (case(1, 3, &["2001:db9::7, 2001:db8::1"], 2),                "2001:db9::7", "2001:db8::1", "2001:db9::7"),
    ];
    let nginx = Nginx::start();
    let cases: Vec<Case> = known.iter().map(|k| k.0.clone()).collect();
    let werkzeug = werkzeug_answers(&cases).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for ((case, on, off, proxyfix), wz) in known.iter().zip(&werkzeug) {
        let got_on = nginx.remote_addr(case, true).unwrap_or_else(|e| panic!("{e}"));
        let got_off = nginx.remote_addr(case, false).unwrap_or_else(|e| panic!("{e}"));
        for (who, want, got) in [
            ("recursive on", on, &got_on),
            ("recursive off", off, &got_off),
            ("ProxyFix", proxyfix, wz),
        ] {
            if !same_ip(want, got) {
                failures.push(format!("{}\n    {who}: want {want}, got {got}", case.describe()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the references do not behave as this harness assumes:\n{}",
        failures.join("\n")
    );
}

#[test]
fn trueip_agrees_with_nginx_and_proxyfix() {
    if !externals_present("trueip_agrees_with_nginx_and_proxyfix") {
        return;
    }
    let started = Instant::now();
    // TRUEIP_DIFFTEST_SEED / TRUEIP_DIFFTEST_CASES explore beyond the fixed run; CI uses neither.
    let env_num = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seed = env_num("TRUEIP_DIFFTEST_SEED").unwrap_or(SEED).max(1);
    let count = env_num("TRUEIP_DIFFTEST_CASES").map_or(GENERATED_CASES, |n| n as usize);
    let generated = generated_cases(seed, count);
    let tricky = tricky_cases();
    let cases: Vec<Case> = generated.iter().chain(&tricky).cloned().collect();
    let mut names: Vec<&str> = tricky.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), tricky.len(), "tricky case names must be unique");

    let nginx = Nginx::start();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut nginx_answers = Vec::with_capacity(cases.len());
    for case in &cases {
        assert!(Instant::now() < deadline, "nginx phase took longer than {PHASE_TIMEOUT:?}");
        let on =
            nginx.remote_addr(case, true).unwrap_or_else(|e| panic!("{}: {e}", case.describe()));
        let off =
            nginx.remote_addr(case, false).unwrap_or_else(|e| panic!("{}: {e}", case.describe()));
        nginx_answers.push((on, off));
    }
    drop(nginx);
    let nginx_time = started.elapsed();
    let werkzeug = werkzeug_answers(&cases).unwrap_or_else(|e| panic!("{e}"));
    let trueip = trueip_answers(&cases).unwrap_or_else(|e| panic!("{e}"));

    // The generator must exercise the walk, not only the untrusted-peer short cut.
    let moved = generated
        .iter()
        .zip(&nginx_answers)
        .filter(|(c, (on, _))| !same_ip(&c.peer.to_string(), on))
        .count();
    let split = nginx_answers.iter().take(generated.len()).filter(|(on, off)| on != off).count();
    assert!(
        moved * 3 > generated.len(),
        "only {moved}/{} generated cases leave the peer",
        generated.len()
    );
    assert!(split * 10 > generated.len(), "recursive on/off differ in only {split} cases");

    let mut differences = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (on, off) = nginx_answers.get(i).expect("one nginx answer per case");
        let wz = werkzeug.get(i).expect("one werkzeug answer per case");
        let ours = trueip.get(i).expect("trueip answers per case");
        for (oracle, theirs, ours) in [
            (Oracle::NginxRecursive, on, &ours[0]),
            (Oracle::NginxNonRecursive, off, &ours[1]),
            (Oracle::ProxyFix, wz, &ours[2]),
        ] {
            let agree = ours.client_ip.as_ref().is_ok_and(|ip| same_ip(ip, theirs));
            if !agree {
                differences.push((case, oracle, theirs.clone(), ours));
            }
        }
    }

    let mut report = Vec::new();
    for (case, oracle, theirs, ours) in &differences {
        let expected =
            EXPECTED_DIFFERENCES.iter().any(|e| e.case == case.name && e.oracle == *oracle);
        if !expected {
            report.push(format!(
                "UNEXPECTED {}\n    {}: {theirs}\n    trueip: {}\n    trueip line: {}",
                case.describe(),
                oracle.name(),
                match &ours.client_ip {
                    Ok(ip) => ip.clone(),
                    Err(e) => e.clone(),
                },
                ours.line
            ));
        }
    }
    for e in EXPECTED_DIFFERENCES {
        if !tricky.iter().any(|c| c.name == e.case) {
            report.push(format!("STALE table entry {:?}: no such case", e.case));
        } else if !differences.iter().any(|(c, o, _, _)| c.name == e.case && *o == e.oracle) {
            report.push(format!(
                "STALE table entry {:?} vs {}: they agree now; remove it (it said: {})",
                e.case,
                e.oracle.name(),
                e.why
            ));
        }
    }
    eprintln!(
        "differential (seed {seed:#x}): {} generated + {} tricky cases x {} references = {} comparisons, {} \
         expected differences, {} problems; nginx {:?}, total {:?}",
        generated.len(),
        tricky.len(),
        Oracle::ALL.len(),
        cases.len() * Oracle::ALL.len(),
        EXPECTED_DIFFERENCES.len(),
        report.len(),
        nginx_time,
        started.elapsed()
    );
    assert!(report.is_empty(), "{} problems:\n{}", report.len(), report.join("\n"));
}
