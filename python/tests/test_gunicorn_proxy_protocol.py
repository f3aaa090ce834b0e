"""gunicorn's ``--proxy-protocol``: gunicorn reads a PROXY header from any peer in
``--proxy-allow-from`` (127.0.0.1 and ::1 by default, so any local process) and makes its
source ``REMOTE_ADDR``. The WSGI middleware used to take that for the connection's peer: a
local process that wrote ``PROXY TCP4 6.6.6.6 ...`` was the client 6.6.6.6. Now the peer is
gunicorn's socket's, and the source is believed only from a peer in the policy's
``proxy_protocol_from``, as ``trueip serve`` believes a PROXY header. Real gunicorn, on
loopback."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

from servers import ATTACKER, DEADLINE, free_port, gunicorn, python_env

APP = """
    import json
    import trueip
    from trueip.wsgi import TrueIP

    def inner(environ, start_response):
        resolution = environ["trueip.resolution"]
        body = json.dumps({"client": environ["REMOTE_ADDR"], "port": environ.get("REMOTE_PORT"),
                           "warnings": sorted(resolution.warnings)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    strangers = TrueIP(inner, trueip.Policy())
    sender = TrueIP(inner, trueip.Policy(proxy_protocol_from=["127.0.0.1"]))
"""


def through_proxy_protocol(port: int, source: str) -> dict:
    """A request from 127.0.0.1 whose PROXY v1 header names ``source``."""
    import json

    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE, source_address=(ATTACKER, 0))
    try:
        sock.sendall(f"PROXY TCP4 {source} 127.0.0.1 4321 {port}\r\n".encode()
                     + b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    finally:
        sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw
    return json.loads(body)


def test_a_proxy_header_gunicorn_read_is_believed_only_from_the_policys_senders(tmp_path: Path) -> None:
    (tmp_path / "pp_app.py").write_text(textwrap.dedent(APP))
    port = free_port()
    with gunicorn(tmp_path, "pp_app:strangers", port, "--proxy-protocol=v1", env=python_env()):
        seen = through_proxy_protocol(port, "6.6.6.6")
    # On the old code: {"client": "6.6.6.6", "port": "4321"}.
    assert seen["client"] == ATTACKER
    assert seen["port"] != "4321"
    assert "proxy_protocol_from_untrusted_peer" in seen["warnings"]
    port = free_port()
    with gunicorn(tmp_path, "pp_app:sender", port, "--proxy-protocol=v1", env=python_env()):
        seen = through_proxy_protocol(port, "203.0.113.7")
    assert (seen["client"], seen["port"], seen["warnings"]) == ("203.0.113.7", "4321", [])


def responses(sock: socket.socket, count: int) -> list[dict]:
    """``count`` JSON responses read from ``sock``, each by its Content-Length."""
    import json

    raw, seen = b"", []
    while len(seen) < count:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if sep:
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            if len(rest) >= length:
                assert head.startswith(b"HTTP/1.1 200"), head
                seen.append(json.loads(rest[:length]))
                raw = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, raw
        raw += chunk
    return seen


def test_every_request_of_a_keep_alive_connection_has_its_proxy_headers_source(tmp_path: Path) -> None:
    # gunicorn's gthread worker reads the PROXY header on a connection's first request only
    # and gives the later ones the balancer's address and no PROXY_PROTOCOL: on the old code
    # the second request was the balancer's (127.0.0.1), so a client behind an NLB escaped
    # its own address (a ban, a rate limit) by sending a second request.
    (tmp_path / "pp_app.py").write_text(textwrap.dedent(APP))
    port = free_port()
    with gunicorn(tmp_path, "pp_app:sender", port, "--proxy-protocol=v1", "-k", "gthread", "--threads", "2",
                  "--keep-alive", "5", env=python_env()):
        sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE, source_address=(ATTACKER, 0))
        try:
            sock.sendall(f"PROXY TCP4 203.0.113.7 127.0.0.1 4321 {port}\r\n".encode()
                         + b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
            first = responses(sock, 1)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
            second = responses(sock, 1)
        finally:
            sock.close()
    assert [(s["client"], s["port"]) for s in first + second] == [("203.0.113.7", "4321")] * 2
