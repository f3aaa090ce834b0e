"""A Python Lambda behind an ALB (or API Gateway, or a Function URL), finding the client
with trueip.

The story: the handler did ``event["headers"]["x-forwarded-for"].split(",")[0]``. For the
ALB's own example event, ``x-forwarded-for: 203.0.113.195, 70.41.3.18, 150.172.238.178``,
that is 203.0.113.195 — whatever the client wrote first. The ALB *appends* the address it
accepted the connection from, so only the last element is the ALB's word: 150.172.238.178.
``Policy.lambda_preset("alb")`` reads it (and flags the rest as ``spoof_attempt``); behind
API Gateway or a Function URL (``"api-gateway"``) the client is ``requestContext``'s
``sourceIp`` and X-Forwarded-For is the client's own. ``cloudfront-alb`` and
``cloudfront-api-gateway`` walk one hop further, through CloudFront's ranges.

Two handlers: ``handler`` takes plain dict events; ``powertools_handler`` the same with
aws-lambda-powertools' ``event_source`` turning the event into an ``ALBEvent`` first (any of
its classes works: ``APIGatewayProxyEvent``, ``APIGatewayProxyEventV2``,
``LambdaFunctionUrlEvent``).

Deploy with the handler ``handler.handler`` and the environment variable TRUEIP_PRESET
(``alb`` by default; ``api-gateway``, ``cloudfront-alb``, ``cloudfront-api-gateway``;
the CloudFront ones read TRUEIP_IP_RANGES, AWS's ``ip-ranges.json``, packaged with the
function). Try it locally::

    TRUEIP_PRESET=alb python python/examples/lambda_alb/handler.py crates/trueip/tests/lambda_events/alb.json

Its test: ``python/tests/test_example_lambda_alb.py``.
"""

import json
import os
import sys

from trueip import Policy
from trueip.aws_lambda import with_client

_ranges = os.environ.get("TRUEIP_IP_RANGES")
policy = Policy.lambda_preset(
    os.environ.get("TRUEIP_PRESET", "alb"),
    providers={"cloudfront": _ranges} if _ranges else None,
)


def respond(client):
    """The response, for an ALB (which wants ``statusDescription``), API Gateway or a
    Function URL."""
    body = {
        "client": client.ip_str,
        "source": client.source,
        "spoof_attempt": client.spoof_attempt,
        "warnings": sorted(client.warnings),
    }
    return {
        "statusCode": 200,
        "statusDescription": "200 OK",
        "isBase64Encoded": False,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


@with_client(policy)
def handler(event, context, client):
    return respond(client)


try:
    from aws_lambda_powertools.utilities.data_classes import ALBEvent, event_source
except ImportError:  # powertools is optional: the plain handler needs only trueip
    pass
else:

    @event_source(data_class=ALBEvent)
    @with_client(policy)  # reads the event class's raw_event
    def powertools_handler(event: ALBEvent, context, client):
        return respond(client)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(json.dumps(handler(json.load(f), None), indent=2))
