"""trueip.asgi.TrueIP: the scope the app sees, from trusted hops and from strangers."""

# No `from __future__ import annotations`: FastAPI reads the handler's annotations.
import asyncio
from typing import Any

import pytest

import trueip
from trueip.asgi import TrueIP

POLICY = trueip.Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted")


ALL = ("proto", "host", "port", "prefix")


def run(client: Any, headers: list[tuple[bytes, bytes]], kind: str = "http", policy: trueip.Policy = POLICY,
        origin: Any = ALL) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {"type": kind, "scheme": "http" if kind == "http" else "ws", "client": client, "server": ("10.0.0.1", 8000),
             "path": "/", "root_path": "", "headers": headers}
    before = dict(scope)
    asyncio.run(TrueIP(app, policy, origin=origin)(scope, None, None))
    assert scope == before, "the caller's scope is left as it was"
    return seen


def test_through_a_trusted_hop() -> None:
    headers = [(b"host", b"internal:8000"), (b"x-forwarded-for", b"198.51.100.66, 203.0.113.195"),
               (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"shop.example"), (b"x-forwarded-prefix", b"/shop")]
    scope = run(("10.0.0.5", 41000), headers)
    assert scope["client"] == ("203.0.113.195", 0)
    assert scope["scheme"] == "https"
    assert dict(scope["headers"])[b"host"] == b"shop.example"
    assert scope["root_path"] == "/shop"
    assert dict(scope["headers"])[b"x-forwarded-for"] == b"198.51.100.66, 203.0.113.195"
    assert scope["trueip.original"]["client"] == ("10.0.0.5", 41000)
    assert scope["trueip.resolution"].spoof_attempt


def test_a_stranger_gets_nothing_believed_and_nothing_through() -> None:
    forged = [(n.encode(), b"203.0.113.7") for n in trueip.forwarding_header_names()]
    scope = run(("198.51.100.20", 5555), [(b"host", b"internal:8000")] + forged)
    assert scope["client"] == ("198.51.100.20", 5555)
    assert scope["scheme"] == "http"
    assert scope["headers"] == [(b"host", b"internal:8000")]
    assert len(scope["trueip.original"]["headers"]) == len(forged) + 1


@pytest.mark.parametrize("name", [b"X_Forwarded_For", b"x_real_ip", b"True_Client_IP", b"X-Forwarded_For"])
def test_underscore_spellings_are_removed_even_from_a_trusted_hop(name: bytes) -> None:
    scope = run(("10.0.0.5", 1), [(name, b"203.0.113.7"), (b"x-forwarded-for", b"198.51.100.1")])
    assert scope["headers"] == [(b"x-forwarded-for", b"198.51.100.1")]
    assert scope["client"] == ("198.51.100.1", 0)


def test_the_header_a_header_strategy_reads_is_removed_from_a_stranger() -> None:
    """As the table's headers: a stranger's X-Client-Addr (in any spelling) and a guess at the
    origin secret never reach the app; from the trusted hop, the underscore spelling goes
    (Django's ASGI handler would merge it into HTTP_X_CLIENT_ADDR), and the origin secret,
    which has done its job."""
    p = trueip.Policy(trust=["10.0.0.0/8"], strategy="header:X-Client-Addr", origin_secret=("X-Origin-Verify", "s3cret"))
    forged = [(b"x-client-addr", b"1.2.3.4"), (b"X_Client_Addr", b"1.2.3.4"), (b"x-origin-verify", b"guess")]
    scope = run(("198.51.100.20", 5555), [(b"host", b"internal:8000")] + forged, policy=p)
    assert scope["client"] == ("198.51.100.20", 5555)
    assert scope["headers"] == [(b"host", b"internal:8000")]
    honest = [(b"x-client-addr", b"203.0.113.9"), (b"x_client_addr", b"1.2.3.4"), (b"x-origin-verify", b"s3cret")]
    scope = run(("10.0.0.5", 1), honest, policy=p)
    assert scope["client"] == ("203.0.113.9", 0)
    assert scope["headers"] == [(b"x-client-addr", b"203.0.113.9")]


@pytest.mark.parametrize("algorithm", ["modern", "legacy"])
def test_a_stranger_cannot_name_the_client_to_python_ipware_through_a_cgi_spelling(algorithm: str) -> None:
    """python-ipware, handed the request's headers (Starlette's `request.headers`: all an
    ASGI app has), looks each key of its precedence up in any case with dashes for
    underscores: `HTTP_X_REAL_IP` finds a header named `Http-X-Real-Ip`, `REMOTE_ADDR` one
    named `Remote-Addr`. No proxy writes those; a stranger's must not reach the app. Every
    key of python-ipware's own list, in both spellings (a review found 15 of them passed)."""
    from python_ipware import IpWare
    from python_ipware.modern.defaults import DEFAULT_PRECEDENCE
    from starlette.datastructures import Headers

    for key in DEFAULT_PRECEDENCE:
        for name in (key.lower(), key.lower().replace("_", "-")):
            scope = run(("198.51.100.20", 5555), [(b"host", b"internal:8000"), (name.encode(), b"1.2.3.4")])
            assert scope["headers"] == [(b"host", b"internal:8000")], name
            ip, _ = IpWare(algorithm=algorithm).get_client_ip(Headers(scope=scope))
            assert ip is None, (name, ip)


def test_a_header_name_that_is_not_bytes_is_withheld() -> None:
    """ASGI header names are bytes. A server that bends the spec (a bytearray name, an item
    that is no pair) gets those lines withheld: Starlette would still read a bytearray
    `x-forwarded-for`, and the middleware cannot say what it is."""
    odd = [(bytearray(b"x-forwarded-for"), b"6.6.6.6"), (b"accept", b"*/*"), "x-real-ip: 6.6.6.6", (b"x-forwarded-for", b"203.0.113.9")]
    scope = run(("10.0.0.5", 1), odd)
    assert scope["client"] == ("203.0.113.9", 0)
    assert scope["headers"] == [(b"accept", b"*/*"), (b"x-forwarded-for", b"203.0.113.9")]


def test_a_trusted_hop_passes_only_the_addresses_the_policy_reads() -> None:
    """nginx and an ALB relay a client's True-Client-IP as readily as they write their own:
    from a trusted hop, a client address the policy does not read is withheld (the app reads
    scope["client"]); what it reads, and claims about the request, pass."""
    sent = [(b"x-forwarded-for", b"203.0.113.9"), (b"true-client-ip", b"1.2.3.4"), (b"x-real-ip", b"1.2.3.4"),
            (b"cf-connecting-ip", b"1.2.3.4"), (b"x-forwarded-host", b"shop.example"), (b"accept", b"*/*")]
    scope = run(("10.0.0.5", 1), list(sent), origin=("proto",))
    assert scope["client"] == ("203.0.113.9", 0)
    assert scope["headers"] == [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-host", b"shop.example"),
                                (b"accept", b"*/*")]
    reads = trueip.Policy(trust=["10.0.0.0/8"], strategy="header:True-Client-IP")
    scope = run(("10.0.0.5", 1), list(sent), policy=reads, origin=("proto",))
    assert scope["client"] == ("1.2.3.4", 0)
    assert [n for n, _ in scope["headers"]] == [b"x-forwarded-for", b"true-client-ip", b"x-forwarded-host", b"accept"]


def test_behind_nginx_on_a_unix_socket_trust_unix() -> None:
    """uvicorn --uds: no client, the server (path, None). As gunicorn's "" REMOTE_ADDR, a Unix
    peer: only trust=["unix"] makes nginx's X-Forwarded-For count (it once never did)."""
    xff = [(b"x-forwarded-for", b"1.2.3.4, 203.0.113.9")]
    for policy, client in [(trueip.Policy(trust=["unix"]), ("203.0.113.9", 0)), (POLICY, None)]:
        seen: dict[str, Any] = {}

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.update(scope)

        scope = {"type": "http", "scheme": "http", "client": None, "server": ("/run/app.sock", None), "path": "/",
                 "root_path": "", "headers": list(xff)}
        asyncio.run(TrueIP(app, policy)(scope, None, None))
        assert seen["client"] == client
        assert seen["headers"] == (xff if client else [])


def test_under_uvicorn_on_a_unix_socket(tmp_path: Any) -> None:
    """The same, through a real uvicorn --uds."""
    import http.client
    import json
    import socket
    import subprocess
    import sys
    import time

    (tmp_path / "app.py").write_text(
        "import json, trueip\n"
        "from trueip.asgi import TrueIP\n"
        "async def inner(scope, receive, send):\n"
        "    body = json.dumps([scope['client'], dict((k.decode(), v.decode()) for k, v in scope['headers'])]).encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n"
        "app = TrueIP(inner, trueip.Policy(trust=['unix']))\n"
    )
    sock = str(tmp_path / "app.sock")
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "--uds", sock,
                             "--no-proxy-headers", "--log-level", "warning", "app:app"])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("localhost")
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.connect(sock)
                break
            except OSError:
                assert time.monotonic() < deadline, "uvicorn did not listen"
                time.sleep(0.05)
        conn.request("GET", "/", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.9"})
        client, headers = json.loads(conn.getresponse().read())
        assert client == ["203.0.113.9", 0]
        assert headers["x-forwarded-for"] == "1.2.3.4, 203.0.113.9"
    finally:
        proc.terminate()
        proc.wait(10)


def test_only_the_named_origin_parts_are_applied() -> None:
    headers = [(b"host", b"internal:8000"), (b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-proto", b"https"),
               (b"x-forwarded-host", b"evil.example"), (b"x-forwarded-port", b"444"), (b"x-forwarded-prefix", b"/shop")]
    scope = run(("10.0.0.5", 1), headers, origin=("proto",))
    assert (scope["scheme"], dict(scope["headers"])[b"host"], scope["root_path"]) == ("https", b"internal:8000", "")
    scope = run(("10.0.0.5", 1), headers, origin=("host", "port"))
    assert (scope["scheme"], dict(scope["headers"])[b"host"]) == ("http", b"evil.example:444")
    scope = run(("10.0.0.5", 1), headers, origin=("port",))
    assert dict(scope["headers"])[b"host"] == b"internal:444"


def test_daphne_lists_and_non_token_names() -> None:
    scope = run(["10.0.0.5", 80], [(b"x-forwarded-for", b"198.51.100.1")])
    assert scope["client"] == ("198.51.100.1", 0)
    # Django upper-cases names as Latin-1: "\xdf".upper() is "SS", so this would become
    # HTTP_X_FORWARDED_SSL. A name that is not a token is no header anyone wrote honestly.
    scope = run(["10.0.0.5", 80], [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-\xdfl", b"on")])
    assert scope["headers"] == [(b"x-forwarded-for", b"198.51.100.1")]


def test_a_failing_header_iterator_raises_rather_than_deciding_on_part() -> None:
    class Broken:
        def items(self) -> Any:
            yield ("x-forwarded-for", "198.51.100.1")
            raise RuntimeError("broken container")

    with pytest.raises(RuntimeError, match="broken container"):
        POLICY.resolve("10.0.0.5", Broken())


def test_websocket_schemes() -> None:
    scope = run(("10.0.0.5", 1), [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-proto", b"https")], kind="websocket")
    assert scope["scheme"] == "wss"


def test_a_forwarded_port_rewrites_the_host_port() -> None:
    scope = run(("10.0.0.5", 1), [(b"host", b"[2001:db8::5]:8000"), (b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-port", b"443")])
    assert dict(scope["headers"])[b"host"] == b"[2001:db8::5]:443"


def test_lifespan_and_missing_clients_pass() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    asyncio.run(TrueIP(app, POLICY)({"type": "lifespan"}, None, None))
    assert seen == [{"type": "lifespan"}]
    scope = run(None, [(b"x-forwarded-for", b"1.2.3.4")])
    assert scope["client"] is None and scope["headers"] == [] and scope["trueip.resolution"] is None


def test_under_fastapi() -> None:
    from fastapi import FastAPI, Request
    from fastapi.testclient import TestClient

    api = FastAPI()

    @api.get("/")
    def index(request: Request) -> dict[str, Any]:
        return {"client": request.client.host if request.client else None, "url": str(request.url),
                "xri": request.headers.get("x-real-ip")}

    app = TrueIP(api, POLICY)
    # TestClient's peer is ("testclient", 50000): not an address, so nothing is believed.
    got = TestClient(app).get("/", headers={"X-Forwarded-For": "203.0.113.195", "X-Real-IP": "1.2.3.4"}).json()
    assert got == {"client": "testclient", "url": "http://testserver/", "xri": None}
    got = TestClient(app, client=("10.0.0.5", 41000)).get(
        "/", headers={"X-Forwarded-For": "203.0.113.195", "X-Forwarded-Proto": "https", "X-Real-IP": "1.2.3.4"}).json()
    # The policy reads X-Forwarded-For: the trusted hop's X-Real-IP may be the client's.
    assert got == {"client": "203.0.113.195", "url": "https://testserver/", "xri": None}


def test_a_query_argument_from_the_trusted_gateway() -> None:
    policy = trueip.Policy(trust=["10.0.0.0/8"], strategy="query:client")
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {"type": "http", "scheme": "http", "client": ("10.0.0.5", 41000), "server": ("10.0.0.1", 8000),
             "path": "/", "root_path": "", "headers": [], "query_string": b"page=2&client=198.51.100.4"}
    asyncio.run(TrueIP(app, policy)(scope, None, None))
    assert seen["client"] == ("198.51.100.4", 0)


def test_a_header_passes_a_trusted_hop_only_when_its_strategy_decided() -> None:
    """Review finding: a header:NAME strategy's header that strategy did not decide from (two
    lines, refused as ambiguous; or another strategy decided first) was passed from a trusted
    hop because the policy "reads" it: a client's own True-Client-IP, relayed by nginx. And
    under from_="forwarded" with aws-alb, the ALB's X-Forwarded-For (which decided) was
    removed while a client's Forwarded (which nothing read) passed."""
    p = trueip.Policy(trust=["10.0.0.0/8"], strategy=["header:True-Client-IP", "rightmost-untrusted"])
    doubled = [(b"x-forwarded-for", b"203.0.113.9"), (b"true-client-ip", b"6.6.6.6"), (b"true-client-ip", b"203.0.113.9")]
    scope = run(("10.0.0.5", 1), list(doubled), policy=p)
    assert scope["client"] == ("203.0.113.9", 0)
    assert [n for n, _ in scope["headers"]] == [b"x-forwarded-for"]
    scope = run(("10.0.0.5", 1), doubled[:2], policy=p)
    assert scope["client"] == ("6.6.6.6", 0)
    assert [n for n, _ in scope["headers"]] == [b"x-forwarded-for", b"true-client-ip"]

    two = trueip.Policy(trust=["10.0.0.0/8"], strategy=["header:Fastly-Client-IP", "header:CF-Connecting-IP"])
    scope = run(("10.0.0.5", 1), [(b"fastly-client-ip", b"203.0.113.9"), (b"cf-connecting-ip", b"6.6.6.6")], policy=two)
    assert scope["client"] == ("203.0.113.9", 0)
    assert scope["headers"] == [(b"fastly-client-ip", b"203.0.113.9")]

    alb = trueip.Policy(trust=["10.0.0.0/8"], strategy="aws-alb", from_="forwarded")
    scope = run(("10.0.0.5", 1), [(b"x-forwarded-for", b"203.0.113.9"), (b"forwarded", b"for=6.6.6.6")], policy=alb)
    assert scope["client"] == ("203.0.113.9", 0)
    assert scope["headers"] == [(b"x-forwarded-for", b"203.0.113.9")]


def test_an_origin_secret_in_the_table_is_withheld_from_a_trusted_hop() -> None:
    """Review finding: Azure Front Door's X-Azure-FDID, the documented origin secret, is a row
    of the table that passes trusted hops; it reached the app while X-Origin-Verify did not."""
    p = trueip.Policy(trust=["10.0.0.0/8"], origin_secret=("X-Azure-FDID", "fdid"))
    scope = run(("10.0.0.5", 1), [(b"x-forwarded-for", b"203.0.113.9"), (b"x-azure-fdid", b"fdid")], policy=p)
    assert scope["client"] == ("203.0.113.9", 0)
    assert scope["headers"] == [(b"x-forwarded-for", b"203.0.113.9")]


def test_headers_given_as_an_iterator_reach_the_app() -> None:
    """ASGI allows any iterable of pairs: the middleware reads it once, so the app must get
    the lines it read, not the spent iterator (it once got no headers at all when none was
    withheld)."""
    lines = [(b"host", b"internal:8000"), (b"accept", b"*/*"), (b"x-forwarded-for", b"203.0.113.9")]
    scope = run(("10.0.0.5", 1), iter(lines))  # type: ignore[arg-type]
    assert list(scope["headers"]) == lines
    assert scope["client"] == ("203.0.113.9", 0)
    scope = run(("198.51.100.20", 1), iter(lines))  # type: ignore[arg-type]
    assert list(scope["headers"]) == lines[:2]


def test_a_wsgi_app_under_starlettes_bridge_is_wrapped_on_the_asgi_side() -> None:
    """Starlette's WSGIMiddleware (a Flask app mounted in FastAPI) folds `x_forwarded_for`
    into HTTP_X_FORWARDED_FOR, after a trusted proxy's line, and keeps no scope in the
    environ: the WSGI middleware inside it cannot tell the lines apart (the client chose
    REMOTE_ADDR on the code before review47), so it refuses such a request, naming the fix
    (`trueip.wsgi.merged_spellings`). The ASGI middleware outside it withholds the line before
    the bridge folds it."""
    wsgi_bridge = pytest.importorskip("starlette.middleware.wsgi")
    from trueip.wsgi import TrueIP as WsgiTrueIP

    def run_bridge(app: Any) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def flask_like(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            seen.update(environ)
            start_response("200 OK", [])
            return [b""]

        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/", "root_path": "",
                 "query_string": b"", "client": ("10.0.0.5", 1), "server": ("10.0.0.1", 8000),
                 "headers": [(b"host", b"app"), (b"x-forwarded-for", b"203.0.113.9"), (b"x_forwarded_for", b"6.6.6.6")]}
        asyncio.run(app(flask_like)(scope, receive, send))
        seen["sent"] = sent
        return seen

    inside = run_bridge(lambda wsgi: wsgi_bridge.WSGIMiddleware(WsgiTrueIP(wsgi, POLICY)))
    assert "REMOTE_ADDR" not in inside
    assert inside["sent"][0]["status"] == 500
    assert b"Starlette's WSGIMiddleware" in b"".join(m.get("body", b"") for m in inside["sent"])
    outside = run_bridge(lambda wsgi: TrueIP(wsgi_bridge.WSGIMiddleware(wsgi), POLICY))
    assert (outside["REMOTE_ADDR"], outside["HTTP_X_FORWARDED_FOR"]) == ("203.0.113.9", "203.0.113.9")


def test_a_request_an_outer_base_http_middleware_built_is_not_the_apps() -> None:
    """A Starlette `BaseHTTPMiddleware` outside this one builds its `Request` (headers and
    client read once) from the scope as received: the app's `Request` is built from the new
    scope this middleware hands it, so the handler reads none of what the outer one kept."""
    from starlette.applications import Starlette
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def index(request: Request) -> JSONResponse:
        return JSONResponse({"client": request.client.host if request.client else None,
                             "xff": request.headers.get("x-forwarded-for")})

    async def outer(request: Request, call_next: Any) -> Any:
        assert request.headers.get("x-forwarded-for") == "6.6.6.6"
        return await call_next(request)

    app = Starlette(routes=[Route("/", index)])
    wrapped = BaseHTTPMiddleware(TrueIP(app, POLICY), dispatch=outer)
    got = TestClient(wrapped, client=("198.51.100.20", 4000)).get("/", headers={"X-Forwarded-For": "6.6.6.6"}).json()
    assert got == {"client": "198.51.100.20", "xff": None}


def served(outer: Any, scope: dict[str, Any], incoming: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Calls ``outer`` as a server does: the scope the app saw, and what went back."""
    seen: dict[str, Any] = {}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    asyncio.run(outer(app)(dict(scope), receive, send))
    return seen, sent


def uvicorns(app: Any) -> Any:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    return ProxyHeadersMiddleware(TrueIP(app, POLICY), trusted_hosts="127.0.0.1")


def hypercorns(app: Any) -> Any:
    proxy_fix = pytest.importorskip("hypercorn.middleware.proxy_fix")
    return proxy_fix.ProxyFixMiddleware(TrueIP(app, POLICY))


def under_starlette(app: Any) -> Any:
    # The middleware a few callers down: uvicorn's, Starlette's error and exception layers.
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)

    inner = Starlette(middleware=[Middleware(TrueIP, policy=POLICY)])
    inner.mount("/", endpoint)
    return ProxyHeadersMiddleware(inner, trusted_hosts="127.0.0.1")


FORGED_LOCALLY = {"type": "http", "scheme": "http", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
                  "path": "/", "root_path": "", "query_string": b"", "method": "GET", "http_version": "1.1",
                  "headers": [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https")]}


@pytest.mark.parametrize("outer", [uvicorns, hypercorns, under_starlette])
def test_under_a_servers_own_proxy_headers_a_request_is_refused(outer: Any) -> None:
    # On the old code the app got client ("6.6.6.6", 0) and scheme https from any local
    # process (uvicorn's default) or anyone (hypercorn's ProxyFixMiddleware).
    seen, sent = served(outer, FORGED_LOCALLY, {"type": "http.request"})
    assert seen == {}
    assert sent[0]["status"] == 500
    assert b"wraps trueip.asgi.TrueIP" in sent[1]["body"]


@pytest.mark.parametrize("outer", [uvicorns, hypercorns])
def test_under_a_servers_own_proxy_headers_the_lifespan_startup_fails(outer: Any) -> None:
    seen, sent = served(outer, {"type": "lifespan"}, {"type": "lifespan.startup"})
    assert seen == {}
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "wraps trueip.asgi.TrueIP" in sent[0]["message"]


def test_under_a_servers_own_proxy_headers_a_websocket_is_closed_unaccepted() -> None:
    scope = dict(FORGED_LOCALLY, type="websocket", scheme="ws")
    seen, sent = served(uvicorns, scope, {"type": "websocket.connect"})
    assert seen == {}
    assert sent == [{"type": "websocket.close", "code": 1011}]


def behind_a_task(server: Any) -> Any:
    """``server``'s proxy-header middleware around a Starlette ``BaseHTTPMiddleware`` (what
    ``@app.middleware("http")`` adds) around the ASGI middleware: it runs what it wraps in a
    task of its own, where the server's middleware is not among the callers."""

    def outer(app: Any) -> Any:
        from starlette.middleware.base import BaseHTTPMiddleware

        async def dispatch(request: Any, call_next: Any) -> Any:
            return await call_next(request)

        async def answering(scope: Any, receive: Any, send: Any) -> None:
            # `BaseHTTPMiddleware` wants a response from what it wraps.
            await app(scope, receive, send)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        return server(BaseHTTPMiddleware(TrueIP(answering, POLICY), dispatch=dispatch))

    return outer


def uvicorn_believing_localhost(app: Any) -> Any:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    return ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")


def hypercorn_believing_anyone(app: Any) -> Any:
    proxy_fix = pytest.importorskip("hypercorn.middleware.proxy_fix")
    return proxy_fix.ProxyFixMiddleware(app, mode="legacy", trusted_hops=1)


@pytest.mark.parametrize("server", [uvicorn_believing_localhost, hypercorn_believing_anyone])
def test_under_a_servers_own_proxy_headers_behind_a_task_a_request_is_refused(server: Any) -> None:
    # On the old code the app got client ("6.6.6.6", 0) and a 200: the callers showed no
    # server middleware.
    seen, sent = served(behind_a_task(server), FORGED_LOCALLY, {"type": "http.request"})
    assert seen == {}
    assert sent[0]["status"] == 500
    assert b"rewrites scope['client']" in sent[1]["body"]
    assert b"6.6.6.6" not in sent[1]["body"]


def test_under_a_subclass_of_a_servers_proxy_headers_behind_a_task_a_request_is_refused() -> None:
    # An instance of a subclass refers to the subclass, not to uvicorn's class: on the old
    # code `gc.get_referrers` of uvicorn's class missed it, and the app got 6.6.6.6 and a 200.
    import gc

    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    class Logged(ProxyHeadersMiddleware):
        pass

    gc.collect()  # no instance of uvicorn's own class left over from another test
    seen, sent = served(behind_a_task(lambda app: Logged(app, trusted_hosts="127.0.0.1")), FORGED_LOCALLY,
                        {"type": "http.request"})
    assert seen == {}
    assert sent[0]["status"] == 500
    assert b"uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware" in sent[1]["body"]


def test_under_a_servers_proxy_headers_frozen_by_gc_freeze_behind_a_task_a_request_is_refused() -> None:
    # `gc.freeze()` after the server built its middleware (an app's startup, a pre-fork hook)
    # hid it from `gc.get_referrers`: on the old code the app got 6.6.6.6 and a 200.
    import gc

    def frozen(app: Any) -> Any:
        outer = uvicorn_believing_localhost(app)
        gc.freeze()
        return outer

    gc.collect()
    try:
        seen, sent = served(behind_a_task(frozen), FORGED_LOCALLY, {"type": "http.request"})
        assert gc.get_freeze_count() > 0, "still frozen after the look"
    finally:
        gc.unfreeze()
    assert seen == {}
    assert sent[0]["status"] == 500
    assert b"6.6.6.6" not in sent[1]["body"]


def test_under_a_servers_proxy_headers_that_believe_no_one_a_request_is_decided() -> None:
    # gunicorn's `--forwarded-allow-ips ""`, which its UvicornWorker hands to uvicorn's
    # middleware, and hypercorn's `trusted_hops=0`: they read nothing, so nothing is refused.
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    def no_one(app: Any) -> Any:
        return ProxyHeadersMiddleware(TrueIP(app, POLICY), trusted_hosts="")

    seen, sent = served(no_one, FORGED_LOCALLY, {"type": "http.request"})
    assert sent == []
    assert seen["client"] == ("127.0.0.1", 5000)
    assert [n for n, _ in seen["headers"]] == []
    proxy_fix = pytest.importorskip("hypercorn.middleware.proxy_fix")
    seen, sent = served(lambda app: proxy_fix.ProxyFixMiddleware(TrueIP(app, POLICY), trusted_hops=0),
                        FORGED_LOCALLY, {"type": "http.request"})
    assert (sent, seen["client"]) == ([], ("127.0.0.1", 5000))
