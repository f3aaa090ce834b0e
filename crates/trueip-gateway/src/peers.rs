//! Which peers a stranger on the internet cannot be. The misconfiguration hint keeps such
//! peers in a table of their own ([`crate::hint`]), and the in-band metrics answer only
//! them by default ([`crate::rules::route`]): one classification, for both.

use std::net::IpAddr;

use trueip::addr::Peer;

/// Whether no stranger on the internet can connect from `peer`: a Unix socket, or a
/// loopback, private (RFC 1918, ULA), link-local or shared (RFC 6598, CGNAT) address.
/// An IPv4-mapped IPv6 address is classified as its IPv4 address: a [`Peer`] holds
/// addresses normalized.
pub(crate) fn near(peer: Peer) -> bool {
    match peer.ip() {
        None => true,
        Some(IpAddr::V4(ip)) => {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        Some(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Peer {
        text.parse::<IpAddr>().unwrap().into()
    }

    #[test]
    fn near_and_far() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "::1",
            "fd00::5",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(near(ip(text)), "{text}");
        }
        assert!(near(Peer::Unix));
        for text in [
            "203.0.113.9",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:203.0.113.9",
        ] {
            assert!(!near(ip(text)), "{text}");
        }
    }
}
