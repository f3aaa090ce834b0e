//! Trust sets: the addresses whose forwarding headers we believe.
//!
//! A [`TrustSet`] is built once from CIDRs, single addresses, named sets and
//! provider range lists, then answers `contains` on every hop of every request.
//! Prefixes are merged into sorted, disjoint intervals. A handful of intervals (the
//! usual private ranges) are scanned in order; a large IPv4 list (AWS-sized, 10,000+
//! prefixes) gets a first-level index on the address's top bits, so a lookup is one
//! table read and a search among the one or two intervals of that bucket. No lookup
//! allocates.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::addr::{AddrError, normalize, parse_ip};
use crate::error::ConfigError;

/// An address prefix: `10.0.0.0/8`, `2001:db8::/32`, or a single address (`/32`, `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A prefix; fails if `prefix` is too long or `addr` has bits set past it.
    /// IPv4-mapped IPv6 prefixes (`::ffff:10.0.0.0/104`) become IPv4 ones.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, ConfigError> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                (normalize(addr), prefix - 96)
            }
            _ => (addr, prefix),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(ConfigError::new(format!(
                "invalid CIDR \"{addr}/{prefix}\": prefix longer than /{max}"
            )));
        }
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return Err(ConfigError::new(format!(
                "invalid CIDR \"{addr}/{prefix}\": address bits set past the prefix"
            ))
            .hint(format!("did you mean \"{}/{prefix}\"?", cidr.network())));
        }
        Ok(cidr)
    }

    /// A single address.
    pub fn host(addr: IpAddr) -> Self {
        let addr = normalize(addr);
        Cidr { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        }
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` (normalised) lies inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, normalize(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

pub(crate) fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

pub(crate) fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::new(format!("invalid CIDR {}: {why}", quoted(text)));
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = parse_ip(addr.trim().as_bytes()).map_err(|e| match e {
            AddrError::LeadingZero => {
                bad("IPv4 octet with a leading zero").hint("write 10.0.0.1, not 010.0.0.1")
            }
            _ => bad("not an IP address"),
        })?;
        match prefix {
            None if text.contains('%') => Err(bad("zone ids are not part of an address range")),
            None => Ok(Cidr::host(addr)),
            Some(p) => {
                let p: u8 = p.trim().parse().map_err(|_| bad("prefix length is not a number"))?;
                // parse_ip maps ::ffff:a.b.c.d to IPv4; the prefix was written for IPv6.
                match addr {
                    IpAddr::V4(v4) if text.contains(':') => {
                        Cidr::new(IpAddr::V6(v4.to_ipv6_mapped()), p)
                    }
                    _ => Cidr::new(addr, p),
                }
            }
        }
    }
}

/// The most characters of a rejected range an error quotes: a range is at most 43
/// (`ffff:…:ffff/128`), and a line of a downloaded list can be 32 MiB, which quoted (every
/// byte escaped) made an error message four times that.
const QUOTED_CHARS: usize = 64;

/// `text` quoted for an error, cut after [`QUOTED_CHARS`] characters.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => {
            format!("\"{}\"... ({} bytes)", text.get(..end).unwrap_or_default(), text.len())
        }
        None => format!("\"{text}\""),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Named sets usable wherever a CIDR is: `loopback`, `private`, `any`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedSet {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), RFC 4193 ULA (`fc00::/7`),
    /// link-local (`169.254/16`, `fe80::/10`) and CGNAT shared space is *not* included.
    Private,
    /// Every address. Only for a service that nothing can reach except through the proxy.
    Any,
}

impl NamedSet {
    /// Every named set, for help texts.
    pub const ALL: [NamedSet; 3] = [NamedSet::Loopback, NamedSet::Private, NamedSet::Any];

    /// The name as written in config.
    pub fn name(self) -> &'static str {
        match self {
            NamedSet::Loopback => "loopback",
            NamedSet::Private => "private",
            NamedSet::Any => "any",
        }
    }

    /// Parses a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|set| set.name().eq_ignore_ascii_case(name))
    }

    /// The prefixes of the set.
    pub fn cidrs(self) -> Vec<Cidr> {
        let texts: &[&str] = match self {
            NamedSet::Loopback => &["127.0.0.0/8", "::1/128"],
            NamedSet::Private => &[
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "169.254.0.0/16",
                "fc00::/7",
                "fe80::/10",
            ],
            NamedSet::Any => &["0.0.0.0/0", "::/0"],
        };
        texts.iter().filter_map(|t| t.parse().ok()).collect()
    }
}

/// A set of trusted addresses, built once, looked up per hop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustSet {
    // Sorted, disjoint, non-adjacent intervals [start, end].
    v4_starts: Vec<u32>,
    v4_ends: Vec<u32>,
    v4_index: V4Index,
    v6_starts: Vec<u128>,
    v6_ends: Vec<u128>,
    /// Whether connections over a Unix socket (which have no address) are trusted: the
    /// trust spec `unix`. No CIDR, not even `any`, includes them.
    unix: bool,
}

impl TrustSet {
    /// The empty set: trusts no one.
    pub fn empty() -> Self {
        TrustSet::default()
    }

    /// Builds a set from prefixes, merging overlaps. O(n log n).
    pub fn from_cidrs<I: IntoIterator<Item = Cidr>>(cidrs: I) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for cidr in cidrs {
            match cidr.network() {
                IpAddr::V4(net) => {
                    let start = u32::from(net);
                    v4.push((start, start | !mask32(cidr.prefix)));
                }
                IpAddr::V6(net) => {
                    let start = u128::from(net);
                    v6.push((start, start | !mask128(cidr.prefix)));
                }
            }
        }
        let (v4_starts, v4_ends) = merge(v4);
        let (v6_starts, v6_ends) = merge(v6);
        TrustSet {
            v4_index: V4Index::new(&v4_starts),
            v4_starts,
            v4_ends,
            v6_starts,
            v6_ends,
            unix: false,
        }
    }

    /// This set, trusting Unix-socket peers too (`true`) or not.
    pub fn with_unix(mut self, unix: bool) -> Self {
        self.unix = unix;
        self
    }

    /// Whether a peer connected over a Unix socket is trusted (the spec `unix`).
    #[inline]
    pub fn trusts_unix(&self) -> bool {
        self.unix
    }

    /// Whether `peer` is trusted: an address by [`contains`](Self::contains), a
    /// Unix-socket peer by [`trusts_unix`](Self::trusts_unix).
    #[inline]
    pub fn contains_peer(&self, peer: crate::addr::Peer) -> bool {
        match peer {
            crate::addr::Peer::Ip(node) => self.contains(node.ip),
            crate::addr::Peer::Unix => self.unix,
        }
    }

    /// The union of two sets.
    pub fn union(&self, other: &TrustSet) -> TrustSet {
        TrustSet::from_cidrs(self.cidrs().chain(other.cidrs())).with_unix(self.unix || other.unix)
    }

    /// Whether `ip` is trusted. IPv4-mapped IPv6 is looked up as IPv4.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match normalize(ip) {
            IpAddr::V4(ip) => self.contains_v4(ip),
            IpAddr::V6(ip) => lookup(&self.v6_starts, &self.v6_ends, u128::from(ip)),
        }
    }

    /// `contains` for an address already known to be IPv4 (the walk's fast path).
    #[inline]
    pub(crate) fn contains_v4(&self, ip: Ipv4Addr) -> bool {
        let ip = ip.to_bits();
        if self.v4_index.is_empty() {
            scan(&self.v4_starts, &self.v4_ends, ip)
        } else {
            self.v4_index.lookup(&self.v4_starts, &self.v4_ends, ip)
        }
    }

    /// The IPv4 half of the set, for a loop that looks up many addresses: its slices are
    /// read from the set once, and can stay in registers across the loop, instead of
    /// being re-read through `&self` at every lookup; and the choice between a scan and
    /// the index is made once, so each kind of set gets a loop of its own.
    #[inline]
    pub(crate) fn v4_lookup(&self) -> V4Lookup<'_> {
        let (starts, ends) = (self.v4_starts.as_slice(), self.v4_ends.as_slice());
        if self.v4_index.is_empty() {
            V4Lookup::Scan(V4Scan { starts, ends })
        } else {
            V4Lookup::Indexed(V4Indexed { starts, ends, index: &self.v4_index })
        }
    }

    /// Whether the set trusts no one (no address, and no Unix-socket peer).
    pub fn is_empty(&self) -> bool {
        self.v4_starts.is_empty() && self.v6_starts.is_empty() && !self.unix
    }

    /// Whether the set trusts every address.
    pub fn is_everything(&self) -> bool {
        self.v4_starts == [0]
            && self.v4_ends == [u32::MAX]
            && self.v6_starts == [0]
            && self.v6_ends == [u128::MAX]
    }

    /// Number of merged intervals (for diagnostics).
    pub fn intervals(&self) -> usize {
        self.v4_starts.len() + self.v6_starts.len()
    }

    /// The set as a minimal list of prefixes.
    pub fn cidrs(&self) -> impl Iterator<Item = Cidr> + '_ {
        let v4 = self.v4_starts.iter().zip(&self.v4_ends).flat_map(|(&s, &e)| {
            split_range(u128::from(s), u128::from(e), 32)
                .map(|(n, p)| Cidr { addr: IpAddr::V4(Ipv4Addr::from(n as u32)), prefix: p })
        });
        let v6 = self.v6_starts.iter().zip(&self.v6_ends).flat_map(|(&s, &e)| {
            split_range(s, e, 128)
                .map(|(n, p)| Cidr { addr: IpAddr::V6(Ipv6Addr::from(n)), prefix: p })
        });
        v4.chain(v6)
    }
}

impl fmt::Debug for TrustSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let mut list = f.debug_list();
        if self.unix {
            list.entry(&"unix");
        }
        list.entries(self.cidrs().take(SHOWN).map(|c| c.to_string()));
        if self.intervals() > SHOWN {
            list.entry(&format_args!("… {} intervals in all", self.intervals()));
        }
        list.finish()
    }
}

impl FromIterator<Cidr> for TrustSet {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        TrustSet::from_cidrs(iter)
    }
}

fn merge<T: Ord + Copy + num::One>(mut ranges: Vec<(T, T)>) -> (Vec<T>, Vec<T>) {
    ranges.sort_unstable();
    let mut starts: Vec<T> = Vec::with_capacity(ranges.len());
    let mut ends: Vec<T> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match ends.last_mut() {
            Some(last) if start <= last.saturating_inc() => {
                if end > *last {
                    *last = end;
                }
            }
            _ => {
                starts.push(start);
                ends.push(end);
            }
        }
    }
    (starts, ends)
}

mod num {
    pub(super) trait One {
        fn saturating_inc(self) -> Self;
    }
    impl One for u32 {
        fn saturating_inc(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl One for u128 {
        fn saturating_inc(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// Sets with at most this many IPv4 intervals are scanned in order rather than indexed:
/// a few predictable compares beat a chain of dependent binary-search loads.
const SCAN_MAX: usize = 16;

/// [`TrustSet::contains_v4`], taken apart once for a loop (see [`TrustSet::v4_lookup`]).
pub(crate) enum V4Lookup<'a> {
    /// A few intervals, scanned.
    Scan(V4Scan<'a>),
    /// Many intervals, through the index.
    Indexed(V4Indexed<'a>),
}

/// A small set's IPv4 intervals.
#[derive(Clone, Copy)]
pub(crate) struct V4Scan<'a> {
    starts: &'a [u32],
    ends: &'a [u32],
}

impl V4Scan<'_> {
    /// Whether `ip` (the bits of an IPv4 address) is trusted.
    #[inline(always)]
    pub(crate) fn contains(self, ip: u32) -> bool {
        scan(self.starts, self.ends, ip)
    }
}

/// A large set's IPv4 intervals and their index.
#[derive(Clone, Copy)]
pub(crate) struct V4Indexed<'a> {
    starts: &'a [u32],
    ends: &'a [u32],
    index: &'a V4Index,
}

impl V4Indexed<'_> {
    /// Whether `ip` (the bits of an IPv4 address) is trusted.
    #[inline(always)]
    pub(crate) fn contains(self, ip: u32) -> bool {
        self.index.lookup(self.starts, self.ends, ip)
    }
}

/// Scans a few intervals in order. They are sorted and disjoint, so the first that ends
/// at or after `ip` is the only one that can hold it: one compare per interval passed,
/// and no second slice walked in step with the first.
#[inline]
fn scan(starts: &[u32], ends: &[u32], ip: u32) -> bool {
    match ends.iter().position(|&end| ip <= end) {
        Some(i) => starts.get(i).is_some_and(|&start| start <= ip),
        None => false,
    }
}

/// A first-level index over a large IPv4 interval list: for each value of the address's
/// top bits (a bucket), how many intervals start in earlier buckets. A lookup then
/// searches only the intervals starting in its bucket, plus the one just before them,
/// which may reach into the bucket. Sized to about one interval per bucket (10,000
/// prefixes: 2^13 buckets, 32 KiB).
#[derive(Clone, Default, PartialEq, Eq)]
struct V4Index {
    /// `2^bits + 1` entries; empty when the set is small enough to scan.
    before: Vec<u32>,
    /// `32 - bits`: the shift that leaves an address's bucket number.
    shift: u32,
}

impl V4Index {
    fn new(starts: &[u32]) -> Self {
        if starts.len() <= SCAN_MAX {
            return V4Index::default();
        }
        let bits = starts.len().ilog2().clamp(4, 16);
        let shift = 32 - bits;
        let before = (0..=1u64 << bits)
            .map(|bucket| {
                let n = starts.partition_point(|&s| u64::from(s >> shift) < bucket);
                u32::try_from(n).unwrap_or(u32::MAX)
            })
            .collect();
        V4Index { before, shift }
    }

    fn is_empty(&self) -> bool {
        self.before.is_empty()
    }

    #[inline]
    fn lookup(&self, starts: &[u32], ends: &[u32], ip: u32) -> bool {
        let bucket = (ip >> self.shift) as usize;
        let (Some(&lo), Some(&hi)) = (self.before.get(bucket), self.before.get(bucket + 1)) else {
            return false;
        };
        let (lo, hi) = (lo as usize, hi as usize);
        let in_bucket = starts.get(lo..hi).unwrap_or_default();
        // The last interval starting at or before `ip`: in this bucket, or the one before it.
        let after = lo + in_bucket.partition_point(|&s| s <= ip);
        match after.checked_sub(1).and_then(|i| ends.get(i)) {
            Some(&end) => ip <= end,
            None => false,
        }
    }
}

#[inline]
fn lookup<T: Ord + Copy>(starts: &[T], ends: &[T], ip: T) -> bool {
    // Index of the last interval starting at or before `ip`.
    let after = starts.partition_point(|&s| s <= ip);
    match after.checked_sub(1).and_then(|i| ends.get(i)) {
        Some(&end) => ip <= end,
        None => false,
    }
}

/// Splits [start, end] into maximal aligned prefixes.
fn split_range(start: u128, end: u128, bits: u8) -> impl Iterator<Item = (u128, u8)> {
    let mut next = Some(start);
    std::iter::from_fn(move || {
        let cur = next?;
        // Largest block aligned at `cur` that does not pass `end`.
        let mut size_bits =
            if cur == 0 { u32::from(bits) } else { cur.trailing_zeros().min(u32::from(bits)) };
        while size_bits > 0 {
            let last = cur
                .checked_add((1u128 << size_bits) - 1)
                .filter(|&l| l <= end && (bits == 128 || l < (1u128 << bits)));
            if size_bits == 128 || last.is_some() {
                break;
            }
            size_bits -= 1;
        }
        let last = if size_bits == 128 { u128::MAX } else { cur + ((1u128 << size_bits) - 1) };
        next = if last >= end { None } else { Some(last + 1) };
        Some((cur, bits - size_bits as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(specs: &[&str]) -> TrustSet {
        specs.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn printed(set: &TrustSet) -> Vec<String> {
        set.cidrs().map(|c| c.to_string()).collect()
    }

    /// A list line of megabytes (a provider file of zeros, a list that lost its line
    /// breaks) made an error message of megabytes, every byte escaped: the quote is cut.
    #[test]
    fn a_long_rejected_range_is_quoted_cut() {
        let line = "\0".repeat(1 << 20);
        let e = line.parse::<Cidr>().unwrap_err().to_string();
        assert!(e.len() < 400, "{} bytes: {}", e.len(), e.get(..400).unwrap_or(&e));
        assert!(e.contains("(1048576 bytes): not an IP address"), "{e}");
        let short = "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string();
        assert!(short.contains("\"10.0.0.0/33\""), "{short}");
    }

    #[test]
    fn cidr_parsing_names_the_problem() {
        let printed = |text: &str| text.parse::<Cidr>().unwrap().to_string();
        assert_eq!(printed("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(printed("10.0.0.1"), "10.0.0.1/32");
        assert_eq!(printed("::ffff:10.0.0.0/104"), "10.0.0.0/8");
        let err = "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string();
        assert!(err.contains("\"10.0.0.0/33\"") && err.contains("/32"), "{err}");
        let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err().to_string();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        assert!("010.0.0.0/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        assert!("banana".parse::<Cidr>().is_err());
    }

    #[test]
    fn lookups() {
        let set = set(&["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "203.0.113.7"]);
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.168.1.77",
            "2001:db8::1",
            "203.0.113.7",
            "::ffff:10.1.2.3",
        ] {
            assert!(set.contains(ip(yes)), "{yes}");
        }
        for no in [
            "11.0.0.0",
            "9.255.255.255",
            "192.168.2.1",
            "2001:db9::1",
            "203.0.113.8",
            "::10.1.2.3",
            "::",
        ] {
            assert!(!set.contains(ip(no)), "{no}");
        }
        assert!(!TrustSet::empty().contains(ip("127.0.0.1")));
    }

    #[test]
    fn merges_and_prints_minimal_prefixes() {
        let everything = set(&["10.0.0.0/9", "10.128.0.0/9", "10.1.0.0/16", "::/0", "0.0.0.0/0"]);
        assert!(everything.is_everything());
        assert_eq!(printed(&set(&["10.0.0.0/9", "10.128.0.0/9"])), ["10.0.0.0/8"]);
        assert_eq!(printed(&set(&["10.0.0.1", "10.0.0.2"])), ["10.0.0.1/32", "10.0.0.2/32"]);
    }

    #[test]
    fn indexed_lookup_agrees_with_binary_search() {
        // Pseudo-random prefixes, /8 to /32, so intervals straddle bucket boundaries.
        let mut state = 0x9e37_79b9_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for count in [0, 1, 2, 5, SCAN_MAX, SCAN_MAX + 1, 300, 5000] {
            let cidrs: Vec<Cidr> = (0..count)
                .map(|_| {
                    let prefix = 8 + (next() % 25) as u8;
                    let net = next() & mask32(prefix);
                    Cidr::new(IpAddr::V4(Ipv4Addr::from(net)), prefix).unwrap()
                })
                .collect();
            let set = TrustSet::from_cidrs(cidrs);
            let mut probes: Vec<u32> = (0..2000).map(|_| next()).collect();
            for (&s, &e) in set.v4_starts.iter().zip(&set.v4_ends) {
                probes.extend([s.wrapping_sub(1), s, e, e.wrapping_add(1)]);
            }
            probes.extend([0, u32::MAX]);
            for ip in probes {
                let expected = lookup(&set.v4_starts, &set.v4_ends, ip);
                assert_eq!(
                    set.contains(IpAddr::V4(Ipv4Addr::from(ip))),
                    expected,
                    "{count} prefixes, {}",
                    Ipv4Addr::from(ip)
                );
                let looped = match set.v4_lookup() {
                    V4Lookup::Scan(scan) => scan.contains(ip),
                    V4Lookup::Indexed(indexed) => indexed.contains(ip),
                };
                assert_eq!(looped, expected, "{count} prefixes, {}", Ipv4Addr::from(ip));
            }
        }
    }

    #[test]
    fn named_sets() {
        let private = TrustSet::from_cidrs(NamedSet::Private.cidrs());
        assert!(private.contains(ip("172.31.255.255")) && !private.contains(ip("172.32.0.0")));
        assert!(private.contains(ip("fd00::1")) && private.contains(ip("fe80::1")));
        assert!(!private.contains(ip("100.64.0.1")));
        assert!(TrustSet::from_cidrs(NamedSet::Any.cidrs()).is_everything());
    }
}
