"""WSGI middleware: the client address, and what the client asked for, from trusted hops only.

    from trueip import Policy
    from trueip.wsgi import TrueIP

    app.wsgi_app = TrueIP(app.wsgi_app, Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted"))

For each request it

* sets ``REMOTE_ADDR`` to the client the policy decided, and ``REMOTE_PORT`` to the
  client's port when the source carried one (and removes it when the source did not: the
  proxy's port is not the client's);
* when the request came through a trusted hop and those hops said so, sets what
  ``origin`` names: ``wsgi.url_scheme`` (``"proto"``: ``X-Forwarded-Proto`` or
  ``Forwarded: proto=``; the default), ``HTTP_HOST`` and ``SERVER_NAME``/``SERVER_PORT``
  (``"host"``: ``X-Forwarded-Host``, ``Forwarded: host=``), the port in both (``"port"``:
  ``X-Forwarded-Port``) and ``SCRIPT_NAME`` (``"prefix"``: ``X-Forwarded-Prefix``). Name only
  what your proxies write (overwrite): one that passes a client's ``X-Forwarded-Host``
  through lets the client choose the host the app builds links with;
* when it did not come through a trusted hop, removes every client-IP header from the
  environ (the core's table of them, ``trueip.forwarding_header_names()``, and any header
  the policy reads a client from, such as a ``header:X-Client-Addr`` strategy's): the
  client wrote them, and an app or library reading ``HTTP_X_FORWARDED_FOR`` must not see
  them. When it did, removes the client addresses the decision did not read
  (``HTTP_TRUE_CLIENT_IP`` under an ``X-Forwarded-For`` policy, a ``header:NAME``
  strategy's header when another strategy decided, ...) and the origin secret: a trusted proxy relays a client's ``True-Client-IP`` as readily as it writes
  one, and only ``REMOTE_ADDR`` was checked;
* keeps the values it replaced or removed in ``environ["trueip.original"]`` and the
  decision in ``environ["trueip.resolution"]``.

With ``verify=`` (a ``trueip.Verifier`` or key file paths) the client comes from the signed
header ``trueip serve`` writes instead, and ``environ["trueip.signature"]`` says
``"verified"`` or why not; ``on_unverified`` says whether such a request gets the peer
(default) or a 400/403 (see ``trueip._signed``).

On AWS Lambda under a WSGI adapter that keeps its event in the environ (serverless-wsgi
``serverless.event``, apig-wsgi ``apig_wsgi.full_event``, Zappa ``lambda.event``, aws-wsgi
``awsgi.event``), the event decides, as ``trueip.aws_lambda`` reads it: its peer (the address
AWS's front end saw) and its own headers, not the adapter's ``REMOTE_ADDR`` and ``HTTP_*``
keys. apig-wsgi and aws-wsgi put the first ``X-Forwarded-For`` entry in ``REMOTE_ADDR`` for
ALB and REST API events, Zappa the second to last: the client writes those. An ALB or API
Gateway event trueip cannot read gives no decision and an empty ``REMOTE_ADDR``. Use the
Lambda presets (``Policy.lambda_preset("alb")``, ...). The client-IP headers that pass a
trusted hop carry the event's values, not the adapter's keys: every adapter folds a
client's ``X_Forwarded_For`` (an ALB passes it on unless
``routing.http.drop_invalid_header_fields.enabled``) into ``HTTP_X_FORWARDED_FOR``, over
the header the ALB appended to. A key whose header the event does not carry is removed.

A Lambda preset decides from the event only: an environ without an adapter's event of a
kind trueip reads (the same app under ``flask run`` or gunicorn, a test deployment) is
decided as if no proxy were trusted, so ``REMOTE_ADDR`` stays the peer, every client-IP
header is removed as from an untrusted peer, and the ``trueip`` logger warns once per
policy (``test_wsgi_lambda.py::test_a_lambda_preset_without_an_event_trusts_no_header``).

Werkzeug's ``ProxyFix`` wrapped around this middleware (``ProxyFix(TrueIP(app, policy))``,
or ``app.wsgi_app = ProxyFix(app.wsgi_app)`` after ``TrueIP``) would hand it the last
``X-Forwarded-For`` entry as ``REMOTE_ADDR``, whoever sent it: its rewrite is undone first
(it keeps what it replaced in ``environ["werkzeug.proxy_fix.orig"]``), so the policy decides
from the connection, and the ``trueip`` logger warns once (not two ``ProxyFix`` around it: the
inner one keeps what the outer one had already replaced). Put ``TrueIP`` outside every other
wrapper and drop ``ProxyFix``: the policy's ``trust`` and ``origin`` replace it.

Under uvicorn's ``--interface wsgi`` run uvicorn with ``--no-proxy-headers``: its own proxy
headers (on by default, believing 127.0.0.1) rewrite the scope's client from
``X-Forwarded-For`` before its WSGI bridge builds ``REMOTE_ADDR``. When they believe anyone,
the middleware answers every request with a 500 naming the fix and logs it once
(``rewritten``, ``trueip.asgi.rewrite_around``).

waitress under ``--trusted-proxy`` (``*``: anyone) and Granian's ``wrap_wsgi_with_proxy_headers``
(127.0.0.1 by default) rewrite ``REMOTE_ADDR`` and ``wsgi.url_scheme`` from ``X-Forwarded-For``
and ``-Proto`` before the app runs: the middleware refuses the same way. Behind a proxy, run
waitress with ``--no-clear-untrusted-proxy-headers``: by default it removes ``X-Forwarded-For``
and ``Forwarded`` from every request, so every client is the proxy.

Under gunicorn's ``--proxy-protocol``, ``REMOTE_ADDR`` is the source a PROXY header named,
which gunicorn reads from any peer in ``--proxy-allow-from`` (127.0.0.1 by default): the
peer is gunicorn's socket's, and the source is believed only from a peer in the policy's
``proxy_protocol_from``, as ``trueip serve`` believes a PROXY header.

gunicorn sets ``wsgi.url_scheme`` from ``X-Forwarded-Proto``, ``-Protocol`` and ``-Ssl``
itself for a peer in ``--forwarded-allow-ips`` (127.0.0.1 by default, so any local process):
under gunicorn a request that came through no trusted hop gets its connection's scheme (TLS
or not, from ``environ["gunicorn.socket"]``), and so does one whose ``origin`` leaves out
``"proto"``. Through a trusted hop under ``"proto"`` gunicorn's scheme is kept unless the hop
reported one (a proxy that says ``X-Forwarded-Ssl: on`` alone); run gunicorn with
``--forwarded-allow-ips ""`` so that only the policy's hops and ``origin`` decide it. The same
goes for the ``SCRIPT_NAME`` gunicorn takes from a ``SCRIPT_NAME`` header of such a peer
(``--forwarder-headers``): its own (the process environment's) is put back, with the rest of
the path in ``PATH_INFO``, unless a trusted hop's request and ``origin`` names ``"prefix"``.

WSGI servers spell ``X_Forwarded_For`` and ``X-Forwarded-For`` the same
(``HTTP_X_FORWARDED_FOR``), so a header sent with underscores cannot be told apart here.
From an untrusted peer both are removed. Behind a trusted proxy, the proxy or the server must
drop underscore headers (nginx does unless ``underscores_in_headers on``; gunicorn 22 and
later, waitress and Werkzeug's and Django's development servers drop them), or the client
could write the header the proxy appends to. Under a server that merges them (Granian's WSGI
interface, Twisted's, cheroot; the ASGI-to-WSGI bridges: uvicorn's ``--interface wsgi``,
hypercorn's ``wsgi:``, Starlette's and a2wsgi's ``WSGIMiddleware``; gunicorn under ``--header-map
dangerous`` or with such a name in ``--forwarder-headers``: ``merged_spellings``) a request
that came through a trusted hop with a client-IP header gets a 500 naming the fix, and the
``trueip`` logger says it once. Under a bridge, wrap the ASGI side with ``trueip.asgi.TrueIP``
instead: it withholds such lines before the bridge folds them.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote_to_bytes

from . import Policy, Verifier, forwarding_header_names
from . import _signed
from . import asgi as _asgi
from ._host import DEFAULT_ORIGIN, split_host, with_port
from ._trueip import _event_peer

__all__ = ["TrueIP"]

#: The environ keys of the core's table of client-IP headers: ``HTTP_X_FORWARDED_FOR``,
#: ... The middleware removes ``policy._withheld_environ_keys(resolution)``: from an
#: untrusted peer these, and the headers the policy itself reads a client from (a
#: ``header:NAME`` strategy's) or its origin secret; from a trusted hop those of them the
#: decision did not read an address from (its list headers, the header of the
#: ``header:NAME`` strategy that decided; not a Function URL's ``X-Forwarded-For``, flagged
#: ``x_forwarded_for_not_kept``).
FORWARDING_KEYS = frozenset("HTTP_" + n.upper().replace("-", "_") for n in forwarding_header_names())

#: Keys whose received values are kept in ``environ["trueip.original"]``.
_ORIGINAL_KEYS = (
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "HTTP_HOST",
    "SERVER_NAME",
    "SERVER_PORT",
    "SCRIPT_NAME",
)

_DEFAULT_PORT = {"http": "80", "https": "443"}

#: ``apply``'s default peer: the environ's ``REMOTE_ADDR``.
_REMOTE_ADDR: Any = object()

#: Where the WSGI adapters for AWS Lambda keep the event they built the environ from:
#: serverless-wsgi, apig-wsgi, Zappa, aws-wsgi (awsgi).
LAMBDA_EVENT_KEYS = ("serverless.event", "apig_wsgi.full_event", "lambda.event", "awsgi.event")


def lambda_event(environ: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The AWS Lambda event a WSGI adapter built ``environ`` from (``LAMBDA_EVENT_KEYS``),
    or ``None``. Its ``REMOTE_ADDR`` is not the address AWS's front end saw (see the module
    doc): serverless-wsgi's is ``""`` for an ALB event, which has no
    ``requestContext.identity``; the others' an ``X-Forwarded-For`` entry."""
    # Off Lambda (nearly every request) the keys are absent: four lookups in C, not a loop.
    if environ.keys().isdisjoint(LAMBDA_EVENT_KEYS):
        return None
    for key in LAMBDA_EVENT_KEYS:
        event = environ.get(key)
        if isinstance(event, dict):
            return event
    return None


#: Where Werkzeug's ``ProxyFix`` keeps the values it replaced: ``REMOTE_ADDR``,
#: ``wsgi.url_scheme``, ``HTTP_HOST``, ``SERVER_NAME``, ``SERVER_PORT``, ``SCRIPT_NAME``
#: (``None`` for a key that was absent).
PROXY_FIX_ORIGINAL = "werkzeug.proxy_fix.orig"

_warned_proxy_fix = False


def _undo_proxy_fix(environ: dict[str, Any]) -> None:
    """Puts back what a ``ProxyFix`` that ran before this middleware replaced (see the module
    doc): its ``REMOTE_ADDR`` is the last ``X-Forwarded-For`` entry, which anyone who reaches
    the app writes. Only ``ProxyFix`` sets the key: a header cannot, every header's key
    starts with ``HTTP_``."""
    fixed = environ.pop(PROXY_FIX_ORIGINAL)
    if not isinstance(fixed, dict):
        return
    global _warned_proxy_fix
    if not _warned_proxy_fix:
        _warned_proxy_fix = True
        logging.getLogger("trueip").warning(
            "Werkzeug's ProxyFix runs before trueip.wsgi.TrueIP and rewrote REMOTE_ADDR from X-Forwarded-For; "
            "trueip undid it and decides from the connection. Remove ProxyFix: the policy's trust and origin replace it"
        )
    for key, value in fixed.items():
        if key not in _ORIGINAL_KEYS:
            continue
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value


#: The source of the PROXY header gunicorn read on each connection still open, by its socket:
#: gunicorn's gthread worker reads the header on a keep-alive connection's first request only,
#: and gives the later ones the balancer's address as ``REMOTE_ADDR`` and no ``PROXY_PROTOCOL``.
_PROXY_SOURCES: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _gunicorn_proxy(environ: dict[str, Any]) -> Optional[tuple[Any, Any]]:
    """The peer and the PROXY header's source under gunicorn's ``--proxy-protocol``, whose
    ``REMOTE_ADDR`` and ``REMOTE_PORT`` are the source the header named, believed from any
    peer in gunicorn's ``--proxy-allow-from`` (127.0.0.1 and ::1 by default: any local
    process): the connection's peer only gunicorn's socket still knows. The policy believes
    the source only from a peer in its ``proxy_protocol_from``, as ``trueip serve`` does.
    A later request on the connection gets the source its first request had
    (``_PROXY_SOURCES``): decided as the balancer, each client behind an NLB escaped its own
    address by sending a second request. ``None`` when gunicorn read no header on the
    connection; ``(None, None)`` (no decision) when the socket cannot say; a Unix socket's peer
    is ``""``."""
    sock = environ.get("gunicorn.socket")
    try:
        if "PROXY_PROTOCOL" in environ:
            source: Any = environ.get("REMOTE_ADDR")
            port = environ.get("REMOTE_PORT")
            if isinstance(port, str) and port.isdigit():
                source = (source, int(port))
            _PROXY_SOURCES[sock] = source
        elif sock is None or (source := _PROXY_SOURCES.get(sock)) is None:
            return None
    except TypeError:
        # A socket that takes no weak reference: a later request cannot be told apart.
        if "PROXY_PROTOCOL" not in environ:
            return None
    try:
        name = sock.getpeername()  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return None, None
    peer = (name[0], name[1]) if isinstance(name, tuple) and len(name) >= 2 else ""
    return peer, source


def _undo_gunicorn_script_name(environ: dict[str, Any], original: dict[str, Any]) -> None:
    """Puts back gunicorn's own ``SCRIPT_NAME`` (the process environment's) where it took one
    from a ``SCRIPT_NAME`` header, which it does for a peer in ``--forwarded-allow-ips``
    (``--forwarder-headers``; 127.0.0.1 by default: any local process) and strips from
    ``PATH_INFO``: that peer chose the prefix the app routes and builds links under. The
    stripped part goes back at the head of ``PATH_INFO``, decoded as gunicorn decodes it."""
    own = os.environ.get("SCRIPT_NAME", "")
    taken = environ.get("SCRIPT_NAME", "")
    if taken == own or not isinstance(taken, str) or not isinstance(environ.get("PATH_INFO", ""), str):
        return
    moved = taken[len(own):] if taken.startswith(own) else taken
    original["PATH_INFO"] = environ.get("PATH_INFO", "")
    environ["PATH_INFO"] = unquote_to_bytes(moved).decode("latin-1") + original["PATH_INFO"]
    environ["SCRIPT_NAME"] = own


def apply(
    policy: Policy,
    environ: dict[str, Any],
    origin: frozenset[str] = DEFAULT_ORIGIN,
    verifier: Optional[Verifier] = None,
    peer: Any = _REMOTE_ADDR,
    lines: Optional[list[Any]] = None,
    scope_event: Optional[dict[str, Any]] = None,
) -> Any:
    """Rewrites ``environ`` in place for ``policy``, applying the ``origin`` parts trusted
    hops reported; returns the ``Resolution``, or ``None`` when the peer is not an address
    (a Unix socket): then only the client-IP headers are removed, since no hop is trusted.
    With ``verifier``, the client is the signed header's (see the module doc).
    ``peer``: the connection's peer when it is not ``REMOTE_ADDR`` (Django under Mangum).
    By default ``REMOTE_ADDR``, except under a WSGI adapter on AWS Lambda
    (``lambda_event``): then the event's peer and headers decide, as ``resolve_event``
    does, when it is of a kind trueip reads (an ALB, API Gateway or Function URL event;
    serverless-wsgi's non-proxy integration event is not, and its mapping template chose
    ``REMOTE_ADDR``). An event that names no peer, or a ``peer`` of ``None``, gives no
    decision and empties ``REMOTE_ADDR``: what is there is not the peer (apig-wsgi's
    ``"127.0.0.1"`` for an event without ``X-Forwarded-For``, Mangum's whole
    ``X-Forwarded-For`` for Django).
    ``scope_event``: the Lambda event that named ``peer`` (Django under Mangum,
    ``trueip.asgi.scope_event_peer``): it decides, as ``resolve_event`` does, and ``lines``
    are only withheld from. Without it, or an adapter's event, a policy from
    ``Policy.lambda_preset`` trusts no hop (see the module doc).
    ``lines``: the ASGI header lines ``environ`` was built from (Django's ASGI handler): they
    decide, and the client-IP keys of ``environ`` become the lines that pass (joined by
    ``,``, as Django joins them), since the handler may have folded a line spelled
    ``X_Forwarded_For`` into ``HTTP_X_FORWARDED_FOR`` (Django before 5.2.13 and 6.0.4).
    When they decide, ``lines`` is left holding the lines that pass (under a Lambda event it
    is left as it was)."""
    if PROXY_FIX_ORIGINAL in environ:
        _undo_proxy_fix(environ)
    original: dict[str, Any] = {k: environ[k] for k in _ORIGINAL_KEYS if k in environ}
    environ["trueip.original"] = original
    event = lambda_event(environ) if peer is _REMOTE_ADDR else None
    if event is not None:
        known, event_peer = _event_peer(event)
        if known:
            peer = event_peer
        else:
            event = None
    proxy_source = None
    if peer is _REMOTE_ADDR and event is None and ("PROXY_PROTOCOL" in environ or _PROXY_SOURCES):
        proxied = _gunicorn_proxy(environ)
        if proxied is not None:
            peer, proxy_source = proxied
    signed = _signed.wsgi_request(verifier, environ) if verifier is not None else None
    from_lines = lines is not None and event is None
    # Positional: keyword arguments cost the extension about 100 ns each per request.
    resolution, reported, relayed, outcome = policy._resolve_request(
        environ.get("REMOTE_ADDR") if peer is _REMOTE_ADDR else peer,  # peer
        lines if from_lines else environ,  # headers
        from_lines,  # withhold
        not from_lines,  # environ
        environ.get("QUERY_STRING") if from_lines else None,  # query
        verifier,
        signed,
        event if event is not None else scope_event,
        proxy_source,
    )
    if from_lines:
        if relayed is not None:
            # The caller's list becomes the lines that pass (Django's `request.scope`).
            lines[:] = relayed
        relayed = _folded(policy, lines)
    environ["trueip.resolution"] = resolution
    if verifier is not None:
        environ["trueip.signature"] = outcome
    sock = environ.get("gunicorn.socket")
    if sock is not None and (resolution is None or not resolution.trusted_hop or "proto" not in origin):
        # gunicorn sets the scheme from X-Forwarded-Proto, -Protocol or -Ssl itself for a peer
        # in --forwarded-allow-ips (127.0.0.1 by default: any local process). A request that
        # came through no trusted hop, or whose hops `origin` takes no scheme from, has its
        # connection's scheme: its socket's (a trusted proxy that writes no scheme header
        # passes a client's on).
        environ["wsgi.url_scheme"] = "https" if callable(getattr(sock, "cipher", None)) else "http"
    if sock is not None and (resolution is None or not resolution.trusted_hop or "prefix" not in origin):
        _undo_gunicorn_script_name(environ, original)
    withheld = policy._withheld_environ_keys(resolution)
    # Usually none is there (a trusted hop's list header is not withheld): the disjointness
    # check costs a third of building the intersection.
    if not withheld.isdisjoint(environ):
        for key in withheld.intersection(environ):
            original[key] = environ.pop(key)
    # Under an event, or with the lines, the client-IP headers that pass carry their values,
    # not the keys an adapter or handler folded a client's `x_forwarded_for` into.
    for key, value in relayed or ():
        if environ.get(key) != value:
            if key in environ:
                original[key] = environ.pop(key)
            if value is not None:
                environ[key] = value
    if resolution is None:
        if peer is None and environ.get("REMOTE_ADDR"):
            environ["REMOTE_ADDR"] = ""
        return None
    environ["REMOTE_ADDR"] = resolution.ip_str
    port = resolution.port
    if port is not None:
        environ["REMOTE_PORT"] = str(port)
    elif resolution.trusted_hops and "REMOTE_PORT" in environ:
        del environ["REMOTE_PORT"]
    if reported is not None:
        scheme, host, forwarded_port, prefix = reported
        if scheme is not None and "proto" in origin:
            environ["wsgi.url_scheme"] = scheme
        if host is not None and "host" in origin:
            environ["HTTP_HOST"] = host
            name, host_port = split_host(host)
            environ["SERVER_NAME"] = name
            environ["SERVER_PORT"] = host_port or _DEFAULT_PORT.get(environ.get("wsgi.url_scheme", "http"), "80")
        if forwarded_port is not None and "port" in origin:
            # As ProxyFix's x_port: the port replaces the one in the host.
            environ["HTTP_HOST"] = with_port(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""), forwarded_port)
            environ["SERVER_PORT"] = str(forwarded_port)
        if prefix is not None and "prefix" in origin:
            environ["SCRIPT_NAME"] = prefix
    return resolution


def rewritten() -> Optional[str]:
    """What to fix when this process serves the app with a server's own proxy headers on that
    believe someone (uvicorn's default, around its WSGI bridge under ``--interface wsgi``):
    uvicorn rewrites the scope's client from ``X-Forwarded-For`` before the bridge builds
    ``REMOTE_ADDR``, so the peer here would be a header's word; ``None`` otherwise
    (``trueip.asgi.rewrite_around``). Logged as an error: the middleware asks once."""
    fix = _asgi.rewrite_around()
    if fix is not None:
        logging.getLogger("trueip").error("trueip: %s", fix)
    return fix


#: WSGI servers that build a header's environ key from a line spelled with underscores as well
#: as from the one spelled with dashes (``X_Forwarded_For`` and ``X-Forwarded-For`` both make
#: ``HTTP_X_FORWARDED_FOR``), each keeping the value of the spelling it met last, by the top
#: package of the type of their ``wsgi.input``.
_MERGING_SERVERS = {
    "granian": "Granian's WSGI interface",
    "twisted": "Twisted's WSGIResource",
    "cheroot": "cheroot (CherryPy's server)",
}

#: ASGI-to-WSGI bridges, which join the lines of both spellings in their order, by the class
#: each serves the app through: (module, class, name).
_MERGING_BRIDGES = (
    ("uvicorn.middleware.wsgi", "_WSGIMiddleware", "uvicorn's WSGI bridge (--interface wsgi)"),
    ("hypercorn.app_wrappers", "WSGIWrapper", "hypercorn's WSGI bridge (wsgi:)"),
    ("starlette.middleware.wsgi", "WSGIMiddleware", "Starlette's WSGIMiddleware"),
    ("a2wsgi.wsgi", "WSGIMiddleware", "a2wsgi's WSGIMiddleware (uvicorn's --interface wsgi when a2wsgi is installed)"),
)

_MERGES = (
    " makes a line spelled X_Forwarded_For part of the app's HTTP_X_FORWARDED_FOR, and a proxy passes a "
    "client's on, so a request through a trusted hop may carry a client's address as the hop's: "
)


def merged_spellings(environ: dict[str, Any], keys: frozenset[str]) -> Optional[str]:
    """What to fix when the server that built ``environ`` may have put a line a client spelled
    with underscores (``X_Forwarded_For``) in a client-IP key of ``keys``
    (``HTTP_X_FORWARDED_FOR``), or ``None``. Proxies pass such a line on (HAProxy, an ALB,
    Envoy, Caddy, Traefik; nginx under ``underscores_in_headers on``), so behind a trusted one
    the key is the client's word: Granian's WSGI interface, Twisted's and cheroot keep the
    spelling met last, and a client that sends ``X-Forwarded-For`` before ``X_Forwarded_For``
    replaces the line the proxy appended; gunicorn under ``--header-map dangerous`` (or with
    such a name, or ``*``, in ``--forwarder-headers``) and the ASGI-to-WSGI bridges
    (``_MERGING_BRIDGES``) join the lines in their order, and behind a proxy that writes its
    line before the client's (nginx) the client's comes last. The environ keeps no trace of
    the spelling. gunicorn, waitress, Werkzeug's and Django's development servers and mod_wsgi
    drop such lines by default. The bridges and gunicorn's settings are found among the live
    objects, in one pass (``trueip.asgi.live_instances``)."""
    server = _MERGING_SERVERS.get(type(environ.get("wsgi.input")).__module__.partition(".")[0])
    if server is not None:
        return (
            f"{server}{_MERGES}serve the app under gunicorn or waitress, or under an ASGI server's WSGI bridge "
            "with trueip.asgi.TrueIP around the bridge"
        )
    rows: dict = {}
    for module, name, shown in _MERGING_BRIDGES:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            for each in _asgi._and_subclasses(cls):
                rows.setdefault(each, shown)
    config = getattr(sys.modules.get("gunicorn.config"), "Config", None)
    if "gunicorn.socket" in environ and isinstance(config, type):
        for each in _asgi._and_subclasses(config):
            rows.setdefault(each, None)
    for found in _asgi.live_instances(rows):
        shown = rows[type(found)]
        if shown is not None:
            return (
                f"{shown}{_MERGES}wrap the ASGI side instead, trueip.asgi.TrueIP around the bridge, which withholds "
                "such lines before the bridge joins them"
            )
        named = [n for n in getattr(found, "forwarder_headers", None) or () if isinstance(n, str)]
        # gunicorn lets through, from a peer in --forwarded-allow-ips, a name spelled with
        # underscores that the list names (as it is upper-cased), or any with `*`.
        folded = [n for n in named if n == "*" or ("_" in n and "HTTP_" + n in keys)]
        if getattr(found, "header_map", None) == "dangerous" or folded:
            return (
                f"gunicorn under --header-map dangerous, or with * or a client-IP header in --forwarder-headers,"
                f"{_MERGES}run gunicorn with --header-map drop (its default) and no such name in --forwarder-headers"
            )
    return None


def merge_at_stake(fix: Optional[str], policy: Policy, environ: dict[str, Any]) -> bool:
    """Whether a request under a server that merges spellings (``fix``, from
    ``merged_spellings``) carries a client-IP key, which a client's line may have made or
    joined. Asked before ``apply``, which removes those the decision does not read. A
    request with none (a health check from a trusted address) has nothing merged."""
    return fix is not None and not policy._withheld_environ_keys(None).isdisjoint(environ)


def refused_merge(at_stake: bool, resolution: Any) -> bool:
    """Whether a request is refused under a server that merges spellings: when it carries a
    client-IP key (``merge_at_stake``) and came through a trusted hop, whose keys the decision
    reads and the app gets. From any other peer every such key is withheld, whatever its
    spelling."""
    return at_stake and resolution is not None and resolution.trusted_hop


def refusal_text(fix: str) -> str:
    """The body of the 500 every request gets under a server that rewrites the client."""
    return f"trueip: this request's client cannot be decided: {fix}\n"


def refuse_rewritten(fix: str, start_response: Callable[..., Any]) -> list[bytes]:
    """A 500 naming ``fix`` (``rewritten``)."""
    body = refusal_text(fix).encode()
    start_response("500 Internal Server Error",
                   [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def _folded(policy: Policy, lines: list[Any]) -> list[tuple[str, Optional[str]]]:
    """The environ key and value of every client-IP header (``policy``'s set) as ``lines``
    (ASGI pairs that passed ``ForwardingSet::withheld``) carry it: values joined by ``,``
    in order, ``None`` for a header they do not carry."""
    keys = policy._withheld_environ_keys(None)
    values: dict[str, list[str]] = {}
    for name, value in lines:
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).decode("latin-1")
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("latin-1")
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in keys:
            values.setdefault(key, []).append(value)
    return [(key, ",".join(values[key]) if key in values else None) for key in keys]


class TrueIP(_signed.Configured):
    """WSGI middleware that applies ``policy`` to every request (see the module doc).

    ``origin``: which of ``"proto"``, ``"host"``, ``"port"``, ``"prefix"`` trusted hops may
    set; ``("proto",)`` by default, as ProxyFix. ``verify``: a ``trueip.Verifier`` or key
    file path(s) for the signed client header; ``on_unverified``: ``"peer"`` (default) or
    ``"refuse"``."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        policy: Policy,
        *,
        origin: Iterable[str] = DEFAULT_ORIGIN,
        verify: Optional[_signed.VerifyArg] = None,
        on_unverified: str = "peer",
    ) -> None:
        super().__init__(app, policy, origin=origin, verify=verify, on_unverified=on_unverified)
        # What `rewritten` and `merged_spellings` found on the first call: the server does not
        # change.
        self._rewrite: Any = _asgi._UNCHECKED
        self._merged: Any = _asgi._UNCHECKED

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        rewrite = self._rewrite
        if rewrite is _asgi._UNCHECKED:
            rewrite = self._rewrite = rewritten()
        if rewrite is not None:
            return refuse_rewritten(rewrite, start_response)
        merged = self._merged
        if merged is _asgi._UNCHECKED:
            merged = self._merged = merged_spellings(environ, self.policy._withheld_environ_keys(None))
            if merged is not None:
                logging.getLogger("trueip").error("trueip: %s", merged)
        if merged is None:
            # Nearly every server: no call more per request.
            apply(self.policy, environ, self.origin, self.verifier)
        elif refused_merge(merge_at_stake(merged, self.policy, environ),
                           apply(self.policy, environ, self.origin, self.verifier)):
            return refuse_rewritten(merged, start_response)
        # No outcome: no peer address (a Unix socket), nothing verified; refused too.
        outcome = environ.get("trueip.signature")
        if self.refuse and outcome != "verified":
            status, body = _signed.refusal(outcome or "missing")
            start_response(
                _signed.status_line(status),
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self.app(environ, start_response)
