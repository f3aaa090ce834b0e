//! What answers a request.

use trueip::{Resolution, Warnings};

use crate::config::Settings;
use crate::peers::near;
use crate::rules::limits::{Lines, too_many_headers};

/// Who answers the requests of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Serves {
    /// The admin listener: `/healthz`, `/metrics` and `/forgeries` only.
    Admin,
    /// No upstream is configured: the whoami page.
    Whoami,
    /// The upstream.
    Upstream,
}

/// One of the admin endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admin {
    /// `/healthz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// `/forgeries`: the record of forged requests, on the admin listener only (it holds
    /// other clients' addresses and text).
    Forgeries,
}

/// What a request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// 431: more header lines than `limits.max_headers`.
    TooManyHeaders,
    /// 400: more than one `Host` field (RFC 9112 §3.2: which host the request is for is
    /// not known, and a server may take one where a proxy before it took the other).
    SeveralHosts,
    /// An admin endpoint.
    Admin(Admin),
    /// 404: the admin listener serves nothing else.
    NotFound,
    /// The whoami page.
    Whoami,
    /// Forwarded to the upstream.
    Forward,
}

/// The route of a request for `path` (without the query) carrying `lines` (as
/// [`header_lines`](crate::rules::limits::header_lines) counts them), on a listener that
/// `serves`. The header limit comes first, before anything looks at the request, then
/// the one-`Host` rule, before a page or the upstream reads a host.
///
/// `decide` decides the request's client; it is called only for the metrics on an HTTP
/// listener, which [`metrics_for`] may refuse: the request then goes where any other
/// path goes on that listener (the upstream, the whoami page). Every other request is
/// routed by its path alone.
pub(crate) fn route(
    path: &str,
    lines: Lines,
    settings: &Settings,
    serves: Serves,
    decide: impl FnOnce() -> Resolution,
) -> Route {
    if too_many_headers(lines.count, settings.limits.max_headers) {
        return Route::TooManyHeaders;
    }
    if lines.several_hosts {
        return Route::SeveralHosts;
    }
    let bare = serves != Serves::Upstream;
    match admin_endpoint(path, &settings.admin.prefix, bare) {
        Some(Admin::Forgeries) if serves != Serves::Admin => {}
        Some(Admin::Metrics) if serves != Serves::Admin && !metrics_for(&decide(), settings) => {}
        Some(which) => return Route::Admin(which),
        None => {}
    }
    match serves {
        Serves::Admin => Route::NotFound,
        Serves::Whoami => Route::Whoami,
        Serves::Upstream => Route::Forward,
    }
}

/// Whether the metrics answer, on an HTTP listener, a request decided as `resolution`.
///
/// They tell a stranger the trusted host names, which providers are trusted and how old
/// their lists are, and, read before and after a request of its own, how that request
/// was decided: a probe of the trust configuration. So by default they answer only a
/// client no stranger can be ([`near`]: loopback, private, link-local, CGNAT, a Unix
/// socket), and `[admin] metrics_to_anyone` opens them. The client is the decided one,
/// not the connection's peer: behind a load balancer every request comes from a private
/// peer. A request whose forwarding headers came from a peer nobody trusts was relayed
/// for someone else (the proxy nobody trusted yet), and is refused too.
///
/// A client the policy trusts is not enough: a provider's ranges trust addresses any
/// stranger can send from (a Cloudflare Worker's request names a Cloudflare address, and
/// Spectrum connects from Cloudflare's ranges with the stranger's own bytes).
fn metrics_for(resolution: &Resolution, settings: &Settings) -> bool {
    settings.admin.metrics_to_anyone
        || (near(resolution.client) && !resolution.warnings.contains(Warnings::UNTRUSTED_HEADER))
}

/// `/.trueip/healthz`, `/.trueip/metrics` and `/.trueip/forgeries` (under the
/// configured prefix); bare `/healthz`, `/metrics` and `/forgeries` too when no app can
/// own those paths (whoami mode, the admin listener). [`route`] serves `/forgeries` on
/// the admin listener only.
fn admin_endpoint(path: &str, prefix: &str, bare: bool) -> Option<Admin> {
    let rest = match (!prefix.is_empty())
        .then(|| path.strip_prefix(prefix))
        .flatten()
    {
        Some(rest) => rest,
        None if bare => path,
        None => return None,
    };
    ENDPOINTS
        .iter()
        .find(|(name, _)| *name == rest)
        .map(|&(_, which)| which)
}

/// Each admin endpoint's path, under the prefix or bare.
const ENDPOINTS: [(&str, Admin); 3] = [
    ("/healthz", Admin::Health),
    ("/metrics", Admin::Metrics),
    ("/forgeries", Admin::Forgeries),
];

/// The paths [`admin_endpoint`] answers `which` at on an HTTP listener whose requests
/// go to the upstream or not (whoami mode: `serves_upstream` false), for the start-up
/// log: under `prefix`, and bare when no app can own the path.
pub(crate) fn listener_paths(which: Admin, prefix: &str, serves_upstream: bool) -> Vec<String> {
    let Some((name, _)) = ENDPOINTS.iter().find(|(_, w)| *w == which) else {
        return Vec::new();
    };
    let prefixed = (!prefix.is_empty()).then(|| format!("{prefix}{name}"));
    let bare = (!serves_upstream).then(|| name.to_string());
    prefixed.into_iter().chain(bare).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths the start-up log names are those served, and every path served is
    /// named. Whoami mode serves bare paths too, which the log once left out.
    #[test]
    fn the_paths_the_log_names_are_those_served() {
        let candidates = |prefix: &str| {
            let mut all: Vec<String> = ENDPOINTS.iter().map(|(n, _)| n.to_string()).collect();
            all.extend(ENDPOINTS.iter().map(|(n, _)| format!("{prefix}{n}")));
            all.push(format!("{prefix}/"));
            all
        };
        for prefix in ["/.trueip", "/_admin", ""] {
            for serves_upstream in [false, true] {
                for which in [Admin::Health, Admin::Metrics] {
                    let named = listener_paths(which, prefix, serves_upstream);
                    for path in candidates(prefix) {
                        let served = admin_endpoint(&path, prefix, !serves_upstream) == Some(which);
                        assert_eq!(
                            served,
                            named.contains(&path),
                            "{path} under {prefix:?}, upstream {serves_upstream}: {named:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            listener_paths(Admin::Health, "/.trueip", false),
            ["/.trueip/healthz", "/healthz"]
        );
        assert!(listener_paths(Admin::Metrics, "", true).is_empty());
    }

    #[test]
    fn admin_paths() {
        assert_eq!(
            admin_endpoint("/.trueip/healthz", "/.trueip", false),
            Some(Admin::Health)
        );
        assert_eq!(
            admin_endpoint("/.trueip/metrics", "/.trueip", false),
            Some(Admin::Metrics)
        );
        assert_eq!(admin_endpoint("/healthz", "/.trueip", false), None);
        assert_eq!(
            admin_endpoint("/healthz", "/.trueip", true),
            Some(Admin::Health)
        );
        assert_eq!(admin_endpoint("/metrics", "", true), Some(Admin::Metrics));
        assert_eq!(admin_endpoint("/.trueip/healthz", "", false), None);
        assert_eq!(admin_endpoint("/.trueip/other", "/.trueip", true), None);
        assert_eq!(
            admin_endpoint("/.trueip/forgeries", "/.trueip", false),
            Some(Admin::Forgeries)
        );
    }

    /// The decision of a request from `peer` carrying `headers`, under `settings`.
    fn asked(settings: &Settings, peer: &str, headers: &[(&str, &str)]) -> Resolution {
        let peer: std::net::IpAddr = peer.parse().unwrap();
        settings
            .policy
            .resolve(&trueip::Connection::from_peer(peer), headers)
    }

    fn settings(toml: &str) -> Settings {
        Settings::from_text(toml, &mut |_| Err(String::new())).unwrap()
    }

    /// The in-band metrics answered anyone: a stranger probed the trust configuration
    /// with them. Fails on the code before the fix: the strangers below got the metrics.
    #[test]
    fn in_band_metrics_answer_only_clients_no_stranger_can_be() {
        let metrics = Route::Admin(Admin::Metrics);
        let plain = settings("");
        for serves in [Serves::Upstream, Serves::Whoami] {
            let other = route("/", ONE, &plain, serves, || unreachable!());
            for path in ["/.trueip/metrics", "/metrics"] {
                if path == "/metrics" && serves == Serves::Upstream {
                    continue;
                }
                let from = |peer: &str, headers: &[(&str, &str)]| {
                    route(path, ONE, &plain, serves, || asked(&plain, peer, headers))
                };
                for near in ["127.0.0.1", "10.0.0.5", "100.64.1.1", "fd00::1", "fe80::1"] {
                    assert_eq!(from(near, &[]), metrics, "{near} {path} {serves:?}");
                }
                for far in ["203.0.113.9", "2001:db8::9"] {
                    assert_eq!(from(far, &[]), other, "{far} {path} {serves:?}");
                }
                // A proxy nobody trusts relays a stranger: not the proxy's own request.
                let relayed = [("x-forwarded-for", "203.0.113.9")];
                assert_eq!(from("127.0.0.1", &relayed), other, "{path} {serves:?}");
            }
            // Health answers anyone, and is decided by its path alone.
            assert_eq!(
                route("/.trueip/healthz", ONE, &plain, serves, || unreachable!()),
                Route::Admin(Admin::Health)
            );
        }
        // The decided client, not the peer: a trusted proxy vouches for a stranger.
        let behind = settings("[client_ip]\ntrusted = [\"10.0.0.0/8\"]");
        let through = |client: &str| {
            let headers = [("x-forwarded-for", client)];
            route("/.trueip/metrics", ONE, &behind, Serves::Upstream, || {
                asked(&behind, "10.0.0.2", &headers)
            })
        };
        assert_eq!(through("203.0.113.9"), Route::Forward);
        assert_eq!(through("192.168.7.7"), metrics);
        // The admin listener is the operator's: its metrics are not asked who asks.
        assert_eq!(
            route("/metrics", ONE, &plain, Serves::Admin, || unreachable!()),
            metrics
        );
        let open = settings("[admin]\nmetrics_to_anyone = true");
        assert_eq!(
            route("/.trueip/metrics", ONE, &open, Serves::Upstream, || {
                asked(&open, "203.0.113.9", &[])
            }),
            metrics
        );
    }

    /// One header line, one `Host`.
    const ONE: Lines = Lines {
        count: 1,
        several_hosts: false,
    };

    #[test]
    fn several_hosts_are_refused_before_any_page_or_the_upstream() {
        let settings = crate::config::Settings::from_text("", &mut |_| Err(String::new())).unwrap();
        let two = Lines {
            count: 2,
            several_hosts: true,
        };
        for serves in [Serves::Admin, Serves::Whoami, Serves::Upstream] {
            for path in ["/", "/.trueip/healthz"] {
                assert_eq!(
                    route(path, two, &settings, serves, || asked(
                        &settings,
                        "127.0.0.1",
                        &[]
                    )),
                    Route::SeveralHosts
                );
            }
        }
        let over = Lines {
            count: settings.limits.max_headers + 1,
            several_hosts: true,
        };
        assert_eq!(
            route("/", over, &settings, Serves::Upstream, || asked(
                &settings,
                "127.0.0.1",
                &[]
            )),
            Route::TooManyHeaders
        );
    }

    #[test]
    fn forgeries_only_on_the_admin_listener() {
        let settings = crate::config::Settings::from_text("", &mut |_| Err(String::new())).unwrap();
        for path in ["/.trueip/forgeries", "/forgeries"] {
            assert_eq!(
                route(path, ONE, &settings, Serves::Admin, || asked(
                    &settings,
                    "127.0.0.1",
                    &[]
                )),
                Route::Admin(Admin::Forgeries),
                "{path}"
            );
        }
        assert_eq!(
            route("/.trueip/forgeries", ONE, &settings, Serves::Whoami, || {
                asked(&settings, "127.0.0.1", &[])
            }),
            Route::Whoami
        );
        assert_eq!(
            route("/forgeries", ONE, &settings, Serves::Whoami, || asked(
                &settings,
                "127.0.0.1",
                &[]
            )),
            Route::Whoami
        );
        assert_eq!(
            route(
                "/.trueip/forgeries",
                ONE,
                &settings,
                Serves::Upstream,
                || asked(&settings, "127.0.0.1", &[])
            ),
            Route::Forward
        );
        assert_eq!(
            route("/.trueip/metrics", ONE, &settings, Serves::Upstream, || {
                asked(&settings, "127.0.0.1", &[])
            }),
            Route::Admin(Admin::Metrics)
        );
    }
}
