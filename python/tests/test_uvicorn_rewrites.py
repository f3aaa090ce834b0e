"""uvicorn's own proxy headers (on by default, believing 127.0.0.1 and ::1) around an app that
runs trueip's WSGI or Django middleware in another thread or task: a WSGI app under
``--interface wsgi`` and Django's ASGI handler. uvicorn rewrites the scope's client from
``X-Forwarded-For`` before the bridge or Django builds ``REMOTE_ADDR``, and no caller of the
middleware is uvicorn's (``trueip.asgi.server_rewrite`` cannot see it): the middlewares find
it among the live objects (``trueip.asgi.rewrite_around``) and refuse every request, naming
the fix. Real uvicorn, on loopback."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from servers import ATTACKER, django_app, free_port, get, python_env, serve

WSGI_APP = """
    import trueip
    from trueip.wsgi import TrueIP

    def inner(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REMOTE_ADDR"].encode()]

    app = TrueIP(inner, trueip.Policy(trust=["127.0.0.20"], strategy="rightmost-untrusted"))
"""


FORGED = [("X-Forwarded-For", "6.6.6.6")]


def uvicorn_args(app_dir: Path, app: str, port: int, *extra: str) -> list[str]:
    """uvicorn with its own proxy headers left as they come (on, believing 127.0.0.1)."""
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", *extra, app]


def served(tmp_path: Path, source: str, app: str, *extra: str):
    (tmp_path / "rewrite_app.py").write_text(textwrap.dedent(source))
    port = free_port()
    return port, serve("uvicorn", uvicorn_args(tmp_path, f"rewrite_app:{app}", port, *extra), "127.0.0.1", port,
                       env=python_env())


CASES = {
    "wsgi app, --interface wsgi": (WSGI_APP, "app", ("--interface", "wsgi")),
    "django, asgi handler": (django_app('request.META["REMOTE_ADDR"]', entry="application"), "application", ()),
    "django, wsgi handler, --interface wsgi": (
        django_app('request.META["REMOTE_ADDR"]', handler="wsgi", entry="application"), "application",
        ("--interface", "wsgi")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_under_uvicorns_own_proxy_headers_every_request_is_refused(tmp_path: Path, case: str) -> None:
    source, app, extra = CASES[case]
    port, server = served(tmp_path, source, app, *extra)
    with server:
        # On the old code: 200, "6.6.6.6", a local process's X-Forwarded-For the client.
        response = get(ATTACKER, "127.0.0.1", port, FORGED)
        assert response.status == 500, response.text
        assert "ProxyHeadersMiddleware wraps" in response.text
        assert "--no-proxy-headers" in response.text
        assert "6.6.6.6" not in response.text


@pytest.mark.parametrize("case", list(CASES))
def test_under_uvicorn_without_its_proxy_headers_the_peer_decides(tmp_path: Path, case: str) -> None:
    source, app, extra = CASES[case]
    port, server = served(tmp_path, source, app, *extra, "--no-proxy-headers")
    with server:
        response = get(ATTACKER, "127.0.0.1", port, FORGED)
        assert (response.status, response.text) == (200, ATTACKER)


def test_uvicorns_proxy_headers_that_believe_no_one_are_not_refused(tmp_path: Path) -> None:
    # gunicorn's UvicornWorker passes `--forwarded-allow-ips ""` on: uvicorn reads nothing.
    source, app, extra = CASES["wsgi app, --interface wsgi"]
    port, server = served(tmp_path, source, app, *extra, "--forwarded-allow-ips", "")
    with server:
        response = get(ATTACKER, "127.0.0.1", port, FORGED)
        assert (response.status, response.text) == (200, ATTACKER)


ASGI_APPS = """
    import trueip
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse
    from trueip.asgi import TrueIP
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    POLICY = trueip.Policy(trust=["127.0.0.20"], strategy="rightmost-untrusted")

    def make():
        app = FastAPI()

        @app.get("/")
        async def client(request: Request):
            return PlainTextResponse(request.client.host)

        return app

    # A function middleware outside trueip's: Starlette runs what it wraps in a task of its own.
    timed = make()
    timed.add_middleware(TrueIP, policy=POLICY)

    @timed.middleware("http")
    async def timing(request, call_next):
        return await call_next(request)

    # trueip's in a mounted app, which no lifespan reaches, under such a middleware.
    mounted = make()
    sub = make()
    sub.add_middleware(TrueIP, policy=POLICY)
    mounted.mount("/api", sub)

    @mounted.middleware("http")
    async def timing2(request, call_next):
        return await call_next(request)

    # The app adds uvicorn's middleware believing everyone inside trueip's, or trueip's
    # wraps an app that adds it (built on the app's first call).
    inside = make()
    inside.add_middleware(ProxyHeadersMiddleware, trusted_hosts="*")
    inside.add_middleware(TrueIP, policy=POLICY)
    wrapped = TrueIP(make(), POLICY)
    wrapped.app.add_middleware(ProxyHeadersMiddleware, trusted_hosts="*")
"""

NGINX_HOP = "127.0.0.20"

#: app, path, extra uvicorn arguments, request source and X-Forwarded-For: each one's client
#: on the old code was 6.6.6.6, an entry a local process or the client behind a trusted hop wrote.
ASGI_CASES = {
    "function middleware outside, no lifespan": ("timed", "/", ("--lifespan", "off"), ATTACKER, "6.6.6.6"),
    "mounted app under a function middleware": ("mounted", "/api/", (), ATTACKER, "6.6.6.6"),
    # With a lifespan the app does not start (its startup fails naming the fix).
    "uvicorn's middleware added inside": (
        "inside", "/", ("--no-proxy-headers", "--lifespan", "off"), NGINX_HOP, "6.6.6.6, 192.0.2.7"),
    "uvicorn's middleware added in the wrapped app": (
        "wrapped", "/", ("--no-proxy-headers",), NGINX_HOP, "6.6.6.6, 192.0.2.7"),
}


@pytest.mark.parametrize("case", list(ASGI_CASES))
def test_under_a_proxy_header_middleware_the_asgi_middleware_cannot_see_every_request_is_refused(
        tmp_path: Path, case: str) -> None:
    app, path, extra, source, forwarded = ASGI_CASES[case]
    port, server = served(tmp_path, ASGI_APPS, app, *extra)
    with server:
        response = get(source, "127.0.0.1", port, [("X-Forwarded-For", forwarded)], path=path)
        assert response.status == 500, response.text
        assert "ProxyHeadersMiddleware wraps" in response.text
        assert "add no ProxyHeadersMiddleware" in response.text
        assert "6.6.6.6" not in response.text


def test_without_uvicorns_proxy_headers_a_function_middleware_outside_leaves_the_peer(tmp_path: Path) -> None:
    for app, path in (("timed", "/"), ("mounted", "/api/")):
        port, server = served(tmp_path, ASGI_APPS, app, "--no-proxy-headers", "--lifespan", "off")
        with server:
            response = get(ATTACKER, "127.0.0.1", port, FORGED, path=path)
            assert (response.status, response.text) == (200, ATTACKER)
