"""examples/flask_cloudfront_alb, run for real: the Flask app under gunicorn on 127.0.0.1
trusting 127.0.0.16/28 (nginx and the ALB) and the stand-in CloudFront range 13.32.0.0/15,
``/usr/sbin/nginx`` in front on 127.0.0.20 with the example's own ``nginx.conf``, and the
test as the ALB (127.0.0.21) or the attacker (127.0.0.1)."""

import pytest

from servers import ALB, ATTACKER, EXAMPLES, NGINX, PROXIES, free_port, get, gunicorn, nginx, python_env

EXAMPLE = EXAMPLES / "flask_cloudfront_alb"
ENV = python_env(TRUEIP_PROXIES=PROXIES)
# The client-IP headers an attacker forges, in the spellings that reach a WSGI environ.
FORGED = [
    ("X-Forwarded-For", "203.0.113.195, 13.32.4.5, 127.0.0.21"),
    ("X-Real-IP", "203.0.113.195"),
    ("X_Forwarded_For", "203.0.113.196"),
    ("True-Client-IP", "203.0.113.197"),
    ("Forwarded", "for=203.0.113.198"),
]


@pytest.fixture(scope="module")
def app():
    port = free_port()
    with gunicorn(EXAMPLE, "app:app", port, "--forwarded-allow-ips", "", env=ENV):
        yield port


@pytest.fixture(scope="module")
def front(app):
    port = free_port(NGINX)
    with nginx(EXAMPLE / "nginx.conf", NGINX, port, app):
        yield port


def test_the_viewer_through_cloudfront_alb_nginx(front):
    # As the ALB forwards it: CloudFront appended the viewer, the ALB the CloudFront edge
    # (13.32.4.5, in the stand-in range). nginx's realip makes $remote_addr the edge, and
    # $proxy_add_x_forwarded_for appends it a second time.
    r = get(ALB, NGINX, front, [("X-Forwarded-For", "203.0.113.195, 13.32.4.5")])
    assert r.status == 200
    seen = r.json()
    assert seen["client"] == "203.0.113.195"
    assert seen["peer"] == NGINX
    assert seen["source"] == "x-forwarded-for[-3]"
    assert seen["trusted_hops"] == 3
    assert seen["warnings"] == []
    assert seen["spoof_attempt"] is False
    # Through trusted hops the header is the app's to read, as nginx passed it.
    assert seen["headers"]["HTTP_X_FORWARDED_FOR"] == "203.0.113.195, 13.32.4.5, 13.32.4.5"


def test_a_forged_first_entry_does_not_move_the_client(front):
    r = get(ALB, NGINX, front, [("X-Forwarded-For", "198.51.100.66, 203.0.113.195, 13.32.4.5")])
    seen = r.json()
    assert seen["client"] == "203.0.113.195"
    assert seen["source"] == "x-forwarded-for[-3]"
    assert seen["warnings"] == ["spoof_attempt"]
    assert seen["spoof_attempt"] is True


def test_underscored_header_through_nginx_is_dropped_by_nginx(front):
    # nginx drops header names with underscores (ignore_invalid_headers), so the viewer
    # cannot add to the list nginx appends to.
    r = get(ALB, NGINX, front, [("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.195, 13.32.4.5")])
    seen = r.json()
    assert seen["client"] == "203.0.113.195"
    assert seen["headers"]["HTTP_X_FORWARDED_FOR"] == "203.0.113.195, 13.32.4.5, 13.32.4.5"


def test_around_cloudfront_to_the_alb_is_the_sender(front):
    # The ALB is public: a request sent to it directly has the ALB append its sender,
    # 198.51.100.9, not a CloudFront address; what the sender wrote is left of it. realip
    # stops at it, so nginx appends it again, and the app stops at nginx's entry.
    r = get(ALB, NGINX, front, [("X-Forwarded-For", "203.0.113.195, 13.32.4.5, 198.51.100.9")])
    seen = r.json()
    assert seen["client"] == "198.51.100.9"
    assert seen["source"] == "x-forwarded-for[-1]"
    assert seen["trusted_hops"] == 1
    assert seen["headers"]["HTTP_X_FORWARDED_FOR"] == "203.0.113.195, 13.32.4.5, 198.51.100.9, 198.51.100.9"


def test_around_cloudfront_and_the_alb_to_nginx_is_the_sender(front):
    # Not from the ALB's range: realip leaves $remote_addr the sender, nginx appends it.
    r = get(ATTACKER, NGINX, front, [("X-Forwarded-For", "203.0.113.195, 13.32.4.5")])
    seen = r.json()
    assert seen["client"] == ATTACKER
    assert seen["peer"] == NGINX
    assert seen["source"] == "x-forwarded-for[-1]"
    assert seen["headers"]["HTTP_X_FORWARDED_FOR"] == "203.0.113.195, 13.32.4.5, 127.0.0.1"


def test_straight_to_the_app_forged_headers_never_reach_it(app):
    r = get(ATTACKER, "127.0.0.1", app, FORGED)
    seen = r.json()
    assert seen["client"] == ATTACKER
    assert seen["peer"] == ATTACKER
    assert seen["source"] == "peer"
    assert seen["trusted_hops"] == 0
    assert seen["warnings"] == ["header_from_untrusted_peer"]
    assert seen["headers"] == {"HTTP_HOST": "app.example", "HTTP_CONNECTION": "close"}


def test_straight_to_the_app_underscored_spelling_removed_by_the_middleware():
    # gunicorn drops header names with underscores by default; with --header-map dangerous
    # it maps X_Forwarded_For to HTTP_X_FORWARDED_FOR as older servers did. The middleware
    # removes it all the same.
    port = free_port()
    with gunicorn(EXAMPLE, "app:app", port, "--forwarded-allow-ips", "", "--header-map", "dangerous", env=ENV):
        r = get(ATTACKER, "127.0.0.1", port, [("X_Forwarded_For", "203.0.113.196")])
        seen = r.json()
        assert seen["client"] == ATTACKER
        assert seen["warnings"] == ["header_from_untrusted_peer"]
        assert seen["headers"] == {"HTTP_HOST": "app.example", "HTTP_CONNECTION": "close"}
        # From the trusted hop the line cannot be told from the hop's own X-Forwarded-For, which
        # a proxy that passes it on appends to: such a request is refused, naming the fix
        # (`trueip.wsgi.merged_spellings`, test_merged_spellings.py).
        r = get(NGINX, "127.0.0.1", port, [("X_Forwarded_For", "203.0.113.196")])
        assert r.status == 500
        assert "--header-map drop" in r.text and "203.0.113.196" not in r.text
