"""A plain WSGI app under gunicorn behind nginx, which sets ``X-Real-IP``.

The story: nginx in front of gunicorn has ``proxy_set_header X-Real-IP $remote_addr;``
(``nginx.conf`` beside this file) and the app reads ``environ["HTTP_X_REAL_IP"]``. That is
right for requests nginx forwarded — nginx *sets* the header, replacing whatever the client
sent — and wrong for any request that reaches gunicorn another way (a port open in the
security group, a second listener, a health-check path): there the header is the client's
own word. trueip believes X-Real-IP only from nginx's address; from anyone else the client
is the peer, and the header is removed from the environ so no library reads it either.

gunicorn itself trusts ``X-Forwarded-Proto`` (and so sets ``wsgi.url_scheme``) from
``--forwarded-allow-ips``, 127.0.0.1 by default: run it with ``--forwarded-allow-ips ""``
(no one) and let trueip decide the scheme from trusted hops only.

Run::

    pip install trueip gunicorn
    TRUEIP_PROXIES=10.0.0.5/32 gunicorn -b 127.0.0.1:8000 --forwarded-allow-ips "" \\
        --chdir python/examples/gunicorn_nginx_real_ip app:app

TRUEIP_PROXIES is nginx's address or range, comma-separated (default 127.0.0.20/32, the
address nginx connects from in the test: ``proxy_bind``). Its test:
``python/tests/test_example_gunicorn_nginx_real_ip.py``.
"""

import json
import os

from trueip import Policy
from trueip.wsgi import TrueIP

policy = Policy(
    trust=[p for p in os.environ.get("TRUEIP_PROXIES", "127.0.0.20/32").split(",") if p],
    strategy="header:X-Real-IP",
)


def whoami(environ, start_response):
    body = json.dumps(
        {
            "client": environ["REMOTE_ADDR"],
            "peer": environ["trueip.original"]["REMOTE_ADDR"],
            "source": environ["trueip.resolution"].source,
            "scheme": environ["wsgi.url_scheme"],
            "x_real_ip": environ.get("HTTP_X_REAL_IP"),
            "x_forwarded_proto": environ.get("HTTP_X_FORWARDED_PROTO"),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


app = TrueIP(whoami, policy)
