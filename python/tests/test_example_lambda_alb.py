"""examples/lambda_alb: the handler, loaded as Lambda loads it (its module, configured by the
environment), fed ALB, API Gateway REST / HTTP API and Function URL events — the ones in
crates/trueip/tests/lambda_events — as dicts and as aws-lambda-powertools event classes."""

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aws_lambda_powertools.utilities.data_classes import (
    ALBEvent,
    APIGatewayProxyEvent,
    APIGatewayProxyEventV2,
    LambdaFunctionUrlEvent,
)

import trueip
from trueip.aws_lambda import resolve_event
from servers import EXAMPLES

HANDLER = EXAMPLES / "lambda_alb" / "handler.py"
EVENTS = Path(__file__).resolve().parents[2] / "crates" / "trueip" / "tests" / "lambda_events"


def load(monkeypatch, preset):
    monkeypatch.setenv("TRUEIP_PRESET", preset)
    monkeypatch.delenv("TRUEIP_IP_RANGES", raising=False)
    spec = importlib.util.spec_from_file_location(f"handler_{preset.replace('-', '_')}", HANDLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(name, xff=None):
    e = json.loads((EVENTS / f"{name}.json").read_text())
    if xff is not None:
        e["headers"]["x-forwarded-for"] = xff
    return e


def body(response):
    assert response["statusCode"] == 200
    return json.loads(response["body"])


@pytest.fixture
def alb(monkeypatch):
    return load(monkeypatch, "alb")


@pytest.fixture
def api_gateway(monkeypatch):
    return load(monkeypatch, "api-gateway")


def test_the_alb_story_event(alb):
    e = event("alb")
    assert e["headers"]["x-forwarded-for"] == "203.0.113.195, 70.41.3.18, 150.172.238.178"
    # What the handler used to do:
    assert e["headers"]["x-forwarded-for"].split(",")[0] == "203.0.113.195"
    assert body(alb.handler(e, None)) == {
        "client": "150.172.238.178",
        "source": "x-forwarded-for[-1]",
        "spoof_attempt": True,
        "warnings": ["spoof_attempt"],
    }


def test_one_entry_is_the_client_nothing_forged(alb):
    assert body(alb.handler(event("alb", "150.172.238.178"), None)) == {
        "client": "150.172.238.178",
        "source": "x-forwarded-for[-1]",
        "spoof_attempt": False,
        "warnings": [],
    }


def test_a_forged_first_entry_gives_the_same_answer(alb):
    seen = body(alb.handler(event("alb", "6.6.6.6, 150.172.238.178"), None))
    assert (seen["client"], seen["spoof_attempt"]) == ("150.172.238.178", True)


def test_the_list_on_two_lines_of_multi_value_headers(alb):
    e = event("alb_multi")
    assert e["multiValueHeaders"]["x-forwarded-for"] == ["203.0.113.195, 70.41.3.18", "150.172.238.178"]
    seen = body(alb.handler(e, None))
    assert (seen["client"], seen["spoof_attempt"]) == ("150.172.238.178", True)


@pytest.mark.parametrize(
    "name, client, warnings",
    [
        # API Gateway writes X-Forwarded-For itself; with nothing left of sourceIp it is no
        # stranger's header.
        ("api_gateway_v1", "52.255.255.12", []),
        ("api_gateway_v2", "205.255.255.176", []),
        # A Function URL writes its X-Forwarded-For itself, and it is never read: no
        # evidence of a forgery either way.
        ("function_url", "2001:db8:85a3:8d3:1319:8a2e:370:7348", []),
    ],
)
def test_api_gateway_and_function_url_the_source_ip(api_gateway, name, client, warnings):
    e = event(name)
    assert body(api_gateway.handler(e, None)) == {
        "client": client,
        "source": "peer",
        "spoof_attempt": False,
        "warnings": warnings,
    }
    # X-Forwarded-For is the client's own word there: forging it moves nothing.
    for key in ("X-Forwarded-For", "x-forwarded-for"):
        if key in e["headers"]:
            e["headers"][key] = "6.6.6.6"
    assert body(api_gateway.handler(e, None))["client"] == client


def test_an_event_of_no_known_kind_raises_before_the_handler(alb):
    with pytest.raises(trueip.EventError):
        alb.handler({"Records": []}, None)


def test_powertools_event_source_handler(alb):
    assert body(alb.powertools_handler(event("alb"), None))["client"] == "150.172.238.178"
    assert body(alb.powertools_handler(event("alb", "150.172.238.178"), None))["spoof_attempt"] is False


@pytest.mark.parametrize(
    "cls, name, preset, client",
    [
        (ALBEvent, "alb", "alb", "150.172.238.178"),
        (APIGatewayProxyEvent, "api_gateway_v1", "api-gateway", "52.255.255.12"),
        (APIGatewayProxyEventV2, "api_gateway_v2", "api-gateway", "205.255.255.176"),
        (LambdaFunctionUrlEvent, "function_url", "api-gateway", "2001:db8:85a3:8d3:1319:8a2e:370:7348"),
    ],
)
def test_powertools_event_classes(monkeypatch, cls, name, preset, client):
    module = load(monkeypatch, preset)
    wrapped = cls(event(name))
    assert body(module.handler(wrapped, None))["client"] == client
    assert resolve_event(module.policy, wrapped) == resolve_event(module.policy, copy.deepcopy(event(name)))


def test_run_as_a_script():
    out = subprocess.run(
        [sys.executable, str(HANDLER), str(EVENTS / "alb.json")],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "TRUEIP_PRESET": "alb"},
    )
    assert json.loads(json.loads(out.stdout)["body"])["client"] == "150.172.238.178"
