"""A FastAPI app under uvicorn behind HAProxy, finding the client with trueip.

The story: HAProxy terminates TLS and adds ``X-Forwarded-For`` (``option forwardfor``) and
``X-Forwarded-Proto`` (``haproxy.cfg`` beside this file). ``request.client.host`` is
HAProxy's address, and ``request.url.scheme`` is ``http``, so redirects and cookies go
wrong. uvicorn's own fix (``--proxy-headers``, on by default) believes those headers from
``--forwarded-allow-ips`` — 127.0.0.1 by default, which on a shared host is anyone local
— and rewrites ``scope["client"]`` before any middleware can check.

So: uvicorn with ``--no-proxy-headers``, and ``trueip.asgi.TrueIP`` trusting HAProxy's
address (PROXIES). Through HAProxy the client is the address HAProxy accepted from,
whatever ``X-Forwarded-For`` the client wrote itself, and the scheme is HAProxy's word. A
request sent straight to uvicorn is its sender, its scheme ``http``, and the client-IP
headers it forged are gone from ``scope["headers"]`` — as are underscored spellings
(``X_Forwarded_For``) from anyone, which HAProxy passes on.

Run::

    pip install trueip fastapi uvicorn
    TRUEIP_PROXIES=10.0.0.7/32 uvicorn --no-proxy-headers --host 127.0.0.1 --port 8000 \\
        --app-dir python/examples/fastapi_haproxy app:app

TRUEIP_PROXIES is HAProxy's address or range, comma-separated (default 10.0.0.0/16). Its
test: ``python/tests/test_example_fastapi_haproxy.py``.
"""

import os

from fastapi import FastAPI, Request

from trueip import Policy
from trueip.asgi import TrueIP

policy = Policy(
    trust=[p for p in os.environ.get("TRUEIP_PROXIES", "10.0.0.0/16").split(",") if p],
    strategy="rightmost-untrusted",
)

api = FastAPI()


@api.get("/")
async def whoami(request: Request):
    resolution = request.scope["trueip.resolution"]
    return {
        "client": request.client.host,
        "peer": request.scope["trueip.original"]["client"][0],
        "scheme": request.url.scheme,
        "source": resolution.source,
        "warnings": sorted(resolution.warnings),
        # Every header line as the app's scope has it, to show what was removed.
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.scope["headers"]],
    }


app = TrueIP(api, policy)
