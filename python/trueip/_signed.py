"""The signed client header ``trueip serve`` writes (``[upstream] sign``), for the middlewares.

A middleware given ``verify=`` takes the client from that header instead of the policy's
walk: ``verify`` is a ``trueip.Verifier`` or the path(s) of its key file(s) (two during a
rotation). A request whose header is missing, malformed, forged, stale or signed for
another request is served with the TCP peer as its client (``on_unverified="peer"``, the
default; the resolution is flagged ``signature_rejected``) or refused
(``on_unverified="refuse"``: 400 for a malformed header, 403 otherwise). The outcome,
``"verified"`` or why not, is kept beside the resolution (``trueip.signature``).

The signature binds the method, the Host and the request target as the gateway sent
them. WSGI servers that give the raw target (``RAW_URI``: gunicorn, werkzeug;
``REQUEST_URI``) are read as they are; otherwise the target is rebuilt from
``SCRIPT_NAME``, ``PATH_INFO`` and ``QUERY_STRING``, which cannot restore every
percent-encoding the client chose: such a request fails verification (closed, never open).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Union
from urllib.parse import quote

from . import Verifier

ON_UNVERIFIED = ("peer", "refuse")

#: Characters a path keeps unencoded (RFC 3986 pchar and ``/``), as servers forward them.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

VerifyArg = Union[Verifier, str, "os.PathLike[str]", Iterable[Union[str, "os.PathLike[str]"]]]


def verifier(verify: Optional[VerifyArg]) -> Optional[Verifier]:
    """``verify`` as a ``Verifier``: one already made, or key file paths."""
    if verify is None or isinstance(verify, Verifier):
        return verify
    return Verifier(verify)


def on_unverified(value: str) -> bool:
    """Whether ``value`` (``"peer"`` or ``"refuse"``) refuses."""
    if value not in ON_UNVERIFIED:
        raise ValueError(f"on_unverified must be one of {ON_UNVERIFIED}, not {value!r}")
    return value == "refuse"


def environ_key(v: Verifier) -> str:
    """The WSGI environ key of the verifier's header (``HTTP_TRUEIP_SIGNATURE``)."""
    return "HTTP_" + v.header.upper().replace("-", "_")


def wsgi_request(v: Verifier, environ: dict[str, Any]) -> tuple[Any, str, str, str]:
    """(value, method, host, target) of a WSGI request."""
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace")
        target = quote(path, safe=_PATH_SAFE) or "/"
        query = environ.get("QUERY_STRING")
        if query:
            target += "?" + query
    return (
        environ.get(environ_key(v)),
        environ.get("REQUEST_METHOD", "GET"),
        environ.get("HTTP_HOST", ""),
        target,
    )


def asgi_request(v: Verifier, scope: Any, headers: list[Any]) -> tuple[Any, str, str, str]:
    """(value, method, host, target) of an ASGI scope (a WebSocket handshake is a GET)."""
    name = v.header.encode("latin-1")
    value = None
    host = ""
    lines = 0
    for item in headers:
        # A server bending the spec (an item that is no pair, a name or value that is not
        # bytes) gets the peer or a refusal, not an exception: the header is unread here
        # and the middleware withholds such lines from the app.
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            continue
        n, val = item
        if not isinstance(n, bytes) or not isinstance(val, bytes):
            continue
        lower = n.lower()
        if lower == name:
            lines += 1
            value = val
        elif lower == b"host":
            host = val.decode("latin-1")
    if lines > 1:
        # Two lines are never the gateway's: make the value fail as a duplicate would.
        value = b"duplicate"
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope.get("path", "/").encode("utf-8"), safe=_PATH_SAFE)
    query = scope.get("query_string") or b""
    target = path + ("?" + query.decode("latin-1") if query else "")
    return value, scope.get("method", "GET"), host, target


def refusal(outcome: str) -> tuple[int, bytes]:
    """The status and body a refused request gets."""
    status, body = Verifier.refusal(outcome)
    return status, body.encode()


_REASONS = {400: "400 Bad Request", 403: "403 Forbidden"}


def status_line(status: int) -> str:
    return _REASONS.get(status, f"{status} Forbidden")


# The keyword below shares the function's name.
_refuses = on_unverified


class Configured:
    """What the WSGI and ASGI middlewares are configured with, checked once: the wrapped
    app, the policy, the ``origin`` parts trusted hops may set, and the signed header's
    verifier and what an unverified request gets."""

    def __init__(
        self,
        app: Any,
        policy: Any,
        *,
        origin: Iterable[str],
        verify: Optional[VerifyArg] = None,
        on_unverified: str = "peer",
    ) -> None:
        from . import Policy
        from ._host import origin_parts

        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a trueip.Policy, not {type(policy).__name__}")
        self.app = app
        self.policy = policy
        self.origin = origin_parts(origin)
        self.verifier = verifier(verify)
        self.refuse = _refuses(on_unverified)
