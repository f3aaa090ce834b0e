//! An axum service behind CloudFront → ALB → nginx (`nginx.conf` beside this file appends
//! with `$proxy_add_x_forwarded_for`).
//!
//! Every hop appends the address it saw to X-Forwarded-For, so nginx hands the app
//! `<whatever the viewer wrote>, viewer, CloudFront edge, ALB`. The policy trusts your
//! proxies (the ALB and nginx) and CloudFront's origin-facing ranges; walking from the right,
//! the first address it does not trust is the viewer. What the viewer wrote itself sits
//! further left and is ignored (flagged `spoof_attempt`).
//!
//! Run: `cargo run -p trueip-examples --bin axum-cloudfront-alb -- [LISTEN] [PROXIES] [IP_RANGES]`,
//! by default `127.0.0.1:3000 10.0.0.0/16`: PROXIES is a comma-separated list (the VPC);
//! IP_RANGES is AWS's `ip-ranges.json` (`curl -O https://ip-ranges.amazonaws.com/ip-ranges.json`),
//! whose `CLOUDFRONT_ORIGIN_FACING` prefixes are CloudFront's — without it, one of them
//! (13.32.0.0/15) stands in.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use trueip::axum::ClientResolution;
use trueip::providers::{CLOUDFRONT_ORIGIN_FACING, aws_ip_ranges};
use trueip::{Policy, TrustSet, tower::ClientIpLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let proxies = args.next().unwrap_or_else(|| "10.0.0.0/16".to_owned());
    let cloudfront: TrustSet = match args.next() {
        Some(path) => aws_ip_ranges(&std::fs::read(path)?, CLOUDFRONT_ORIGIN_FACING)?,
        None => vec!["13.32.0.0/15".parse()?],
    }
    .into_iter()
    .collect();
    let mut policy = Policy::builder().provider("cloudfront", cloudfront);
    for spec in proxies.split(',') {
        policy = policy.trust_str(spec)?;
    }
    let policy = policy.trust_str("cloudfront")?.strategy_str("rightmost-untrusted")?.build()?;

    let app = Router::new().route("/", get(whoami)).layer(ClientIpLayer::new(policy));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    // The address actually bound (LISTEN may name port 0), for whoever started us.
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}

async fn whoami(ClientResolution(r): ClientResolution) -> String {
    format!(
        "client: {}\nnginx: {}\ntrusted hops: {}\nwarnings: {}\n",
        r.ip().map_or_else(|| r.client.to_string(), |ip| ip.to_string()),
        r.peer.ip().map_or_else(|| r.peer.to_string(), |ip| ip.to_string()),
        r.trusted_hops,
        r.warnings
    )
}
