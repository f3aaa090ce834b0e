//! Reading a topology: one line (`client 198.51.100.7 -> cloudfront -> alb(append) -> app`)
//! or a TOML file. Both end in the same [`Topology`]; every error names the position (hop
//! number, option) and how to write it instead.

use std::net::IpAddr;

use serde::Deserialize;
use trueip::Cidr;

use super::model::{
    AlbXff, ApiSource, Client, Hop, Kind, RealIp, RealIpHeader, SendProxy, Topology,
};

/// The most hops between the client and the app.
pub(crate) const MAX_HOPS: usize = 16;
/// The longest one-line topology, in bytes.
pub(crate) const MAX_LINE: usize = 4096;
/// The most header lines a client may forge.
pub(crate) const MAX_FORGED: usize = 16;

const HOP_NAMES: &str = "cloudfront, alb, nlb, nginx, haproxy, cloudflare, fastly, gcp, \
                         azure-front-door, apigw, nat, trueip";

const SYNTAX: &str = "write it as: client ADDR[:PORT] [forges \"Name: value\"]... [query \"k=v\"] \
                      -> HOP[@ADDR][(OPTION, ...)] -> ... -> app";

/// Parses the one-line form.
pub(crate) fn parse_line(line: &str) -> Result<Topology, String> {
    if line.len() > MAX_LINE {
        return Err(format!(
            "the topology is {} bytes long; at most {MAX_LINE} are read",
            line.len()
        ));
    }
    let segments = split_arrows(line)?;
    let Some((client, rest)) = segments.split_first() else {
        return Err(format!("empty topology; {SYNTAX}"));
    };
    let client = parse_client(client.trim())?;
    let Some((app, hops)) = rest.split_last() else {
        return Err(format!("the chain has no app: end it with `-> app`; {SYNTAX}"));
    };
    let app = app.trim();
    if app != "app" {
        return Err(format!(
            "the chain must end with `-> app`, not `{app}` (hop {}); add `-> app` after the last hop",
            rest.len()
        ));
    }
    if hops.len() > MAX_HOPS {
        return Err(format!(
            "{} hops between the client and the app; at most {MAX_HOPS} are simulated",
            hops.len()
        ));
    }
    let mut specs = Vec::with_capacity(hops.len());
    for (i, text) in hops.iter().enumerate() {
        let at = i + 1;
        specs.push(parse_hop_text(text.trim(), at)?);
    }
    build(client, specs, None)
}

/// A hop as written, before addresses are assigned.
struct HopSpec {
    name: String,
    options: Vec<Vec<String>>,
    address: Option<IpAddr>,
    range: Option<Cidr>,
    port: Option<u16>,
    /// As `Hop::label`.
    label: String,
    at: usize,
}

/// Splits on `->` outside double quotes.
fn split_arrows(line: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '-' if !quoted && chars.peek().is_some_and(|&(_, n)| n == '>') => {
                out.push(line.get(start..i).unwrap_or_default());
                chars.next();
                start = i + 2;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("a double quote is not closed; close it: forges \"X-Forwarded-For: 1.2.3.4\""
            .to_string());
    }
    out.push(line.get(start..).unwrap_or_default());
    if let Some(i) = out.iter().position(|s| s.trim().is_empty()) {
        return Err(format!(
            "hop {i} is empty (two arrows in a row, or an arrow at an end); {SYNTAX}"
        ));
    }
    Ok(out)
}

/// Words, with "double-quoted strings" as one word (quotes removed).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            c => {
                current.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(current);
    }
    out
}

fn parse_client(text: &str) -> Result<Client, String> {
    let words = words(text);
    let mut it = words.iter();
    if it.next().map(String::as_str) != Some("client") {
        return Err(format!("the chain must start with `client ADDR`; {SYNTAX}"));
    }
    let Some(addr) = it.next() else {
        return Err("`client` needs an address: client 198.51.100.7".to_string());
    };
    let (address, port) = parse_addr_port(addr).map_err(|e| format!("client: {e}"))?;
    let mut client = Client {
        address,
        port: port.unwrap_or(DEFAULT_CLIENT_PORT),
        forges: Vec::new(),
        query: None,
    };
    while let Some(word) = it.next() {
        match word.as_str() {
            "forges" => {
                let Some(line) = it.next() else {
                    return Err("client: `forges` needs a header line in double quotes: forges \"X-Forwarded-For: 1.2.3.4\"".to_string());
                };
                client.forges.push(parse_forged(line)?);
            }
            "query" => {
                let Some(q) = it.next() else {
                    return Err(
                        "client: `query` needs a query string: query \"ip=1.2.3.4\"".to_string()
                    );
                };
                client.query = Some(check_query(q)?);
            }
            other => {
                return Err(format!(
                    "client: unknown word `{other}`; after the address come `forges \"Name: value\"` and `query \"k=v\"`"
                ));
            }
        }
    }
    check_forges(&client.forges)?;
    Ok(client)
}

fn check_forges(forges: &[(String, String)]) -> Result<(), String> {
    if forges.len() > MAX_FORGED {
        return Err(format!("client: {} forged header lines; at most {MAX_FORGED}", forges.len()));
    }
    Ok(())
}

fn check_query(q: &str) -> Result<String, String> {
    if q.len() > 1024 || q.chars().any(|c| c.is_control() || c == ' ' || c == '#') {
        return Err(format!(
            "client: query {q:?} must be at most 1024 bytes, without spaces, `#` or control characters"
        ));
    }
    Ok(q.trim_start_matches('?').to_owned())
}

/// `Name: value`, checked as `trueip explain --header` checks it.
fn parse_forged(line: &str) -> Result<(String, String), String> {
    let (name, value) = trueip::headers::parse_header_line(line)
        .map_err(|e| format!("client: forged header {line:?}: {e}"))?;
    if name.as_str().eq_ignore_ascii_case("host") {
        return Err("client: forging Host is not simulated; forge a client-IP header".to_string());
    }
    // The name as written (the parser's FieldName is lower case): proxies keep the case.
    let written = line.split_once(':').map_or(name.as_str(), |(n, _)| n);
    Ok((written.to_string(), value.to_string()))
}

/// `IP`, `IP:port`, `[v6]:port`.
fn parse_addr_port(text: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    Err(format!("bad address `{text}`: write an IP address (198.51.100.7, 2001:db8::7) or IP:port"))
}

/// `name[@ADDR][(options)]`.
fn parse_hop_text(text: &str, at: usize) -> Result<HopSpec, String> {
    let (head, options) = match text.split_once('(') {
        Some((head, rest)) => {
            let Some(inner) = rest.trim_end().strip_suffix(')') else {
                return Err(format!(
                    "hop {at} `{text}`: the options are not closed; write {}(option, ...)",
                    head.trim()
                ));
            };
            if inner.contains('(') || inner.contains(')') {
                return Err(format!(
                    "hop {at} `{text}`: one pair of parentheses per hop; separate options with commas"
                ));
            }
            let options: Vec<Vec<String>> =
                inner.split(',').map(words).filter(|w| !w.is_empty()).collect();
            (head.trim(), options)
        }
        None => (text, Vec::new()),
    };
    let (name, address) = match head.split_once('@') {
        Some((name, addr)) => {
            let ip = addr.trim().parse::<IpAddr>().map_err(|_| {
                format!(
                    "hop {at} `{text}`: bad address `{}`; write {}@10.50.3.9",
                    addr.trim(),
                    name.trim()
                )
            })?;
            (name.trim(), Some(ip))
        }
        None => (head, None),
    };
    Ok(HopSpec {
        name: name.to_owned(),
        options,
        address,
        range: None,
        port: None,
        label: trueip::shown::terminal(text).to_string(),
        at,
    })
}

/// The topology file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    client: FileClient,
    #[serde(default)]
    hop: Vec<FileHop>,
    app: Option<FileApp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClient {
    address: String,
    port: Option<u16>,
    #[serde(default)]
    forges: Vec<String>,
    query: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHop {
    kind: String,
    address: Option<String>,
    range: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApp {
    address: Option<String>,
    port: Option<u16>,
}

/// The most bytes of a topology file read.
pub(crate) const MAX_FILE: usize = 64 * 1024;

/// Parses the TOML form.
pub(crate) fn parse_toml(text: &str) -> Result<Topology, String> {
    if text.len() > MAX_FILE {
        return Err(format!("the topology file is larger than {MAX_FILE} bytes"));
    }
    let file: File = toml::from_str(text).map_err(|e| {
        format!(
            "{}; a topology file has [client] (address, port, forges, query), [[hop]] tables \
             (kind, address, range, port, options) in order from the client, and [app] \
             (address, port)",
            e.message().trim()
        )
    })?;
    let (address, port) =
        parse_addr_port(&file.client.address).map_err(|e| format!("[client] address: {e}"))?;
    let mut client = Client {
        address,
        port: file.client.port.or(port).unwrap_or(DEFAULT_CLIENT_PORT),
        forges: Vec::new(),
        query: None,
    };
    for (i, line) in file.client.forges.iter().enumerate() {
        client.forges.push(parse_forged(line).map_err(|e| format!("[client] forges[{i}]: {e}"))?);
    }
    check_forges(&client.forges)?;
    if let Some(q) = &file.client.query {
        client.query = Some(check_query(q)?);
    }
    if file.hop.len() > MAX_HOPS {
        return Err(format!("{} [[hop]] tables; at most {MAX_HOPS} are simulated", file.hop.len()));
    }
    let mut specs = Vec::with_capacity(file.hop.len());
    for (i, hop) in file.hop.iter().enumerate() {
        let at = i + 1;
        let address = hop
            .address
            .as_deref()
            .map(|a| {
                a.parse::<IpAddr>().map_err(|_| {
                    format!(
                        "[[hop]] {at} ({}): bad address `{a}`; write address = \"10.50.3.9\"",
                        hop.kind
                    )
                })
            })
            .transpose()?;
        let range = hop
            .range
            .as_deref()
            .map(|r| {
                r.parse::<Cidr>().map_err(|e| {
                    format!(
                        "[[hop]] {at} ({}): bad range `{r}`: {e}; write range = \"10.50.0.0/16\"",
                        hop.kind
                    )
                })
            })
            .transpose()?;
        let options = hop.options.iter().map(|o| words(o)).filter(|w| !w.is_empty()).collect();
        if hop.kind == "app" || hop.kind == "client" {
            return Err(format!(
                "[[hop]] {at}: kind = \"{}\" is not a hop; the client is [client], the app is [app]",
                hop.kind
            ));
        }
        specs.push(HopSpec {
            name: hop.kind.clone(),
            options,
            address,
            range,
            port: hop.port,
            label: if hop.options.is_empty() {
                trueip::shown::terminal(&hop.kind).to_string()
            } else {
                trueip::shown::terminal(&format!("{}({})", hop.kind, hop.options.join(", ")))
                    .to_string()
            },
            at,
        });
    }
    let app = match &file.app {
        Some(app) => {
            let address = app
                .address
                .as_deref()
                .map(|a| {
                    a.parse::<IpAddr>().map_err(|_| format!("[app] address: bad address `{a}`"))
                })
                .transpose()?;
            Some((address, app.port))
        }
        None => None,
    };
    build(client, specs, app)
}

const DEFAULT_CLIENT_PORT: u16 = 51000;

/// Where a hop of each kind sits by default: an address and the range that vouches for it.
/// CDN ranges are stand-ins from each provider's published list (CloudFront 13.32.0.0/15,
/// Cloudflare 172.64.0.0/13, Fastly 151.101.0.0/16, Google Front Ends 35.191.0.0/16, Azure
/// Front Door's backend range 147.243.0.0/16); in-VPC hops sit in 10.50.0.0/16; a NAT in
/// TEST-NET-3. The n-th hop of a kind takes the n-th address.
fn placement(name: &str) -> Option<([u8; 4], &'static str, u16)> {
    Some(match name {
        "cloudfront" => ([13, 32, 0, 10], "13.32.0.0/15", 443),
        "alb" => ([10, 50, 1, 10], "10.50.0.0/16", 443),
        "nlb" => ([10, 50, 2, 10], "10.50.0.0/16", 443),
        "nginx" => ([10, 50, 3, 10], "10.50.0.0/16", 80),
        "haproxy" => ([10, 50, 4, 10], "10.50.0.0/16", 80),
        "apigw" => ([10, 50, 5, 10], "10.50.0.0/16", 443),
        "trueip" => ([10, 50, 6, 10], "10.50.0.0/16", 8080),
        "nat" => ([203, 0, 113, 1], "203.0.113.0/24", 0),
        "cloudflare" => ([172, 64, 0, 10], "172.64.0.0/13", 443),
        "fastly" => ([151, 101, 0, 10], "151.101.0.0/16", 443),
        "gcp" => ([35, 191, 0, 10], "35.191.0.0/16", 443),
        "azure-front-door" | "afd" => ([147, 243, 0, 10], "147.243.0.0/16", 443),
        _ => return None,
    })
}

const APP_ADDRESS: [u8; 4] = [10, 50, 9, 10];
const APP_PORT: u16 = 8080;

fn build(
    client: Client,
    specs: Vec<HopSpec>,
    app: Option<(Option<IpAddr>, Option<u16>)>,
) -> Result<Topology, String> {
    let mut hops = Vec::with_capacity(specs.len());
    let mut seen: Vec<&'static str> = Vec::new();
    for spec in specs {
        let at = spec.at;
        let Some((base, range, port)) = placement(&spec.name) else {
            return Err(match spec.name.as_str() {
                "app" => format!(
                    "hop {at}: `app` must be the last element of the chain; remove the hops after it"
                ),
                "client" => format!("hop {at}: `client` may only start the chain"),
                other => format!("hop {at}: unknown hop `{other}`; the hops are {HOP_NAMES}"),
            });
        };
        let kind = parse_kind(&spec.name, &spec.options)
            .map_err(|e| format!("hop {at} `{}`: {e}", spec.label))?;
        let nth = seen.iter().filter(|&&n| n == kind.name()).count();
        seen.push(kind.name());
        let [a, b, c, d] = base;
        let default = IpAddr::from([a, b, c, d.saturating_add(u8::try_from(nth).unwrap_or(0))]);
        let address = spec.address.unwrap_or(default);
        let range = match spec.range {
            Some(r) => r,
            None if spec.address.is_some() || matches!(kind, Kind::Nat) => Cidr::host(address),
            None => range.parse::<Cidr>().map_err(|e| e.to_string())?,
        };
        if !range.contains(address) {
            return Err(format!(
                "hop {at} `{}`: its address {address} is outside its range {range}; set range to one that holds it",
                spec.label
            ));
        }
        hops.push(Hop { kind, address, range, port: spec.port.unwrap_or(port), label: spec.label });
    }
    let (app_address, app_port) = app.unwrap_or_default();
    Ok(Topology {
        client,
        hops,
        app_address: app_address.unwrap_or(IpAddr::from(APP_ADDRESS)),
        app_port: app_port.unwrap_or(APP_PORT),
    })
}

/// One option: its words joined by spaces, for messages.
fn show(option: &[String]) -> String {
    option.join(" ")
}

fn no_args(option: &[String]) -> Result<(), String> {
    match option {
        [_] => Ok(()),
        _ => Err(format!("option `{}` takes no value", show(option))),
    }
}

fn one_arg(option: &[String]) -> Result<&str, String> {
    match option {
        // A value becomes part of a header line or a config file, which hold no line
        // break or other control character.
        [_, value] if value.chars().any(char::is_control) => {
            Err(format!("option `{}` holds a control character", show(option)))
        }
        [_, value] => Ok(value),
        _ => Err(format!("option `{}` takes one value", show(option))),
    }
}

fn unknown(option: &[String], known: &str) -> String {
    format!("unknown option `{}`; the options here are: {known}", show(option))
}

/// A hop's kind from its name and options.
pub(crate) fn parse_kind(name: &str, options: &[Vec<String>]) -> Result<Kind, String> {
    let heads = || options.iter().filter_map(|o| o.first().map(String::as_str));
    match name {
        "cloudfront" => {
            let mut viewer_address = false;
            for o in options {
                match o.first().map(String::as_str) {
                    Some("viewer-address") => {
                        no_args(o)?;
                        viewer_address = true;
                    }
                    _ => {
                        return Err(unknown(o, "viewer-address (send CloudFront-Viewer-Address)"));
                    }
                }
            }
            Ok(Kind::CloudFront { viewer_address })
        }
        "alb" => {
            let mut xff = None;
            let (mut client_port, mut https) = (false, true);
            for o in options {
                let mode = match o.first().map(String::as_str) {
                    Some("append") => Some(AlbXff::Append),
                    Some("preserve") => Some(AlbXff::Preserve),
                    Some("remove") => Some(AlbXff::Remove),
                    Some("client-port") => {
                        no_args(o)?;
                        client_port = true;
                        None
                    }
                    Some("http") => {
                        no_args(o)?;
                        https = false;
                        None
                    }
                    _ => {
                        return Err(unknown(
                            o,
                            "append | preserve | remove (xff_header_processing.mode), client-port, http (an HTTP listener)",
                        ));
                    }
                };
                if let Some(m) = mode {
                    no_args(o)?;
                    if xff.replace(m).is_some() {
                        return Err("give one of append, preserve, remove".to_string());
                    }
                }
            }
            Ok(Kind::Alb { xff: xff.unwrap_or(AlbXff::Append), client_port, https })
        }
        "nlb" => {
            let (mut proxy_v2, mut preserve_client_ip) = (false, false);
            for o in options {
                match o.first().map(String::as_str) {
                    Some("proxy-v2") => proxy_v2 = true,
                    Some("preserve-client-ip") => preserve_client_ip = true,
                    _ => return Err(unknown(o, "proxy-v2, preserve-client-ip")),
                }
                no_args(o)?;
            }
            Ok(Kind::Nlb { proxy_v2, preserve_client_ip })
        }
        "nginx" => parse_nginx(options),
        "haproxy" => {
            let (mut http, mut forwardfor, mut send_proxy, mut accept_proxy) =
                (true, None, None, false);
            for o in options {
                match o.first().map(String::as_str) {
                    Some("forwardfor") => forwardfor = Some(true),
                    Some("no-forwardfor") => forwardfor = Some(false),
                    Some("tcp") => http = false,
                    Some("send-proxy") => send_proxy = Some(SendProxy::V1),
                    Some("send-proxy-v2") => send_proxy = Some(SendProxy::V2),
                    Some("accept-proxy") => accept_proxy = true,
                    _ => {
                        return Err(unknown(
                            o,
                            "forwardfor (default in http mode), no-forwardfor, tcp (mode tcp), send-proxy, send-proxy-v2, accept-proxy",
                        ));
                    }
                }
                no_args(o)?;
            }
            if !http && forwardfor == Some(true) {
                return Err(
                    "`forwardfor` needs mode http; remove `tcp` or `forwardfor`".to_string()
                );
            }
            Ok(Kind::Haproxy {
                http,
                forwardfor: http && forwardfor.unwrap_or(true),
                send_proxy,
                accept_proxy,
            })
        }
        "cloudflare" | "fastly" | "nat" => {
            if let Some(o) = options.first() {
                return Err(format!("`{name}` takes no options (got `{}`)", show(o)));
            }
            Ok(match name {
                "cloudflare" => Kind::Cloudflare,
                "fastly" => Kind::Fastly,
                _ => Kind::Nat,
            })
        }
        "gcp" => {
            let mut lb_ip = IpAddr::from([34, 120, 0, 10]);
            for o in options {
                match o.first().map(String::as_str) {
                    Some("lb-ip") => {
                        let v = one_arg(o)?;
                        lb_ip = v.parse().map_err(|_| {
                            format!("lb-ip: bad address `{v}`; write lb-ip 34.120.0.10")
                        })?;
                    }
                    _ => return Err(unknown(o, "lb-ip ADDR (the forwarding rule's address)")),
                }
            }
            Ok(Kind::Gcp { lb_ip })
        }
        "azure-front-door" | "afd" => {
            let mut fdid = None;
            for o in options {
                match o.first().map(String::as_str) {
                    Some("fdid") => fdid = Some(one_arg(o)?.to_owned()),
                    _ => return Err(unknown(o, "fdid ID (the profile's X-Azure-FDID)")),
                }
            }
            Ok(Kind::AzureFrontDoor { fdid })
        }
        "apigw" => {
            let mut source = None;
            let mut accept_proxy = false;
            for o in options {
                let s = match o.first().map(String::as_str) {
                    Some("header") => ApiSource::Header(header_name(one_arg(o)?)?),
                    Some("query") => ApiSource::Query(one_arg(o)?.to_owned()),
                    Some("proxy") => {
                        no_args(o)?;
                        accept_proxy = true;
                        ApiSource::Proxy
                    }
                    Some("peer") => {
                        no_args(o)?;
                        ApiSource::Peer
                    }
                    _ => return Err(unknown(o, "header NAME | query NAME | proxy | peer")),
                };
                if source.replace(s).is_some() {
                    return Err("give one client source: header NAME, query NAME, proxy or peer"
                        .to_string());
                }
            }
            Ok(Kind::ApiGateway { source: source.unwrap_or(ApiSource::Peer), accept_proxy })
        }
        "trueip" => {
            let (mut trusted, mut strategy, mut pp) = (Vec::new(), None, Vec::new());
            for o in options {
                match o.split_first() {
                    Some((head, values)) if head == "trust" && !values.is_empty() => {
                        for v in values {
                            v.parse::<trueip::TrustSpec>()
                                .map_err(|e| format!("trust {v}: {e}"))?;
                        }
                        trusted.extend(values.iter().cloned());
                    }
                    Some((head, _)) if head == "strategy" => {
                        let v = one_arg(o)?;
                        v.parse::<trueip::StrategySpec>()
                            .map_err(|e| format!("strategy {v}: {e}"))?;
                        strategy = Some(v.to_owned());
                    }
                    Some((head, values)) if head == "proxy-protocol-from" && !values.is_empty() => {
                        for v in values {
                            v.parse::<trueip::TrustSpec>()
                                .map_err(|e| format!("proxy-protocol-from {v}: {e}"))?;
                        }
                        pp.extend(values.iter().cloned());
                    }
                    _ => {
                        return Err(unknown(
                            o,
                            "trust CIDR..., strategy NAME, proxy-protocol-from CIDR...",
                        ));
                    }
                }
            }
            Ok(Kind::Trueip { trusted, strategy, proxy_protocol_from: pp })
        }
        _ => {
            let _ = heads;
            Err(format!("unknown hop `{name}`; the hops are {HOP_NAMES}"))
        }
    }
}

fn header_name(name: &str) -> Result<String, String> {
    trueip::FieldName::new(name)
        .map(|n| n.as_str().to_owned())
        .map_err(|e| format!("header name `{name}`: {e}"))
}

fn parse_nginx(options: &[Vec<String>]) -> Result<Kind, String> {
    let (mut append, mut x_real_ip, mut pass, mut accept_proxy) = (false, false, false, false);
    let mut from: Vec<Cidr> = Vec::new();
    let mut header = None;
    let mut recursive = false;
    let mut realip = false;
    for o in options {
        match o.split_first() {
            Some((head, [])) if head == "append" => append = true,
            Some((head, [])) if head == "x-real-ip" => x_real_ip = true,
            Some((head, [])) if head == "pass" => pass = true,
            Some((head, [])) if head == "proxy-protocol" => accept_proxy = true,
            Some((head, [])) if head == "recursive" => recursive = true,
            Some((head, values)) if head == "realip" => {
                realip = true;
                if values.is_empty() {
                    return Err("realip needs the proxies' ranges: realip 10.50.0.0/16".to_string());
                }
                for v in values {
                    from.push(v.parse::<Cidr>().map_err(|e| {
                        format!("realip: bad range `{v}`: {e}; write realip 10.50.0.0/16")
                    })?);
                }
            }
            Some((head, [value])) if head == "real-ip-header" => {
                header = Some(if value.eq_ignore_ascii_case("proxy_protocol") {
                    RealIpHeader::ProxyProtocol
                } else {
                    RealIpHeader::Header(header_name(value)?)
                });
            }
            _ => {
                return Err(unknown(
                    o,
                    "append, x-real-ip, pass (forward headers unchanged), realip CIDR..., recursive, real-ip-header NAME|proxy_protocol, proxy-protocol (listen ... proxy_protocol)",
                ));
            }
        }
    }
    if pass && (append || x_real_ip) {
        return Err(
            "`pass` forwards headers unchanged; it cannot go with append or x-real-ip".to_string()
        );
    }
    if !realip && (recursive || header.is_some()) {
        return Err("`recursive` and `real-ip-header` need `realip CIDR...`".to_string());
    }
    if header == Some(RealIpHeader::ProxyProtocol) && !accept_proxy {
        return Err(
            "real-ip-header proxy_protocol needs `proxy-protocol` (listen ... proxy_protocol)"
                .to_string(),
        );
    }
    // Neither `pass` nor a header option: Debian's /etc/nginx/proxy_params (X-Real-IP
    // $remote_addr, X-Forwarded-For $proxy_add_x_forwarded_for, X-Forwarded-Proto $scheme).
    let defaults = !pass && !append && !x_real_ip;
    Ok(Kind::Nginx {
        append: append || defaults,
        x_real_ip: x_real_ip || defaults,
        x_forwarded_proto: defaults,
        realip: realip.then(|| RealIp {
            from,
            header: header.unwrap_or(RealIpHeader::Header("X-Forwarded-For".to_string())),
            recursive,
        }),
        accept_proxy,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    const ISSUE: &str = r#"client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> cloudfront -> alb(append) -> nginx(realip 10.50.0.0/16) -> app"#;

    #[test]
    fn the_issue_example_parses() {
        let t = parse_line(ISSUE).unwrap();
        assert_eq!(t.client.address.to_string(), "198.51.100.7");
        assert_eq!(t.client.forges, [("X-Forwarded-For".to_string(), "1.2.3.4".to_string())]);
        let names: Vec<&str> = t.hops.iter().map(|h| h.kind.name()).collect();
        assert_eq!(names, ["cloudfront", "alb", "nginx"]);
        assert_eq!(t.hops[0].address.to_string(), "13.32.0.10");
        assert_eq!(t.hops[0].range.to_string(), "13.32.0.0/15");
        assert_eq!(t.hops[1].address.to_string(), "10.50.1.10");
        match &t.hops[2].kind {
            Kind::Nginx { realip: Some(r), append, x_real_ip, .. } => {
                assert!(!r.recursive && *append && *x_real_ip);
                assert_eq!(r.from[0].to_string(), "10.50.0.0/16");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn addresses_ports_and_repeated_kinds() {
        let t = parse_line(
            "client [2001:db8::7]:4444 -> nginx@10.1.2.3(pass) -> nginx -> nginx -> app",
        )
        .unwrap();
        assert_eq!(t.client.address.to_string(), "2001:db8::7");
        assert_eq!(t.client.port, 4444);
        assert_eq!(t.hops[0].address.to_string(), "10.1.2.3");
        assert_eq!(t.hops[0].range.to_string(), "10.1.2.3/32");
        assert_eq!(t.hops[1].address.to_string(), "10.50.3.11");
        assert_eq!(t.hops[2].address.to_string(), "10.50.3.12");
    }

    #[test]
    fn arrows_inside_quotes_are_text() {
        let t = parse_line(r#"client 192.0.2.1 forges "X-Note: a -> b" -> app"#).unwrap();
        assert_eq!(t.client.forges[0].1, "a -> b");
        assert!(t.hops.is_empty());
    }

    #[test]
    fn every_hop_kind_parses_with_its_options() {
        let line = "client 192.0.2.1 query \"ip=1.2.3.4\" -> cloudflare -> fastly -> gcp(lb-ip 34.1.2.3) \
            -> afd(fdid abc) -> cloudfront(viewer-address) -> alb(preserve, client-port, http) -> nlb(proxy-v2) \
            -> haproxy(accept-proxy, send-proxy) -> apigw(query ip) -> nat -> trueip(trust 10.0.0.0/8, strategy rightmost-untrusted) \
            -> haproxy(tcp, send-proxy-v2) -> nginx(proxy-protocol, realip 10.0.0.0/8 192.0.2.0/24, recursive, real-ip-header proxy_protocol) -> app";
        let t = parse_line(line).unwrap();
        assert_eq!(t.hops.len(), 13);
        assert_eq!(t.client.query.as_deref(), Some("ip=1.2.3.4"));
        assert!(matches!(
            t.hops[5].kind,
            Kind::Alb { xff: AlbXff::Preserve, client_port: true, https: false }
        ));
        assert!(matches!(
            t.hops[11].kind,
            Kind::Haproxy { http: false, forwardfor: false, send_proxy: Some(SendProxy::V2), .. }
        ));
    }

    fn err(line: &str) -> String {
        parse_line(line).unwrap_err()
    }

    #[test]
    fn errors_name_the_position_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            ("client 192.0.2.1 -> nginx", "must end with `-> app`"),
            ("client 192.0.2.1", "no app"),
            ("client 192.0.2.1 -> ngnix -> app", "hop 1: unknown hop `ngnix`"),
            ("client 192.0.2.300 -> app", "bad address `192.0.2.300`"),
            ("client 192.0.2.1 -> alb(apend) -> app", "hop 1 `alb(apend)`: unknown option `apend`"),
            (
                "client 192.0.2.1 -> alb -> nginx(realip 10.0.0.0/33) -> app",
                "hop 2 `nginx(realip 10.0.0.0/33)`: realip: bad range",
            ),
            ("client 192.0.2.1 -> -> app", "is empty"),
            ("client 192.0.2.1 forges \"X-Forwarded-For 1.2.3.4\" -> app", "forged header"),
            ("client 192.0.2.1 forges \"X-A: b -> app", "double quote is not closed"),
            ("client 192.0.2.1 -> nginx(recursive) -> app", "need `realip CIDR...`"),
            (
                "client 192.0.2.1 -> afd(fdid \"a\nb\") -> app",
                "option `fdid a\nb` holds a control character",
            ),
            (
                "client 192.0.2.1 -> nginx@10.0.0.300 -> app",
                "hop 1 `nginx@10.0.0.300`: bad address",
            ),
            ("client 192.0.2.1 -> app -> nginx -> app", "hop 1: `app` must be the last"),
            ("client 192.0.2.1 -> nat(x) -> app", "takes no options"),
            ("client 192.0.2.1 -> alb(append, remove) -> app", "one of append"),
            ("nginx -> app", "must start with `client"),
            ("client 192.0.2.1 -> haproxy(tcp, forwardfor) -> app", "needs mode http"),
            ("client 192.0.2.1 -> nginx(realip 10.0.0.0/8 -> app", "not closed"),
        ];
        for (line, want) in cases {
            let got = err(line);
            assert!(got.contains(want), "{line}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn bounds_hops_and_length() {
        let many = format!("client 192.0.2.1 {} -> app", "-> nat ".repeat(MAX_HOPS + 1));
        assert!(err(&many).contains("at most 16"));
        let ok = format!("client 192.0.2.1 {}-> app", "-> nat ".repeat(MAX_HOPS));
        assert_eq!(parse_line(&ok).unwrap().hops.len(), MAX_HOPS);
        assert!(err(&"x".repeat(MAX_LINE + 1)).contains("at most 4096"));
    }

    #[test]
    fn toml_matches_the_line_and_overrides_addresses() {
        let t = parse_toml(
            r#"
            [client]
            address = "198.51.100.7"
            forges = ["X-Forwarded-For: 1.2.3.4"]
            [[hop]]
            kind = "cloudfront"
            [[hop]]
            kind = "alb"
            options = ["append"]
            [[hop]]
            kind = "nginx"
            address = "10.60.0.5"
            range = "10.60.0.0/16"
            options = ["realip 10.50.0.0/16"]
            [app]
            address = "10.60.0.9"
            port = 3000
            "#,
        )
        .unwrap();
        let line = parse_line(ISSUE).unwrap();
        assert_eq!(t.client, line.client);
        assert_eq!(t.hops[0], line.hops[0]);
        assert_eq!(t.hops[2].kind, line.hops[2].kind);
        assert_eq!(t.hops[2].address.to_string(), "10.60.0.5");
        assert_eq!(t.app_port, 3000);
    }

    #[test]
    fn toml_errors_name_the_table() {
        let e = parse_toml("[client]\naddress = \"1.2.3\"\n").unwrap_err();
        assert!(e.contains("[client] address"), "{e}");
        let e = parse_toml("[client]\naddress = \"192.0.2.1\"\n[[hop]]\nkind = \"nginx\"\nrange = \"10.0.0.0/8\"\naddress = \"11.0.0.1\"\n").unwrap_err();
        assert!(e.contains("outside its range"), "{e}");
        let e =
            parse_toml("[client]\naddress = \"192.0.2.1\"\n[[hop]]\nkind = \"app\"\n").unwrap_err();
        assert!(e.contains("[[hop]] 1"), "{e}");
        let e = parse_toml("[client]\naddres = \"192.0.2.1\"\n").unwrap_err();
        assert!(e.contains("addres"), "{e}");
    }
}
