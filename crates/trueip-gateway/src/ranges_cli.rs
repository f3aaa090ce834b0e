//! `trueip ranges`: fetch, show, check and compare provider range lists.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use trueip::shown::{terminal, terminal_lines};

use crate::ranges::{Overrides, PROVIDERS, Provider, RangesSettings, cache, fetch};

/// Exit status when a check finds a list missing or too old, or an update failed.
const EXIT_FAILED: u8 = 1;
/// Exit status for bad arguments or config.
const EXIT_BAD_INPUT: u8 = 2;

const EXAMPLES: &str = "\
Providers: cloudfront (AWS ip-ranges.json, CLOUDFRONT_ORIGIN_FACING), cloudflare (ips-v4 and
ips-v6), fastly (public-ip-list), azure-front-door (Azure service tags, AzureFrontDoor.Backend:
no stable URL, give the downloaded file with --from). gcp-lb's ranges are built in.

Examples:
  trueip ranges update cloudfront cloudflare
      Fetch the official lists over HTTPS into the cache.
  trueip ranges update azure-front-door --from azure-front-door=ServiceTags_Public_20250721.json
      Import Azure's weekly file.
  trueip ranges update cloudfront --from cloudfront=https://mirror.internal/ip-ranges.json
      Use a mirror (also [ranges.from] in the config).
  trueip ranges check --max-age 8d
      For cron and monitoring: exit 1 when a list is missing or older.
  trueip ranges diff ip-ranges.old.json ip-ranges.json --provider cloudfront

An update is refused, and the cached list kept, when the new list does not parse whole, is
empty, is an older edition than the cached one (AWS syncToken, Azure changeNumber), or holds
less than half or more than twice the cached list's prefixes (--force accepts the last two).
Downloads: HTTPS only (plain http only to a loopback address), at most 32 MiB, 5 redirects,
and [ranges] timeout (default 30s) per provider.

Exit status: 0 done, 1 a list failed (update) or is missing or too old (check), 2 bad input.";

/// Fetch, show, check and compare the providers' published IP range lists.
#[derive(Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct RangesArgs {
    #[command(subcommand)]
    command: RangesCommand,
    /// The cache directory. Default: [ranges] dir, else ~/.cache/trueip/ranges
    /// (/var/lib/trueip/ranges for root, $STATE_DIRECTORY/ranges under systemd).
    #[arg(long, value_name = "DIR", global = true)]
    ranges_dir: Option<PathBuf>,
    /// Read [ranges] (dir, from, timeout) and the lists [client_ip] needs from this TOML file.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum RangesCommand {
    /// Fetch lists, check them, and replace the cached ones. Without PROVIDER: the
    /// config's lists and those already cached.
    Update {
        /// cloudfront, cloudflare, fastly, azure-front-door.
        provider: Vec<String>,
        /// Fetch PROVIDER's list from a URL or file instead (repeatable; several for one
        /// provider are merged).
        #[arg(long, value_name = "PROVIDER=URL_OR_FILE")]
        from: Vec<String>,
        /// Accept an older edition, or a size change beyond half or twice.
        #[arg(long)]
        force: bool,
        /// Time bound of each provider's download (e.g. 30s); default [ranges] timeout.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
    },
    /// The cached lists: prefixes, age, source.
    Show {
        /// Only these (default: every cached list).
        provider: Vec<String>,
        /// Output format: text, or one JSON object.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Exit 1 when a list is missing or older than --max-age.
    Check {
        /// These lists (default: the config's, else every cached one).
        provider: Vec<String>,
        /// E.g. 36h, 8d.
        #[arg(long, value_name = "DURATION")]
        max_age: String,
        /// Output format: text, or one JSON object.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Prefixes added and removed between two editions of a list (files).
    Diff {
        /// The older edition: a file as the provider publishes it (ip-ranges.json, ips-v4, ...).
        old: PathBuf,
        /// The newer edition, in the same format.
        new: PathBuf,
        /// The format to read them in (default: told from the file: AWS, Fastly or Azure
        /// JSON, else one CIDR a line).
        #[arg(long, value_name = "PROVIDER")]
        provider: Option<String>,
        /// Output format: text, or one JSON object.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Runs `trueip ranges`.
pub fn run(args: RangesArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("trueip ranges: {}", terminal_lines(message));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// The parts of the config file `ranges` reads.
struct Context {
    settings: RangesSettings,
    dir: PathBuf,
    /// The lists `[client_ip]` reads from the cache.
    needed: Vec<&'static str>,
}

fn context(args: &RangesArgs) -> Result<Context, String> {
    let (settings, needed) = match &args.config {
        Some(path) => {
            let file = crate::config::read_file(path).map_err(|e| e.to_string())?;
            file.ranges.check().map_err(|e| e.to_string())?;
            (file.ranges, file.client_ip.cached_providers())
        }
        None => (RangesSettings::default(), Vec::new()),
    };
    let dir = settings.dir(args.ranges_dir.as_deref());
    Ok(Context { settings, dir, needed })
}

fn run_inner(args: RangesArgs) -> Result<ExitCode, String> {
    let ctx = context(&args)?;
    match args.command {
        RangesCommand::Update { provider, from, force, timeout } => {
            update(&ctx, &provider, &from, force, timeout.as_deref())
        }
        RangesCommand::Show { provider, format } => show(&ctx, &provider, format),
        RangesCommand::Check { provider, max_age, format } => {
            check(&ctx, &provider, &max_age, format)
        }
        RangesCommand::Diff { old, new, provider, format } => {
            diff(&old, &new, provider.as_deref(), format)
        }
    }
}

/// The providers named, or by default those the config reads and those cached.
fn chosen(ctx: &Context, named: &[String], with_config: bool) -> Result<Vec<Provider>, String> {
    if !named.is_empty() {
        let mut out: Vec<Provider> = Vec::new();
        for name in named {
            let p = crate::ranges::provider(name)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        return Ok(out);
    }
    Ok(PROVIDERS
        .into_iter()
        .filter(|p| {
            (with_config && ctx.needed.contains(&p.name)) || cache::path(&ctx.dir, p.name).exists()
        })
        .collect())
}

fn update(
    ctx: &Context,
    named: &[String],
    from: &[String],
    force: bool,
    timeout: Option<&str>,
) -> Result<ExitCode, String> {
    let mut flags = Vec::new();
    for spec in from {
        let (name, source) = spec
            .split_once('=')
            .filter(|(_, s)| !s.trim().is_empty())
            .ok_or_else(|| format!("--from {spec}: write PROVIDER=URL_OR_FILE"))?;
        let p = crate::ranges::provider(name).map_err(|e| format!("--from {spec}: {e}"))?;
        flags.push((p.name.to_string(), source.trim().to_string()));
    }
    let mut providers = chosen(ctx, named, true)?;
    for (name, _) in &flags {
        if let Ok(p) = crate::ranges::provider(name)
            && !providers.contains(&p)
        {
            providers.push(p);
        }
    }
    if providers.is_empty() {
        return Err(format!(
            "nothing to update: no list is cached in {} (hint: name the providers: trueip ranges update cloudfront cloudflare)",
            ctx.dir.display()
        ));
    }
    let timeout = match timeout {
        Some(t) => crate::duration::parse_duration(t)
            .map_err(|e| format!("--timeout: {e}"))
            .and_then(|d| {
                if d.is_zero() || d > crate::duration::MAX_TIMEOUT {
                    Err("--timeout must be between 1ms and 24h".to_string())
                } else {
                    Ok(d)
                }
            })?,
        None => ctx.settings.timeout,
    };
    let bounds = fetch::Bounds { timeout, max_bytes: fetch::MAX_BYTES };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let tty = std::io::stderr().is_terminal();
    let mut failed = false;
    for p in providers {
        let sources = ctx.settings.sources(p, &flags);
        let mut last = std::time::Instant::now();
        let mut progress = |source: &str, got: u64, of: Option<u64>| {
            if !tty || last.elapsed() < Duration::from_millis(100) {
                return;
            }
            last = std::time::Instant::now();
            let of = of.map_or(String::new(), |n| format!(" / {} KiB", n / 1024));
            eprint!("\r\x1b[K{}: {}: {} KiB{of}", p.name, terminal(source), got / 1024);
        };
        let result = runtime.block_on(crate::ranges::update(
            &ctx.dir,
            p,
            &sources,
            bounds,
            Overrides { force },
            &mut progress,
        ));
        if tty {
            eprint!("\r\x1b[K");
        }
        match result {
            Ok(u) => println!(
                "{}: {} prefixes ({} IPv4, {} IPv6), {}{}: +{} -{}, saved in {}",
                p.name,
                u.meta.prefixes(),
                u.meta.ipv4,
                u.meta.ipv6,
                edition(&u.meta),
                if u.changed { "" } else { " (unchanged)" },
                u.added,
                u.removed,
                cache::path(&ctx.dir, p.name).display()
            ),
            Err(e) => {
                failed = true;
                // One line, though it may quote the cached list's metadata.
                eprintln!("trueip ranges: {} (the cached list, if any, is kept)", terminal(&e));
            }
        }
    }
    Ok(exit_code(failed))
}

/// [`EXIT_FAILED`] when something failed, else success.
fn exit_code(failed: bool) -> ExitCode {
    match failed {
        true => ExitCode::from(EXIT_FAILED),
        false => ExitCode::SUCCESS,
    }
}

fn edition(meta: &cache::Meta) -> String {
    match (&meta.published, meta.token) {
        (Some(date), Some(t)) => format!("edition {date} (token {t})"),
        (None, Some(t)) => format!("edition {t}"),
        _ => "no edition mark".to_string(),
    }
}

/// One list's row for `show` and `check`.
fn row(meta: &cache::Meta, now: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "provider": meta.provider,
        "ipv4": meta.ipv4,
        "ipv6": meta.ipv6,
        "fetched_at": meta.fetched_at,
        "age_seconds": meta.age(now).as_secs(),
        "token": meta.token,
        "published": meta.published,
        "sha256": meta.sha256,
        "sources": meta.sources,
    })
}

fn show(ctx: &Context, named: &[String], format: Format) -> Result<ExitCode, String> {
    let providers = chosen(ctx, named, false)?;
    let now = SystemTime::now();
    let mut rows = Vec::new();
    let mut text = String::new();
    let mut failed = false;
    for p in providers {
        match cache::read(&ctx.dir, p.name) {
            Ok(Some(c)) => {
                let sources: Vec<&str> = c.meta.sources.iter().map(|s| s.source.as_str()).collect();
                text.push_str(&format!(
                    "{:<17} {:>6} IPv4 {:>6} IPv6  fetched {} ({} ago)  {}  from {}\n",
                    p.name,
                    c.meta.ipv4,
                    c.meta.ipv6,
                    terminal(&c.meta.fetched_at),
                    age_text(c.meta.age(now)),
                    terminal(&edition(&c.meta)),
                    terminal(&sources.join(", "))
                ));
                rows.push(row(&c.meta, now));
            }
            Ok(None) => {
                failed = true;
                text.push_str(&format!("{:<17} missing\n", p.name));
                rows.push(serde_json::json!({"provider": p.name, "missing": true}));
            }
            Err(e) => {
                failed = true;
                text.push_str(&format!("{:<17} unreadable: {}\n", p.name, terminal(&e)));
                rows.push(serde_json::json!({"provider": p.name, "error": e}));
            }
        }
    }
    match format {
        Format::Text if text.is_empty() => {
            println!("no lists cached in {}", ctx.dir.display())
        }
        Format::Text => print!("{text}"),
        Format::Json => println!("{}", serde_json::json!({"dir": ctx.dir, "lists": rows})),
    }
    Ok(exit_code(failed))
}

fn check(
    ctx: &Context,
    named: &[String],
    max_age: &str,
    format: Format,
) -> Result<ExitCode, String> {
    let max_age = parse_age(max_age).map_err(|e| format!("--max-age: {e}"))?;
    let providers = chosen(ctx, named, true)?;
    let now = SystemTime::now();
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    if providers.is_empty() {
        problems.push(format!("no list is cached in {}", ctx.dir.display()));
    }
    for p in providers {
        match cache::read(&ctx.dir, p.name) {
            Ok(Some(c)) => {
                let age = c.meta.age(now);
                let ok = age <= max_age;
                if !ok {
                    problems.push(format!(
                        "{}: fetched {} ago, older than {} (hint: trueip ranges update {} --ranges-dir {})",
                        p.name,
                        age_text(age),
                        age_text(max_age),
                        p.name,
                        ctx.dir.display()
                    ));
                }
                let mut r = row(&c.meta, now);
                if let Some(obj) = r.as_object_mut() {
                    obj.insert("ok".into(), ok.into());
                }
                rows.push(r);
            }
            Ok(None) => {
                problems.push(format!(
                    "{}: missing from {} (hint: trueip ranges update {} --ranges-dir {})",
                    p.name,
                    ctx.dir.display(),
                    p.name,
                    ctx.dir.display()
                ));
                rows.push(serde_json::json!({"provider": p.name, "ok": false, "missing": true}));
            }
            Err(e) => {
                problems.push(e.clone());
                rows.push(serde_json::json!({"provider": p.name, "ok": false, "error": e}));
            }
        }
    }
    match format {
        Format::Text => {
            for p in &problems {
                println!("{}", terminal(p));
            }
            if problems.is_empty() {
                println!("ok: {} list(s) younger than {}", rows.len(), age_text(max_age));
            }
        }
        Format::Json => println!(
            "{}",
            serde_json::json!({"ok": problems.is_empty(), "max_age_seconds": max_age.as_secs(), "lists": rows})
        ),
    }
    Ok(exit_code(!problems.is_empty()))
}

/// A duration with days allowed (`8d`), besides the config's units.
fn parse_age(text: &str) -> Result<Duration, String> {
    match text.trim().strip_suffix('d') {
        Some(days) => days
            .trim()
            .parse::<u64>()
            .map(|d| Duration::from_secs(d.saturating_mul(86_400)))
            .map_err(|_| format!("invalid duration \"{text}\" (write e.g. \"36h\", \"8d\")")),
        None => crate::duration::parse_duration(text),
    }
}

fn age_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn diff(
    old: &Path,
    new: &Path,
    provider: Option<&str>,
    format: Format,
) -> Result<ExitCode, String> {
    let provider = provider.map(|p| crate::ranges::provider(p).map(|p| p.name)).transpose()?;
    let read = |path: &Path| -> Result<Vec<trueip::Cidr>, String> {
        let text = path.display().to_string();
        let bytes = crate::ranges::read_file(&text)?;
        let name = match provider {
            Some(p) => p,
            None => guess(&bytes),
        };
        trueip::providers::edition(name, &bytes)
            .map(|e| e.cidrs)
            .map_err(|e| format!("{text}: {e}"))
    };
    let (added, removed) = crate::ranges::diff(&read(old)?, &read(new)?);
    match format {
        Format::Text => {
            for c in &added {
                println!("+ {c}");
            }
            for c in &removed {
                println!("- {c}");
            }
            println!("{} added, {} removed", added.len(), removed.len());
        }
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "added": added.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "removed": removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The provider whose format a file is in, from its first keys: AWS `syncToken` /
/// `prefixes`, Fastly `addresses`, Azure `values`; a text list reads the same for all.
fn guess(bytes: &[u8]) -> &'static str {
    let head = bytes.get(..4096).unwrap_or(bytes);
    let has = |key: &str| head.windows(key.len()).any(|w| w == key.as_bytes());
    if has("\"addresses\"") {
        "fastly"
    } else if has("\"values\"") || has("\"changeNumber\"") {
        "azure-front-door"
    } else {
        "cloudfront"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("8d").unwrap(), Duration::from_secs(8 * 86_400));
        assert_eq!(parse_age("36h").unwrap(), Duration::from_secs(36 * 3600));
        assert!(parse_age("soon").is_err());
        assert!(parse_age("xd").is_err());
        assert_eq!(age_text(Duration::from_secs(3 * 86_400)), "3d");
    }

    #[test]
    fn formats_are_told_from_the_first_keys() {
        assert_eq!(guess(br#"{"addresses":["1.2.3.0/24"]}"#), "fastly");
        assert_eq!(guess(br#"{"changeNumber":1,"values":[]}"#), "azure-front-door");
        assert_eq!(guess(br#"{"syncToken":"1","prefixes":[]}"#), "cloudfront");
    }
}
