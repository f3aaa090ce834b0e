//! `trueip check FILE`: what is dangerous in a trust configuration, with the fix.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use trueip::config::ClientIpConfig;
use trueip::lint::{Finding, Listener, Severity, lint_listeners};
use trueip::shown::terminal_lines;

/// The listener `trueip serve` uses when the file names none.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Exit status when the file cannot be read or is not a config.
const EXIT_USAGE: u8 = 2;

/// Lint a trust configuration: say what lets a client name its own address, and the fix.
#[derive(Args)]
#[command(after_help = "\
Checks the [client_ip] section and the [[listen]] tables of a `trueip serve` config file
(the same file --check validates) for what is valid but dangerous, each listener with the
policy that decides for it (its own client_ip table, else [client_ip]):

  danger   every peer trusted (`any`, a /0, a range wider than a /8 of IPv4 or a /16 of
           IPv6) by a strategy that reads a header (all but `peer`) on a listener others
           can reach, hops:N with it, PROXY headers accepted from any sender on a public
           listener (a warning when the senders are public addresses)
  warning  whole private ranges trusted on a public listener (clients on a VPN or in the next
           container skip your proxies), `leftmost` (the client's own text), a CDN preset
           or a CDN's ranges in `trusted` without an origin secret (the CDN's ranges are
           shared by all its customers)
  note     `any` trusted on loopback or Unix sockets only

With --aws-ip-ranges FILE (AWS's ip-ranges.json), also a danger: a trusted range that AWS
lists under another service (EC2, AMAZON) but not CLOUDFRONT_ORIGIN_FACING.

Exit status: 0 when nothing worse than a note was found, 1 when a danger or a warning was,
2 when the file cannot be read or a value in the policies is invalid (a CIDR, a strategy
name: what `trueip serve --check` refuses without the host's range cache and resolver). For CI:

  trueip check /etc/trueip/trueip.toml --format json")]
pub(crate) struct CheckArgs {
    /// The config file (`trueip serve --config FILE`).
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// AWS's ip-ranges.json: also say which trusted ranges are another AWS service's
    /// (EC2, AMAZON) rather than CloudFront's origin-facing ones.
    #[arg(long, value_name = "FILE")]
    aws_ip_ranges: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub(crate) fn run(args: CheckArgs) -> ExitCode {
    match findings(&args) {
        Ok(found) => {
            match args.format {
                Format::Json => {
                    let json = serde_json::json!({ "file": args.file.display().to_string(), "findings": found });
                    println!("{}", trueip::shown::terminal_json_pretty(&json).unwrap_or_default());
                }
                Format::Text if found.is_empty() => {
                    println!("{}: nothing dangerous found", args.file.display());
                }
                Format::Text => {
                    for finding in &found {
                        println!("{}", terminal_lines(finding));
                    }
                }
            }
            if found.iter().any(|f| f.severity >= Severity::Warning) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("trueip check: {}", terminal_lines(e));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn findings(args: &CheckArgs) -> Result<Vec<Finding>, String> {
    let path = args.file.display();
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| format!("cannot read {path}: {e}"))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let config: ClientIpConfig = match table.get("client_ip") {
        None => ClientIpConfig::default(),
        Some(section) => {
            section.clone().try_into().map_err(|e| format!("{path}: [client_ip]: {e}"))?
        }
    };
    config.check_values().map_err(|e| format!("{path}: {e}"))?;
    let mut listeners: Vec<(Listener, Option<ClientIpConfig>)> = Vec::new();
    match table.get("listen") {
        None => listeners.push((listener(DEFAULT_LISTEN, None)?, None)),
        Some(toml::Value::Array(list)) => {
            for (i, l) in list.iter().enumerate() {
                let address = l
                    .get("address")
                    .and_then(toml::Value::as_str)
                    .ok_or_else(|| format!("{path}: listen[{i}] has no address"))?;
                let proxy = l.get("proxy_protocol").and_then(toml::Value::as_str);
                let own: Option<ClientIpConfig> = l
                    .get("client_ip")
                    .map(|t| t.clone().try_into())
                    .transpose()
                    .map_err(|e| format!("{path}: listen[{i}].client_ip: {e}"))?;
                if let Some(own) = &own {
                    own.check_values()
                        .map_err(|e| format!("{path}: in listen[{i}].client_ip: {e}"))?;
                }
                listeners.push((
                    listener(address, proxy).map_err(|e| format!("{path}: listen[{i}]: {e}"))?,
                    own,
                ));
            }
        }
        Some(_) => {
            return Err(format!("{path}: `listen` must be an array of tables ([[listen]])"));
        }
    }
    let facts: Vec<(Listener, Option<&ClientIpConfig>)> =
        listeners.iter().map(|(l, own)| (*l, own.as_ref())).collect();
    let mut found = lint_listeners(&config, &facts);
    if let Some(aws) = &args.aws_ip_ranges {
        let json = trueip::config::read_provider_file(aws)
            .map_err(|e| format!("cannot read {}: {e}", aws.display()))?;
        let bad = |e| format!("{}: {e}", aws.display());
        found.extend(trueip::lint::aws_trust(&config, &json).map_err(bad)?);
        for (i, (_, own)) in facts.iter().enumerate() {
            if let Some(own) = own {
                let more = trueip::lint::aws_trust(own, &json).map_err(bad)?;
                found.extend(more.into_iter().map(|f| f.in_listener(i)));
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.severity));
    }
    Ok(found)
}

fn listener(address: &str, proxy_protocol: Option<&str>) -> Result<Listener, String> {
    let address = match address.strip_prefix("unix:") {
        Some(_) => None,
        None => Some(
            address
                .parse()
                .map_err(|_| format!("address {address:?} is not ip:port (or unix:PATH)"))?,
        ),
    };
    Ok(Listener {
        address,
        proxy_protocol: proxy_protocol.is_some_and(|p| !p.eq_ignore_ascii_case("off")),
    })
}
