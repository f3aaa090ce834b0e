"""A Flask app behind CloudFront -> ALB -> nginx, finding the viewer with trueip.

The story: the app logs the load balancer's address, so someone adds
``request.headers["X-Forwarded-For"].split(",")[0]`` — and now any viewer can be anyone by
sending ``X-Forwarded-For: 1.2.3.4``. Every hop *appends* the address it saw, so what
reaches the app is ``<whatever the viewer wrote>, viewer, CloudFront edge, ...`` and only
the right-hand end was written by hops you run or trust.

Here nginx (``nginx.conf`` beside this file) uses its realip module, believing
X-Forwarded-For from the ALB's range only, and appends ``$remote_addr`` — after realip, the
CloudFront edge — with ``$proxy_add_x_forwarded_for``. The app trusts your proxies (the ALB
and nginx: PROXIES) and CloudFront's origin-facing ranges (AWS's ``ip-ranges.json``); walking
from the right, the first address it does not trust is the viewer. What the viewer wrote
itself sits further left: ignored, and flagged ``spoof_attempt``. A request from anywhere
else — straight to nginx, or straight to the app — is its sender, and the app never sees
the client-IP headers it forged (in any spelling: ``X_Forwarded_For`` too).

Run (the app answers with what it sees, as JSON)::

    pip install trueip flask gunicorn
    TRUEIP_PROXIES=10.0.0.0/16 TRUEIP_IP_RANGES=ip-ranges.json \\
        gunicorn -b 127.0.0.1:8000 --forwarded-allow-ips "" \\
        --chdir python/examples/flask_cloudfront_alb app:app

(``--forwarded-allow-ips ""``: gunicorn itself believes ``X-Forwarded-Proto`` from
127.0.0.1 by default and sets ``wsgi.url_scheme`` before any middleware runs; let trueip
decide from trusted hops only.)

TRUEIP_PROXIES is a comma-separated list (default ``10.0.0.0/16``, your VPC);
TRUEIP_IP_RANGES is AWS's ``ip-ranges.json`` (``curl -O
https://ip-ranges.amazonaws.com/ip-ranges.json``), whose ``CLOUDFRONT_ORIGIN_FACING`` prefixes
are CloudFront's; by default the small ``ip-ranges.json`` beside this file, where
13.32.0.0/15 stands in for them. Its test: ``python/tests/test_example_flask_cloudfront_alb.py``.
"""

import os
from pathlib import Path

from flask import Flask, jsonify, request

from trueip import Policy
from trueip.wsgi import TrueIP

HERE = Path(__file__).resolve().parent

proxies = [p for p in os.environ.get("TRUEIP_PROXIES", "10.0.0.0/16").split(",") if p]
policy = Policy(
    trust=[*proxies, "cloudfront"],
    strategy="rightmost-untrusted",
    providers={"cloudfront": os.environ.get("TRUEIP_IP_RANGES", str(HERE / "ip-ranges.json"))},
)

app = Flask(__name__)
app.wsgi_app = TrueIP(app.wsgi_app, policy)


@app.get("/")
def whoami():
    resolution = request.environ["trueip.resolution"]
    return jsonify(
        client=request.remote_addr,
        peer=request.environ["trueip.original"]["REMOTE_ADDR"],
        source=resolution.source,
        trusted_hops=resolution.trusted_hops,
        warnings=sorted(resolution.warnings),
        spoof_attempt=resolution.spoof_attempt,
        # Every request header as the app's environ has it, to show what was removed.
        headers={k: v for k, v in request.environ.items() if k.startswith("HTTP_")},
    )
