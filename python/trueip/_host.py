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
