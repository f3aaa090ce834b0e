//! What answers a request.

use crate::config::Settings;
use crate::rules::limits::too_many_headers;

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
    /// An admin endpoint.
    Admin(Admin),
    /// 404: the admin listener serves nothing else.
    NotFound,
    /// The whoami page.
    Whoami,
    /// Forwarded to the upstream.
    Forward,
}

/// The route of a request for `path` (without the query) carrying `header_lines` lines
/// (as [`header_lines`](crate::rules::limits::header_lines) counts them), on a listener
/// that `serves`. The header limit comes first, before anything looks at the request.
pub(crate) fn route(path: &str, header_lines: usize, settings: &Settings, serves: Serves) -> Route {
    if too_many_headers(header_lines, settings.limits.max_headers) {
        return Route::TooManyHeaders;
    }
    let bare = serves != Serves::Upstream;
    match admin_endpoint(path, &settings.admin.prefix, bare) {
        Some(Admin::Forgeries) if serves != Serves::Admin => {}
        Some(which) => return Route::Admin(which),
        None => {}
    }
    match serves {
        Serves::Admin => Route::NotFound,
        Serves::Whoami => Route::Whoami,
        Serves::Upstream => Route::Forward,
    }
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
    match rest {
        "/healthz" => Some(Admin::Health),
        "/metrics" => Some(Admin::Metrics),
        "/forgeries" => Some(Admin::Forgeries),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn forgeries_only_on_the_admin_listener() {
        let settings = crate::config::Settings::from_text("", &mut |_| Err(String::new())).unwrap();
        for path in ["/.trueip/forgeries", "/forgeries"] {
            assert_eq!(
                route(path, 1, &settings, Serves::Admin),
                Route::Admin(Admin::Forgeries),
                "{path}"
            );
        }
        assert_eq!(
            route("/.trueip/forgeries", 1, &settings, Serves::Whoami),
            Route::Whoami
        );
        assert_eq!(
            route("/forgeries", 1, &settings, Serves::Whoami),
            Route::Whoami
        );
        assert_eq!(
            route("/.trueip/forgeries", 1, &settings, Serves::Upstream),
            Route::Forward
        );
        assert_eq!(
            route("/.trueip/metrics", 1, &settings, Serves::Upstream),
            Route::Admin(Admin::Metrics)
        );
    }
}
