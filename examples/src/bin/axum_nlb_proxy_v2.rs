//! An axum service behind an AWS NLB whose target group has PROXY protocol v2 enabled
//! (or HAProxy with `send-proxy-v2`).
//!
//! The NLB writes no HTTP header: each connection opens with a PROXY v2 header naming the
//! client. `ProxyProtocolListener` reads it from the NLB's addresses only (a header from
//! anyone else closes the connection) and hands the source to `ClientIpLayer`. Behind
//! PrivateLink the header also names the VPC endpoint, shown here.
//!
//! ```text
//! NLB=10.0.0.0/16 LISTEN=0.0.0.0:8080 cargo run -p trueip-examples --bin axum_nlb_proxy_v2
//! ```
//!
//! - `NLB`: the NLB's subnets, comma-separated (default `10.0.0.0/16`);
//! - `LISTEN`: default `127.0.0.1:8080`.
//!
//! The NLB's health checks arrive with a `LOCAL` header (no client): they get the NLB's own
//! address as the client.

use axum::extract::ConnectInfo;
use axum::{Router, routing::get};
use trueip::axum::{ClientResolution, ProxyProtocolListener};
use trueip::{Connection, Policy, tower::ClientIpLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut policy = Policy::builder();
    for spec in env("NLB", "10.0.0.0/16").split(',') {
        policy = policy.proxy_protocol_from(spec.parse()?);
    }
    let policy = policy.build()?;

    let tcp = tokio::net::TcpListener::bind(env("LISTEN", "127.0.0.1:8080")).await?;
    println!("listening on {}", tcp.local_addr()?);
    let listener = ProxyProtocolListener::new(tcp, &policy);
    let app = Router::new()
        .route("/", get(whoami))
        .layer(ClientIpLayer::new(policy));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<Connection>(),
    )
    .await?;
    Ok(())
}

async fn whoami(
    ClientResolution(r): ClientResolution,
    ConnectInfo(conn): ConnectInfo<Connection>,
) -> String {
    let vpce = conn
        .private_link_for(&r)
        .and_then(|l| l.aws_vpce_id.as_deref());
    format!(
        "client: {}\nsource: {:?}\nnlb: {}\nvpc endpoint: {}\n",
        r.client,
        r.source,
        r.peer.ip,
        vpce.unwrap_or("-")
    )
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}
