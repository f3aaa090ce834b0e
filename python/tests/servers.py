"""What the example tests share: start a server or a proxy on loopback, wait for it, stop
it, and send it a request from a chosen source address.

Linux routes all of 127.0.0.0/8 to ``lo``, so one machine plays every host, as in the Rust
examples' tests (``examples/tests/support/mod.rs``): the proxies reach the app from
127.0.0.20 (nginx, ``proxy_bind``) and 127.0.0.30 (HAProxy, ``source``), the test plays the
ALB from 127.0.0.21 (it binds its socket there), all inside the 127.0.0.16/28 the examples
are told to trust. The attacker is 127.0.0.1, never trusted.

nginx and HAProxy come from ``scripts/test-deps``; without them the tests fail, unless
``TRUEIP_SKIP_EXTERNAL=1`` (then the tests that need them are skipped).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest

DEADLINE = 10.0
PROXIES = "127.0.0.16/28"
NGINX = "127.0.0.20"
ALB = "127.0.0.21"
HAPROXY = "127.0.0.30"
ATTACKER = "127.0.0.1"

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Process:
    """A child in its own process group, with its output in a log file."""

    def __init__(self, name: str, args: Sequence[str], log: Path, **kwargs) -> None:
        self.name = name
        self.log = log
        self._out = open(log, "wb")
        self.popen = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        try:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait(timeout=5)
            # Workers a master left behind share its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        finally:
            self._out.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, proc: Process, timeout: float = DEADLINE) -> None:
    """Polls until something accepts on ``host:port``; fails if ``proc`` exits or the
    deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.popen.poll()
        if code is not None:
            pytest.fail(f"{proc.name} exited with {code} before listening:\n{proc.output()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listens on {host}:{port} after {timeout} s:\n{proc.output()}")
        time.sleep(0.02)


@contextlib.contextmanager
def serve(name: str, args: Sequence[str], host: str, port: int, **kwargs) -> Iterator[Process]:
    """Runs ``args`` until the block ends; yields once ``host:port`` accepts."""
    scratch = Path(tempfile.mkdtemp(prefix=f"trueip-{name}-"))
    proc = Process(name, args, scratch / "output.log", **kwargs)
    try:
        wait_for_port(host, port, proc)
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def python_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.pop("TRUEIP_PROXIES", None)
    env.update(extra)
    return env


def gunicorn(app_dir: Path, app: str, port: int, *extra: str, env: Optional[dict] = None):
    """gunicorn (one sync worker) serving ``app`` from ``app_dir`` on 127.0.0.1:``port``."""
    args = [sys.executable, "-m", "gunicorn", "--chdir", str(app_dir), "-w", "1",
            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "1", *extra, app]
    return serve("gunicorn", args, "127.0.0.1", port, env=env or python_env())


def uvicorn(app_dir: Path, app: str, port: int, *extra: str, env: Optional[dict] = None):
    """uvicorn serving ``app`` from ``app_dir`` on 127.0.0.1:``port``, with its own
    proxy-header handling off, as the ASGI adapter asks."""
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--host", "127.0.0.1",
            "--port", str(port), "--no-proxy-headers", "--log-level", "warning", *extra, app]
    return serve("uvicorn", args, "127.0.0.1", port, env=env or python_env())


def django_app(response: str, urls: str = 'path("", view)', handler: str = "asgi", entry: str = "app") -> str:
    """The source of a one-view Django app under trueip's middleware (trusting 127.0.0.20), for
    a server to import: the view answers ``response`` (an expression of ``request``) as text,
    and ``entry`` is Django's ``handler`` (``asgi`` or ``wsgi``) application."""
    return f"""
import django
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
    MIDDLEWARE=["trueip.django.TrueIPMiddleware"],
    TRUEIP={{"trust": ["127.0.0.20"], "strategy": "rightmost-untrusted"}},
)
django.setup()

from django.core.{handler} import get_{handler}_application
from django.http import HttpResponse
from django.urls import path, reverse

def view(request):
    return HttpResponse({response}, content_type="text/plain")

urlpatterns = [{urls}]
{entry} = get_{handler}_application()
"""


def external(program: str) -> str:
    """The program's path; skips the test if it is missing and TRUEIP_SKIP_EXTERNAL=1,
    fails it otherwise."""
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        path = Path(d) / program
        if path.is_file():
            return str(path)
    if os.environ.get("TRUEIP_SKIP_EXTERNAL") == "1":
        pytest.skip(f"`{program}` not installed; TRUEIP_SKIP_EXTERNAL=1")
    pytest.fail(f"`{program}` not found: `bash scripts/test-deps` installs it, "
                "or set TRUEIP_SKIP_EXTERNAL=1 to skip what needs it")


def example_config(path: Path, replace: dict) -> str:
    """An example's own config with ``replace`` applied; each pattern must be in it, so an
    edit the test cannot follow fails here rather than running a config of the test's own."""
    text = path.read_text()
    for old, new in replace.items():
        assert old in text, f"{path} must keep `{old}` for the test to substitute"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def nginx(config: Path, listen_host: str, listen_port: int, app_port: int) -> Iterator[Process]:
    """nginx with ``config`` (an example's ``server`` block, ``listen 8080;`` and
    ``proxy_pass http://127.0.0.1:8000;`` replaced) in a minimal unprivileged config."""
    bin_ = external("nginx")
    server = example_config(config, {
        "listen 8080;": f"listen {listen_host}:{listen_port};",
        "proxy_pass http://127.0.0.1:8000;": f"proxy_pass http://127.0.0.1:{app_port};",
    })
    d = Path(tempfile.mkdtemp(prefix="trueip-nginx-"))
    (d / "nginx.conf").write_text(
        f"daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n"
        f"error_log {d}/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"  access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n"
        f"  fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n"
        f"{server}\n}}\n"
    )
    args = [bin_, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
    try:
        with serve("nginx", args, listen_host, listen_port) as proc:
            yield proc
    finally:
        shutil.rmtree(d, ignore_errors=True)


#: An ``haproxy.cfg`` for ``haproxy()``: HTTP mode, ``option forwardfor`` (a line
#: ``X-Forwarded-For: <peer>`` below whatever the client sent), the app reached from
#: ``HAPROXY``'s address.
HAPROXY_FORWARDFOR_CFG = f"""
global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend www
    bind 127.0.0.1:8443
    option forwardfor
    default_backend app
backend app
    server app 127.0.0.1:8000 source {HAPROXY}
"""


@contextlib.contextmanager
def haproxy(config: Path, listen_port: int, app_port: int, replace: Optional[dict] = None) -> Iterator[Process]:
    """HAProxy with an example's ``haproxy.cfg`` (``bind 127.0.0.1:8443`` and
    ``server app 127.0.0.1:8000`` replaced, and any of ``replace``)."""
    bin_ = external("haproxy")
    text = example_config(config, {
        "bind 127.0.0.1:8443": f"bind 127.0.0.1:{listen_port}",
        "server app 127.0.0.1:8000": f"server app 127.0.0.1:{app_port}",
        **(replace or {}),
    })
    d = Path(tempfile.mkdtemp(prefix="trueip-haproxy-"))
    (d / "haproxy.cfg").write_text(text)
    try:
        with serve("haproxy", [bin_, "-f", str(d / "haproxy.cfg"), "-db"], "127.0.0.1", listen_port) as proc:
            yield proc
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Response:
    def __init__(self, status: int, headers: list, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self):
        return json.loads(self.body)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += rest[:size]
        body = rest[size + 2:]


def get(src: str, host: str, port: int, headers: Sequence[tuple] = (), path: str = "/",
        tls: bool = False) -> Response:
    """``GET path`` over HTTP/1.1 from a socket bound to ``src``, with ``headers`` written
    exactly as given (so ``X_Forwarded_For`` goes out with its underscores)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(DEADLINE)
    try:
        sock.bind((src, 0))
        sock.connect((host, port))
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname="app.example")
        req = f"GET {path} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n"
        for name, value in headers:
            req += f"{name}: {value}\r\n"
        sock.sendall((req + "\r\n").encode("latin-1"))
        raw = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    finally:
        sock.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response: {raw!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    if any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in hdrs):
        body = _dechunk(body)
    return Response(status, hdrs, body)
