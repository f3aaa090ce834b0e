#!/usr/bin/env python3
"""Werkzeug's ProxyFix as a reference oracle for trueip's `hops:N` strategy.

Reads JSON Lines on stdin, one case per line:

    {"remote_addr": "127.0.0.5", "xff": ["1.2.3.4, 10.0.0.1", "10.0.0.2"] or null, "x_for": 2}

and writes one JSON line per case, in order: {"remote_addr": "<what the app sees>"}, or
{"error": "..."} for a line it cannot use. ProxyFix runs in-process over a WSGI environ; no
server is involved. Several header lines are joined with ", ", as WSGI servers (gunicorn,
werkzeug's own) do when they fold repeated headers into one HTTP_X_FORWARDED_FOR.

Used by crates/trueip-cli/tests/differential.rs.
"""

import json
import sys

from werkzeug.middleware.proxy_fix import ProxyFix


def remote_addr_seen(remote_addr, xff_lines, x_for):
    seen = {}

    def app(environ, start_response):
        seen["remote_addr"] = environ.get("REMOTE_ADDR")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": remote_addr,
    }
    if xff_lines is not None:
        environ["HTTP_X_FORWARDED_FOR"] = ", ".join(xff_lines)

    body = ProxyFix(app, x_for=x_for)(environ, lambda status, headers: None)
    for _ in body:
        pass
    return seen["remote_addr"]


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            case = json.loads(line)
            remote_addr = case["remote_addr"]
            xff = case.get("xff")
            x_for = case["x_for"]
            if not isinstance(remote_addr, str):
                raise ValueError("remote_addr must be a string")
            if xff is not None and not (
                isinstance(xff, list) and all(isinstance(v, str) for v in xff)
            ):
                raise ValueError("xff must be null or a list of strings")
            if not isinstance(x_for, int) or isinstance(x_for, bool) or x_for < 0:
                raise ValueError("x_for must be a non-negative integer")
            out = {"remote_addr": remote_addr_seen(remote_addr, xff, x_for)}
        except Exception as e:  # one bad line must not stop the batch
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
