//! CDNs with their own header: Cloudflare's CF-Connecting-IP, CloudFront-Viewer-Address,
//! with an origin secret so that other customers of the same CDN cannot vouch for
//! anything. `cargo run -p trueip --example cdn_headers`

use trueip::{Connection, OriginSecret, Policy, TrustSet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In production: trueip::providers::cidr_lines(&std::fs::read("ips-v4")?)
    let cloudflare: TrustSet =
        trueip::providers::cidr_lines(b"173.245.48.0/20\n2400:cb00::/32\n")?.into_iter().collect();
    let policy = Policy::builder()
        .provider("cloudflare", cloudflare)
        .strategy_str("cloudflare")?
        .origin_secret(OriginSecret::new("X-Origin-Verify", "kVx2-long-random")?)
        .build()?;
    let cdn = Connection::from_peer("173.245.48.10".parse::<std::net::IpAddr>()?);
    let ours = [("CF-Connecting-IP", "2001:db8::42"), ("X-Origin-Verify", "kVx2-long-random")];
    let theirs = [("CF-Connecting-IP", "6.6.6.6")];
    for (who, headers) in [("our zone", &ours[..]), ("another zone", &theirs[..])] {
        let res = policy.resolve(&cdn, headers);
        println!("{who:<13} -> client {} (warnings: {})", res.client, res.warnings);
    }
    Ok(())
}
