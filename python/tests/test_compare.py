"""The same requests through Werkzeug's ProxyFix, uvicorn's ProxyHeadersMiddleware,
python-ipware and trueip, with every difference named and explained.

The deployment: the app behind proxies in 10.0.0.0/8, the nearest of which appends the
address it saw to X-Forwarded-For (nginx's `$proxy_add_x_forwarded_for`, an ALB). Each
peer is configured as its documentation says for that:

* ``ProxyFix(x_for=1)``: one proxy in front;
* ``ProxyHeadersMiddleware(trusted_hosts=["10.0.0.0/8"])`` (uvicorn);
* python-ipware: ``IpWare()``, the quick start, and ``IpWare(proxy_count=0)``: the header
  holds no proxy, only what the one proxy saw (its README counts the proxies *in* the
  header);
* trueip: ``Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted")``.

The versions are pinned in python/requirements-test.txt: a change in any of them that
changes an answer fails here, to be looked at and written down.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

import pytest

import trueip
from trueip.wsgi import TrueIP

TRUST = "10.0.0.0/8"
TOOLS = ("proxyfix", "uvicorn", "ipware", "ipware_count0", "trueip")

#: case: (peer, headers, {tool: client address}, why the tools that differ from trueip do)
CASES: dict[str, tuple[str, list[tuple[str, str]], dict[str, Optional[str]], str]] = {
    "honest": ("10.0.0.5", [("X-Forwarded-For", "203.0.113.195")],
               dict.fromkeys(TOOLS, "203.0.113.195"), "all agree"),
    "prepended": ("10.0.0.5", [("X-Forwarded-For", "1.2.3.4, 203.0.113.195")],
                  dict(dict.fromkeys(TOOLS, "203.0.113.195"), ipware="1.2.3.4"),
                  "IpWare() without a proxy count takes the leftmost global address: the client wrote it"),
    "two_trusted_hops": ("10.0.0.5", [("X-Forwarded-For", "203.0.113.195, 10.0.0.9")],
                         dict(dict.fromkeys(TOOLS, "203.0.113.195"), proxyfix="10.0.0.9", ipware_count0="10.0.0.9"),
                         "a count (ProxyFix x_for=1, python-ipware proxy_count=0) breaks when a second internal hop appears; "
                         "trust by range (uvicorn, trueip) walks past it, and IpWare() skips private addresses"),
    "stranger_xff": ("198.51.100.20", [("X-Forwarded-For", "1.2.3.4")],
                     dict(dict.fromkeys(TOOLS, "198.51.100.20"), proxyfix="1.2.3.4", ipware="1.2.3.4", ipware_count0="1.2.3.4"),
                     "ProxyFix and python-ipware never look at the peer: a client that reaches the app directly "
                     "names its own address. uvicorn and trueip believe headers only from a trusted peer"),
    "stranger_x_real_ip": ("198.51.100.20", [("X-Real-IP", "1.2.3.4")],
                           dict(dict.fromkeys(TOOLS, "198.51.100.20"), ipware="1.2.3.4", ipware_count0="1.2.3.4"),
                           "python-ipware reads X-Real-IP (and a dozen more headers) from anyone"),
    "no_header": ("10.0.0.5", [], dict.fromkeys(TOOLS, "10.0.0.5"), "all agree: the peer"),
    "empty_xff": ("10.0.0.5", [("X-Forwarded-For", "")], dict.fromkeys(TOOLS, "10.0.0.5"), "all agree: the peer"),
    "leading_zero": ("10.0.0.5", [("X-Forwarded-For", "010.0.0.1")],
                     dict(dict.fromkeys(TOOLS, "10.0.0.5"), proxyfix="010.0.0.1", uvicorn="010.0.0.1"),
                     "ProxyFix and uvicorn pass the text on unparsed, so REMOTE_ADDR is not an address "
                     "(octal to some parsers, decimal to others); trueip and python-ipware refuse it"),
    "port": ("10.0.0.5", [("X-Forwarded-For", "203.0.113.195:4711")],
             dict(dict.fromkeys(TOOLS, "203.0.113.195"), proxyfix="203.0.113.195:4711"),
             "ProxyFix passes address and port as one string; the others split them (trueip keeps the port)"),
    "ipv6_bracketed": ("10.0.0.5", [("X-Forwarded-For", "[2001:db8::1]:80")],
                       dict(dict.fromkeys(TOOLS, "2001:db8::1"), proxyfix="[2001:db8::1]:80"),
                       "as above, for IPv6"),
    "not_an_address": ("10.0.0.5", [("X-Forwarded-For", "unknown")],
                       dict(dict.fromkeys(TOOLS, "10.0.0.5"), proxyfix="unknown", uvicorn="unknown"),
                       "ProxyFix and uvicorn set the client to the text `unknown`; trueip flags it malformed "
                       "and answers the trusted peer"),
    "private_client": ("10.0.0.5", [("X-Forwarded-For", "192.168.1.20")],
                       dict.fromkeys(TOOLS, "192.168.1.20"), "all agree"),
}


def _environ(peer: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    e: dict[str, Any] = {"REQUEST_METHOD": "GET", "REMOTE_ADDR": peer, "wsgi.url_scheme": "http",
                         "SERVER_NAME": "app", "SERVER_PORT": "80", "PATH_INFO": "/"}
    for name, value in headers:
        e["HTTP_" + name.upper().replace("-", "_")] = value
    return e


def _wsgi(middleware: Callable[[Any], Any], peer: str, headers: list[tuple[str, str]]) -> str:
    seen: dict[str, Any] = {}
    middleware(lambda env, start_response: seen.update(env) or [])(_environ(peer, headers), None)
    return seen["REMOTE_ADDR"]


def proxyfix(peer: str, headers: list[tuple[str, str]]) -> Optional[str]:
    from werkzeug.middleware.proxy_fix import ProxyFix

    return _wsgi(lambda app: ProxyFix(app, x_for=1), peer, headers)


def uvicorn(peer: str, headers: list[tuple[str, str]]) -> Optional[str]:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {"type": "http", "client": (peer, 1000), "scheme": "http",
             "headers": [(n.lower().encode(), v.encode()) for n, v in headers]}
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts=[TRUST])(scope, None, None))
    return seen["client"][0]


def ipware(peer: str, headers: list[tuple[str, str]], **config: Any) -> Optional[str]:
    from python_ipware import IpWare

    ip, _trusted_route = IpWare(**config).get_client_ip(_environ(peer, headers))
    return str(ip) if ip else None


POLICY = trueip.Policy(trust=[TRUST], strategy="rightmost-untrusted")


def trueip_wsgi(peer: str, headers: list[tuple[str, str]]) -> Optional[str]:
    return _wsgi(lambda app: TrueIP(app, POLICY), peer, headers)


RUN: dict[str, Callable[[str, list[tuple[str, str]]], Optional[str]]] = {
    "proxyfix": proxyfix,
    "uvicorn": uvicorn,
    "ipware": ipware,
    "ipware_count0": lambda p, h: ipware(p, h, proxy_count=0),
    "trueip": trueip_wsgi,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_peer_answers_as_recorded(case: str) -> None:
    peer, headers, expected, why = CASES[case]
    got = {tool: RUN[tool](peer, headers) for tool in TOOLS}
    assert got == expected, why
    # trueip's own answer is the same through resolve() and through the middleware.
    assert POLICY.resolve(peer, headers).ip_str == got["trueip"]


def test_every_difference_is_explained() -> None:
    for case, (_peer, _headers, expected, why) in CASES.items():
        differs = {tool for tool in TOOLS if expected[tool] != expected["trueip"]}
        assert bool(differs) == (why not in ("all agree", "all agree: the peer")), case
        for tool in differs:
            name = {"proxyfix": "proxyfix", "uvicorn": "uvicorn", "ipware": "ipware", "ipware_count0": "ipware"}[tool]
            assert name in why.lower() or why == "as above, for IPv6", (case, tool)


def test_a_forged_chain_never_moves_trueip() -> None:
    """The property the table illustrates: whatever a client prepends, trueip's answer is
    the address the trusted proxy saw."""
    for forged in ["1.2.3.4", "1.2.3.4, 5.6.7.8", "unknown", "10.0.0.1", "::1", "[2001:db8::9]:1"]:
        assert trueip_wsgi("10.0.0.5", [("X-Forwarded-For", f"{forged}, 203.0.113.195")]) == "203.0.113.195"
