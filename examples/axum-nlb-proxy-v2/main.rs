//! An axum service behind an AWS NLB whose target group has PROXY protocol v2 enabled, or
//! behind HAProxy with `send-proxy-v2` (`haproxy.cfg` beside this file).
//!
//! The NLB writes no HTTP header: each connection opens with a PROXY v2 header naming the
//! client. `ProxyProtocolListener` reads it from the NLB's addresses only (a header from
//! anyone else closes the connection) and hands the source to `ClientIpLayer`. Behind
//! PrivateLink the header also names the VPC endpoint, shown here. The NLB's health checks
//! come with a `LOCAL` header (no client): their client is the NLB itself.
//!
//! Run: `cargo run -p trueip-examples --bin axum-nlb-proxy-v2 -- [LISTEN] [NLB]`, by default
//! `127.0.0.1:8080 10.0.0.0/16`: NLB is a comma-separated list of the NLB's subnets.

use axum::extract::ConnectInfo;
use axum::{Router, routing::get};
use trueip::axum::{ClientResolution, ProxyProtocolListener};
use trueip::{Connection, Policy, tower::ClientIpLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let nlb = args.next().unwrap_or_else(|| "10.0.0.0/16".to_owned());
    let mut policy = Policy::builder();
    for spec in nlb.split(',') {
        policy = policy.proxy_protocol_from(spec.parse()?);
    }
    let policy = policy.build()?;

    let tcp = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", tcp.local_addr()?);
    let listener = ProxyProtocolListener::new(tcp, &policy);
    let app = Router::new().route("/", get(whoami)).layer(ClientIpLayer::new(policy));
    axum::serve(listener, app.into_make_service_with_connect_info::<Connection>()).await?;
    Ok(())
}

async fn whoami(
    ClientResolution(r): ClientResolution,
    ConnectInfo(conn): ConnectInfo<Connection>,
) -> String {
    let vpce = conn.private_link_for(&r).and_then(|l| l.aws_vpce_id.as_deref());
    format!(
        "client: {}\nsource: {:?}\nnlb: {}\nvpc endpoint: {}\n",
        r.client,
        r.source,
        r.peer.ip().map_or_else(|| r.peer.to_string(), |ip| ip.to_string()),
        vpce.unwrap_or("-")
    )
}
