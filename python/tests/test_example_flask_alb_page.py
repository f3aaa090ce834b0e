"""examples/flask_alb_page, run for real under werkzeug's server on 127.0.0.1 trusting
127.0.0.16/28; the test sends as the ALB (from 127.0.0.21, with the headers an ALB adds) and
as someone reaching the instance directly (127.0.0.1, forging the same headers)."""

import sys

import pytest

from servers import ALB, ATTACKER, EXAMPLES, PROXIES, free_port, get, python_env, serve

APP = EXAMPLES / "flask_alb_page" / "app.py"
ALB_HEADERS = [
    ("X-Forwarded-For", "203.0.113.195"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "443"),
]


@pytest.fixture(scope="module")
def app():
    port = free_port()
    args = [sys.executable, str(APP), f"127.0.0.1:{port}"]
    with serve("werkzeug", args, "127.0.0.1", port, env=python_env(TRUEIP_PROXIES=PROXIES)):
        yield port


def test_through_the_alb(app):
    r = get(ALB, "127.0.0.1", app, ALB_HEADERS)
    assert r.status == 200
    assert r.text == (
        "Original IP: 203.0.113.195\n"
        "Direct IP: 127.0.0.21\n"
        "X-Forwarded-For: 203.0.113.195\n"
        "X-Forwarded-Proto: https\n"
        "X-Forwarded-Port: 443\n"
        "Protocol: https\n"
        "Port: 443\n"
    )


def test_through_the_alb_a_forged_entry_is_passed_over(app):
    r = get(ALB, "127.0.0.1", app, [("X-Forwarded-For", "198.51.100.66, 203.0.113.195"), *ALB_HEADERS[1:]])
    assert r.text.splitlines()[:3] == [
        "Original IP: 203.0.113.195",
        "Direct IP: 127.0.0.21",
        "X-Forwarded-For: 198.51.100.66, 203.0.113.195",
    ]


def test_directly_the_sender_and_the_connection(app):
    r = get(ATTACKER, "127.0.0.1", app, ALB_HEADERS)
    assert r.text == (
        "Original IP: 127.0.0.1\n"
        "Direct IP: 127.0.0.1\n"
        "X-Forwarded-For: (none)\n"
        "X-Forwarded-Proto: (none)\n"
        "X-Forwarded-Port: (none)\n"
        "Protocol: http\n"
        f"Port: {app}\n"
    )
