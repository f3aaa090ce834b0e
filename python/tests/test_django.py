"""trueip.django.TrueIPMiddleware, configured from settings."""

from __future__ import annotations

import json
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["shop.example", "testserver", "internal"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["trueip.django.TrueIPMiddleware"],
        TRUEIP={"trust": ["10.0.0.0/8"], "strategy": "rightmost-untrusted", "origin": ["proto", "host"]},
        SECRET_KEY="tests-only",
    )
    django.setup()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

import trueip  # noqa: E402
import trueip.aws_lambda  # noqa: E402
from trueip.django import TrueIPMiddleware, policy_from_settings  # noqa: E402


def whoami(request: Any) -> JsonResponse:
    return JsonResponse({
        "addr": request.META["REMOTE_ADDR"],
        "secure": request.is_secure(),
        "host": request.get_host(),
        "xff": request.META.get("HTTP_X_FORWARDED_FOR"),
        "source": request.trueip.source if request.trueip else None,
    })


urlpatterns = [path("", whoami)]


def test_through_a_trusted_hop() -> None:
    got = Client(REMOTE_ADDR="10.0.0.5").get(
        "/", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.195", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"}
    ).json()
    assert got == {"addr": "203.0.113.195", "secure": True, "host": "shop.example", "xff": "6.6.6.6, 203.0.113.195",
                   "source": "x-forwarded-for[-1]"}


def test_a_stranger() -> None:
    got = Client(REMOTE_ADDR="198.51.100.20").get(
        "/", headers={"X-Forwarded-For": "203.0.113.195", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"}
    ).json()
    assert got == {"addr": "198.51.100.20", "secure": False, "host": "testserver", "xff": None, "source": "peer"}


def test_a_strangers_client_ip_headers_are_not_in_request_headers() -> None:
    """`request.headers` is built from META when first read, after the middleware: a view,
    or python-ipware handed `request.headers` (which it reads in any case, dashes for
    underscores: `Http-X-Real-Ip` is its HTTP_X_REAL_IP), finds none of a stranger's."""
    from django.test import RequestFactory
    from python_ipware import IpWare

    seen: dict[str, Any] = {}

    def view(request: Any) -> JsonResponse:
        seen["headers"] = dict(request.headers)
        seen["ipware"] = IpWare().get_client_ip(request.headers)[0]
        return JsonResponse({})

    forged = {name: "1.2.3.4" for name in trueip.forwarding_header_names()}
    forged["Http-X-Real-Ip"] = "1.2.3.4"
    request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.20", headers=forged)
    TrueIPMiddleware(view)(request)
    assert request.META["REMOTE_ADDR"] == "198.51.100.20"
    assert set(seen["headers"]) <= {"Cookie"}, seen["headers"]  # RequestFactory sends an empty Cookie
    assert seen["ipware"] is None


def test_by_default_only_the_scheme() -> None:
    with override_settings(TRUEIP={"trust": ["10.0.0.0/8"]}):
        middleware = TrueIPMiddleware(whoami)
    assert middleware.origin == frozenset({"proto"})


def test_a_forwarded_host_still_passes_allowed_hosts() -> None:
    response = Client(REMOTE_ADDR="10.0.0.5").get("/", headers={"X-Forwarded-For": "203.0.113.195", "X-Forwarded-Host": "evil.example"})
    assert response.status_code == 400


def test_settings_errors_are_improperly_configured() -> None:
    for conf, message in [
        (None, "set TRUEIP in settings"),
        ({"trusted": ["10.0.0.0/8"]}, "unknown TRUEIP keys"),
        ({"strategy": "nope"}, 'unknown strategy "nope"'),
        ({"config": "/nonexistent/trueip.toml"}, "cannot read"),
        ({"config": "x.toml", "trust": ["any"]}, "give no other keys"),
        ({"trust": ["10.0.0.0/8"], "origin": ["prefix"]}, "FORCE_SCRIPT_NAME"),
        ({"trust": ["10.0.0.0/8"], "origin": "proto"}, "origin"),
    ]:
        with override_settings(TRUEIP=conf):
            with pytest.raises(ImproperlyConfigured, match=message):
                TrueIPMiddleware(lambda r: None)


def test_config_file(tmp_path: Any) -> None:
    config = tmp_path / "trueip.toml"
    config.write_text('[client_ip]\ntrusted = ["10.0.0.0/8"]\nstrategy = "hops:1"\n')
    with override_settings(TRUEIP={"config": str(config)}):
        policy = policy_from_settings()
    assert isinstance(policy, trueip.Policy)
    assert policy.resolve("10.0.0.1", {"X-Forwarded-For": "1.1.1.1, 203.0.113.9"}).ip_str == "203.0.113.9"


def test_under_mangum_the_event_names_the_peer() -> None:
    """Django's ASGI handler on Lambda under Mangum: META's REMOTE_ADDR is Mangum's client,
    for an ALB the whole X-Forwarded-For ("6.6.6.6, 203.0.113.9"). The middleware takes
    the peer from the event kept in the scope, as trueip.aws_lambda does."""
    mangum = pytest.importorskip("mangum")
    from django.core.handlers.asgi import ASGIHandler

    event = {"requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:..."}}, "httpMethod": "GET",
             "path": "/", "queryStringParameters": {}, "body": "", "isBase64Encoded": False,
             "headers": {"host": "testserver", "x-forwarded-for": "6.6.6.6, 203.0.113.9", "x-forwarded-proto": "https",
                         "x-real-ip": "6.6.6.6"}}
    with override_settings(TRUEIP={"trust": ["any"], "strategy": "hops:1"}):
        handler = mangum.Mangum(ASGIHandler(), lifespan="off")
        response = handler(event, type("Context", (), {"aws_request_id": "1"})())
    assert response["statusCode"] == 200, response
    got = json.loads(response["body"])
    assert got == {"addr": "203.0.113.9", "secure": True, "host": "testserver", "xff": "6.6.6.6, 203.0.113.9",
                   "source": "x-forwarded-for[-1]"}


def test_under_mangum_behind_cloudfront_a_function_urls_forwarded_for_does_not_reach_the_app() -> None:
    """Django's ASGI handler under Mangum, CloudFront -> Function URL, the client having sent
    X-Forwarded-For: 6.6.6.6, which the URL kept. The edge is a trusted hop, so the scheme it
    reported passes and CloudFront-Viewer-Address decides; the X-Forwarded-For is the
    client's text, never read, and withheld from META (the core's rule, `Hop::trusted` over
    `x_forwarded_for_not_kept`). Django's view saw "6.6.6.6" there before."""
    mangum = pytest.importorskip("mangum")
    from pathlib import Path

    from django.core.handlers.asgi import ASGIHandler

    ranges = Path(__file__).resolve().parents[1] / "examples" / "flask_cloudfront_alb" / "ip-ranges.json"
    host = "a3ymxmplrmz4w6khwt4wxdpd3u0qabqy.lambda-url.us-west-2.on.aws"
    event = {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "isBase64Encoded": False,
             "headers": {"host": "testserver", "x-forwarded-for": "6.6.6.6", "x-forwarded-proto": "https",
                         "cloudfront-viewer-address": "198.51.100.7:50123"},
             "requestContext": {"domainName": host, "http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1",
                                                             "sourceIp": "13.32.0.1", "userAgent": "agent"}}}
    conf = {"lambda_preset": "cloudfront-api-gateway", "providers": {"cloudfront": str(ranges)}, "origin": ["proto"]}
    with override_settings(TRUEIP=conf):
        handler = mangum.Mangum(ASGIHandler(), lifespan="off")
        response = handler(event, type("Context", (), {"aws_request_id": "1"})())
    assert response["statusCode"] == 200, response
    got = json.loads(response["body"])
    assert got == {"addr": "198.51.100.7", "secure": True, "host": "testserver", "xff": None,
                   "source": "cloudfront-viewer-address"}


def test_under_a_wsgi_adapter_the_event_names_the_peer() -> None:
    """Django's WSGI handler on Lambda under apig-wsgi: META is the adapter's environ, whose
    REMOTE_ADDR for a REST API event is the first X-Forwarded-For entry, here the client's
    own 6.6.6.6. The middleware decides from the event the adapter keeps there
    (apig_wsgi.full_event): API Gateway saw 52.255.255.12, which no hop vouches past."""
    apig_wsgi = pytest.importorskip("apig_wsgi")
    from django.core.handlers.wsgi import WSGIHandler

    event = {"resource": "/", "path": "/", "httpMethod": "GET", "queryStringParameters": None, "body": None,
             "isBase64Encoded": False, "requestContext": {"stage": "default", "identity": {"sourceIp": "52.255.255.12"}},
             "headers": {"Host": "testserver", "X-Forwarded-For": "6.6.6.6, 52.255.255.12, 130.176.91.14",
                         "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}}
    response = apig_wsgi.make_lambda_handler(WSGIHandler())(event, None)
    assert response["statusCode"] == 200, response
    got = json.loads(response["body"])
    assert got == {"addr": "52.255.255.12", "secure": True, "host": "testserver", "xff": None, "source": "peer"}


def test_under_asgi_the_scope_lines_decide_not_a_folded_meta() -> None:
    """Django's ASGI handler folded `X_Forwarded_For` into META's HTTP_X_FORWARDED_FOR, after
    the line a trusted proxy wrote, until 5.2.13 and 6.0.4 (CVE-2026-3902); Caddy, Traefik,
    Envoy, HAProxy and an ALB pass such a line on. The middleware once decided from META, so
    the client chose REMOTE_ADDR. It now decides from the scope's lines, and the client-IP
    keys in META are the lines that pass. META here is as Django 5.2.12 built it."""
    from django.core.handlers.asgi import ASGIRequest
    import io

    scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "query_string": b"", "scheme": "http",
             "client": ("10.0.0.5", 1), "server": ("10.0.0.1", 8000),
             "headers": [(b"host", b"testserver"), (b"x-forwarded-for", b"198.51.100.1, 203.0.113.9"),
                         (b"x_forwarded_for", b"6.6.6.6"), (b"x-real-ip", b"1.2.3.4"), (b"x_real_ip", b"6.6.6.6"),
                         (b"x-forwarded-proto", b"http"), (b"x_forwarded_proto", b"https")]}
    request = ASGIRequest(scope, io.BytesIO())
    request.META.update({"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.9,6.6.6.6", "HTTP_X_REAL_IP": "1.2.3.4,6.6.6.6",
                         "HTTP_X_FORWARDED_PROTO": "http,https"})
    got = json.loads(TrueIPMiddleware(whoami)(request).content)
    assert got == {"addr": "203.0.113.9", "secure": False, "host": "testserver", "xff": "198.51.100.1, 203.0.113.9",
                   "source": "x-forwarded-for[-1]"}
    assert "HTTP_X_REAL_IP" not in request.META
    assert request.META["HTTP_X_FORWARDED_PROTO"] == "http"
    assert request.META["trueip.original"]["HTTP_X_FORWARDED_FOR"] == "198.51.100.1, 203.0.113.9,6.6.6.6"


def test_under_asgi_a_name_that_upper_cases_into_a_forwarding_header_does_not_reach_meta() -> None:
    """Django's ASGI handler upper-cases names as Latin-1, and "ß".upper() is "SS": from a
    trusted hop a client's `X-Forwarded-\\xdfl: on` became META's HTTP_X_FORWARDED_SSL (a
    claim about the scheme, which passes a trusted hop), on Django 5.2.19 too. The line is
    not a token and is withheld (`ForwardingSet::withheld`); META's key follows the lines."""
    from django.core.handlers.asgi import ASGIRequest
    import io

    scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "query_string": b"", "scheme": "http",
             "client": ("10.0.0.5", 1), "server": ("10.0.0.1", 8000),
             "headers": [(b"host", b"testserver"), (b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-\xdfl", b"on")]}
    request = ASGIRequest(scope, io.BytesIO())
    assert request.META["HTTP_X_FORWARDED_SSL"] == "on"
    got = json.loads(TrueIPMiddleware(whoami)(request).content)
    assert got["addr"] == "203.0.113.9"
    assert "HTTP_X_FORWARDED_SSL" not in request.META


ALB_EVENT = {"requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:..."}}, "httpMethod": "GET",
             "path": "/", "queryStringParameters": {}, "body": "", "isBase64Encoded": False,
             "headers": {"host": "testserver", "x-forwarded-for": "6.6.6.6, 203.0.113.9", "x-forwarded-proto": "https",
                         "x-real-ip": "6.6.6.6"}}


def test_the_lambda_preset_setting() -> None:
    """TRUEIP = {"lambda_preset": "alb"} is `Policy.lambda_preset("alb")`; a name of no
    preset, or keys the preset does not take, are ImproperlyConfigured."""
    with override_settings(TRUEIP={"lambda_preset": "alb", "origin": ["proto"]}):
        policy = policy_from_settings()
    assert "alb" in repr(policy) and "lambda_preset" in repr(policy)
    assert trueip.aws_lambda.resolve_event(policy, ALB_EVENT).ip_str == "203.0.113.9"
    # Given a peer, not an event, it trusts no one (the core's rule for a preset's policy).
    assert policy.resolve("10.9.9.9", {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}).ip_str == "10.9.9.9"
    for conf, message in [
        ({"lambda_preset": "nlb"}, 'unknown Lambda preset "nlb".*cloudfront-api-gateway'),
        ({"lambda_preset": "alb", "trust": ["any"]}, "lambda_preset.*not \\['trust'\\]"),
        ({"lambda_preset": ["alb"]}, "preset's name"),
        ({"lambda_preset": "cloudfront-alb"}, "cloudfront"),
    ]:
        with override_settings(TRUEIP=conf):
            with pytest.raises(ImproperlyConfigured, match=message):
                TrueIPMiddleware(lambda r: None)


def test_a_lambda_preset_without_an_event_trusts_no_header() -> None:
    """The project on Lambda set the ALB preset, and runs the same settings under
    `runserver` or gunicorn: no event, so no proxy is trusted. REMOTE_ADDR is the peer and
    the forged headers are withheld; `{"trust": ["any"], "strategy": "hops:1"}`, which the
    README once gave for the ALB, made 6.6.6.6 the client here."""
    with override_settings(TRUEIP={"lambda_preset": "alb"}):
        got = Client(REMOTE_ADDR="198.51.100.20").get(
            "/", headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "X-Forwarded-Proto": "https"}
        ).json()
    assert got == {"addr": "198.51.100.20", "secure": False, "host": "testserver", "xff": None, "source": "peer"}


def test_a_lambda_preset_under_asgi_without_mangum_trusts_no_header() -> None:
    """The same under Django's ASGI handler without Mangum (uvicorn): no `aws.event`."""
    from django.core.handlers.asgi import ASGIRequest
    import io

    scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "query_string": b"", "scheme": "http",
             "client": ("198.51.100.20", 1), "server": ("10.0.0.1", 8000),
             "headers": [(b"host", b"testserver"), (b"x-forwarded-for", b"6.6.6.6"), (b"x-real-ip", b"6.6.6.6"),
                         (b"x-forwarded-proto", b"https")]}
    request = ASGIRequest(scope, io.BytesIO())
    with override_settings(TRUEIP={"lambda_preset": "alb"}):
        middleware = TrueIPMiddleware(whoami)
    got = json.loads(middleware(request).content)
    assert got == {"addr": "198.51.100.20", "secure": False, "host": "testserver", "xff": None, "source": "peer"}
    assert "HTTP_X_REAL_IP" not in request.META and request.trueip.trusted_hop is False


def test_the_lambda_preset_setting_under_mangum_decides_from_the_event() -> None:
    """Under Mangum the event is found, and the ALB preset decides from it as before."""
    mangum = pytest.importorskip("mangum")
    from django.core.handlers.asgi import ASGIHandler

    with override_settings(TRUEIP={"lambda_preset": "alb"}):
        handler = mangum.Mangum(ASGIHandler(), lifespan="off")
        response = handler(json.loads(json.dumps(ALB_EVENT)), type("Context", (), {"aws_request_id": "1"})())
    assert response["statusCode"] == 200, response
    got = json.loads(response["body"])
    assert got == {"addr": "203.0.113.9", "secure": True, "host": "testserver", "xff": "6.6.6.6, 203.0.113.9",
                   "source": "x-forwarded-for[-1]"}


def test_the_lambda_preset_setting_under_a_wsgi_adapter_decides_from_the_event() -> None:
    """Under apig-wsgi the event the adapter keeps in META decides, as before."""
    apig_wsgi = pytest.importorskip("apig_wsgi")
    from django.core.handlers.wsgi import WSGIHandler

    with override_settings(TRUEIP={"lambda_preset": "alb"}):
        response = apig_wsgi.make_lambda_handler(WSGIHandler())(json.loads(json.dumps(ALB_EVENT)), None)
    assert response["statusCode"] == 200, response
    got = json.loads(response["body"])
    assert got == {"addr": "203.0.113.9", "secure": True, "host": "testserver", "xff": "6.6.6.6, 203.0.113.9",
                   "source": "x-forwarded-for[-1]"}


def test_request_headers_read_before_the_middleware_are_read_again_after() -> None:
    """Django keeps `request.headers` (a copy of META) the first time anything reads it, and
    `build_absolute_uri`'s scheme and host: a middleware listed before this one that logs a
    header (or the URL) kept a stranger's X-Forwarded-For, and the view read it after the
    middleware removed HTTP_X_FORWARDED_FOR from META."""
    from django.test import RequestFactory

    def view(request: Any) -> JsonResponse:
        return JsonResponse({
            "xff": request.headers.get("X-Forwarded-For"),
            "url": request.build_absolute_uri("/"),
        })

    def outer(get_response: Any) -> Any:
        def middleware(request: Any) -> Any:
            request.headers.get("X-Forwarded-For")
            request.build_absolute_uri("/")
            return get_response(request)
        return middleware

    stranger = RequestFactory().get("/", REMOTE_ADDR="198.51.100.20", headers={"X-Forwarded-For": "6.6.6.6"})
    got = json.loads(outer(TrueIPMiddleware(view))(stranger).content)
    assert got == {"xff": None, "url": "http://testserver/"}

    hop = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.5",
        headers={"X-Forwarded-For": "203.0.113.195", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"},
    )
    got = json.loads(outer(TrueIPMiddleware(view))(hop).content)
    assert got == {"xff": "203.0.113.195", "url": "https://shop.example/"}


def test_djangos_own_proxy_settings_read_nothing_a_stranger_wrote() -> None:
    """`SECURE_PROXY_SSL_HEADER` and `USE_X_FORWARDED_HOST`/`PORT` make `is_secure()` and
    `get_host()` read META at each call: the headers they name are in the table the
    middleware withholds from a stranger, so a stranger's never reaches them."""
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "8443"}
    with override_settings(
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), USE_X_FORWARDED_HOST=True, USE_X_FORWARDED_PORT=True
    ):
        got = Client(REMOTE_ADDR="198.51.100.20").get("/", headers=forged).json()
    assert (got["secure"], got["host"]) == (False, "testserver")


def test_a_secure_proxy_ssl_header_a_stranger_could_write_is_improperly_configured() -> None:
    """A `SECURE_PROXY_SSL_HEADER` the middleware does not withhold from a stranger
    (`X-Url-Scheme`) would let one make `is_secure()` true; `Front-End-Https` and `X-Scheme`
    are withheld now."""
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_URL_SCHEME", "https")):
        with pytest.raises(ImproperlyConfigured, match="SECURE_PROXY_SSL_HEADER"):
            TrueIPMiddleware(whoami)
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_FRONT_END_HTTPS", "on")):
        TrueIPMiddleware(whoami)
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_SCHEME", "https")):
        TrueIPMiddleware(whoami)
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        TrueIPMiddleware(whoami)


def test_under_asgi_request_scope_carries_the_client_and_the_lines_that_pass() -> None:
    """Django's ASGI request keeps the scope it was built from, and a view (or a library
    handed `request.scope`) reads the client and header lines there: they were the peer and
    a stranger's X-Forwarded-For after the middleware had withheld it from META."""
    from django.core.handlers.asgi import ASGIRequest
    import io

    def view(request: Any) -> JsonResponse:
        return JsonResponse({
            "client": list(request.scope["client"]),
            "lines": sorted(n.decode() for n, _ in request.scope["headers"]),
            "scheme": request.scope["scheme"],
        })

    def scope(peer: str, *lines: tuple[bytes, bytes]) -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": "/", "root_path": "", "query_string": b"", "scheme": "http",
                "client": (peer, 1234), "server": ("10.0.0.1", 8000), "headers": [(b"host", b"testserver"), *lines]}

    stranger = ASGIRequest(scope("198.51.100.20", (b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https")),
                           io.BytesIO())
    got = json.loads(TrueIPMiddleware(view)(stranger).content)
    assert got == {"client": ["198.51.100.20", 0], "lines": ["host"], "scheme": "http"}

    hop = ASGIRequest(scope("10.0.0.5", (b"x-forwarded-for", b"203.0.113.9"), (b"x-real-ip", b"6.6.6.6"),
                            (b"x-forwarded-proto", b"https")), io.BytesIO())
    got = json.loads(TrueIPMiddleware(view)(hop).content)
    assert got == {"client": ["203.0.113.9", 0], "lines": ["host", "x-forwarded-for", "x-forwarded-proto"],
                   "scheme": "https"}
