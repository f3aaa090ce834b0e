"""ASGI middleware (Starlette, FastAPI, Quart, Django's ASGI handler; uvicorn, hypercorn).

    from trueip import Policy
    from trueip.asgi import TrueIP

    app = TrueIP(app, Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted"))

For each HTTP or WebSocket connection it

* sets ``scope["client"]`` to ``(client, port)``, the port ``0`` when the source carried
  none (as uvicorn does), so ``request.client.host`` is the client;
* when the request came through a trusted hop and those hops said so, sets what
  ``origin`` names: ``scope["scheme"]`` (``"proto"``, the default; ``ws``/``wss`` for
  WebSockets), the ``host`` header (``"host"``; ``"port"`` replaces its port) and
  ``scope["root_path"]`` (``"prefix"``: ``X-Forwarded-Prefix``). Name only what your
  proxies write (overwrite): one that passes a client's ``X-Forwarded-Host`` through lets
  the client choose the host the app builds links with;
* removes from ``scope["headers"]`` every client-IP header when the request did not come
  through a trusted hop, and any spelled with underscores or other punctuation
  (``X_Forwarded_For``, ``X~Forwarded~For``) always: no honest proxy writes one, and
  frameworks that map headers to variables read it as the real header;
* keeps what it replaced in ``scope["trueip.original"]`` and the decision in
  ``scope["trueip.resolution"]``.

With ``verify=`` (a ``trueip.Verifier`` or key file paths) the client comes from the signed
header ``trueip serve`` writes instead, and ``scope["trueip.signature"]`` says
``"verified"`` or why not; ``on_unverified`` says whether such a request gets the peer
(default) or a 400/403 (see ``trueip._signed``).

On AWS Lambda under Mangum, the peer is the address the event says AWS's front end saw
(``scope["aws.event"]``, read as ``trueip.aws_lambda`` reads it), not ``scope["client"]``:
for an ALB event Mangum puts the whole ``X-Forwarded-For`` there. Use the Lambda presets
(``Policy.lambda_preset("alb")``, ...).

Zappa's ASGI handler keeps no event: it builds the scope from the event and writes
``scope["client"]`` as ``(<the second-to-last X-Forwarded-For entry>, 0)``, an entry the
client wrote under an HTTP API or a Function URL. So on AWS Lambda (``AWS_LAMBDA_FUNCTION_NAME``
set) a scope without an ``aws.event`` whose client has port ``0`` is no connection and gives no
peer: the app gets no client, and the ``trueip`` logger warns once. Run the app under Mangum.
The Lambda Web Adapter's scope comes from a real server with a real port and is decided as
any server's.

A Lambda preset decides from the event only: a scope without an ``aws.event`` of a kind
``trueip.aws_lambda`` reads (the same app under uvicorn, a test deployment) is decided as
if no proxy were trusted, so ``scope["client"]`` stays the peer, every client-IP header is
removed as from an untrusted peer, and the ``trueip`` logger warns once per policy
(``test_lambda.py::test_a_lambda_preset_without_mangums_event_trusts_no_header``).

Run the server without its own proxy-header handling (``uvicorn --no-proxy-headers``,
hypercorn without ``ProxyFixMiddleware``, ``daphne`` without ``--proxy-headers``, no Granian
``wrap_asgi_with_proxy_headers``, gunicorn's ``-k asgi`` with ``--forwarded-allow-ips ""`` and
no ``--proxy-protocol``): uvicorn's trusts ``X-Forwarded-For`` from
``--forwarded-allow-ips`` (127.0.0.1 by default, so any local process) and rewrites
``scope["client"]`` and ``scope["scheme"]`` before this middleware sees them, Granian's
wrapper does so for 127.0.0.1 by default, and hypercorn's and Daphne's believe them from
anyone; the peer here would already be a header's word. The middleware refuses to run under
any of them (``server_rewrite``): the server's lifespan startup fails with the fix in its
message, and each request gets a 500 naming it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Awaitable, Callable, Iterable, MutableMapping, Optional

from . import Policy, Verifier
from . import _signed
from ._trueip import _event_peer
from ._host import DEFAULT_ORIGIN, with_port

__all__ = ["TrueIP"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

_WEBSOCKET_SCHEME = {"http": "ws", "https": "wss"}

#: ``TrueIP._rewrite`` before the first call.
_UNCHECKED: Any = object()
#: ``TrueIP._rewrite`` after a first call found nothing.
_CHECKED_ONCE: Any = object()

#: Whether this process is an AWS Lambda function (the runtime sets the variable in every one).
_ON_LAMBDA = "AWS_LAMBDA_FUNCTION_NAME" in os.environ
_warned_invented = False


def _invented_client(client: Any) -> bool:
    """Whether ``client`` is what an ASGI adapter on Lambda wrote without a connection:
    port ``0`` (Zappa's, from X-Forwarded-For); a server's connection has a real port."""
    return isinstance(client, (tuple, list)) and len(client) == 2 and client[1] == 0


def _uvicorn_trusts_no_one(middleware: Any) -> bool:
    """Whether uvicorn's ``ProxyHeadersMiddleware`` believes no peer: ``--forwarded-allow-ips
    ""`` (what gunicorn users are told to pass, which the UvicornWorker hands on). Read from
    its private ``_TrustedHosts``; any other shape counts as believing someone."""
    hosts = getattr(middleware, "trusted_hosts", None)
    try:
        return (
            hosts.always_trust is False
            and not hosts.trusted_hosts
            and not hosts.trusted_networks
            and not (set(hosts.trusted_literals) - {""})
        )
    except (AttributeError, TypeError):
        return False


def _hypercorn_trusts_no_hop(middleware: Any) -> bool:
    """Whether hypercorn's ``ProxyFixMiddleware`` reads no header (``trusted_hops=0``)."""
    return getattr(middleware, "trusted_hops", None) == 0


def _waitress_trusts_no_proxy(adjustments: Any) -> bool:
    """Whether waitress's settings (``waitress.adjustments.Adjustments``, kept by its server)
    name no ``--trusted-proxy``: then its proxy-header wrapper only removes X-Forwarded-* and
    ``Forwarded`` from every request (``--clear-untrusted-proxy-headers``, the default)."""
    return not getattr(adjustments, "trusted_proxy", None)


def _daphne_reads_no_header(server: Any) -> bool:
    """Whether Daphne's server (``daphne.server.Server``) runs without ``--proxy-headers``."""
    return not getattr(server, "proxy_forwarded_address_header", None)


def _granian_trusts_no_one(forwarders: Any) -> bool:
    """Whether the hosts one of Granian's ``wrap_asgi_with_proxy_headers`` or
    ``wrap_wsgi_with_proxy_headers`` believes (its private ``_Forwarders``) are none
    (``trusted_hosts=[]`` or ``""``, which it reads as the name ``""``, no peer's). Any other
    shape counts as believing someone."""
    try:
        return (
            forwarders.always_trust is False
            and not forwarders.hosts
            and not forwarders.networks
            and not (set(forwarders.literals) - {""})
        )
    except (AttributeError, TypeError):
        return False


def _gunicorn_asgi_reads_nothing(worker: Any) -> bool:
    """Whether gunicorn's own ASGI worker (``-k asgi``, ``gunicorn.workers.gasgi.ASGIWorker``)
    takes neither the client from a PROXY header (``--proxy-protocol``, from any peer in
    ``--proxy-allow-from``) nor the scheme from X-Forwarded-Proto (any peer in
    ``--forwarded-allow-ips``, 127.0.0.1 and ::1 by default). Any other shape counts as
    reading them."""
    cfg = getattr(worker, "cfg", None)
    try:
        return cfg.proxy_protocol in ("off", None, False) and not any(cfg.forwarded_allow_ips)
    except (AttributeError, TypeError):
        return False


#: The servers' own proxy-header handling: (module, class, whether an instance reads nothing,
#: what to do instead). Each rewrites the client (``scope["client"]``, ``REMOTE_ADDR``) and the
#: scheme from X-Forwarded-For and -Proto before the app runs, and keeps no trace of the
#: connection's own: uvicorn's middleware (on by default) for a peer in
#: ``--forwarded-allow-ips`` (127.0.0.1 and ::1 by default: any local process, an SSRF), taking
#: any entry, ``evil`` or a port it names included; hypercorn's middleware for any peer;
#: waitress under ``--trusted-proxy`` (its settings, which its server keeps) for that peer or,
#: with ``*``, any; Daphne under ``--proxy-headers`` (its server) for any peer; Granian's
#: wrappers (the hosts each keeps) for 127.0.0.1 by default; gunicorn's own ASGI worker (not
#: its WSGI ones, whose socket ``trueip.wsgi.apply`` reads) for a PROXY header's source and
#: X-Forwarded-Proto of the peers it trusts, 127.0.0.1 by default. For a middleware class its
#: ``__call__`` is also looked for among the callers (``server_rewrite``).
_SERVER_REWRITES = (
    (
        "uvicorn.middleware.proxy_headers",
        "ProxyHeadersMiddleware",
        _uvicorn_trusts_no_one,
        "run uvicorn with --no-proxy-headers (uvicorn.run(app, proxy_headers=False); under gunicorn's "
        'UvicornWorker, --forwarded-allow-ips ""), and add no ProxyHeadersMiddleware to the app',
    ),
    (
        "hypercorn.middleware.proxy_fix",
        "ProxyFixMiddleware",
        _hypercorn_trusts_no_hop,
        "remove hypercorn's ProxyFixMiddleware",
    ),
    (
        "waitress.adjustments",
        "Adjustments",
        _waitress_trusts_no_proxy,
        "run waitress without --trusted-proxy (serve(app) without trusted_proxy=)",
    ),
    (
        "daphne.server",
        "Server",
        _daphne_reads_no_header,
        "run daphne without --proxy-headers",
    ),
    (
        "granian.utils.proxies",
        "_Forwarders",
        _granian_trusts_no_one,
        "remove Granian's wrap_asgi_with_proxy_headers / wrap_wsgi_with_proxy_headers",
    ),
    (
        "gunicorn.workers.gasgi",
        "ASGIWorker",
        _gunicorn_asgi_reads_nothing,
        'run gunicorn\'s ASGI worker (-k asgi) without --proxy-protocol and with --forwarded-allow-ips ""; '
        "the policy's proxy_protocol_from and origin decide what those would",
    ),
)

#: How many callers ``server_rewrite`` looks through: a framework's stack of middlewares
#: between the server and this one is a few dozen at most.
_CALLERS = 64


def server_rewrite(frame: Any) -> Optional[str]:
    """What to fix when a server's own proxy-header middleware (``_SERVER_REWRITES``) that
    believes someone is around the ASGI middleware, or ``None``: ``frame`` (the caller of the
    middleware) or one of its callers is one, or, where a task between them hides the
    callers, one is alive in this process (``rewrite_around``). The scope it hands on carries
    a header's word as the peer, and nothing in the scope says so: the running code does. Only
    middlewares already imported are looked for, so the check imports nothing."""
    found = {}
    for module, name, inert, fix in _SERVER_REWRITES:
        call = getattr(getattr(sys.modules.get(module), name, None), "__call__", None)
        code = getattr(call, "__code__", None)
        if code is not None:
            found[code] = (inert, _rewrite_message(module, name, "trueip.asgi.TrueIP", fix))
    for _ in range(_CALLERS):
        if frame is None or not found:
            break
        entry = found.get(frame.f_code)
        if entry is not None:
            inert, fix = entry
            return None if inert(frame.f_locals.get("self")) else fix
        frame = frame.f_back
    # Not among the callers: Starlette's `BaseHTTPMiddleware` (every `@app.middleware("http")`)
    # runs the app inside it in a task of its own, and a mounted app sees no lifespan, so
    # uvicorn's defaults made a local `X-Forwarded-For: 6.6.6.6` its client unseen; a server
    # that rewrites the client itself (Daphne) or a wrapper that returns the app's coroutine
    # (Granian's) is no caller at all.
    return rewrite_around()


_THAW = threading.Lock()


def rewrite_around() -> Optional[str]:
    """What to fix when a server's own proxy-header handling (``_SERVER_REWRITES``) that
    believes someone is alive in this process, or ``None``. What it serves, however deep, runs
    with a header's word as the peer, and the trueip middleware that asks is in it or beside
    it: an app that runs the WSGI or Django middleware in another thread or task (uvicorn's
    WSGI bridge, Django's ASGI handler, channels' router), Starlette's ``BaseHTTPMiddleware``
    or a mount between the server and the ASGI middleware, the server's middleware added by
    the app inside trueip's, or a server that rewrites the client before it calls the app
    (waitress, Daphne). It is found among the live objects (``gc.get_referrers`` of its class
    and of every subclass of it, which an instance of a subclass refers to instead: one pass over
    the heap for all of them, once per middleware; each server keeps it for as long as it
    serves). Only classes already imported are looked for."""
    rows: dict = {}
    for row in _SERVER_REWRITES:
        cls = getattr(sys.modules.get(row[0]), row[1], None)
        if isinstance(cls, type):
            for each in _and_subclasses(cls):
                rows.setdefault(each, row)
    for found in live_instances(rows):
        row = rows[type(found)]
        if not row[2](found):
            module, name, _, fix = row
            inner = getattr(found, "app", None)
            wrapped = None if inner is None else f"{type(inner).__module__}.{type(inner).__qualname__}"
            return _rewrite_message(module, name, wrapped, fix)
    return None


def live_instances(classes: Iterable[type]) -> list:
    """The live instances of ``classes`` (each exactly of one of them: pass the subclasses
    too), found in one pass over the heap: ``gc.get_referrers`` of the classes, which every
    instance of a class written in Python refers to."""
    import gc

    classes = tuple(classes)
    if not classes:
        return []
    # `gc.freeze()` (before a fork, for copy-on-write) hides what it froze from
    # `get_referrers`: a server's state built before it was not found. Thawed for the one look
    # (each a move of a list's two ends, no object touched), then frozen again, with what the
    # first requests allocated meanwhile: kept for good, once.
    # One look at a time: a thread that read no freeze while another had thawed the heap would
    # look after it froze it again.
    with _THAW:
        frozen = gc.get_freeze_count()
        if frozen:
            gc.unfreeze()
        try:
            referrers = gc.get_referrers(*classes)
        finally:
            if frozen:
                gc.freeze()
    return [found for found in referrers if type(found) in classes]


def _and_subclasses(cls: type) -> list:
    """``cls`` and every class derived from it, however indirectly."""
    found = [cls]
    for each in found:
        found.extend(sub for sub in type.__subclasses__(each) if sub not in found)
    return found


def _rewrite_message(module: str, name: str, wrapped: Optional[str], fix: str) -> str:
    what = f"wraps {wrapped} and rewrites scope['client']" if wrapped else "rewrites the client"
    return (f"{module}.{name} {what} and the scheme from X-Forwarded-For "
            f"and X-Forwarded-Proto before trueip decides, so the peer may be a header's word: {fix}")


async def _refuse_rewritten(
    fix: str, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> None:
    """Answers ``scope`` under a server that rewrites the client (``server_rewrite``): the
    lifespan's startup fails, so the server stops with ``fix`` in its log; an HTTP request
    gets a 500 naming it; a WebSocket is closed before it is accepted."""
    kind = scope.get("type")
    if kind == "lifespan":
        if (await receive()).get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": f"trueip: {fix}"})
    elif kind == "websocket":
        await send({"type": "websocket.close", "code": 1011})
    elif kind == "http":
        body = f"trueip: this request's client cannot be decided: {fix}\n".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def scope_peer(scope: Scope, default: Any) -> Any:
    """``scope_event_peer(scope, default)[0]``."""
    return scope_event_peer(scope, default)[0]


def scope_event_peer(scope: Scope, default: Any) -> tuple[Any, Optional[dict[str, Any]]]:
    """The peer of a request whose ASGI scope is ``scope``, and the Lambda event that
    named it, or ``None`` (a policy from ``Policy.lambda_preset`` decides from that event
    only, see the module doc).

    The peer of a request whose ASGI scope is ``scope``: ``default`` (the server's
    ``scope["client"]``), except on AWS Lambda under Mangum, which makes the scope of the
    event and keeps it in ``scope["aws.event"]``: its client is not the address AWS's front
    end saw (for an ALB, the whole X-Forwarded-For, client-written entries and all), so the
    event says, as ``trueip.aws_lambda`` reads it (``None``, no peer, for an ALB or API
    Gateway event trueip cannot read). An event of another kind (Lambda@Edge: Mangum's
    client is CloudFront's ``clientIp``) keeps ``default``. On Lambda, a scope with no event
    and a client of port ``0`` (Zappa's ASGI handler) gives ``None``: that client is an
    X-Forwarded-For entry, not a connection.

    uvicorn on a Unix socket (``--uds``) gives no client and the server as ``(path,
    None)``: that peer is a Unix socket (``""``, as gunicorn's ``REMOTE_ADDR`` on one), which
    only a policy trusting ``unix`` believes."""
    event = scope.get("aws.event")
    if isinstance(event, dict):
        known, peer = _event_peer(event)
        if known:
            return peer, event if peer is not None else None
    elif _ON_LAMBDA and _invented_client(scope.get("client")):
        global _warned_invented
        if not _warned_invented:
            _warned_invented = True
            logging.getLogger("trueip").warning(
                "on AWS Lambda, an ASGI scope with no aws.event and a client of port 0 (Zappa's ASGI handler "
                "writes it from X-Forwarded-For) gives no client; run the app under Mangum"
            )
        return None, None
    if scope.get("client") is None:
        server = scope.get("server")
        if isinstance(server, (tuple, list)) and len(server) == 2 and isinstance(server[0], str) and server[1] is None:
            return "", None
    return default, None


def apply(
    policy: Policy, scope: Scope, origin: frozenset[str] = DEFAULT_ORIGIN, verifier: Optional[Verifier] = None
) -> Scope:
    """Returns a copy of ``scope`` rewritten for ``policy``, applying the ``origin`` parts
    trusted hops reported (the caller's scope is left as it was, as ASGI asks of
    middleware)."""
    client = scope.get("client")
    headers = scope.get("headers") or []
    scope = dict(scope)
    original: dict[str, Any] = {"client": client, "scheme": scope.get("scheme")}
    scope["trueip.original"] = original
    if not isinstance(headers, list):
        # Any iterable of pairs (ASGI): read once, so the app gets the lines read.
        headers = list(headers)
        scope["headers"] = headers
    # A client that is not an address (a Unix socket, a test client) gives no decision
    # and trusts no hop.
    if client is not None and "aws.event" not in scope and not _ON_LAMBDA:
        # What scope_event_peer answers for such a scope, without the call (every request).
        peer, event = client, None
    else:
        peer, event = scope_event_peer(scope, client)
    signed = _signed.asgi_request(verifier, scope, headers) if verifier is not None else None
    # Positional: keyword arguments cost the extension about 100 ns each per request.
    resolution, reported, kept, outcome = policy._resolve_request(
        peer,
        headers,
        True,  # withhold
        False,  # environ
        scope.get("query_string"),  # query
        verifier,
        signed,
        event,
    )
    scope["trueip.resolution"] = resolution
    if verifier is not None:
        scope["trueip.signature"] = outcome
    if kept is not None:
        original["headers"] = headers
        scope["headers"] = kept
    if resolution is None:
        if peer is None:
            # Under Mangum, an ALB or API Gateway event trueip cannot read: its client is
            # not the peer (for an ALB, the whole X-Forwarded-For), so the app gets none, as
            # the WSGI middleware empties REMOTE_ADDR.
            scope["client"] = None
        return scope
    scope["client"] = (resolution.ip_str, resolution.port or 0)
    if reported is not None:
        scheme, host, port, prefix = reported
        if scheme is not None and "proto" in origin:
            scope["scheme"] = _WEBSOCKET_SCHEME[scheme] if scope.get("type") == "websocket" else scheme
        host = host if "host" in origin else None
        port = port if "port" in origin else None
        if host is not None or port is not None:
            original.setdefault("headers", headers)
            current = next((v for (n, v) in scope["headers"] if n.lower() == b"host"), None)
            if host is None and current is not None:
                host = current.decode("latin-1")
            if host is not None:
                if port is not None:
                    host = with_port(host, port)
                scope["headers"] = [(n, v) for (n, v) in scope["headers"] if n.lower() != b"host"]
                scope["headers"].append((b"host", host.encode("latin-1")))
        if prefix is not None and "prefix" in origin:
            original["root_path"] = scope.get("root_path", "")
            scope["root_path"] = prefix
    return scope


class TrueIP(_signed.Configured):
    """ASGI middleware that applies ``policy`` to every HTTP and WebSocket scope.

    ``origin``: which of ``"proto"``, ``"host"``, ``"port"``, ``"prefix"`` trusted hops may
    set; ``("proto",)`` by default, as ProxyFix."""

    def __init__(
        self,
        app: ASGIApp,
        policy: Policy,
        *,
        origin: Iterable[str] = DEFAULT_ORIGIN,
        verify: Optional[_signed.VerifyArg] = None,
        on_unverified: str = "peer",
    ) -> None:
        super().__init__(app, policy, origin=origin, verify=verify, on_unverified=on_unverified)
        # What `server_rewrite` found around the first two calls: the server does not change.
        self._rewrite: Any = _UNCHECKED

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        rewrite = self._rewrite
        if rewrite is _UNCHECKED or rewrite is _CHECKED_ONCE:
            found = server_rewrite(sys._getframe(1))
            # The first call's `None` is asked again on the second: an app that builds its
            # middlewares on its first call (Starlette) had not yet built the server's
            # middleware it adds inside this one.
            self._rewrite = found if found is not None or rewrite is _CHECKED_ONCE else _CHECKED_ONCE
            if found is not None:
                logging.getLogger("trueip").error("trueip: %s", found)
            rewrite = found
        if rewrite is not None:
            await _refuse_rewritten(rewrite, scope, receive, send)
            return
        if scope.get("type") in ("http", "websocket"):
            scope = apply(self.policy, scope, self.origin, self.verifier)
            outcome = scope.get("trueip.signature")
            if self.refuse and outcome != "verified":
                status, body = _signed.refusal(outcome or "missing")
                if scope.get("type") == "websocket":
                    # Before accept: the server answers the handshake with 403.
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
