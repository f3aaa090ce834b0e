"""trueip.aws_lambda over every kind of event, as dicts and as aws-lambda-powertools classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import trueip
from trueip.aws_lambda import EventError, explain_event, resolve_event, with_client

EVENTS = Path(__file__).resolve().parents[2] / "crates" / "trueip" / "tests" / "lambda_events"


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


ALB = trueip.Policy.lambda_preset("alb")
API = trueip.Policy.lambda_preset("api-gateway")


def test_alb_story_and_a_forged_first_entry() -> None:
    e = event("alb.json")
    assert e["headers"]["x-forwarded-for"] == "203.0.113.195, 70.41.3.18, 150.172.238.178"
    r = resolve_event(ALB, e)
    assert (r.ip_str, r.source, r.trusted_hops) == ("150.172.238.178", "x-forwarded-for[-1]", 1)
    assert r.spoof_attempt  # entries left of the ALB's own are the client's to write
    e["headers"]["x-forwarded-for"] = "1.2.3.4, " + e["headers"]["x-forwarded-for"]
    assert resolve_event(ALB, e).ip_str == "150.172.238.178"


def test_multi_value_alb_event() -> None:
    r = resolve_event(ALB, event("alb_multi.json"))
    assert r.trusted_hops == 1 and r.source == "x-forwarded-for[-1]"


def test_the_albs_line_is_the_last_of_several() -> None:
    """The shape a real ALB sent (laravel/vapor-core#25): the client's line untouched, the
    ALB's line after it. The answer is the ALB's element, as in the Rust core; a last line
    with no element is refused, not read from the line before it (client text)."""
    e = event("alb_multi_observed.json")
    assert e["multiValueHeaders"]["x-forwarded-for"] == ["203.0.113.7", "203.0.113.7, 198.51.100.9"]
    r = resolve_event(ALB, e)
    assert (r.ip_str, r.source, r.spoof_attempt) == ("198.51.100.9", "x-forwarded-for[-1]", True)
    e["multiValueHeaders"]["x-forwarded-for"].append(" , ")
    with pytest.raises(EventError, match="last line ending in the address the ALB saw"):
        resolve_event(ALB, e)


def test_a_websocket_event_uses_source_ip() -> None:
    e = event("api_gateway_websocket.json")
    assert e["requestContext"]["eventType"] == "CONNECT" and "version" not in e
    r = resolve_event(API, e)
    assert (r.ip_str, r.source) == ("192.0.2.1", "peer")


@pytest.mark.parametrize("name", ["vpc_lattice_v1.json", "vpc_lattice_v2.json"])
def test_vpc_lattice_events_are_refused_by_name(name: str) -> None:
    """No address in a VPC Lattice event is one Lattice vouches for. The binding copies only
    what the core reads, and that includes what tells a Lattice event."""
    for policy in (ALB, API):
        with pytest.raises(EventError, match="VPC Lattice"):
            resolve_event(policy, event(name))


@pytest.mark.parametrize("name", ["api_gateway_v1.json", "api_gateway_v2.json", "function_url.json"])
def test_api_gateway_and_function_urls_use_source_ip(name: str) -> None:
    e = event(name)
    context = e["requestContext"]
    source_ip = context.get("identity", context.get("http", {})).get("sourceIp")
    r = resolve_event(API, e)
    assert (r.ip_str, r.source) == (source_ip, "peer")


def test_powertools_event_classes() -> None:
    from aws_lambda_powertools.utilities.data_classes import (
        ALBEvent,
        APIGatewayProxyEvent,
        APIGatewayProxyEventV2,
        LambdaFunctionUrlEvent,
    )

    assert resolve_event(ALB, ALBEvent(event("alb.json"))).ip_str == "150.172.238.178"
    for cls, name in [(APIGatewayProxyEvent, "api_gateway_v1.json"), (APIGatewayProxyEventV2, "api_gateway_v2.json"),
                      (LambdaFunctionUrlEvent, "function_url.json")]:
        assert resolve_event(API, cls(event(name))) == resolve_event(API, event(name))


def test_decorator() -> None:
    @with_client(ALB)
    def handler(event: Any, context: Any, client: trueip.Resolution) -> dict[str, Any]:
        return {"statusCode": 200, "body": client.ip_str}

    assert handler(event("alb.json"), None) == {"statusCode": 200, "body": "150.172.238.178"}
    assert handler.__name__ == "handler"
    with pytest.raises(EventError, match="requestContext"):
        handler({"hello": "world"}, None)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"requestContext": "elb"},
        {"requestContext": {"elb": {}}, "headers": ["x-forwarded-for"]},
        {"requestContext": {"identity": {"sourceIp": "not an ip"}}},
        {"requestContext": {"http": {"sourceIp": 5}}, "version": "2.0"},
        [],
        "event",
    ],
)
def test_bad_events_are_event_errors(bad: Any) -> None:
    with pytest.raises(EventError):
        resolve_event(API, bad)


def test_a_self_containing_event_is_an_error_not_a_hang() -> None:
    e: dict[str, Any] = {"requestContext": {"elb": {}}}
    e["headers"] = {"x": e}
    with pytest.raises(EventError, match="nests deeper"):
        resolve_event(ALB, e)


def test_an_authorizer_context_of_any_depth_is_not_read() -> None:
    """An HTTP API's Lambda authorizer may hand the function a context nested as deep as it
    likes (requestContext.authorizer.lambda); the core never reads it, and `trueip explain
    --lambda-event` answers for such an event. It once raised "nests deeper than 8 levels"
    here, for every request that authorizer let through."""
    e = event("api_gateway_v2.json")
    deep: Any = "x"
    for _ in range(12):
        deep = {"a": deep}
    e["requestContext"]["authorizer"] = {"lambda": {"user": deep}}
    e["requestContext"]["identity"] = {"sourceIp": "198.51.100.9", "userAgent": deep}
    r = resolve_event(API, e)
    assert (r.ip_str, r.source) == (e["requestContext"]["http"]["sourceIp"], "peer")
    assert explain_event(API, e)["client_ip"] == r.ip_str


def test_explain_event_is_the_cli_json() -> None:
    d = explain_event(ALB, event("alb.json"))
    assert d["client_ip"] == "150.172.238.178"
    assert d["chain"] == ["203.0.113.195", "70.41.3.18", "150.172.238.178"]


def test_presets() -> None:
    with pytest.raises(trueip.PolicyError, match="unknown Lambda preset"):
        trueip.Policy.lambda_preset("nlb")
    with pytest.raises(trueip.PolicyError, match="cloudfront"):
        trueip.Policy.lambda_preset("cloudfront-alb")


def under_mangum(policy: trueip.Policy, e: dict[str, Any]) -> dict[str, Any]:
    """The scope an ASGI app behind `TrueIP(app, policy)` sees when real Mangum hands it
    the event `e`."""
    mangum = pytest.importorskip("mangum")
    from trueip.asgi import TrueIP

    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mangum.Mangum(TrueIP(app, policy), lifespan="off")(e, type("Context", (), {"aws_request_id": "1"})())
    return seen


@pytest.mark.parametrize("name", ["alb.json", "alb_multi.json", "api_gateway_v1.json", "api_gateway_v2.json", "function_url.json"])
def test_the_asgi_middleware_under_mangum_decides_from_the_event(name: str) -> None:
    """Mangum makes an ASGI scope of the event, and for an ALB its `client` is the whole
    X-Forwarded-For ("6.6.6.6, 203.0.113.9": a new key per forged entry, for any rate
    limiter). The ASGI middleware takes the peer from `scope["aws.event"]` as the core reads
    events, so the app sees what `resolve_event` decides, and no client-IP header of a
    client it did not vouch for."""
    e = event(name)
    alb = "elb" in e["requestContext"]
    policy = ALB if alb else API
    if alb:
        # The client forged the left of X-Forwarded-For; the ALB appended what it saw.
        xff = e["multiValueHeaders"] if "multiValueHeaders" in e else e["headers"]
        if isinstance(xff.get("x-forwarded-for"), list):
            xff["x-forwarded-for"][0] = "6.6.6.6, " + xff["x-forwarded-for"][0]
        else:
            xff["x-forwarded-for"] = "6.6.6.6, " + xff["x-forwarded-for"]
    seen = under_mangum(policy, e)
    want = resolve_event(policy, e)
    assert seen["trueip.resolution"] == want
    assert seen["client"] == (want.ip_str, want.port or 0)
    if alb:
        assert want.spoof_attempt and "6.6.6.6" not in seen["client"][0]


def test_under_mangum_an_event_trueip_cannot_read_leaves_no_client() -> None:
    """The API Gateway console's test invocation: sourceIp "test-invoke-source-ip", no
    X-Forwarded-For. No decision, and no client, as the WSGI middleware empties REMOTE_ADDR:
    Mangum's client there is not the peer."""
    e = event("api_gateway_v1.json")
    e["requestContext"]["identity"]["sourceIp"] = "test-invoke-source-ip"
    for field in ("headers", "multiValueHeaders"):
        e[field] = {k: v for k, v in e[field].items() if k.lower() != "x-forwarded-for"}
    seen = under_mangum(API, e)
    assert seen["trueip.resolution"] is None
    assert seen["client"] is None
    assert seen["trueip.original"]["client"] is not None


def test_under_mangum_an_event_of_another_kind_keeps_manguns_client() -> None:
    """Lambda@Edge is no event trueip reads; Mangum's client there is CloudFront's
    `clientIp`, the viewer CloudFront saw, and stays the peer (it once became none)."""
    edge = {"Records": [{"cf": {"config": {"distributionDomainName": "d.cloudfront.net", "eventType": "viewer-request"},
                                "request": {"clientIp": "203.0.113.178", "method": "GET", "uri": "/", "querystring": "",
                                            "headers": {"host": [{"key": "Host", "value": "d.cloudfront.net"}],
                                                        "x-forwarded-for": [{"key": "X-Forwarded-For", "value": "6.6.6.6"}]}}}}]}
    with pytest.raises(EventError, match="unknown Lambda event"):
        resolve_event(API, edge)
    seen = under_mangum(API, edge)
    assert seen["client"] == ("203.0.113.178", 0)
    assert seen["trueip.resolution"].ip_str == "203.0.113.178"
    assert seen["headers"] == [[b"host", b"d.cloudfront.net"]]


FORGED_LINES = [(b"host", b"app:8000"), (b"x-forwarded-for", b"6.6.6.6"), (b"x-real-ip", b"6.6.6.6"),
                (b"true-client-ip", b"6.6.6.6"), (b"cloudfront-viewer-address", b"6.6.6.6:443"),
                (b"x-forwarded-proto", b"https")]


def under_uvicorn(policy: trueip.Policy, extra: dict[str, Any]) -> dict[str, Any]:
    """The scope an ASGI app behind `TrueIP(app, policy)` sees for a connection from
    198.51.100.20 that a plain ASGI server (no Mangum) hands it."""
    import asyncio

    from trueip.asgi import TrueIP

    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = dict({"type": "http", "scheme": "http", "client": ("198.51.100.20", 41000), "server": ("10.0.0.1", 8000),
                  "path": "/", "root_path": "", "query_string": b"", "headers": list(FORGED_LINES)}, **extra)
    asyncio.run(TrueIP(app, policy, origin=("proto", "host", "port", "prefix"))(scope, None, None))
    return seen


@pytest.mark.parametrize("preset", ["alb", "api-gateway"])
@pytest.mark.parametrize("found", ["no aws.event", "an aws.event of another kind"])
def test_a_lambda_preset_without_mangums_event_trusts_no_header(preset: str, found: str) -> None:
    """An ASGI scope without `aws.event` (the same app under uvicorn), or with an event of
    no kind trueip reads: decided as if no proxy were trusted. The client is the peer, and
    every client-IP header is withheld, as from an untrusted peer. The ALB preset once made
    the forged 6.6.6.6 the client."""
    policy = trueip.Policy.lambda_preset(preset)
    extra = {} if found == "no aws.event" else {"aws.event": {"Records": [{"cf": {}}]}}
    seen = under_uvicorn(policy, extra)
    r = seen["trueip.resolution"]
    assert seen["client"] == ("198.51.100.20", 41000)
    assert (r.ip_str, r.source, r.trusted_hop, r.trusted_hops) == ("198.51.100.20", "peer", False, 0)
    assert "header_from_untrusted_peer" in r.warnings
    assert seen["headers"] == [(b"host", b"app:8000")]
    assert seen["scheme"] == "http"
    # What a policy that trusts nothing lets through, exactly.
    untrusted = under_uvicorn(trueip.Policy(), extra)
    assert (seen["headers"], seen["client"]) == (untrusted["headers"], untrusted["client"])


def test_a_lambda_preset_under_mangum_decides_from_the_event_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Under Mangum the event is found: the ALB preset decides from it as `resolve_event`
    does, and nothing is logged. Without it, one warning."""
    policy = trueip.Policy.lambda_preset("alb")
    e = event("alb.json")
    e["headers"]["x-forwarded-for"] = "6.6.6.6, " + e["headers"]["x-forwarded-for"]
    with caplog.at_level("WARNING", logger="trueip"):
        seen = under_mangum(policy, e)
        assert not [r for r in caplog.records if r.name == "trueip"]
        assert seen["trueip.resolution"] == resolve_event(policy, e)
        assert seen["client"][0] == "150.172.238.178" and seen["trueip.resolution"].trusted_hop
        under_uvicorn(policy, {})
        under_uvicorn(policy, {})
    assert len([r for r in caplog.records if r.name == "trueip"]) == 1


def test_under_mangum_the_alb_preset_does_not_believe_a_function_urls_forwarded_for() -> None:
    """The same function reached through its Function URL, which keeps only the first
    X-Forwarded-For value a client sent: the ALB preset trusts no one for an event that is
    not an ALB's (the core's rule, `Preset::event_kinds`). The client is the event's
    sourceIp and the forged line is withheld; the app saw 6.6.6.6 before."""
    policy = trueip.Policy.lambda_preset("alb")
    e = event("function_url.json")
    e["headers"]["x-forwarded-for"] = "6.6.6.6"
    seen = under_mangum(policy, e)
    r = seen["trueip.resolution"]
    assert seen["client"][0] == e["requestContext"]["http"]["sourceIp"] == r.ip_str
    assert not r.trusted_hop and "no_lambda_event" in r.warnings
    assert not [v for k, v in seen["headers"] if k.lower() == b"x-forwarded-for"]


# CloudFront's origin-facing range in the example's stand-in ip-ranges.json: 13.32.0.0/15.
RANGES = Path(__file__).resolve().parents[1] / "examples" / "flask_cloudfront_alb" / "ip-ranges.json"


def test_cloudfront_to_a_function_url_never_believes_its_x_forwarded_for() -> None:
    """CloudFront -> Function URL, the client having sent X-Forwarded-For: 6.6.6.6. A
    Function URL keeps only that first value (reported by speedrun.nobackspacecrew.com,
    "Obtaining caller ip address with Lambda FURLs"), so the core never reads it in a
    Function URL event: the client is the CloudFront-Viewer-Address the edge wrote, else
    the edge. Through Mangum's ASGI scope as through resolve_event; both answered 6.6.6.6
    before. The same headers in an HTTP API event are walked as before."""
    policy = trueip.Policy.lambda_preset("cloudfront-api-gateway", providers={"cloudfront": str(RANGES)})
    e = event("function_url.json")
    e["headers"]["x-forwarded-for"] = "6.6.6.6"
    e["requestContext"]["http"]["sourceIp"] = "13.32.0.1"
    r = resolve_event(policy, e)
    assert (r.ip_str, r.source) == ("13.32.0.1", "peer")
    assert explain_event(policy, e)["steps"][0]["subject"] == "function-url"
    seen = under_mangum(policy, e)
    assert seen["trueip.resolution"] == r
    assert seen["client"][0] == "13.32.0.1"

    e["headers"]["cloudfront-viewer-address"] = "198.51.100.7:50123"
    r = resolve_event(policy, e)
    assert (r.ip_str, r.source) == ("198.51.100.7", "cloudfront-viewer-address")
    assert under_mangum(policy, e)["client"] == ("198.51.100.7", 50123)

    http_api = event("api_gateway_v2.json")
    assert http_api["requestContext"]["domainName"].endswith(".execute-api.us-east-2.amazonaws.com")
    http_api["headers"]["x-forwarded-for"] = "6.6.6.6, 198.51.100.7, 13.32.0.1"
    http_api["requestContext"]["http"]["sourceIp"] = "13.32.0.1"
    assert resolve_event(policy, http_api).ip_str == "198.51.100.7"


def test_under_mangum_behind_cloudfront_a_function_urls_forwarded_for_does_not_reach_the_app() -> None:
    """CloudFront -> Function URL under Mangum, the client having sent X-Forwarded-For:
    6.6.6.6, which the URL kept. The hop (the edge) is trusted, so X-Forwarded-Host and the
    CloudFront-Viewer-Address that decided pass; the X-Forwarded-For is the client's text,
    never read, and withheld from the scope's lines (the core's rule, `Hop::trusted` over
    `x_forwarded_for_not_kept`). The app saw 6.6.6.6 there before. So are X-Forwarded-Proto
    and -Port, which name CloudFront's connection to the URL and no viewer's
    (`UNKEPT_CLAIMS`): they reached the app before. An HTTP API event with the same headers keeps
    its X-Forwarded-For, walked as before, and its scheme, which API Gateway writes."""
    policy = trueip.Policy.lambda_preset("cloudfront-api-gateway", providers={"cloudfront": str(RANGES)})
    e = event("function_url.json")
    e["headers"].update({"x-forwarded-for": "6.6.6.6", "cloudfront-viewer-address": "198.51.100.7:50123",
                         "x-forwarded-proto": "http", "x-forwarded-port": "80",
                         "x-forwarded-host": "example.com"})
    e["requestContext"]["http"]["sourceIp"] = "13.32.0.1"
    seen = under_mangum(policy, e)
    r = seen["trueip.resolution"]
    assert r == resolve_event(policy, e) and r.trusted_hop and "x_forwarded_for_not_kept" in r.warnings
    assert seen["client"] == ("198.51.100.7", 50123)
    headers = dict(seen["headers"])
    assert b"x-forwarded-for" not in headers
    assert b"x-forwarded-proto" not in headers and b"x-forwarded-port" not in headers
    assert headers[b"x-forwarded-host"] == b"example.com"
    assert headers[b"cloudfront-viewer-address"] == b"198.51.100.7:50123"

    http_api = event("api_gateway_v2.json")
    http_api["headers"]["x-forwarded-for"] = "6.6.6.6, 198.51.100.7"
    http_api["headers"]["x-forwarded-proto"] = "http"
    http_api["requestContext"]["http"]["sourceIp"] = "13.32.0.1"
    seen = under_mangum(policy, http_api)
    assert seen["client"][0] == "198.51.100.7"
    assert dict(seen["headers"])[b"x-forwarded-for"] == b"6.6.6.6, 198.51.100.7"
    assert seen["scheme"] == "http"


def test_a_function_url_event_whose_client_is_the_edge_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """CloudFront -> Function URL without CloudFront-Viewer-Address: every client is the
    edge. The core's line naming the fix reaches the `trueip` logger once per policy, as a
    preset's misuse line does; not for a client CloudFront-Viewer-Address named."""
    policy = trueip.Policy.lambda_preset("cloudfront-api-gateway", providers={"cloudfront": str(RANGES)})
    e = event("function_url.json")
    e["requestContext"]["http"]["sourceIp"] = "13.32.0.1"
    named = json.loads(json.dumps(e))
    named["headers"]["cloudfront-viewer-address"] = "198.51.100.7:50123"
    with caplog.at_level("WARNING", logger="trueip"):
        resolve_event(policy, named)
        assert not [r for r in caplog.records if r.name == "trueip"]
        resolve_event(policy, e)
        under_mangum(policy, e)
    records = [r.getMessage() for r in caplog.records if r.name == "trueip"]
    assert len(records) == 1 and "13.32.0.1" in records[0] and "CloudFront-Viewer-Address" in records[0], records


def zappa_scope(e: dict[str, Any]) -> dict[str, Any]:
    """The scope Zappa's ASGI handler (zappa/asgi.py, `create_asgi_scope`) builds from a
    payload 2.0 event: no event kept, the client the second-to-last X-Forwarded-For entry
    with port 0."""
    xff = e["headers"]["x-forwarded-for"]
    entries = [a.strip() for a in xff.split(",")]
    client = entries[-2] if len(entries) > 1 else xff
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "path": "/",
            "root_path": "", "scheme": "https", "query_string": b"", "server": ("example.com", 443),
            "headers": [(k.encode(), v.encode()) for k, v in e["headers"].items()], "client": (client, 0)}


def run_asgi(policy: trueip.Policy, scope: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    from trueip.asgi import TrueIP

    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    asyncio.run(TrueIP(app, policy)(scope, None, None))
    return seen


@pytest.mark.parametrize("policy", [trueip.Policy(), API], ids=["trust-nothing", "api-gateway-preset"])
def test_on_lambda_zappas_asgi_scope_gives_no_client(
    policy: trueip.Policy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Under an HTTP API the client writes X-Forwarded-For and API Gateway appends what it
    saw, so Zappa's client, the second-to-last entry, is the client's word (6.6.6.6). On
    Lambda such a scope gives no client, and one warning; it once made 6.6.6.6 the client."""
    import trueip.asgi

    e = event("api_gateway_v2.json")
    e["headers"]["x-forwarded-for"] = "6.6.6.6, " + e["requestContext"]["http"]["sourceIp"]
    monkeypatch.setattr(trueip.asgi, "_ON_LAMBDA", True)
    monkeypatch.setattr(trueip.asgi, "_warned_invented", False)
    with caplog.at_level("WARNING", logger="trueip"):
        for _ in range(2):
            seen = run_asgi(policy, zappa_scope(e))
            assert seen["client"] is None
            assert seen["trueip.resolution"] is None
            assert seen["trueip.original"]["client"] == ("6.6.6.6", 0)
    assert [r.message for r in caplog.records if r.name == "trueip" and "Zappa" in r.message] != []
    assert len([r for r in caplog.records if r.name == "trueip" and "Zappa" in r.message]) == 1


def test_on_lambda_a_servers_scope_and_manguns_still_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lambda Web Adapter runs a real server: its scope's client has a real port and stays
    the peer. Mangum's scope decides from its event as before. Off Lambda, a port-0 client is
    a peer like any other."""
    import trueip.asgi

    monkeypatch.setattr(trueip.asgi, "_ON_LAMBDA", True)
    seen = under_uvicorn(trueip.Policy(), {})
    assert seen["client"] == ("198.51.100.20", 41000)
    e = event("api_gateway_v2.json")
    assert under_mangum(API, e)["trueip.resolution"] == resolve_event(API, e)
    monkeypatch.setattr(trueip.asgi, "_ON_LAMBDA", False)
    e["headers"]["x-forwarded-for"] = "6.6.6.6, " + e["requestContext"]["http"]["sourceIp"]
    assert run_asgi(trueip.Policy(), zappa_scope(e))["client"] == ("6.6.6.6", 0)


VPC_QUERY = trueip.Policy(trust=["10.0.0.0/8"], strategy="query:client")


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("alb.json", {"queryStringParameters": {"client": "2001%3Adb8%3A%3A4"}}),
        ("alb_multi.json", {"multiValueQueryStringParameters": {"client": ["2001%3Adb8%3A%3A4"]}}),
        ("api_gateway_v1.json", {"queryStringParameters": {"client": "2001:db8::4"},
                                 "multiValueQueryStringParameters": {"client": ["2001:db8::4"]}}),
        ("api_gateway_v2.json", {"rawQueryString": "client=2001%3Adb8%3A%3A4",
                                 "queryStringParameters": {"client": "2001:db8::4"}}),
        ("function_url.json", {"rawQueryString": "client=2001%3Adb8%3A%3A4",
                               "queryStringParameters": {"client": "2001:db8::4"}}),
    ],
)
def test_a_query_strategy_reads_the_events_arguments(name: str, fields: dict[str, Any]) -> None:
    """The binding copies the query fields the core reads (`event_json`): a `query:NAME`
    strategy answered the stand-in, 10.0.0.5, before."""
    e = event(name)
    e.update(fields)
    if name.startswith("alb"):
        key = "multiValueHeaders" if "multiValueHeaders" in e else "headers"
        e[key]["x-forwarded-for"] = ["203.0.113.195, 10.0.0.5"] if key == "multiValueHeaders" else "203.0.113.195, 10.0.0.5"
    else:
        e["requestContext"]["identity" if "identity" in e["requestContext"] else "http"]["sourceIp"] = "10.0.0.5"
    r = resolve_event(VPC_QUERY, e)
    assert (r.ip_str, r.source) == ("2001:db8::4", "query:client")


def test_a_cookie_strategy_reads_a_payload_2_events_cookies() -> None:
    e = event("api_gateway_v2.json")
    e["cookies"] = ["session=abc", "client=198.51.100.4"]
    e["requestContext"]["http"]["sourceIp"] = "10.0.0.5"
    policy = trueip.Policy(trust=["10.0.0.0/8"], strategy="cookie:client")
    r = resolve_event(policy, e)
    assert (r.ip_str, r.source) == ("198.51.100.4", "cookie:client")
