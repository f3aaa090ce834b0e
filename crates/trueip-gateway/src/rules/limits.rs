//! Request limits every codec applies alike: the lean HTTP/1.1 path, hyper's HTTP/1.1
//! (configured with the same numbers, its parser answers 431 itself) and HTTP/2 (whose
//! header count hyper does not limit, so the service does, with this rule).

use http::{HeaderMap, Uri, header};

/// Whether a request of `lines` header lines is over `limits.max_headers`: it is
/// answered 431, whatever the protocol.
pub(crate) fn too_many_headers(lines: usize, max_headers: usize) -> bool {
    lines > max_headers
}

/// What the route needs to know of a request's header lines ([`header_lines`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lines {
    /// How many header lines the request counts as.
    pub(crate) count: usize,
    /// Whether it carries more than one `Host` field.
    pub(crate) several_hosts: bool,
}

/// How many header lines a request counts as: the lines HTTP/1.1 would carry it in.
/// Every field is a line; the `cookie` fields are one (an HTTP/2 client may split a
/// cookie into crumbs, RFC 9113 §8.2.3, and the gateway joins them into one line); and
/// a target that carries the authority (HTTP/2's `:authority`) with no `Host` field
/// counts the `Host` line HTTP/1.1 would have sent. And whether it has several `Host`
/// fields, which the same scan counts.
pub(crate) fn header_lines(headers: &HeaderMap, uri: &Uri) -> Lines {
    // A request's few lines are compared (`cookie` and `host` are standard names: a byte
    // each) rather than two names looked up, each hashed.
    let (cookies, hosts) = if headers.len() <= SCAN_LINES {
        headers.iter().fold((0, 0), |(cookies, hosts), (name, _)| {
            (
                cookies + usize::from(name == header::COOKIE),
                hosts + usize::from(name == header::HOST),
            )
        })
    } else {
        let cookies = headers.get_all(header::COOKIE).iter().count();
        (cookies, headers.get_all(header::HOST).iter().take(2).count())
    };
    let host = usize::from(uri.authority().is_some() && hosts == 0);
    Lines { count: headers.len() - cookies + cookies.min(1) + host, several_hosts: hosts > 1 }
}

/// Up to this many lines, [`header_lines`] compares names instead of looking them up.
const SCAN_LINES: usize = 24;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn lines_count_as_http1_carries_them() {
        let mut h = HeaderMap::new();
        for (n, v) in
            [("x-a", "1"), ("x-a", "2"), ("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]
        {
            h.append(n, HeaderValue::from_static(v));
        }
        let origin: Uri = "/path".parse().unwrap();
        let absolute: Uri = "http://example.test/path".parse().unwrap();
        assert_eq!(header_lines(&h, &origin).count, 3);
        assert_eq!(header_lines(&h, &absolute).count, 4, "the Host line");
        h.append(header::HOST, HeaderValue::from_static("example.test"));
        assert_eq!(header_lines(&h, &absolute).count, 4, "Host counted once");
        assert!(!too_many_headers(4, 4));
        assert!(too_many_headers(5, 4));
    }

    #[test]
    fn large_and_small_heads_count_alike() {
        let absolute: Uri = "http://example.test/path".parse().unwrap();
        for filler in [0, SCAN_LINES - 3, SCAN_LINES + 1, 60] {
            for hosts in 0..=2_usize {
                let mut h = HeaderMap::new();
                h.append("cookie", HeaderValue::from_static("a=1"));
                for i in 0..filler {
                    let name = http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap();
                    h.append(name, HeaderValue::from_static("v"));
                }
                h.append("cookie", HeaderValue::from_static("b=2"));
                for _ in 0..hosts {
                    h.append(header::HOST, HeaderValue::from_static("example.test"));
                }
                // The cookie lines count as one; the Host line once, sent or not.
                let lines = header_lines(&h, &absolute);
                let extra = hosts.saturating_sub(1);
                assert_eq!(lines.count, filler + 2 + extra, "{filler} {hosts}");
                assert_eq!(lines.several_hosts, hosts > 1, "{filler} {hosts}");
            }
        }
    }
}
