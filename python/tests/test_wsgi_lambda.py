"""trueip.wsgi on AWS Lambda under the WSGI adapters: serverless-wsgi, apig-wsgi, aws-wsgi
(run for real) and Zappa (an environ shaped as its code builds it). Each keeps the event in
the environ; the middleware decides from it, as trueip.aws_lambda does, whatever the
adapter put in REMOTE_ADDR."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest

import trueip
from trueip.aws_lambda import resolve_event
from trueip.wsgi import TrueIP

EVENTS = Path(__file__).resolve().parents[2] / "crates" / "trueip" / "tests" / "lambda_events"
ALB = trueip.Policy.lambda_preset("alb")
API = trueip.Policy.lambda_preset("api-gateway")
# CloudFront's origin-facing range in the example's stand-in ip-ranges.json: 13.32.0.0/15.
RANGES = Path(__file__).resolve().parents[1] / "examples" / "flask_cloudfront_alb" / "ip-ranges.json"
CLOUDFRONT_ALB = trueip.Policy.lambda_preset("cloudfront-alb", providers={"cloudfront": str(RANGES)})
CONTEXT = type("Context", (), {"aws_request_id": "1", "function_name": "f"})()


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def with_xff(e: dict[str, Any], xff: Any) -> dict[str, Any]:
    """`e` with its X-Forwarded-For set, in both header objects where it has both (as REST
    API events carry it)."""
    for field in ("headers", "multiValueHeaders"):
        headers = e.get(field)
        if headers:
            name = next((k for k in headers if k.lower() == "x-forwarded-for"), "x-forwarded-for")
            headers[name] = ([xff] if isinstance(xff, str) else xff) if field == "multiValueHeaders" else (
                xff if isinstance(xff, str) else ", ".join(xff))
    return e


def around_cloudfront() -> dict[str, Any]:
    """Sent to the ALB directly, not through CloudFront, with a CloudFront address written
    first and a viewer of the sender's choosing; the ALB appends the sender, 198.51.100.66."""
    e = with_xff(event("alb.json"), "13.32.0.1, 198.51.100.66")
    e["headers"]["cloudfront-viewer-address"] = "1.2.3.4:443"
    return e


def http_api(source_ip: str, xff: str) -> dict[str, Any]:
    e = with_xff(event("api_gateway_v2.json"), xff)
    e["requestContext"]["http"]["sourceIp"] = source_ip
    return e


def function_url() -> dict[str, Any]:
    e = event("function_url.json")
    # serverless-wsgi 3.1 reads requestContext.authorizer.principalId, and fails on the
    # example's `"authorizer": null`.
    del e["requestContext"]["authorizer"]
    return e


# AWS's examples (Elastic Load Balancing: "X-Forwarded-For"; the Lambda developer guide's
# events), and the same with a first entry the client wrote: an ALB and API Gateway append
# the address they saw to what the client sent.
ALB_XFF = "203.0.113.195, 70.41.3.18, 150.172.238.178"
V6 = "2001:db8:85a3::8a2e:370:7334"
CASES: dict[str, tuple[Callable[[], dict[str, Any]], trueip.Policy, str]] = {
    "alb": (lambda: event("alb.json"), ALB, "150.172.238.178"),
    "alb, forged first entry": (lambda: with_xff(event("alb.json"), "6.6.6.6, " + ALB_XFF), ALB, "150.172.238.178"),
    "alb multi-value, forged first entry": (
        lambda: with_xff(event("alb_multi.json"), ["6.6.6.6, 203.0.113.195, 70.41.3.18", "150.172.238.178"]), ALB,
        "150.172.238.178"),
    "cloudfront-alb, sent around cloudfront": (around_cloudfront, CLOUDFRONT_ALB, "198.51.100.66"),
    "rest api": (lambda: event("api_gateway_v1.json"), API, "52.255.255.12"),
    "rest api, forged first entry": (
        lambda: with_xff(event("api_gateway_v1.json"), "6.6.6.6, 52.255.255.12, 130.176.91.14"), API, "52.255.255.12"),
    "http api": (lambda: event("api_gateway_v2.json"), API, "205.255.255.176"),
    "http api, forged first entry": (lambda: http_api("205.255.255.176", "6.6.6.6, 205.255.255.176"), API, "205.255.255.176"),
    "http api, ipv6, forged first entry": (lambda: http_api(V6, "6.6.6.6, " + V6), API, V6),
    "function url (ipv6)": (function_url, API, "2001:db8:85a3:8d3:1319:8a2e:370:7348"),
}

# What each adapter puts in REMOTE_ADDR, as its code does (read in these versions):
# - serverless-wsgi 3.1 (serverless_wsgi.py handle_payload_v1, _v2): requestContext
#   identity.sourceIp or http.sourceIp; an ALB event has neither: "".
# - apig-wsgi 2.20 (apig_wsgi/__init__.py get_environ_v1): payload 1.0 and ALB, the first
#   entry of the last X-Forwarded-For line, else "127.0.0.1"; get_environ_v2: http.sourceIp.
# - aws-wsgi 0.2.7 (awsgi/__init__.py environ; archived 2024): the first X-Forwarded-For
#   entry of `headers`, else "127.0.0.1"; payload 1.0 and ALB only (it reads httpMethod).
# - Zappa 0.63 (zappa/wsgi.py create_wsgi_request): the second to last X-Forwarded-For
#   entry ("the last one is the cloudfront proxy ip"), the only one, or "127.0.0.1".
ADAPTER_REMOTE_ADDR = {
    "alb": {"serverless-wsgi": "", "apig-wsgi": "203.0.113.195", "aws-wsgi": "203.0.113.195", "zappa": "70.41.3.18"},
    "alb, forged first entry": {"serverless-wsgi": "", "apig-wsgi": "6.6.6.6", "aws-wsgi": "6.6.6.6", "zappa": "70.41.3.18"},
    "alb multi-value, forged first entry": {"serverless-wsgi": "", "apig-wsgi": "150.172.238.178", "zappa": "70.41.3.18"},
    "cloudfront-alb, sent around cloudfront": {"serverless-wsgi": "", "apig-wsgi": "13.32.0.1", "aws-wsgi": "13.32.0.1",
                                               "zappa": "13.32.0.1"},
    "rest api": {"serverless-wsgi": "52.255.255.12", "apig-wsgi": "52.255.255.12", "aws-wsgi": "52.255.255.12",
                 "zappa": "52.255.255.12"},
    "rest api, forged first entry": {"serverless-wsgi": "52.255.255.12", "apig-wsgi": "6.6.6.6", "aws-wsgi": "6.6.6.6",
                                     "zappa": "52.255.255.12"},
    "http api": {"serverless-wsgi": "205.255.255.176", "apig-wsgi": "205.255.255.176", "zappa": "205.255.255.176"},
    "http api, forged first entry": {"serverless-wsgi": "205.255.255.176", "apig-wsgi": "205.255.255.176",
                                     "zappa": "6.6.6.6"},
    "http api, ipv6, forged first entry": {"serverless-wsgi": V6, "apig-wsgi": V6, "zappa": "6.6.6.6"},
    "function url (ipv6)": {"serverless-wsgi": "2001:db8:85a3:8d3:1319:8a2e:370:7348",
                            "apig-wsgi": "2001:db8:85a3:8d3:1319:8a2e:370:7348", "zappa": "2001:db8:85a3:8d3:1319:8a2e:370:7348"},
}


def zappa_environ(e: dict[str, Any]) -> dict[str, Any]:
    """The parts of the environ Zappa 0.63's handler builds that trueip reads (Zappa is not
    installed: it brings boto3, troposphere and more). zappa/wsgi.py create_wsgi_request:
    headers title-cased, payload 1.0's merged with `multiValueHeaders` joined by ", "
    (zappa/utilities.py merge_headers), each as HTTP_*; REMOTE_ADDR as above.
    zappa/handler.py _create_lambda_wsgi_environ: wsgi.url_scheme "https", and the event as
    `lambda.event`."""
    if e.get("version") == "2.0":
        raw = dict(e["headers"])
    else:
        raw = {k: ", ".join(v) for k, v in (e.get("multiValueHeaders") or {}).items()}
        for k, v in (e.get("headers") or {}).items():
            raw.setdefault(k, v)
    headers = {k.title(): v for k, v in raw.items()}
    xff = headers.get("X-Forwarded-For", "")
    remote_addr = [a.strip() for a in xff.split(",")][-2] if "," in xff else xff or "127.0.0.1"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": e.get("httpMethod") or e["requestContext"]["http"]["method"],
        "PATH_INFO": e.get("path") or e["rawPath"],
        "QUERY_STRING": "",
        "REMOTE_ADDR": remote_addr,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "zappa",
        "SERVER_PORT": headers.get("X-Forwarded-Port", "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https",
        "HTTPS": "on",
        "lambda.event": e,
        "lambda.context": CONTEXT,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = str(value)
    return environ


def run(adapter: str, app: Any, e: dict[str, Any]) -> None:
    """Runs `app` as the adapter does for event `e`."""
    if adapter == "serverless-wsgi":
        serverless_wsgi = pytest.importorskip("serverless_wsgi")
        serverless_wsgi.handle_request(app, e, CONTEXT)
    elif adapter == "apig-wsgi":
        apig_wsgi = pytest.importorskip("apig_wsgi")
        apig_wsgi.make_lambda_handler(app)(e, CONTEXT)
    elif adapter == "aws-wsgi":
        awsgi = pytest.importorskip("awsgi")
        awsgi.response(app, e, CONTEXT)
    else:
        app(zappa_environ(e), lambda *a: None)


def seen_by(adapter: str, policy: trueip.Policy, e: dict[str, Any]) -> dict[str, Any]:
    """The environ the app sees behind the middleware, under `adapter`, for event `e`."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    run(adapter, TrueIP(app, policy), e)
    return seen


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "apig-wsgi", "aws-wsgi", "zappa"])
@pytest.mark.parametrize("case", list(CASES))
def test_under_a_wsgi_adapter_the_event_decides(adapter: str, case: str) -> None:
    """Whatever the adapter put in REMOTE_ADDR, the app sees what resolve_event decides for
    the event. The adapter's choice is the client's where it is a forged entry: apig-wsgi
    and aws-wsgi under a REST API (6.6.6.6), Zappa under an HTTP API (6.6.6.6), and all
    three behind CloudFront and an ALB, where the CloudFront address the sender wrote
    first would make its CloudFront-Viewer-Address (1.2.3.4) believed."""
    if adapter not in ADAPTER_REMOTE_ADDR[case]:
        pytest.skip(f"{adapter} does not read this event")  # aws-wsgi: payload 1.0's `headers` only
    make, policy, client = CASES[case]
    e = make()
    want = resolve_event(policy, copy.deepcopy(e))
    assert want.ip_str == client
    seen = seen_by(adapter, policy, e)
    assert seen["trueip.original"]["REMOTE_ADDR"] == ADAPTER_REMOTE_ADDR[case][adapter]
    assert seen["trueip.resolution"] == want
    assert seen["REMOTE_ADDR"] == client
    if policy is API:
        # API Gateway is the peer and trusted by nothing: the client wrote every entry.
        assert want.source == "peer" and "HTTP_X_FORWARDED_FOR" not in seen


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "apig-wsgi", "aws-wsgi", "zappa"])
def test_an_underscore_spelling_does_not_stand_in_for_the_albs_header(adapter: str) -> None:
    """An ALB passes `X_Forwarded_For` on unless it drops invalid header fields (off by
    default), and every adapter folds it into HTTP_X_FORWARDED_FOR with the header the ALB
    appended to, the later one in the event winning. The event's own headers decide."""
    e = event("alb.json")
    e["headers"]["x-forwarded-for"] = "203.0.113.9"
    e["headers"]["x_forwarded_for"] = "6.6.6.6"
    seen = seen_by(adapter, ALB, e)
    assert seen["trueip.original"]["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"
    assert seen["REMOTE_ADDR"] == "203.0.113.9" == resolve_event(ALB, e).ip_str


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "apig-wsgi", "aws-wsgi", "zappa"])
def test_the_headers_that_pass_a_trusted_alb_are_the_events_not_the_adapters(adapter: str) -> None:
    """Behind a trusted ALB the X-Forwarded-For the decision read, and the claims about the
    request, reach the app: the event's values, not the adapter's HTTP_* keys, into which it
    folded the client's `x_forwarded_for` and `x_forwarded_proto` (found in review: the app
    saw HTTP_X_FORWARDED_FOR "6.6.6.6", all of it the client's, and Flask's access_route
    said 6.6.6.6). A key whose header the event does not carry is removed."""
    e = event("alb.json")
    e["headers"].update({"x-forwarded-for": "198.51.100.1, 203.0.113.9", "x_forwarded_for": "6.6.6.6",
                         "x_forwarded_proto": "https", "x_forwarded_host": "evil.example"})
    e["headers"].pop("x-forwarded-port", None)
    e["headers"]["x_forwarded_port"] = "8443"
    proto = e["headers"]["x-forwarded-proto"]
    seen = seen_by(adapter, ALB, e)
    assert seen["REMOTE_ADDR"] == "203.0.113.9"
    assert seen["HTTP_X_FORWARDED_FOR"] == "198.51.100.1, 203.0.113.9"
    assert seen["HTTP_X_FORWARDED_PROTO"] == proto
    assert "HTTP_X_FORWARDED_HOST" not in seen
    assert "HTTP_X_FORWARDED_PORT" not in seen
    assert seen["trueip.original"]["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "apig-wsgi", "aws-wsgi", "zappa"])
def test_an_event_trueip_cannot_read_leaves_no_address(adapter: str) -> None:
    """The API Gateway console's test invocation: sourceIp "test-invoke-source-ip", no
    X-Forwarded-For. No decision, and REMOTE_ADDR is emptied rather than left as the
    adapter's "127.0.0.1", which an app may take for a local caller."""
    e = event("api_gateway_v1.json")
    e["requestContext"]["identity"]["sourceIp"] = "test-invoke-source-ip"
    for field in ("headers", "multiValueHeaders"):
        e[field] = {k: v for k, v in e[field].items() if k != "X-Forwarded-For"}
    seen = seen_by(adapter, API, e)
    assert seen["trueip.resolution"] is None
    assert seen["REMOTE_ADDR"] == ""
    assert seen["trueip.original"]["REMOTE_ADDR"] in ("127.0.0.1", "test-invoke-source-ip")


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "apig-wsgi", "aws-wsgi", "zappa"])
@pytest.mark.parametrize("name", ["X-Forwarded-Host", "X-Scheme", "X-Forwarded-For"])
def test_a_clients_two_spellings_of_a_header_leave_the_app_its_address(adapter: str, name: str) -> None:
    """A REST API event keeps the case each line was sent in: a client that sends a header
    whose lines' order counts under two spellings once made the event unreadable, so the app
    got no address (an empty REMOTE_ADDR) under any policy, out of reach of a ban or a
    per-address limit. The header is not read now; the client is sourceIp, and every
    client-IP header is withheld (no hop is trusted with them)."""
    e = event("api_gateway_v1.json")
    for field in ("headers", "multiValueHeaders"):
        value = "6.6.6.6"
        e[field][name.lower()] = [value] if field == "multiValueHeaders" else value
        e[field].setdefault(name, ["h"] if field == "multiValueHeaders" else "h")
    seen = seen_by(adapter, API, e)
    assert seen["REMOTE_ADDR"] == "52.255.255.12"
    assert "header_writer_not_trusted" in seen["trueip.resolution"].warnings
    assert not seen["trueip.resolution"].trusted_hop
    assert "HTTP_X_FORWARDED_FOR" not in seen


def test_serverless_wsgis_non_proxy_integration_keeps_its_remote_addr() -> None:
    """serverless-wsgi also serves API Gateway's non-proxy ("lambda") integration, whose
    event the mapping template shapes: no kind trueip reads, so REMOTE_ADDR (the template's
    identity.sourceIp) stays the peer."""
    e = {"body": {}, "method": "GET", "principalId": "", "stage": "dev", "requestPath": "/", "path": {}, "query": {},
         "identity": {"sourceIp": "198.51.100.7"},
         "headers": {"Host": "lambda.example", "X-Forwarded-For": "6.6.6.6, 198.51.100.7"}}
    seen = seen_by("serverless-wsgi", API, e)
    assert seen["REMOTE_ADDR"] == "198.51.100.7" and seen["trueip.resolution"].source == "peer"
    assert "HTTP_X_FORWARDED_FOR" not in seen


def test_an_event_the_core_cannot_copy_is_no_decision_not_an_error() -> None:
    """Headers nested past what the core copies (here, the event inside itself) are an
    event trueip cannot read: no decision, as for any other, never an exception that
    fails the request."""
    e: dict[str, Any] = {"requestContext": {"elb": {}}, "httpMethod": "GET", "path": "/"}
    e["headers"] = {"x": e}
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6",
               "apig_wsgi.full_event": e}
    TrueIP(app, ALB)(environ, lambda *a: None)
    assert seen["trueip.resolution"] is None and seen["REMOTE_ADDR"] == ""
    assert "HTTP_X_FORWARDED_FOR" not in seen


# A Lambda preset decides from the event only. The same app outside Lambda (`flask run`,
# gunicorn in a container, a test deployment) has no event, and the ALB preset (`hops:1`
# trusting `any`) would believe the last X-Forwarded-For element whoever sent it.
FORGED = {"HTTP_X_FORWARDED_FOR": "6.6.6.6", "HTTP_X_REAL_IP": "6.6.6.6", "HTTP_TRUE_CLIENT_IP": "6.6.6.6",
          "HTTP_CLOUDFRONT_VIEWER_ADDRESS": "6.6.6.6:443", "HTTP_X_FORWARDED_PROTO": "https",
          "HTTP_X_FORWARDED_HOST": "evil.example"}


def plain_environ(**extra: Any) -> dict[str, Any]:
    return dict({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "app",
                 "SERVER_PORT": "8000", "HTTP_HOST": "app:8000", "wsgi.url_scheme": "http",
                 "REMOTE_ADDR": "198.51.100.20", "REMOTE_PORT": "41000"}, **FORGED, **extra)


def behind(policy: trueip.Policy, environ: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        start_response("200 OK", [])
        return [b""]

    TrueIP(app, policy, origin=("proto", "host", "port", "prefix"))(environ, lambda *a: None)
    return seen


@pytest.mark.parametrize("preset", ["alb", "cloudfront-alb", "api-gateway", "cloudfront-api-gateway"])
@pytest.mark.parametrize("found", ["no event", "an event of another kind"])
def test_a_lambda_preset_without_an_event_trusts_no_header(preset: str, found: str) -> None:
    """No adapter's event in the environ (a plain WSGI server), or one of no kind trueip
    reads: the request is decided as if no proxy were trusted. The peer is the client, and
    every client-IP header is withheld from the app, as from an untrusted peer. The ALB
    preset once made the forged 6.6.6.6 the client."""
    providers = {"cloudfront": str(RANGES)} if preset.startswith("cloudfront") else None
    policy = trueip.Policy.lambda_preset(preset, providers=providers)
    extra = {} if found == "no event" else {"serverless.event": {"method": "GET", "identity": {"sourceIp": "6.6.6.6"}}}
    seen = behind(policy, plain_environ(**extra))
    r = seen["trueip.resolution"]
    assert (seen["REMOTE_ADDR"], r.source, r.trusted_hop, r.trusted_hops) == ("198.51.100.20", "peer", False, 0)
    assert "header_from_untrusted_peer" in r.warnings
    assert not FORGED.keys() & seen.keys() - {"HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"}
    assert not seen.keys() & policy._withheld_environ_keys(None)
    assert (seen["wsgi.url_scheme"], seen["HTTP_HOST"]) == ("http", "app:8000")
    assert seen["trueip.original"]["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"
    # What a policy that trusts nothing lets through, exactly.
    untrusted = behind(trueip.Policy(), plain_environ(**extra))
    assert {k: v for k, v in seen.items() if k.startswith(("HTTP_", "REMOTE_"))} == {
        k: v for k, v in untrusted.items() if k.startswith(("HTTP_", "REMOTE_"))}


def test_a_lambda_preset_under_a_plain_wsgi_server_gives_the_peer() -> None:
    """The same app served by a real WSGI server (wsgiref, as `flask run` serves), a client
    sending `X-Forwarded-For: 6.6.6.6` straight to it."""
    import http.client
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REMOTE_ADDR"].encode()]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, TrueIP(app, ALB), handler_class=Quiet)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("GET", "/", headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"})
        body = conn.getresponse().read()
        conn.close()
    finally:
        thread.join(10)
        server.server_close()
    assert body == b"127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in seen and "HTTP_X_REAL_IP" not in seen
    assert seen["trueip.resolution"].trusted_hop is False


def test_a_lambda_preset_without_an_event_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """The operator sees the misconfiguration: one warning on the `trueip` logger, naming
    the preset and the fix, however many requests follow."""
    policy = trueip.Policy.lambda_preset("alb")
    assert "lambda_preset='alb'" in repr(policy) or 'lambda_preset="alb"' in repr(policy)
    with caplog.at_level("WARNING", logger="trueip"):
        behind(policy, plain_environ())
        behind(policy, plain_environ())
    records = [r for r in caplog.records if r.name == "trueip"]
    assert len(records) == 1, records
    message = records[0].getMessage()
    assert 'Policy.lambda_preset("alb")' in message and "events only" in message and "Policy(trust=" in message


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "apig-wsgi", "zappa"])
def test_under_a_wsgi_adapter_the_alb_preset_does_not_believe_a_function_urls_forwarded_for(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same function reached through its Function URL, which keeps only the first
    X-Forwarded-For value a client sent: the ALB preset trusts no one for an event that is
    not an ALB's (the core's rule, `Preset::event_kinds`), so the client is the event's
    sourceIp, the forged header is withheld and the `trueip` logger warns. The app saw
    6.6.6.6 before the preset named the kinds of its chain."""
    policy = trueip.Policy.lambda_preset("alb")
    e = with_xff(function_url(), "6.6.6.6")
    source_ip = e["requestContext"]["http"]["sourceIp"]
    with caplog.at_level("WARNING", logger="trueip"):
        seen = seen_by(adapter, policy, e)
    resolution = seen["trueip.resolution"]
    assert seen["REMOTE_ADDR"] == source_ip == resolve_event(policy, copy.deepcopy(e)).ip_str
    assert not resolution.trusted_hop and "no_lambda_event" in resolution.warnings
    assert "HTTP_X_FORWARDED_FOR" not in seen
    records = [r for r in caplog.records if r.name == "trueip"]
    assert len(records) == 1 and "api-gateway preset" in records[0].getMessage(), records


CLOUDFRONT_API = trueip.Policy.lambda_preset("cloudfront-api-gateway", providers={"cloudfront": str(RANGES)})


def cloudfront_function_url() -> dict[str, Any]:
    """CloudFront -> Function URL, the client having sent X-Forwarded-For: 6.6.6.6: the URL
    kept only that first value (CloudFront appended the viewer after it), its sourceIp the
    edge; the edge wrote CloudFront-Viewer-Address over anything the client sent."""
    e = with_xff(function_url(), "6.6.6.6")
    e["requestContext"]["http"]["sourceIp"] = "13.32.0.1"
    e["headers"]["cloudfront-viewer-address"] = "198.51.100.7:50123"
    e["headers"]["x-forwarded-host"] = "app.example"
    return e


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "apig-wsgi", "zappa"])
def test_behind_cloudfront_a_function_urls_forwarded_for_does_not_reach_the_app(adapter: str) -> None:
    """The hop (CloudFront's edge) is trusted, so X-Forwarded-Host and the
    CloudFront-Viewer-Address that decided pass; the X-Forwarded-For the URL kept is the
    client's text, never read, and withheld as from an untrusted peer (the core's rule,
    `Hop::trusted` over `x_forwarded_for_not_kept`). The app saw HTTP_X_FORWARDED_FOR
    "6.6.6.6" before, which Flask's ProxyFix or python-ipware would take for the client.
    X-Forwarded-Proto and -Port, which name CloudFront's connection to the URL and no
    viewer's (`UNKEPT_CLAIMS`), are withheld too: they reached the app before."""
    e = cloudfront_function_url()
    want = resolve_event(CLOUDFRONT_API, copy.deepcopy(e))
    seen = seen_by(adapter, CLOUDFRONT_API, e)
    resolution = seen["trueip.resolution"]
    assert resolution == want and resolution.trusted_hop
    assert "x_forwarded_for_not_kept" in resolution.warnings
    assert seen["REMOTE_ADDR"] == "198.51.100.7"
    assert "HTTP_X_FORWARDED_FOR" not in seen
    assert seen["trueip.original"]["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"
    assert seen["HTTP_CLOUDFRONT_VIEWER_ADDRESS"] == "198.51.100.7:50123"
    assert "HTTP_X_FORWARDED_PROTO" not in seen and "HTTP_X_FORWARDED_PORT" not in seen
    assert seen["HTTP_X_FORWARDED_HOST"] == "app.example"
    # The same headers in an HTTP API event behind CloudFront: its X-Forwarded-For is walked
    # and passes, as before.
    api = http_api("13.32.0.1", "6.6.6.6, 198.51.100.7")
    seen = seen_by(adapter, CLOUDFRONT_API, api)
    assert seen["REMOTE_ADDR"] == "198.51.100.7"
    assert seen["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 198.51.100.7"
    assert "x_forwarded_for_not_kept" not in seen["trueip.resolution"].warnings


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "apig-wsgi", "aws-wsgi", "zappa"])
def test_under_a_wsgi_adapter_a_lambda_preset_decides_from_the_event_without_a_warning(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Under each adapter the event is found: the ALB preset decides from it as before
    (`resolve_event`'s answer, the ALB's own element) and nothing is logged."""
    policy = trueip.Policy.lambda_preset("alb")
    e = with_xff(event("alb.json"), "6.6.6.6, " + ALB_XFF)
    with caplog.at_level("WARNING", logger="trueip"):
        seen = seen_by(adapter, policy, e)
    assert seen["REMOTE_ADDR"] == "150.172.238.178" == resolve_event(policy, e).ip_str
    assert seen["trueip.resolution"] == resolve_event(policy, e) and seen["trueip.resolution"].trusted_hop
    assert not [r for r in caplog.records if r.name == "trueip"]


@pytest.mark.parametrize("adapter", ["serverless-wsgi", "zappa"])
def test_under_a_wsgi_adapter_a_signature_that_falls_back_keeps_the_events_stand_in(
    adapter: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``verify=``, a request whose signed header does not verify gets the peer: under an
    adapter's event, the event's stand-in, decided as the event's. It was decided as a
    connection's, which a preset's policy takes for a request without an event: flagged
    ``no_lambda_event`` (the core's rule, ``Event::peer_resolution``)."""
    key = tmp_path / "a.key"
    key.write_text("python-test-key-a-python-test-key-a-0123\n")
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with caplog.at_level("WARNING", logger="trueip"):
        run(adapter, TrueIP(app, trueip.Policy.lambda_preset("alb"), verify=trueip.Verifier(key)), event("alb.json"))
    resolution = seen["trueip.resolution"]
    assert seen["trueip.signature"] == "missing"
    assert seen["REMOTE_ADDR"] == "150.172.238.178"
    assert "signature_rejected" in resolution.warnings and "no_lambda_event" not in resolution.warnings
    assert not [r for r in caplog.records if r.name == "trueip"]
