"""Per-request cost of trueip's Python package beside its peers, in one run (pyperf).

    .venv/bin/python bench/python.py -o target/python-bench.json --fast   # quick look
    .venv/bin/python bench/python.py -o target/python-bench.json          # BENCHMARKS.md
    .venv/bin/python -m pyperf compare_to --table ...                      # to read it

Rows (the 3-hop story: X-Forwarded-For "203.0.113.195, 70.41.3.18, 10.0.0.7" from the trusted
peer 10.0.0.5, trust 10.0.0.0/8):

* ``resolve``: ``policy.resolve(peer, headers)`` with a dict, a WSGI environ and an ASGI list;
* ``wsgi:*``: a WSGI call through each middleware around an app that does nothing, minus the
  bare app (the environ is copied in every row, as a server makes a new one per request);
  trueip.wsgi.TrueIP vs ProxyFix(x_for=1) vs python-ipware called the same way;
* ``asgi:*``: the same for trueip.asgi.TrueIP vs uvicorn's ProxyHeadersMiddleware;
* ``lambda:*``: ``trueip.aws_lambda.resolve_event`` on the ALB story event (the tests'
  crates/trueip/tests/lambda_events/alb.json), beside the line Lambda handlers write instead,
  ``event["headers"]["x-forwarded-for"].split(",")[0]`` (which takes the forged entry).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyperf

import trueip
from trueip.asgi import TrueIP as AsgiTrueIP
from trueip.wsgi import TrueIP as WsgiTrueIP

CHAIN = "203.0.113.195, 70.41.3.18, 10.0.0.7"
POLICY = trueip.Policy(trust=["10.0.0.0/8"], strategy="rightmost-untrusted")
HEADERS = {"Host": "shop.example", "User-Agent": "Mozilla/5.0", "Accept": "*/*", "X-Forwarded-For": CHAIN,
           "X-Forwarded-Proto": "https"}
ENVIRON = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "app",
           "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.5", "REMOTE_PORT": "41000",
           "wsgi.url_scheme": "http", "HTTP_HOST": "shop.example", "HTTP_USER_AGENT": "Mozilla/5.0", "HTTP_ACCEPT": "*/*",
           "HTTP_X_FORWARDED_FOR": CHAIN, "HTTP_X_FORWARDED_PROTO": "https"}
ASGI_HEADERS = [(b"host", b"shop.example"), (b"user-agent", b"Mozilla/5.0"), (b"accept", b"*/*"),
                (b"x-forwarded-for", CHAIN.encode()), (b"x-forwarded-proto", b"https")]


def bare_wsgi(environ, start_response):
    return ()


def wsgi_loop(app):
    def run(loops):
        t0 = pyperf.perf_counter()
        for _ in range(loops):
            app(dict(ENVIRON), None)
        return pyperf.perf_counter() - t0
    return run


def ipware_middleware(app):
    from python_ipware import IpWare

    ipw = IpWare(proxy_count=1)

    def middleware(environ, start_response):
        ip, _ = ipw.get_client_ip(environ)
        environ["REMOTE_ADDR"] = str(ip)
        return app(environ, start_response)
    return middleware


async def bare_asgi(scope, receive, send):
    return None


def asgi_loop(app):
    def run(loops):
        scope = {"type": "http", "scheme": "http", "client": ("10.0.0.5", 41000), "server": ("10.0.0.1", 8000),
                 "path": "/", "root_path": "", "headers": ASGI_HEADERS}
        loop = asyncio.new_event_loop()

        async def many():
            t0 = pyperf.perf_counter()
            for _ in range(loops):
                await app(dict(scope), None, None)
            return pyperf.perf_counter() - t0
        try:
            return loop.run_until_complete(many())
        finally:
            loop.close()
    return run


def main() -> None:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
    from werkzeug.middleware.proxy_fix import ProxyFix

    runner = pyperf.Runner()
    runner.metadata["trueip"] = trueip.__version__
    runner.bench_func("resolve:dict", POLICY.resolve, "10.0.0.5", HEADERS)
    runner.bench_func("resolve:environ", POLICY.resolve, "10.0.0.5", ENVIRON)
    runner.bench_func("resolve:asgi", POLICY.resolve, "10.0.0.5", ASGI_HEADERS)
    runner.bench_time_func("wsgi:bare", wsgi_loop(bare_wsgi))
    runner.bench_time_func("wsgi:trueip", wsgi_loop(WsgiTrueIP(bare_wsgi, POLICY)))
    runner.bench_time_func("wsgi:proxyfix-x_for=1", wsgi_loop(ProxyFix(bare_wsgi, x_for=1)))
    runner.bench_time_func("wsgi:proxyfix-x_for=1-x_proto=1", wsgi_loop(ProxyFix(bare_wsgi, x_for=1, x_proto=1)))
    runner.bench_time_func("wsgi:python-ipware", wsgi_loop(ipware_middleware(bare_wsgi)))
    from trueip.aws_lambda import resolve_event

    event = json.loads((Path(__file__).resolve().parents[1] / "crates/trueip/tests/lambda_events/alb.json").read_text())
    runner.bench_func("lambda:trueip-alb-preset", resolve_event, trueip.Policy.lambda_preset("alb"), event)
    runner.bench_func("lambda:split-first-entry", lambda e: e["headers"]["x-forwarded-for"].split(",")[0].strip(), event)
    runner.bench_time_func("asgi:bare", asgi_loop(bare_asgi))
    runner.bench_time_func("asgi:trueip", asgi_loop(AsgiTrueIP(bare_asgi, POLICY)))
    runner.bench_time_func("asgi:uvicorn-proxy-headers", asgi_loop(ProxyHeadersMiddleware(bare_asgi, trusted_hosts=["10.0.0.0/8"])))


if __name__ == "__main__":
    main()
