"""Host header text, split the way servers read it."""

from __future__ import annotations

from typing import Optional


def split_host(host: str) -> tuple[str, Optional[str]]:
    """``example.com:8443`` -> (``example.com``, ``8443``); ``[::1]:80`` -> (``[::1]``,
    ``80``); no port -> (host, ``None``)."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, None
        rest = host[end + 1 :]
        return host[: end + 1], (rest[1:] if rest.startswith(":") and rest[1:].isdigit() else None)
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, port
    return host, None


#: What a trusted proxy may say about the original request, each only when your proxies
#: write (overwrite) that header: a proxy that passes a client's ``X-Forwarded-Host``
#: through unchanged lets the client pick the host the app builds links with.
ORIGIN_PARTS = ("proto", "host", "port", "prefix")

#: The default, as Werkzeug's ProxyFix (``x_proto=1``): the scheme only. Every balancer
#: and CDN sets ``X-Forwarded-Proto``; the host, port and prefix are opt-in.
DEFAULT_ORIGIN = frozenset({"proto"})


def origin_parts(parts: object) -> frozenset[str]:
    """Checks a middleware's ``origin`` argument: some of ``ORIGIN_PARTS``."""
    if isinstance(parts, str) or not hasattr(parts, "__iter__"):
        raise TypeError(f"origin must be a collection of {', '.join(ORIGIN_PARTS)}, not {parts!r}")
    chosen = frozenset(parts)  # type: ignore[arg-type]
    unknown = chosen - set(ORIGIN_PARTS)
    if unknown:
        raise ValueError(f"origin: unknown {sorted(unknown)}; choose from {', '.join(ORIGIN_PARTS)}")
    return chosen


def with_port(host: str, port: int) -> str:
    """``host`` (a Host header value) with its port replaced by ``port``."""
    return f"{split_host(host)[0]}:{port}"
