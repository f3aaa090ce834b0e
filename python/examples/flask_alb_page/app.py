"""The "original IP / direct IP / X-Forwarded-For / Proto / Port" page behind a load
balancer, as a Flask app, with trueip deciding what each line may say.

The story: a small page behind an ALB printed ``X-Forwarded-For``, ``X-Forwarded-Proto``
and ``X-Forwarded-Port`` next to the socket's address, to show what the load balancer adds.
Read naively, those headers are whatever the sender wrote: anyone reaching the instance
directly (a public IP, a forgotten security-group rule) could be any client, on ``https``,
on port 443. Here ``trueip.wsgi.TrueIP`` trusts the ALB's range (PROXIES) only: through
the ALB the page shows the client, the ALB as the direct peer, and the protocol and port
the ALB reported; from anyone else it shows the sender as both, the scheme and port of the
connection itself, and no X-Forwarded-* headers at all (the middleware removed them).

Run (werkzeug's server; any WSGI server does, e.g. ``gunicorn app:app``)::

    pip install trueip flask
    TRUEIP_PROXIES=10.0.0.0/16 python python/examples/flask_alb_page/app.py 127.0.0.1:8000

TRUEIP_PROXIES is the ALB's subnets, comma-separated (default 10.0.0.0/16). Its test:
``python/tests/test_example_flask_alb_page.py``.
"""

import os
import sys

from flask import Flask, Response, request

from trueip import Policy
from trueip.wsgi import TrueIP

policy = Policy(
    trust=[p for p in os.environ.get("TRUEIP_PROXIES", "10.0.0.0/16").split(",") if p],
    strategy="rightmost-untrusted",
)

app = Flask(__name__)
# An ALB writes (overwrites) X-Forwarded-Proto and X-Forwarded-Port on every request, so both
# may set what the app goes by; it passes a client's X-Forwarded-Host through, so not the host.
app.wsgi_app = TrueIP(app.wsgi_app, policy, origin=("proto", "port"))


@app.get("/")
def page():
    env = request.environ
    lines = [
        f"Original IP: {request.remote_addr}",
        f"Direct IP: {env['trueip.original']['REMOTE_ADDR']}",
        f"X-Forwarded-For: {request.headers.get('X-Forwarded-For', '(none)')}",
        f"X-Forwarded-Proto: {request.headers.get('X-Forwarded-Proto', '(none)')}",
        f"X-Forwarded-Port: {request.headers.get('X-Forwarded-Port', '(none)')}",
        # What the app goes by: the ALB's word when it came through the ALB, else the
        # connection's own.
        f"Protocol: {request.scheme}",
        f"Port: {env['SERVER_PORT']}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain")


if __name__ == "__main__":
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8000").rpartition(":")
    app.run(host=host, port=int(port))
