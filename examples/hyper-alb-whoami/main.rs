//! "Show me my original IP" behind an AWS ALB, in plain hyper (trueip feature `http`).
//!
//! The ALB appends the address it saw to X-Forwarded-For and sets X-Forwarded-Proto and
//! X-Forwarded-Port. The page shows the original IP (decided by the `aws-alb` policy: the
//! X-Forwarded-For walk through the VPC), the direct IP (the TCP peer: the ALB), the three
//! headers as received, and the scheme and port the policy believes.
//!
//! Run: `cargo run -p trueip-examples --bin hyper-alb-whoami -- [LISTEN] [VPC]`, by default
//! `127.0.0.1:3000 10.0.0.0/16`: VPC is a comma-separated list of the ALB's subnets.

use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use trueip::{Connection, Policy, origin::origin};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let vpc = args.next().unwrap_or_else(|| "10.0.0.0/16".to_owned());
    let mut policy = Policy::builder();
    for spec in vpc.split(',') {
        policy = policy.trust_str(spec)?;
    }
    let policy = Arc::new(policy.strategy_str("aws-alb")?.build()?);

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let policy = policy.clone();
        let service =
            service_fn(move |req| whoami(req, Connection::from_peer(peer), policy.clone()));
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn whoami(
    req: Request<Incoming>,
    conn: Connection,
    policy: Arc<Policy>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resolution = policy.resolve(&conn, req.headers());
    let believed = origin(req.headers(), &resolution);
    // Every line of the header, as received (several lines form one list).
    let header = |name: &str| {
        let lines = req.headers().get_all(name).iter();
        let text: Vec<_> = lines.map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
        text.join(", ")
    };
    let body = format!(
        "original ip: {}\ndirect ip: {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\nx-forwarded-port: {}\n\
         believed proto: {}\nbelieved port: {}\nwarnings: {}\n",
        resolution.ip().map_or_else(|| resolution.client.to_string(), |ip| ip.to_string()),
        conn.peer.ip().map_or_else(|| conn.peer.to_string(), |ip| ip.to_string()),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
        header("x-forwarded-port"),
        believed.proto.map_or("-", |p| p.as_str()),
        believed.port.map_or("-".to_string(), |p| p.to_string()),
        resolution.warnings,
    );
    Ok(Response::new(Full::new(Bytes::from(body))))
}
