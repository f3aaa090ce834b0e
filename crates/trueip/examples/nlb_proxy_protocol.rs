//! An NLB (or HAProxy `send-proxy-v2`) in front: the client travels in a PROXY v2
//! header. Decode it, then let the policy decide whether the sender may speak it.
//! `cargo run -p trueip --example nlb_proxy_protocol`

use trueip::proxy_protocol::{Decode, ProxyAddrs, decode};
use trueip::{Connection, Node, Policy, PrivateLink};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // What the NLB sends first on the connection (built here with the encoder).
    let addrs =
        ProxyAddrs { source: "198.51.100.7:51000".parse()?, destination: "10.0.0.9:443".parse()? };
    let mut bytes = Vec::new();
    trueip::proxy_protocol::encode_v1(Some(&addrs), &mut bytes);
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");

    let Decode::Complete { header, consumed } = decode(&bytes)? else {
        return Err("the PROXY header is incomplete".into());
    };
    println!("PROXY header: {consumed} bytes, source {:?}", header.addrs.map(|a| a.source));

    let policy = Policy::builder().proxy_protocol_from("10.0.0.0/16".parse()?).build()?;
    for peer in ["10.0.1.20", "203.0.113.66"] {
        let conn = Connection {
            peer: Node::ip(peer.parse()?).into(),
            proxy_source: header.addrs.map(|a| Node::from(a.source)),
            private_link: PrivateLink::from_tlvs(&header.tlvs),
        };
        let res = policy.resolve(&conn, &[] as &[(&str, &str)]);
        println!("sender {peer:<13} -> client {} (warnings: {})", res.client, res.warnings);
    }
    Ok(())
}
