"""trueip.wsgi.TrueIP: what the app's environ holds after it, from trusted hops and from strangers."""

from __future__ import annotations

from typing import Any

import pytest

import trueip
import trueip.wsgi
from trueip.wsgi import FORWARDING_KEYS, TrueIP

POLICY = trueip.Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted")


ALL = ("proto", "host", "port", "prefix")


def run(environ: dict[str, Any], policy: trueip.Policy = POLICY, origin: Any = ALL) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        start_response("200 OK", [])
        return [b""]

    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "internal",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "internal:8000",
        "wsgi.url_scheme": "http",
        "REMOTE_PORT": "41000",
    }
    TrueIP(app, policy, origin=origin)(dict(base, **environ), lambda *a: None)
    return seen


def test_through_a_trusted_hop() -> None:
    env = run(
        {
            "REMOTE_ADDR": "10.0.0.5",
            "HTTP_X_FORWARDED_FOR": "198.51.100.66, 203.0.113.195",
            "HTTP_X_FORWARDED_PROTO": "https",
            "HTTP_X_FORWARDED_HOST": "shop.example.com",
            "HTTP_X_FORWARDED_PORT": "443",
            "HTTP_X_FORWARDED_PREFIX": "/shop",
        }
    )
    assert env["REMOTE_ADDR"] == "203.0.113.195"
    assert "REMOTE_PORT" not in env  # the proxy's port is not the client's
    assert env["wsgi.url_scheme"] == "https"
    # As ProxyFix's x_host and x_port: the forwarded port replaces the host's.
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example.com:443", "shop.example.com", "443")
    assert env["SCRIPT_NAME"] == "/shop"
    # What trusted hops wrote stays for the app.
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.66, 203.0.113.195"
    assert env["trueip.original"] == {
        "REMOTE_ADDR": "10.0.0.5",
        "REMOTE_PORT": "41000",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "internal:8000",
        "SERVER_NAME": "internal",
        "SERVER_PORT": "8000",
        "SCRIPT_NAME": "",
    }
    r = env["trueip.resolution"]
    assert (r.ip_str, r.trusted_hops, r.spoof_attempt) == ("203.0.113.195", 1, True)


def test_a_stranger_gets_nothing_believed_and_nothing_through() -> None:
    forged = {key: "203.0.113.7" for key in FORWARDING_KEYS}
    env = run(dict(forged, REMOTE_ADDR="198.51.100.20", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_HOST="evil.example"))
    assert env["REMOTE_ADDR"] == "198.51.100.20"
    assert env["REMOTE_PORT"] == "41000"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "internal:8000"
    assert not FORWARDING_KEYS & env.keys()
    assert set(env["trueip.original"]) >= FORWARDING_KEYS
    assert env["trueip.resolution"].warnings == frozenset({"header_from_untrusted_peer"})


def test_every_spelling_is_one_environ_key() -> None:
    """`X_Forwarded_For`, `x-forwarded-for`, `X-FORWARDED-FOR` all arrive as
    HTTP_X_FORWARDED_FOR; from a stranger that key is removed whatever its spelling was."""
    env = run({"REMOTE_ADDR": "198.51.100.20", "HTTP_X_FORWARDED_FOR": "1.2.3.4", "HTTP_X_REAL_IP": "1.2.3.4", "HTTP_TRUE_CLIENT_IP": "1.2.3.4"})
    assert not {"HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_TRUE_CLIENT_IP"} & env.keys()


def test_the_header_a_header_strategy_reads_is_removed_from_a_stranger() -> None:
    """`header:X-Client-Addr` makes X-Client-Addr a client-IP header: a stranger's is not
    believed, and must not reach an app that reads it itself either; likewise a guess at
    the origin secret. From the trusted hop the header stays; the origin secret, which has
    done its job, does not."""
    p = trueip.Policy(trust=["10.0.0.0/8"], strategy="header:X-Client-Addr", origin_secret=("X-Origin-Verify", "s3cret"))
    env = run({"REMOTE_ADDR": "198.51.100.20", "HTTP_X_CLIENT_ADDR": "1.2.3.4", "HTTP_X_ORIGIN_VERIFY": "guess"}, p)
    assert env["REMOTE_ADDR"] == "198.51.100.20"
    assert not {"HTTP_X_CLIENT_ADDR", "HTTP_X_ORIGIN_VERIFY"} & env.keys()
    assert env["trueip.original"]["HTTP_X_CLIENT_ADDR"] == "1.2.3.4"
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_CLIENT_ADDR": "203.0.113.9", "HTTP_X_ORIGIN_VERIFY": "s3cret"}, p)
    assert (env["REMOTE_ADDR"], env["HTTP_X_CLIENT_ADDR"]) == ("203.0.113.9", "203.0.113.9")
    assert "HTTP_X_ORIGIN_VERIFY" not in env


def test_a_stranger_cannot_name_the_client_to_python_ipware_through_a_cgi_spelling() -> None:
    """As under ASGI (test_asgi.py): python-ipware over the request's headers
    (`dict(request.headers)` in Flask) finds `HTTP_X_REAL_IP` in a header named
    `Http-X-Real-Ip`, whose environ key is HTTP_HTTP_X_REAL_IP; none may reach the app."""
    from python_ipware import IpWare
    from python_ipware.modern.defaults import DEFAULT_PRECEDENCE
    from werkzeug.datastructures import EnvironHeaders

    for key in DEFAULT_PRECEDENCE:
        environ_key = "HTTP_" + key.upper().replace("-", "_")
        env = run({"REMOTE_ADDR": "198.51.100.20", environ_key: "1.2.3.4"})
        assert environ_key not in env, environ_key
        ip, _ = IpWare().get_client_ip(dict(EnvironHeaders(env)))
        assert ip is None, (environ_key, ip)


def test_a_trusted_hop_passes_only_the_addresses_the_policy_reads() -> None:
    """A trusted nginx relays a client's True-Client-IP as readily as it writes X-Real-IP:
    from a trusted hop, the client addresses the policy does not read are removed (the app
    reads REMOTE_ADDR); what it reads, and claims about the request, stay."""
    sent = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.9", "HTTP_TRUE_CLIENT_IP": "1.2.3.4",
            "HTTP_X_REAL_IP": "1.2.3.4", "HTTP_X_CLIENT_IP": "1.2.3.4", "HTTP_X_FORWARDED_PORT": "8443"}
    env = run(dict(sent))
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert not {"HTTP_TRUE_CLIENT_IP", "HTTP_X_REAL_IP", "HTTP_X_CLIENT_IP"} & env.keys()
    assert env["trueip.original"]["HTTP_TRUE_CLIENT_IP"] == "1.2.3.4"
    assert (env["HTTP_X_FORWARDED_FOR"], env["HTTP_X_FORWARDED_PORT"]) == ("203.0.113.9", "8443")
    env = run(dict(sent), trueip.Policy(trust=["10.0.0.0/8"], strategy="header:X-Real-IP"))
    assert (env["REMOTE_ADDR"], env["HTTP_X_REAL_IP"]) == ("1.2.3.4", "1.2.3.4")
    assert "HTTP_TRUE_CLIENT_IP" not in env


def test_forged_entries_left_of_the_trusted_chain() -> None:
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.195, 10.0.0.9"})
    assert env["REMOTE_ADDR"] == "203.0.113.195"
    assert env["trueip.resolution"].spoof_attempt


def test_a_client_port_is_passed_when_the_source_carried_one() -> None:
    p = trueip.Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted", from_="forwarded")
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_FORWARDED": 'for="[2001:db8::1]:4711";proto=https;host=api.example'}, p)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "4711")
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "api.example"
    assert env["SERVER_PORT"] == "443"
    assert (run({"REMOTE_ADDR": "10.0.0.5", "HTTP_FORWARDED": 'for="[2001:db8::1]:4711";host=api.example'}, p, origin=()))["HTTP_HOST"] == "internal:8000"


def test_the_peer_alone_keeps_its_port() -> None:
    env = run({"REMOTE_ADDR": "10.0.0.5"})
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("10.0.0.5", "41000")


def test_an_untrusted_hop_cannot_set_the_scheme_even_behind_a_trusted_one() -> None:
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.195", "HTTP_X_FORWARDED_PROTO": "https, http"})
    # One trusted hop: the value it wrote (the last) counts, not the client's.
    assert env["wsgi.url_scheme"] == "http"


def test_only_the_named_origin_parts_are_applied() -> None:
    """By default (as ProxyFix) only the scheme: a proxy that passes a client's
    X-Forwarded-Host or -Prefix through unchanged would let the client choose them."""
    forged = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.195", "HTTP_X_FORWARDED_PROTO": "https",
              "HTTP_X_FORWARDED_HOST": "evil.example:8443", "HTTP_X_FORWARDED_PORT": "444",
              "HTTP_X_FORWARDED_PREFIX": "/shop"}
    env = run(forged, origin=trueip.wsgi.DEFAULT_ORIGIN)
    assert (env["wsgi.url_scheme"], env["HTTP_HOST"], env["SERVER_PORT"], env["SCRIPT_NAME"]) == ("https", "internal:8000", "8000", "")
    env = run(forged, origin=("port",))
    assert (env["wsgi.url_scheme"], env["HTTP_HOST"], env["SERVER_PORT"]) == ("http", "internal:444", "444")
    env = run(forged, origin=("host", "port"))
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("evil.example:444", "evil.example", "444")
    with pytest.raises(ValueError, match="unknown"):
        TrueIP(lambda e, s: [], POLICY, origin=("scheme",))
    with pytest.raises(TypeError):
        TrueIP(lambda e, s: [], POLICY, origin="proto")


@pytest.mark.parametrize("prefix", ["//evil.example", "/\\evil.example", "/a/../b", "/%2e%2e", "/a?b", "/a#b", "/..", "/a//b"])
def test_a_prefix_that_leaves_the_site_is_dropped(prefix: str) -> None:
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.195", "HTTP_X_FORWARDED_PREFIX": prefix})
    assert env["SCRIPT_NAME"] == ""


def test_a_header_named_wsgi_version_does_not_make_headers_an_environ() -> None:
    assert POLICY.resolve("10.0.0.5", {"x-forwarded-for": "203.0.113.9", "wsgi.version": "1"}).ip_str == "203.0.113.9"
    forged = {"X-Forwarded-For": "203.0.113.9", "REQUEST_METHOD": "GET", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}
    assert POLICY.resolve("10.0.0.5", forged).ip_str == "203.0.113.9"
    assert POLICY.resolve("10.0.0.5", {"HTTP_X_FORWARDED_FOR": "1.2.3.4"}, environ=True).ip_str == "1.2.3.4"


def test_forwarded_port_alone_rewrites_the_host_port() -> None:
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.195", "HTTP_X_FORWARDED_PORT": "8443"})
    assert (env["HTTP_HOST"], env["SERVER_PORT"]) == ("internal:8443", "8443")


@pytest.mark.parametrize("remote", ["", "unix:/run/gunicorn.sock", None])
def test_a_unix_socket_peer_trusts_no_one(remote: Any) -> None:
    environ: dict[str, Any] = {"HTTP_X_FORWARDED_FOR": "1.2.3.4", "HTTP_X_REAL_IP": "1.2.3.4"}
    if remote is not None:
        environ["REMOTE_ADDR"] = remote
    env = run(environ)
    assert env["trueip.resolution"] is None
    assert not {"HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP"} & env.keys()
    assert env.get("REMOTE_ADDR") == remote


@pytest.mark.parametrize("remote", ["", "unix:/run/gunicorn.sock"])
def test_behind_nginx_on_a_unix_socket_trust_unix(remote: str) -> None:
    """nginx -> gunicorn --bind unix:/run/gunicorn.sock: REMOTE_ADDR is "" and only
    trust=["unix"] makes nginx's X-Forwarded-For count."""
    policy = trueip.Policy(trust=["unix"])
    env = run({"REMOTE_ADDR": remote, "HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.9"}, policy)
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["trueip.resolution"].source == "x-forwarded-for[-1]"
    # Nothing names a client: no address to give, and nothing is believed.
    env = run({"REMOTE_ADDR": remote}, policy)
    assert (env["trueip.resolution"], env["REMOTE_ADDR"]) == (None, remote)


def test_the_middleware_wants_a_policy() -> None:
    with pytest.raises(TypeError, match="trueip.Policy"):
        TrueIP(lambda e, s: [], {"trust": ["10.0.0.0/8"]})  # type: ignore[arg-type]


def test_under_flask() -> None:
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    @app.get("/")
    def index() -> Any:
        return jsonify(addr=request.remote_addr, scheme=request.scheme, host=request.host, url=request.url,
                       xff=request.headers.get("X-Forwarded-For"))

    app.wsgi_app = TrueIP(app.wsgi_app, POLICY, origin=ALL)  # type: ignore[method-assign]
    client = app.test_client()
    got = client.get("/", headers={"X-Forwarded-For": "203.0.113.195", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"},
                     environ_base={"REMOTE_ADDR": "10.0.0.5"}).get_json()
    assert got == {"addr": "203.0.113.195", "scheme": "https", "host": "shop.example", "url": "https://shop.example/", "xff": "203.0.113.195"}
    got = client.get("/", headers={"X-Forwarded-For": "203.0.113.195", "X-Forwarded-Proto": "https"},
                     environ_base={"REMOTE_ADDR": "198.51.100.20"}).get_json()
    assert got == {"addr": "198.51.100.20", "scheme": "http", "host": "localhost", "url": "http://localhost/", "xff": None}


def test_a_werkzeug_request_an_outer_middleware_built_is_not_the_apps() -> None:
    """An outer WSGI middleware that built a Werkzeug `Request` (which puts itself in
    `environ["werkzeug.request"]` and reads `remote_addr` once, `access_route` once) before
    this one ran: Flask builds its own `request` from the rewritten environ, so the view reads
    none of what the outer one kept."""
    from flask import Flask, jsonify, request
    from werkzeug.wrappers import Request

    app = Flask(__name__)

    @app.get("/")
    def index() -> Any:
        return jsonify(addr=request.remote_addr, route=request.access_route, xff=request.headers.get("X-Forwarded-For"))

    app.wsgi_app = TrueIP(app.wsgi_app, POLICY)  # type: ignore[method-assign]

    def outer(environ: dict[str, Any], start_response: Any) -> Any:
        kept = Request(environ)
        assert (kept.remote_addr, kept.access_route) == ("198.51.100.20", ["6.6.6.6"])
        return app(environ, start_response)

    from werkzeug.test import Client

    got = Client(outer).get("/", headers={"X-Forwarded-For": "6.6.6.6"}, environ_base={"REMOTE_ADDR": "198.51.100.20"}).get_json()
    assert got == {"addr": "198.51.100.20", "route": ["198.51.100.20"], "xff": None}


def test_a_query_argument_from_the_trusted_gateway() -> None:
    policy = trueip.Policy(trust=["10.0.0.0/8"], strategy="query:client")
    seen = run({"REMOTE_ADDR": "10.0.0.5", "QUERY_STRING": "client=198.51.100.4"}, policy)
    assert seen["REMOTE_ADDR"] == "198.51.100.4"
    seen = run({"REMOTE_ADDR": "203.0.113.9", "QUERY_STRING": "client=1.2.3.4"}, policy)
    assert seen["REMOTE_ADDR"] == "203.0.113.9"


def test_a_policy_per_sub_app_under_werkzeug_dispatcher() -> None:
    """Each mounted app wrapped in its own middleware decides with its own policy."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.test import Client

    def echo(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [env["REMOTE_ADDR"].encode()]

    app = DispatcherMiddleware(
        TrueIP(echo, trueip.Policy()),  # public: trusts no one
        {"/internal": TrueIP(echo, POLICY), "/nginx": TrueIP(echo, trueip.Policy(trust=["10.0.0.5"], strategy="header:X-Real-IP"))},
    )
    client = Client(app)
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "198.51.100.7"}
    got = {path: client.get(path, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"}).get_data(as_text=True)
           for path in ("/", "/internal/", "/nginx/")}
    assert got == {"/": "10.0.0.5", "/internal/": "203.0.113.9", "/nginx/": "198.51.100.7"}


def test_a_header_passes_a_trusted_hop_only_when_its_strategy_decided() -> None:
    """As the ASGI test of the name: another strategy decided, so nothing vouched for the
    header:CF-Connecting-IP strategy's header; and aws-alb reads X-Forwarded-For whatever
    from_ says."""
    two = trueip.Policy(trust=["10.0.0.0/8"], strategy=["header:Fastly-Client-IP", "header:CF-Connecting-IP"])
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_FASTLY_CLIENT_IP": "203.0.113.9", "HTTP_CF_CONNECTING_IP": "6.6.6.6"}, two)
    assert (env["REMOTE_ADDR"], env["HTTP_FASTLY_CLIENT_IP"]) == ("203.0.113.9", "203.0.113.9")
    assert "HTTP_CF_CONNECTING_IP" not in env
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_CF_CONNECTING_IP": "203.0.113.7"}, two)
    assert (env["REMOTE_ADDR"], env["HTTP_CF_CONNECTING_IP"]) == ("203.0.113.7", "203.0.113.7")

    alb = trueip.Policy(trust=["10.0.0.0/8"], strategy="aws-alb", from_="forwarded")
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.9", "HTTP_FORWARDED": "for=6.6.6.6"}, alb)
    assert (env["REMOTE_ADDR"], env["HTTP_X_FORWARDED_FOR"]) == ("203.0.113.9", "203.0.113.9")
    assert "HTTP_FORWARDED" not in env


def test_an_origin_secret_in_the_table_is_withheld_from_a_trusted_hop() -> None:
    """As the ASGI test of the name: X-Azure-FDID as the origin secret never reaches the app."""
    p = trueip.Policy(trust=["10.0.0.0/8"], origin_secret=("X-Azure-FDID", "fdid"))
    env = run({"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.9", "HTTP_X_AZURE_FDID": "fdid"}, p)
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert "HTTP_X_AZURE_FDID" not in env


def test_a_proxy_fix_wrapped_around_the_middleware_is_undone() -> None:
    # `app.wsgi_app = ProxyFix(app.wsgi_app, ...)` after `TrueIP`: ProxyFix runs first and
    # makes the last X-Forwarded-For entry REMOTE_ADDR, from anyone. The old code then took
    # that entry as the peer: a stranger's `X-Forwarded-For: 6.6.6.6` was the client, its
    # `X-Forwarded-Proto`, `-Host` and `-Prefix` the scheme, host and script name.
    from flask import Flask, jsonify, request
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = Flask(__name__)

    @app.get("/")
    def index() -> Any:
        return jsonify(addr=request.remote_addr, url=request.url, xff=request.headers.get("X-Forwarded-For"))

    app.wsgi_app = TrueIP(app.wsgi_app, POLICY, origin=ALL)  # type: ignore[method-assign]
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)  # type: ignore[method-assign]
    client = app.test_client()
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
              "X-Forwarded-Prefix": "/evil"}
    got = client.get("/", headers=forged, environ_base={"REMOTE_ADDR": "198.51.100.20"}).get_json()
    assert got == {"addr": "198.51.100.20", "url": "http://localhost/", "xff": None}
    # Through a trusted hop the policy decides as it would without ProxyFix.
    got = client.get("/", headers=forged, environ_base={"REMOTE_ADDR": "10.0.0.5"}).get_json()
    assert got == {"addr": "6.6.6.6", "url": "https://evil.example/evil/", "xff": "6.6.6.6"}


def test_what_proxy_fix_replaced_is_what_the_server_gave() -> None:
    seen = run({"REMOTE_ADDR": "198.51.100.20", "HTTP_X_FORWARDED_FOR": "6.6.6.6", "SERVER_PORT": "443",
                "wsgi.url_scheme": "https",
                "werkzeug.proxy_fix.orig": {"REMOTE_ADDR": "10.0.0.5", "wsgi.url_scheme": "http", "HTTP_HOST": None,
                                            "SERVER_NAME": "internal", "SERVER_PORT": "8000", "SCRIPT_NAME": ""}})
    assert seen["trueip.original"]["REMOTE_ADDR"] == "10.0.0.5"
    assert seen["REMOTE_ADDR"] == "6.6.6.6"
    assert (seen["wsgi.url_scheme"], seen["SERVER_PORT"]) == ("http", "8000")
    assert "HTTP_HOST" not in seen and "werkzeug.proxy_fix.orig" not in seen


def test_under_gunicorn_only_a_trusted_hop_keeps_the_scheme_gunicorn_set() -> None:
    # gunicorn set `https` from a header it believed (`--forwarded-allow-ips`); its socket is
    # plain. Through no trusted hop the connection's scheme is put back; through one,
    # gunicorn's stays (a proxy that says `X-Forwarded-Ssl: on` alone).
    import socket

    with socket.socket() as sock:
        gunicorns = {"gunicorn.socket": sock, "wsgi.url_scheme": "https", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
        stranger = run(dict(gunicorns, REMOTE_ADDR="198.51.100.20"))
        trusted = run(dict(gunicorns, REMOTE_ADDR="10.0.0.5"))
    assert (stranger["REMOTE_ADDR"], stranger["wsgi.url_scheme"]) == ("198.51.100.20", "http")
    assert stranger["trueip.original"]["wsgi.url_scheme"] == "https"
    assert (trusted["REMOTE_ADDR"], trusted["wsgi.url_scheme"]) == ("203.0.113.9", "https")


@pytest.mark.parametrize("key,value", [("HTTP_X_FORWARDED_PROTOCOL", "ssl"), ("HTTP_FRONT_END_HTTPS", "on"),
                                       ("HTTP_X_SCHEME", "https")])
def test_the_scheme_claims_gunicorn_codeigniter_and_tornado_read_are_withheld_from_a_stranger(key: str, value: str) -> None:
    # gunicorn reads X-Forwarded-Protocol (from --forwarded-allow-ips), CodeIgniter
    # Front-End-Https, Tornado X-Scheme, each as the scheme. The old code handed a
    # stranger's to the app.
    assert key in FORWARDING_KEYS
    seen = run({"REMOTE_ADDR": "198.51.100.20", key: value})
    assert key not in seen
    assert seen["trueip.original"][key] == value
