"""WSGI servers that make a line spelled ``X_Forwarded_For`` the app's ``HTTP_X_FORWARDED_FOR``,
as they make ``X-Forwarded-For`` so: the environ keeps no trace of the spelling, and a proxy in
front passes a client's such line on (HAProxy, an ALB, Envoy; nginx under
``underscores_in_headers on``). Granian's WSGI interface, Twisted's ``WSGIResource`` and cheroot
keep the value of the spelling they met last, so behind HAProxy's ``option forwardfor`` a client
that sends ``X-Forwarded-For`` and then ``X_Forwarded_For`` replaces the line HAProxy appended;
gunicorn under ``--header-map dangerous`` (or ``--forwarder-headers '*'``) and the ASGI-to-WSGI
bridges (uvicorn's ``--interface wsgi``, hypercorn's ``wsgi:``, Starlette's ``WSGIMiddleware``)
join the lines in their order, so behind nginx, which writes its line before the client's, the client's entry
comes last. The middlewares refuse a request through a trusted hop under such a server
(``trueip.wsgi.merged_spellings``) and decide every other. Real servers and proxies, on loopback."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from servers import (ATTACKER, HAPROXY_FORWARDFOR_CFG, NGINX, PROXIES, free_port, get, haproxy, nginx, python_env, serve)

APP = f"""
    import trueip
    from trueip.wsgi import TrueIP

    def inner(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REMOTE_ADDR"].encode()]

    app = TrueIP(inner, trueip.Policy(trust=["{PROXIES}"], strategy="rightmost-untrusted"))
"""

DJANGO_APP = f"""
    import django
    from django.conf import settings

    settings.configure(
        ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="x",
        MIDDLEWARE=["trueip.django.TrueIPMiddleware"],
        TRUEIP={{"trust": ["{PROXIES}"], "strategy": "rightmost-untrusted"}},
    )
    django.setup()

    from django.http import HttpResponse
    from django.urls import path
    from django.core.wsgi import get_wsgi_application

    urlpatterns = [path("", lambda request: HttpResponse(request.META["REMOTE_ADDR"]))]
    app = get_wsgi_application()
"""


# nginx writes its own X-Forwarded-For (the client's list and its peer) before the lines it
# passes on; `underscores_in_headers on` passes a client's X_Forwarded_For.
NGINX_CFG = f"""
server {{
    listen 8080;
    underscores_in_headers on;
    location / {{
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_bind {NGINX};
        proxy_pass http://127.0.0.1:8000;
    }}
}}
"""

PLANTED = [("X-Forwarded-For", "1.1.1.1"), ("X_Forwarded_For", "6.6.6.6")]


def server_args(kind: str, port: int) -> list[str]:
    py = sys.executable
    if kind == "granian":
        return [py, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--log-level", "warning", "server_app:app"]
    if kind == "twisted":
        return [py, "-m", "twisted", "web", "--listen", f"tcp:{port}:interface=127.0.0.1", "--wsgi", "server_app.app"]
    if kind == "uvicorn --interface wsgi":
        return [py, "-m", "uvicorn", "--interface", "wsgi", "--no-proxy-headers", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "server_app:app"]
    if kind == "hypercorn wsgi:":
        return [py, "-m", "hypercorn", "-b", f"127.0.0.1:{port}", "wsgi:server_app:app"]
    if kind == "starlette WSGIMiddleware":
        return [py, "-m", "uvicorn", "--no-proxy-headers", "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning", "server_app:bridged"]
    if kind == "cheroot":
        return [py, "-c", "import sys, server_app; from cheroot import wsgi; "
                f"wsgi.Server(('127.0.0.1', {port}), server_app.app).start()"]
    gunicorn = [py, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "1"]
    if kind == "gunicorn --header-map dangerous":
        return [*gunicorn, "--header-map", "dangerous", "server_app:app"]
    if kind.startswith("gunicorn --forwarder-headers "):
        return [*gunicorn, "--forwarded-allow-ips", PROXIES, "--forwarder-headers", kind.split()[-1].strip("'"),
                "server_app:app"]
    assert kind == "gunicorn", kind
    return [*gunicorn, "server_app:app"]


def front(kind: str, tmp_path: Path, port: int, app_port: int):
    if kind == "haproxy":
        (tmp_path / "haproxy.cfg").write_text(HAPROXY_FORWARDFOR_CFG)
        return haproxy(tmp_path / "haproxy.cfg", port, app_port)
    (tmp_path / "nginx.conf").write_text(NGINX_CFG)
    return nginx(tmp_path / "nginx.conf", "127.0.0.1", port, app_port)


# Each server behind the proxy that lets a client choose its address under it on the code
# before (the client got "6.6.6.6" through each): the last spelling wins behind HAProxy, the
# order of the lines behind nginx.
MERGING = [
    ("granian", "haproxy"),
    ("twisted", "haproxy"),
    ("cheroot", "haproxy"),
    ("gunicorn --header-map dangerous", "nginx"),
    ("gunicorn --forwarder-headers '*'", "nginx"),
    ("gunicorn --forwarder-headers SCRIPT_NAME,X_FORWARDED_FOR", "nginx"),
    ("uvicorn --interface wsgi", "nginx"),
    ("hypercorn wsgi:", "nginx"),
    ("starlette WSGIMiddleware", "nginx"),
]

BRIDGED = """
from starlette.middleware.wsgi import WSGIMiddleware
bridged = WSGIMiddleware(app)
"""


@pytest.mark.parametrize("source", [APP, DJANGO_APP], ids=["wsgi", "django"])
@pytest.mark.parametrize("kind,proxy", MERGING)
def test_under_a_server_that_merges_spellings_a_trusted_hops_request_is_refused(
    tmp_path: Path, kind: str, proxy: str, source: str
) -> None:
    (tmp_path / "server_app.py").write_text(textwrap.dedent(source) + BRIDGED)
    app_port, proxy_port = free_port(), free_port()
    env = python_env(PYTHONPATH=str(tmp_path))
    with serve(kind.split()[0], server_args(kind, app_port), "127.0.0.1", app_port, cwd=tmp_path, env=env):
        with front(proxy, tmp_path, proxy_port, app_port):
            response = get(ATTACKER, "127.0.0.1", proxy_port, PLANTED)
            # On the code before: 200 and "6.6.6.6", the client's X_Forwarded_For.
            assert response.status == 500, response.text
            assert "X_Forwarded_For" in response.text and "6.6.6.6" not in response.text
        # A stranger's request is decided: every client-IP key is withheld from it.
        response = get(ATTACKER, "127.0.0.1", app_port, PLANTED)
        assert (response.status, response.text) == (200, ATTACKER)
        # So is a trusted address's with no client-IP header (a health check): nothing merged.
        response = get(NGINX, "127.0.0.1", app_port, [("X-Request-Id", "1")])
        assert (response.status, response.text) == (200, NGINX)


@pytest.mark.parametrize("kind,proxy", [
    ("gunicorn", "haproxy"),
    ("gunicorn", "nginx"),
    ("gunicorn --forwarder-headers SCRIPT_NAME,X_CUSTOM", "nginx"),
])
def test_under_a_server_that_drops_underscore_lines_a_trusted_hop_is_believed(
    tmp_path: Path, kind: str, proxy: str
) -> None:
    (tmp_path / "server_app.py").write_text(textwrap.dedent(APP))
    app_port, proxy_port = free_port(), free_port()
    env = python_env(PYTHONPATH=str(tmp_path))
    with serve("gunicorn", server_args(kind, app_port), "127.0.0.1", app_port, cwd=tmp_path, env=env):
        with front(proxy, tmp_path, proxy_port, app_port):
            response = get(ATTACKER, "127.0.0.1", proxy_port, PLANTED)
            assert (response.status, response.text) == (200, ATTACKER)
