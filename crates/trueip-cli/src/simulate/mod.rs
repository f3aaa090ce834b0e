//! `trueip simulate`: a chain of CDNs, load balancers and proxies → what every hop receives,
//! what the app can believe, and how to configure each layer.
//!
//! `topology` reads the chain, `model` holds requests and hops, `hops` models each hop,
//! `at_app` compares the common readings with the core's `Policy::resolve`, `config`
//! writes each layer's configuration, `render` and `picture` draw the result.

mod at_app;
mod config;
mod hops;
mod model;
mod picture;
mod render;
mod topology;

use std::io::Read as _;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use trueip::shown::terminal_lines;

/// Exit code for a topology that cannot be read or run.
const EXIT_BAD_INPUT: u8 = 2;

const EXAMPLES: &str = "\
Hops (options in parentheses, comma-separated; `name@ADDR` sets its address):
  cloudfront(viewer-address)              appends to X-Forwarded-For
  alb(append|preserve|remove, client-port, http)
                                          routing.http.xff_header_processing.mode
  nlb(proxy-v2, preserve-client-ip)       L4: PROXY v2, or the client as the peer
  nginx(append, x-real-ip, pass, realip CIDR..., recursive, real-ip-header NAME|proxy_protocol,
        proxy-protocol)                   no header option: Debian's proxy_params
  haproxy(forwardfor, no-forwardfor, tcp, send-proxy, send-proxy-v2, accept-proxy)
  cloudflare  fastly  gcp(lb-ip ADDR)  azure-front-door(fdid ID)  (alias afd)
  apigw(header NAME | query NAME | proxy | peer)
  nat                                     rewrites the source: the client is lost
  trueip(trust SPEC..., strategy NAME, proxy-protocol-from SPEC...)
                                          `trueip serve`, by the gateway's own rules

Examples:
  trueip simulate 'client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> cloudfront -> alb(append) -> nginx(realip 10.50.0.0/16) -> app'
  trueip simulate 'client 198.51.100.7 -> nlb(proxy-v2) -> trueip(trust 10.50.0.0/16, proxy-protocol-from 10.50.0.0/16) -> app' --format json
  trueip simulate --file chain.toml --format svg > chain.svg
  trueip simulate 'client 203.0.113.9 -> cloudflare -> nginx(realip 172.64.0.0/13, recursive) -> app' --format mermaid

A topology file:
  [client]
  address = \"198.51.100.7\"
  forges = [\"X-Forwarded-For: 1.2.3.4\"]
  [[hop]]
  kind = \"cloudfront\"
  [[hop]]
  kind = \"nginx\"
  address = \"10.60.0.5\"       # default: a documented stand-in for the kind
  range = \"10.60.0.0/16\"      # what the app trusts for it (default: the kind's range)
  options = [\"realip 13.32.0.0/15\", \"recursive\"]
  [app]
  address = \"10.60.0.9\"

Default addresses: CloudFront 13.32.0.10 (range 13.32.0.0/15), Cloudflare 172.64.0.10
(172.64.0.0/13), Fastly 151.101.0.10 (151.101.0.0/16), GCP front ends 35.191.0.10
(35.191.0.0/16; load balancer 34.120.0.10), Azure Front Door 147.243.0.10 (147.243.0.0/16),
ALB/NLB/nginx/HAProxy/apigw/trueip in 10.50.0.0/16, NAT 203.0.113.1; at most 16 hops.

Exit status: 0 simulated, 2 bad topology (the message names the position and the fix).";

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Every hop, the app's readings, each layer's configuration.
    Text,
    /// One JSON object: `hops`, `at_app`, `config`.
    Json,
    /// A self-contained SVG picture of the chain; forged text in red.
    Svg,
    /// A Mermaid flowchart, for docs.
    Mermaid,
}

/// Simulate a chain of CDNs, load balancers and proxies: what each hop receives, what the
/// app can believe, and how to configure every layer.
#[derive(Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub(crate) struct SimulateArgs {
    /// The chain in one line: client ADDR [forges "Name: value"]... -> HOP -> ... -> app.
    #[arg(value_name = "CHAIN", required_unless_present = "file", conflicts_with = "file")]
    line: Option<String>,
    /// Read the chain from a TOML file (`-`: stdin).
    #[arg(long, value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// A finished simulation.
pub(crate) struct Simulation {
    /// The chain as given (the line, or the file's name).
    pub(crate) source: String,
    pub(crate) topology: model::Topology,
    pub(crate) run: hops::Run,
    pub(crate) at_app: at_app::AtApp,
    pub(crate) config: Vec<config::Snippet>,
}

fn simulate(source: String, topology: model::Topology) -> Result<Simulation, String> {
    let run = hops::run(&topology)?;
    let at_app = at_app::analyse(&topology, &run)?;
    let config = config::all(&topology, &at_app);
    Ok(Simulation { source, topology, run, at_app, config })
}

/// Simulates a one-line chain.
pub(crate) fn simulate_line(line: &str) -> Result<Simulation, String> {
    simulate(line.to_string(), topology::parse_line(line)?)
}

fn read_file(path: &std::path::Path) -> Result<(String, String), String> {
    let limit = topology::MAX_FILE as u64 + 1;
    let mut text = String::new();
    let name = if path.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the topology from stdin: {e}"))?;
        "stdin".to_string()
    } else {
        let name = path.display().to_string();
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_string(&mut text))
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        name
    };
    Ok((name, text))
}

/// Simulates the chain a TOML file (`name`) describes.
pub(crate) fn simulate_toml(name: String, text: &str) -> Result<Simulation, String> {
    let top = topology::parse_toml(text).map_err(|e| format!("{name}: {e}"))?;
    simulate(name, top)
}

/// What `trueip simulate` prints for `sim` in `format`.
pub(crate) fn output(sim: &Simulation, format: Format) -> Result<String, String> {
    Ok(match format {
        Format::Text => terminal_lines(render::text(sim)).to_string(),
        Format::Json => render::json(sim)? + "\n",
        Format::Svg => picture::svg(sim),
        Format::Mermaid => picture::mermaid(sim),
    })
}

fn run_inner(args: &SimulateArgs) -> Result<String, String> {
    let sim = match (&args.line, &args.file) {
        (Some(line), _) => simulate_line(line)?,
        (None, Some(path)) => {
            let (name, text) = read_file(path)?;
            simulate_toml(name, &text)?
        }
        (None, None) => return Err("give a chain, or --file FILE".to_string()),
    };
    output(&sim, args.format)
}

/// Runs `trueip simulate`.
pub(crate) fn run(args: SimulateArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("trueip simulate: {}", terminal_lines(message));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
