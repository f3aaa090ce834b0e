//! CloudFront → ALB → nginx (`$proxy_add_x_forwarded_for`) → app.
//!
//! Each hop appends the address it saw. Trust your own network (nginx, the ALB) and
//! CloudFront's origin-facing ranges; the first untrusted entry from the right is the
//! viewer. `cargo run -p trueip --example cloudfront_alb_nginx`

use trueip::{Connection, Explanation, Policy, TrustSet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In production: `trueip::providers::aws_ip_ranges(&std::fs::read("ip-ranges.json")?,
    // trueip::providers::CLOUDFRONT_ORIGIN_FACING)?` (feature `serde`). Here, a stand-in.
    let cloudfront: TrustSet = ["13.32.0.0/15".parse()?].into_iter().collect();
    let policy = Policy::builder()
        .provider("cloudfront", cloudfront)
        .trust_str("loopback")?
        .trust_str("10.0.0.0/16")? // the VPC: the ALB's addresses
        .trust_str("cloudfront")?
        .strategy_str("rightmost-untrusted")?
        .build()?;
    // The viewer 198.51.100.7 forged "6.6.6.6"; CloudFront appended the viewer, the ALB
    // appended CloudFront's edge, nginx appended the ALB.
    let headers = [("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 13.32.4.5, 10.0.3.3")];
    let conn = Connection::from_peer("127.0.0.1".parse::<std::net::IpAddr>()?);
    print!("{}", Explanation::new(&policy, &conn, &headers[..]));
    Ok(())
}
