"""AWS Lambda: the client of an ALB, API Gateway (REST or HTTP API) or Function URL event.

    import trueip
    from trueip.aws_lambda import resolve_event, with_client

    policy = trueip.Policy.lambda_preset("alb")

    @with_client(policy)
    def handler(event, context, client):
        return {"statusCode": 200, "body": client.ip_str}

The event's kind is told from its shape. A Lambda has no TCP peer; what stands in for it
is the address the AWS service saw: for an ALB, the element it appended to
``X-Forwarded-For``; for API Gateway and Function URLs, ``requestContext``'s ``sourceIp``.
The decision is the Rust core's (``trueip.lambda`` in the crate), not a Python port.
A WebSocket API event is read as a REST API one (its ``requestContext.identity.sourceIp``).
A VPC Lattice event raises ``EventError`` naming VPC Lattice: it carries no address Lattice
vouches for, only the caller's IAM identity and source VPC.

When a request carried ``X-Forwarded-For`` on several lines, the ALB's element is the last
element of the last line: the ALB writes its own line after the request's (the crate's
``trueip::lambda`` docs, "Several X-Forwarded-For lines", give the evidence); a last line
without an element raises ``EventError``.

Events may be plain dicts or aws-lambda-powertools event classes (``ALBEvent``,
``APIGatewayProxyEvent``, ``APIGatewayProxyEventV2``, ``LambdaFunctionUrlEvent``): their
``raw_event`` is read.

Presets (``Policy.lambda_preset(name)``): ``alb`` (ALB -> Lambda), ``cloudfront-alb``,
``api-gateway`` (API Gateway or Function URL -> Lambda), ``cloudfront-api-gateway``; the
CloudFront ones need CloudFront's ranges: ``providers={"cloudfront": "ip-ranges.json"}``.
A preset decides from Lambda events only: here there always is one; the middlewares
(``trueip.wsgi``, ``trueip.asgi``, ``trueip.django``) decide a request they find no event for
as if no proxy were trusted, and warn once
(``test_wsgi_lambda.py::test_a_lambda_preset_without_an_event_trusts_no_header``). ``alb``
decides from ALB events only: given an API Gateway or Function URL event it trusts no one, the
event's ``sourceIp`` being the client (flagged ``no_lambda_event``; a Function URL keeps only the
first ``X-Forwarded-For`` value a client sent).

A Function URL event (told by its ``requestContext.domainName``,
``<url-id>.lambda-url.<region>.on.aws``) never has its ``X-Forwarded-For`` read, whatever the
policy: the URL keeps only the first value it received, which the client wrote. Behind
CloudFront (``cloudfront-api-gateway``) forward ``CloudFront-Viewer-Address`` in the origin
request policy: it is then the client; without it, the CloudFront edge is. Behind that trusted
edge the resolution is flagged ``x_forwarded_for_not_kept``, and the middlewares withhold the
header from the app (the claims about the request and ``CloudFront-Viewer-Address`` pass), so
an app reading it itself (ProxyFix, python-ipware) is not handed the client's text. A payload
2.0 event without ``requestContext.domainName`` raises ``EventError``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, TypeVar

from . import EventError, Policy, Resolution
from ._trueip import explain_event as _explain_event
from ._trueip import resolve_event as _resolve_event

__all__ = ["EventError", "explain_event", "resolve_event", "with_client"]

R = TypeVar("R")


def _raw(event: Any) -> Mapping[str, Any]:
    raw = getattr(event, "raw_event", event)
    return raw


def resolve_event(policy: Policy, event: Any) -> Resolution:
    """The client of ``event``; raises ``EventError`` for an event of no known kind or
    with a field of the wrong shape."""
    return _resolve_event(policy, _raw(event))


def explain_event(policy: Policy, event: Any) -> dict[str, Any]:
    """``trueip explain --lambda-event --format json`` for ``event``, as a dict."""
    return _explain_event(policy, _raw(event))


def with_client(policy: Policy) -> Callable[[Callable[..., R]], Callable[[Any, Any], R]]:
    """Decorates ``handler(event, context, client)``: ``client`` is the ``Resolution`` of
    the event. An event of no known kind raises ``EventError`` before the handler runs."""
    if not isinstance(policy, Policy):
        raise TypeError(f"with_client takes a trueip.Policy, not {type(policy).__name__}")

    def decorate(handler: Callable[..., R]) -> Callable[[Any, Any], R]:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> R:
            return handler(event, context, resolve_event(policy, event))

        return wrapper

    return decorate
