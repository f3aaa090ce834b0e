"""examples/fastapi_haproxy, run for real: the FastAPI app under uvicorn
(``--no-proxy-headers``) on 127.0.0.1 trusting 127.0.0.16/28, ``/usr/sbin/haproxy`` in front
terminating TLS (a throwaway self-signed certificate) with the example's own ``haproxy.cfg``,
reaching the app from 127.0.0.30."""

import subprocess
import sys

import pytest

from servers import (ALB, ATTACKER, DEADLINE, EXAMPLES, HAPROXY, PROXIES, Process, external, free_port, get, haproxy,
                     python_env, serve, uvicorn)

EXAMPLE = EXAMPLES / "fastapi_haproxy"
FORGED = [
    ("X-Forwarded-For", "203.0.113.195"),
    ("X-Real-IP", "203.0.113.195"),
    ("X_Forwarded_For", "203.0.113.196"),
    ("True-Client-IP", "203.0.113.197"),
    ("Forwarded", "for=203.0.113.198;proto=https"),
    ("X-Forwarded-Proto", "https"),
]


@pytest.fixture(scope="module")
def app():
    port = free_port()
    with uvicorn(EXAMPLE, "app:app", port, env=python_env(TRUEIP_PROXIES=PROXIES)):
        yield port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [external("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=app.example", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )
    pem = d / "app.pem"
    pem.write_bytes((d / "cert.pem").read_bytes() + (d / "key.pem").read_bytes())
    return pem


@pytest.fixture(scope="module")
def front(app, certificate):
    port = free_port()
    with haproxy(EXAMPLE / "haproxy.cfg", port, app, {"/etc/haproxy/app.pem": str(certificate)}):
        yield port


def names(seen):
    return [n for n, _ in seen["headers"]]


def test_through_haproxy_the_client_is_whom_haproxy_saw(front):
    seen = get("127.0.0.99", "127.0.0.1", front, tls=True).json()
    assert seen["client"] == "127.0.0.99"
    assert seen["peer"] == HAPROXY
    assert seen["scheme"] == "https"
    assert seen["source"] == "x-forwarded-for[-1]"
    assert seen["warnings"] == []
    assert ["x-forwarded-for", "127.0.0.99"] in seen["headers"]


def test_through_haproxy_forged_headers_do_not_move_the_client(front):
    seen = get(ATTACKER, "127.0.0.1", front, FORGED, tls=True).json()
    assert seen["client"] == ATTACKER
    assert seen["peer"] == HAPROXY
    # HAProxy replaced the client's X-Forwarded-Proto.
    assert seen["scheme"] == "https"
    assert seen["source"] == "x-forwarded-for[-1]"
    # The client's forged Forwarded passed HAProxy too, and names another client.
    assert seen["warnings"] == ["spoof_attempt", "xff_forwarded_disagree"]
    # The client's X-Forwarded-For line stays, HAProxy's below it; the underscored
    # spelling, which HAProxy passed on, is removed by the middleware.
    xff = [v for n, v in seen["headers"] if n == "x-forwarded-for"]
    assert xff == ["203.0.113.195", ATTACKER]
    assert "x_forwarded_for" not in names(seen)
    assert ["x-forwarded-proto", "https"] in seen["headers"]


def test_straight_to_uvicorn_forged_headers_never_reach_the_app(app):
    seen = get(ATTACKER, "127.0.0.1", app, FORGED).json()
    assert seen["client"] == ATTACKER
    assert seen["peer"] == ATTACKER
    assert seen["scheme"] == "http"
    assert seen["source"] == "peer"
    assert seen["warnings"] == ["header_from_untrusted_peer"]
    assert names(seen) == ["host", "connection"]


def test_straight_to_uvicorn_from_a_trusted_address_its_proto_is_believed(app):
    # The other half of "only when trusted": the same request from a trusted hop.
    seen = get(ALB, "127.0.0.1", app, FORGED).json()
    assert seen["client"] == "203.0.113.195"
    assert seen["scheme"] == "https"
    assert "x_forwarded_for" not in names(seen)


def uvicorn_with_its_proxy_headers(port, *extra):
    """The example under uvicorn as it runs by default: its own proxy headers on, believing
    X-Forwarded-For and X-Forwarded-Proto from 127.0.0.1, the attacker's address here."""
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLE), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", *extra, "app:app"]


def test_under_uvicorns_own_proxy_headers_the_app_does_not_start(tmp_path):
    # The old code started, and answered a local process's `X-Forwarded-For: 6.6.6.6` with
    # client 6.6.6.6 and its `X-Forwarded-Proto: https` with scheme https.
    proc = Process("uvicorn", uvicorn_with_its_proxy_headers(free_port()), tmp_path / "output.log",
                   env=python_env(TRUEIP_PROXIES=PROXIES))
    try:
        code = proc.popen.wait(timeout=DEADLINE)
        output = proc.output()
    finally:
        proc.stop()
    assert code != 0, output
    assert "ProxyHeadersMiddleware wraps trueip.asgi.TrueIP" in output
    assert "--no-proxy-headers" in output


def test_under_uvicorns_own_proxy_headers_without_a_lifespan_every_request_is_refused():
    port = free_port()
    args = uvicorn_with_its_proxy_headers(port, "--lifespan", "off")
    with serve("uvicorn", args, "127.0.0.1", port, env=python_env(TRUEIP_PROXIES=PROXIES)):
        # On the old code: 200, {"client": "6.6.6.6", "scheme": "https", ...}.
        response = get(ATTACKER, "127.0.0.1", port, [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")])
        assert response.status == 500
        assert "--no-proxy-headers" in response.text
        assert "6.6.6.6" not in response.text
