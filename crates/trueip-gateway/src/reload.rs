//! Switching to a new state while serving: SIGHUP re-reads the config file and the range
//! cache; the background refresh (`[ranges] refresh`) fetches the provider lists the
//! policy reads and rebuilds the state from the same config and the new cache.
//!
//! A new state is built whole, off the request path, then stored with one atomic swap:
//! a request sees the old trust sets or the new ones, never a set half-built. Both paths
//! take one lock around build and swap, so a refresh finishing after a SIGHUP cannot put
//! back the config the SIGHUP replaced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use trueip::ConfigError;

use crate::config::{self, FileConfig, ServeArgs, Settings};
use crate::context::{Shared, State};
use crate::listening::Listening;
use crate::ranges::{self, Overrides, fetch};

/// Serialises builds and swaps (SIGHUP and refresh), and holds the listening sockets
/// that swaps open and close.
static SWITCH: Mutex<Listening> = Mutex::new(Listening::new());

/// How often the refresh loop looks again while `[ranges] refresh` is off (a SIGHUP may
/// turn it on).
const IDLE_LOOK: Duration = Duration::from_secs(60);
/// The longest wait before retrying a list whose refresh failed.
const MAX_RETRY: Duration = Duration::from_secs(15 * 60);

/// Reads the config file (if any), applies the flags, checks everything, reads the range
/// cache and the TLS files: the state a reload would switch to.
pub(crate) fn load(args: &ServeArgs) -> Result<State, ConfigError> {
    let file = match args.config.as_deref() {
        Some(p) => config::read_file(p)?,
        None => FileConfig::default(),
    };
    build(file, args)
}

/// The state `file` and the flags describe, with the range cache as it is now.
pub(crate) fn build(file: FileConfig, args: &ServeArgs) -> Result<State, ConfigError> {
    build_named(file, args, &crate::names::Addresses::new())
}

/// [`build`], with host names already resolved (`names`); others are resolved now.
fn build_named(
    file: FileConfig,
    args: &ServeArgs,
    names: &crate::names::Addresses,
) -> Result<State, ConfigError> {
    let mut read = |p: &str| trueip::config::read_provider_file(p);
    let settings = Settings::from_file_named(file.clone(), args, &mut read, names)?;
    let mut state = State::build(settings)?;
    state.source = Some(Arc::new(file));
    Ok(state)
}

/// Swaps in `state`: first opens the sockets it adds (a socket that cannot be opened
/// rejects the reload, and nothing changes), then swaps, then closes the sockets it no
/// longer names and applies `limits.max_connections`, `admin.max_connections` and the
/// open-file limit they need.
fn switch(
    listening: &mut Listening,
    shared: &Arc<Shared>,
    mut state: State,
) -> Result<(), ConfigError> {
    let current = shared.state.load_full();
    let opening = listening.prepare(&mut state.settings, true).map_err(ConfigError::new)?;
    let (new, old) = (&state.settings, &current.settings);
    if new.limits.backlog != old.limits.backlog {
        tracing::warn!(
            "limits.backlog applies to sockets opened from now on; those kept open keep theirs until a restart"
        );
    }
    for l in &new.listeners {
        let kept = old.listeners.iter().find(|o| o.address == l.address);
        if kept.is_some_and(|o| (&o.unix_mode, &o.unix_owner) != (&l.unix_mode, &l.unix_owner)) {
            tracing::warn!(
                listener = %l.address,
                "unix_mode and unix_owner apply when the socket is opened again (another path, or a restart)"
            );
        }
    }
    if new.limits.workers != old.limits.workers {
        tracing::warn!("limits.workers changes apply after a restart");
    }
    if new.log != old.log {
        tracing::warn!("[log] changes apply after a restart");
    }
    if new.limits.max_connections != old.limits.max_connections {
        shared.connections.resize(new.limits.max_connections);
        tracing::info!(
            "limits.max_connections is now {} (was {})",
            new.limits.max_connections,
            old.limits.max_connections
        );
    }
    if new.admin.max_connections != old.admin.max_connections {
        shared.admin_connections.resize(new.admin.max_connections);
        tracing::info!(
            "admin.max_connections is now {} (was {})",
            new.admin.max_connections,
            old.admin.max_connections
        );
    }
    crate::open_files::check(&state.settings);
    shared.metrics.ranges_in_use(&state.settings.loaded.metas);
    shared.metrics.names_in_use(&state.settings.names);
    shared.metrics.listener_policies(state.settings.listener_policy_names());
    shared.state.store(Arc::new(state));
    listening.apply(opening, shared);
    Ok(())
}

/// Puts the sockets opened at start in the reloads' care.
pub(crate) fn started(listening: Listening) {
    *locked() = listening;
}

/// Closes every listening socket (at exit), removing the socket files.
pub(crate) fn close_all() {
    locked().close_all();
}

fn locked() -> std::sync::MutexGuard<'static, Listening> {
    // Nothing the lock guards can be left half-done by a panic: take it back.
    SWITCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SIGHUP: re-read the file and the range cache and swap the state, or keep the old one
/// and say why.
pub(crate) async fn sighup(shared: Arc<Shared>, args: ServeArgs) {
    let target = shared.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut listening = locked();
        let started = std::time::Instant::now();
        switch(&mut listening, &target, load(&args)?).map(|()| started.elapsed())
    })
    .await
    .unwrap_or_else(|e| Err(ConfigError::new(format!("reload task failed: {e}"))));
    match result {
        Ok(elapsed) => {
            shared.metrics.reloaded(true);
            tracing::info!("SIGHUP: config reloaded (built and swapped in {elapsed:?})");
        }
        Err(e) => {
            shared.metrics.reloaded(false);
            tracing::error!(
                "SIGHUP: config rejected, the old one stays: {}",
                trueip::shown::log_text(&e)
            );
        }
    }
}

/// Starts the refresh loop on its own thread and runtime, so that downloads, checksums
/// and building trust sets never run on a thread that serves requests. It ends when
/// `exit` turns true.
pub(crate) fn start_refresh(
    shared: Arc<Shared>,
    args: ServeArgs,
    mut exit: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("trueip-ranges".into()).spawn(move || {
        runtime.block_on(async move {
            let mut retry = HashMap::new();
            let mut names_due = Instant::now() + shared.state.load().settings.resolve_every;
            loop {
                // A download in flight does not hold up the shutdown: the cache is
                // written by one rename, so a refresh cut short leaves it whole.
                let wait = tokio::select! {
                    wait = refresh_due(&shared, &args, &mut retry) => wait,
                    _ = exit.wait_for(|e| *e) => return,
                };
                let wait = tokio::select! {
                    names = refresh_names(&shared, &args, &mut names_due) => wait.min(names),
                    _ = exit.wait_for(|e| *e) => return,
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = exit.wait_for(|e| *e) => return,
                }
            }
        });
    })
}

/// Resolves the trusted host names again when `names_due` has come, and swaps in a
/// policy with the new addresses if any changed; a name that does not resolve keeps its
/// last good addresses (logged, counted). Returns how long to wait before looking again.
async fn refresh_names(
    shared: &Arc<Shared>,
    args: &ServeArgs,
    names_due: &mut Instant,
) -> Duration {
    let state = shared.state.load_full();
    let every = state.settings.resolve_every;
    if state.settings.names.is_empty() {
        *names_due = Instant::now() + every;
        return IDLE_LOOK.min(every);
    }
    let now = Instant::now();
    if *names_due > now {
        return *names_due - now;
    }
    *names_due = now + every;
    let last = state.settings.names.clone();
    let names: Vec<String> = last.keys().cloned().collect();
    // getaddrinfo blocks: off this thread's event loop.
    let looked = tokio::task::spawn_blocking(move || {
        crate::names::refresh(&names, &*crate::names::resolver(), &last)
    })
    .await;
    let Ok((addrs, failed)) = looked else {
        return every;
    };
    for (name, why) in &failed {
        shared.metrics.name_resolve_failed(name);
        tracing::warn!(
            name = name.as_str(),
            "trust name {name} does not resolve ({why}): its last good addresses stay"
        );
    }
    if addrs == state.settings.names {
        return every;
    }
    let Some(source) = state.source.clone() else {
        return every;
    };
    let args = args.clone();
    let built = {
        let mut listening = locked();
        // The config a SIGHUP may have loaded since this round began.
        let file = shared.state.load().source.clone().unwrap_or(source);
        build_named((*file).clone(), &args, &addrs).and_then(|s| switch(&mut listening, shared, s))
    };
    match built {
        Ok(()) => {
            for (name, ips) in &addrs {
                if state.settings.names.get(name) != Some(ips) {
                    tracing::info!(
                        name = name.as_str(),
                        "trust name {}: new addresses in use",
                        crate::names::describe(name, ips)
                    );
                }
            }
        }
        Err(e) => {
            // `e` may quote a provider file as it reads now (a cron job's download): log mode.
            tracing::error!(
                "trust names: cannot use the new addresses, the old ones stay: {}",
                trueip::shown::log_text(&e)
            )
        }
    }
    every
}

/// Refreshes every list in use whose age has reached `[ranges] refresh` (and whose
/// retry time, after a failure, has come), then rebuilds the state if any was
/// accepted. Returns how long to wait before looking again.
async fn refresh_due(
    shared: &Arc<Shared>,
    args: &ServeArgs,
    retry: &mut HashMap<String, u64>,
) -> Duration {
    let state = shared.state.load_full();
    let settings = &state.settings;
    let Some(every) = settings.ranges.refresh else {
        return IDLE_LOOK;
    };
    let backoff = every.min(MAX_RETRY);
    let mut next = every;
    let mut accepted = false;
    for meta in &settings.loaded.metas {
        let now = crate::clock::unix_now();
        let due = meta
            .fetched_at_unix
            .saturating_add(every.as_secs())
            .max(retry.get(&meta.provider).copied().unwrap_or(0));
        if due > now {
            next = next.min(Duration::from_secs(due - now));
            continue;
        }
        let Ok(provider) = ranges::provider(&meta.provider) else {
            continue;
        };
        let bounds =
            fetch::Bounds { timeout: settings.ranges.timeout, max_bytes: fetch::MAX_BYTES };
        let sources = settings.ranges.sources(provider, &[]);
        if sources.is_empty() {
            tracing::warn!(
                provider = provider.name,
                "ranges: {0} has no published URL to refresh from: name a mirror in [ranges.from] \
                 {0}, or import the file with `trueip ranges update {0} --from {0}=FILE` and SIGHUP",
                provider.name
            );
            retry.insert(meta.provider.clone(), now.saturating_add(every.as_secs()));
            next = next.min(every);
            continue;
        }
        let result = ranges::update(
            &settings.loaded.dir,
            provider,
            &sources,
            bounds,
            Overrides::default(),
            &mut |_, _, _| {},
        )
        .await;
        match result {
            Ok(u) => {
                tracing::info!(
                    provider = provider.name,
                    added = u.added,
                    removed = u.removed,
                    prefixes = u.meta.prefixes(),
                    "ranges: {} refreshed: {} added, {} removed, {} prefixes",
                    provider.name,
                    u.added,
                    u.removed,
                    u.meta.prefixes()
                );
                accepted = true;
                retry.insert(meta.provider.clone(), now.saturating_add(every.as_secs()));
            }
            Err(e) => {
                shared.metrics.range_refresh_failed(provider.name);
                tracing::warn!(
                    provider = provider.name,
                    "ranges: refresh failed, the last good list stays: {}",
                    trueip::shown::log_text(&e)
                );
                retry.insert(meta.provider.clone(), now.saturating_add(backoff.as_secs()));
                next = next.min(backoff);
            }
        }
    }
    if accepted {
        let Some(source) = state.source.clone() else {
            return next;
        };
        let args = args.clone();
        let built = {
            let mut listening = locked();
            // The config a SIGHUP may have loaded since this round began.
            let file = shared.state.load().source.clone().unwrap_or(source);
            let started = std::time::Instant::now();
            build((*file).clone(), &args).and_then(|s| {
                let elapsed = started.elapsed();
                switch(&mut listening, shared, s).map(|()| elapsed)
            })
        };
        match built {
            Ok(elapsed) => {
                tracing::info!("ranges: new trust sets in use (built and swapped in {elapsed:?})")
            }
            Err(e) => {
                tracing::error!(
                    "ranges: cannot use the refreshed lists, the old ones stay: {}",
                    trueip::shown::log_text(&e)
                )
            }
        }
    }
    next.max(Duration::from_secs(1))
}
