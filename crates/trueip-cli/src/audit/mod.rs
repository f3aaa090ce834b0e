//! `trueip audit URL`: send forged client addresses to a live endpoint and report which ones
//! it believed.
//!
//! A baseline request first learns what the target thinks of the auditor (its own address as
//! the target sees it); then each probe of [`matrix::PROBES`] adds forged lines carrying
//! sentinel addresses; an answer that became a sentinel was believed, an answer that moved to
//! anything else was influenced. The baseline is asked again at the end, so a target whose
//! answer drifts on its own is not mistaken for a spoofable one. Requests go one at a time,
//! paced by `--rate`, at most `--max-requests`, each within `--timeout`.

mod client;
mod matrix;
mod read;
mod report;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use trueip::shown::terminal_lines;

use client::Target;
use matrix::{PROBES, Probe};
use read::{Reader, Seen};
use report::{Outcome, ProbeResult, Report};

/// Exit status: a forged input was believed.
const EXIT_SPOOFABLE: u8 = 1;
/// Exit status: bad arguments, the target could not be reached or read, or the audit was cut
/// short (nothing found, but not everything asked).
const EXIT_ERROR: u8 = 2;

const EXAMPLES: &str = "\
Examples:
  trueip audit http://127.0.0.1:8080/
      Audit trueip's own whoami page (`trueip serve`): the answer is found by itself.

  trueip audit https://app.example.com/whoami --read json:/ip
      A JSON page whose `ip` field shows the client (RFC 6901 pointer: json:/client/ip).

  trueip audit https://app.example.com/ --read header:X-Seen-IP
      The address is in a response header.

  trueip audit https://app.example.com/me --read 'regex:Your IP: ([0-9a-fA-F.:]+)'
      The address is in an HTML page: the first capture group.

  trueip audit http://10.0.0.5/ip --rate 2 --max-requests 50 --format json
      Slowly, at most 50 requests, a JSON report.

What it sends: one baseline GET (your address as the target sees it), then one GET per forged
input (X-Forwarded-For leftmost, rightmost, several lines, IPv6, ports; X-Real-IP; Forwarded,
with unmatched quotes; True-Client-IP, CF-Connecting-IP, X-Client-IP, Client-IP,
X-Cluster-Client-IP, Fastly-Client-IP and other single-address headers; underscore spellings;
`Connection:` hop-by-hop tricks; IPv4-mapped, zoned, octal, hex and integer forms), all with
sentinel addresses from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32), then the baseline again. Requests go only to the URL given, to
the address its host resolved to at the start, one at a time; redirects are never followed
(a 3xx is reported, not fetched). HTTP/1.1; bodies are read up to 1 MiB.

Exit status: 0 nothing believed, 1 the target believed a forged input (each is listed, with
its severity and the fix), 2 bad arguments, an unreachable or unreadable target, or an audit
cut short by --max-requests or errors.";

/// Report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Text,
    /// One JSON object.
    Json,
}

/// Send forged client addresses to URL and report which ones it believed.
#[derive(Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub(crate) struct AuditArgs {
    /// The page to audit: http:// or https://, one that shows the client address it sees.
    #[arg(value_name = "URL")]
    url: String,
    /// Where the answer shows the client: json:POINTER (RFC 6901, e.g. json:/client_ip),
    /// header:NAME, regex:PATTERN (its first capture group) or body (the whole body). Default:
    /// trueip's whoami JSON, or a body that is one address.
    #[arg(long, value_name = "HOW")]
    read: Option<Reader>,
    /// The most requests sent, the baseline included.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(2..=10_000))]
    max_requests: u32,
    /// Requests per second, at most (one at a time).
    #[arg(long, value_name = "PER_SECOND", default_value_t = 10.0, value_parser = parse_rate)]
    rate: f64,
    /// Seconds each request may take, connecting to the last byte of the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_timeout)]
    timeout: f64,
    /// For https: trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.01..=1000.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a rate between 0.01 and 1000 requests per second")),
    }
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if (0.1..=300.0).contains(&t) => Ok(t),
        _ => Err(format!("{s:?} is not a number of seconds between 0.1 and 300")),
    }
}

/// Runs `trueip audit`.
pub(crate) fn run(args: AuditArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trueip audit: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(audit(&args)) {
        Ok(report) => {
            let printed = match args.format {
                Format::Text => {
                    print!("{}", terminal_lines(report.text()));
                    Ok(())
                }
                Format::Json => {
                    trueip::shown::terminal_json_pretty(&report).map(|json| println!("{json}"))
                }
            };
            if let Err(e) = printed {
                eprintln!("trueip audit: cannot write the report: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
            match report.verdict {
                report::Verdict::Clean => ExitCode::SUCCESS,
                report::Verdict::Spoofable => ExitCode::from(EXIT_SPOOFABLE),
                report::Verdict::Inconclusive => ExitCode::from(EXIT_ERROR),
            }
        }
        Err(message) => {
            eprintln!("trueip audit: {}", terminal_lines(message));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Spaces requests at least `period` apart.
struct Pacer {
    period: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = tokio::time::Instant::now() + self.period;
    }
}

/// A progress line on a terminal; nothing otherwise.
struct Progress {
    on: bool,
}

impl Progress {
    fn show(&self, done: usize, total: usize, what: &str) {
        if self.on {
            eprint!("\r\x1b[2K[{done}/{total}] {what}");
        }
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}

async fn audit(args: &AuditArgs) -> Result<Report, String> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let target = Target::new(&args.url, args.ca.as_deref(), timeout).await?;
    let mut pacer = Pacer {
        period: Duration::from_secs_f64(1.0 / args.rate),
        next: tokio::time::Instant::now(),
    };
    let max = usize::try_from(args.max_requests).unwrap_or(usize::MAX);
    // The baseline, the probes that fit, and the baseline again when a request is left for it.
    let probes: &[Probe] =
        PROBES.get(..PROBES.len().min(max.saturating_sub(2)).max(1)).unwrap_or(PROBES);
    let recheck = max >= probes.len() + 2;
    let total = 1 + probes.len() + usize::from(recheck);
    let progress = Progress { on: std::io::stderr().is_terminal() };

    progress.show(1, total, "baseline");
    pacer.wait().await;
    let first = target
        .get(&[], timeout)
        .await
        .map_err(|e| format!("the baseline request to {}: {e}", target.url))?;
    if first.status.is_redirection() {
        progress.clear();
        let to = first.headers.get(http::header::LOCATION).map_or_else(
            || "nowhere".to_owned(),
            |l| trueip::shown::terminal(l.as_bytes()).to_string(),
        );
        return Err(format!(
            "{} answered {} (a redirect to {to}); trueip audit sends only to the URL it is given and \
             follows no redirect: audit the page itself",
            target.url, first.status
        ));
    }
    let (reader, how) = match &args.read {
        Some(reader) => (reader.clone(), "as given"),
        None => read::detect(&first).ok_or_else(|| {
            format!(
                "cannot tell which address {} shows: its answer ({}, {}) is neither trueip's \
                 whoami JSON nor one address; say where it is with --read json:/POINTER, \
                 --read header:NAME or --read 'regex:ip=([0-9a-fA-F.:]+)'",
                target.url,
                first.status,
                read::preview(&first.body)
            )
        })?,
    };
    let baseline = reader.read(&first).map_err(|e| {
        format!(
            "reading the baseline answer of {} ({}) with --read {reader}: {e}",
            target.url, first.status
        )
    })?;
    if let Some((p, _)) = matrix::find(baseline.ip, &baseline.text) {
        return Err(format!(
            "the baseline answer {baseline} is already one of the sentinel addresses (probe {}); \
             the audit could not tell a believed input from this",
            p.name
        ));
    }

    let mut results = Vec::with_capacity(probes.len());
    for (i, probe) in probes.iter().enumerate() {
        progress.show(i + 2, total, probe.name);
        pacer.wait().await;
        let outcome = match target.get(probe.lines, timeout).await {
            Err(e) => Outcome::Failed(e),
            Ok(answer) if answer.status != first.status => Outcome::Refused(answer.status.as_u16()),
            Ok(answer) => match reader.read(&answer) {
                Err(e) => Outcome::Unreadable(e),
                Ok(seen) if seen.same(&baseline) => Outcome::Ignored,
                Ok(seen) => match matrix::find(seen.ip, &seen.text) {
                    Some((from, sentinel)) => Outcome::Believed { seen, from, sentinel },
                    None => Outcome::Changed(seen),
                },
            },
        };
        results.push(ProbeResult { probe, outcome });
    }
    let again: Option<Result<Seen, String>> = if recheck {
        progress.show(total, total, "baseline again");
        pacer.wait().await;
        Some(match target.get(&[], timeout).await {
            Ok(answer) => reader.read(&answer),
            Err(e) => Err(e),
        })
    } else {
        None
    };
    progress.clear();
    Ok(Report::new(report::Facts {
        target: &target,
        reader: &reader,
        how,
        baseline,
        again,
        results,
        max_requests: args.max_requests,
        rate: args.rate,
        probes_total: PROBES.len(),
    }))
}
