//! The `[client_ip]` section of the TOML config, shared by `trueip explain --config`
//! and `trueip serve`. Every key is documented with its default in `trueip.example.toml`.
//!
//! Reading the files it names (provider range lists) is left to the caller, which
//! passes a reader function: this crate does no I/O. Where a relative path in a config
//! file leads is decided here, once, by [`in_dir_of`]: every reader of a config file
//! (`trueip serve`, `explain`, `ranges`, Python's `Policy.from_toml`) applies it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;
use crate::policy::{OriginSecret, Policy, TrustSpec};
use crate::strategy::StrategySpec;
use crate::trust::TrustSet;

/// `[client_ip]`: whom to trust and how to find the client.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Proxies whose forwarding headers count: CIDRs, addresses, `loopback`, `private`,
    /// `any`, or provider names. Default: none (the peer is the client).
    pub trusted: Vec<String>,
    /// A strategy, or a fallback chain of them; an entry may be a table
    /// `{ name = "...", trusted = [...] }` with its own trust. Default: `peer`.
    pub strategy: Strategies,
    /// The list header list strategies read: `xff` (default) or `forwarded`.
    pub from: Option<String>,
    /// When every entry is trusted: `leftmost` (default), `peer`, or `fail`.
    pub all_trusted: Option<String>,
    /// IPv6 rate-limit keys are cut to this prefix. Default 64.
    pub ipv6_prefix: Option<u8>,
    /// Senders trusted to speak the PROXY protocol. Default: none.
    pub proxy_protocol_from: Vec<String>,
    /// A header a trusted hop must carry before its forwarding headers count.
    pub origin_secret: Option<OriginSecretConfig>,
    /// Provider range files: `cloudfront = "ip-ranges.json"`, or a list of files.
    pub providers: BTreeMap<String, Files>,
    /// How often `trueip serve` resolves the host names trust specs name again
    /// (`"30s"`, `"5m"`; from 1s to 24h). Default 30s. This crate does no I/O: the caller
    /// reads it.
    pub resolve_every: Option<String>,
}

/// Command-line values that replace the config's (empty: keep the config's).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags<'a> {
    /// `--trust`
    pub trust: &'a [String],
    /// `--strategy`
    pub strategy: &'a [String],
    /// `--from`
    pub from: Option<&'a str>,
    /// `--proxy-protocol-from`
    pub proxy_protocol_from: &'a [String],
}

/// One strategy name or a list.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Strategies {
    /// `strategy = "rightmost-untrusted"`
    One(String),
    /// `strategy = ["cloudflare", "rightmost-untrusted"]`
    Chain(Vec<StrategyEntry>),
}

impl Default for Strategies {
    fn default() -> Self {
        Strategies::Chain(Vec::new())
    }
}

/// An entry of a strategy chain.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StrategyEntry {
    /// A name.
    Name(String),
    /// A name with its own trust.
    WithTrust {
        /// The strategy name.
        name: String,
        /// Its trust (replaces `client_ip.trusted` for this strategy).
        trusted: Vec<String>,
    },
}

/// `origin_secret = { header = "X-Origin-Verify", value = "..." }`
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OriginSecretConfig {
    /// Header name.
    pub header: String,
    /// Exact value.
    pub value: String,
}

impl std::fmt::Debug for OriginSecretConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OriginSecretConfig({}: <redacted>)", self.header)
    }
}

/// One file or several.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Files {
    /// One path.
    One(String),
    /// Several paths, merged (Cloudflare's `ips-v4` and `ips-v6`).
    Many(Vec<String>),
}

impl Files {
    fn paths(&self) -> Vec<&str> {
        match self {
            Files::One(p) => vec![p.as_str()],
            Files::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

/// Where a path written in a config file leads: a relative path is relative to the
/// directory of that file (`dir`), as nginx reads its includes, so one file means the
/// same whatever directory the program runs in (systemd starts services in `/`). An
/// absolute path is kept. Paths given on the command line are not passed here: they are
/// relative to the working directory, as a shell user expects; a config with no file
/// behind it (text, stdin) has no directory and keeps its paths as written, which the
/// working directory then resolves.
pub fn in_dir_of(dir: &Path, path: &Path) -> PathBuf {
    dir.join(path)
}

/// [`in_dir_of`] over a path the config holds as text, in place. The joined path must
/// be UTF-8 to stay text: when the directory's name is not, the error says so, and the
/// caller adds the key and the hint.
pub fn text_in_dir_of(dir: &Path, path: &mut String) -> Result<(), ConfigError> {
    let joined = in_dir_of(dir, Path::new(path.as_str()));
    *path = joined.into_os_string().into_string().map_err(|joined| {
        ConfigError::new(format!(
            "the path of {path:?} from the config file's directory, {}, is not UTF-8",
            Path::new(&joined).display()
        ))
    })?;
    Ok(())
}

impl Files {
    /// [`in_dir_of`] over each path. A path that is not UTF-8 once joined (the
    /// directory's name is not) is an error naming the provider.
    fn in_dir_of(&mut self, dir: &Path, name: &str) -> Result<(), ConfigError> {
        let paths = match self {
            Files::One(p) => std::slice::from_mut(p),
            Files::Many(ps) => ps.as_mut_slice(),
        };
        for p in paths {
            text_in_dir_of(dir, p).map_err(|e| {
                e.hint("write the provider file's absolute path")
                    .at(format!("client_ip.providers.{name}"))
            })?;
        }
        Ok(())
    }
}

impl ClientIpConfig {
    /// Makes the relative paths this table names (provider files) relative to `dir`, the
    /// directory of the config file it was read from ([`in_dir_of`]). Call it when the
    /// file is read, before command-line flags are applied: their paths stay relative
    /// to the working directory.
    pub fn paths_from(&mut self, dir: &Path) -> Result<(), ConfigError> {
        for (name, files) in &mut self.providers {
            files.in_dir_of(dir, name)?;
        }
        Ok(())
    }

    /// Sets the strategy chain from names (as `--strategy` does).
    pub fn set_strategies(&mut self, names: &[String]) {
        self.strategy = Strategies::Chain(names.iter().cloned().map(StrategyEntry::Name).collect());
    }

    /// Applies command-line flags, which replace (not extend) the config's values, and
    /// checks each one so an error names the flag: `--trust` (repeatable; `NAME=FILE` loads
    /// a provider's ranges from FILE and trusts them), `--strategy` (repeatable: a fallback
    /// chain), `--from`, `--proxy-protocol-from`.
    pub fn apply_flags(&mut self, flags: &Flags<'_>) -> Result<(), ConfigError> {
        if !flags.trust.is_empty() {
            self.trusted.clear();
            for spec in flags.trust {
                match spec.split_once('=') {
                    Some((name, file)) => {
                        let name = name.trim().to_ascii_lowercase();
                        if !crate::PROVIDERS.contains(&name.as_str()) {
                            return Err(ConfigError::new(format!("unknown provider \"{name}\""))
                                .hint(format!(
                                    "NAME=FILE takes one of {}",
                                    crate::PROVIDERS.join(", ")
                                ))
                                .at(format!("--trust {spec}")));
                        }
                        self.providers.insert(name.clone(), Files::One(file.trim().to_string()));
                        self.trusted.push(name);
                    }
                    None => {
                        spec.parse::<TrustSpec>().map_err(|e| e.at(format!("--trust {spec}")))?;
                        self.trusted.push(spec.clone());
                    }
                }
            }
        }
        if !flags.strategy.is_empty() {
            for name in flags.strategy {
                name.parse::<StrategySpec>().map_err(|e| e.at(format!("--strategy {name}")))?;
            }
            self.set_strategies(flags.strategy);
        }
        if let Some(from) = flags.from {
            from.parse::<crate::ListHeader>().map_err(|e| e.at("--from"))?;
            self.from = Some(from.to_string());
        }
        if !flags.proxy_protocol_from.is_empty() {
            for spec in flags.proxy_protocol_from {
                spec.parse::<TrustSpec>()
                    .map_err(|e| e.at(format!("--proxy-protocol-from {spec}")))?;
            }
            self.proxy_protocol_from = flags.proxy_protocol_from.to_vec();
        }
        Ok(())
    }

    /// The provider range lists the policy reads that no file in `providers` supplies
    /// (and that are not built in): those the caller loads from elsewhere, e.g. the
    /// `trueip ranges` cache, and passes to [`build_with`](Self::build_with). Specs that do
    /// not parse are left for `build` to report.
    pub fn cached_providers(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        let mut add = |name: &str| {
            if let Some(known) = crate::PROVIDERS.iter().find(|p| **p == name)
                && *known != "gcp-lb"
                && !self.providers.contains_key(*known)
                && !names.contains(known)
            {
                names.push(known);
            }
        };
        let specs = |list: &[String], add: &mut dyn FnMut(&str)| {
            for spec in list {
                if let Ok(TrustSpec::Provider(p)) = spec.parse::<TrustSpec>() {
                    add(&p);
                }
            }
        };
        specs(&self.trusted, &mut add);
        specs(&self.proxy_protocol_from, &mut add);
        let entries = match &self.strategy {
            Strategies::One(name) => vec![StrategyEntry::Name(name.clone())],
            Strategies::Chain(list) => list.clone(),
        };
        for entry in &entries {
            let name = match entry {
                StrategyEntry::Name(name) => name,
                StrategyEntry::WithTrust { name, trusted } => {
                    specs(trusted, &mut add);
                    name
                }
            };
            if let Ok(StrategySpec::Preset(preset)) = name.parse::<StrategySpec>()
                && let Some(list) = preset.ranges()
            {
                add(list);
            }
        }
        names
    }

    /// The host names ([`TrustSpec::Host`]) the trust specs name, each once, in order:
    /// what the caller resolves and passes to [`build_resolved`](Self::build_resolved).
    /// Specs that do not parse are left for `build` to report.
    pub fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let mut add = |list: &[String]| {
            for spec in list {
                if let Ok(TrustSpec::Host(h)) = spec.parse::<TrustSpec>()
                    && !names.contains(&h)
                {
                    names.push(h);
                }
            }
        };
        add(&self.trusted);
        if let Strategies::Chain(list) = &self.strategy {
            for entry in list {
                if let StrategyEntry::WithTrust { trusted, .. } = entry {
                    add(trusted);
                }
            }
        }
        add(&self.proxy_protocol_from);
        names
    }

    /// Checks everything and builds the policy. `read` loads a provider file by path.
    pub fn build(
        &self,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Policy, ConfigError> {
        self.build_with(read, &BTreeMap::new())
    }

    /// [`build`](Self::build), with provider ranges the caller has already loaded
    /// (by provider name); a file in `providers` wins over them.
    pub fn build_with(
        &self,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
        loaded: &BTreeMap<String, TrustSet>,
    ) -> Result<Policy, ConfigError> {
        self.build_resolved(read, loaded, &BTreeMap::new())
    }

    /// [`build_with`](Self::build_with), with the addresses the caller resolved for each
    /// of [`host_names`](Self::host_names) (by name).
    pub fn build_resolved(
        &self,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
        loaded: &BTreeMap<String, TrustSet>,
        hosts: &BTreeMap<String, TrustSet>,
    ) -> Result<Policy, ConfigError> {
        let mut builder = self.parsed()?;
        for (name, set) in loaded {
            builder = builder.provider(name, set.clone());
        }
        for (name, set) in hosts {
            builder = builder.host(name, set.clone());
        }
        for (name, files) in &self.providers {
            builder = builder.provider(name, load_provider(name, files, read)?);
        }
        builder.build()
    }

    /// Checks every value that can be read without I/O — each trust spec, strategy name,
    /// `from`, `all_trusted`, `proxy_protocol_from` and the origin secret — as
    /// [`build`](Self::build) reads them, the error naming the key. What needs the host
    /// (provider lists, host names) and the checks across values are `build`'s. For
    /// `trueip check`, which lints a file away from the host it runs on.
    pub fn check_values(&self) -> Result<(), ConfigError> {
        self.parsed().map(drop)
    }

    /// Every value read into a builder, before provider lists and host names.
    fn parsed(&self) -> Result<crate::PolicyBuilder, ConfigError> {
        let mut builder = Policy::builder();
        for (i, spec) in self.trusted.iter().enumerate() {
            builder = builder.trust(
                spec.parse::<TrustSpec>().map_err(|e| e.at(format!("client_ip.trusted[{i}]")))?,
            );
        }
        let entries = match &self.strategy {
            Strategies::One(name) => vec![StrategyEntry::Name(name.clone())],
            Strategies::Chain(list) => list.clone(),
        };
        for (i, entry) in entries.iter().enumerate() {
            let at = || format!("client_ip.strategy[{i}]");
            builder = match entry {
                StrategyEntry::Name(name) => {
                    builder.strategy(name.parse::<StrategySpec>().map_err(|e| e.at(at()))?)
                }
                StrategyEntry::WithTrust { name, trusted } => {
                    let spec = name.parse::<StrategySpec>().map_err(|e| e.at(at()))?;
                    let trusted = trusted
                        .iter()
                        .enumerate()
                        .map(|(j, t)| {
                            t.parse::<TrustSpec>()
                                .map_err(|e| e.at(format!("{}.trusted[{j}]", at())))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    builder.strategy_trusting(spec, trusted)
                }
            };
        }
        if let Some(from) = &self.from {
            builder =
                builder.from_list(from.parse().map_err(|e: ConfigError| e.at("client_ip.from"))?);
        }
        if let Some(choice) = &self.all_trusted {
            builder = builder.all_trusted(
                choice.parse().map_err(|e: ConfigError| e.at("client_ip.all_trusted"))?,
            );
        }
        if let Some(prefix) = self.ipv6_prefix {
            builder = builder.ipv6_prefix(prefix);
        }
        for (i, spec) in self.proxy_protocol_from.iter().enumerate() {
            builder =
                builder.proxy_protocol_from(spec.parse().map_err(|e: ConfigError| {
                    e.at(format!("client_ip.proxy_protocol_from[{i}]"))
                })?);
        }
        if let Some(secret) = &self.origin_secret {
            builder = builder.origin_secret(
                OriginSecret::new(&secret.header, secret.value.as_bytes())
                    .map_err(|e| e.at("client_ip.origin_secret"))?,
            );
        }
        Ok(builder)
    }
}

/// The largest provider list read or fetched: Azure's whole service tags file is about
/// 4 MB and AWS's `ip-ranges.json` about 2 MB, so this leaves room for a list ten times
/// larger while bounding memory.
pub const MAX_PROVIDER_FILE_BYTES: u64 = 32 << 20;

/// Reads a provider's list file, at most [`MAX_PROVIDER_FILE_BYTES`]: the reader every
/// caller of [`load_provider`] and [`ClientIpConfig::build_resolved`] passes (`trueip
/// serve`, `trueip explain`, the Python package). A path that names `/dev/zero`, a
/// device or a file still being written is refused once the bound is passed, rather than
/// read until memory runs out. The error is the reason alone, as `std::fs::read`'s is.
pub fn read_provider_file(path: impl AsRef<std::path::Path>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_PROVIDER_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PROVIDER_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_PROVIDER_FILE_BYTES} bytes, far past any provider's list"
        ));
    }
    Ok(bytes)
}

/// Loads and merges a provider's files.
pub fn load_provider(
    name: &str,
    files: &Files,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<TrustSet, ConfigError> {
    let name = name.to_ascii_lowercase();
    if !crate::PROVIDERS.contains(&name.as_str()) {
        return Err(ConfigError::new(format!("unknown provider \"{name}\""))
            .hint(format!("known providers: {}", crate::PROVIDERS.join(", ")))
            .at("client_ip.providers"));
    }
    let mut cidrs = Vec::new();
    for path in files.paths() {
        let at = || format!("client_ip.providers.{name} ({path})");
        let bytes = read(path)
            .map_err(|e| ConfigError::new(format!("cannot read \"{path}\": {e}")).at(at()))?;
        cidrs.extend(crate::providers::parse_for(&name, &bytes).map_err(|e| e.at(at()))?);
    }
    Ok(TrustSet::from_cidrs(cidrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_like: &[(&str, &[&str])]) -> ClientIpConfig {
        let mut c = ClientIpConfig::default();
        for (key, values) in toml_like {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            match *key {
                "trusted" => c.trusted = values,
                "strategy" => c.set_strategies(&values),
                "proxy_protocol_from" => c.proxy_protocol_from = values,
                _ => unreachable!("no key {key}"),
            }
        }
        c
    }

    /// Fails when the path is quoted with `{:?}`: log mode escaped that escape's `\`.
    #[test]
    fn an_unreadable_provider_files_path_is_escaped_once_in_log_mode() {
        let files = Files::One("/lists/cf\u{2028}\u{1b}[2J".into());
        let e = load_provider("cloudflare", &files, &mut |_| Err("absent".into())).unwrap_err();
        assert!(
            crate::shown::log_text(&e)
                .to_string()
                .starts_with(r#"cannot read "/lists/cf\xe2\x80\xa8\x1b[2J": absent in "#),
            "{e}"
        );
    }

    #[test]
    fn cached_providers_are_those_read_but_not_given_as_files() {
        let c = config(&[
            ("trusted", &["10.0.0.0/8", "fastly", "gcp-lb"]),
            ("strategy", &["cloudfront", "cloudflare", "gcp-lb", "fly"]),
            ("proxy_protocol_from", &["azure-front-door"]),
        ]);
        assert_eq!(
            c.cached_providers(),
            ["fastly", "azure-front-door", "cloudfront", "cloudflare"]
        );
        let mut with_file = c.clone();
        with_file.providers.insert("cloudfront".into(), Files::One("ip-ranges.json".into()));
        assert!(!with_file.cached_providers().contains(&"cloudfront"));
        assert!(config(&[("strategy", &["aws-alb"])]).cached_providers().is_empty());
    }

    #[test]
    fn ranges_loaded_by_the_caller_build_a_preset_and_a_file_wins() {
        let c = config(&[("strategy", &["cloudflare"])]);
        let err = c.build(&mut |_| Err("none".into())).unwrap_err();
        assert!(err.to_string().contains("cloudflare"), "{err}");
        let cached: TrustSet =
            ["173.245.48.0/20".parse::<crate::Cidr>().unwrap()].into_iter().collect();
        let loaded = BTreeMap::from([("cloudflare".to_string(), cached)]);
        assert!(c.build_with(&mut |_| Err("none".into()), &loaded).is_ok());
        let mut with_file = c.clone();
        with_file.providers.insert("cloudflare".into(), Files::One("ips".into()));
        let err = with_file.build_with(&mut |_| Err("no such file".into()), &loaded).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
    }
}
