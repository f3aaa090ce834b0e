//! The gateway's TOML file and flags, checked once into typed [`Settings`].
//!
//! Every table is a typed struct read by serde: enums for the keys that name one of a
//! few values, durations for timeouts, and each default written once, in the `Default`
//! impl of its table (a key left out takes it, `#[serde(default)]`). `trueip.example.toml`
//! at the root of the repository documents every key with its default, and a test holds
//! its values equal to these. The flags of `trueip serve` ([`ServeArgs`]) replace config
//! values (never extend them); then every value is checked against its bounds.
//!
//! Errors name the key and the fix: `invalid PROXY protocol mode "v3": use off, v1, v2,
//! any in listen[1].proxy_protocol (line 7)`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use trueip::config::ClientIpConfig;
use trueip::{ConfigError, FieldName, Policy};

use crate::duration::serde_duration as duration;
pub(crate) use crate::duration::{MAX_TIMEOUT, duration_text};
use crate::ranges::{Loaded, RangesSettings};

/// The whole file, as written. Unknown keys are errors, so a typo never goes unnoticed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// `[client_ip]`: the policy, shared with `trueip explain --config` (whose defaults
    /// are the core library's).
    #[serde(skip_serializing)]
    pub(crate) client_ip: ClientIpConfig,
    /// `[[listen]]`: one table per listening socket.
    pub(crate) listen: Vec<ListenerSettings>,
    /// `[upstream]`: where requests go; no `url` means the built-in whoami page.
    pub(crate) upstream: UpstreamSettings,
    /// `[headers]`: which forwarding headers the upstream receives.
    pub(crate) headers: HeaderSettings,
    /// `[limits]`: sizes and timeouts.
    pub(crate) limits: Limits,
    /// `[admin]`: health and metrics endpoints.
    pub(crate) admin: AdminSettings,
    /// `[log]`: diagnostics and the access log.
    pub(crate) log: LogSettings,
    /// `[ranges]`: the provider range list cache and its refresh.
    pub(crate) ranges: RangesSettings,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            client_ip: ClientIpConfig::default(),
            listen: vec![ListenerSettings::http(ListenAddr::Tcp(DEFAULT_LISTEN))],
            upstream: UpstreamSettings::default(),
            headers: HeaderSettings::default(),
            limits: Limits::default(),
            admin: AdminSettings::default(),
            log: LogSettings::default(),
            ranges: RangesSettings::default(),
        }
    }
}

/// A config value that is one of a few names. Reading it ignores case and surrounding
/// space; it is written back by its first name.
pub(crate) trait Named: Sized + Copy + PartialEq + 'static {
    /// What the value is, for errors.
    const WHAT: &'static str;
    /// Every name with the value it stands for; a value's first name is its own.
    const NAMES: &'static [(&'static str, Self)];

    /// The value `text` names.
    fn parse(text: &str) -> Result<Self, ConfigError> {
        let wanted = text.trim();
        if let Some(&(_, value)) =
            Self::NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        {
            return Ok(value);
        }
        let own: Vec<&str> = Self::NAMES
            .iter()
            .filter(|&&(name, value)| value.name() == name)
            .map(|&(name, _)| name)
            .collect();
        Err(ConfigError::new(format!("invalid {} \"{text}\": use {}", Self::WHAT, own.join(", "))))
    }

    /// The value's name.
    fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, v)| *v == self).map_or("", |(name, _)| name)
    }
}

/// Serde for values written as one string: a [`Named`] value by its name, any other by
/// its `Display` and `FromStr`, whose errors name the fix.
macro_rules! serde_as_text {
    (named: $($t:ty),+) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    )+};
    (parsed: $($t:ty),+) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}

serde_as_text!(named: Mode, ProxyProtocol, SendProxy, ListMode, LogFormat, TlsRoots);
serde_as_text!(parsed: ListenAddr, SocketMode, UpstreamTarget);

/// What a listener speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    /// HTTP/1.1 and HTTP/2: resolve, clean headers, forward (or answer whoami).
    #[default]
    Http,
    /// Bytes: resolve from the peer or PROXY header, announce the client upstream, copy.
    Tcp,
}

impl Named for Mode {
    const WHAT: &'static str = "mode";
    const NAMES: &'static [(&'static str, Self)] = &[("http", Mode::Http), ("tcp", Mode::Tcp)];
}

/// Which PROXY protocol versions a listener expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ProxyProtocol {
    /// No header expected.
    #[default]
    Off,
    /// Text header only.
    V1,
    /// Binary header only.
    V2,
    /// Either.
    Any,
    /// Required (either version) from `client_ip.proxy_protocol_from`; everyone else is
    /// served as a plain connection, and closed if it sends a PROXY header.
    FromSenders,
}

impl Named for ProxyProtocol {
    const WHAT: &'static str = "PROXY protocol mode";
    const NAMES: &'static [(&'static str, Self)] = &[
        ("off", ProxyProtocol::Off),
        ("none", ProxyProtocol::Off),
        ("false", ProxyProtocol::Off),
        ("v1", ProxyProtocol::V1),
        ("v2", ProxyProtocol::V2),
        ("any", ProxyProtocol::Any),
        ("from-senders", ProxyProtocol::FromSenders),
    ];
}

/// The PROXY header the gateway sends to an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SendProxy {
    /// None.
    #[default]
    Off,
    /// `PROXY TCP4 ...\r\n`
    V1,
    /// The binary header.
    V2,
}

impl Named for SendProxy {
    const WHAT: &'static str = "PROXY protocol version";
    const NAMES: &'static [(&'static str, Self)] = &[
        ("off", SendProxy::Off),
        ("none", SendProxy::Off),
        ("false", SendProxy::Off),
        ("v1", SendProxy::V1),
        ("v2", SendProxy::V2),
    ];
}

/// `replace`, `append` or `off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ListMode {
    /// The trusted chain and the client only: whatever the client wrote left of it is dropped.
    #[default]
    Replace,
    /// The received list (if it came through a trusted hop), plus the peer, as nginx does.
    Append,
    /// Not set by the gateway (still stripped when untrusted).
    Off,
}

impl Named for ListMode {
    const WHAT: &'static str = "mode";
    const NAMES: &'static [(&'static str, Self)] = &[
        ("replace", ListMode::Replace),
        ("append", ListMode::Append),
        ("off", ListMode::Off),
        ("false", ListMode::Off),
    ];
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Named for LogFormat {
    const WHAT: &'static str = "log format";
    const NAMES: &'static [(&'static str, Self)] =
        &[("text", LogFormat::Text), ("json", LogFormat::Json)];
}

/// Where a listener binds: an IP and port, or a Unix socket path (`unix:/run/trueip.sock`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ListenAddr {
    /// `127.0.0.1:8080`, `[::]:443`.
    Tcp(SocketAddr),
    /// `unix:/path`: an absolute path.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            let path = Path::new(path);
            if !path.is_absolute() || path.file_name().is_none() {
                return Err(ConfigError::new(format!("invalid unix socket path \"{text}\""))
                    .hint("write an absolute path: \"unix:/run/trueip/trueip.sock\""));
            }
            // sun_path holds 108 bytes with its NUL; a longer path cannot be bound.
            if path.as_os_str().len() > 107 {
                return Err(ConfigError::new(format!(
                    "unix socket path \"{text}\" is longer than 107 bytes, the most a socket address holds"
                ))
                .hint("choose a shorter path, e.g. under /run"));
            }
            return Ok(ListenAddr::Unix(path.to_path_buf()));
        }
        text.parse().map(ListenAddr::Tcp).map_err(|_| {
            ConfigError::new(format!("invalid listen address \"{text}\"")).hint(
                "write an IP and a port (\"127.0.0.1:8080\", \"[::]:443\", \"0.0.0.0:80\") or a Unix socket (\"unix:/run/trueip.sock\")",
            )
        })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The owner a Unix socket file is given: `user`, `user:group`, `:group`, or numeric ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SocketOwner {
    /// The user id, when one was named.
    pub(crate) uid: Option<u32>,
    /// The group id, when one was named.
    pub(crate) gid: Option<u32>,
    /// As written (for messages and `--check`).
    text: String,
}

impl SocketOwner {
    /// Parses `text`, looking names up in `passwd` and `group` (the contents of
    /// `/etc/passwd` and `/etc/group`).
    pub(crate) fn parse(text: &str, passwd: &str, group: &str) -> Result<Self, ConfigError> {
        let (user, grp) = match text.split_once(':') {
            Some((u, g)) => (u.trim(), Some(g.trim())),
            None => (text.trim(), None),
        };
        let lookup = |name: &str, table: &str, what: &str| -> Result<u32, ConfigError> {
            if let Ok(id) = name.parse::<u32>() {
                return Ok(id);
            }
            table
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split(':');
                    let n = fields.next()?;
                    let id = fields.nth(1)?.parse::<u32>().ok()?;
                    (n == name).then_some(id)
                })
                .next()
                .ok_or_else(|| {
                    ConfigError::new(format!("unknown {what} \"{name}\" in unix_owner \"{text}\""))
                        .hint(format!("name an existing {what}, or give its numeric id"))
                })
        };
        if user.is_empty() && grp.is_none_or(str::is_empty) {
            return Err(ConfigError::new("empty unix_owner")
                .hint("write \"user\", \"user:group\" or \":group\""));
        }
        let uid = match user {
            "" => None,
            u => Some(lookup(u, passwd, "user")?),
        };
        let gid = match grp {
            None | Some("") => None,
            Some(g) => Some(lookup(g, group, "group")?),
        };
        Ok(SocketOwner { uid, gid, text: text.to_string() })
    }

    /// Parses `text` with this system's `/etc/passwd` and `/etc/group`.
    pub(crate) fn from_system(text: &str) -> Result<Self, ConfigError> {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        SocketOwner::parse(text, &read("/etc/passwd"), &read("/etc/group"))
    }
}

impl std::fmt::Display for SocketOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A Unix socket file's mode, written in octal: `"0660"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketMode(pub(crate) u32);

impl FromStr for SocketMode {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let digits = text.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if mode <= 0o777 && !digits.is_empty() => Ok(SocketMode(mode)),
            _ => Err(ConfigError::new(format!("invalid unix_mode \"{text}\""))
                .hint("write the permission bits in octal, as a string: \"0660\" (owner and group may connect)")),
        }
    }
}

impl std::fmt::Display for SocketMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// One `[[listen]]` table.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerSettings {
    /// Where to bind: `127.0.0.1:8080`, `[::]:443`, `unix:/run/trueip.sock`. Required.
    pub(crate) address: ListenAddr,
    /// This listener's own policy (the keys of `[client_ip]`), replacing `[client_ip]` for
    /// its connections: a public listener behind a CDN, an internal one behind another
    /// balancer.
    #[serde(default, skip_serializing)]
    pub(crate) client_ip: Option<ClientIpConfig>,
    /// `unix:` listeners: the socket file's permission bits (default: as the umask leaves them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) unix_mode: Option<SocketMode>,
    /// `unix:` listeners: the socket file's owner, `user`, `user:group` or `:group`
    /// (default: the user trueip runs as). Checked into ids when the config is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) unix_owner: Option<String>,
    /// HTTP or TCP.
    #[serde(default)]
    pub(crate) mode: Mode,
    /// PROXY header expected from senders in `client_ip.proxy_protocol_from`.
    #[serde(default)]
    pub(crate) proxy_protocol: ProxyProtocol,
    /// TLS termination: one certificate, or several chosen by SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<ListenerTls>,
    /// TCP mode: the upstream `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upstream: Option<String>,
    /// TCP mode: the PROXY header sent upstream (see [`ListenerSettings::send_proxy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) send_proxy_protocol: Option<SendProxy>,
}

impl ListenerSettings {
    /// A plain HTTP listener on `address`.
    pub(crate) fn http(address: ListenAddr) -> Self {
        ListenerSettings {
            address,
            client_ip: None,
            unix_mode: None,
            unix_owner: None,
            mode: Mode::Http,
            proxy_protocol: ProxyProtocol::default(),
            tls: None,
            upstream: None,
            send_proxy_protocol: None,
        }
    }

    /// The PROXY header a TCP relay sends its upstream: v2 unless the table says.
    pub(crate) fn send_proxy(&self) -> SendProxy {
        match self.mode {
            Mode::Tcp => self.send_proxy_protocol.unwrap_or(SendProxy::V2),
            Mode::Http => SendProxy::Off,
        }
    }
}

/// `tls = { cert = "...", key = "..." }`, or one entry of a list chosen by SNI.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub(crate) cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: PathBuf,
    /// The SNI names this certificate answers (`app.example`, `*.example.com`); none:
    /// the default, for every other name and for clients that send none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) server_names: Vec<String>,
}

/// A listener's `tls`: a table (one certificate), or an array of tables, each with its
/// `server_names` (and at most one without: the default). Written back as it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListenerTls {
    /// The certificates, in file order.
    pub(crate) certs: Vec<TlsConfig>,
    /// Read as an array.
    listed: bool,
}

impl Serialize for ListenerTls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.listed, self.certs.as_slice()) {
            (false, [one]) => one.serialize(s),
            _ => self.certs.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ListenerTls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = ListenerTls;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a table { cert, key } or an array of { cert, key, server_names } tables",
                )
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ListenerTls, A::Error> {
                let one =
                    TlsConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ListenerTls { certs: vec![one], listed: false })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<ListenerTls, A::Error> {
                let certs = Vec::<TlsConfig>::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(ListenerTls { certs, listed: true })
            }
        }
        d.deserialize_any(Either)
    }
}

impl ListenerTls {
    /// Checks the list: not empty, names valid (a leading `*.` covers one label), no
    /// name in two entries, at most one default. Names are kept in lower case. `at` is
    /// the `listen[i].tls` key.
    fn check(&mut self, at: &str) -> Result<(), ConfigError> {
        if self.certs.is_empty() {
            return Err(ConfigError::new("an empty list of certificates")
                .hint("write tls = { cert = \"...\", key = \"...\" }, or list tables with server_names")
                .at(at.to_string()));
        }
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut default = None;
        for (j, entry) in self.certs.iter_mut().enumerate() {
            let here = match self.listed {
                true => format!("{at}[{j}]"),
                false => at.to_string(),
            };
            if entry.server_names.is_empty() {
                if let Some(first) = default {
                    return Err(ConfigError::new("two certificates without server_names")
                        .hint(format!(
                            "{at}[{first}] is already the default (for names no entry lists, and clients that send no SNI); give this one its server_names"
                        ))
                        .at(format!("{here}.server_names")));
                }
                default = Some(j);
            }
            for name in &mut entry.server_names {
                let lower = name.trim().to_ascii_lowercase();
                let bare = lower.strip_prefix("*.").unwrap_or(&lower);
                let valid = !bare.contains('*')
                    && bare.parse::<std::net::IpAddr>().is_err()
                    && rustls::pki_types::DnsName::try_from(bare).is_ok();
                if !valid {
                    return Err(ConfigError::new(format!("invalid server name \"{name}\""))
                        .hint("a DNS name as clients send it in SNI (app.example), or *.example.com for one label under it")
                        .at(format!("{here}.server_names")));
                }
                if let Some((_, other)) = seen.iter().find(|(n, _)| *n == lower) {
                    return Err(ConfigError::new(format!(
                        "{lower} is listed twice: SNI could not choose"
                    ))
                    .hint(format!("{at}[{other}] already answers it; keep it in one entry"))
                    .at(format!("{here}.server_names")));
                }
                seen.push((lower.clone(), j));
                *name = lower;
            }
        }
        Ok(())
    }
}

/// Where HTTP requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamTarget {
    /// `http://host:port`: the authority (`host:port`).
    Tcp(String),
    /// `https://host:port`: the authority (`host:port`); TLS with the `[upstream]` roots.
    Https(String),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl FromStr for UpstreamTarget {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, ConfigError> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("unix://").or_else(|| url.strip_prefix("unix:")) {
            if path.is_empty() {
                return Err(
                    ConfigError::new("empty unix socket path").hint("write unix:/run/app.sock")
                );
            }
            return Ok(UpstreamTarget::Unix(PathBuf::from(path)));
        }
        let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (Some(rest), false),
            (None, rest) => (rest, true),
        };
        if let Some(rest) = rest {
            let authority = rest.trim_end_matches('/');
            let valid = !authority.is_empty()
                && !authority.contains(['/', '?', '#', '@', ' '])
                && authority.parse::<http::uri::Authority>().is_ok()
                && authority.rsplit_once(':').is_some_and(|(h, p)| {
                    !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok_and(|p| p != 0)
                });
            if !valid {
                return Err(ConfigError::new(format!("invalid upstream URL \"{url}\"")).hint(
                    "write http://host:port or https://host:port with no path, e.g. http://127.0.0.1:3000",
                ));
            }
            return Ok(match tls {
                false => UpstreamTarget::Tcp(authority.to_string()),
                true => UpstreamTarget::Https(authority.to_string()),
            });
        }
        Err(ConfigError::new(format!("invalid upstream URL \"{url}\""))
            .hint("use http://host:port, https://host:port or unix:/path/to.sock"))
    }
}

impl std::fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamTarget::Tcp(a) => write!(f, "http://{a}"),
            UpstreamTarget::Https(a) => write!(f, "https://{a}"),
            UpstreamTarget::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `[upstream]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct UpstreamSettings {
    /// `http://host:port` or `unix:/path/to.sock`; `None`: the whoami page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<UpstreamTarget>,
    /// Connecting, TLS-free (tcp-mode listeners too).
    #[serde(with = "duration")]
    pub(crate) connect_timeout: Duration,
    /// Until response headers.
    #[serde(with = "duration")]
    pub(crate) response_timeout: Duration,
    /// Between body frames, either way.
    #[serde(with = "duration")]
    pub(crate) body_timeout: Duration,
    /// Idle pooled connections are closed after this.
    #[serde(with = "duration")]
    pub(crate) pool_idle_timeout: Duration,
    /// Pool size per worker (with PROXY headers, per client connection). By default as
    /// large as `pool_max_idle_total`, so only the total binds: an HTTP/2 client
    /// connection carries up to 256 requests at once, each on its own HTTP/1.1 upstream
    /// connection, and a pool smaller than the requests in flight closes connections that
    /// the next burst opens again (on the h2 benchmark row, for 0.08 to 0.46 of the
    /// requests: a connect, a close and the upstream's accept each time).
    pub(crate) pool_max_idle: usize,
    /// Idle connections in all pools together.
    pub(crate) pool_max_idle_total: usize,
    /// PROXY header to the upstream.
    pub(crate) proxy_protocol: SendProxy,
    /// HTTP/2 to the upstream: prior knowledge over `http://`, ALPN `h2` over `https://`.
    pub(crate) http2: bool,
    /// `https://`: the certificate authorities that may sign the upstream's certificate
    /// (PEM), instead of `tls_roots`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
    /// `https://`: the roots trusted when no `ca_file` is set.
    pub(crate) tls_roots: TlsRoots,
    /// `https://`: the name sent in SNI and checked in the certificate, instead of the
    /// URL's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_name: Option<String>,
    /// `https://`: a client certificate chain (PEM) shown to an upstream that asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_cert: Option<PathBuf>,
    /// `https://`: the private key of `client_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_key: Option<PathBuf>,
    /// The signed client header (`trueip::provenance`); unset: none is written (a
    /// client's is still removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sign: Option<SignSettings>,
}

/// `[upstream] sign = { key_file = "...", header = "..." }`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignSettings {
    /// The shared HMAC key: 32 to 1024 bytes, whitespace around them trimmed.
    pub(crate) key_file: PathBuf,
    /// The header's name.
    #[serde(default = "default_sign_header")]
    pub(crate) header: String,
}

fn default_sign_header() -> String {
    trueip::provenance::DEFAULT_HEADER.to_string()
}

/// The checked `[upstream] sign`: the header's name (always removed from what clients
/// send, signing or not) and the key, when the gateway signs.
#[derive(Clone, Debug)]
pub(crate) struct Signing {
    /// The header's name, lower case.
    pub(crate) header: FieldName,
    /// The key; `None`: the header is removed, not written.
    pub(crate) key: Option<trueip::provenance::Key>,
}

impl Default for Signing {
    fn default() -> Self {
        Signing { header: FieldName::from_static(trueip::provenance::DEFAULT_HEADER), key: None }
    }
}

impl PartialEq for Signing {
    /// Keys compare by id: the id is derived from the key.
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header
            && self.key.as_ref().map(|k| k.id()) == other.key.as_ref().map(|k| k.id())
    }
}

impl Eq for Signing {}

impl SignSettings {
    /// Reads the key (its bytes never reach an error message or a log line).
    fn load(&self) -> Result<Signing, ConfigError> {
        let header =
            FieldName::new(self.header.trim()).map_err(|e| e.at("upstream.sign.header"))?;
        // In any spelling an app reads as the same header (`X_Forwarded_For`).
        let ours = |row: &str| trueip::headers::spells(row, header.as_str());
        // Under a framing field the upstream reads the claim as framing
        // (`transfer-encoding: v1;...` on a bodiless request, and a server that then reads a
        // body until the close takes the next request on that pooled connection, another
        // client's, for it); under a credential every client's is stripped as a forgery.
        if let Some(field) = trueip::headers::names::MESSAGE.iter().find(|n| ours(n)) {
            return Err(ConfigError::new(format!(
                "upstream.sign.header \"{}\" is {field}, a field that frames the request, \
                 belongs to one connection or carries the client's credentials",
                self.header
            ))
            .hint(format!(
                "use a name of its own; the default is {:?}",
                trueip::provenance::DEFAULT_HEADER
            ))
            .at("upstream.sign.header"));
        }
        if trueip::headers::names::FORWARDING.iter().any(|row| ours(row.as_str())) || ours("host") {
            return Err(ConfigError::new(format!(
                "upstream.sign.header \"{}\" is a header the gateway already manages",
                self.header
            ))
            .hint(format!(
                "use its own name; the default is {:?}",
                trueip::provenance::DEFAULT_HEADER
            ))
            .at("upstream.sign.header"));
        }
        let path = self.key_file.display();
        let bytes = std::fs::read(&self.key_file).map_err(|e| {
            ConfigError::new(format!("cannot read the signing key {path}: {e}"))
                .hint("make one with `openssl rand -base64 48 > trueip.key` (mode 0600) and give the app the same file")
                .at("upstream.sign.key_file")
        })?;
        let key = trueip::provenance::Key::new(&bytes)
            .map_err(|e| ConfigError::new(format!("signing key {path}: {}", e.message())).hint(
                "make one with `openssl rand -base64 48 > trueip.key` and give the app the same file",
            ).at("upstream.sign.key_file"))?;
        Ok(Signing { header, key: Some(key) })
    }
}

/// Refuses an origin secret in the signed client header's name (configured, or the
/// default one, which the gateway removes from every request signing or not), in any
/// spelling an app reads as the same header. The secret is the CDN's proof, spent at the
/// gateway; the signed header is the gateway's claim, which no one else may write. As one
/// header, a client's copy of the signed header was dropped as a spent secret rather than
/// stripped as a forgery (never counted, never in the record of forgeries), and an app
/// or a second gateway checking the secret would be handed a signature in its place.
fn check_sign_apart(headers: &HeaderSettings) -> Result<(), ConfigError> {
    let sign = &headers.signing.header;
    let Some(secret) = &headers.origin_secret else {
        return Ok(());
    };
    if !trueip::headers::spells(&trueip::headers::dashed(sign.as_str()), secret.as_str()) {
        return Ok(());
    }
    Err(ConfigError::new(format!(
        "client_ip.origin_secret names header \"{}\", the header upstream.sign.header names for the signed client header (default {:?})",
        secret.as_str(),
        trueip::provenance::DEFAULT_HEADER
    ))
    .hint("the origin secret is the header your CDN writes, the signed client header the one the gateway writes: give them different names")
    .at("upstream.sign.header"))
}

/// The roots an `https://` upstream's certificate is checked against, without a CA file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TlsRoots {
    /// Mozilla's, compiled in (webpki-roots): the same on every host.
    #[default]
    Webpki,
    /// The operating system's bundle (`SSL_CERT_FILE`, else the usual paths).
    System,
}

impl Named for TlsRoots {
    const WHAT: &'static str = "TLS roots";
    const NAMES: &'static [(&'static str, Self)] =
        &[("webpki", TlsRoots::Webpki), ("system", TlsRoots::System)];
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            url: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle: 1024,
            pool_max_idle_total: 1024,
            proxy_protocol: SendProxy::Off,
            http2: false,
            ca_file: None,
            tls_roots: TlsRoots::Webpki,
            server_name: None,
            client_cert: None,
            client_key: None,
            sign: None,
        }
    }
}

/// `[headers]`, and what checking it derives.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
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
    /// More header names to treat as client-IP headers, as written.
    pub(crate) strip: Vec<String>,
    /// Client-IP headers of the built-in table to pass from any client, as written.
    pub(crate) keep: Vec<String>,
    /// Client addresses (of the built-in table or `strip`) that trusted hops may pass
    /// though no strategy reads them, as written.
    pub(crate) relay: Vec<String>,
    /// Remove the query arguments and cookies that `query:NAME` and `cookie:NAME`
    /// strategies read before forwarding, whoever sent them.
    pub(crate) strip_client_source: bool,
    /// Checked: the query arguments to remove (`strip_client_source`).
    #[serde(skip)]
    pub(crate) source_args: Vec<trueip::ParamName>,
    /// Checked: the cookies to remove (`strip_client_source`).
    #[serde(skip)]
    pub(crate) source_cookies: Vec<trueip::ParamName>,
    /// The hosts requests may name (Host, and X-Forwarded-Host from a trusted hop), as
    /// written: `example.com`, `*.example.com`, `*`; empty: any.
    pub(crate) allowed_hosts: Vec<String>,
    /// Checked: `allowed_hosts`.
    #[serde(skip)]
    pub(crate) allowed: Vec<HostPattern>,
    /// Checked: the extra client-IP header names (from `strip` and from `header:NAME`
    /// strategies), lower case.
    #[serde(skip)]
    pub(crate) extra: Vec<FieldName>,
    /// Checked: `keep`, names of the built-in table (`trueip::headers::names::FORWARDING`),
    /// lower case.
    #[serde(skip)]
    pub(crate) kept: Vec<FieldName>,
    /// Checked: `relay`, lower case.
    #[serde(skip)]
    pub(crate) relayed: Vec<FieldName>,
    /// The origin secret header (`client_ip.origin_secret`), removed before forwarding.
    #[serde(skip)]
    pub(crate) origin_secret: Option<FieldName>,
    /// Checked `[upstream] sign`.
    #[serde(skip)]
    pub(crate) signing: Signing,
}

impl Default for HeaderSettings {
    fn default() -> Self {
        HeaderSettings {
            x_real_ip: true,
            x_forwarded_for: ListMode::Replace,
            forwarded: ListMode::Replace,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            x_forwarded_port: true,
            strip: Vec::new(),
            keep: Vec::new(),
            relay: Vec::new(),
            strip_client_source: false,
            source_args: Vec::new(),
            source_cookies: Vec::new(),
            allowed_hosts: Vec::new(),
            allowed: Vec::new(),
            extra: Vec::new(),
            kept: Vec::new(),
            relayed: Vec::new(),
            origin_secret: None,
            signing: Signing::default(),
        }
    }
}

/// `[limits]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Limits {
    /// Open connections, all listeners together.
    pub(crate) max_connections: usize,
    /// Request head size (431 above).
    pub(crate) max_header_bytes: usize,
    /// Header count (431 above).
    pub(crate) max_headers: usize,
    /// Accept queue length of every listening socket.
    pub(crate) backlog: u32,
    /// Worker threads, each with its own event loop, accepting on every listener. The
    /// default, the number of CPUs, is the machine's: not written back.
    #[serde(skip_serializing)]
    pub(crate) workers: usize,
    /// Whether plain cleartext HTTP/1.1 requests take the lean path (`http::lean`);
    /// `false` sends every connection through hyper. Tests drive both paths with the
    /// same requests and compare what the upstream receives (`tests/differential.rs`).
    pub(crate) lean_http1: bool,
    /// Whether an HTTP listener's socket holds a new connection in the kernel until its
    /// first bytes arrive, for at most a second (Linux's `TCP_DEFER_ACCEPT`; see
    /// `listening::defers`).
    pub(crate) defer_accept: bool,
    /// Time to read a request head; a connection's first (and HTTP/2's preface) from
    /// when the connection is ready for HTTP.
    #[serde(with = "duration")]
    pub(crate) header_read_timeout: Duration,
    /// No bytes either way and no request in flight for this long closes a connection.
    #[serde(with = "duration")]
    pub(crate) idle_timeout: Duration,
    /// How long a write to a client may wait for room (a client that stopped reading),
    /// and an HTTP/2 response chunk for the client's flow-control credit.
    #[serde(with = "duration")]
    pub(crate) send_timeout: Duration,
    /// TLS handshake.
    #[serde(with = "duration")]
    pub(crate) tls_handshake_timeout: Duration,
    /// PROXY header read.
    #[serde(with = "duration")]
    pub(crate) proxy_protocol_timeout: Duration,
    /// PROXY header size.
    pub(crate) proxy_protocol_max_bytes: usize,
    /// Drain time on shutdown.
    #[serde(with = "duration")]
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            backlog: 1024,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            lean_http1: true,
            defer_accept: true,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            proxy_protocol_timeout: Duration::from_secs(5),
            proxy_protocol_max_bytes: 512,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// `[admin] max_connections` by default: a few scrapers, health checks and an operator's
/// curl, each a short exchange.
const ADMIN_MAX_CONNECTIONS: usize = 16;

/// `[admin]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AdminSettings {
    /// `/.trueip`, or empty (off).
    pub(crate) prefix: String,
    /// A separate listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) listen: Option<SocketAddr>,
    /// Open connections on the admin listener, a budget of its own: public connections
    /// (`limits.max_connections`) cannot take it, so `/metrics` answers during a flood.
    pub(crate) max_connections: usize,
    /// How many forged requests the admin listener keeps (0: none).
    pub(crate) forgeries: usize,
    /// Whether the in-band metrics answer every client, not only those a stranger cannot
    /// be ([`crate::rules::route`]).
    pub(crate) metrics_to_anyone: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            prefix: "/.trueip".to_string(),
            listen: None,
            max_connections: ADMIN_MAX_CONNECTIONS,
            forgeries: crate::forgeries::DEFAULT_KEPT,
            metrics_to_anyone: false,
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogSettings {
    /// Text or JSON.
    pub(crate) format: LogFormat,
    /// Env-filter directive.
    pub(crate) level: String,
    /// One line per request on stdout.
    pub(crate) access_log: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { format: LogFormat::Text, level: "info".to_string(), access_log: true }
    }
}

/// Everything checked: nothing here can fail on a request.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The client-IP policy (`[client_ip]`).
    pub(crate) policy: Policy,
    /// Each listener's own policy (`[[listen]] client_ip`), by listener index; `None`:
    /// `[client_ip]` decides for it.
    pub(crate) listener_policies: Vec<Option<ListenerPolicy>>,
    /// Listeners, in file order.
    pub(crate) listeners: Vec<ListenerSettings>,
    /// Each listener's socket, by listener index: which socket stays across a reload
    /// that reorders, adds or removes listeners (see `crate::listening`).
    pub(crate) ids: Vec<ListenerId>,
    /// The upstream (`url` `None`: whoami); its connect timeout is also that of
    /// tcp-mode listeners.
    pub(crate) upstream: UpstreamSettings,
    /// Header hygiene.
    pub(crate) headers: HeaderSettings,
    /// Limits.
    pub(crate) limits: Limits,
    /// Admin endpoints.
    pub(crate) admin: AdminSettings,
    /// Logging.
    pub(crate) log: LogSettings,
    /// The range list cache and its refresh.
    pub(crate) ranges: RangesSettings,
    /// The provider lists the policy read from the cache.
    pub(crate) loaded: Loaded,
    /// What the host names of the trust specs resolved to, as the policy uses them.
    pub(crate) names: crate::names::Addresses,
    /// `[client_ip] resolve_every`: how often the names are resolved again.
    pub(crate) resolve_every: Duration,
    /// What `trueip::lint` finds dangerous in the policies and listeners, for `--check`.
    pub(crate) lint: Vec<trueip::lint::Finding>,
}

const EXAMPLES: &str = "\
Examples:
  trueip serve
      The safe default: listen on 127.0.0.1:8080, trust no proxy, answer every request
      with the whoami page (HTML; JSON at /json). Health at /healthz, metrics at /metrics.

  trueip serve --upstream http://127.0.0.1:3000 --trust 10.0.0.0/8 --strategy rightmost-untrusted
      Behind nginx or a load balancer in 10.0.0.0/8: forward to the app with clean
      X-Real-IP / X-Forwarded-For / Forwarded headers.

  trueip serve --listen 0.0.0.0:8080 --proxy-protocol v2 --proxy-protocol-from 10.0.0.0/8 \\
               --upstream unix:/run/app.sock
      Behind an AWS NLB (or HAProxy send-proxy-v2): the PROXY header names the client.

  trueip serve --config /etc/trueip/trueip.toml
      Everything else (TLS, TCP mode, limits, logs): see trueip.example.toml. With
      [upstream] sign = { key_file = \"/etc/trueip/sign.key\" } every forwarded request
      carries a Trueip-Signature header (HMAC-SHA256 over the client and the request) that
      the app verifies with trueip's adapters, so a client that reaches the app directly
      cannot pose as one that came through the gateway.
      SIGHUP reloads the file and the range cache, listeners and limits.max_connections
      included, without cutting a connection; SIGTERM/SIGINT drain in-flight requests and
      exit.

  trueip ranges update cloudflare && trueip serve --strategy cloudflare
      Behind Cloudflare: CF-Connecting-IP from Cloudflare's published ranges, read from the
      cache `trueip ranges` keeps (--ranges-dir, [ranges] dir; [ranges] refresh = \"24h\" keeps
      them fresh from inside the gateway).

  trueip serve --upstream http://app:3000 --trust lb.internal --trust host:nginx
      Behind proxies known by name (containers by service name): the names are resolved at
      start (one that does not resolve is an error) and every [client_ip] resolve_every
      (30s); a name that stops resolving keeps its last addresses. --check and /metrics
      (trueip_trust_name_addresses) show what they resolved to.

  trueip serve --config /etc/trueip/trueip.toml --check
      Check the config (and TLS files) and exit.

  [admin] listen = \"127.0.0.1:9100\" in the config
      A private listener for /healthz, /metrics and /forgeries: the last [admin] forgeries
      (100; at most 4096, 0 for none) requests that tried to forge an address, with the rule
      that caught each (JSON, newest first, ?limit=N; client text escaped and cut). Its
      connections have a budget of their own ([admin] max_connections, 16) that public
      ones (limits.max_connections) cannot take: /metrics answers during a flood.

Exit codes: 0 clean shutdown (or valid config with --check), 1 runtime failure
(e.g. cannot bind), 2 invalid config or arguments.";

/// `--strategy`'s long help: every strategy and preset, from the strategy table.
fn strategy_help() -> String {
    format!(
        "How to find the client. Repeatable: a fallback chain (the first strategy with an \
         answer decides).\n\n{}",
        trueip::StrategySpec::help().trim_end()
    )
}

/// Run the gateway: a reverse proxy that hands the app a client address it can trust.
#[derive(Clone, Debug, Default, clap::Args)]
#[command(after_long_help = EXAMPLES, after_help = "Run `trueip serve --help` for examples.")]
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "these comments are --help texts, where [upstream] names a TOML table; `\\[` would show"
)]
pub struct ServeArgs {
    /// The TOML config file (every key is documented in trueip.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Listen on ADDR, e.g. 0.0.0.0:8080, or a Unix socket, unix:/run/trueip.sock
    /// (repeatable). Replaces the config's [[listen]] tables with plain HTTP listeners.
    /// A Unix-socket peer's headers count only with --trust unix.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,

    /// Forward to URL: http://host:port, https://host:port (its certificate verified:
    /// [upstream] ca_file, tls_roots, server_name) or unix:/path/to.sock; `whoami` serves
    /// the built-in page instead. HTTP/2 to it: [upstream] http2 = true.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// Trust these proxies: a CIDR, an address, loopback, private, any, unix (peers on a
    /// Unix socket, which `any` does not include), a provider (its list from the range
    /// cache; NAME=FILE reads it from FILE), or a host name (lb.internal; host:NAME without
    /// a dot), resolved at start and every client_ip.resolve_every (30s). Repeatable;
    /// replaces client_ip.trusted.
    #[arg(long, value_name = "SPEC")]
    pub trust: Vec<String>,

    /// How to find the client: a strategy or a provider preset (`--help` lists them).
    /// Repeatable: a fallback chain.
    #[arg(long, value_name = "NAME", long_help = strategy_help())]
    pub strategy: Vec<String>,

    /// Which list header the list strategies (rightmost-untrusted, rightmost, hops:N,
    /// leftmost) read: xff (X-Forwarded-For, the default) or forwarded (RFC 7239).
    #[arg(long, value_name = "xff|forwarded")]
    pub from: Option<String>,

    /// Expect a PROXY protocol header on every listener (from-senders: from the
    /// --proxy-protocol-from senders, while everyone else connects without one).
    #[arg(long, value_name = "off|v1|v2|any|from-senders")]
    pub proxy_protocol: Option<String>,

    /// Senders allowed to send PROXY headers (repeatable; replaces
    /// client_ip.proxy_protocol_from).
    #[arg(long, value_name = "SPEC")]
    pub proxy_protocol_from: Vec<String>,

    /// The provider range list cache (`trueip ranges update` fills it). Replaces
    /// [ranges] dir.
    #[arg(long, value_name = "DIR")]
    pub ranges_dir: Option<PathBuf>,

    /// Check the config (and TLS files), print a summary and exit.
    #[arg(long)]
    pub check: bool,
}

/// A listener's own policy (`[[listen]] client_ip`) and its name, `listen[1].client_ip`,
/// made once: the access log and the metrics name it.
#[derive(Clone, Debug)]
pub(crate) struct ListenerPolicy {
    pub(crate) policy: Policy,
    pub(crate) name: std::sync::Arc<str>,
}

/// The address `trueip serve` listens on when nothing says otherwise.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// Reads and parses a config file. The relative paths it names are made relative to its
/// directory ([`FileConfig::paths_from`]).
pub(crate) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
            .hint("check the --config path")
    })?;
    let mut file = parse_toml(&text).map_err(|e| e.at(path.display().to_string()))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    file.paths_from(dir).map_err(|e| e.at(path.display().to_string()))?;
    Ok(file)
}

impl FileConfig {
    /// Makes every relative path the file names relative to `dir`, the file's directory,
    /// by the core's one rule (`trueip::config::in_dir_of`): provider files (of
    /// `[client_ip]` and each listener's own), TLS certificates and keys, the upstream's
    /// Unix socket, CA file and client certificate, the signing key, the range cache
    /// directory and `[ranges.from]` files. (`[[listen]] address` takes absolute Unix
    /// socket paths only.) Text with no file behind it (`Settings::from_text`) is not
    /// passed here: its paths are read from the working directory.
    fn paths_from(&mut self, dir: &Path) -> Result<(), ConfigError> {
        use trueip::config::in_dir_of;
        let at = |p: &mut PathBuf| *p = in_dir_of(dir, p);
        self.client_ip.paths_from(dir)?;
        for (i, l) in self.listen.iter_mut().enumerate() {
            if let Some(own) = &mut l.client_ip {
                own.paths_from(dir)
                    .map_err(|e| ConfigError::new(format!("in listen[{i}].client_ip: {e}")))?;
            }
            for tls in l.tls.iter_mut().flat_map(|t| t.certs.iter_mut()) {
                at(&mut tls.cert);
                at(&mut tls.key);
            }
        }
        let up = &mut self.upstream;
        if let Some(UpstreamTarget::Unix(p)) = &mut up.url {
            at(p);
        }
        up.ca_file.iter_mut().for_each(at);
        up.client_cert.iter_mut().for_each(at);
        up.client_key.iter_mut().for_each(at);
        if let Some(sign) = &mut up.sign {
            at(&mut sign.key_file);
        }
        self.ranges.paths_from(dir)
    }
}

/// Parses TOML text. An error names the key it is about, and its line.
pub(crate) fn parse_toml(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_string();
        let mut err = ConfigError::new(format!("invalid config: {message}"));
        // The gateway's own values say how to write them; serde's errors do not.
        if !message.contains("(hint: ") {
            err = err.hint("see trueip.example.toml for every key and its default");
        }
        match e.span() {
            Some(span) => err.at(key_at(text, span.start)),
            None => err,
        }
    })
}

/// The key at byte `at` of a TOML text, with its line: `listen[1].mode (line 7)`. Read
/// from the text: the last table header before it (an array of tables counted) and the
/// key of the line, or of the nearest line above that has one.
fn key_at(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut key = None;
    let upto = text.get(at..).and_then(|rest| rest.find('\n')).map_or(text.len(), |n| at + n);
    for l in text.get(..upto).unwrap_or(text).lines() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = match counts.iter_mut().find(|(t, _)| *t == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{n}]");
            key = None;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
            key = None;
        } else if let Some((k, _)) = l.split_once('=').filter(|_| !l.starts_with('#')) {
            key = Some(k.trim().trim_matches(['"', '\'']).to_string());
        }
    }
    let path = match (table.is_empty(), key) {
        (_, None) => table,
        (true, Some(key)) => key,
        (false, Some(key)) => format!("{table}.{key}"),
    };
    if path.is_empty() { format!("line {line}") } else { format!("{path} (line {line})") }
}

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

/// A timeout longer than zero and at most [`MAX_TIMEOUT`], or an error naming `key`.
fn timeout(d: Duration, key: &str) -> Result<(), ConfigError> {
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
    Ok(())
}

/// `value` within `range`, or an error naming `key` and the range (`why` says what the
/// value counts).
fn within<T>(
    value: T,
    range: std::ops::RangeInclusive<T>,
    key: &str,
    why: &str,
) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        return Ok(());
    }
    let (min, max) = (range.start(), range.end());
    let message = if value > *max {
        format!("{key} {value} is larger than the largest allowed, {max}")
    } else {
        format!("{key} {value} is out of range")
    };
    Err(ConfigError::new(message).hint(format!("use {min} to {max} ({why})")).at(key))
}

/// Adds the addresses of the host names `wanted` to `names`: those it has, else
/// `known`'s (a refresh's, which keep the last good addresses of a name that failed),
/// else resolved now, each of which must resolve. `[client_ip]` and every listener's own
/// table read their names through here, so a refresh treats them all alike.
fn add_names(
    names: &mut crate::names::Addresses,
    wanted: Vec<String>,
    known: &crate::names::Addresses,
) -> Result<(), ConfigError> {
    let mut unknown = Vec::new();
    for name in wanted {
        match known.get(&name) {
            _ if names.contains_key(&name) => {}
            Some(addrs) => {
                names.insert(name, addrs.clone());
            }
            None => unknown.push(name),
        }
    }
    if !unknown.is_empty() {
        names.extend(crate::names::resolve_all(&unknown, &*crate::names::resolver())?);
    }
    Ok(())
}

/// `trueip::lint` over `[client_ip]` and each listener's own `client_ip`.
fn lint(client_ip: &ClientIpConfig, listeners: &[ListenerSettings]) -> Vec<trueip::lint::Finding> {
    let facts: Vec<_> = listeners
        .iter()
        .map(|l| {
            let listener = trueip::lint::Listener {
                address: match &l.address {
                    ListenAddr::Tcp(addr) => Some(*addr),
                    ListenAddr::Unix(_) => None,
                },
                proxy_protocol: l.proxy_protocol != ProxyProtocol::Off,
            };
            (listener, l.client_ip.as_ref())
        })
        .collect();
    trueip::lint::lint_listeners(client_ip, &facts)
}

impl Settings {
    /// Checks a config text without flags, as `trueip serve --check` does; `read` loads
    /// provider range files. Text has no file, so no directory: its relative paths stay
    /// as written, for the working directory to resolve.
    pub(crate) fn from_text(
        text: &str,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Settings, String> {
        let file = parse_toml(text).map_err(|e| e.to_string())?;
        let none = crate::names::Addresses::new();
        Settings::from_file_named(file, &ServeArgs::default(), read, &none)
            .map_err(|e| e.to_string())
    }

    /// Checks a file's values with flags applied; `read` loads provider range files. The
    /// addresses of host names in `known` are taken as resolved (a refresh's, which kept
    /// the last good ones of names that failed); others are resolved now, and must resolve.
    pub(crate) fn from_file_named(
        mut file: FileConfig,
        flags: &ServeArgs,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
        known: &crate::names::Addresses,
    ) -> Result<Settings, ConfigError> {
        file.client_ip.apply_flags(&trueip::config::Flags {
            trust: &flags.trust,
            strategy: &flags.strategy,
            from: flags.from.as_deref(),
            proxy_protocol_from: &flags.proxy_protocol_from,
        })?;
        file.ranges.check()?;
        let ranges_dir = file.ranges.dir(flags.ranges_dir.as_deref());
        let mut loaded = crate::ranges::load_for(&file.client_ip, &ranges_dir)?;
        let resolve_every = crate::names::every(file.client_ip.resolve_every.as_deref())?;
        let mut names = crate::names::Addresses::new();
        add_names(&mut names, file.client_ip.host_names(), known)?;
        let policy =
            file.client_ip.build_resolved(read, &loaded.sets, &crate::names::sets(&names))?;

        let from_flags = !flags.listen.is_empty();
        if from_flags {
            file.listen = flags
                .listen
                .iter()
                .map(|a| {
                    a.parse::<ListenAddr>()
                        .map(ListenerSettings::http)
                        .map_err(|e| e.at("--listen"))
                })
                .collect::<Result<_, _>>()?;
        }
        if file.listen.is_empty() {
            file.listen = FileConfig::default().listen;
        }
        let flag_pp = flags
            .proxy_protocol
            .as_deref()
            .map(ProxyProtocol::parse)
            .transpose()
            .map_err(|e| e.at("--proxy-protocol"))?;
        let mut listener_policies = Vec::with_capacity(file.listen.len());
        let secret = |c: &ClientIpConfig| {
            c.origin_secret.as_ref().map(|s| s.header.trim().to_ascii_lowercase())
        };
        // The one origin secret header the gateway removes before forwarding, and the
        // table that names it: `[client_ip]`'s, else the first listener's.
        let mut first_secret = secret(&file.client_ip).map(|h| (h, "[client_ip]".to_owned()));
        for (i, l) in file.listen.iter_mut().enumerate() {
            if let Some(pp) = flag_pp {
                l.proxy_protocol = pp;
            }
            let own = match &l.client_ip {
                Some(config) => {
                    let within =
                        |e: ConfigError| ConfigError::new(format!("in listen[{i}].client_ip: {e}"));
                    let more = crate::ranges::load_for(config, &ranges_dir).map_err(within)?;
                    for meta in more.metas {
                        if !loaded.metas.iter().any(|m| m.provider == meta.provider) {
                            loaded.metas.push(meta);
                        }
                    }
                    loaded.sets.extend(more.sets);
                    add_names(&mut names, config.host_names(), known).map_err(within)?;
                    let own = config
                        .build_resolved(read, &loaded.sets, &crate::names::sets(&names))
                        .map_err(within)?;
                    // Every listener's secret is removed before forwarding only when they
                    // all name one header: a second name reached the upstream, the
                    // secret's value with it.
                    match (secret(config), &first_secret) {
                        (Some(mine), Some((first, named_by))) if mine != *first => {
                            return Err(ConfigError::new(format!(
                                "listen[{i}].client_ip.origin_secret names header \"{mine}\", {named_by} names \"{first}\""
                            ))
                            .hint("the gateway removes one origin secret header before forwarding: use the same header name (values may differ)")
                            .at(format!("listen[{i}].client_ip.origin_secret")));
                        }
                        (Some(mine), None) => {
                            first_secret = Some((mine, format!("listen[{i}].client_ip")));
                        }
                        _ => {}
                    }
                    Some(ListenerPolicy {
                        policy: own,
                        name: format!("listen[{i}].client_ip").into(),
                    })
                }
                None => None,
            };
            let at = |key: &str| match from_flags {
                true => "--listen".to_string(),
                false => format!("listen[{i}].{key}"),
            };
            l.check(own.as_ref().map_or(&policy, |o| &o.policy), at, flag_pp.is_some())?;
            if let Some(tls) = &mut l.tls {
                tls.check(&format!("listen[{i}].tls"))?;
            }
            listener_policies.push(own);
        }
        for (i, a) in file.listen.iter().enumerate() {
            if let Some(j) = file.listen.iter().take(i).position(|b| b.address == a.address) {
                return Err(ConfigError::new(format!("address {} is listed twice", a.address))
                    .hint(format!("listen[{j}] already binds it"))
                    .at(format!("listen[{i}].address")));
            }
        }

        match flags.upstream.as_deref() {
            Some("whoami") => file.upstream.url = None,
            Some(url) => {
                file.upstream.url = Some(url.parse().map_err(|e: ConfigError| e.at("--upstream"))?)
            }
            None => {}
        }
        file.upstream.check()?;
        file.headers.check(&file.client_ip, &policy)?;
        // A listener's own policy may read more headers (`header:NAME`) and carry the
        // origin secret: every name any policy reads is handled the same way.
        for (l, own) in file.listen.iter().zip(&listener_policies) {
            if let (Some(config), Some(own)) = (&l.client_ip, own) {
                let mut more = file.headers.clone();
                more.check(config, &own.policy)?;
                for name in more.extra {
                    if !file.headers.extra.contains(&name) {
                        file.headers.extra.push(name);
                    }
                }
                if file.headers.origin_secret.is_none() {
                    file.headers.origin_secret = more.origin_secret;
                }
            }
        }
        file.headers.check_relay()?;
        if let Some(sign) = &file.upstream.sign {
            file.headers.signing = sign.load()?;
        }
        check_sign_apart(&file.headers)?;
        file.limits.check()?;
        file.admin.check()?;
        if let Some(a) = file.admin.listen
            && let Some(i) = file.listen.iter().position(|l| l.address == ListenAddr::Tcp(a))
        {
            return Err(ConfigError::new(format!("admin.listen {a} is also listen[{i}]"))
                .hint("give the admin listener its own port")
                .at("admin.listen"));
        }
        file.log.check()?;
        let lint = lint(&file.client_ip, &file.listen);
        Ok(Settings {
            policy,
            listener_policies,
            lint,
            ids: (0..file.listen.len()).map(ListenerId::nth).collect(),
            listeners: file.listen,
            upstream: file.upstream,
            headers: file.headers,
            limits: file.limits,
            admin: file.admin,
            log: file.log,
            ranges: file.ranges,
            loaded,
            names,
            resolve_every,
        })
    }

    /// The index of the listener whose socket is `id`; `None` once a reload removed it.
    pub(crate) fn listener_index(&self, id: ListenerId) -> Option<usize> {
        self.ids.iter().position(|&i| i == id)
    }

    /// The policy that decides for the listener whose socket is `listener` (`None`: the
    /// admin listener): its own `client_ip` table, else `[client_ip]`. A listener a
    /// reload removed, whose connections are closing, trusts nobody: no rule that no
    /// longer exists keeps vouching for its peers.
    pub(crate) fn policy_for(&self, listener: Option<ListenerId>) -> &Policy {
        self.decider(listener).0
    }

    /// The name of the policy [`policy_for`](Self::policy_for) picks, as whoami and the
    /// access log show it.
    pub(crate) fn policy_name(&self, listener: Option<ListenerId>) -> &str {
        self.decider(listener).1
    }

    #[inline]
    fn decider(&self, listener: Option<ListenerId>) -> (&Policy, &str) {
        static TRUST_NOBODY: std::sync::LazyLock<Policy> =
            std::sync::LazyLock::new(Policy::default);
        let global = (&self.policy, "client_ip");
        match listener.map(|id| self.listener_index(id)) {
            None => global,
            Some(Some(i)) => self.own_policy_at(i).map_or(global, |o| (&o.policy, &*o.name)),
            Some(None) => (&TRUST_NOBODY, "none (a reload closed the listener)"),
        }
    }

    /// The name of the policy deciding for each listener, in order: `client_ip`, or
    /// `listen[1].client_ip` for one with its own.
    pub(crate) fn listener_policy_names(&self) -> impl Iterator<Item = &str> {
        (0..self.listeners.len()).map(|i| self.own_policy_at(i).map_or("client_ip", |o| &*o.name))
    }

    /// The own policy of listener `index`, if it has one.
    pub(crate) fn own_policy_at(&self, index: usize) -> Option<&ListenerPolicy> {
        self.listener_policies.get(index).and_then(Option::as_ref)
    }
}

/// A listening socket, for as long as it is open: the same across reloads that keep its
/// address, whatever the listener's place in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ListenerId(u32);

impl ListenerId {
    /// The `n`th socket opened.
    pub(crate) fn nth(n: usize) -> ListenerId {
        ListenerId(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl ListenerSettings {
    /// Checks the keys that go together: a PROXY header needs senders allowed to send
    /// one; `upstream` and `send_proxy_protocol` belong to tcp mode, which needs an
    /// upstream. `at` names a key of this table; `flag_pp` says `--proxy-protocol` set
    /// the mode.
    fn check(
        &self,
        policy: &Policy,
        at: impl Fn(&str) -> String,
        flag_pp: bool,
    ) -> Result<(), ConfigError> {
        if self.proxy_protocol != ProxyProtocol::Off && policy.proxy_protocol_from().is_empty() {
            return Err(ConfigError::new(format!("listener {} expects a PROXY header but no sender may send one", self.address))
                .hint("list the load balancer's addresses in client_ip.proxy_protocol_from (or --proxy-protocol-from 10.0.0.0/8)")
                .at(if flag_pp { "--proxy-protocol".to_string() } else { at("proxy_protocol") }));
        }
        if let ListenAddr::Unix(_) = self.address {
            if self.proxy_protocol != ProxyProtocol::Off {
                return Err(ConfigError::new(format!("listener {}: PROXY headers are not read on Unix sockets", self.address))
                    .hint("a proxy on the same host passes the client in X-Forwarded-For: trust it with client_ip.trusted = [\"unix\"]")
                    .at(if flag_pp { "--proxy-protocol".to_string() } else { at("proxy_protocol") }));
            }
            if self.mode == Mode::Tcp {
                return Err(ConfigError::new(format!("listener {}: mode = \"tcp\" needs a TCP listener", self.address))
                    .hint("a relay names the client in a PROXY header, which a Unix-socket peer has no address for; use mode = \"http\"")
                    .at(at("mode")));
            }
        } else {
            for (key, set) in
                [("unix_mode", self.unix_mode.is_some()), ("unix_owner", self.unix_owner.is_some())]
            {
                if set {
                    return Err(ConfigError::new(format!("{key} is for unix: listeners"))
                        .hint("set it in a [[listen]] table whose address is unix:/path")
                        .at(at(key)));
                }
            }
        }
        if let Some(owner) = &self.unix_owner {
            SocketOwner::from_system(owner).map_err(|e| e.at(at("unix_owner")))?;
        }
        match (self.mode, &self.upstream) {
            (Mode::Tcp, Some(u)) => {
                let ok = u.trim().rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
                });
                if !ok {
                    return Err(ConfigError::new(format!("invalid TCP upstream \"{u}\""))
                        .hint("write host:port, e.g. \"10.0.0.9:5432\"")
                        .at(at("upstream")));
                }
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
            (Mode::Http, None) => {}
        }
        if self.mode == Mode::Http && self.send_proxy_protocol.is_some() {
            return Err(ConfigError::new("send_proxy_protocol is a tcp-mode key")
                .hint("for HTTP listeners use [upstream] proxy_protocol")
                .at(at("send_proxy_protocol")));
        }
        Ok(())
    }
}

impl UpstreamSettings {
    fn check(&self) -> Result<(), ConfigError> {
        timeout(self.connect_timeout, "upstream.connect_timeout")?;
        timeout(self.response_timeout, "upstream.response_timeout")?;
        timeout(self.body_timeout, "upstream.body_timeout")?;
        timeout(self.pool_idle_timeout, "upstream.pool_idle_timeout")?;
        within(
            self.pool_max_idle,
            0..=MAX_POOL_IDLE,
            "upstream.pool_max_idle",
            "idle connections kept open to the upstream",
        )?;
        within(
            self.pool_max_idle_total,
            0..=MAX_POOL_IDLE,
            "upstream.pool_max_idle_total",
            "idle connections kept open to the upstream in all",
        )?;
        self.check_tls()
    }

    /// The TLS keys belong to an `https://` upstream, and name a usable server name.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let https = matches!(self.url, Some(UpstreamTarget::Https(_)));
        let set = [
            ("ca_file", self.ca_file.is_some()),
            ("tls_roots", self.tls_roots != TlsRoots::default()),
            ("server_name", self.server_name.is_some()),
            ("client_cert", self.client_cert.is_some()),
            ("client_key", self.client_key.is_some()),
        ];
        if !https && let Some((key, _)) = set.iter().find(|(_, set)| *set) {
            return Err(ConfigError::new(format!(
                "{key} applies to https:// upstreams, and url is {}",
                self.url.as_ref().map_or_else(|| "unset (whoami)".to_string(), ToString::to_string)
            ))
            .hint("write url = \"https://host:port\", or remove the key")
            .at(format!("upstream.{key}")));
        }
        if self.ca_file.is_some() && self.tls_roots != TlsRoots::default() {
            return Err(ConfigError::new("ca_file replaces tls_roots; both are set")
                .hint("keep ca_file to trust only its authorities, or tls_roots to trust a bundle")
                .at("upstream.tls_roots"));
        }
        if let Some(name) = &self.server_name
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return Err(
                ConfigError::new(format!("invalid server name \"{name}\""))
                    .hint("a DNS name (app.internal) or an IP address, as the upstream's certificate names it")
                    .at("upstream.server_name"),
            );
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => Err(ConfigError::new("client_cert without client_key")
                .hint("name the PEM private key of the client certificate")
                .at("upstream.client_key")),
            (None, Some(_)) => Err(ConfigError::new("client_key without client_cert")
                .hint("name the PEM certificate chain the key belongs to")
                .at("upstream.client_cert")),
            _ => Ok(()),
        }
    }
}

/// One entry of `headers.allowed_hosts`, checked: lower case, no port, no trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// `example.com`, `192.0.2.7`, `[2001:db8::1]`: this host exactly.
    Exact(String),
    /// `*.example.com`: any subdomain (not `example.com` itself), kept as `.example.com`.
    Subdomains(String),
    /// `*`: any host (the list then only documents intent).
    Any,
}

impl FromStr for HostPattern {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
        if lower == "*" {
            return Ok(HostPattern::Any);
        }
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let bracketed = name.starts_with('[') && name.ends_with(']');
        let valid = !name.is_empty()
            && name.len() <= 253
            && if bracketed {
                !wild
                    && name
                        .get(1..name.len() - 1)
                        .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
            } else {
                name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
            };
        if !valid {
            return Err(ConfigError::new(format!("invalid allowed host \"{text}\"")).hint(
                "write a host name without a port or scheme (\"example.com\"), \"*.example.com\" for its subdomains, an address (\"192.0.2.7\", \"[2001:db8::1]\") or \"*\"",
            ));
        }
        Ok(match wild {
            true => HostPattern::Subdomains(format!(".{name}")),
            false => HostPattern::Exact(name.to_string()),
        })
    }
}

impl HeaderSettings {
    /// Checks `strip` and `keep` into `extra` and `kept`, and adds the names the policy
    /// reads (`header:NAME` strategies) and the origin secret.
    fn check(&mut self, client_ip: &ClientIpConfig, policy: &Policy) -> Result<(), ConfigError> {
        self.allowed = self
            .allowed_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                h.parse().map_err(|e: ConfigError| e.at(format!("headers.allowed_hosts[{i}]")))
            })
            .collect::<Result<_, _>>()?;
        let mut extra: Vec<FieldName> = Vec::new();
        for (i, name) in self.strip.iter().enumerate() {
            let name =
                FieldName::new(name.trim()).map_err(|e| e.at(format!("headers.strip[{i}]")))?;
            if !extra.contains(&name) {
                extra.push(name);
            }
        }
        let origin_secret =
            client_ip.origin_secret.as_ref().and_then(|s| FieldName::new(s.header.trim()).ok());
        // A header a `header:NAME` strategy reads is a client-IP header by definition: the
        // core names them (`Policy::client_ip_headers`, the set the middlewares withhold).
        // The origin secret, which it names too, has a rule of its own here.
        for name in policy.client_ip_headers() {
            if Some(name) != origin_secret.as_ref()
                && !extra.contains(name)
                && !trueip::headers::names::FORWARDING.iter().any(|row| &row.name == name)
            {
                extra.push(name.clone());
            }
        }
        self.kept = keep(&self.keep, &extra, origin_secret.as_ref(), policy)?;
        self.extra = extra;
        self.origin_secret = origin_secret;
        self.source_args.clear();
        self.source_cookies.clear();
        if self.strip_client_source {
            self.source_args = policy.query_names().into_iter().cloned().collect();
            self.source_cookies = policy.cookie_names().into_iter().cloned().collect();
            if self.source_args.is_empty() && self.source_cookies.is_empty() {
                return Err(ConfigError::new(
                    "strip_client_source is set, but no strategy reads a query argument or a cookie",
                )
                .hint("add a query:NAME or cookie:NAME strategy to [client_ip], or remove the key")
                .at("headers.strip_client_source"));
            }
        }
        Ok(())
    }

    /// Checks `relay` into `relayed`, once [`check`](Self::check) ran for every policy:
    /// a name only a listener's own policy reads is a client-IP header the gateway strips
    /// too, and may be relayed on the other listeners.
    fn check_relay(&mut self) -> Result<(), ConfigError> {
        self.relayed = relay(&self.relay, &self.extra, &self.kept, self.origin_secret.as_ref())?;
        // `append` extends the list trusted hops sent, whatever the policy reads.
        for (mode, name) in [
            (self.x_forwarded_for, trueip::headers::names::X_FORWARDED_FOR),
            (self.forwarded, trueip::headers::names::FORWARDED),
        ] {
            if mode == ListMode::Append && !self.relayed.contains(&name) {
                self.relayed.push(name);
            }
        }
        Ok(())
    }
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

/// The checked `headers.relay`: client addresses the gateway withholds from trusted hops
/// (rows of the built-in table that claim an address or the hops, `Via`, or names in
/// `strip`); any other name
/// would be a typo that silently does nothing.
fn relay(
    names: &[String],
    extra: &[FieldName],
    kept: &[FieldName],
    origin_secret: Option<&FieldName>,
) -> Result<Vec<FieldName>, ConfigError> {
    use trueip::headers::names::{Claim, FORWARDING};
    let mut relay = Vec::new();
    for (i, text) in names.iter().enumerate() {
        let at = format!("headers.relay[{i}]");
        let name = FieldName::new(text.trim()).map_err(|e| e.at(at.clone()))?;
        let claim = FORWARDING.iter().find(|row| row.name == name).map(|row| row.claim);
        let refused = if origin_secret == Some(&name) {
            Some((
                format!("{name} is the origin secret"),
                "the gateway drops it before forwarding; remove it from relay",
            ))
        } else if kept.contains(&name) {
            Some((
                format!("{name} is in headers.keep"),
                "it passes from every client already; keep it in one list",
            ))
        } else if claim
            .is_some_and(|claim| matches!(claim, Claim::Request | Claim::Identity | Claim::Origin))
        {
            Some((
                format!("{name} names no client address"),
                "trusted hops pass it already; remove it from relay",
            ))
        } else if claim.is_none() && !extra.contains(&name) {
            Some((
                format!("{name} is not a client-IP header the gateway strips"),
                "headers outside the table in docs/SECURITY.md and headers.strip reach the upstream already; remove it from relay",
            ))
        } else {
            None
        };
        if let Some((why, hint)) = refused {
            return Err(ConfigError::new(why).hint(hint).at(at));
        }
        if !relay.contains(&name) {
            relay.push(name);
        }
    }
    Ok(relay)
}

impl Limits {
    fn check(&self) -> Result<(), ConfigError> {
        within(
            self.max_connections,
            1..=MAX_CONNECTIONS,
            "limits.max_connections",
            "open connections, all listeners together",
        )?;
        within(
            self.max_header_bytes,
            8192..=1024 * 1024,
            "limits.max_header_bytes",
            "HTTP/1 parsing needs at least 8 KiB",
        )?;
        within(
            self.max_headers,
            1..=MAX_HEADERS,
            "limits.max_headers",
            "header lines in one request; at least a Host header",
        )?;
        within(
            self.proxy_protocol_max_bytes,
            trueip::proxy_protocol::V1_MAX_LEN..=trueip::proxy_protocol::V2_MAX_LEN,
            "limits.proxy_protocol_max_bytes",
            "from a full v1 line to the largest v2 header",
        )?;
        within(
            self.backlog,
            1..=65535,
            "limits.backlog",
            "the kernel caps it at net.core.somaxconn",
        )?;
        within(self.workers, 1..=1024, "limits.workers", "one per CPU is the usual choice")?;
        timeout(self.header_read_timeout, "limits.header_read_timeout")?;
        timeout(self.idle_timeout, "limits.idle_timeout")?;
        timeout(self.send_timeout, "limits.send_timeout")?;
        timeout(self.tls_handshake_timeout, "limits.tls_handshake_timeout")?;
        timeout(self.proxy_protocol_timeout, "limits.proxy_protocol_timeout")?;
        timeout(self.shutdown_timeout, "limits.shutdown_timeout")
    }
}

impl AdminSettings {
    fn check(&mut self) -> Result<(), ConfigError> {
        self.prefix = self.prefix.trim().trim_end_matches('/').to_string();
        let prefix = &self.prefix;
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.contains(['?', '#', ' '])) {
            return Err(ConfigError::new(format!("invalid admin prefix \"{prefix}\""))
                .hint("write a path such as \"/.trueip\", or \"\" to turn it off")
                .at("admin.prefix"));
        }
        within(
            self.max_connections,
            1..=1024,
            "admin.max_connections",
            "open connections on the admin listener, apart from limits.max_connections",
        )?;
        let max = crate::forgeries::MAX_KEPT;
        if self.forgeries > max {
            return Err(ConfigError::new(format!(
                "admin.forgeries = {} is more than {max}",
                self.forgeries
            ))
            .hint(format!(
                "keep at most {max} forged requests (each holds up to {} bytes of client \
                 text), or 0 for none",
                crate::forgeries::ENTRY_MAX_BYTES
            ))
            .at("admin.forgeries"));
        }
        Ok(())
    }
}

impl LogSettings {
    fn check(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(ConfigError::new(format!("invalid log level \"{}\"", self.level))
                .hint("use error, warn, info, debug or trace")
                .at("log.level"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::parse_duration;

    fn settings(toml: &str) -> Result<Settings, String> {
        Settings::from_text(toml, &mut |p| Err(format!("no file {p}")))
    }

    /// `toml` is refused, and the error says each of `wanted`.
    fn refused(toml: &str, wanted: &[&str]) {
        let err = settings(toml).err().unwrap_or_else(|| panic!("accepted: {toml}"));
        for want in wanted {
            assert!(err.contains(want), "{toml:?}: {err}");
        }
    }

    #[test]
    fn empty_config_is_the_safe_default() {
        let s = settings("").unwrap();
        assert_eq!(s.listeners.len(), 1);
        assert_eq!(s.listeners[0].address, ListenAddr::Tcp(DEFAULT_LISTEN));
        assert_eq!(s.listeners[0].proxy_protocol, ProxyProtocol::Off);
        assert!(s.upstream.url.is_none());
        assert!(!s.policy.trusts("127.0.0.1".parse().unwrap()));
        assert_eq!(s.admin.prefix, "/.trueip");
    }

    /// The backlog defaults to 1024, the workers to the CPUs (each checked in
    /// `errors_name_the_key`).
    #[test]
    fn backlog_and_workers_have_defaults() {
        let limits = |toml: &str| settings(toml).unwrap().limits;
        assert_eq!(limits("").backlog, 1024);
        assert_eq!(limits("[limits]\nbacklog = 4096").backlog, 4096);
        assert!(limits("").workers >= 1);
        assert_eq!(limits("[limits]\nworkers = 3").workers, 3);
    }

    #[test]
    fn kept_headers_are_table_names_the_gateway_neither_writes_nor_reads() {
        let s = settings("[headers]\nkeep = [\"Client-IP\", \"client-ip\"]").unwrap();
        assert_eq!(s.headers.kept, [FieldName::new("client-ip").unwrap()]);
        assert!(settings("").unwrap().headers.kept.is_empty());
        for (toml, why) in [
            ("[headers]\nkeep = [\"X-App\"]", "not a client-IP header"),
            ("[headers]\nkeep = [\"X-Real-IP\"]", "writes x-real-ip itself"),
            ("[headers]\nkeep = [\"Forwarded\"]\nforwarded = \"off\"", "writes forwarded itself"),
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
            refused(toml, &["headers.keep[0]", why]);
        }
    }

    #[test]
    fn relayed_headers_are_client_addresses_the_gateway_strips() {
        let name = |n| FieldName::new(n).unwrap();
        let s = settings(
            "[headers]\nstrip = [\"X-Edge-Client\"]\nrelay = [\"True-Client-IP\", \"true-client-ip\", \"x-edge-client\"]",
        )
        .unwrap();
        assert_eq!(s.headers.relayed, [name("true-client-ip"), name("x-edge-client")]);
        assert!(settings("").unwrap().headers.relayed.is_empty());
        // `append` extends the list a trusted hop sent, whatever the policy reads.
        let s = settings("[headers]\nforwarded = \"append\"").unwrap();
        assert_eq!(s.headers.relayed, [name("forwarded")]);
        for (toml, why) in [
            ("[headers]\nrelay = [\"X-App\"]", "not a client-IP header"),
            ("[headers]\nrelay = [\"X-Forwarded-Proto\"]", "names no client address"),
            ("[headers]\nkeep = [\"Client-IP\"]\nrelay = [\"client-ip\"]", "is in headers.keep"),
            (
                "[client_ip]\ntrusted = [\"10.0.0.0/8\"]\norigin_secret = { header = \"X-Origin-Verify\", value = \"x\" }\n[headers]\nrelay = [\"X-Origin-Verify\"]",
                "is the origin secret",
            ),
            ("[headers]\nrelay = [\"bad name\"]", "invalid header name"),
        ] {
            refused(toml, &["headers.relay[0]", why]);
        }
    }

    /// Review finding: a header only a listener's own policy reads is stripped like the
    /// table's on every listener, so another listener's trusted hops may relay it; the
    /// check refused it as "not a client-IP header the gateway strips".
    #[test]
    fn a_header_a_listener_policy_reads_may_be_relayed() {
        let toml = "[client_ip]\ntrusted = [\"127.0.0.1\"]\n[headers]\nrelay = [\"X-Edge-Client\"]\n\
                    [[listen]]\naddress = \"127.0.0.1:18081\"\n\
                    [[listen]]\naddress = \"127.0.0.1:18082\"\n\
                    client_ip = { trusted = [\"127.0.0.1\"], strategy = \"header:X-Edge-Client\" }\n";
        let s = settings(toml).unwrap();
        let edge = FieldName::new("x-edge-client").unwrap();
        assert!(s.headers.extra.contains(&edge));
        assert_eq!(s.headers.relayed, [edge]);
        // A listener's origin secret is refused as such.
        let toml = "[client_ip]\ntrusted = [\"127.0.0.1\"]\n[headers]\nrelay = [\"X-Origin-Verify\"]\n\
                    [[listen]]\naddress = \"127.0.0.1:18081\"\n\
                    client_ip = { trusted = [\"127.0.0.1\"], origin_secret = { header = \"X-Origin-Verify\", value = \"x\" } }\n";
        refused(toml, &["is the origin secret"]);
    }

    /// A refresh hands the build every name's addresses, the last good ones of a name that
    /// failed: a listener's own name is taken from them as `[client_ip]`'s is. Fails on the
    /// code that resolved a listener's names again, where a name that had stopped resolving
    /// failed the whole refresh, and every other name's new addresses with it.
    #[test]
    fn a_listeners_own_host_name_is_taken_from_the_refresh() {
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        let known =
            crate::names::Addresses::from([("lb.invalid".to_string(), vec![ip("10.1.2.3")])]);
        let toml =
            "[[listen]]\naddress = \"127.0.0.1:1\"\nclient_ip = { trusted = [\"lb.invalid\"] }";
        let file = parse_toml(toml).unwrap();
        let s =
            Settings::from_file_named(file, &ServeArgs::default(), &mut |p| Err(p.into()), &known)
                .unwrap();
        assert!(s.own_policy_at(0).unwrap().policy.trusts(ip("10.1.2.3")));
        assert_eq!(s.names, known);
    }

    /// Every path a config file names, relative, is read from the file's directory;
    /// absolute paths and URLs are kept. Fails on the old code, which kept each as written
    /// (the working directory's).
    #[test]
    fn relative_paths_in_a_file_are_relative_to_its_directory() {
        let dir = std::env::temp_dir().join(format!("trueip-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("trueip.toml");
        std::fs::write(
            &config,
            "[client_ip.providers]\ncloudflare = [\"v4.txt\", \"/abs/v6.txt\"]\n\n\
             [[listen]]\naddress = \"127.0.0.1:8443\"\n\
             tls = [{ cert = \"tls/a.pem\", key = \"tls/a.key\" }, { cert = \"/abs/b.pem\", key = \"b.key\", server_names = [\"b.example\"] }]\n\
             client_ip = { providers = { cloudfront = \"cf.json\" } }\n\n\
             [upstream]\nurl = \"unix:run/app.sock\"\nca_file = \"ca.pem\"\nclient_cert = \"c.pem\"\nclient_key = \"c.key\"\n\
             sign = { key_file = \"sign.key\" }\n\n\
             [ranges]\ndir = \"cache\"\n[ranges.from]\ncloudflare = [\"https://mirror.example/v4\", \"mirror/v6\"]\n",
        )
        .unwrap();
        let file = read_file(&config).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let at = |p: &str| dir.join(p);
        let text = |p: &str| at(p).to_str().unwrap().to_string();
        assert_eq!(
            file.client_ip.providers["cloudflare"],
            trueip::config::Files::Many(vec![text("v4.txt"), "/abs/v6.txt".into()])
        );
        let listener = &file.listen[0];
        assert_eq!(
            listener.client_ip.as_ref().unwrap().providers["cloudfront"],
            trueip::config::Files::One(text("cf.json"))
        );
        let certs = &listener.tls.as_ref().unwrap().certs;
        assert_eq!(
            [&certs[0].cert, &certs[0].key, &certs[1].cert, &certs[1].key],
            [&at("tls/a.pem"), &at("tls/a.key"), &PathBuf::from("/abs/b.pem"), &at("b.key")]
        );
        let up = &file.upstream;
        assert_eq!(up.url, Some(UpstreamTarget::Unix(at("run/app.sock"))));
        assert_eq!(up.ca_file, Some(at("ca.pem")));
        assert_eq!(up.client_cert, Some(at("c.pem")));
        assert_eq!(up.client_key, Some(at("c.key")));
        assert_eq!(up.sign.as_ref().unwrap().key_file, at("sign.key"));
        assert_eq!(file.ranges.dir, Some(at("cache")));
        assert_eq!(
            file.ranges.from["cloudflare"],
            crate::ranges::Sources::Many(vec![
                "https://mirror.example/v4".into(),
                text("mirror/v6")
            ])
        );
        // Text with no file behind it keeps its paths as written.
        let text_only = parse_toml("[upstream]\nca_file = \"ca.pem\"\n").unwrap();
        assert_eq!(text_only.upstream.ca_file, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn signing_reads_its_key_and_says_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("trueip-sign-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.key");
        let short = dir.join("short.key");
        std::fs::write(&good, "s3cret-s3cret-s3cret-s3cret-s3cret-s3cret\n").unwrap();
        std::fs::write(&short, "s3cret\n").unwrap();
        let toml = |file: &std::path::Path, header: &str| {
            format!("[upstream]\nsign = {{ key_file = {:?}{header} }}", file.display().to_string())
        };
        let s = settings(&toml(&good, "")).unwrap();
        assert_eq!(s.headers.signing.header.as_str(), "trueip-signature");
        assert!(s.headers.signing.key.is_some());
        let s = settings(&toml(&good, ", header = \"X-App-Client\"")).unwrap();
        assert_eq!(s.headers.signing.header.as_str(), "x-app-client");
        // Unset: no key, the default name (still stripped).
        let s = settings("").unwrap();
        assert!(s.headers.signing.key.is_none());
        assert_eq!(s.headers.signing.header.as_str(), "trueip-signature");
        for (toml, want) in [
            (toml(&dir.join("absent.key"), ""), "cannot read the signing key"),
            (toml(&short, ""), "must be 32 to 1024 bytes, this one is 6"),
            (toml(&good, ", header = \"X-Real-IP\""), "already manages"),
            // Apps read an underscore spelling as the dashed header.
            (toml(&good, ", header = \"X_Forwarded_For\""), "already manages"),
            (toml(&good, ", header = \"host\""), "already manages"),
            (toml(&good, ", header = \"a b\""), "invalid header name"),
            (toml(&good, ", key = \"x\""), "unknown field"),
        ] {
            let err = settings(&toml).unwrap_err();
            assert!(err.contains(want), "{toml}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn socket_owners_read_names_and_ids() {
        let passwd = "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n";
        let group = "root:x:0:\nwww-data:x:33:\nnginx:x:101:\n";
        let parse = |t: &str| SocketOwner::parse(t, passwd, group).map(|o| (o.uid, o.gid));
        assert_eq!(parse("www-data").unwrap(), (Some(33), None));
        assert_eq!(parse("www-data:nginx").unwrap(), (Some(33), Some(101)));
        assert_eq!(parse(":nginx").unwrap(), (None, Some(101)));
        assert_eq!(parse("1000:1001").unwrap(), (Some(1000), Some(1001)));
        let err = parse("nobody-here").unwrap_err().to_string();
        assert!(err.contains("unknown user \"nobody-here\""), "{err}");
        let err = parse("root:wheel").unwrap_err().to_string();
        assert!(err.contains("unknown group \"wheel\""), "{err}");
        assert!(parse(":").is_err() && parse("").is_err());
        assert_eq!("0660".parse::<SocketMode>().unwrap(), SocketMode(0o660));
        assert_eq!(SocketMode(0o660).to_string(), "0660");
        for bad in ["", "8", "01777", "rw-rw----"] {
            assert!(bad.parse::<SocketMode>().is_err(), "{bad}");
        }
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
                "[headers]\nallowed_hosts = [\"example.com\", \"https://example.com/\"]",
                "headers.allowed_hosts[1]",
            ),
            ("[headers]\nallowed_hosts = [\"a.*.example.com\"]", "headers.allowed_hosts[0]"),
            ("[[listen]]\naddress = \"unix:run.sock\"", "listen[0].address"),
            (
                "[[listen]]\naddress = \"unix:/run/t.sock\"\nunix_mode = \"0999\"",
                "listen[0].unix_mode",
            ),
            ("[[listen]]\naddress = \"127.0.0.1:1\"\nunix_mode = \"0660\"", "listen[0].unix_mode"),
            (
                "[[listen]]\naddress = \"unix:/run/t.sock\"\nunix_owner = \"no-such-user-here\"",
                "listen[0].unix_owner",
            ),
            (
                "[client_ip]\nproxy_protocol_from = [\"unix\"]\n[[listen]]\naddress = \"unix:/run/t.sock\"\nproxy_protocol = \"v2\"",
                "listen[0].proxy_protocol",
            ),
            (
                "[[listen]]\naddress = \"unix:/run/t.sock\"\nmode = \"tcp\"\nupstream = \"127.0.0.1:5\"",
                "listen[0].mode",
            ),
            (
                "[[listen]]\naddress = \"127.0.0.1:1\"\nproxy_protocol = \"v3\"",
                "listen[0].proxy_protocol",
            ),
            (
                "[[listen]]\naddress = \"127.0.0.1:1\"\nproxy_protocol = \"v2\"",
                "client_ip.proxy_protocol_from",
            ),
            ("[[listen]]\naddress = \"127.0.0.1:1\"\nmode = \"tcp\"", "listen[0].upstream"),
            ("[upstream]\nurl = \"http://x\"", "upstream.url"),
            ("[upstream]\nurl = \"https://x\"", "upstream.url"),
            ("[upstream]\nurl = \"http://x:1\"\nca_file = \"ca.pem\"", "upstream.ca_file"),
            ("[upstream]\nurl = \"https://x:1\"\nserver_name = \"a b\"", "upstream.server_name"),
            ("[upstream]\nurl = \"https://x:1\"\nclient_cert = \"c.pem\"", "upstream.client_key"),
            (
                "[upstream]\nurl = \"https://x:1\"\nca_file = \"c.pem\"\ntls_roots = \"system\"",
                "upstream.tls_roots",
            ),
            ("[upstream]\nurl = \"https://x:1\"\ntls_roots = \"mozilla\"", "upstream.tls_roots"),
            (
                "[upstream]\nurl = \"http://127.0.0.1:3000\"\nconnect_timeout = \"5 parsecs\"",
                "invalid duration",
            ),
            ("[headers]\nx_forwarded_for = \"prepend\"", "headers.x_forwarded_for"),
            ("[headers]\nstrip = [\"X Bad\"]", "headers.strip[0]"),
            ("[limits]\nmax_header_bytes = 100", "limits.max_header_bytes"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[limits]\nbacklog = 0", "limits.backlog"),
            ("[limits]\nworkers = 0", "limits.workers"),
            ("[admin]\nforgeries = -1", "forgeries"),
            ("[ranges]\nrefresh = \"10s\"", "ranges.refresh"),
            ("[ranges]\ntimeout = \"0s\"", "ranges.timeout"),
            ("[ranges]\nrefresh = \"soon\"", "invalid duration"),
            ("[ranges]\nrefesh = \"24h\"", "unknown field"),
            ("[ranges.from]\nakamai = \"x\"", "ranges.from.akamai"),
            ("[upstrem]\nurl = \"http://127.0.0.1:3000\"", "unknown field"),
            (
                "[[listen]]\naddress = \"127.0.0.1:1\"\n[[listen]]\naddress = \"127.0.0.1:1\"",
                "listen[1].address",
            ),
        ];
        for (toml, want) in cases {
            refused(toml, &[want]);
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
        assert_eq!(s.listeners[1].send_proxy(), SendProxy::V1);
        let up = s.upstream;
        assert_eq!(up.url, Some(UpstreamTarget::Unix("/run/app.sock".into())));
        assert_eq!(up.response_timeout, Duration::from_secs(120));
        assert_eq!(up.body_timeout, Duration::from_secs(30));
        assert_eq!(s.headers.forwarded, ListMode::Off);
        let extra: Vec<&str> = s.headers.extra.iter().map(|n| n.as_str()).collect();
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
        let flags = ServeArgs {
            listen: vec!["127.0.0.1:2".into(), "127.0.0.1:3".into()],
            upstream: Some("whoami".into()),
            trust: vec!["loopback".into()],
            strategy: vec!["rightmost-untrusted".into()],
            proxy_protocol: Some("v1".into()),
            proxy_protocol_from: vec!["127.0.0.0/8".into()],
            ..ServeArgs::default()
        };
        let known = crate::names::Addresses::new();
        let s =
            Settings::from_file_named(file, &flags, &mut |_| Err(String::new()), &known).unwrap();
        assert_eq!(s.listeners.len(), 2);
        assert!(s.listeners.iter().all(|l| l.proxy_protocol == ProxyProtocol::V1));
        assert!(s.upstream.url.is_none());
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
        assert_eq!(example.resolve_every, default.resolve_every);
        assert_eq!(example.upstream.connect_timeout, default.upstream.connect_timeout);
        assert_eq!(example.limits.lean_http1, default.limits.lean_http1);
        assert!(default.limits.lean_http1);
        let off = settings("[limits]\nlean_http1 = false").unwrap();
        assert!(!off.limits.lean_http1);
        assert_eq!(example.policy.strategy_name(0), None);
    }

    /// `[client_ip]` in `trueip.example.toml` builds the policy an empty section builds,
    /// and each key it sets reaches that policy (set otherwise, the policy differs), so
    /// the comparison cannot pass for a key the policy ignores.
    #[test]
    fn the_examples_client_ip_keys_are_the_policys_defaults() {
        let text = include_str!("../../../trueip.example.toml");
        let policy = |toml: &str| format!("{:?}", settings(toml).unwrap().policy);
        let default = policy("");
        assert_eq!(policy(text), default);
        for (line, other) in [
            ("trusted = []", "trusted = [\"10.0.0.1\"]"),
            ("from = \"xff\"", "from = \"forwarded\""),
            ("all_trusted = \"leftmost\"", "all_trusted = \"peer\""),
            ("ipv6_prefix = 64", "ipv6_prefix = 48"),
            ("proxy_protocol_from = []", "proxy_protocol_from = [\"10.0.0.1\"]"),
        ] {
            let set = format!("\n{line}\n");
            assert_eq!(text.matches(&set).count(), 1, "the example sets {line} once");
            let changed = text.replacen(&set, &format!("\n{other}\n"), 1);
            assert_ne!(policy(&changed), default, "{other} reaches the policy");
        }
    }

    /// Every key `trueip.example.toml` sets (rather than leaves commented out) has the
    /// value the code takes when the key is left out, and every key the code writes back
    /// is set there: the file cannot drift from the defaults. (`[client_ip]` is the core
    /// library's, its defaults checked through the policy above.)
    #[test]
    fn the_example_sets_every_key_to_its_default() {
        let mut example: toml::Table =
            toml::from_str(include_str!("../../../trueip.example.toml")).unwrap();
        example.remove("client_ip");
        let defaults = toml::Table::try_from(FileConfig::default()).unwrap();
        assert_eq!(toml::to_string(&example).unwrap(), toml::to_string(&defaults).unwrap());
        assert_eq!(example, defaults);
    }

    #[test]
    fn the_record_of_forgeries_is_bounded_naming_the_key() {
        let forgeries = |toml: &str| settings(toml).map(|s| s.admin.forgeries);
        assert_eq!(forgeries(""), Ok(100));
        assert_eq!(forgeries("[admin]\nforgeries = 0"), Ok(0));
        assert_eq!(forgeries("[admin]\nforgeries = 4096"), Ok(4096));
        refused("[admin]\nforgeries = 4097", &["admin.forgeries", "4096"]);
    }

    /// A valid `[ranges]` table reads nothing from the cache (its errors are checked in
    /// `errors_name_the_key`).
    #[test]
    fn the_ranges_table_is_read_without_the_cache() {
        let ok = settings("[ranges]\nrefresh = \"24h\"\ndir = \"/tmp/r\"").unwrap();
        assert_eq!(ok.ranges.refresh, Some(Duration::from_secs(86_400)));
        assert!(ok.loaded.metas.is_empty(), "nothing read from the cache");
    }

    /// Every duration key, with the table it sits in.
    const DURATION_KEYS: [(&str, &str); 11] = [
        ("ranges", "timeout"),
        ("limits", "header_read_timeout"),
        ("limits", "send_timeout"),
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
        let upstream = if table == "upstream" { "url = \"http://127.0.0.1:3000\"\n" } else { "" };
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
                refused(&toml, &[&format!("{table}.{key}"), "24h"]);
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
            ("limits", "proxy_protocol_max_bytes", trueip::proxy_protocol::V2_MAX_LEN),
            ("limits", "workers", 1024),
            ("upstream", "pool_max_idle", 65_536),
            ("admin", "max_connections", 1024),
        ];
        for (table, key, max) in cases {
            // TOML integers are i64: the largest one a file can hold, and one past the max.
            for value in [i64::MAX.to_string(), (max + 1).to_string()] {
                let toml = with(table, &format!("{key} = {value}"));
                refused(&toml, &[&format!("{table}.{key}"), &max.to_string()]);
            }
            let toml = with(table, &format!("{key} = {max}"));
            assert!(settings(&toml).is_ok(), "{toml}: {:?}", settings(&toml));
            // Past what TOML holds: the parser refuses it, it does not wrap.
            assert!(settings(&with(table, &format!("{key} = {huge}"))).is_err());
        }
        refused("[limits]\nbacklog = 65536", &["limits.backlog", "65535"]);
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
                (any::<u64>(), prop::sample::select(vec!["ms", "s", "m", "h"]))
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
                &["connect_timeout", "response_timeout", "body_timeout", "pool_idle_timeout"],
                &["pool_max_idle"],
                "url = \"http://127.0.0.1:3000\"\n",
            );
            (limits, upstream, prop::collection::vec(line(), 0..3))
                .prop_map(|(l, u, junk)| format!("{l}{u}{}", junk.join("\n")))
        }

        fn read(text: &str) {
            let mut no_files = |p: &str| Err(format!("no file {p}"));
            let Ok(config) = crate::testing::Config::check(text, &mut no_files) else {
                return;
            };
            // Every accepted timeout can be added to the clock, now and for centuries.
            let now = std::time::Instant::now();
            for t in config.timeouts() {
                assert!(t <= MAX_TIMEOUT, "{t:?} accepted");
                assert!(now.checked_add(t).is_some(), "{t:?} overflows the clock");
            }
            let _ = config.build_without_tls_files();
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
