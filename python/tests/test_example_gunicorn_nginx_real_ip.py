"""examples/gunicorn_nginx_real_ip, run for real: the WSGI app under gunicorn on 127.0.0.1
(``--forwarded-allow-ips ""``) trusting 127.0.0.20/32, ``/usr/sbin/nginx`` in front on
127.0.0.20 with the example's own ``nginx.conf`` (``X-Real-IP $remote_addr``)."""

import subprocess

import pytest

from servers import ALB, ATTACKER, EXAMPLES, NGINX, external, free_port, get, gunicorn, nginx, python_env

EXAMPLE = EXAMPLES / "gunicorn_nginx_real_ip"
FORGED = [("X-Real-IP", "203.0.113.66"), ("X-Forwarded-Proto", "https")]


@pytest.fixture(scope="module")
def app():
    port = free_port()
    with gunicorn(EXAMPLE, "app:app", port, "--forwarded-allow-ips", "", env=python_env()):
        yield port


@pytest.fixture(scope="module")
def front(app):
    port = free_port(NGINX)
    with nginx(EXAMPLE / "nginx.conf", NGINX, port, app):
        yield port


@pytest.mark.parametrize("sender", [ATTACKER, ALB, "127.0.0.99"])
def test_through_nginx_the_client_is_whom_nginx_saw(front, sender):
    seen = get(sender, NGINX, front, FORGED).json()
    assert seen == {
        "client": sender,
        "peer": NGINX,
        "source": "x-real-ip",
        "scheme": "http",
        "x_real_ip": sender,
        "x_forwarded_proto": "http",
    }


def test_straight_to_gunicorn_a_forged_x_real_ip_is_the_peer_and_removed(app):
    seen = get(ATTACKER, "127.0.0.1", app, FORGED).json()
    assert seen == {
        "client": ATTACKER,
        "peer": ATTACKER,
        "source": "peer",
        "scheme": "http",
        "x_real_ip": None,
        "x_forwarded_proto": None,
    }


def test_from_another_local_address_too(app):
    # The trusted address is nginx's alone, not the loopback network.
    seen = get("127.0.0.21", "127.0.0.1", app, FORGED).json()
    assert (seen["client"], seen["x_real_ip"]) == ("127.0.0.21", None)


@pytest.mark.parametrize("forged", [("X-Forwarded-Proto", "https"), ("X-Forwarded-Protocol", "ssl"),
                                    ("X-Forwarded-Ssl", "on")])
def test_under_gunicorns_default_a_local_process_does_not_choose_the_scheme(forged):
    # gunicorn's default trusts these from 127.0.0.1 and sets wsgi.url_scheme before the
    # middleware runs. The old code kept it: `https` for the attacker. The middleware now
    # starts from the connection's scheme (gunicorn's socket), as it would with
    # `--forwarded-allow-ips ""`.
    port = free_port()
    with gunicorn(EXAMPLE, "app:app", port, env=python_env()):
        seen = get(ATTACKER, "127.0.0.1", port, [("X-Real-IP", "203.0.113.66"), forged]).json()
    assert (seen["client"], seen["x_forwarded_proto"]) == (ATTACKER, None)
    assert seen["scheme"] == "http"


def test_under_gunicorn_over_tls_the_scheme_stays_https(tmp_path):
    # The other half: the connection's scheme is its socket's, so TLS gunicorn keeps https.
    subprocess.run(
        [external("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=app.example",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )
    port = free_port()
    tls = ("--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem"))
    with gunicorn(EXAMPLE, "app:app", port, "--forwarded-allow-ips", "", *tls, env=python_env()):
        seen = get(ATTACKER, "127.0.0.1", port, [("X-Forwarded-Proto", "http")], tls=True).json()
    assert (seen["client"], seen["scheme"], seen["x_forwarded_proto"]) == (ATTACKER, "https", None)
