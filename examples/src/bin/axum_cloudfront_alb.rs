//! An axum service behind CloudFront → ALB → nginx (`$proxy_add_x_forwarded_for`).
//!
//! Every hop appends the address it saw to X-Forwarded-For, so the app receives
//! `<whatever the viewer wrote>, viewer, CloudFront edge, ALB` from nginx. The policy trusts
//! the VPC (the ALB and nginx) and CloudFront's origin-facing ranges; walking from the
//! right, the first address it does not trust is the viewer. Anything the viewer wrote
//! itself sits further left and is ignored (flagged `spoof_attempt`).
//!
//! ```text
//! TRUST=10.0.0.0/16 IP_RANGES=ip-ranges.json LISTEN=0.0.0.0:3000 cargo run -p trueip-examples --bin axum_cloudfront_alb
//! ```
//!
//! - `TRUST`: your proxies, comma-separated (default `10.0.0.0/16`, the VPC);
//! - `IP_RANGES`: AWS's `ip-ranges.json` (`curl -O https://ip-ranges.amazonaws.com/ip-ranges.json`),
//!   whose `CLOUDFRONT_ORIGIN_FACING` prefixes are CloudFront's; without it one of them,
//!   13.32.0.0/15, stands in;
//! - `LISTEN`: default `127.0.0.1:3000`.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use trueip::axum::ClientResolution;
use trueip::providers::{CLOUDFRONT_ORIGIN_FACING, aws_ip_ranges};
use trueip::{Policy, TrustSet, tower::ClientIpLayer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cloudfront: TrustSet = match std::env::var_os("IP_RANGES") {
        Some(path) => aws_ip_ranges(&std::fs::read(path)?, CLOUDFRONT_ORIGIN_FACING)?,
        None => vec!["13.32.0.0/15".parse()?],
    }
    .into_iter()
    .collect();
    let mut policy = Policy::builder().provider("cloudfront", cloudfront);
    for spec in env("TRUST", "10.0.0.0/16").split(',') {
        policy = policy.trust_str(spec)?;
    }
    let policy = policy
        .trust_str("cloudfront")?
        .strategy_str("rightmost-untrusted")?
        .build()?;

    let app = Router::new()
        .route("/", get(whoami))
        .layer(ClientIpLayer::new(policy));
    let listener = tokio::net::TcpListener::bind(env("LISTEN", "127.0.0.1:3000")).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

async fn whoami(ClientResolution(r): ClientResolution) -> String {
    format!(
        "client: {}\nnginx: {}\ntrusted hops: {}\nwarnings: {}\n",
        r.ip(),
        r.peer.ip,
        r.trusted_hops,
        r.warnings
    )
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}
