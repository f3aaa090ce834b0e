"""The real client address behind CDNs, load balancers and proxies.

``Policy`` says whom to trust and how to find the client; ``Policy.resolve`` decides, in
trueip's Rust engine, exactly as ``trueip serve`` and ``trueip explain`` do. The adapters
build on it: ``trueip.wsgi``, ``trueip.asgi``, ``trueip.django`` and ``trueip.aws_lambda``.
"""

from ._trueip import (
    EventError,
    Policy,
    PolicyError,
    Resolution,
    Verifier,
    __version__,
    forwarding_header_names,
    warning_names,
)

__all__ = [
    "EventError",
    "Policy",
    "PolicyError",
    "Resolution",
    "Verifier",
    "__version__",
    "forwarding_header_names",
    "warning_names",
]
