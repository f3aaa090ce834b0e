//! AWS Lambda behind an ALB: the event's `x-forwarded-for` ends with the address the
//! ALB saw. Lambda has no TCP peer of its own: the ALB delivered the event, so the
//! "peer" is the ALB, which only AWS can be (hence `any` here, not an address range).
//! `cargo run -p trueip --example lambda_alb`

use trueip::{Connection, Policy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = Policy::builder().trust_str("any")?.strategy_str("hops:1")?.build()?;
    // From the ALB event's "headers" (multi-value headers arrive as several lines).
    let headers = [("x-forwarded-for", "203.0.113.195, 70.41.3.18, 150.172.238.178")];
    let alb = Connection::from_peer("0.0.0.0".parse::<std::net::IpAddr>()?);
    let res = policy.resolve(&alb, &headers[..]);
    println!("client {} from {} (warnings: {})", res.client, res.source, res.warnings);
    assert_eq!(res.client.to_string(), "150.172.238.178");
    Ok(())
}
