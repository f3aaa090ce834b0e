//! [`PrivateLink`]: which private endpoint a connection came through, when the load balancer
//! in front names one in its PROXY v2 header.

use std::sync::Arc;

use crate::proxy_protocol::Tlvs;

/// Which private endpoint a connection came through, when the load balancer in front names
/// one in its PROXY v2 header. Empty (the default) otherwise.
///
/// Behind AWS PrivateLink or Azure Private Link, a client reaches the service through an
/// endpoint in its own network, and the PROXY header carries the client's address *in that
/// network*: private, and free to be the same as another customer's. The endpoint's id is
/// then the one thing that tells two clients apart, so explain, the whoami page and the
/// gateway's access log show it beside the address.
///
/// The id comes in the same header, from the same sender, as the PROXY source, so it is
/// believed exactly when that source is: [`Connection::private_link_for`](crate::Connection::private_link_for) says whether.
///
/// ```
/// use trueip::{Connection, Policy, PrivateLink};
///
/// let policy = Policy::builder()
///     .trust_str("10.0.0.0/8")?
///     .proxy_protocol_from("10.0.0.0/8".parse()?)
///     .build()?;
/// let conn = Connection {
///     peer: "10.0.0.5:41000".parse::<std::net::SocketAddr>()?.into(),
///     proxy_source: Some("172.31.7.9:50000".parse::<std::net::SocketAddr>()?.into()),
///     private_link: PrivateLink {
///         aws_vpce_id: Some("vpce-08d2bf15fac5001c9".into()),
///         azure_link_id: None,
///     },
/// };
/// let resolution = policy.resolve(&conn, &[("X-Forwarded-For", "1.2.3.4")][..]);
/// let link = conn.private_link_for(&resolution).expect("a trusted sender named it");
/// assert_eq!(link.aws_vpce_id.as_deref(), Some("vpce-08d2bf15fac5001c9"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrivateLink {
    /// AWS PrivateLink: the VPC endpoint id, e.g. `vpce-08d2bf15fac5001c9` (PROXY v2 TLV
    /// `0xEA`, subtype `0x01`). Shared, so that every request on a connection carries it
    /// without a copy.
    pub aws_vpce_id: Option<Arc<str>>,
    /// Azure Private Link: the private endpoint's link id (PROXY v2 TLV `0xEE`, subtype
    /// `0x01`), as Azure prints it: a decimal number.
    pub azure_link_id: Option<u32>,
}

/// The longest VPC endpoint id kept (AWS's are 22 bytes).
const MAX_VPCE_ID: usize = 64;

impl PrivateLink {
    /// What a PROXY v2 header's TLVs name. A VPC endpoint id that does not look like
    /// one (at most 64 letters, digits and dashes; AWS writes
    /// `vpce-` and 17 hex digits) is left out: it is shown on pages and in logs, and a
    /// sender's TLV may be as long as the header allows.
    pub fn from_tlvs(tlvs: &Tlvs) -> Self {
        let plausible = |id: &&str| {
            !id.is_empty()
                && id.len() <= MAX_VPCE_ID
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        PrivateLink {
            aws_vpce_id: tlvs.aws_vpce_id.as_deref().filter(plausible).map(Arc::from),
            azure_link_id: tlvs.azure_link_id,
        }
    }

    /// Whether it names no endpoint.
    pub fn is_empty(&self) -> bool {
        self.aws_vpce_id.is_none() && self.azure_link_id.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_implausible_vpce_id_is_left_out() {
        for bad in ["", "vpce 1", "vpce-<script>", &"a".repeat(MAX_VPCE_ID + 1)] {
            let tlvs = Tlvs { aws_vpce_id: Some(bad.to_string()), ..Tlvs::default() };
            assert_eq!(PrivateLink::from_tlvs(&tlvs).aws_vpce_id, None, "{bad:?}");
        }
        let tlvs = Tlvs { aws_vpce_id: Some("vpce-08d2bf15fac5001c9".into()), ..Tlvs::default() };
        assert!(PrivateLink::from_tlvs(&tlvs).aws_vpce_id.is_some());
    }

    #[test]
    fn takes_the_two_ids_and_nothing_else() {
        let tlvs = Tlvs {
            aws_vpce_id: Some("vpce-0abc".into()),
            azure_link_id: Some(7),
            authority: Some("example.com".into()),
            other: vec![(0xE0, vec![1])],
            ..Tlvs::default()
        };
        let link = PrivateLink::from_tlvs(&tlvs);
        assert_eq!(link.aws_vpce_id.as_deref(), Some("vpce-0abc"));
        assert_eq!(link.azure_link_id, Some(7));
        assert!(!link.is_empty());
        assert!(PrivateLink::from_tlvs(&Tlvs::default()).is_empty());
    }
}
