"""Type stubs for the Rust extension module (python/src/lib.rs)."""

import ipaddress
import os
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Sequence, Tuple, Union

__version__: str

_Text = Union[str, bytes]
#: A WSGI environ, a mapping of names to values (or to lists of values), a list of
#: (name, value) pairs such as an ASGI scope's ``headers``, or an object with ``items()``.
Headers = Union[Mapping[Any, Any], Sequence[Tuple[_Text, _Text]], Iterable[Tuple[_Text, _Text]], None]
#: ``"192.0.2.1"``, ``"192.0.2.1:443"``, ``"[2001:db8::1]:443"``, an ``ipaddress`` object,
#: or a ``(host, port)`` pair as ASGI's ``scope["client"]``.
Peer = Union[str, ipaddress.IPv4Address, ipaddress.IPv6Address, Tuple[str, int], list[Any]]
_Path = Union[str, "os.PathLike[str]"]

class PolicyError(ValueError):
    """A policy that cannot be built; the message is the one the CLI prints."""

class EventError(ValueError):
    """A Lambda event trueip cannot read."""

class Resolution:
    """The decision for one request."""

    @property
    def ip(self) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
        """None only when the peer is a Unix socket ("" or "unix:...") and no trusted header
        named an address."""
    @property
    def ip_str(self) -> Optional[str]: ...
    @property
    def port(self) -> Optional[int]: ...
    @property
    def source(self) -> str: ...
    @property
    def peer(self) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
        """None for a Unix-socket peer."""
    @property
    def trusted_hops(self) -> int: ...
    @property
    def warnings(self) -> frozenset[str]: ...
    @property
    def spoof_attempt(self) -> bool: ...
    @property
    def rate_limit_key(self) -> Optional[str]: ...
    @property
    def trusted_hop(self) -> bool: ...
    @property
    def strategy(self) -> Optional[str]: ...
    def to_dict(self) -> dict[str, Any]: ...

class Policy:
    """Whom to trust and how to find the client."""

    def __init__(
        self,
        trust: Optional[Sequence[str]] = None,
        strategy: Union[str, Sequence[str], None] = None,
        from_: Optional[str] = None,
        all_trusted: Optional[str] = None,
        origin_secret: Optional[Tuple[str, str]] = None,
        providers: Optional[Mapping[str, Union[_Path, Sequence[_Path]]]] = None,
        proxy_protocol_from: Optional[Sequence[str]] = None,
        ipv6_prefix: Optional[int] = None,
    ) -> None: ...
    @staticmethod
    def from_toml(path: _Path) -> "Policy": ...
    @staticmethod
    def lambda_preset(
        name: str,
        providers: Optional[Mapping[str, _Path]] = None,
        origin_secret: Optional[Tuple[str, str]] = None,
    ) -> "Policy":
        """The policy of a chain in front of a Lambda function: ``alb``, ``cloudfront-alb``,
        ``api-gateway`` or ``cloudfront-api-gateway``. It decides from Lambda events only:
        ``trueip.aws_lambda``, and the middlewares when they find the event (a WSGI
        adapter's, Mangum's ``scope["aws.event"]``). A request the middlewares find no event
        for is decided as if no proxy were trusted: the peer is the client, every client-IP
        header is withheld, the resolution is flagged ``no_lambda_event``, and the ``trueip``
        logger warns once. ``resolve`` and ``explain`` decide the same way: a peer they are
        given is a connection, not an event's stand-in (the core's rule, as for Rust callers).
        ``alb`` decides from ALB events only: an API Gateway or Function URL event (the same
        function reached through its Function URL, which keeps only the first
        X-Forwarded-For value the client sent) is decided the same way, its ``sourceIp`` the
        client; use ``api-gateway`` for those. No policy reads a Function URL event's
        X-Forwarded-For: behind CloudFront (``cloudfront-api-gateway``) the client is
        CloudFront-Viewer-Address when the distribution forwards it, else the edge."""
    @property
    def trust_names(self) -> dict[str, list[str]]:
        """What each host name in the trust specs resolved to when the policy was made."""
    def resolve(
        self,
        peer: Peer,
        headers: Headers = None,
        proxy_source: Optional[Peer] = None,
        environ: Optional[bool] = None,
        query: Optional[_Text] = None,
    ) -> Resolution: ...
    def explain(
        self,
        peer: Peer,
        headers: Headers = None,
        proxy_source: Optional[Peer] = None,
        environ: Optional[bool] = None,
        query: Optional[_Text] = None,
    ) -> dict[str, Any]: ...
    def _resolve_request(
        self,
        peer: Optional[Peer],
        headers: Headers,
        withhold: bool = False,
        environ: bool = False,
        query: Optional[_Text] = None,
        verifier: Optional[Verifier] = None,
        signed: Optional[Tuple[Optional[_Text], str, str, str]] = None,
        event: Optional[dict[str, Any]] = None,
        proxy_source: Optional[Peer] = None,
    ) -> Tuple[
        Optional[Resolution],
        Optional[Tuple[Optional[str], Optional[str], Optional[int], Optional[str]]],
        # The kept header pairs (`withhold`), or with an event and `environ` the
        # (environ key, value or None) of each client-IP header that passes, as the event has it.
        Optional[list[Tuple[Any, Any]]],
        Optional[str],
    ]: ...
    def trusts(self, ip: Peer) -> bool: ...
    def _withheld_environ_keys(self, resolution: Optional[Resolution]) -> frozenset[str]: ...
    @property
    def header_names(self) -> list[str]: ...

class Verifier:
    """The keys an app accepts for the signed client header ``trueip serve`` writes
    (``[upstream] sign``): one key file, or two during a rotation (whitespace around a key
    is trimmed; 32 to 1024 bytes). ``window``: how old a signature may be, in seconds (1 to
    300). ``header``: the header's name. Keys are never shown (``repr`` gives their ids)."""

    def __init__(
        self,
        key_files: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
        window: float = 30.0,
        header: str = "trueip-signature",
    ) -> None: ...
    @property
    def header(self) -> str: ...
    @property
    def window(self) -> int: ...
    @property
    def key_ids(self) -> list[str]: ...
    @property
    def verified_count(self) -> int: ...
    @property
    def rejected_count(self) -> int: ...
    def verify(
        self, value: Optional[_Text], method: str, host: str, target: str, now: Optional[int] = None
    ) -> dict[str, Any]:
        """The claim (``ip``, ``port``, ``source``, ``hops``, ``time``) when ``value`` verifies
        for this request; else ``ValueError`` naming why (``missing: ...``, ``stale: ...``)."""
    @staticmethod
    def refusal(outcome: str) -> Tuple[int, str]: ...

def resolve_event(policy: Policy, event: Mapping[str, Any]) -> Resolution: ...
def explain_event(policy: Policy, event: Mapping[str, Any]) -> dict[str, Any]: ...
def _event_peer(event: Any) -> Tuple[bool, Optional[str]]: ...
def forwarding_header_names() -> list[str]: ...
def warning_names() -> list[str]: ...
