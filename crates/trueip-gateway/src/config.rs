//! The gateway's TOML file and flags, checked once into typed [`Settings`].
//!
//! Every key is documented with its default in `trueip.example.toml` at the root of
//! the repository; the defaults live here, in the `Default` impls and `or` calls of
//! [`Settings::from_file`]. Flags replace config values (never extend them).
//!
//! Errors name the key and the fix: `invalid proxy_protocol "v3" in listen[1].proxy_protocol
//! (hint: use off, v1, v2 or any)`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use trueip::config::{ClientIpConfig, Strategies, StrategyEntry};
use trueip::{ConfigError, FieldName, Policy, StrategySpec};

/// The whole file, as written. Unknown keys are errors, so a typo never goes unnoticed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// `[client_ip]`: the policy, shared with `trueip explain --config`.
    #[serde(default)]
    pub(crate) client_ip: ClientIpConfig,
    /// `[[listen]]`: one table per listening socket.
    #[serde(default)]
    pub(crate) listen: Vec<ListenConfig>,
    /// `[upstream]`: where requests go; absent `url` means the built-in whoami page.
    #[serde(default)]
    pub(crate) upstream: UpstreamConfig,
    /// `[headers]`: which forwarding headers the upstream receives.
    #[serde(default)]
    pub(crate) headers: HeadersConfig,
    /// `[limits]`: sizes and timeouts.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    /// `[admin]`: health and metrics endpoints.
    #[serde(default)]
    pub(crate) admin: AdminConfig,
    /// `[log]`: diagnostics and the access log.
    #[serde(default)]
    pub(crate) log: LogConfig,
}

/// One `[[listen]]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenConfig {
    /// `127.0.0.1:8080`, `[::]:443`.
    pub(crate) address: String,
    /// `http` (default) or `tcp`.
    #[serde(default)]
    pub(crate) mode: Option<String>,
    /// `off` (default), `v1`, `v2` or `any`.
    #[serde(default)]
    pub(crate) proxy_protocol: Option<String>,
    /// TLS termination from PEM files.
    #[serde(default)]
    pub(crate) tls: Option<TlsConfig>,
    /// TCP mode: `host:port` to connect to.
    #[serde(default)]
    pub(crate) upstream: Option<String>,
    /// TCP mode: the PROXY header sent to the upstream: `v2` (default), `v1` or `off`.
    #[serde(default)]
    pub(crate) send_proxy_protocol: Option<String>,
}

/// `tls = { cert = "...", key = "..." }`
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub(crate) cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: PathBuf,
}

/// `[upstream]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamConfig {
    /// `http://host:port` or `unix:/path/to.sock`; absent: the whoami page.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// Default 5s.
    #[serde(default)]
    pub(crate) connect_timeout: Option<DurationValue>,
    /// Time until the upstream's response headers. Default 60s.
    #[serde(default)]
    pub(crate) response_timeout: Option<DurationValue>,
    /// Longest pause between two pieces of a body, either way. Default 60s.
    #[serde(default)]
    pub(crate) body_timeout: Option<DurationValue>,
    /// Idle pooled connections are closed after this. Default 90s.
    #[serde(default)]
    pub(crate) pool_idle_timeout: Option<DurationValue>,
    /// Idle pooled connections kept. Default 64.
    #[serde(default)]
    pub(crate) pool_max_idle: Option<usize>,
    /// Idle pooled connections kept in all, every pool together. Default 1024.
    #[serde(default)]
    pub(crate) pool_max_idle_total: Option<usize>,
    /// `off` (default), `v1` or `v2`: a PROXY header opening every upstream connection.
    #[serde(default)]
    pub(crate) proxy_protocol: Option<String>,
}

/// `[headers]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeadersConfig {
    /// Default true.
    #[serde(default)]
    pub(crate) x_real_ip: Option<bool>,
    /// `replace` (default), `append` or `off`.
    #[serde(default)]
    pub(crate) x_forwarded_for: Option<String>,
    /// `replace` (default), `append` or `off`.
    #[serde(default)]
    pub(crate) forwarded: Option<String>,
    /// Default true.
    #[serde(default)]
    pub(crate) x_forwarded_proto: Option<bool>,
    /// Default true.
    #[serde(default)]
    pub(crate) x_forwarded_host: Option<bool>,
    /// Default true.
    #[serde(default)]
    pub(crate) x_forwarded_port: Option<bool>,
    /// More header names to treat as client-IP headers.
    #[serde(default)]
    pub(crate) strip: Vec<String>,
    /// Client-IP headers of the built-in table to pass from any client, on purpose.
    #[serde(default)]
    pub(crate) keep: Vec<String>,
}

/// `[limits]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsConfig {
    /// Default 4096.
    #[serde(default)]
    pub(crate) max_connections: Option<usize>,
    /// Default 32768; at least 8192.
    #[serde(default)]
    pub(crate) max_header_bytes: Option<usize>,
    /// Default 100.
    #[serde(default)]
    pub(crate) max_headers: Option<usize>,
    /// Default 10s.
    #[serde(default)]
    pub(crate) header_read_timeout: Option<DurationValue>,
    /// Default 60s.
    #[serde(default)]
    pub(crate) idle_timeout: Option<DurationValue>,
    /// Default 10s.
    #[serde(default)]
    pub(crate) tls_handshake_timeout: Option<DurationValue>,
    /// Default 5s.
    #[serde(default)]
    pub(crate) proxy_protocol_timeout: Option<DurationValue>,
    /// Default 512.
    #[serde(default)]
    pub(crate) proxy_protocol_max_bytes: Option<usize>,
    /// Default 1024.
    #[serde(default)]
    pub(crate) backlog: Option<u32>,
    /// Default 30s.
    #[serde(default)]
    pub(crate) shutdown_timeout: Option<DurationValue>,
    /// Default: the number of CPUs.
    #[serde(default)]
    pub(crate) workers: Option<usize>,
    /// Default true.
    #[serde(default)]
    pub(crate) lean_http1: Option<bool>,
}

/// `[admin]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminConfig {
    /// Default `/.trueip`; `""` turns the in-band endpoints off.
    #[serde(default)]
    pub(crate) prefix: Option<String>,
    /// A separate plain-HTTP listener for `/healthz` and `/metrics`. Default: none.
    #[serde(default)]
    pub(crate) listen: Option<String>,
}

/// `[log]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub(crate) format: Option<String>,
    /// Default `info`; an env-filter directive (`RUST_LOG` wins when set).
    #[serde(default)]
    pub(crate) level: Option<String>,
    /// Default true.
    #[serde(default)]
    pub(crate) access_log: Option<bool>,
}

/// A duration: `"250ms"`, `"10s"`, `"2m"`, `"1h"`, or a number of seconds.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "DurationText")]
pub(crate) struct DurationValue(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

impl TryFrom<DurationText> for DurationValue {
    type Error = String;
    fn try_from(value: DurationText) -> Result<Self, String> {
        match value {
            DurationText::Seconds(s) => Ok(DurationValue(Duration::from_secs(s))),
            DurationText::Text(t) => parse_duration(&t).map(DurationValue),
        }
    }
}

/// Parses `250ms`, `10s`, `2m`, `1h` (one number, one unit).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let hint =
        || format!("invalid duration {text:?} (write e.g. \"250ms\", \"10s\", \"2m\", \"1h\")");
    let n: u64 = number.parse().map_err(|_| hint())?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(hint()),
    }
}

// ---------------------------------------------------------------------------
// Typed settings

/// What a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// HTTP/1.1 and HTTP/2: resolve, clean headers, forward (or answer whoami).
    Http,
    /// Bytes: resolve from the peer or PROXY header, announce the client upstream, copy.
    Tcp,
}

/// Which PROXY protocol versions a listener expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyProtocol {
    /// No header expected.
    Off,
    /// Text header only.
    V1,
    /// Binary header only.
    V2,
    /// Either.
    Any,
}

impl FromStr for ProxyProtocol {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "false" => Ok(ProxyProtocol::Off),
            "v1" => Ok(ProxyProtocol::V1),
            "v2" => Ok(ProxyProtocol::V2),
            "any" => Ok(ProxyProtocol::Any),
            _ => Err(
                ConfigError::new(format!("invalid PROXY protocol mode {text:?}"))
                    .hint("use off, v1, v2 or any"),
            ),
        }
    }
}

/// The PROXY header the gateway sends to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendProxy {
    /// None.
    Off,
    /// `PROXY TCP4 ...\r\n`
    V1,
    /// The binary header.
    V2,
}

impl FromStr for SendProxy {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "false" => Ok(SendProxy::Off),
            "v1" => Ok(SendProxy::V1),
            "v2" => Ok(SendProxy::V2),
            _ => Err(
                ConfigError::new(format!("invalid PROXY protocol version {text:?}"))
                    .hint("use off, v1 or v2"),
            ),
        }
    }
}

/// One checked listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListenerSettings {
    /// Where to bind.
    pub(crate) address: SocketAddr,
    /// HTTP or TCP.
    pub(crate) mode: Mode,
    /// PROXY header expected from senders in `client_ip.proxy_protocol_from`.
    pub(crate) proxy_protocol: ProxyProtocol,
    /// TLS termination.
    pub(crate) tls: Option<TlsConfig>,
    /// TCP mode: the upstream `host:port`.
    pub(crate) tcp_upstream: Option<String>,
    /// TCP mode: the PROXY header sent upstream.
    pub(crate) send_proxy: SendProxy,
}

/// Where HTTP requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamTarget {
    /// `http://host:port`: the authority (`host:port`).
    Tcp(String),
    /// `unix:/path`.
    Unix(PathBuf),
}

/// The checked `[upstream]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UpstreamSettings {
    /// The target.
    pub(crate) target: UpstreamTarget,
    /// Connecting, TLS-free.
    pub(crate) connect_timeout: Duration,
    /// Until response headers.
    pub(crate) response_timeout: Duration,
    /// Between body frames.
    pub(crate) body_timeout: Duration,
    /// Pool idle timeout.
    pub(crate) pool_idle_timeout: Duration,
    /// Pool size per key (per worker; with PROXY headers, per client connection).
    pub(crate) pool_max_idle: usize,
    /// Idle connections in all pools together.
    pub(crate) pool_max_idle_total: usize,
    /// PROXY header to the upstream.
    pub(crate) proxy_protocol: SendProxy,
}

/// `replace`, `append` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListMode {
    /// The trusted chain and the client only: whatever the client wrote left of it is dropped.
    Replace,
    /// The received list (if it came through a trusted hop), plus the peer, as nginx does.
    Append,
    /// Not set by the gateway (still stripped when untrusted).
    Off,
}

impl FromStr for ListMode {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "replace" => Ok(ListMode::Replace),
            "append" => Ok(ListMode::Append),
            "off" | "false" => Ok(ListMode::Off),
            _ => Err(ConfigError::new(format!("invalid mode {text:?}"))
                .hint("use replace, append or off")),
        }
    }
}

/// The checked `[headers]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeaderSettings {
    /// Set `X-Real-IP`.
    pub(crate) x_real_ip: bool,
    /// `X-Forwarded-For` mode.
    pub(crate) x_forwarded_for: ListMode,
    /// `Forwarded` mode.
    pub(crate) forwarded: ListMode,
    /// Set `X-Forwarded-Proto`.
    pub(crate) x_forwarded_proto: bool,
    /// Set `X-Forwarded-Host`.
    pub(crate) x_forwarded_host: bool,
    /// Set `X-Forwarded-Port`.
    pub(crate) x_forwarded_port: bool,
    /// Extra client-IP header names (from `strip` and from `header:NAME` strategies), lower case.
    pub(crate) extra: Vec<FieldName>,
    /// Names of the built-in table (`trueip::headers::names::FORWARDING`) passed from any
    /// client (`keep`), lower case.
    pub(crate) keep: Vec<FieldName>,
    /// The origin secret header, removed before forwarding.
    pub(crate) origin_secret: Option<FieldName>,
}

/// The checked `[limits]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Open connections, all listeners together.
    pub(crate) max_connections: usize,
    /// Request head size (431 above).
    pub(crate) max_header_bytes: usize,
    /// Header count (431 above).
    pub(crate) max_headers: usize,
    /// Time to read a request head.
    pub(crate) header_read_timeout: Duration,
    /// No bytes either way and no request in flight for this long closes a connection.
    pub(crate) idle_timeout: Duration,
    /// TLS handshake.
    pub(crate) tls_handshake_timeout: Duration,
    /// PROXY header read.
    pub(crate) proxy_protocol_timeout: Duration,
    /// PROXY header size.
    pub(crate) proxy_protocol_max_bytes: usize,
    /// Accept queue length of every listening socket.
    pub(crate) backlog: u32,
    /// Worker threads, each with its own event loop, accepting on every listener.
    pub(crate) workers: usize,
    /// Drain time on shutdown.
    pub(crate) shutdown_timeout: Duration,
}

/// The checked `[admin]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AdminSettings {
    /// `/.trueip` or empty (off).
    pub(crate) prefix: String,
    /// A separate listener.
    pub(crate) listen: Option<SocketAddr>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The checked `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogSettings {
    /// Text or JSON.
    pub(crate) format: LogFormat,
    /// Env-filter directive.
    pub(crate) level: String,
    /// One line per request on stdout.
    pub(crate) access_log: bool,
}

/// Everything checked: nothing here can fail on a request.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The client-IP policy.
    pub(crate) policy: Policy,
    /// Listeners, in file order.
    pub(crate) listeners: Vec<ListenerSettings>,
    /// `None`: whoami.
    pub(crate) upstream: Option<UpstreamSettings>,
    /// Header hygiene.
    pub(crate) headers: HeaderSettings,
    /// Limits.
    pub(crate) limits: Limits,
    /// Admin endpoints.
    pub(crate) admin: AdminSettings,
    /// Logging.
    pub(crate) log: LogSettings,
    /// Connect timeout of TCP-mode listeners (`upstream.connect_timeout`).
    pub(crate) tcp_connect_timeout: Duration,
    /// Whether plain cleartext HTTP/1.1 requests take the lean path ([`crate::http::lean`])
    /// (`limits.lean_http1`, default true); `false` sends every connection through
    /// hyper. Tests drive both paths with the same requests and compare what the
    /// upstream receives (`tests/differential.rs`).
    pub(crate) lean_http1: bool,
}

/// Command-line values that override the file (the flags of `trueip serve`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    /// `--listen` (replaces every `[[listen]]` with a plain HTTP listener).
    pub(crate) listen: Vec<String>,
    /// `--upstream` (`whoami` forces the built-in page).
    pub(crate) upstream: Option<String>,
    /// `--trust`.
    pub(crate) trust: Vec<String>,
    /// `--strategy`.
    pub(crate) strategy: Vec<String>,
    /// `--from`.
    pub(crate) from: Option<String>,
    /// `--proxy-protocol` (every listener).
    pub(crate) proxy_protocol: Option<String>,
    /// `--proxy-protocol-from`.
    pub(crate) proxy_protocol_from: Vec<String>,
}

/// The address `trueip serve` listens on when nothing says otherwise.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Reads and parses a config file.
pub(crate) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
            .hint("check the --config path")
    })?;
    parse_toml(&text).map_err(|e| e.at(path.display().to_string()))
}

/// Parses TOML text.
pub(crate) fn parse_toml(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_string();
        let key = e.span().map(|span| {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!("line {line}")
        });
        let err = ConfigError::new(format!("invalid config: {message}"))
            .hint("see trueip.example.toml for every key and its default");
        match key {
            Some(k) => err.at(k),
            None => err,
        }
    })
}

/// The longest any timeout may be. Every deadline is the clock plus a timeout, and the
/// clock cannot hold an arbitrary sum (`Instant + Duration` panics on overflow); a day
/// is far past any useful timeout and leaves the arithmetic centuries of room.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The most open connections: past any process's descriptor limit (`nr_open` defaults
/// to 1048576), so only a typo reaches it.
pub(crate) const MAX_CONNECTIONS: usize = 1 << 20;
/// The most header lines in a request. hyper sets aside room for this many lines for
/// every HTTP/1 request once it is set (64 bytes each), and a 32 KiB head of minimal
/// lines holds about 8000: 1024 is ten times the default and still cheap.
pub(crate) const MAX_HEADERS: usize = 1024;
/// The most idle upstream connections kept: more than the ephemeral ports one address
/// pair can use, so only a typo reaches it.
pub(crate) const MAX_POOL_IDLE: usize = 1 << 16;

/// A duration as a config value: whole seconds, or milliseconds.
fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn dur(
    value: Option<DurationValue>,
    default: Duration,
    key: &str,
) -> Result<Duration, ConfigError> {
    let d = value.map_or(default, |v| v.0);
    if d.is_zero() {
        return Err(ConfigError::new(format!("{key} must be longer than zero"))
            .hint("a timeout of 0 would cut every connection")
            .at(key));
    }
    if d > MAX_TIMEOUT {
        return Err(ConfigError::new(format!(
            "{key} {} is longer than the largest allowed, 24h",
            duration_text(d)
        ))
        .hint("use at most \"24h\" (86400 seconds)")
        .at(key));
    }
    Ok(d)
}

/// `value` if it is at most `max`, else an error naming `key` and the largest allowed.
fn at_most(value: usize, max: usize, key: &str, why: &str) -> Result<usize, ConfigError> {
    if value > max {
        return Err(ConfigError::new(format!(
            "{key} {value} is larger than the largest allowed, {max}"
        ))
        .hint(format!("use at most {max} ({why})"))
        .at(key));
    }
    Ok(value)
}

impl Settings {
    /// Checks a file's values with flags applied; `read` loads provider range files.
    pub(crate) fn from_file(
        mut file: FileConfig,
        flags: &Overrides,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Settings, ConfigError> {
        file.client_ip.apply_flags(&trueip::config::Flags {
            trust: &flags.trust,
            strategy: &flags.strategy,
            from: flags.from.as_deref(),
            proxy_protocol_from: &flags.proxy_protocol_from,
        })?;
        let policy = file.client_ip.build(read)?;

        if !flags.listen.is_empty() {
            file.listen = flags
                .listen
                .iter()
                .map(|a| ListenConfig {
                    address: a.clone(),
                    ..ListenConfig::default()
                })
                .collect();
        }
        if file.listen.is_empty() {
            file.listen.push(ListenConfig {
                address: DEFAULT_LISTEN.to_string(),
                ..ListenConfig::default()
            });
        }
        let flag_pp = flags
            .proxy_protocol
            .as_deref()
            .map(str::parse::<ProxyProtocol>)
            .transpose()
            .map_err(|e| e.at("--proxy-protocol"))?;
        let mut listeners = Vec::new();
        for (i, l) in file.listen.iter().enumerate() {
            listeners.push(listener(i, l, flag_pp, &policy, !flags.listen.is_empty())?);
        }
        for (i, a) in listeners.iter().enumerate() {
            if let Some(j) = listeners
                .iter()
                .take(i)
                .position(|b| b.address == a.address)
            {
                return Err(
                    ConfigError::new(format!("address {} is listed twice", a.address))
                        .hint(format!("listen[{j}] already binds it"))
                        .at(format!("listen[{i}].address")),
                );
            }
        }

        let upstream_url = match flags.upstream.as_deref() {
            Some("whoami") => None,
            Some(url) => Some(url.to_string()),
            None => file.upstream.url.clone(),
        };
        let upstream = upstream_url
            .map(|url| upstream(&url, &file.upstream))
            .transpose()?;
        let headers = headers(&file.headers, &file.client_ip, &policy)?;
        let limits = limits(&file.limits)?;
        let admin = admin(&file.admin)?;
        if let Some(a) = admin.listen
            && let Some(i) = listeners.iter().position(|l| l.address == a)
        {
            return Err(
                ConfigError::new(format!("admin.listen {a} is also listen[{i}]"))
                    .hint("give the admin listener its own port")
                    .at("admin.listen"),
            );
        }
        let log = log(&file.log)?;
        let tcp_connect_timeout = dur(
            file.upstream.connect_timeout,
            Duration::from_secs(5),
            "upstream.connect_timeout",
        )?;
        Ok(Settings {
            policy,
            listeners,
            upstream,
            headers,
            limits,
            admin,
            log,
            tcp_connect_timeout,
            lean_http1: file.limits.lean_http1.unwrap_or(true),
        })
    }

    /// The same listening sockets (what a reload cannot change).
    pub(crate) fn same_sockets(&self, other: &Settings) -> bool {
        let key = |s: &Settings| {
            s.listeners
                .iter()
                .map(|l| (l.address, l.mode))
                .collect::<Vec<_>>()
        };
        key(self) == key(other) && self.admin.listen == other.admin.listen
    }
}

fn listener(
    i: usize,
    l: &ListenConfig,
    flag_pp: Option<ProxyProtocol>,
    policy: &Policy,
    from_flag: bool,
) -> Result<ListenerSettings, ConfigError> {
    let at = |key: &str| {
        if from_flag {
            "--listen".to_string()
        } else {
            format!("listen[{i}].{key}")
        }
    };
    let address: SocketAddr = l.address.trim().parse().map_err(|_| {
        ConfigError::new(format!("invalid listen address {:?}", l.address))
            .hint("write an IP and a port: \"127.0.0.1:8080\", \"[::]:443\", \"0.0.0.0:80\"")
            .at(at("address"))
    })?;
    let mode = match l.mode.as_deref().map(|m| m.trim().to_ascii_lowercase()) {
        None => Mode::Http,
        Some(m) if m == "http" => Mode::Http,
        Some(m) if m == "tcp" => Mode::Tcp,
        Some(m) => {
            return Err(ConfigError::new(format!("invalid mode {m:?}"))
                .hint("use \"http\" or \"tcp\"")
                .at(at("mode")));
        }
    };
    let proxy_protocol = match flag_pp {
        Some(p) => p,
        None => l
            .proxy_protocol
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: ConfigError| e.at(at("proxy_protocol")))?
            .unwrap_or(ProxyProtocol::Off),
    };
    if proxy_protocol != ProxyProtocol::Off && policy.proxy_protocol_from().is_empty() {
        return Err(ConfigError::new(format!("listener {address} expects a PROXY header but no sender may send one"))
            .hint("list the load balancer's addresses in client_ip.proxy_protocol_from (or --proxy-protocol-from 10.0.0.0/8)")
            .at(if flag_pp.is_some() { "--proxy-protocol".to_string() } else { at("proxy_protocol") }));
    }
    let tcp_upstream = match (mode, &l.upstream) {
        (Mode::Tcp, Some(u)) => {
            let u = u.trim();
            let ok = u.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !ok {
                return Err(ConfigError::new(format!("invalid TCP upstream {u:?}"))
                    .hint("write host:port, e.g. \"10.0.0.9:5432\"")
                    .at(at("upstream")));
            }
            Some(u.to_string())
        }
        (Mode::Tcp, None) => {
            return Err(ConfigError::new("a tcp listener needs an upstream")
                .hint("add upstream = \"host:port\"")
                .at(at("upstream")));
        }
        (Mode::Http, Some(_)) => {
            return Err(ConfigError::new("upstream is a tcp-mode key")
                .hint("HTTP listeners share [upstream] url; set mode = \"tcp\" for a byte-level relay")
                .at(at("upstream")));
        }
        (Mode::Http, None) => None,
    };
    let send_proxy = match (mode, &l.send_proxy_protocol) {
        (Mode::Tcp, s) => s
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: ConfigError| e.at(at("send_proxy_protocol")))?
            .unwrap_or(SendProxy::V2),
        (Mode::Http, Some(_)) => {
            return Err(ConfigError::new("send_proxy_protocol is a tcp-mode key")
                .hint("for HTTP listeners use [upstream] proxy_protocol")
                .at(at("send_proxy_protocol")));
        }
        (Mode::Http, None) => SendProxy::Off,
    };
    Ok(ListenerSettings {
        address,
        mode,
        proxy_protocol,
        tls: l.tls.clone(),
        tcp_upstream,
        send_proxy,
    })
}

fn upstream(url: &str, u: &UpstreamConfig) -> Result<UpstreamSettings, ConfigError> {
    let key = "upstream.url";
    let url = url.trim();
    let target = if let Some(path) = url
        .strip_prefix("unix://")
        .or_else(|| url.strip_prefix("unix:"))
    {
        if path.is_empty() {
            return Err(ConfigError::new("empty unix socket path")
                .hint("write unix:/run/app.sock")
                .at(key));
        }
        UpstreamTarget::Unix(PathBuf::from(path))
    } else if let Some(rest) = url.strip_prefix("http://") {
        let authority = rest.trim_end_matches('/');
        let valid = !authority.is_empty()
            && !authority.contains(['/', '?', '#', '@', ' '])
            && authority.parse::<http::uri::Authority>().is_ok()
            && authority.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok_and(|p| p != 0)
            });
        if !valid {
            return Err(ConfigError::new(format!("invalid upstream URL {url:?}"))
                .hint("write http://host:port with no path, e.g. http://127.0.0.1:3000")
                .at(key));
        }
        UpstreamTarget::Tcp(authority.to_string())
    } else if url.starts_with("https://") {
        return Err(ConfigError::new(format!("https upstreams are not supported: {url:?}"))
            .hint("the gateway speaks plain HTTP to an upstream on the same host or network; use http:// or unix:")
            .at(key));
    } else {
        return Err(ConfigError::new(format!("invalid upstream URL {url:?}"))
            .hint("use http://host:port or unix:/path/to.sock")
            .at(key));
    };
    let proxy_protocol = u
        .proxy_protocol
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: ConfigError| e.at("upstream.proxy_protocol"))?
        .unwrap_or(SendProxy::Off);
    if proxy_protocol != SendProxy::Off && matches!(target, UpstreamTarget::Unix(_)) {
        // A unix socket has no TCP addresses to hide, but the client's still travel fine.
    }
    Ok(UpstreamSettings {
        target,
        connect_timeout: dur(
            u.connect_timeout,
            Duration::from_secs(5),
            "upstream.connect_timeout",
        )?,
        response_timeout: dur(
            u.response_timeout,
            Duration::from_secs(60),
            "upstream.response_timeout",
        )?,
        body_timeout: dur(
            u.body_timeout,
            Duration::from_secs(60),
            "upstream.body_timeout",
        )?,
        pool_idle_timeout: dur(
            u.pool_idle_timeout,
            Duration::from_secs(90),
            "upstream.pool_idle_timeout",
        )?,
        pool_max_idle: at_most(
            u.pool_max_idle.unwrap_or(64),
            MAX_POOL_IDLE,
            "upstream.pool_max_idle",
            "idle connections kept open to the upstream",
        )?,
        pool_max_idle_total: at_most(
            u.pool_max_idle_total.unwrap_or(1024),
            MAX_POOL_IDLE,
            "upstream.pool_max_idle_total",
            "idle connections kept open to the upstream in all",
        )?,
        proxy_protocol,
    })
}

fn headers(
    h: &HeadersConfig,
    client_ip: &ClientIpConfig,
    policy: &Policy,
) -> Result<HeaderSettings, ConfigError> {
    let mut extra: Vec<FieldName> = Vec::new();
    for (i, name) in h.strip.iter().enumerate() {
        let name = FieldName::new(name.trim()).map_err(|e| e.at(format!("headers.strip[{i}]")))?;
        if !extra.contains(&name) {
            extra.push(name);
        }
    }
    // A header a `header:NAME` strategy reads is a client-IP header by definition.
    let entries: Vec<&str> = match &client_ip.strategy {
        Strategies::One(name) => vec![name.as_str()],
        Strategies::Chain(list) => list
            .iter()
            .map(|e| match e {
                StrategyEntry::Name(n) => n.as_str(),
                StrategyEntry::WithTrust { name, .. } => name.as_str(),
            })
            .collect(),
    };
    for entry in entries {
        if let Ok(StrategySpec::Header(name)) = entry.parse::<StrategySpec>()
            && !extra.contains(&name)
            && !trueip::headers::names::FORWARDING
                .iter()
                .any(|row| row.name == name)
        {
            extra.push(name);
        }
    }
    let origin_secret = client_ip
        .origin_secret
        .as_ref()
        .and_then(|s| FieldName::new(s.header.trim()).ok());
    let keep = keep(&h.keep, &extra, origin_secret.as_ref(), policy)?;
    Ok(HeaderSettings {
        x_real_ip: h.x_real_ip.unwrap_or(true),
        x_forwarded_for: h
            .x_forwarded_for
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: ConfigError| e.at("headers.x_forwarded_for"))?
            .unwrap_or(ListMode::Replace),
        forwarded: h
            .forwarded
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: ConfigError| e.at("headers.forwarded"))?
            .unwrap_or(ListMode::Replace),
        x_forwarded_proto: h.x_forwarded_proto.unwrap_or(true),
        x_forwarded_host: h.x_forwarded_host.unwrap_or(true),
        x_forwarded_port: h.x_forwarded_port.unwrap_or(true),
        extra,
        keep,
        origin_secret,
    })
}

/// The checked `headers.keep`: names of the built-in table only (any other header is not
/// stripped in the first place, so keeping it would be a typo that silently does
/// nothing), and none the gateway writes or the policy reads: a header the policy reads
/// decides the client, and one the gateway writes is replaced anyway.
fn keep(
    names: &[String],
    extra: &[FieldName],
    origin_secret: Option<&FieldName>,
    policy: &Policy,
) -> Result<Vec<FieldName>, ConfigError> {
    use trueip::headers::names;
    let written = [
        names::X_REAL_IP,
        names::X_FORWARDED_FOR,
        names::FORWARDED,
        names::X_FORWARDED_PROTO,
        names::X_FORWARDED_HOST,
        names::X_FORWARDED_PORT,
    ];
    let read_by_policy = |name: &FieldName| {
        extra.contains(name)
            || origin_secret == Some(name)
            || (0..=u8::MAX)
                .map_while(|i| policy.strategy_name(i).map(|_| policy.strategy_header(i)))
                .any(|read| read == Some(name))
    };
    let mut keep = Vec::new();
    for (i, text) in names.iter().enumerate() {
        let at = format!("headers.keep[{i}]");
        let name = FieldName::new(text.trim()).map_err(|e| e.at(at.clone()))?;
        if !names::FORWARDING.iter().any(|row| row.name == name) {
            return Err(ConfigError::new(format!(
                "{name} is not a client-IP header the gateway strips"
            ))
            .hint("headers outside the table in docs/SECURITY.md reach the upstream already; remove it from keep")
            .at(at));
        }
        if written.contains(&name) {
            return Err(ConfigError::new(format!("the gateway writes {name} itself"))
                .hint(format!(
                    "it cannot be kept; turn it off in [headers] if the upstream should not get the gateway's {name}"
                ))
                .at(at));
        }
        if read_by_policy(&name) {
            return Err(ConfigError::new(format!(
                "{name} is read by the client_ip policy (or listed in headers.strip)"
            ))
            .hint(
                "a header that decides the client cannot pass from any client; remove it from keep",
            )
            .at(at));
        }
        if !keep.contains(&name) {
            keep.push(name);
        }
    }
    Ok(keep)
}

fn limits(l: &LimitsConfig) -> Result<Limits, ConfigError> {
    let max_header_bytes = l.max_header_bytes.unwrap_or(32 * 1024);
    if !(8192..=1024 * 1024).contains(&max_header_bytes) {
        return Err(ConfigError::new(format!(
            "max_header_bytes {max_header_bytes} is out of range"
        ))
        .hint("use 8192 to 1048576 (HTTP/1 parsing needs at least 8 KiB)")
        .at("limits.max_header_bytes"));
    }
    let max_connections = at_most(
        l.max_connections.unwrap_or(4096),
        MAX_CONNECTIONS,
        "limits.max_connections",
        "open connections, all listeners together",
    )?;
    if max_connections == 0 {
        return Err(ConfigError::new("max_connections is 0")
            .hint("allow at least one connection")
            .at("limits.max_connections"));
    }
    let max_headers = at_most(
        l.max_headers.unwrap_or(100),
        MAX_HEADERS,
        "limits.max_headers",
        "header lines in one request",
    )?;
    if max_headers == 0 {
        return Err(ConfigError::new("max_headers is 0")
            .hint("allow at least a Host header")
            .at("limits.max_headers"));
    }
    let proxy_protocol_max_bytes = l.proxy_protocol_max_bytes.unwrap_or(512);
    if !(trueip::proxy_protocol::V1_MAX_LEN..=trueip::proxy_protocol::V2_MAX_LEN)
        .contains(&proxy_protocol_max_bytes)
    {
        return Err(ConfigError::new(format!(
            "proxy_protocol_max_bytes {proxy_protocol_max_bytes} is out of range"
        ))
        .hint(format!(
            "use {} (a full v1 line) to {}",
            trueip::proxy_protocol::V1_MAX_LEN,
            trueip::proxy_protocol::V2_MAX_LEN
        ))
        .at("limits.proxy_protocol_max_bytes"));
    }
    let backlog = l.backlog.unwrap_or(1024);
    if !(1..=65535).contains(&backlog) {
        return Err(
            ConfigError::new(format!("backlog {backlog} is out of range"))
                .hint("use 1 to 65535 (the kernel caps it at net.core.somaxconn)")
                .at("limits.backlog"),
        );
    }
    let workers = match l.workers {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if !(1..=1024).contains(&workers) {
        return Err(
            ConfigError::new(format!("workers {workers} is out of range"))
                .hint("use 1 to 1024 (one per CPU is the usual choice)")
                .at("limits.workers"),
        );
    }
    Ok(Limits {
        max_connections,
        max_header_bytes,
        max_headers,
        backlog,
        workers,
        header_read_timeout: dur(
            l.header_read_timeout,
            Duration::from_secs(10),
            "limits.header_read_timeout",
        )?,
        idle_timeout: dur(
            l.idle_timeout,
            Duration::from_secs(60),
            "limits.idle_timeout",
        )?,
        tls_handshake_timeout: dur(
            l.tls_handshake_timeout,
            Duration::from_secs(10),
            "limits.tls_handshake_timeout",
        )?,
        proxy_protocol_timeout: dur(
            l.proxy_protocol_timeout,
            Duration::from_secs(5),
            "limits.proxy_protocol_timeout",
        )?,
        proxy_protocol_max_bytes,
        shutdown_timeout: dur(
            l.shutdown_timeout,
            Duration::from_secs(30),
            "limits.shutdown_timeout",
        )?,
    })
}

fn admin(a: &AdminConfig) -> Result<AdminSettings, ConfigError> {
    let prefix = a.prefix.clone().unwrap_or_else(|| "/.trueip".to_string());
    let prefix = prefix.trim().trim_end_matches('/').to_string();
    if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.contains(['?', '#', ' '])) {
        return Err(ConfigError::new(format!("invalid admin prefix {prefix:?}"))
            .hint("write a path such as \"/.trueip\", or \"\" to turn it off")
            .at("admin.prefix"));
    }
    let listen = a
        .listen
        .as_deref()
        .map(|s| {
            s.trim().parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(format!("invalid admin listen address {s:?}"))
                    .hint("write an IP and a port: \"127.0.0.1:9100\"")
                    .at("admin.listen")
            })
        })
        .transpose()?;
    Ok(AdminSettings { prefix, listen })
}

fn log(l: &LogConfig) -> Result<LogSettings, ConfigError> {
    let format = match l.format.as_deref().map(|f| f.trim().to_ascii_lowercase()) {
        None => LogFormat::Text,
        Some(f) if f == "text" => LogFormat::Text,
        Some(f) if f == "json" => LogFormat::Json,
        Some(f) => {
            return Err(ConfigError::new(format!("invalid log format {f:?}"))
                .hint("use \"text\" or \"json\"")
                .at("log.format"));
        }
    };
    let level = l.level.clone().unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(ConfigError::new(format!("invalid log level {level:?}"))
            .hint("use error, warn, info, debug or trace")
            .at("log.level"));
    }
    Ok(LogSettings {
        format,
        level,
        access_log: l.access_log.unwrap_or(true),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Result<Settings, String> {
        let file = parse_toml(toml).map_err(|e| e.to_string())?;
        Settings::from_file(file, &Overrides::default(), &mut |p| {
            Err(format!("no file {p}"))
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn empty_config_is_the_safe_default() {
        let s = settings("").unwrap();
        assert_eq!(s.listeners.len(), 1);
        assert_eq!(s.listeners[0].address.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.listeners[0].proxy_protocol, ProxyProtocol::Off);
        assert!(s.upstream.is_none());
        assert!(!s.policy.trusts("127.0.0.1".parse().unwrap()));
        assert_eq!(s.admin.prefix, "/.trueip");
    }

    #[test]
    fn backlog_defaults_to_1024_and_is_checked() {
        assert_eq!(settings("").unwrap().limits.backlog, 1024);
        assert_eq!(
            settings("[limits]\nbacklog = 4096").unwrap().limits.backlog,
            4096
        );
        let err = settings("[limits]\nbacklog = 0").unwrap_err();
        assert!(err.contains("limits.backlog"), "{err}");
    }

    #[test]
    fn kept_headers_are_table_names_the_gateway_neither_writes_nor_reads() {
        let s = settings("[headers]\nkeep = [\"Client-IP\", \"client-ip\"]").unwrap();
        assert_eq!(s.headers.keep, [FieldName::new("client-ip").unwrap()]);
        assert!(settings("").unwrap().headers.keep.is_empty());
        for (toml, why) in [
            ("[headers]\nkeep = [\"X-App\"]", "not a client-IP header"),
            (
                "[headers]\nkeep = [\"X-Real-IP\"]",
                "writes x-real-ip itself",
            ),
            (
                "[headers]\nkeep = [\"Forwarded\"]\nforwarded = \"off\"",
                "writes forwarded itself",
            ),
            (
                "[client_ip]\ntrusted = [\"10.0.0.0/8\"]\nstrategy = \"header:CF-Connecting-IP\"\n[headers]\nkeep = [\"CF-Connecting-IP\"]",
                "read by the client_ip policy",
            ),
            (
                "[client_ip]\ntrusted = [\"10.0.0.0/8\"]\norigin_secret = { header = \"X-Azure-FDID\", value = \"x\" }\n[headers]\nkeep = [\"X-Azure-FDID\"]",
                "read by the client_ip policy",
            ),
            ("[headers]\nkeep = [\"bad name\"]", "invalid header name"),
        ] {
            let err = settings(toml).unwrap_err();
            assert!(
                err.contains("headers.keep[0]") && err.contains(why),
                "{toml}: {err}"
            );
        }
    }

    #[test]
    fn workers_default_to_the_cpus_and_are_checked() {
        assert!(settings("").unwrap().limits.workers >= 1);
        assert_eq!(settings("[limits]\nworkers = 3").unwrap().limits.workers, 3);
        let err = settings("[limits]\nworkers = 0").unwrap_err();
        assert!(err.contains("limits.workers"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[client_ip]\ntrusted = [\"10.0.0.0/8\", \"::1\", \"10.0.0.0/33\"]",
                "client_ip.trusted[2]",
            ),
            ("[[listen]]\naddress = \"localhost\"", "listen[0].address"),
            (
                "[[listen]]\naddress = \"127.0.0.1:1\"\nproxy_protocol = \"v3\"",
                "listen[0].proxy_protocol",
            ),
            (
                "[[listen]]\naddress = \"127.0.0.1:1\"\nproxy_protocol = \"v2\"",
                "client_ip.proxy_protocol_from",
            ),
            (
                "[[listen]]\naddress = \"127.0.0.1:1\"\nmode = \"tcp\"",
                "listen[0].upstream",
            ),
            ("[upstream]\nurl = \"http://x\"", "upstream.url"),
            ("[upstream]\nurl = \"https://x:1\"", "https"),
            (
                "[upstream]\nurl = \"http://127.0.0.1:3000\"\nconnect_timeout = \"5 parsecs\"",
                "invalid duration",
            ),
            (
                "[headers]\nx_forwarded_for = \"prepend\"",
                "headers.x_forwarded_for",
            ),
            ("[headers]\nstrip = [\"X Bad\"]", "headers.strip[0]"),
            (
                "[limits]\nmax_header_bytes = 100",
                "limits.max_header_bytes",
            ),
            ("[log]\nformat = \"xml\"", "log.format"),
            (
                "[upstrem]\nurl = \"http://127.0.0.1:3000\"",
                "unknown field",
            ),
            (
                "[[listen]]\naddress = \"127.0.0.1:1\"\n[[listen]]\naddress = \"127.0.0.1:1\"",
                "listen[1].address",
            ),
        ];
        for (toml, want) in cases {
            let err = settings(toml)
                .err()
                .unwrap_or_else(|| panic!("accepted: {toml}"));
            assert!(err.contains(want), "{toml:?}: {err}");
        }
    }

    #[test]
    fn full_config_parses() {
        let s = settings(
            r#"
            [client_ip]
            trusted = ["10.0.0.0/8"]
            strategy = ["header:X-Client", "rightmost-untrusted"]
            proxy_protocol_from = ["10.0.0.0/8"]
            [[listen]]
            address = "127.0.0.1:8443"
            proxy_protocol = "any"
            [[listen]]
            address = "[::1]:9000"
            mode = "tcp"
            upstream = "127.0.0.1:5432"
            send_proxy_protocol = "v1"
            [upstream]
            url = "unix:/run/app.sock"
            response_timeout = "2m"
            body_timeout = 30
            [headers]
            forwarded = "off"
            strip = ["X-Original-IP"]
            [admin]
            prefix = ""
            listen = "127.0.0.1:9100"
            [log]
            format = "json"
            "#,
        )
        .unwrap();
        assert_eq!(s.listeners[0].proxy_protocol, ProxyProtocol::Any);
        assert_eq!(s.listeners[1].mode, Mode::Tcp);
        assert_eq!(s.listeners[1].send_proxy, SendProxy::V1);
        let up = s.upstream.unwrap();
        assert_eq!(up.target, UpstreamTarget::Unix("/run/app.sock".into()));
        assert_eq!(up.response_timeout, Duration::from_secs(120));
        assert_eq!(up.body_timeout, Duration::from_secs(30));
        assert_eq!(s.headers.forwarded, ListMode::Off);
        let extra: Vec<_> = s
            .headers
            .extra
            .iter()
            .map(|n| n.as_str().to_string())
            .collect();
        assert_eq!(extra, ["x-original-ip", "x-client"]);
        assert_eq!(s.admin.prefix, "");
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn flags_replace_config() {
        let file = parse_toml(
            "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[listen]]\naddress = \"127.0.0.1:1\"",
        )
        .unwrap();
        let flags = Overrides {
            listen: vec!["127.0.0.1:2".into(), "127.0.0.1:3".into()],
            upstream: Some("whoami".into()),
            trust: vec!["loopback".into()],
            strategy: vec!["rightmost-untrusted".into()],
            proxy_protocol: Some("v1".into()),
            proxy_protocol_from: vec!["127.0.0.0/8".into()],
            ..Overrides::default()
        };
        let s = Settings::from_file(file, &flags, &mut |_| Err(String::new())).unwrap();
        assert_eq!(s.listeners.len(), 2);
        assert!(
            s.listeners
                .iter()
                .all(|l| l.proxy_protocol == ProxyProtocol::V1)
        );
        assert!(s.upstream.is_none());
        assert!(s.policy.trusts("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn the_example_file_is_valid_and_states_the_defaults() {
        let example = settings(include_str!("../../../trueip.example.toml")).unwrap();
        let default = settings("").unwrap();
        assert_eq!(example.listeners, default.listeners);
        assert_eq!(example.upstream, default.upstream);
        assert_eq!(example.headers, default.headers);
        assert_eq!(example.limits, default.limits);
        assert_eq!(example.admin, default.admin);
        assert_eq!(example.log, default.log);
        assert_eq!(example.tcp_connect_timeout, default.tcp_connect_timeout);
        assert_eq!(example.lean_http1, default.lean_http1);
        assert!(default.lean_http1);
        assert!(!settings("[limits]\nlean_http1 = false").unwrap().lean_http1);
        assert_eq!(example.policy.strategy_name(0), None);
    }

    /// Every duration key, with the table it sits in.
    const DURATION_KEYS: [(&str, &str); 9] = [
        ("limits", "header_read_timeout"),
        ("limits", "idle_timeout"),
        ("limits", "tls_handshake_timeout"),
        ("limits", "proxy_protocol_timeout"),
        ("limits", "shutdown_timeout"),
        ("upstream", "connect_timeout"),
        ("upstream", "response_timeout"),
        ("upstream", "body_timeout"),
        ("upstream", "pool_idle_timeout"),
    ];

    fn with(table: &str, line: &str) -> String {
        let upstream = if table == "upstream" {
            "url = \"http://127.0.0.1:3000\"\n"
        } else {
            ""
        };
        format!("[{table}]\n{upstream}{line}\n")
    }

    /// `header_read_timeout = "18446744073709551615s"` once passed the check and then
    /// overflowed `Instant + Duration` on the first request.
    #[test]
    fn a_timeout_too_long_to_add_to_the_clock_is_refused_naming_the_key_and_the_max() {
        for (table, key) in DURATION_KEYS {
            for value in [
                "\"18446744073709551615s\"",
                "18446744073709551615",
                "\"18446744073709551615h\"",
                "\"86401s\"",
                "\"25h\"",
            ] {
                let toml = with(table, &format!("{key} = {value}"));
                let err = settings(&toml)
                    .err()
                    .unwrap_or_else(|| panic!("accepted: {toml}"));
                assert!(err.contains(&format!("{table}.{key}")), "{toml}: {err}");
                assert!(err.contains("24h"), "{toml}: {err}");
            }
            // The largest value allowed is accepted, in any unit.
            for value in ["\"24h\"", "\"1440m\"", "86400", "\"86400000ms\""] {
                let toml = with(table, &format!("{key} = {value}"));
                assert!(settings(&toml).is_ok(), "{toml}: {:?}", settings(&toml));
            }
        }
        let s = settings(&with("limits", "header_read_timeout = \"24h\"")).unwrap();
        assert_eq!(s.limits.header_read_timeout, Duration::from_secs(86400));
    }

    #[test]
    fn counts_and_sizes_are_bounded_naming_the_key_and_the_max() {
        let huge = usize::MAX.to_string();
        let cases = [
            ("limits", "max_connections", 1_048_576),
            ("limits", "max_headers", 1024),
            ("limits", "max_header_bytes", 1024 * 1024),
            (
                "limits",
                "proxy_protocol_max_bytes",
                trueip::proxy_protocol::V2_MAX_LEN,
            ),
            ("limits", "workers", 1024),
            ("upstream", "pool_max_idle", 65_536),
        ];
        for (table, key, max) in cases {
            // TOML integers are i64: the largest one a file can hold, and one past the max.
            for value in [i64::MAX.to_string(), (max + 1).to_string()] {
                let toml = with(table, &format!("{key} = {value}"));
                let err = settings(&toml)
                    .err()
                    .unwrap_or_else(|| panic!("accepted: {toml}"));
                assert!(err.contains(&format!("{table}.{key}")), "{toml}: {err}");
                assert!(err.contains(&max.to_string()), "{toml}: {err}");
            }
            let toml = with(table, &format!("{key} = {max}"));
            assert!(settings(&toml).is_ok(), "{toml}: {:?}", settings(&toml));
            // Past what TOML holds: the parser refuses it, it does not wrap.
            assert!(settings(&with(table, &format!("{key} = {huge}"))).is_err());
        }
        let err = settings("[limits]\nbacklog = 65536").unwrap_err();
        assert!(
            err.contains("limits.backlog") && err.contains("65535"),
            "{err}"
        );
    }

    /// Keys of every table, values that are too large, negative, of the wrong type or
    /// malformed: the reader answers each file with settings or an error, never a panic,
    /// and what it accepts builds a server state without one either.
    mod no_panic {
        use super::*;
        use proptest::prelude::*;

        const TABLES: [&str; 8] = [
            "",
            "[limits]",
            "[upstream]",
            "[headers]",
            "[admin]",
            "[log]",
            "[client_ip]",
            "[[listen]]",
        ];
        const KEYS: [&str; 33] = [
            "header_read_timeout",
            "idle_timeout",
            "tls_handshake_timeout",
            "proxy_protocol_timeout",
            "shutdown_timeout",
            "connect_timeout",
            "response_timeout",
            "body_timeout",
            "pool_idle_timeout",
            "pool_max_idle",
            "max_connections",
            "max_header_bytes",
            "max_headers",
            "proxy_protocol_max_bytes",
            "backlog",
            "workers",
            "lean_http1",
            "url",
            "proxy_protocol",
            "address",
            "mode",
            "upstream",
            "send_proxy_protocol",
            "prefix",
            "listen",
            "format",
            "level",
            "access_log",
            "strip",
            "x_forwarded_for",
            "trusted",
            "strategy",
            "proxy_protocol_from",
        ];
        const VALUES: [&str; 30] = [
            "0",
            "1",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615",
            "1e308",
            "nan",
            "inf",
            "true",
            "\"\"",
            "\"18446744073709551615s\"",
            "\"18446744073709551615h\"",
            "\"18446744073709551615ms\"",
            "\"99999999999999999999999s\"",
            "\"24h\"",
            "\"86401s\"",
            "\"1ms\"",
            "\"0s\"",
            "\"1.5s\"",
            "\"-1s\"",
            "\"s\"",
            "\"http://127.0.0.1:3000\"",
            "\"127.0.0.1:1\"",
            "\"unix:\"",
            "\"v2\"",
            "[\"10.0.0.0/8\", \"::/0\"]",
            "[]",
            "{}",
            "\"\\u0000\"",
        ];

        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => (0..TABLES.len()).prop_map(|i| TABLES[i].to_string()),
                8 => (0..KEYS.len(), 0..VALUES.len())
                    .prop_map(|(k, v)| format!("{} = {}", KEYS[k], VALUES[v])),
                2 => (0..KEYS.len(), any::<i64>())
                    .prop_map(|(k, n)| format!("{} = {n}", KEYS[k])),
                2 => (0..KEYS.len(), any::<u64>(), prop::sample::select(vec!["ms", "s", "m", "h", "", "d"]))
                    .prop_map(|(k, n, u)| format!("{} = \"{n}{u}\"", KEYS[k])),
                1 => "[ -~]{0,40}",
            ]
        }

        /// A number a key might be given: small, near a bound, or as large as TOML holds.
        fn number() -> impl Strategy<Value = i64> {
            prop_oneof![
                0i64..=2000,
                prop::sample::select(vec![
                    -1,
                    65535,
                    65536,
                    65551,
                    65552,
                    86400,
                    86401,
                    1 << 20,
                    (1 << 20) + 1,
                    1 << 31,
                    1 << 32,
                    i64::MAX,
                ]),
                any::<i64>(),
            ]
        }

        fn duration() -> impl Strategy<Value = String> {
            prop_oneof![
                number().prop_map(|n| n.to_string()),
                (
                    any::<u64>(),
                    prop::sample::select(vec!["ms", "s", "m", "h"])
                )
                    .prop_map(|(n, u)| format!("\"{n}{u}\"")),
                (number(), prop::sample::select(vec!["ms", "s", "m", "h"]))
                    .prop_map(|(n, u)| format!("\"{n}{u}\"")),
            ]
        }

        /// A table whose keys are its own and whose values are mostly of the right type,
        /// so the file gets past the parser and the bounds are what is exercised.
        fn table(
            name: &'static str,
            durations: &'static [&'static str],
            numbers: &'static [&'static str],
            fixed: &'static str,
        ) -> impl Strategy<Value = String> {
            let d = prop::sample::subsequence(durations.to_vec(), 0..=durations.len())
                .prop_flat_map(|keys| {
                    let n = keys.len();
                    (Just(keys), prop::collection::vec(duration(), n))
                });
            let c = prop::sample::subsequence(numbers.to_vec(), 0..=numbers.len()).prop_flat_map(
                |keys| {
                    let n = keys.len();
                    (Just(keys), prop::collection::vec(number(), n))
                },
            );
            (d, c).prop_map(move |((dk, dv), (ck, cv))| {
                let mut out = format!("{name}\n{fixed}");
                for (k, v) in dk.iter().zip(dv) {
                    out.push_str(&format!("{k} = {v}\n"));
                }
                for (k, v) in ck.iter().zip(cv) {
                    out.push_str(&format!("{k} = {v}\n"));
                }
                out
            })
        }

        fn typed_file() -> impl Strategy<Value = String> {
            let limits = table(
                "[limits]",
                &[
                    "header_read_timeout",
                    "idle_timeout",
                    "tls_handshake_timeout",
                    "proxy_protocol_timeout",
                    "shutdown_timeout",
                ],
                &[
                    "max_connections",
                    "max_header_bytes",
                    "max_headers",
                    "proxy_protocol_max_bytes",
                    "backlog",
                    "workers",
                ],
                "",
            );
            let upstream = table(
                "[upstream]",
                &[
                    "connect_timeout",
                    "response_timeout",
                    "body_timeout",
                    "pool_idle_timeout",
                ],
                &["pool_max_idle"],
                "url = \"http://127.0.0.1:3000\"\n",
            );
            (limits, upstream, prop::collection::vec(line(), 0..3))
                .prop_map(|(l, u, junk)| format!("{l}{u}{}", junk.join("\n")))
        }

        fn read(text: &str) {
            let Ok(file) = parse_toml(text) else { return };
            let Ok(settings) = Settings::from_file(file, &Overrides::default(), &mut |p| {
                Err(format!("no file {p}"))
            }) else {
                return;
            };
            // Every accepted timeout can be added to the clock, now and for centuries.
            let l = &settings.limits;
            let mut timeouts = vec![
                l.header_read_timeout,
                l.idle_timeout,
                l.tls_handshake_timeout,
                l.proxy_protocol_timeout,
                l.shutdown_timeout,
                settings.tcp_connect_timeout,
            ];
            if let Some(u) = &settings.upstream {
                timeouts.extend([
                    u.connect_timeout,
                    u.response_timeout,
                    u.body_timeout,
                    u.pool_idle_timeout,
                ]);
            }
            let now = std::time::Instant::now();
            for t in timeouts {
                assert!(t <= MAX_TIMEOUT, "{t:?} accepted");
                assert!(now.checked_add(t).is_some(), "{t:?} overflows the clock");
            }
            let max = settings.limits.max_connections;
            if let Ok(state) = crate::context::State::build(settings) {
                let _ = crate::context::Shared::new(
                    std::sync::Arc::new(state),
                    std::sync::Arc::new(crate::metrics::Metrics::default()),
                    max,
                );
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn toml_ish_text_never_panics_the_reader(
                lines in prop::collection::vec(line(), 0..24)
            ) {
                read(&lines.join("\n"));
            }

            #[test]
            fn typed_values_at_and_past_every_bound_never_panic_the_reader(
                text in typed_file()
            ) {
                read(&text);
            }

            #[test]
            fn arbitrary_text_never_panics_the_reader(text in "\\PC{0,300}") {
                read(&text);
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("s").is_err());
    }
}
