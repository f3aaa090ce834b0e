//! What answers a request.

use trueip::headers::Headers;
use trueip::{Policy, Resolution, Warnings};

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
/// `decide` decides the request, whose header lines are `headers`: the policy of its
/// listener and its client by that policy. It is called only for the metrics on an HTTP
/// listener, which [`metrics_for`] may refuse: the request then goes where any other
/// path goes on that listener (the upstream, the whoami page). Every other request is
/// routed by its path alone.
pub(crate) fn route<'p, H: Headers + ?Sized>(
    path: &str,
    lines: Lines,
    settings: &Settings,
    serves: Serves,
    headers: &H,
    decide: impl FnOnce() -> (&'p Policy, Resolution),
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
        Some(Admin::Metrics)
            if serves != Serves::Admin && !metrics_for(decide, headers, settings) => {}
        Some(which) => return Route::Admin(which),
        None => {}
    }
    match serves {
        Serves::Admin => Route::NotFound,
        Serves::Whoami => Route::Whoami,
        Serves::Upstream => Route::Forward,
    }
}

/// Whether the metrics answer, on an HTTP listener, a request carrying `headers` that
/// `decide` decides.
///
/// They tell a stranger the trusted host names, which providers are trusted and how old
/// their lists are, and, read before and after a request of its own, how that request
/// was decided: a probe of the trust configuration. So by default they answer only a
/// client no stranger can be ([`near`]: loopback, private, link-local, CGNAT, a Unix
/// socket), and `[admin] metrics_to_anyone` opens them. The client is the decided one,
/// not the connection's peer: behind a load balancer every request comes from a private
/// peer.
///
/// A request that carries a client address nobody vouched for (a line of the client-IP
/// table that the gateway withholds from the app: `ForwardingSet::fate` for the hop it
/// came through, `Policy::hop`) was relayed for someone else, or forged, and is refused
/// too: a proxy nobody trusts names the stranger it relays in such a line, and the
/// stranger is decided as the proxy. The core's `header_from_untrusted_peer` alone names
/// only the headers the policy reads: behind a loopback nginx that sets `X-Real-IP`, under
/// a policy that reads `X-Forwarded-For`, every stranger passed as near.
///
/// A hop standing in for a client it could not find is refused too: the walk stopped
/// short at the last address it could vouch for ([`STOOD_IN`]), a trusted balancer's
/// private address, for whoever the request came from. Under `hops:2` (a CDN, then a
/// balancer) a stranger that reaches the balancer past the CDN sends one element fewer,
/// and was decided as the balancer.
///
/// A client the policy trusts is not enough: a provider's ranges trust addresses any
/// stranger can send from (a Cloudflare Worker's request names a Cloudflare address, and
/// Spectrum connects from Cloudflare's ranges with the stranger's own bytes).
fn metrics_for<'p, H: Headers + ?Sized>(
    decide: impl FnOnce() -> (&'p Policy, Resolution),
    headers: &H,
    settings: &Settings,
) -> bool {
    if settings.admin.metrics_to_anyone {
        return true;
    }
    let (policy, resolution) = decide();
    let hop = policy.hop(&resolution);
    let set = policy.withheld_set();
    let unvouched = || {
        set.names().iter().any(|name| {
            let mut carried = false;
            headers.for_each_value(name, |_| carried = true);
            carried && set.fate(name.as_str(), hop).withheld
        })
    };
    let stood_in = STOOD_IN.iter().any(|w| resolution.warnings.contains(*w));
    near(resolution.client) && !stood_in && !unvouched()
}

/// The warnings of a decision whose answer is the last hop the walk could vouch for, not
/// the client: an element it could not read (`malformed`) or that hides an address
/// (`opaque`), fewer elements than hops (`fewer_hops_than_configured`), more lines than it
/// reads (`truncated`), two answers where one was due (`duplicate_header`: a client's
/// `?client=` beside the one its trusted gateway appends, under `query:client`).
const STOOD_IN: [Warnings; 5] = [
    Warnings::MALFORMED,
    Warnings::OPAQUE,
    Warnings::FEWER_HOPS,
    Warnings::TRUNCATED,
    Warnings::DUPLICATE_HEADER,
];

/// `/.trueip/healthz`, `/.trueip/metrics` and `/.trueip/forgeries` (under the
/// configured prefix); bare `/healthz`, `/metrics` and `/forgeries` too when no app can
/// own those paths (whoami mode, the admin listener). [`route`] serves `/forgeries` on
/// the admin listener only.
fn admin_endpoint(path: &str, prefix: &str, bare: bool) -> Option<Admin> {
    let rest = match (!prefix.is_empty()).then(|| path.strip_prefix(prefix)).flatten() {
        Some(rest) => rest,
        None if bare => path,
        None => return None,
    };
    ENDPOINTS.iter().find(|(name, _)| *name == rest).map(|&(_, which)| which)
}

/// Each admin endpoint's path, under the prefix or bare.
const ENDPOINTS: [(&str, Admin); 3] =
    [("/healthz", Admin::Health), ("/metrics", Admin::Metrics), ("/forgeries", Admin::Forgeries)];

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
        assert_eq!(admin_endpoint("/.trueip/healthz", "/.trueip", false), Some(Admin::Health));
        assert_eq!(admin_endpoint("/.trueip/metrics", "/.trueip", false), Some(Admin::Metrics));
        assert_eq!(admin_endpoint("/healthz", "/.trueip", false), None);
        assert_eq!(admin_endpoint("/healthz", "/.trueip", true), Some(Admin::Health));
        assert_eq!(admin_endpoint("/metrics", "", true), Some(Admin::Metrics));
        assert_eq!(admin_endpoint("/.trueip/healthz", "", false), None);
        assert_eq!(admin_endpoint("/.trueip/other", "/.trueip", true), None);
        assert_eq!(admin_endpoint("/.trueip/forgeries", "/.trueip", false), Some(Admin::Forgeries));
    }

    /// The route of a request for `path` from `peer` carrying `headers`, decided under
    /// `settings`' policy when the route asks.
    fn asked(
        path: &str,
        lines: Lines,
        settings: &Settings,
        serves: Serves,
        peer: &str,
        headers: &[(&str, &str)],
    ) -> Route {
        let peer: std::net::IpAddr = peer.parse().unwrap();
        let policy = &settings.policy;
        route(path, lines, settings, serves, headers, || {
            (policy, policy.resolve(&trueip::Connection::from_peer(peer), headers))
        })
    }

    /// The route of a request for `path` that must be routed without deciding it.
    fn unasked(path: &str, lines: Lines, settings: &Settings, serves: Serves) -> Route {
        route(path, lines, settings, serves, &[] as &[(&str, &str)], || unreachable!())
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
            let other = unasked("/", ONE, &plain, serves);
            for path in ["/.trueip/metrics", "/metrics"] {
                if path == "/metrics" && serves == Serves::Upstream {
                    continue;
                }
                let from = |peer: &str, headers: &[(&str, &str)]| {
                    asked(path, ONE, &plain, serves, peer, headers)
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
                unasked("/.trueip/healthz", ONE, &plain, serves),
                Route::Admin(Admin::Health)
            );
        }
        // The decided client, not the peer: a trusted proxy vouches for a stranger.
        let behind = settings("[client_ip]\ntrusted = [\"10.0.0.0/8\"]");
        let through = |client: &str| {
            let headers = [("x-forwarded-for", client)];
            asked("/.trueip/metrics", ONE, &behind, Serves::Upstream, "10.0.0.2", &headers)
        };
        assert_eq!(through("203.0.113.9"), Route::Forward);
        assert_eq!(through("192.168.7.7"), metrics);
        assert_eq!(
            asked("/.trueip/metrics", ONE, &behind, Serves::Upstream, "10.0.0.2", &[]),
            metrics,
            "the trusted hop's own request"
        );
        // The admin listener is the operator's: its metrics are not asked who asks.
        assert_eq!(unasked("/metrics", ONE, &plain, Serves::Admin), metrics);
        let open = settings("[admin]\nmetrics_to_anyone = true");
        assert_eq!(
            asked("/.trueip/metrics", ONE, &open, Serves::Upstream, "203.0.113.9", &[]),
            metrics
        );
    }

    /// A proxy that relays a stranger with a client-IP header the policy does not read (a
    /// loopback nginx's `X-Real-IP` before a policy that reads `X-Forwarded-For`, trusted
    /// or not; a `True-Client-IP` before the default policy) raised no
    /// `header_from_untrusted_peer`, and the stranger was taken for the proxy.
    ///
    /// Fails on the code before the fix: every request below got the metrics.
    #[test]
    fn in_band_metrics_refuse_what_a_proxy_nobody_trusts_relays_in_any_header() {
        let behind = settings("[client_ip]\ntrusted = [\"10.0.0.0/8\"]");
        let plain = settings("");
        for (settings, name, value) in [
            (&behind, "X-Real-IP", "203.0.113.9"),
            (&behind, "Forwarded", "for=203.0.113.9"),
            (&behind, "True-Client-IP", "203.0.113.9"),
            (&behind, "X-Forwarded-Proto", "https"),
            (&plain, "True-Client-IP", "203.0.113.9"),
            (&plain, "X-Client-IP", "203.0.113.9"),
            (&plain, "CF-Connecting-IP", "203.0.113.9"),
        ] {
            for peer in ["127.0.0.1", "::1", "10.0.0.2"] {
                let trusted_hop = std::ptr::eq(settings, &behind) && peer == "10.0.0.2";
                // A claim about the request passes a trusted hop: it names no client.
                let vouched = trusted_hop && name == "X-Forwarded-Proto";
                let headers = [(name, value)];
                let routed =
                    asked("/.trueip/metrics", ONE, settings, Serves::Upstream, peer, &headers);
                // Through a trusted hop a client-IP header the decision did not read
                // names someone else too: the trusted nginx relays a stranger in
                // `X-Real-IP`, and the decision, reading no `X-Forwarded-For`, is the hop.
                let want = if vouched { Route::Admin(Admin::Metrics) } else { Route::Forward };
                assert_eq!(routed, want, "{name} from {peer}");
            }
        }
    }

    /// A trusted balancer standing in for a client the walk could not find: under
    /// `hops:2` (a CDN, then the balancer), a stranger that reaches the balancer past the
    /// CDN sends one element fewer, and was decided as the balancer's private address;
    /// so with an element the walk cannot read or that hides the address, and with two
    /// answers where one was due.
    ///
    /// Fails on the code before the fix: each request below got the metrics.
    #[test]
    fn in_band_metrics_refuse_a_hop_standing_in_for_its_client() {
        let metrics = Route::Admin(Admin::Metrics);
        let hops = settings("[client_ip]\ntrusted = [\"10.0.0.0/8\"]\nstrategy = \"hops:2\"");
        let walk = settings("[client_ip]\ntrusted = [\"10.0.0.0/8\"]");
        let from = |settings: &Settings, xff: &str| {
            let headers = [("x-forwarded-for", xff)];
            asked("/.trueip/metrics", ONE, settings, Serves::Upstream, "10.0.0.2", &headers)
        };
        assert_eq!(from(&hops, "203.0.113.9"), Route::Forward, "fewer hops");
        assert_eq!(from(&walk, "203.0.113.9, unknown"), Route::Forward, "opaque");
        assert_eq!(from(&walk, "203.0.113.9, 10.0.0.3:x"), Route::Forward, "malformed");
        // The answers that name a client still get them.
        assert_eq!(from(&hops, "192.168.1.9, 10.0.0.3"), metrics);
        assert_eq!(from(&walk, "203.0.113.9, 192.168.1.9"), metrics);
        // A trusted gateway appends `client=` to the query; a stranger wrote another.
        let query =
            settings("[client_ip]\ntrusted = [\"10.0.0.0/8\"]\nstrategy = \"query:client\"");
        let policy = &query.policy;
        let asking = |target: &str| {
            let (_, args) = target.split_once('?').unwrap_or((target, ""));
            let none: &[(&str, &str)] = &[];
            let headers = trueip::headers::WithQuery::new(none, args.as_bytes());
            let conn =
                trueip::Connection::from_peer("10.0.0.2".parse::<std::net::IpAddr>().unwrap());
            route("/.trueip/metrics", ONE, &query, Serves::Upstream, &headers, || {
                (policy, policy.resolve(&conn, &headers))
            })
        };
        assert_eq!(
            asking("/.trueip/metrics?client=10.0.0.9&client=203.0.113.9"),
            Route::Forward,
            "duplicate"
        );
        assert_eq!(asking("/.trueip/metrics?client=192.168.1.9"), metrics);
    }

    /// One header line, one `Host`.
    const ONE: Lines = Lines { count: 1, several_hosts: false };

    #[test]
    fn several_hosts_are_refused_before_any_page_or_the_upstream() {
        let settings = crate::config::Settings::from_text("", &mut |_| Err(String::new())).unwrap();
        let two = Lines { count: 2, several_hosts: true };
        for serves in [Serves::Admin, Serves::Whoami, Serves::Upstream] {
            for path in ["/", "/.trueip/healthz"] {
                assert_eq!(
                    asked(path, two, &settings, serves, "127.0.0.1", &[]),
                    Route::SeveralHosts
                );
            }
        }
        let over = Lines { count: settings.limits.max_headers + 1, several_hosts: true };
        assert_eq!(
            asked("/", over, &settings, Serves::Upstream, "127.0.0.1", &[]),
            Route::TooManyHeaders
        );
    }

    #[test]
    fn forgeries_only_on_the_admin_listener() {
        let settings = crate::config::Settings::from_text("", &mut |_| Err(String::new())).unwrap();
        for path in ["/.trueip/forgeries", "/forgeries"] {
            assert_eq!(
                asked(path, ONE, &settings, Serves::Admin, "127.0.0.1", &[]),
                Route::Admin(Admin::Forgeries),
                "{path}"
            );
        }
        assert_eq!(
            asked("/.trueip/forgeries", ONE, &settings, Serves::Whoami, "127.0.0.1", &[]),
            Route::Whoami
        );
        assert_eq!(
            asked("/forgeries", ONE, &settings, Serves::Whoami, "127.0.0.1", &[]),
            Route::Whoami
        );
        assert_eq!(
            asked("/.trueip/forgeries", ONE, &settings, Serves::Upstream, "127.0.0.1", &[]),
            Route::Forward
        );
        assert_eq!(
            asked("/.trueip/metrics", ONE, &settings, Serves::Upstream, "127.0.0.1", &[]),
            Route::Admin(Admin::Metrics)
        );
    }
}
