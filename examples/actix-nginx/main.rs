//! An actix-web service behind nginx, which sets `X-Real-IP` from `$remote_addr`
//! (`nginx.conf` beside this file). The service answers every `GET /` with the client
//! trueip found, where the answer came from, and the TCP peer:
//!
//! ```text
//! client 203.0.113.9
//! source header
//! peer 127.0.0.2:40312
//! ```
//!
//! Run: `cargo run -p trueip-examples --bin actix-nginx -- [LISTEN] [NGINX]`, by default
//! `127.0.0.1:8000 127.0.0.2`: listen on loopback, and believe `X-Real-IP` only on
//! connections from NGINX, the address nginx's `proxy_bind` makes it connect from. A
//! connection from anywhere else, with whatever `X-Real-IP` it sends, is answered with its
//! own address.
//!
//! On one host the loopback addresses are not a wall between programs: any local process
//! may connect from 127.0.0.2. What keeps strangers out is that the app listens on loopback
//! only, so the only way in from the network is through nginx.

use std::io::Write;
use std::process::ExitCode;

use actix_web::{App, HttpResponse, HttpServer, web};
use trueip::Policy;
use trueip::actix::{ClientIpMiddleware, ClientResolution};

async fn whoami(ClientResolution(resolution): ClientResolution) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body(format!(
        "client {}\nsource {}\npeer {}\n",
        resolution.ip().map_or_else(|| resolution.client.to_string(), |ip| ip.to_string()),
        resolution.source,
        resolution.peer
    ))
}

/// Believes `X-Real-IP` when, and only when, the connection comes from `nginx`.
fn policy(nginx: &str) -> Result<Policy, trueip::ConfigError> {
    Policy::builder().trust_str(nginx)?.strategy_str("header:X-Real-IP")?.build()
}

async fn serve(listen: &str, policy: Policy) -> std::io::Result<()> {
    let trueip = ClientIpMiddleware::new(policy);
    let server =
        HttpServer::new(move || App::new().wrap(trueip.clone()).route("/", web::get().to(whoami)))
            .bind(listen)?;
    // The address actually bound (LISTEN may name port 0), for whoever started us.
    for addr in server.addrs() {
        println!("listening on http://{addr}");
    }
    std::io::stdout().flush()?;
    server.run().await
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let nginx = args.next().unwrap_or_else(|| "127.0.0.2".to_owned());
    let policy = match policy(&nginx) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("actix-nginx: {e}");
            return ExitCode::from(2);
        }
    };
    // What `#[actix_web::main]` expands to, without the `macros` feature that provides it.
    match actix_web::rt::System::new().block_on(serve(&listen, policy)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("actix-nginx: {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}
