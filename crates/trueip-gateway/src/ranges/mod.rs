//! Provider range lists kept current: where each provider publishes its list, the cache
//! directory and the checks a new edition must pass. The `trueip ranges` command over
//! them is `crate::ranges_cli`.
//!
//! Parsing the providers' formats is the core library's (`trueip::providers`); this
//! module does the I/O: downloads ([`fetch`]), the cache ([`cache`]).

pub(crate) mod cache;

pub(crate) mod fetch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use trueip::config::ClientIpConfig;
use trueip::{Cidr, ConfigError, TrustSet};

use cache::{Cached, Meta, SourceMeta};
use fetch::Bounds;

/// A provider whose list `trueip ranges` keeps, and where it is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Provider {
    /// The name presets and `--trust` use.
    pub(crate) name: &'static str,
    /// The official URLs, merged in order; none for Azure, whose service tags file has
    /// no stable URL (its name changes every week).
    pub(crate) sources: &'static [&'static str],
}

/// Every provider with a list. `gcp-lb` has none: its Google Front End ranges are fixed
/// and built in (they are not in Google's `cloud.json`, which lists customer ranges).
pub(crate) const PROVIDERS: [Provider; 4] = [
    Provider { name: "cloudfront", sources: &["https://ip-ranges.amazonaws.com/ip-ranges.json"] },
    Provider {
        name: "cloudflare",
        sources: &["https://www.cloudflare.com/ips-v4", "https://www.cloudflare.com/ips-v6"],
    },
    Provider { name: "fastly", sources: &["https://api.fastly.com/public-ip-list"] },
    Provider { name: "azure-front-door", sources: &[] },
];

/// The provider named `name`, or an error listing them.
pub(crate) fn provider(name: &str) -> Result<Provider, String> {
    let wanted = name.trim().to_ascii_lowercase();
    PROVIDERS.into_iter().find(|p| p.name == wanted).ok_or_else(|| {
        let hint = if wanted == "gcp-lb" {
            " (gcp-lb's ranges are built in: nothing to fetch)"
        } else {
            ""
        };
        format!("unknown provider \"{name}\"{hint}: use {}", PROVIDERS.map(|p| p.name).join(", "))
    })
}

/// A new edition may hold between half and twice the cached one's prefixes; beyond
/// that it takes `--force`. Providers add and retire a few ranges a week; a list that
/// halves or doubles at once is more likely a wrong file, a filtered mirror or an
/// attack than a change.
pub(crate) const MAX_CHANGE: usize = 2;

/// The default time bound of one provider's download.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `[ranges]`: where provider lists are cached and how they stay fresh.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RangesSettings {
    /// The cache directory; default [`default_dir`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dir: Option<PathBuf>,
    /// How often the gateway fetches the lists it uses; none: never (the cache is read
    /// at start and on SIGHUP).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "crate::duration::serde_duration::option"
    )]
    pub(crate) refresh: Option<Duration>,
    /// The time bound of one provider's download.
    #[serde(with = "crate::duration::serde_duration")]
    pub(crate) timeout: Duration,
    /// Mirrors: provider = URL or file, or a list of them (merged).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) from: BTreeMap<String, Sources>,
}

impl Default for RangesSettings {
    fn default() -> Self {
        RangesSettings { dir: None, refresh: None, timeout: DEFAULT_TIMEOUT, from: BTreeMap::new() }
    }
}

/// One source or several.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum Sources {
    /// `cloudfront = "https://mirror.example/ip-ranges.json"`
    One(String),
    /// `cloudflare = ["ips-v4", "ips-v6"]`
    Many(Vec<String>),
}

impl Sources {
    fn list(&self) -> Vec<String> {
        match self {
            Sources::One(s) => vec![s.clone()],
            Sources::Many(list) => list.clone(),
        }
    }
}

/// The shortest refresh interval: providers publish weekly at most daily, and each
/// refresh downloads megabytes.
pub(crate) const MIN_REFRESH: Duration = Duration::from_secs(60);

impl RangesSettings {
    /// Checks the values, naming the key.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        for name in self.from.keys() {
            provider(name).map_err(|e| ConfigError::new(e).at(format!("ranges.from.{name}")))?;
        }
        if let Some(every) = self.refresh
            && every < MIN_REFRESH
        {
            return Err(ConfigError::new(format!(
                "ranges.refresh {every:?} is shorter than the shortest allowed, 60s"
            ))
            .hint("providers change their lists at most daily: \"24h\" is typical")
            .at("ranges.refresh"));
        }
        if self.timeout.is_zero() || self.timeout > crate::duration::MAX_TIMEOUT {
            return Err(
                ConfigError::new("ranges.timeout must be between 1ms and 24h").at("ranges.timeout")
            );
        }
        Ok(())
    }

    /// Makes `dir` and the `from` files relative to `dir_of_file`, the config file's
    /// directory (`trueip::config::in_dir_of`); URLs are kept.
    pub(crate) fn paths_from(&mut self, dir_of_file: &Path) -> Result<(), ConfigError> {
        use trueip::config::{in_dir_of, text_in_dir_of};
        if let Some(dir) = &mut self.dir {
            *dir = in_dir_of(dir_of_file, dir);
        }
        for (name, sources) in &mut self.from {
            let list = match sources {
                Sources::One(one) => std::slice::from_mut(one),
                Sources::Many(list) => list.as_mut_slice(),
            };
            for source in list.iter_mut().filter(|s| !is_url(s)) {
                text_in_dir_of(dir_of_file, source).map_err(|e| {
                    e.hint("write the file's absolute path").at(format!("ranges.from.{name}"))
                })?;
            }
        }
        Ok(())
    }

    /// The cache directory these settings name, `flag` (`--ranges-dir`) first.
    pub(crate) fn dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf).or_else(|| self.dir.clone()).unwrap_or_else(default_dir)
    }

    /// Where `provider`'s list comes from: `--from` values for it, else the config's,
    /// else the official URLs.
    pub(crate) fn sources(&self, provider: Provider, flags: &[(String, String)]) -> Vec<String> {
        let from_flags: Vec<String> =
            flags.iter().filter(|(p, _)| p == provider.name).map(|(_, s)| s.clone()).collect();
        if !from_flags.is_empty() {
            return from_flags;
        }
        if let Some(s) = self.from.get(provider.name) {
            return s.list();
        }
        provider.sources.iter().map(|s| s.to_string()).collect()
    }
}

/// The default cache directory: `$STATE_DIRECTORY/ranges` under systemd's
/// `StateDirectory=`, `/var/lib/trueip/ranges` for root or a process without a home
/// (a system service), else `$XDG_CACHE_HOME/trueip/ranges` or `~/.cache/trueip/ranges`.
pub(crate) fn default_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(state) = var("STATE_DIRECTORY") {
        // systemd may list several, separated by ':'; the first is ours.
        let first = state
            .to_str()
            .and_then(|s| s.split(':').next())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&state));
        return first.join("ranges");
    }
    if !rustix::process::geteuid().is_root() {
        if let Some(cache) = var("XDG_CACHE_HOME") {
            return PathBuf::from(cache).join("trueip/ranges");
        }
        // systemd gives a service user without a home HOME=/: that is no home.
        if let Some(home) = var("HOME").filter(|h| h != "/") {
            return PathBuf::from(home).join(".cache/trueip/ranges");
        }
    }
    PathBuf::from("/var/lib/trueip/ranges")
}

/// The lists a policy reads from the cache, checked: the trust sets by provider, and
/// what the cache says about each.
#[derive(Clone, Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) sets: BTreeMap<String, TrustSet>,
    pub(crate) metas: Vec<Meta>,
    /// The directory they were read from.
    pub(crate) dir: PathBuf,
}

/// Loads from `dir` every list `config` reads that no file supplies. A missing list is
/// an error that gives the exact command fetching it.
pub(crate) fn load_for(config: &ClientIpConfig, dir: &Path) -> Result<Loaded, ConfigError> {
    let mut loaded = Loaded { dir: dir.to_path_buf(), ..Loaded::default() };
    for name in config.cached_providers() {
        let cached = cache::read(dir, name)
            .map_err(|e| ConfigError::new(e).at(format!("provider {name}")))?
            .ok_or_else(|| missing(name, dir))?;
        loaded
            .sets
            .insert(name.to_string(), TrustSet::from_cidrs(cached.edition.cidrs.iter().copied()));
        loaded.metas.push(cached.meta);
    }
    Ok(loaded)
}

/// The error for a list the cache lacks.
fn missing(name: &str, dir: &Path) -> ConfigError {
    let dir_text = dir.display();
    let from = if name == "azure-front-door" {
        " --from azure-front-door=ServiceTags_Public.json"
    } else {
        ""
    };
    ConfigError::new(format!(
        "the {name} range list is not in the cache ({dir_text})"
    ))
    .hint(format!(
        "fetch it: trueip ranges update {name}{from} --ranges-dir {dir_text}; or give a file: --trust {name}=FILE"
    ))
}

/// How an update went.
#[derive(Clone, Debug)]
pub(crate) struct Updated {
    pub(crate) meta: Meta,
    /// Prefixes added and removed since the cached edition (all added when none).
    pub(crate) added: usize,
    pub(crate) removed: usize,
    /// Whether the cached edition had other prefixes or another checksum.
    pub(crate) changed: bool,
}

/// What an update may override.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Overrides {
    /// Accept an edition older than the cached one, or one whose size is beyond
    /// [`MAX_CHANGE`].
    pub(crate) force: bool,
}

/// Fetches `provider`'s list from `sources`, checks it against the cached one, and
/// replaces the cached one. On any failure the cache is left as it was.
pub(crate) async fn update(
    dir: &Path,
    provider: Provider,
    sources: &[String],
    bounds: Bounds,
    overrides: Overrides,
    progress: &mut (dyn FnMut(&str, u64, Option<u64>) + Send),
) -> Result<Updated, String> {
    let name = provider.name;
    if sources.is_empty() {
        return Err(format!(
            "{name}: no published URL (hint: download the list and give it: --from {name}=FILE, \
             or [ranges.from] {name} = \"FILE\")"
        ));
    }
    let mut parts = Vec::new();
    let mut source_metas = Vec::new();
    for source in sources {
        let bytes = if is_url(source) {
            fetch::get(source, bounds, &mut |got, of| progress(source, got, of)).await?
        } else {
            read_file(source)?
        };
        trueip::providers::edition(name, &bytes).map_err(|e| {
            let html = bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'<');
            let why = if html { " (it is HTML: an error or login page, not the list)" } else { "" };
            format!("{name}: {source}: {e}{why}")
        })?;
        source_metas.push(SourceMeta {
            source: source.clone(),
            sha256: cache::sha256_hex(&bytes),
            bytes: bytes.len() as u64,
        });
        parts.push(bytes);
    }
    let content = match parts.as_slice() {
        [one] => one.clone(),
        many => {
            if many.iter().any(|p| p.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')) {
                return Err(format!(
                    "{name}: a JSON list comes from one source; only one-CIDR-a-line lists merge"
                ));
            }
            many.join(&b'\n')
        }
    };
    let edition = trueip::providers::edition(name, &content).map_err(|e| format!("{name}: {e}"))?;
    // A broken cache file must not block the update that repairs it.
    let old = cache::read(dir, name).ok().flatten();
    check(name, &edition, old.as_ref(), overrides)?;
    let (ipv4, ipv6) = edition.counts();
    let now = crate::clock::unix_now();
    let meta = Meta {
        trueip_ranges: cache::FORMAT,
        provider: name.to_string(),
        sources: source_metas,
        fetched_at: cache::rfc3339(now),
        fetched_at_unix: now,
        token: edition.token,
        published: edition.published.clone(),
        ipv4,
        ipv6,
        sha256: cache::sha256_hex(&content),
    };
    let (added, removed) = match &old {
        Some(old) => diff_counts(&old.edition.cidrs, &edition.cidrs),
        None => (edition.cidrs.len(), 0),
    };
    let changed = old.as_ref().is_none_or(|o| o.meta.sha256 != meta.sha256);
    let dir = dir.to_path_buf();
    let written = meta.clone();
    tokio::task::spawn_blocking(move || cache::write(&dir, &written, &content))
        .await
        .map_err(|e| format!("{name}: the writer failed: {e}"))??;
    Ok(Updated { meta, added, removed, changed })
}

/// The checks a new edition must pass against the cached one.
fn check(
    name: &str,
    new: &trueip::providers::Edition,
    old: Option<&Cached>,
    overrides: Overrides,
) -> Result<(), String> {
    // AWS's token is the Unix second of the edition: one far ahead of now is no edition AWS
    // wrote, and accepted, it would make every real edition after it "older". Never forced.
    if name == "cloudfront"
        && let Some(token) = new.token
    {
        let now = crate::clock::unix_now();
        if token > now.saturating_add(86_400) {
            return Err(format!(
                "{name}: the fetched edition's syncToken {token} is more than a day ahead of this \
                 clock ({now}): not an edition AWS wrote (hint: check the source and this host's clock)"
            ));
        }
    }
    let Some(old) = old else {
        return Ok(());
    };
    if let (Some(new_token), Some(old_token)) = (new.token, old.meta.token)
        && new_token < old_token
        && !overrides.force
    {
        return Err(format!(
            "{name}: the fetched edition ({}) is older than the cached one ({}): a stale mirror? \
             (hint: check the source; --force accepts it)",
            edition_text(new_token, new.published.as_deref()),
            edition_text(old_token, old.meta.published.as_deref()),
        ));
    }
    let (n, o) = (new.cidrs.len(), old.edition.cidrs.len());
    let beyond = n > o.saturating_mul(MAX_CHANGE) || n.saturating_mul(MAX_CHANGE) < o;
    if beyond && !overrides.force {
        return Err(format!(
            "{name}: the list went from {o} to {n} prefixes, beyond the bound of half to twice \
             the cached size (hint: check the source; --force accepts it)"
        ));
    }
    Ok(())
}

fn edition_text(token: u64, published: Option<&str>) -> String {
    match published {
        Some(date) => format!("{date}, token {token}"),
        None => format!("token {token}"),
    }
}

/// Whether a `[ranges.from]` or `--from` source is fetched rather than read from a file.
fn is_url(source: &str) -> bool {
    source.starts_with("https://") || source.starts_with("http://")
}

/// Reads a list from a file, bounded (the core's reader of provider files).
pub(crate) fn read_file(path: &str) -> Result<Vec<u8>, String> {
    trueip::config::read_provider_file(path).map_err(|e| format!("cannot read {path}: {e}"))
}

/// The prefixes in `new` and not in `old`, and those in `old` and not in `new`.
pub(crate) fn diff(old: &[Cidr], new: &[Cidr]) -> (Vec<Cidr>, Vec<Cidr>) {
    let old_set: BTreeSet<String> = old.iter().map(ToString::to_string).collect();
    let new_set: BTreeSet<String> = new.iter().map(ToString::to_string).collect();
    let pick = |from: &[Cidr], other: &BTreeSet<String>| {
        let mut seen = BTreeSet::new();
        from.iter()
            .filter(|c| {
                let text = c.to_string();
                !other.contains(&text) && seen.insert(text)
            })
            .copied()
            .collect::<Vec<_>>()
    };
    (pick(new, &old_set), pick(old, &new_set))
}

fn diff_counts(old: &[Cidr], new: &[Cidr]) -> (usize, usize) {
    let (added, removed) = diff(old, new);
    (added.len(), removed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trueip::providers::Edition;

    fn cidrs(n: usize) -> Vec<Cidr> {
        (0..n).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()).collect()
    }

    fn cached(n: usize, token: Option<u64>) -> Cached {
        let edition = new(n, token);
        let (ipv4, ipv6) = edition.counts();
        Cached {
            meta: Meta {
                trueip_ranges: cache::FORMAT,
                provider: "cloudfront".into(),
                sources: vec![],
                fetched_at: String::new(),
                fetched_at_unix: 0,
                token,
                published: None,
                ipv4,
                ipv6,
                sha256: String::new(),
            },
            edition,
        }
    }

    fn new(n: usize, token: Option<u64>) -> Edition {
        Edition { cidrs: cidrs(n), token, published: None }
    }

    #[test]
    fn an_aws_token_far_ahead_of_the_clock_is_refused_even_forced() {
        let ahead = u64::MAX / 2;
        let plain = Overrides::default();
        for overrides in [plain, Overrides { force: true }] {
            let err = check("cloudfront", &new(46, Some(ahead)), None, overrides).unwrap_err();
            assert!(err.contains("ahead of this clock"), "{err}");
        }
        assert!(check("cloudfront", &new(46, Some(1_753_388_594)), None, plain).is_ok());
        // Azure's changeNumber is a counter, not a time.
        assert!(check("azure-front-door", &new(46, Some(ahead)), None, plain).is_ok());
    }

    #[test]
    fn an_edition_must_be_as_new_and_about_as_large_as_the_cached_one() {
        let plain = Overrides::default();
        let force = Overrides { force: true };
        let old = cached(46, Some(100));
        assert!(check("cloudfront", &new(46, Some(100)), Some(&old), plain).is_ok());
        assert!(check("cloudfront", &new(92, Some(101)), Some(&old), plain).is_ok());
        assert!(check("cloudfront", &new(23, Some(101)), Some(&old), plain).is_ok());
        assert!(check("cloudfront", &new(50, None), Some(&old), plain).is_ok());
        for (n, token, why) in [
            (46, Some(99), "older"),
            (93, Some(101), "beyond the bound"),
            (22, Some(101), "beyond the bound"),
            (460, Some(101), "beyond the bound"),
        ] {
            let err = check("cloudfront", &new(n, token), Some(&old), plain).unwrap_err();
            assert!(err.contains(why) && err.contains("--force"), "{n}: {err}");
            assert!(check("cloudfront", &new(n, token), Some(&old), force).is_ok());
        }
        assert!(check("cloudfront", &new(1, Some(1)), None, plain).is_ok());
    }

    #[test]
    fn diff_names_each_prefix_once() {
        let parsed = |texts: [&str; 3]| texts.map(|c| c.parse::<Cidr>().unwrap());
        let old = parsed(["10.0.0.0/8", "192.0.2.0/24", "192.0.2.0/24"]);
        let new = parsed(["10.0.0.0/8", "198.51.100.0/24", "198.51.100.0/24"]);
        let (added, removed) = diff(&old, &new);
        assert_eq!(added.len(), 1);
        assert_eq!(removed[0].to_string(), "192.0.2.0/24");
        assert_eq!(removed.len(), 1);
    }

    #[test]
    fn sources_come_from_flags_then_config_then_the_provider() {
        let mut settings = RangesSettings::default();
        let cf = provider("cloudflare").unwrap();
        assert_eq!(settings.sources(cf, &[]).len(), 2);
        settings.from.insert("cloudflare".into(), Sources::One("mirror".into()));
        assert_eq!(settings.sources(cf, &[]), ["mirror"]);
        let flags = [("cloudflare".to_string(), "flag".to_string())];
        assert_eq!(settings.sources(cf, &flags), ["flag"]);
        assert!(provider("gcp-lb").unwrap_err().contains("built in"));
        assert!(provider("akamai").is_err());
        settings.from.insert("akamai".into(), Sources::One("x".into()));
        assert!(settings.check().unwrap_err().to_string().contains("ranges.from.akamai"));
    }
}
