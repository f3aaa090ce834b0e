//! The misconfiguration hint: forwarding headers that keep arriving from a peer the policy
//! does not trust are ignored (rightly, unless that peer is the user's own proxy). The
//! classic mistake — "behind a proxy but trusting nobody" — then looks like every request
//! coming from the proxy. One log line per such peer says which line of config would fix
//! it, if the peer is the user's proxy, and that otherwise someone is forging the headers.
//!
//! Memory is bounded: at most [`PEERS`] peers are remembered; past that one line says that
//! further peers are not logged, and nothing more is kept.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use trueip::addr::Peer;

/// How many requests with ignored forwarding headers a peer sends before the hint: one
/// forged request is no pattern; a proxy nobody trusted sends them with every request.
pub(crate) const AFTER: u8 = 3;

/// The most peers remembered.
pub(crate) const PEERS: usize = 64;

/// Which peers sent ignored forwarding headers, and how often (up to [`AFTER`]).
#[derive(Debug, Default)]
pub(crate) struct Hints {
    /// At most [`PEERS`], looked through in order: a comparison of addresses each, where
    /// a `HashMap` hashed the address with SipHash on every such request (the PROXY row
    /// of `bench/gateway.sh`, whose clients send `X-Forwarded-For`: about 1 % of the
    /// instructions per request, `PROTOCOL=proxy-v2 bash bench/instructions.sh`).
    seen: Mutex<Vec<(Peer, u8)>>,
    /// Set once [`PEERS`] peers are remembered and the line saying so was written: from
    /// then on nothing is looked up or kept.
    full: AtomicBool,
}

impl Hints {
    /// A request from `peer` carried forwarding headers the policy ignored because `peer`
    /// is not trusted; `listener` names the `[[listen]]` table whose own `client_ip`
    /// decided (`None`: `[client_ip]`). Logs the hint at the [`AFTER`]-th such request.
    pub(crate) fn untrusted_forwarding(&self, peer: Peer, listener: Option<usize>) {
        if self.full.load(Ordering::Relaxed) {
            return;
        }
        // The address, not the connection: a proxy opens many, from many ports.
        let peer = peer.ip().map_or(Peer::Unix, Peer::from);
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let known = seen.len();
        let count = match seen.iter().position(|(p, _)| *p == peer) {
            Some(i) => match seen.get_mut(i) {
                Some((_, count)) => count,
                None => return,
            },
            None if known >= PEERS => {
                drop(seen);
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "forwarding headers from untrusted peers: {PEERS} peers were reported; further peers are not logged"
                    );
                }
                return;
            }
            None => {
                seen.push((peer, 0));
                match seen.last_mut() {
                    Some((_, count)) => count,
                    None => return,
                }
            }
        };
        if *count >= AFTER {
            return;
        }
        *count += 1;
        if *count == AFTER {
            drop(seen);
            tracing::warn!(%peer, "{}", message(peer, listener));
        }
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
        assert!(
            text.contains("[client_ip] trusted = [\"10.0.0.5\"]"),
            "{text}"
        );
        assert!(text.contains("forging"), "{text}");
        let text = message(Peer::Unix, Some(1));
        assert!(
            text.contains("client_ip = { trusted = [\"unix\"] } in listen[1]"),
            "{text}"
        );
        assert!(!text.contains("--trust"), "{text}");
    }

    #[test]
    fn memory_is_bounded_and_each_peer_counted_to_the_threshold_only() {
        let hints = Hints::default();
        for i in 0..(PEERS as u32 + 50) {
            let peer: Peer = std::net::IpAddr::from(std::net::Ipv4Addr::from(i)).into();
            for _ in 0..5 {
                hints.untrusted_forwarding(peer, None);
            }
        }
        let seen = hints.seen.lock().unwrap();
        assert_eq!(seen.len(), PEERS);
        assert!(seen.iter().all(|&(_, n)| n == AFTER));
        assert!(hints.full.load(Ordering::Relaxed));
    }
}
