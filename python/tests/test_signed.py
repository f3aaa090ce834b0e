"""The signed client header: ``trueip.Verifier`` and ``verify=`` in the WSGI, ASGI and
Django middlewares, and ``trueip serve`` (``[upstream] sign``) in front of a Flask app under
gunicorn that is also reachable directly."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import trueip
from trueip.asgi import TrueIP as AsgiTrueIP
from trueip.wsgi import TrueIP as WsgiTrueIP

from servers import free_port, get, gunicorn, python_env, serve

REPO = Path(__file__).resolve().parents[2]
TRUEIP = REPO / "target" / "debug" / "trueip"
KEY_A = "python-test-key-a-python-test-key-a-0123"
KEY_B = "python-test-key-b-python-test-key-b-0123"
CLIENT = "203.0.113.7"


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    a.write_text(KEY_A + "\n")
    b.write_text(KEY_B)
    return a, b


def test_the_verifier_reads_key_files_and_never_shows_them(keys: tuple[Path, Path]) -> None:
    v = trueip.Verifier([str(keys[0]), keys[1]], window=10)
    assert v.window == 10 and v.header == "trueip-signature" and len(v.key_ids) == 2
    assert KEY_A not in repr(v) and v.key_ids[0] in repr(v)
    assert len(trueip.Verifier(keys[0]).key_ids) == 1
    with pytest.raises(trueip.PolicyError, match="cannot read"):
        trueip.Verifier(["/nonexistent/trueip.key"])
    short = keys[0].parent / "short.key"
    short.write_text("too short")
    with pytest.raises(trueip.PolicyError, match="32 to 1024 bytes") as e:
        trueip.Verifier([short])
    assert "too short" not in str(e.value)
    for window in (0, 301, float("nan"), -1):
        with pytest.raises(trueip.PolicyError):
            trueip.Verifier([keys[0]], window=window)
    with pytest.raises(trueip.PolicyError):
        trueip.Verifier([keys[0], keys[1], keys[0]])
    with pytest.raises(ValueError, match="missing"):
        v.verify(None, "GET", "app.example", "/")
    with pytest.raises(ValueError, match="malformed"):
        v.verify("v1;nonsense", "GET", "app.example", "/")


def _environ(**extra: Any) -> dict[str, Any]:
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/a",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "HTTP_HOST": "app.example",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "41000",
        "wsgi.url_scheme": "http",
        "HTTP_X_REAL_IP": "6.6.6.6",
    }
    base.update(extra)
    return base


def _wsgi(app_kwargs: dict[str, Any], environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    seen: dict[str, Any] = {}
    status: list[str] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        start_response("200 OK", [])
        return [b""]

    WsgiTrueIP(app, trueip.Policy(), **app_kwargs)(environ, lambda s, h: status.append(s))
    return status[0], seen


def test_wsgi_without_a_signature_gets_the_peer_or_a_refusal(keys: tuple[Path, Path]) -> None:
    status, env = _wsgi({"verify": [keys[0]]}, _environ())
    assert status == "200 OK"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["trueip.signature"] == "missing"
    assert "signature_rejected" in env["trueip.resolution"].warnings
    assert "HTTP_X_REAL_IP" not in env
    status, env = _wsgi({"verify": keys[0], "on_unverified": "refuse"}, _environ())
    assert status == "403 Forbidden" and env == {}
    status, _ = _wsgi({"verify": keys[0], "on_unverified": "refuse"}, _environ(HTTP_TRUEIP_SIGNATURE="v1;x"))
    assert status == "400 Bad Request"
    with pytest.raises(ValueError, match="on_unverified"):
        WsgiTrueIP(lambda e, s: [], trueip.Policy(), verify=keys[0], on_unverified="allow")


def _asgi(headers: list[Any], **kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """What the ASGI middleware sends and hands the app for one request with ``headers``."""
    seen: dict[str, Any] = {}
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/a",
        "raw_path": b"/a",
        "query_string": b"",
        "client": ("127.0.0.1", 41000),
        "headers": headers,
    }
    asyncio.run(AsgiTrueIP(app, trueip.Policy(), **kwargs)(scope, None, send))
    return sent, seen


def test_asgi_refuses_or_serves_the_peer(keys: tuple[Path, Path]) -> None:
    def run(**kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
        return _asgi([(b"host", b"app.example"), (b"x-real-ip", b"6.6.6.6")], **kwargs)

    sent, seen = run(verify=[keys[0]])
    assert seen["client"] == ("127.0.0.1", 41000) and seen["trueip.signature"] == "missing"
    sent, seen = run(verify=[keys[0]], on_unverified="refuse")
    assert seen == {} and sent[0]["status"] == 403


def _gateway_config(tmp: Path, app_port: int, key: Path) -> Path:
    config = tmp / "trueip.toml"
    config.write_text(
        f"""
[client_ip]
trusted = ["127.0.0.1"]
strategy = "rightmost-untrusted"
[[listen]]
address = "127.0.0.1:{free_port()}"
[upstream]
url = "http://127.0.0.1:{app_port}"
sign = {{ key_file = "{key}" }}
"""
    )
    return config


FLASK_APP = '''
import os
from flask import Flask, request
import trueip
from trueip.wsgi import TrueIP

app = Flask(__name__)
keys = os.environ["TRUEIP_TEST_KEYS"].split(os.pathsep)
app.wsgi_app = TrueIP(app.wsgi_app, trueip.Policy(), verify=trueip.Verifier(keys, window=float(os.environ["TRUEIP_TEST_WINDOW"])),
                      on_unverified=os.environ["TRUEIP_TEST_MODE"])

@app.route("/<path:p>")
def any_path(p):
    return (f"{request.remote_addr} {request.environ['trueip.signature']}",
            {"x-seen-signature": request.headers.get("trueip-signature", "-")})
'''


def _listen_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.startswith("address"):
            return int(line.rsplit(":", 1)[1].rstrip('"'))
    raise AssertionError("no listen address")


def _cli() -> Path:
    if not TRUEIP.exists():
        if os.environ.get("TRUEIP_SKIP_EXTERNAL") == "1":
            pytest.skip("the trueip binary is not built")
        pytest.fail("the trueip binary is not built: cargo build -p trueip-cli (scripts/test does)")
    return TRUEIP


@pytest.mark.parametrize("mode", ["peer", "refuse"])
def test_the_gateway_in_front_of_flask_under_gunicorn(tmp_path: Path, keys: tuple[Path, Path], mode: str) -> None:
    cli = _cli()
    (tmp_path / "signed_app.py").write_text(FLASK_APP)
    app_port = free_port()
    env = python_env(
        TRUEIP_TEST_KEYS=os.pathsep.join(map(str, keys)), TRUEIP_TEST_WINDOW="2", TRUEIP_TEST_MODE=mode
    )
    config = _gateway_config(tmp_path, app_port, keys[0])
    gw_port = _listen_port(config)
    with gunicorn(tmp_path, "signed_app:app", app_port, env=env), serve(
        "trueip", [str(cli), "serve", "--config", str(config)], "127.0.0.1", gw_port
    ):
        # Through the gateway (trusted as a proxy: X-Forwarded-For names the client), with a
        # forged X-Real-IP and signature: the gateway's signed client.
        forged = "v1;ip=6.6.6.6;port=;src=peer;hops=0;t=1;n=0000000000000001;kid=AAAAAAAA;sig=" + "A" * 43
        r = get("127.0.0.1", "127.0.0.1", gw_port, [("X-Forwarded-For", CLIENT), ("X-Real-IP", "6.6.6.6"),
                                                     ("Trueip-Signature", forged)], path="/account?tab=1")
        assert (r.status, r.text) == (200, f"{CLIENT} verified")
        captured = dict((n.lower(), v) for n, v in r.headers)["x-seen-signature"]
        assert captured.startswith(f"v1;ip={CLIENT};")

        # Directly: X-Real-IP, and the captured header replayed for another path or late.
        direct = [
            ("/account?tab=1", [("X-Real-IP", CLIENT)], "missing"),
            ("/admin", [("Trueip-Signature", captured)], "bad_signature"),
            ("/account?tab=2", [("Trueip-Signature", captured)], "bad_signature"),
        ]
        for path, headers, why in direct:
            r = get("127.0.0.1", "127.0.0.1", app_port, headers, path=path)
            if mode == "peer":
                assert (r.status, r.text) == (200, f"127.0.0.1 {why}"), path
            else:
                assert r.status == 403, (path, r.text)
        time.sleep(3.1)
        r = get("127.0.0.1", "127.0.0.1", app_port, [("Trueip-Signature", captured)], path="/account?tab=1")
        if mode == "peer":
            assert r.text == "127.0.0.1 stale"
        else:
            assert r.status == 403


def test_django_settings_are_checked(keys: tuple[Path, Path]) -> None:
    pytest.importorskip("django")
    from django.core.exceptions import ImproperlyConfigured

    from trueip.django import verify_from_settings

    class S:
        TRUEIP_VERIFY: Any = {"key_files": [str(keys[0]), str(keys[1])], "on_unverified": "refuse", "window": 5}

    verifier, refuse = verify_from_settings(S())
    assert refuse and verifier is not None and verifier.window == 5
    for bad in ({"key_files": ["/nonexistent"]}, {"keys": []}, {"key_files": [str(keys[0])], "on_unverified": "x"}, "k"):
        S.TRUEIP_VERIFY = bad
        with pytest.raises(ImproperlyConfigured):
            verify_from_settings(S())
    S.TRUEIP_VERIFY = None
    assert verify_from_settings(S()) == (None, False)


def test_asgi_verify_serves_odd_header_items_without_raising(keys: tuple[Path, Path]) -> None:
    # Servers that bend the spec: a line that is no pair, a text name, a text value.
    odd = [(b"host", b"app.example"), (b"x-odd",), ("trueip-signature", "v1"), (b"x-real-ip", "6.6.6.6")]
    _, seen = _asgi(odd, verify=[keys[0]])
    assert seen["client"] == ("127.0.0.1", 41000) and seen["trueip.signature"] == "missing"
