"""The proxy headers of servers other than uvicorn and hypercorn, and gunicorn's scheme: each
rewrites the client (or the scheme) from a header before trueip's middleware sees the request,
and keeps no trace of the connection's own in the environ or scope. waitress under
``--trusted-proxy``, Daphne under ``--proxy-headers`` (believing anyone), Granian's
``wrap_asgi_with_proxy_headers``/``wrap_wsgi_with_proxy_headers`` (believing 127.0.0.1 by
default), gunicorn's own ASGI worker (a PROXY header's source from 127.0.0.1, the scheme from
X-Forwarded-Proto of 127.0.0.1, by default): the middlewares find them among the live objects
(``trueip.asgi.rewrite_around``) and refuse every request, naming the fix. And Granian's ASGI
scope, whose client port is text. Real servers, on loopback."""

from __future__ import annotations

import socket
import sys
import textwrap
from pathlib import Path

import pytest

from servers import ATTACKER, DEADLINE, HAPROXY_FORWARDFOR_CFG, NGINX, Process, django_app, free_port, get, gunicorn, haproxy, python_env, serve

WSGI_APP = """
    import trueip
    from trueip.wsgi import TrueIP

    def inner(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']}".encode()]

    app = TrueIP(inner, trueip.Policy(trust=["127.0.0.20"], strategy="rightmost-untrusted"){origin})
"""

ASGI_APP = """
    import trueip
    from trueip.asgi import TrueIP

    async def inner(scope, receive, send):
        if scope["type"] != "http":
            return
        body = f"{scope['client'][0]} {scope['scheme']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    app = TrueIP(inner, trueip.Policy(trust=["127.0.0.20"], strategy="rightmost-untrusted"))
"""

FORGED = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")]


def write_app(tmp_path: Path, source: str, tail: str = "", origin: str = "") -> None:
    (tmp_path / "server_app.py").write_text(textwrap.dedent(source).replace("{origin}", origin) + tail)


def waitress(tmp_path: Path, *extra: str):
    port = free_port()
    args = [sys.executable, "-m", "waitress", "--listen", f"127.0.0.1:{port}", *extra, "server_app:app"]
    return port, serve("waitress", args, "127.0.0.1", port, cwd=tmp_path, env=python_env())


def daphne(tmp_path: Path, *extra: str):
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *extra, "server_app:app"]
    return port, serve("daphne", args, "127.0.0.1", port, cwd=tmp_path, env=python_env(PYTHONPATH=str(tmp_path)))


def granian_args(port: int, interface: str) -> list[str]:
    return [sys.executable, "-m", "granian", "--interface", interface, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--log-level", "warning", "server_app:app"]


def granian(tmp_path: Path, interface: str):
    port = free_port()
    args = granian_args(port, interface)
    return port, serve("granian", args, "127.0.0.1", port, cwd=tmp_path, env=python_env(PYTHONPATH=str(tmp_path)))


def assert_refused(port: int, fix: str) -> None:
    response = get(ATTACKER, "127.0.0.1", port, FORGED)
    assert response.status == 500, response.text
    assert fix in response.text
    assert "6.6.6.6" not in response.text


WAITRESS_TRUSTING = {
    "127.0.0.1": ("--trusted-proxy", "127.0.0.1", "--trusted-proxy-headers", "x-forwarded-for x-forwarded-proto"),
    "anyone": ("--trusted-proxy", "*", "--trusted-proxy-headers", "x-forwarded-for x-forwarded-proto"),
    "the scheme only": ("--trusted-proxy", "*", "--trusted-proxy-headers", "x-forwarded-proto"),
}


@pytest.mark.parametrize("trusting", list(WAITRESS_TRUSTING))
def test_under_waitress_trusting_a_proxy_every_request_is_refused(tmp_path: Path, trusting: str) -> None:
    write_app(tmp_path, WSGI_APP)
    port, server = waitress(tmp_path, *WAITRESS_TRUSTING[trusting])
    with server:
        # On the old code: 200, "6.6.6.6 https" (the scheme only: "127.0.0.1 https").
        assert_refused(port, "--trusted-proxy")


def test_under_waitress_defaults_the_peer_and_the_connections_scheme_decide(tmp_path: Path) -> None:
    write_app(tmp_path, WSGI_APP)
    port, server = waitress(tmp_path)
    with server:
        response = get(ATTACKER, "127.0.0.1", port, FORGED)
        assert (response.status, response.text) == (200, f"{ATTACKER} http")


def test_under_daphnes_proxy_headers_every_request_is_refused(tmp_path: Path) -> None:
    write_app(tmp_path, ASGI_APP)
    port, server = daphne(tmp_path, "--proxy-headers")
    with server:
        # On the old code: 200, "6.6.6.6 https": Daphne believes X-Forwarded-For from anyone.
        assert_refused(port, "--proxy-headers")


DJANGO_APP = django_app("f\"{request.META['REMOTE_ADDR']} {request.scheme}\"")


@pytest.mark.parametrize("proxy_headers", [True, False])
def test_django_under_daphne_decides_from_the_peer_or_refuses(tmp_path: Path, proxy_headers: bool) -> None:
    # Daphne is Django's (channels') ASGI server: its --proxy-headers rewrite the scope as it
    # builds it, before Django builds META.
    write_app(tmp_path, DJANGO_APP)
    port, server = daphne(tmp_path, *(["--proxy-headers"] if proxy_headers else []))
    with server:
        if proxy_headers:
            # On the old code: 200, "6.6.6.6 https".
            assert_refused(port, "--proxy-headers")
        else:
            response = get(ATTACKER, "127.0.0.1", port, FORGED)
            assert (response.status, response.text) == (200, f"{ATTACKER} http")


def test_under_daphne_without_its_proxy_headers_the_peer_decides(tmp_path: Path) -> None:
    write_app(tmp_path, ASGI_APP)
    port, server = daphne(tmp_path)
    with server:
        response = get(ATTACKER, "127.0.0.1", port, FORGED)
        assert (response.status, response.text) == (200, f"{ATTACKER} http")


GRANIAN_WRAPPED = {
    "asgi": (ASGI_APP, "from granian.utils.proxies import wrap_asgi_with_proxy_headers\n"
                       "app = wrap_asgi_with_proxy_headers(app{hosts})\n"),
    "wsgi": (WSGI_APP, "from granian.utils.proxies import wrap_wsgi_with_proxy_headers\n"
                       "app = wrap_wsgi_with_proxy_headers(app{hosts})\n"),
}


def test_under_granians_proxy_headers_wrapper_the_asgi_app_does_not_start(tmp_path: Path) -> None:
    source, tail = GRANIAN_WRAPPED["asgi"]
    write_app(tmp_path, source, tail.replace("{hosts}", ""))
    port = free_port()
    args = granian_args(port, "asgi")
    proc = Process("granian", args, tmp_path / "output.log", cwd=tmp_path, env=python_env(PYTHONPATH=str(tmp_path)))
    try:
        # On the old code it served, and a local X-Forwarded-For was the client ("6.6.6.6 https"):
        # the wrapper believes 127.0.0.1 by default. The lifespan's startup fails with the fix.
        proc.popen.wait(timeout=DEADLINE)
        assert "remove Granian's wrap_asgi_with_proxy_headers" in proc.output()
    finally:
        proc.stop()


def test_under_granians_proxy_headers_wrapper_every_wsgi_request_is_refused(tmp_path: Path) -> None:
    source, tail = GRANIAN_WRAPPED["wsgi"]
    write_app(tmp_path, source, tail.replace("{hosts}", ""))
    port, server = granian(tmp_path, "wsgi")
    with server:
        # On the old code: 200, "6.6.6.6 https": the wrapper believes 127.0.0.1 by default.
        assert_refused(port, "remove Granian's wrap_asgi_with_proxy_headers")


@pytest.mark.parametrize("interface,hosts", [("asgi", "[]"), ("wsgi", "[]"), ("asgi", '""')])
def test_granians_wrapper_believing_no_one_is_not_refused(tmp_path: Path, interface: str, hosts: str) -> None:
    source, tail = GRANIAN_WRAPPED[interface]
    write_app(tmp_path, source, tail.replace("{hosts}", f", trusted_hosts={hosts}"))
    port, server = granian(tmp_path, interface)
    with server:
        response = get(ATTACKER, "127.0.0.1", port, FORGED)
        assert (response.status, response.text) == (200, f"{ATTACKER} http")


def test_under_gunicorn_a_trusted_hop_sets_no_scheme_when_origin_leaves_out_proto(tmp_path: Path) -> None:
    # A proxy the policy trusts (nginx at 127.0.0.20) that writes X-Forwarded-For and nothing
    # about the scheme passes a client's X-Forwarded-Proto on, and gunicorn believes it from
    # that peer (--forwarded-allow-ips). With origin=() trueip takes no scheme from hops.
    write_app(tmp_path, WSGI_APP, origin=", origin=()")
    port = free_port()
    with gunicorn(tmp_path, "server_app:app", port, "--forwarded-allow-ips", NGINX):
        response = get(NGINX, "127.0.0.1", port, [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-Proto", "https")])
        # On the old code: "1.2.3.4 https", gunicorn's reading of a header trueip was told not to take.
        assert (response.status, response.text) == (200, "1.2.3.4 http")


SCRIPT_NAME_APP = """
    import trueip
    from trueip.wsgi import TrueIP

    def inner(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['REMOTE_ADDR']} {environ['SCRIPT_NAME']!r} {environ['PATH_INFO']!r}".encode()]

    app = TrueIP(inner, trueip.Policy(trust=["127.0.0.20"], strategy="rightmost-untrusted"){origin})
"""


@pytest.mark.parametrize("src,origin,expected", [
    # On the old code: "127.0.0.1 '/evil' '/admin'": a local process chose the prefix the app
    # routes under (gunicorn's --forwarder-headers, believed from --forwarded-allow-ips).
    (ATTACKER, "", "127.0.0.1 '' '/evil/admin'"),
    # On the old code: "1.2.3.4 '/evil' '/admin'": a trusted hop's, but trueip takes no prefix.
    (NGINX, "", "1.2.3.4 '' '/evil/admin'"),
    # A proxy that sends gunicorn SCRIPT_NAME on purpose, under an origin that takes the prefix.
    (NGINX, ", origin=('proto', 'prefix')", "1.2.3.4 '/evil' '/admin'"),
])
def test_under_gunicorn_a_script_name_header_sets_the_prefix_only_through_a_hop_origin_takes_it_from(
        tmp_path: Path, src: str, origin: str, expected: str) -> None:
    write_app(tmp_path, SCRIPT_NAME_APP, origin=origin)
    port = free_port()
    with gunicorn(tmp_path, "server_app:app", port, "--forwarded-allow-ips", f"127.0.0.1,{NGINX}"):
        response = get(src, "127.0.0.1", port, [("X-Forwarded-For", "1.2.3.4"), ("SCRIPT_NAME", "/evil")],
                       path="/evil/admin")
        assert (response.status, response.text) == (200, expected)


DJANGO_WSGI_APP = django_app("f\"{request.path} {request.path_info} {reverse('view')}\"",
                             urls='path("admin", view, name="view"), path("evil/admin", view)', handler="wsgi")


def test_django_under_gunicorn_is_routed_under_its_own_script_name(tmp_path: Path) -> None:
    write_app(tmp_path, DJANGO_WSGI_APP)
    port = free_port()
    with gunicorn(tmp_path, "server_app:app", port):
        response = get(ATTACKER, "127.0.0.1", port, [("SCRIPT_NAME", "/evil")], path="/evil/admin")
        # On the old code: "/evil/admin /admin /evil/admin", a local process's prefix.
        assert (response.status, response.text) == (200, "/evil/admin /evil/admin /admin")




def test_under_granians_asgi_interface_a_trusted_hop_is_believed(tmp_path: Path) -> None:
    write_app(tmp_path, ASGI_APP.replace('trust=["127.0.0.20"]', 'trust=["127.0.0.30"]'))
    (tmp_path / "haproxy.cfg").write_text(HAPROXY_FORWARDFOR_CFG)
    port, server = granian(tmp_path, "asgi")
    proxy_port = free_port()
    with server, haproxy(tmp_path / "haproxy.cfg", proxy_port, port):
        response = get(ATTACKER, "127.0.0.1", proxy_port, [("X-Forwarded-For", "6.6.6.6")])
        # On the old code: "127.0.0.30 http": Granian's scope gives the client's port as text,
        # which the middleware took for no peer, so no hop was believed and every client was
        # HAProxy.
        assert (response.status, response.text) == (200, f"{ATTACKER} http")


def gunicorn_asgi(tmp_path: Path, port: int, *extra: str):
    args = [sys.executable, "-m", "gunicorn", "-k", "asgi", "-w", "1", "-b", f"127.0.0.1:{port}",
            "--graceful-timeout", "1", *extra, "server_app:app"]
    return serve("gunicorn", args, "127.0.0.1", port, cwd=tmp_path, env=python_env(PYTHONPATH=str(tmp_path)))


def test_under_gunicorns_asgi_worker_reading_a_proxy_header_every_request_is_refused(tmp_path: Path) -> None:
    write_app(tmp_path, ASGI_APP)
    port = free_port()
    with gunicorn_asgi(tmp_path, port, "--asgi-lifespan", "off", "--proxy-protocol", "v1",
                       "--forwarded-allow-ips", ""):
        sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        with sock:
            sock.sendall(b"PROXY TCP4 6.6.6.6 127.0.0.1 1111 80\r\nGET / HTTP/1.1\r\nHost: a\r\n"
                         b"Connection: close\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        # On the old code: 200, "6.6.6.6 http": gunicorn believes a PROXY header from
        # 127.0.0.1 by default (--proxy-allow-from), whatever the policy's
        # proxy_protocol_from says.
        assert raw.startswith(b"HTTP/1.1 500"), raw
        assert b"--proxy-protocol" in raw and b"6.6.6.6" not in raw


def test_under_gunicorns_asgi_worker_defaults_every_request_is_refused(tmp_path: Path) -> None:
    write_app(tmp_path, ASGI_APP)
    port = free_port()
    with gunicorn_asgi(tmp_path, port, "--asgi-lifespan", "off"):
        # On the old code: 200, "127.0.0.1 https": gunicorn takes the scheme from
        # X-Forwarded-Proto of 127.0.0.1 by default (--forwarded-allow-ips).
        assert_refused(port, '--forwarded-allow-ips ""')


def test_under_gunicorns_asgi_worker_with_its_lifespan_the_app_does_not_start(tmp_path: Path) -> None:
    write_app(tmp_path, ASGI_APP)
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "-k", "asgi", "-w", "1", "-b", f"127.0.0.1:{port}", "server_app:app"]
    proc = Process("gunicorn", args, tmp_path / "output.log", cwd=tmp_path, env=python_env(PYTHONPATH=str(tmp_path)))
    try:
        proc.popen.wait(timeout=DEADLINE)
        assert '--forwarded-allow-ips ""' in proc.output()
    finally:
        proc.stop()


def test_under_gunicorns_asgi_worker_reading_no_header_the_peer_decides(tmp_path: Path) -> None:
    write_app(tmp_path, ASGI_APP)
    port = free_port()
    with gunicorn_asgi(tmp_path, port, "--forwarded-allow-ips", ""):
        response = get(ATTACKER, "127.0.0.1", port, FORGED)
        assert (response.status, response.text) == (200, f"{ATTACKER} http")
