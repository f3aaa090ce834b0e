//! `trueip explain`: one decision, step by step; or many, as JSON Lines.

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Read, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Deserialize;
use trueip::config::{ClientIpConfig, Files, Flags};
use trueip::headers::{WithQuery, parse_header_field, parse_header_line};
use trueip::lambda::Preset;
use trueip::shown::{terminal_json, terminal_json_pretty, terminal_lines};
use trueip::{Connection, Explanation, Node, Policy, PrivateLink};

/// Exit code for bad input (arguments, config, headers, a bad batch line).
const EXIT_BAD_INPUT: u8 = 2;

const TRUST_HELP: &str = "\
Trust specs (--trust, repeatable):
  10.0.0.0/8, 192.0.2.7, 2001:db8::/32   address ranges and single addresses
  loopback | private | any                named sets (private = RFC 1918 + ULA + link-local)
  unix                                    a peer on a Unix socket (--peer unix), which no
                                          address range, not even any, includes
  cloudfront | cloudflare | fastly | azure-front-door
                                          a provider's published ranges, from the cache
                                          `trueip ranges update NAME` fills (--ranges-dir)
  cloudfront=FILE | cloudflare=FILE | fastly=FILE | azure-front-door=FILE
                                          the same, from a file you keep
  gcp-lb                                  Google Front End ranges (built in)
  lb.internal | host:nginx                a host name's addresses, resolved now (a name
                                          without a dot is written host:NAME); one that
                                          does not resolve is an error

";

const EXAMPLES: &str = "\
Examples:
  # nginx on 10.0.0.5 appends to X-Forwarded-For; the client forged the first entry
  trueip explain --peer 10.0.0.5 --trust 10.0.0.0/8 --strategy rightmost-untrusted \\
      --header 'X-Forwarded-For: 1.2.3.4, 203.0.113.9'

  # an API gateway on 10.0.0.7 hands the client over in a query argument
  trueip explain --peer 10.0.0.7 --trust 10.0.0.7 --strategy query:client_ip \\
      --query '/orders?client_ip=198.51.100.4&page=2'

  # nginx sets X-Real-IP from $remote_addr
  trueip explain --peer 127.0.0.1 --trust loopback --strategy header:X-Real-IP \\
      --header 'X-Real-IP: 198.51.100.4' --format json

  # an NLB behind AWS PrivateLink: PROXY v2 source and VPC endpoint id, shown beside the client
  trueip explain --peer 10.0.0.5 --proxy-protocol-from 10.0.0.0/8 \\
      --proxy-source 172.31.7.9:50000 --proxy-vpce-id vpce-08d2bf15fac5001c9

  # an AWS Lambda event as the function logged it, behind an ALB (presets: see below)
  trueip explain --lambda-event event.json --lambda-preset alb

  # the same behind CloudFront, with CloudFront's ranges from AWS's ip-ranges.json
  trueip explain --lambda-event event.json --lambda-preset cloudfront-alb \
      --trust cloudfront=ip-ranges.json

  # many cases at once, one JSON object per line in and out
  echo '{\"peer\":\"10.0.0.5\",\"headers\":[[\"X-Forwarded-For\",\"203.0.113.9\"]]}' |
      trueip explain --batch --trust private --strategy rightmost-untrusted

Lambda events (--lambda-event FILE, or - for stdin): ALB target, API Gateway REST and WebSocket
(payload 1.0), HTTP API (payload 2.0) and Function URL events, told from their shape (a Function URL's
by its requestContext.domainName, <url-id>.lambda-url.<region>.on.aws). The address AWS's
front end saw stands in for the peer: the element the ALB appended to x-forwarded-for, or
requestContext.identity.sourceIp / requestContext.http.sourceIp. The chains' policies
(--lambda-preset NAME, trueip::lambda::Preset), and the flags that say the same:
  alb                     ALB → Lambda                                      --strategy hops:1 --trust any
  cloudfront-alb          CloudFront → ALB → Lambda                         --strategy cloudfront
  cloudfront-api-gateway  CloudFront → API Gateway or Function URL → Lambda --strategy cloudfront
  api-gateway             API Gateway or Function URL → Lambda              (none: sourceIp is the client)
The CloudFront ones need CloudFront's ranges: --trust cloudfront=ip-ranges.json. With a preset,
--trust only loads such files; whom to trust is the preset's. alb decides ALB events only: in an
API Gateway or Function URL event the last x-forwarded-for element is not AWS's, so there it
trusts no one (sourceIp is the client, flagged no_lambda_event). A Function URL keeps only the
first x-forwarded-for value it received, the client's text: no policy reads it there, so behind
CloudFront the client is CloudFront-Viewer-Address (forward it), else the edge, flagged
x_forwarded_for_not_kept (the middlewares withhold that header, X-Forwarded-Proto and -Port from
the app). query:NAME reads the event's arguments as AWS writes them (rawQueryString; an ALB's
queryStringParameters as sent; a REST API's decoded), cookie:NAME a payload 2.0 event's cookies.
API Gateway writes x-forwarded-for itself: with nothing left of sourceIp (sourceIp alone, or an
edge-optimized REST API's sourceIp, <edge>) it is shown as API Gateway's and, when no proxy is
trusted, not flagged header_from_untrusted_peer; an entry left of sourceIp still is.

Exit status: 0 resolved, 2 bad input (in --batch: any line was bad; with --lambda-event: an
event of no known kind, or without the field its peer comes from).";

/// The long help after the options: trust specs, the strategies (from the strategy
/// table, as the README's), examples.
fn after_help() -> String {
    format!(
        "{TRUST_HELP}Strategies (--strategy, repeat for a fallback chain):\n{}\n{EXAMPLES}",
        trueip::StrategySpec::help()
    )
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// The decision, step by step.
    Text,
    /// One JSON object.
    Json,
}

/// Explain how the client address of one request is decided.
#[derive(Args, Debug)]
#[command(after_long_help = after_help())]
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "these comments are --help texts, where [client_ip] names a TOML table; `\\[` would show"
)]
pub(crate) struct ExplainArgs {
    /// The peer: IP or IP:port ([v6]:port), or `unix` for a connection over a Unix
    /// socket (trusted only by `--trust unix`).
    #[arg(long, value_name = "ADDR", required_unless_present_any = ["batch", "lambda_event"])]
    peer: Option<String>,
    /// A request header, `Name: value`; repeat for several (order is kept). A line `trueip
    /// serve` would answer 400 to (space before the colon, leading whitespace, control bytes)
    /// is refused.
    #[arg(long = "header", short = 'H', value_name = "'NAME: VALUE'")]
    headers: Vec<String>,
    /// The request's query string, for `query:NAME` strategies: `client=1.2.3.4&page=2`, or a
    /// request target or URL whose part after the first `?` is taken
    /// (`'/search?client=1.2.3.4'`). As sent: percent-encoded, no spaces.
    #[arg(long, value_name = "QUERY")]
    query: Option<String>,
    /// Trust these proxies: CIDR, address, named set, or provider (see below). Replaces the config's list.
    #[arg(long, value_name = "SPEC")]
    trust: Vec<String>,
    /// Strategy; repeat for a fallback chain (see below). Default: peer, or rightmost-untrusted with --trust.
    #[arg(long, value_name = "NAME")]
    strategy: Vec<String>,
    /// Which list header the list strategies (rightmost-untrusted, rightmost, hops:N,
    /// leftmost) read: xff (X-Forwarded-For, the default) or forwarded (RFC 7239).
    #[arg(long, value_name = "xff|forwarded")]
    from: Option<String>,
    /// Read the [client_ip] section of this TOML file (the one `trueip serve` uses).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// With --config: decide as this `[[listen]]` listener does, by its place (0 is the
    /// first) or its address: with its own `client_ip` table if it has one, else with
    /// [client_ip].
    #[arg(long, value_name = "N|ADDRESS", requires = "config")]
    listener: Option<String>,
    /// The provider range list cache, for presets and provider names given without a
    /// file (`trueip ranges update` fills it). Replaces the config's [ranges] dir.
    #[arg(long, value_name = "DIR")]
    ranges_dir: Option<std::path::PathBuf>,
    /// The source address of a PROXY protocol header on the connection.
    #[arg(long, value_name = "ADDR")]
    proxy_source: Option<String>,
    /// The AWS VPC endpoint id (PrivateLink) the PROXY v2 header named (TLV 0xEA, subtype 0x01).
    #[arg(long, value_name = "ID", requires = "proxy_source")]
    proxy_vpce_id: Option<String>,
    /// The Azure Private Link id the PROXY v2 header named (TLV 0xEE, subtype 0x01).
    #[arg(long, value_name = "N", requires = "proxy_source")]
    proxy_azure_link_id: Option<u32>,
    /// Senders trusted to speak the PROXY protocol; replaces the config's list.
    #[arg(long, value_name = "SPEC")]
    proxy_protocol_from: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Read JSON Lines cases on stdin, write one JSON result per line.
    #[arg(long, conflicts_with_all = ["peer", "headers", "proxy_source", "proxy_vpce_id", "proxy_azure_link_id"])]
    batch: bool,
    /// Explain an AWS Lambda event (ALB, API Gateway REST or HTTP API, Function URL) read
    /// from FILE, or from stdin with `-`: its peer and headers come from the event.
    #[arg(
        long,
        value_name = "FILE|-",
        conflicts_with_all = ["peer", "headers", "proxy_source", "proxy_vpce_id", "proxy_azure_link_id", "batch"]
    )]
    lambda_event: Option<std::path::PathBuf>,
    /// With --lambda-event: decide with the policy of a Lambda chain: alb, cloudfront-alb,
    /// api-gateway or cloudfront-api-gateway (see below). Instead of --strategy, --from and
    /// --config; --trust then only loads a provider's ranges, as NAME=FILE.
    #[arg(
        long,
        value_name = "NAME",
        value_parser = parse_preset,
        requires = "lambda_event",
        // The request flags too: clap waives `requires` when the required argument
        // conflicts with one given, so `--peer` alone would slip past it.
        conflicts_with_all = [
            "strategy", "from", "config", "proxy_protocol_from", "peer", "headers",
            "proxy_source", "proxy_vpce_id", "proxy_azure_link_id", "batch",
        ]
    )]
    lambda_preset: Option<Preset>,
}

/// `--lambda-preset`: an unknown name is refused with the known ones listed.
fn parse_preset(name: &str) -> Result<Preset, String> {
    name.parse::<Preset>().map_err(|e| e.to_string())
}

/// Runs `trueip explain`.
pub(crate) fn run(args: ExplainArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("trueip explain: {}", terminal_lines(message));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run_inner(args: &ExplainArgs) -> Result<ExitCode, String> {
    if let (Some(preset), Some(path)) = (args.lambda_preset, &args.lambda_event) {
        let explanation = lambda_event(&preset_policy(preset, &args.trust)?, path)?;
        return print(&explanation, args.format);
    }
    let (mut base, config_dir) = match &args.config {
        Some(path) => {
            load_config(path, args.listener.as_deref().map(|l| (l, !args.headers.is_empty())))?
        }
        None => (ClientIpConfig::default(), None),
    };
    let dirs = Dirs { flag: args.ranges_dir.as_deref(), config: config_dir.as_deref() };
    base.apply_flags(&Flags {
        trust: &args.trust,
        strategy: &args.strategy,
        from: args.from.as_deref(),
        proxy_protocol_from: &args.proxy_protocol_from,
    })
    .map_err(|e| e.to_string())?;
    if args.batch {
        return batch(&base, dirs);
    }
    let (policy, names) = trueip_gateway::build_policy(&base, dirs.flag, dirs.config)?;
    let explanation = match &args.lambda_event {
        Some(path) => lambda_event(&policy, path)?,
        None => request(&policy, args)?,
    };
    print_named(&explanation, args.format, &names)
}

fn print(explanation: &Explanation, format: Format) -> Result<ExitCode, String> {
    print_named(explanation, format, &trueip_gateway::names::Addresses::new())
}

/// The explanation, and what the trusted host names resolved to (text: one line each
/// after it; JSON: a `trust_names` object of name → addresses, present when there are
/// names).
fn print_named(
    explanation: &Explanation,
    format: Format,
    names: &trueip_gateway::names::Addresses,
) -> Result<ExitCode, String> {
    match format {
        Format::Text => {
            print!("{explanation}");
            for (name, addrs) in names {
                println!("trust name {}", trueip_gateway::names::describe(name, addrs));
            }
        }
        Format::Json if names.is_empty() => {
            println!("{}", terminal_json_pretty(&explanation).map_err(|e| e.to_string())?)
        }
        Format::Json => {
            let mut value = serde_json::to_value(explanation).map_err(|e| e.to_string())?;
            if let Some(object) = value.as_object_mut() {
                object.insert(
                    "trust_names".into(),
                    serde_json::to_value(names).map_err(|e| e.to_string())?,
                );
            }
            println!("{}", terminal_json_pretty(&value).map_err(|e| e.to_string())?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The request the flags describe (`--peer`, `--header`, `--proxy-*`), explained.
fn request(policy: &Policy, args: &ExplainArgs) -> Result<Explanation, String> {
    let peer = args.peer.as_deref().unwrap_or_default();
    let link = PrivateLink {
        aws_vpce_id: args.proxy_vpce_id.as_deref().map(Into::into),
        azure_link_id: args.proxy_azure_link_id,
    };
    let conn = connection(peer, args.proxy_source.as_deref(), link)?;
    let headers = args
        .headers
        .iter()
        .map(|line| parse_header_line(line).map_err(|e| format!("--header: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let query = query_string(args.query.as_deref().unwrap_or_default())
        .map_err(|e| format!("--query: {e}"))?;
    Ok(Explanation::new(policy, &conn, &WithQuery::new(headers.as_slice(), query.as_bytes())))
}

/// The query string of `--query` (or a batch case's `query`): the text after the first
/// `?` when it has one, else all of it. Refused, as `trueip serve` answers 400 to them in a
/// request target: spaces, control bytes and anything outside visible ASCII.
fn query_string(text: &str) -> Result<&str, String> {
    let query = text.split_once('?').map_or(text, |(_, query)| query);
    match query.bytes().find(|b| !b.is_ascii_graphic()) {
        Some(b) => Err(format!(
            "{query:?} holds {:?}; a query string is sent percent-encoded, with no spaces \
             (write %20 for a space)",
            char::from(b)
        )),
        None => Ok(query),
    }
}

/// The policy of `preset`, with the provider ranges `--trust NAME=FILE` loads. Any other
/// trust spec is refused rather than added: it would quietly make the preset another policy.
fn preset_policy(preset: Preset, trust: &[String]) -> Result<Policy, String> {
    let mut builder = preset.builder();
    for spec in trust {
        let Some((name, file)) = spec.split_once('=') else {
            return Err(format!(
                "--trust {spec}: with --lambda-preset {preset} the preset decides whom to trust \
                 ({}); --trust only loads a provider's ranges, as NAME=FILE (hint: drop it, or \
                 use --strategy and --trust without the preset)",
                preset.chain()
            ));
        };
        let name = name.trim().to_ascii_lowercase();
        let files = Files::One(file.trim().to_string());
        let ranges = trueip::config::load_provider(&name, &files, &mut |path| {
            trueip::config::read_provider_file(path)
        })
        .map_err(|e| format!("--trust {spec}: {e}"))?;
        builder = builder.provider(&name, ranges);
    }
    builder.build().map_err(|e| format!("--lambda-preset {preset}: {e}"))
}

/// The most bytes `--lambda-event` reads, and `--batch` of one line. AWS hands a
/// function at most 6 MB (a synchronous invocation's payload), so anything larger is not
/// an event, and `-` fed without end (or a path such as `/dev/zero`) must not make
/// explain read until memory runs out.
const MAX_EVENT_BYTES: u64 = 16 << 20;

/// Reads an event of at most [`MAX_EVENT_BYTES`] from `reader`, for `name` in errors.
fn read_event(reader: impl Read, name: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_EVENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the event {name}: {e}"))?;
    if bytes.len() as u64 > MAX_EVENT_BYTES {
        return Err(format!(
            "{name}: more than {} MiB, larger than any Lambda event (AWS sends at most 6 MB)",
            MAX_EVENT_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("{name}: not JSON: {e}"))
}

/// A Lambda event from `path` (`-`: stdin), explained; errors name the file and the
/// field the event lacks.
fn lambda_event(policy: &Policy, path: &std::path::Path) -> Result<Explanation, String> {
    let (name, text) = if path.as_os_str() == "-" {
        let name = "stdin".to_string();
        let text = read_event(std::io::stdin().lock(), &name)?;
        (name, text)
    } else {
        let name = path.display().to_string();
        let file =
            std::fs::File::open(path).map_err(|e| format!("cannot read the event {name}: {e}"))?;
        let text = read_event(file, &name)?;
        (name, text)
    };
    let event: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!("{name}: not JSON: {e} (hint: pass the event exactly as the function logged it)")
    })?;
    trueip::lambda::explain_event(policy, &event).map_err(|e| format!("{name}: {e}"))
}

/// The `[client_ip]` section of a config file (or listener `--listener`'s own), and its
/// `[ranges] dir`; other sections belong to `serve`. Relative paths in them are relative
/// to the file's directory, as `serve` reads them (`trueip::config::in_dir_of`).
pub(crate) fn load_config(
    path: &std::path::Path,
    listener: Option<(&str, bool)>,
) -> Result<(ClientIpConfig, Option<std::path::PathBuf>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let file_dir = path.parent().unwrap_or(std::path::Path::new(""));
    let dir = match table.get("ranges").and_then(|r| r.get("dir")) {
        Some(toml::Value::String(cache)) => {
            Some(trueip::config::in_dir_of(file_dir, std::path::Path::new(cache)))
        }
        Some(other) => {
            return Err(format!(
                "{}: [ranges] dir must be a path string, not {other}",
                path.display()
            ));
        }
        None => None,
    };
    let (section, name) = match listener {
        Some((wanted, headers)) => listener_section(&mut table, wanted, headers)
            .map_err(|e| format!("{}: --listener {wanted}: {e}", path.display()))?,
        None => (table.remove("client_ip"), "[client_ip]".to_string()),
    };
    let mut config = match section {
        Some(section) => {
            section.try_into().map_err(|e| format!("{}: {name}: {e}", path.display()))?
        }
        None => ClientIpConfig::default(),
    };
    config.paths_from(file_dir).map_err(|e| format!("{}: {name}: {e}", path.display()))?;
    Ok((config, dir))
}

/// The `client_ip` table that decides for listener `wanted` (its place in `[[listen]]`,
/// or its address), and its name: the listener's own, else `[client_ip]`. A config
/// without `[[listen]]` has serve's one default listener, 0. `headers`: whether the
/// request to explain carries headers, which a tcp-mode listener never reads.
fn listener_section(
    table: &mut toml::Table,
    wanted: &str,
    headers: bool,
) -> Result<(Option<toml::Value>, String), String> {
    let listeners = match table.get_mut("listen") {
        Some(toml::Value::Array(l)) => std::mem::take(l),
        Some(_) => return Err("listen is not an array of [[listen]] tables".to_string()),
        None if wanted.trim() == "0" => {
            return Ok((table.remove("client_ip"), "[client_ip]".to_string()));
        }
        None => {
            return Err(
                "the config has no [[listen]] table: its one listener, serve's default, is 0"
                    .to_string(),
            );
        }
    };
    fn address(l: &toml::Value) -> Option<&str> {
        l.get("address").and_then(toml::Value::as_str).map(str::trim)
    }
    // `[::1]:8080` is `[0:0::1]:8080`; a `unix:` path is its text.
    let same = |a: &str, b: &str| match (a.parse::<std::net::SocketAddr>(), b.parse()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let found = match wanted.trim().parse::<usize>() {
        Ok(i) => (i < listeners.len()).then_some(i),
        Err(_) => listeners.iter().position(|l| address(l).is_some_and(|a| same(a, wanted.trim()))),
    };
    let Some(i) = found else {
        let known: Vec<String> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{i} ({})", address(l).unwrap_or("no address")))
            .collect();
        return Err(format!("no such listener; the config's are {}", known.join(", ")));
    };
    let Some(toml::Value::Table(mut listener)) = listeners.into_iter().nth(i) else {
        return Err(format!("listen[{i}] is not a table"));
    };
    if headers && listener.get("mode").and_then(toml::Value::as_str) == Some("tcp") {
        return Err(format!(
            "listen[{i}] relays TCP (mode = \"tcp\") and reads no header: explain it without -H \
             (its client is the peer, or a PROXY header's source)"
        ));
    }
    Ok(match listener.remove("client_ip") {
        Some(own) => (Some(own), format!("listen[{i}].client_ip")),
        None => (table.remove("client_ip"), "[client_ip]".to_string()),
    })
}

/// Where the range cache is: `--ranges-dir`, else the config's `[ranges] dir`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dirs<'a> {
    pub(crate) flag: Option<&'a std::path::Path>,
    pub(crate) config: Option<&'a std::path::Path>,
}

fn build(config: &ClientIpConfig, dirs: Dirs<'_>) -> Result<Policy, String> {
    trueip_gateway::build_policy(config, dirs.flag, dirs.config).map(|(policy, _)| policy)
}

/// The connection as `serve` would see it. A private endpoint id comes only in a PROXY
/// header, so one without a proxy source describes no connection `serve` could get.
fn connection(
    peer: &str,
    proxy_source: Option<&str>,
    private_link: PrivateLink,
) -> Result<Connection, String> {
    let node = |what: &str, text: &str| -> Result<Node, String> {
        trueip::addr::parse_node(text.as_bytes())
            .map_err(|e| format!("invalid {what} {text:?}: {e} (hint: write 192.0.2.1, 192.0.2.1:443 or [2001:db8::1]:443)"))
    };
    if proxy_source.is_none() && !private_link.is_empty() {
        return Err(
            "a private endpoint id comes in a PROXY header: give its proxy_source too".into()
        );
    }
    // `unix` (or nginx's spelling, `unix:`): a connection over a Unix socket, which has
    // no address: only the trust spec `unix` trusts it.
    let peer = match peer.trim() {
        "unix" | "unix:" => trueip::addr::Peer::Unix,
        text => trueip::addr::Peer::Ip(node("peer", text)?),
    };
    Ok(Connection {
        peer,
        proxy_source: proxy_source.map(|p| node("proxy source", p)).transpose()?,
        private_link,
    })
}

/// One line of `--batch` input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    peer: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    trust: Option<Vec<String>>,
    #[serde(default)]
    strategy: Option<OneOrMany>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    proxy_source: Option<String>,
    #[serde(default)]
    aws_vpce_id: Option<String>,
    #[serde(default)]
    azure_link_id: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Policies are built once per distinct (trust, strategy, from) and reused: building
/// one per line would dominate a large batch.
fn batch(base: &ClientIpConfig, dirs: Dirs<'_>) -> Result<ExitCode, String> {
    let mut stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut policies: HashMap<String, Result<Policy, String>> = HashMap::new();
    let mut any_bad = false;
    let mut bytes = Vec::new();
    for i in 0.. {
        bytes.clear();
        // A case is no larger than an event: stdin fed without a newline (`/dev/zero`)
        // must not make explain read until memory runs out.
        (&mut stdin)
            .take(MAX_EVENT_BYTES + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        if bytes.is_empty() {
            break;
        }
        if bytes.len() as u64 > MAX_EVENT_BYTES {
            return Err(format!(
                "stdin line {}: more than {} MiB; a case is one JSON object on one line",
                i + 1,
                MAX_EVENT_BYTES >> 20
            ));
        }
        let line = std::str::from_utf8(&bytes)
            .map_err(|e| format!("cannot read stdin: line {}: not UTF-8: {e}", i + 1))?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let result = batch_case(line, base, dirs, &mut policies);
        let json = match result {
            Ok(explanation) => terminal_json(&explanation),
            Err(error) => {
                any_bad = true;
                terminal_json(&serde_json::json!({ "error": error, "line": i + 1 }))
            }
        }
        .map_err(|e| e.to_string())?;
        writeln!(out, "{json}").map_err(|e| format!("cannot write stdout: {e}"))?;
    }
    out.flush().map_err(|e| format!("cannot write stdout: {e}"))?;
    Ok(if any_bad { ExitCode::from(EXIT_BAD_INPUT) } else { ExitCode::SUCCESS })
}

pub(crate) fn batch_case(
    line: &str,
    base: &ClientIpConfig,
    dirs: Dirs<'_>,
    policies: &mut HashMap<String, Result<Policy, String>>,
) -> Result<Explanation, String> {
    let case: Case = serde_json::from_str(line).map_err(|e| format!("invalid case: {e}"))?;
    let strategy: Vec<String> = match case.strategy {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    let trust = case.trust.unwrap_or_default();
    let key = format!("{trust:?}|{strategy:?}|{:?}", case.from);
    let policy = policies
        .entry(key)
        .or_insert_with(|| {
            let mut config = base.clone();
            config
                .apply_flags(&Flags {
                    trust: &trust,
                    strategy: &strategy,
                    from: case.from.as_deref(),
                    proxy_protocol_from: &[],
                })
                .map_err(|e| e.to_string())?;
            build(&config, dirs)
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let link = PrivateLink {
        aws_vpce_id: case.aws_vpce_id.map(Into::into),
        azure_link_id: case.azure_link_id,
    };
    let conn = connection(&case.peer, case.proxy_source.as_deref(), link)?;
    let headers = case
        .headers
        .iter()
        .map(|(name, value)| parse_header_field(name, value.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let query = query_string(case.query.as_deref().unwrap_or_default())
        .map_err(|e| format!("query: {e}"))?;
    Ok(Explanation::new(policy, &conn, &WithQuery::new(headers.as_slice(), query.as_bytes())))
}
