//! The misconfiguration hint: forwarding headers that keep arriving from a peer the policy
//! does not trust are ignored (rightly, unless that peer is the user's own proxy). The
//! classic mistake — "behind a proxy but trusting nobody" — then looks like every request
//! coming from the proxy. One log line per such peer says which line of config would fix
//! it, if the peer is the user's proxy, and that otherwise someone is forging the headers.
//!
//! Memory is bounded: at most [`PEERS`] peers are remembered in each of two tables; past
//! that one line says that further peers are not logged, and nothing more is kept there.
//!
//! Anyone can send forwarding headers, so the tables must not be ones a stranger can fill
//! before the user's proxy is counted: [`PEERS`] forged requests from as many addresses
//! (one IPv6 host has 2^64) would silence the hint for good, and ordinary internet traffic
//! (scanners, clients behind forward proxies) fills a table of single addresses within
//! days. So peers a stranger on the internet cannot connect from — loopback, private,
//! link-local and shared (CGNAT) addresses, and Unix sockets, where a user's own proxies
//! sit — have their own table ([`near`]), and every other peer is counted by its network
//! (a /24 of IPv4, a /48 of IPv6: what one party holds), so a stranger fills one entry
//! per network it owns. Within a network each address has its own count, for the first
//! [`PER_NETWORK`] addresses: one network holds more than one party (a cloud provider's
//! /24, a hosting /48), and a neighbour of the user's proxy that sent its forged requests
//! first must not use up the network's hint, which would then name the neighbour and never
//! the proxy. A CDN's many addresses in one network get at most that many lines.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use trueip::addr::Peer;

use crate::peers::near;

/// How many requests with ignored forwarding headers a peer sends before the hint: one
/// forged request is no pattern; a proxy nobody trusted sends them with every request.
pub(crate) const AFTER: u8 = 3;

/// The most peers remembered in each table.
pub(crate) const PEERS: usize = 64;

/// The most addresses of one network counted in the far table.
pub(crate) const PER_NETWORK: usize = 4;

/// Which peers sent ignored forwarding headers, and how often (up to [`AFTER`]).
#[derive(Debug, Default)]
pub(crate) struct Hints {
    /// Peers an outside client cannot be ([`near`]), each address its own entry.
    near: Table,
    /// Every other peer, one entry per network ([`network`]), its first [`PER_NETWORK`]
    /// addresses counted each.
    far: Table,
}

/// One bounded table of peers and their counts.
#[derive(Debug, Default)]
struct Table {
    /// At most [`PEERS`], looked through in order: a comparison of addresses each, where
    /// a `HashMap` hashed the address with SipHash on every such request (the PROXY row
    /// of `bench/gateway.sh`, whose clients send `X-Forwarded-For`: about 1 % of the
    /// instructions per request, `PROTOCOL=proxy-v2 bash bench/instructions.sh`).
    seen: Mutex<Vec<Entry>>,
    /// Set once [`PEERS`] peers are remembered and the line saying so was written: from
    /// then on nothing is looked up or kept.
    full: AtomicBool,
}

/// A key of a table (an address, or a network) and the addresses counted under it, each
/// with its count (up to [`AFTER`]).
#[derive(Debug)]
struct Entry {
    key: Peer,
    peers: [Option<(Peer, u8)>; PER_NETWORK],
}

/// The network `peer` is counted by in the far table: its /24 of IPv4, its /48 of IPv6.
fn network(peer: Peer) -> Peer {
    match peer.ip() {
        Some(IpAddr::V4(ip)) => {
            IpAddr::from(std::net::Ipv4Addr::from_bits(ip.to_bits() & 0xffff_ff00)).into()
        }
        Some(IpAddr::V6(ip)) => {
            IpAddr::from(std::net::Ipv6Addr::from_bits(ip.to_bits() & !((1u128 << 80) - 1))).into()
        }
        None => peer,
    }
}

impl Hints {
    /// A request from `peer` carried forwarding headers the policy ignored because `peer`
    /// is not trusted; `listener` names the `[[listen]]` table whose own `client_ip`
    /// decided (`None`: `[client_ip]`). Logs the hint at the [`AFTER`]-th such request
    /// from the peer (outside private address space, when it is one of the first
    /// [`PER_NETWORK`] addresses of its network to send one).
    pub(crate) fn untrusted_forwarding(&self, peer: Peer, listener: Option<usize>) {
        // The address, not the connection: a proxy opens many, from many ports.
        let peer = peer.ip().map_or(Peer::Unix, Peer::from);
        if self.due(peer) {
            tracing::warn!(%peer, "{}", message(peer, listener));
        }
    }

    /// Counts one more request from `peer` (an address): whether the hint for it is due.
    fn due(&self, peer: Peer) -> bool {
        let (table, key, what) = if near(peer) {
            (&self.near, peer, "peers in private address space")
        } else {
            (&self.far, network(peer), "networks outside private address space")
        };
        table.count(key, peer, what)
    }
}

impl Table {
    /// Counts one more request from `peer`, under `key` (itself, or its network): whether
    /// this is its [`AFTER`]-th, the one that logs the hint. A key holds the counts of its
    /// first [`PER_NETWORK`] peers; another is not counted. `what` names the table's keys
    /// in the line that says it is full.
    fn count(&self, key: Peer, peer: Peer, what: &str) -> bool {
        if self.full.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        let known = seen.len();
        let entry = match seen.iter().position(|e| e.key == key) {
            Some(i) => match seen.get_mut(i) {
                Some(entry) => entry,
                None => return false,
            },
            None if known >= PEERS => {
                drop(seen);
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "forwarding headers from untrusted peers: {PEERS} {what} were reported; further ones are not logged"
                    );
                }
                return false;
            }
            None => {
                seen.push(Entry { key, peers: [None; PER_NETWORK] });
                match seen.last_mut() {
                    Some(entry) => entry,
                    None => return false,
                }
            }
        };
        let slot = match entry
            .peers
            .iter()
            .position(|s| s.is_some_and(|(p, _)| p == peer))
            .or_else(|| entry.peers.iter().position(Option::is_none))
        {
            Some(i) => entry.peers.get_mut(i),
            // The key's places are taken by other peers.
            None => return false,
        };
        let Some((_, count)) = slot.map(|s| s.get_or_insert((peer, 0))) else {
            return false;
        };
        if *count >= AFTER {
            return false;
        }
        *count += 1;
        *count == AFTER
    }
}
/// The hint for `peer`: what would trust it, on the command line and in the config.
pub(crate) fn message(peer: Peer, listener: Option<usize>) -> String {
    let spec = match peer {
        Peer::Ip(node) => node.ip.to_string(),
        Peer::Unix => "unix".to_string(),
    };
    let toml = match listener {
        Some(i) => format!("client_ip = {{ trusted = [\"{spec}\"] }} in listen[{i}]"),
        None => format!("[client_ip] trusted = [\"{spec}\"]"),
    };
    let flag = match listener {
        Some(_) => String::new(),
        None => format!("--trust {spec}, or "),
    };
    format!(
        "forwarding headers (X-Forwarded-For, Forwarded, X-Real-IP, ...) keep arriving from {peer}, \
         which the policy does not trust, so they are ignored and {peer} is taken for the client. \
         If {peer} is your proxy or load balancer, trust it: {flag}{toml} (or its network's CIDR). \
         If it is not, someone is forging these headers, and ignoring them is right."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_the_fix_for_the_peer() {
        let ip: Peer = "10.0.0.5".parse::<std::net::IpAddr>().unwrap().into();
        let text = message(ip, None);
        assert!(text.contains("--trust 10.0.0.5"), "{text}");
        assert!(text.contains("[client_ip] trusted = [\"10.0.0.5\"]"), "{text}");
        assert!(text.contains("forging"), "{text}");
        let text = message(Peer::Unix, Some(1));
        assert!(text.contains("client_ip = { trusted = [\"unix\"] } in listen[1]"), "{text}");
        assert!(!text.contains("--trust"), "{text}");
    }

    fn counts(entry: &Entry) -> Vec<u8> {
        entry.peers.iter().flatten().map(|&(_, n)| n).collect()
    }

    fn ip(text: &str) -> Peer {
        text.parse::<IpAddr>().unwrap().into()
    }

    #[test]
    fn memory_is_bounded_and_each_peer_counted_to_the_threshold_only() {
        let hints = Hints::default();
        for i in 0..(PEERS as u32 + 50) {
            // 10.0.x.y, one address each; 11.0.x.1, one /24 each.
            let near = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let far = std::net::Ipv4Addr::from(0x0b00_0001 + (i << 8));
            for peer in [near, far] {
                for _ in 0..5 {
                    hints.untrusted_forwarding(IpAddr::from(peer).into(), None);
                }
            }
        }
        for table in [&hints.near, &hints.far] {
            let seen = table.seen.lock().unwrap();
            assert_eq!(seen.len(), PEERS);
            assert!(seen.iter().all(|e| counts(e) == [AFTER]));
            assert!(table.full.load(Ordering::Relaxed));
        }
    }

    /// A stranger in the network of the user's proxy (a neighbour in a cloud provider's /24,
    /// a tenant of the same hosting /48) that sent its forged requests first used up the
    /// network's one count, and the proxy was never hinted: the hint named the stranger.
    #[test]
    fn a_neighbour_does_not_use_up_the_hint_for_a_proxy_in_its_network() {
        let hints = Hints::default();
        for neighbour in ["203.0.113.66", "2001:db8:7::66"] {
            let due: Vec<bool> = (0..5).map(|_| hints.due(ip(neighbour))).collect();
            assert_eq!(due, [false, false, true, false, false], "{neighbour}");
        }
        for proxy in ["203.0.113.10", "2001:db8:7:1::10"] {
            let due: Vec<bool> = (0..5).map(|_| hints.due(ip(proxy))).collect();
            assert_eq!(due, [false, false, true, false, false], "{proxy}");
        }
        // Each network counts its first PER_NETWORK addresses only: memory stays bounded.
        for (i, more) in (0..3).map(|i| format!("203.0.113.{}", 100 + i)).enumerate() {
            let due: Vec<bool> = (0..AFTER).map(|_| hints.due(ip(&more))).collect();
            assert_eq!(due.last(), Some(&(i + 2 < PER_NETWORK)), "{more}");
        }
        let seen = hints.far.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        // 203.0.113.0/24 holds its four; 2001:db8:7::/48 its two.
        let held: Vec<usize> = seen.iter().map(|e| counts(e).len()).collect();
        assert_eq!(held, [PER_NETWORK, 2]);
    }

    /// A stranger with many addresses could once fill the one table of 64 peers with a
    /// forged request from each, and the user's proxy, counted after, was never hinted.
    #[test]
    fn strangers_cannot_silence_the_hint_for_a_proxy_in_private_space() {
        let hints = Hints::default();
        // A /64 of IPv6 and a /24 of IPv4: one entry each, however many addresses.
        for i in 0..1000u32 {
            hints.untrusted_forwarding(ip(&format!("2001:db8:6:0:{i:x}::1")), None);
            hints.untrusted_forwarding(ip(&format!("203.0.113.{}", i % 256)), None);
        }
        assert_eq!(hints.far.seen.lock().unwrap().len(), 2);
        // As many networks as the far table holds, and more.
        for i in 0..(PEERS as u32 * 2) {
            hints.untrusted_forwarding(ip(&format!("198.{}.{}.7", 18 + i / 256, i % 256)), None);
        }
        assert!(hints.far.full.load(Ordering::Relaxed));
        for proxy in ["10.0.0.5", "127.0.0.20", "100.64.3.4", "fd00::5", "fe80::1", "192.168.1.1"] {
            for _ in 0..AFTER {
                hints.untrusted_forwarding(ip(proxy), None);
            }
        }
        hints.untrusted_forwarding(Peer::Unix, None);
        let near = hints.near.seen.lock().unwrap();
        assert_eq!(near.len(), 7, "{near:?}");
        assert!(near.iter().take(6).all(|e| counts(e) == [AFTER]), "{near:?}");
    }
}
