//! nginx → app, with `proxy_set_header X-Real-IP $remote_addr`.
//!
//! nginx overwrites X-Real-IP, so the app trusts it from nginx (loopback) only; a
//! client that reaches the app directly with its own X-Real-IP is ignored.
//! `cargo run -p trueip --example nginx_x_real_ip`

use trueip::{Connection, Policy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy =
        Policy::builder().trust_str("loopback")?.strategy_str("header:X-Real-IP")?.build()?;
    let headers = [("X-Real-IP", "198.51.100.4")];
    for peer in ["127.0.0.1", "203.0.113.50"] {
        let conn = Connection::from_peer(peer.parse::<std::net::IpAddr>()?);
        let res = policy.resolve(&conn, &headers[..]);
        println!("peer {peer:<14} -> client {} (warnings: {})", res.client, res.warnings);
    }
    Ok(())
}
