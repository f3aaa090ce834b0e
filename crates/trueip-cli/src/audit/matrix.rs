//! The forged inputs `trueip audit` sends: each probe a few header lines carrying sentinel
//! addresses from the documentation ranges (RFC 5737: 192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24; RFC 3849: 2001:db8::/32), every sentinel used once in the whole matrix, so an
//! answer names the probe and the position that was believed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One forged request: the lines it adds, the sentinels they carry, and what an answer that
/// moved without becoming a sentinel means.
#[derive(Debug)]
pub(crate) struct Probe {
    /// Short stable name (`xff-list`), used in reports.
    pub(crate) name: &'static str,
    /// Header lines, in order; a name may repeat (several lines).
    pub(crate) lines: &'static [(&'static str, &'static str)],
    /// The addresses the lines carry.
    pub(crate) sentinels: &'static [Sentinel],
    /// What it means when the answer left the baseline for something that is no sentinel.
    pub(crate) if_changed: Fix,
}

/// An address as written in a probe, the address a permissive parser reads from it, where it
/// sits, and the fix when the target believes it.
#[derive(Debug)]
pub(crate) struct Sentinel {
    /// As sent (an octal form, a zone, a port...).
    pub(crate) text: &'static str,
    /// The address it denotes (`0313.0.0161.44` is 203.0.113.44 to `inet_aton`).
    pub(crate) ip: IpAddr,
    /// Where it sits: "the leftmost X-Forwarded-For entry".
    pub(crate) role: &'static str,
    /// Why believing it is wrong, and what to change.
    pub(crate) fix: Fix,
}

/// The diagnoses, each with its fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Fix {
    /// An X-Forwarded-For entry the client wrote, with nothing to tell it from a proxy's.
    XffClientEntry,
    /// The leftmost entry: always the client's text.
    XffLeftmost,
    /// A middle entry: a hop count larger than the proxies in front.
    XffHopCount,
    /// The rightmost entry the client wrote: the client's own connection is trusted as a proxy.
    XffTrustsClient,
    /// A single-address header the client wrote reached the app and was read.
    SingleHeader,
    /// `Forwarded` from the client was read.
    Forwarded,
    /// A header spelt with underscores was read as its dashed twin.
    Underscore,
    /// A `Connection:` token removed a header a proxy set, and the answer moved.
    HopByHop,
    /// A non-standard address form (octal, hex, integer) was parsed.
    Encoding,
    /// The answer moved for no reason the probe can name.
    Unexplained,
}

impl Fix {
    /// One line: what the target does wrong.
    pub(crate) fn problem(self) -> &'static str {
        match self {
            Fix::XffClientEntry => {
                "the target takes its answer from X-Forwarded-For text the client wrote"
            }
            Fix::XffLeftmost => {
                "the target takes the leftmost X-Forwarded-For entry, which is always the client's text"
            }
            Fix::XffHopCount => {
                "the target counts at least two more proxies than stand in front of it, and lands on client-written entries"
            }
            Fix::XffTrustsClient => {
                "the target trusts one hop more than stands in front of it: the client's own connection is taken for a proxy (nginx `set_real_ip_from 0.0.0.0/0`, a ProxyFix `x_for` one too large), so the last entry the client wrote wins"
            }
            Fix::SingleHeader => {
                "a single-address header the client wrote reaches the target and is believed"
            }
            Fix::Forwarded => "the target believes a Forwarded header the client wrote",
            Fix::Underscore => {
                "a header spelt with underscores reaches the target and is read as the dashed one (WSGI/CGI map both to HTTP_X_FORWARDED_FOR)"
            }
            Fix::HopByHop => {
                "a client's `Connection:` header made a proxy drop the forwarding header it sets, and the answer moved"
            }
            Fix::Encoding => {
                "the target reads octal, hex or integer address forms (inet_aton) from client-written text"
            }
            Fix::Unexplained => {
                "the answer moved away from your address when this input was added: client-written text changes it"
            }
        }
    }

    /// What to change.
    pub(crate) fn fix(self) -> &'static str {
        match self {
            Fix::XffClientEntry | Fix::XffLeftmost => {
                "read X-Forwarded-For from the right, skipping only your own proxies: nginx \
                 `set_real_ip_from <your proxies>; real_ip_header X-Forwarded-For; \
                 real_ip_recursive on;`, trueip `--trust <your proxies> --strategy \
                 rightmost-untrusted`; never the first entry"
            }
            Fix::XffHopCount => {
                "set the hop count to the number of proxies that append to X-Forwarded-For \
                 (ProxyFix `x_for=N`, trueip `hops:N`), or better trust your proxies' addresses \
                 (trueip `rightmost-untrusted`)"
            }
            Fix::XffTrustsClient => {
                "trust only your proxies' addresses: nginx `set_real_ip_from` with their CIDRs, \
                 never 0.0.0.0/0; trueip `--trust <CIDR>`, never `any`; a hop count (ProxyFix \
                 `x_for`, trueip `hops:N`) equal to the proxies that append, not more; and make \
                 the app reachable only through them (firewall, security group)"
            }
            Fix::SingleHeader => {
                "make the proxy in front overwrite the header with the peer it sees (nginx \
                 `proxy_set_header X-Real-IP $remote_addr;`), or stop reading it; read a \
                 CDN's header only from the CDN's ranges (trueip `header:NAME` with --trust, \
                 or a provider strategy)"
            }
            Fix::Forwarded => {
                "read Forwarded from the right, only from trusted proxies (trueip `--from \
                 forwarded --strategy rightmost-untrusted`), or have the proxy replace it"
            }
            Fix::Underscore => {
                "drop header names with underscores at the proxy (nginx does by default: \
                 `underscores_in_headers off`; trueip serve strips them) and read the client \
                 from the proxy's header only"
            }
            Fix::HopByHop => {
                "have the proxy set its forwarding headers after hop-by-hop removal, or ignore \
                 `Connection:` tokens naming them (trueip serve does); the app must fail \
                 closed when the header is missing, not fall back to client text"
            }
            Fix::Encoding => {
                "parse addresses strictly (no leading zeros, no hex, no integers) and only from \
                 entries your proxies wrote"
            }
            Fix::Unexplained => {
                "find which header the target reads for this input (trueip explain shows \
                 what a policy does with it) and read it only from trusted proxies"
            }
        }
    }
}

/// An address in a documentation range: 0 is 203.0.113.0/24, 1 is 198.51.100.0/24, 2 is
/// 192.0.2.0/24.
const fn v4(range: u8, d: u8) -> IpAddr {
    IpAddr::V4(match range {
        1 => Ipv4Addr::new(198, 51, 100, d),
        2 => Ipv4Addr::new(192, 0, 2, d),
        _ => Ipv4Addr::new(203, 0, 113, d),
    })
}

const fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

const fn s(text: &'static str, ip: IpAddr, role: &'static str, fix: Fix) -> Sentinel {
    Sentinel { text, ip, role, fix }
}

const fn probe(
    name: &'static str,
    lines: &'static [(&'static str, &'static str)],
    sentinels: &'static [Sentinel],
) -> Probe {
    Probe { name, lines, sentinels, if_changed: Fix::Unexplained }
}

const XFF: &str = "X-Forwarded-For";
const XRI: &str = "X-Real-IP";

/// The matrix, in the order it is sent.
pub(crate) static PROBES: &[Probe] = &[
    probe(
        "xff-single",
        &[(XFF, "203.0.113.1")],
        &[s(
            "203.0.113.1",
            v4(0, 1),
            "the only X-Forwarded-For entry, written by the client",
            Fix::XffClientEntry,
        )],
    ),
    probe(
        "xff-list",
        &[(XFF, "203.0.113.2, 198.51.100.2, 192.0.2.2")],
        &[
            s(
                "203.0.113.2",
                v4(0, 2),
                "the leftmost of three X-Forwarded-For entries the client wrote",
                Fix::XffLeftmost,
            ),
            s(
                "198.51.100.2",
                v4(1, 2),
                "the middle of three X-Forwarded-For entries the client wrote",
                Fix::XffHopCount,
            ),
            s(
                "192.0.2.2",
                v4(2, 2),
                "the rightmost of three X-Forwarded-For entries the client wrote",
                Fix::XffTrustsClient,
            ),
        ],
    ),
    probe(
        "xff-lines",
        &[(XFF, "203.0.113.3"), (XFF, "198.51.100.3")],
        &[
            s("203.0.113.3", v4(0, 3), "the first of two X-Forwarded-For lines", Fix::XffLeftmost),
            s(
                "198.51.100.3",
                v4(1, 3),
                "the second of two X-Forwarded-For lines",
                Fix::XffTrustsClient,
            ),
        ],
    ),
    probe(
        "xff-ipv6",
        &[(XFF, "2001:db8::4")],
        &[s("2001:db8::4", v6(4), "an IPv6 X-Forwarded-For entry", Fix::XffClientEntry)],
    ),
    probe(
        "xff-ipv6-port",
        &[(XFF, "[2001:db8::5]:4711")],
        &[s(
            "[2001:db8::5]:4711",
            v6(5),
            "an X-Forwarded-For entry [IPv6]:port",
            Fix::XffClientEntry,
        )],
    ),
    probe(
        "xff-port",
        &[(XFF, "203.0.113.6:4711")],
        &[s(
            "203.0.113.6:4711",
            v4(0, 6),
            "an X-Forwarded-For entry with a port",
            Fix::XffClientEntry,
        )],
    ),
    probe(
        "x-real-ip",
        &[(XRI, "203.0.113.7")],
        &[s("203.0.113.7", v4(0, 7), "X-Real-IP", Fix::SingleHeader)],
    ),
    probe(
        "forwarded",
        &[("Forwarded", "for=203.0.113.8")],
        &[s("203.0.113.8", v4(0, 8), "Forwarded for=", Fix::Forwarded)],
    ),
    probe(
        "forwarded-ipv6",
        &[("Forwarded", "for=\"[2001:db8::9]:4711\"")],
        &[s("[2001:db8::9]:4711", v6(9), "Forwarded for=\"[IPv6]:port\"", Fix::Forwarded)],
    ),
    probe(
        "forwarded-unmatched-quote",
        &[("Forwarded", "for=198.51.100.10, for=\"203.0.113.10")],
        &[
            s(
                "198.51.100.10",
                v4(1, 10),
                "a Forwarded element before an unmatched quote",
                Fix::Forwarded,
            ),
            s(
                "203.0.113.10",
                v4(0, 10),
                "a Forwarded element with an unmatched quote",
                Fix::Forwarded,
            ),
        ],
    ),
    probe(
        "forwarded-open-quote",
        &[("Forwarded", "for=\"203.0.113.11, for=198.51.100.11")],
        &[
            s(
                "203.0.113.11",
                v4(0, 11),
                "a Forwarded element whose quote is never closed",
                Fix::Forwarded,
            ),
            s(
                "198.51.100.11",
                v4(1, 11),
                "a Forwarded element inside a client's open quote",
                Fix::Forwarded,
            ),
        ],
    ),
    probe(
        "true-client-ip",
        &[("True-Client-IP", "203.0.113.12")],
        &[s(
            "203.0.113.12",
            v4(0, 12),
            "True-Client-IP (Akamai, Cloudflare Enterprise)",
            Fix::SingleHeader,
        )],
    ),
    probe(
        "cf-connecting-ip",
        &[("CF-Connecting-IP", "203.0.113.13")],
        &[s("203.0.113.13", v4(0, 13), "CF-Connecting-IP (Cloudflare)", Fix::SingleHeader)],
    ),
    probe(
        "x-client-ip",
        &[("X-Client-IP", "203.0.113.14")],
        &[s("203.0.113.14", v4(0, 14), "X-Client-IP", Fix::SingleHeader)],
    ),
    probe(
        "client-ip",
        &[("Client-IP", "203.0.113.15")],
        &[s("203.0.113.15", v4(0, 15), "Client-IP", Fix::SingleHeader)],
    ),
    probe(
        "x-cluster-client-ip",
        &[("X-Cluster-Client-IP", "203.0.113.16")],
        &[s("203.0.113.16", v4(0, 16), "X-Cluster-Client-IP", Fix::SingleHeader)],
    ),
    probe(
        "fastly-client-ip",
        &[("Fastly-Client-IP", "203.0.113.17")],
        &[s("203.0.113.17", v4(0, 17), "Fastly-Client-IP (Fastly)", Fix::SingleHeader)],
    ),
    probe(
        "fly-client-ip",
        &[("Fly-Client-IP", "203.0.113.18")],
        &[s("203.0.113.18", v4(0, 18), "Fly-Client-IP (Fly.io)", Fix::SingleHeader)],
    ),
    probe(
        "x-azure-clientip",
        &[("X-Azure-ClientIP", "203.0.113.19")],
        &[s("203.0.113.19", v4(0, 19), "X-Azure-ClientIP (Azure Front Door)", Fix::SingleHeader)],
    ),
    probe(
        "cloudfront-viewer-address",
        &[("CloudFront-Viewer-Address", "203.0.113.20:4711")],
        &[s(
            "203.0.113.20:4711",
            v4(0, 20),
            "CloudFront-Viewer-Address (CloudFront)",
            Fix::SingleHeader,
        )],
    ),
    probe(
        "x-forwarded",
        &[("X-Forwarded", "for=203.0.113.21")],
        &[s("203.0.113.21", v4(0, 21), "X-Forwarded", Fix::SingleHeader)],
    ),
    probe(
        "forwarded-for",
        &[("Forwarded-For", "203.0.113.22")],
        &[s("203.0.113.22", v4(0, 22), "Forwarded-For", Fix::SingleHeader)],
    ),
    probe(
        "x-original-forwarded-for",
        &[("X-Original-Forwarded-For", "203.0.113.23")],
        &[s(
            "203.0.113.23",
            v4(0, 23),
            "X-Original-Forwarded-For (ingress-nginx)",
            Fix::SingleHeader,
        )],
    ),
    probe(
        "xff-underscore",
        &[("X_Forwarded_For", "203.0.113.30")],
        &[s("203.0.113.30", v4(0, 30), "X_Forwarded_For (underscores)", Fix::Underscore)],
    ),
    probe(
        "x-real-ip-underscore",
        &[("X_Real_IP", "203.0.113.31")],
        &[s("203.0.113.31", v4(0, 31), "X_Real_IP (underscores)", Fix::Underscore)],
    ),
    Probe {
        name: "connection-xff",
        lines: &[("Connection", "X-Forwarded-For"), (XFF, "203.0.113.32")],
        sentinels: &[s(
            "203.0.113.32",
            v4(0, 32),
            "X-Forwarded-For, named hop-by-hop in Connection:",
            Fix::XffClientEntry,
        )],
        if_changed: Fix::HopByHop,
    },
    Probe {
        name: "connection-x-real-ip",
        lines: &[("Connection", "X-Real-IP"), (XRI, "203.0.113.33")],
        sentinels: &[s(
            "203.0.113.33",
            v4(0, 33),
            "X-Real-IP, named hop-by-hop in Connection:",
            Fix::SingleHeader,
        )],
        if_changed: Fix::HopByHop,
    },
    Probe {
        name: "connection-forwarding",
        lines: &[
            ("Connection", "Forwarded, X-Forwarded-For, X-Real-IP"),
            ("X-Client-IP", "203.0.113.34"),
        ],
        sentinels: &[s(
            "203.0.113.34",
            v4(0, 34),
            "X-Client-IP, with the forwarding headers named hop-by-hop",
            Fix::HopByHop,
        )],
        if_changed: Fix::HopByHop,
    },
    probe(
        "xff-ipv4-mapped",
        &[(XFF, "::ffff:203.0.113.40")],
        &[s(
            "::ffff:203.0.113.40",
            v4(0, 40),
            "an IPv4-mapped IPv6 X-Forwarded-For entry",
            Fix::XffClientEntry,
        )],
    ),
    probe(
        "x-real-ip-ipv4-mapped",
        &[(XRI, "::ffff:203.0.113.41")],
        &[s("::ffff:203.0.113.41", v4(0, 41), "an IPv4-mapped IPv6 X-Real-IP", Fix::SingleHeader)],
    ),
    probe(
        "xff-zoned",
        &[(XFF, "2001:db8::42%eth0")],
        &[s(
            "2001:db8::42%eth0",
            v6(0x42),
            "an X-Forwarded-For entry with a zone id",
            Fix::XffClientEntry,
        )],
    ),
    probe(
        "x-real-ip-zoned",
        &[(XRI, "2001:db8::43%eth0")],
        &[s("2001:db8::43%eth0", v6(0x43), "X-Real-IP with a zone id", Fix::SingleHeader)],
    ),
    probe(
        "xff-octal",
        &[(XFF, "0313.0.0161.44")],
        &[s(
            "0313.0.0161.44",
            v4(0, 44),
            "an octal X-Forwarded-For entry (203.0.113.44 to inet_aton)",
            Fix::Encoding,
        )],
    ),
    probe(
        "x-real-ip-octal",
        &[(XRI, "0313.0.0161.45")],
        &[s(
            "0313.0.0161.45",
            v4(0, 45),
            "an octal X-Real-IP (203.0.113.45 to inet_aton)",
            Fix::Encoding,
        )],
    ),
    probe(
        "xff-hex",
        &[(XFF, "0xcb.0x0.0x71.0x2e")],
        &[s(
            "0xcb.0x0.0x71.0x2e",
            v4(0, 46),
            "a hex X-Forwarded-For entry (203.0.113.46 to inet_aton)",
            Fix::Encoding,
        )],
    ),
    probe(
        "x-real-ip-hex",
        &[(XRI, "0xcb.0x0.0x71.0x2f")],
        &[s(
            "0xcb.0x0.0x71.0x2f",
            v4(0, 47),
            "a hex X-Real-IP (203.0.113.47 to inet_aton)",
            Fix::Encoding,
        )],
    ),
    probe(
        "xff-integer",
        &[(XFF, "3405803824")],
        &[s(
            "3405803824",
            v4(0, 48),
            "an integer X-Forwarded-For entry (203.0.113.48 to inet_aton)",
            Fix::Encoding,
        )],
    ),
];

/// The sentinel whose address or text `answer` is, with its probe.
pub(crate) fn find(
    answer_ip: Option<IpAddr>,
    answer_text: &str,
) -> Option<(&'static Probe, &'static Sentinel)> {
    PROBES.iter().find_map(|p| {
        p.sentinels
            .iter()
            .find(|s| answer_ip == Some(s.ip) || answer_text == s.text)
            .map(|s| (p, s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_documentation_ranges(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                matches!(v4.octets(), [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _])
            }
            IpAddr::V6(v6) => matches!(v6.segments(), [0x2001, 0xdb8, ..]),
        }
    }

    #[test]
    fn every_sentinel_is_a_documentation_address_used_once() {
        let mut seen = std::collections::HashSet::new();
        for p in PROBES {
            assert!(!p.sentinels.is_empty(), "{} carries no sentinel", p.name);
            for s in p.sentinels {
                assert!(in_documentation_ranges(s.ip), "{}: {}", p.name, s.ip);
                assert!(seen.insert(s.ip), "{}: {} used twice", p.name, s.ip);
                assert!(
                    p.lines.iter().any(|(_, v)| v.contains(s.text.trim_start_matches('['))),
                    "{}: {} is not in the lines it claims",
                    p.name,
                    s.text
                );
            }
        }
        let names: std::collections::HashSet<_> = PROBES.iter().map(|p| p.name).collect();
        assert_eq!(names.len(), PROBES.len(), "probe names are unique");
    }

    #[test]
    fn the_odd_forms_denote_their_sentinels() {
        // What inet_aton reads from the octal, hex and integer forms.
        let octal = |s: &str| u8::from_str_radix(s.trim_start_matches('0'), 8).unwrap_or(0);
        assert_eq!([octal("0313"), 0, octal("0161")], [203, 0, 113]);
        assert_eq!([0xcb, 0x0, 0x71, 0x2e, 0x2f], [203, 0, 113, 46, 47]);
        assert_eq!(u32::from(Ipv4Addr::new(203, 0, 113, 48)), 3_405_803_824);
    }

    #[test]
    fn an_answer_names_its_probe_and_position() {
        let (p, s) = find(Some(v4(2, 2)), "192.0.2.2").unwrap();
        assert_eq!((p.name, s.fix), ("xff-list", Fix::XffTrustsClient));
        let (p, _) = find(None, "0313.0.0161.44").unwrap();
        assert_eq!(p.name, "xff-octal");
        assert!(find(Some("127.0.0.1".parse().unwrap()), "127.0.0.1").is_none());
    }
}
