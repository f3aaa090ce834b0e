"""`trueip simulate`'s advice, applied for real: the ProxyFix line it prints, run in Werkzeug,
and the trueip policy it prints, loaded by this package, find the client it predicts, over the
headers it predicts the app receives (the nginx half is crates/trueip-cli/tests/simulate_real.rs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import trueip

REPO = Path(__file__).resolve().parents[2]
TRUEIP = REPO / "target" / "debug" / "trueip"

CHAINS = [
    'client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> cloudfront -> alb(append) -> nginx(realip 10.50.0.0/16) -> app',
    'client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> alb(append) -> app',
    'client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> nginx -> app',
    'client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> alb(append) -> nginx -> app',
    "client 198.51.100.7 -> cloudflare -> nginx -> app",
]


def simulate(chain: str) -> dict[str, Any]:
    if not TRUEIP.exists():
        if os.environ.get("TRUEIP_SKIP_EXTERNAL") == "1":
            pytest.skip("the trueip binary is not built")
        pytest.fail("the trueip binary is not built: cargo build -p trueip-cli (scripts/test does)")
    out = subprocess.run([str(TRUEIP), "simulate", "--format", "json", chain], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def at_app(sim: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    receives = sim["hops"][-1]["receives"]
    host, _, _port = receives["peer"].rpartition(":")
    return host.strip("[]"), [(h["name"], h["value"]) for h in receives["headers"]]


def config(sim: dict[str, Any], kind: str) -> str:
    texts = [c["text"] for c in sim["config"] if c["kind"] == kind and c["layer"].startswith("app")]
    assert len(texts) == 1, sim["config"]
    return texts[0]


@pytest.mark.parametrize("chain", CHAINS)
def test_the_printed_proxyfix_line_finds_the_client_in_werkzeug(chain: str) -> None:
    sim = simulate(chain)
    expected = sim["at_app"]["expected"]
    peer, headers = at_app(sim)
    seen: dict[str, Any] = {}

    class App:
        @staticmethod
        def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            seen.update(environ)
            return []

    app = App()
    exec(config(sim, "python"), {"app": app})
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "app", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "REMOTE_ADDR": peer}
    for name, value in headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    app.wsgi_app(environ, None)
    assert seen["REMOTE_ADDR"] == expected, (chain, config(sim, "python"))


@pytest.mark.parametrize("chain", CHAINS)
def test_the_printed_trueip_policy_finds_the_client_here_too(chain: str, tmp_path: Path) -> None:
    sim = simulate(chain)
    peer, headers = at_app(sim)
    toml = tmp_path / "trueip.toml"
    toml.write_text(config(sim, "toml"))
    r = trueip.Policy.from_toml(toml).resolve(peer, headers)
    assert r.ip_str == sim["at_app"]["expected"], (chain, toml.read_text())
    assert r.to_dict()["client_ip"] == sim["at_app"]["recommended"]["explanation"]["client_ip"]
