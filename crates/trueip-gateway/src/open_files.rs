//! The process's open-file limit (`RLIMIT_NOFILE`) against the descriptors the config's
//! limits can hold open, checked at start and on every reload.
//!
//! A soft limit below what `limits.max_connections` needs fails nothing at start: the
//! gateway refuses connections later, under load, with `EMFILE` on accept or on an
//! upstream connect, long after the config was read. The soft limit is therefore raised
//! as far as needed (never past the hard limit, never lowered), as Go's runtime does for
//! every program and nginx's `worker_rlimit_nofile` lets operators ask for: the soft
//! limit's low default (1024 under systemd) exists for programs that use `select()`,
//! which the gateway (epoll, kqueue) never calls. Only what the hard limit does not allow
//! is left to the operator, in one warning that names both numbers and the fix.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::Settings;

/// Descriptors held whatever the connections: stdio, each worker's event loop and its
/// waker, the log, range and certificate files being read, resolver sockets.
const RESERVE: u64 = 64;

/// The descriptors the limits in `settings` can hold open at once, at least: every
/// public connection with an upstream connection of its own (an HTTP/2 one can hold
/// more, one per request in flight), the admin listener's connections, the idle pooled
/// upstream connections, and each worker's copy of every listening socket.
pub(crate) fn needed(settings: &Settings) -> u64 {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let listening = count(settings.listeners.len() + usize::from(settings.admin.listen.is_some()))
        .saturating_mul(count(settings.limits.workers));
    count(settings.limits.max_connections)
        .saturating_mul(2)
        .saturating_add(count(settings.admin.max_connections))
        .saturating_add(count(settings.upstream.pool_max_idle_total))
        .saturating_add(listening)
        .saturating_add(RESERVE)
}

/// Raises the soft open-file limit to what `settings` needs if the hard limit allows it;
/// warns once, naming the numbers and the fix, if it does not.
pub(crate) fn check(settings: &Settings) {
    let needed = needed(settings);
    let Rlimit { current: soft, maximum: hard } = getrlimit(Resource::Nofile);
    // `None`: unlimited.
    let Some(soft) = soft.filter(|&s| s < needed) else {
        return;
    };
    let target = hard.map_or(needed, |h| h.min(needed));
    if target > soft {
        match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: hard }) {
            Ok(()) => {
                tracing::info!(
                    "open-file limit (RLIMIT_NOFILE) raised from {soft} to {target} for the \
                     configured limits"
                );
                if target == needed {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now >= needed {
        return;
    }
    let hard = hard.map_or_else(|| "unlimited".to_owned(), |h| h.to_string());
    tracing::warn!(
        "the open-file limit (RLIMIT_NOFILE) is {now} (hard limit {hard}), but \
         limits.max_connections = {}, admin.max_connections = {} and \
         upstream.pool_max_idle_total = {} can hold {needed} descriptors open: past {now}, \
         connections fail (EMFILE). Raise the limit to {needed} or more (`ulimit -n {needed}` \
         before starting, `LimitNOFILE={needed}` in the systemd unit, `--ulimit \
         nofile={needed}` for docker), or lower limits.max_connections",
        settings.limits.max_connections,
        settings.admin.max_connections,
        settings.upstream.pool_max_idle_total,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Settings {
        Settings::from_text(toml, &mut |p| Err(format!("no file {p}"))).unwrap()
    }

    #[test]
    fn every_limit_counts() {
        let base = needed(&settings("[limits]\nworkers = 1\n"));
        let more = |toml: &str| needed(&settings(&format!("[limits]\nworkers = 1\n{toml}"))) - base;
        assert_eq!(more("max_connections = 5096"), 2 * 1000);
        assert_eq!(more("[admin]\nmax_connections = 26"), 10);
        assert_eq!(
            more("[upstream]\nurl = \"http://127.0.0.1:1\"\npool_max_idle_total = 1034"),
            10
        );
        assert_eq!(needed(&settings("[limits]\nworkers = 2\n")), base + 1);
    }
}
