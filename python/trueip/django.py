"""Django middleware, configured from settings.

    # settings.py
    MIDDLEWARE = ["trueip.django.TrueIPMiddleware", ...]   # first, before anything reads the address
    TRUEIP = {"trust": ["10.0.0.0/8"], "strategy": "rightmost-untrusted"}
    # or: TRUEIP = {"config": "/etc/trueip.toml"}   (its [client_ip] section)

``TRUEIP`` takes the keyword arguments of ``trueip.Policy`` (``trust``, ``strategy``,
``from_``, ``all_trusted``, ``origin_secret``, ``providers``, ``proxy_protocol_from``,
``ipv6_prefix``), or ``config``, the path of a ``trueip serve`` config file; and ``origin``,
what trusted hops may say about the original request: ``["proto"]`` by default, ``"host"``
and ``"port"`` only if your proxies write (overwrite) those headers. (No ``"prefix"``: Django
has computed the request's paths before any middleware runs; use ``FORCE_SCRIPT_NAME``.) A
missing or wrong ``TRUEIP`` is ``ImproperlyConfigured`` at start-up, with the policy's own
message.

On AWS Lambda, ``TRUEIP = {"lambda_preset": "alb"}`` (or ``"cloudfront-alb"``,
``"api-gateway"``, ``"cloudfront-api-gateway"``; with ``providers`` and ``origin_secret`` as
``Policy.lambda_preset`` takes them) is the policy of the chain in front of the function.
A Lambda preset decides from the event only: a request without one (the same project
under ``runserver``, gunicorn or uvicorn, not a Lambda adapter or Mangum) is decided as if
no proxy were trusted, ``REMOTE_ADDR`` stays the peer, every client-IP header is removed as
from an untrusted peer, and the ``trueip`` logger warns once
(``test_django.py::test_a_lambda_preset_without_an_event_trusts_no_header``). Do not spell
the ALB preset ``{"trust": ["any"], "strategy": "hops:1"}``: that policy believes the last
``X-Forwarded-For`` element from any peer, event or not.

Each request's ``META`` is rewritten as the WSGI middleware rewrites an environ
(``trueip.wsgi``): ``REMOTE_ADDR`` is the client, client-IP headers from an untrusted peer
are removed, and the scheme and host, when trusted hops reported them, are applied
(``HTTP_HOST`` then passes through ``ALLOWED_HOSTS`` as usual; leave
``USE_X_FORWARDED_HOST`` and ``SECURE_PROXY_SSL_HEADER`` unset: this middleware has already
decided which hops to believe; a ``SECURE_PROXY_SSL_HEADER`` naming a header it does not
withhold from a stranger, such as ``HTTP_X_URL_SCHEME``, is ``ImproperlyConfigured``). The
decision is ``request.trueip``. ``request.headers`` and ``build_absolute_uri``'s scheme and
host, which Django keeps once read, are read again after the rewrite, so a middleware listed
before this one that read them leaves the view nothing stale; what such a middleware decided
from them (a rate limiter's key, a log line) was decided from what the client sent: list this
middleware first. Under uvicorn run with ``--no-proxy-headers`` (under gunicorn's
``UvicornWorker``, ``--forwarded-allow-ips ""``): uvicorn rewrites the scope's client from
``X-Forwarded-For`` before Django builds ``REMOTE_ADDR``. When uvicorn's middleware believes
anyone (around Django's ASGI handler, the WSGI bridge of ``--interface wsgi``, or a layer
such as channels' ``ProtocolTypeRouter`` around them), this middleware answers every request
with a 500 naming the fix and logs it once (``trueip.asgi.rewrite_around``), as it does under
Daphne's ``--proxy-headers``, which believes them from anyone, waitress's ``--trusted-proxy``
and Granian's proxy-header wrappers. Under Django's WSGI handler on a server that merges a
client's ``X_Forwarded_For`` into ``HTTP_X_FORWARDED_FOR`` (``trueip.wsgi.merged_spellings``:
Granian's WSGI interface, Twisted's, cheroot, gunicorn under ``--header-map dangerous``), a
request that came through a trusted hop with a client-IP header gets a 500 naming the fix.

``TRUEIP_VERIFY`` takes the client from the signed header ``trueip serve`` writes
(``[upstream] sign``): ``{"key_files": ["/etc/trueip.key"], "window": 30, "header":
"trueip-signature", "on_unverified": "peer"}`` (only ``key_files`` is required; two files
during a key rotation; ``"refuse"`` answers 400/403 instead of serving the peer).
``request.trueip_signature`` is ``"verified"`` or why not. Under Django's ASGI handler the
same holds, decided from the scope's header lines (``META`` is Django's fold of them, which
before 5.2.13 and 6.0.4 merged a client's ``X_Forwarded_For`` into ``HTTP_X_FORWARDED_FOR``;
its client-IP keys become the lines that pass), and ``request.scope`` gets the scheme, the
decided client and the lines that pass (under Mangum the client and scheme only: its lines
are the event's, as received). On AWS Lambda under Mangum the peer is the one the event
names (``scope["aws.event"]``, see ``trueip.asgi``), not Mangum's ``REMOTE_ADDR``. Under a
WSGI adapter on Lambda (serverless-wsgi, apig-wsgi, Zappa, aws-wsgi) ``META`` is the
adapter's environ, and the event it keeps there decides (see ``trueip.wsgi``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from . import Policy, PolicyError, Verifier
from . import _signed
from . import asgi as _asgi
from . import wsgi as _wsgi
from ._host import DEFAULT_ORIGIN, origin_parts

__all__ = ["TrueIPMiddleware", "origin_from_settings", "policy_from_settings", "verify_from_settings"]

_POLICY_KEYS = {
    "trust",
    "strategy",
    "from_",
    "all_trusted",
    "origin_secret",
    "providers",
    "proxy_protocol_from",
    "ipv6_prefix",
}

#: What ``TRUEIP`` may hold with ``lambda_preset`` (besides ``origin``): the arguments of
#: ``Policy.lambda_preset``.
_PRESET_KEYS = {"lambda_preset", "providers", "origin_secret"}


def policy_from_settings(settings: Any = None) -> Policy:
    """The policy ``settings.TRUEIP`` describes."""
    from django.core.exceptions import ImproperlyConfigured

    if settings is None:
        from django.conf import settings as django_settings

        settings = django_settings
    conf = getattr(settings, "TRUEIP", None)
    if not isinstance(conf, dict):
        raise ImproperlyConfigured(
            "trueip: set TRUEIP in settings, e.g. TRUEIP = {'trust': ['10.0.0.0/8'], "
            "'strategy': 'rightmost-untrusted'} (or {'config': 'trueip.toml'})"
        )
    unknown = set(conf) - _POLICY_KEYS - {"config", "origin", "lambda_preset"}
    if unknown:
        raise ImproperlyConfigured(
            f"trueip: unknown TRUEIP keys {sorted(unknown)}; known: "
            f"{sorted(_POLICY_KEYS | {'config', 'origin', 'lambda_preset'})}"
        )
    conf = {k: v for k, v in conf.items() if k != "origin"}
    try:
        if "lambda_preset" in conf:
            others = set(conf) - _PRESET_KEYS
            if others:
                raise ImproperlyConfigured(
                    f"trueip: TRUEIP['lambda_preset'] is the whole policy; it takes only "
                    f"{sorted(_PRESET_KEYS - {'lambda_preset'})} besides 'origin', not {sorted(others)}"
                )
            name = conf["lambda_preset"]
            if not isinstance(name, str):
                raise ImproperlyConfigured(
                    f"trueip: TRUEIP['lambda_preset'] is a preset's name, not {type(name).__name__}"
                )
            return Policy.lambda_preset(
                name,
                providers=conf.get("providers"),
                origin_secret=conf.get("origin_secret"),
            )
        if "config" in conf:
            if len(conf) > 1:
                raise ImproperlyConfigured("trueip: TRUEIP['config'] takes the whole policy from the file; give no other keys")
            return Policy.from_toml(conf["config"])
        return Policy(**conf)
    except (PolicyError, TypeError) as e:
        raise ImproperlyConfigured(f"trueip: {e}") from e


def origin_from_settings(settings: Any = None) -> frozenset[str]:
    """The ``origin`` parts ``settings.TRUEIP`` allows."""
    from django.core.exceptions import ImproperlyConfigured

    if settings is None:
        from django.conf import settings as django_settings

        settings = django_settings
    conf = getattr(settings, "TRUEIP", None) or {}
    try:
        parts = origin_parts(conf.get("origin", DEFAULT_ORIGIN))
    except (TypeError, ValueError) as e:
        raise ImproperlyConfigured(f"trueip: TRUEIP['origin']: {e}") from e
    if "prefix" in parts:
        raise ImproperlyConfigured(
            "trueip: TRUEIP['origin'] cannot hold 'prefix': Django computes the request's paths "
            "before middleware runs; set FORCE_SCRIPT_NAME instead"
        )
    return parts


def verify_from_settings(settings: Any = None) -> tuple[Optional[Verifier], bool]:
    """The verifier ``settings.TRUEIP_VERIFY`` describes, and whether it refuses."""
    from django.core.exceptions import ImproperlyConfigured

    if settings is None:
        from django.conf import settings as django_settings

        settings = django_settings
    conf = getattr(settings, "TRUEIP_VERIFY", None)
    if conf is None:
        return None, False
    if not isinstance(conf, dict) or "key_files" not in conf:
        raise ImproperlyConfigured("trueip: TRUEIP_VERIFY must be a dict with key_files, e.g. {'key_files': ['/etc/trueip.key']}")
    known = {"key_files", "window", "header", "on_unverified"}
    unknown = set(conf) - known
    if unknown:
        raise ImproperlyConfigured(f"trueip: unknown TRUEIP_VERIFY keys {sorted(unknown)}; known: {sorted(known)}")
    try:
        kwargs = {k: conf[k] for k in ("window", "header") if k in conf}
        verifier = Verifier(conf["key_files"], **kwargs)
        refuse = _signed.on_unverified(conf.get("on_unverified", "peer"))
    except (PolicyError, TypeError, ValueError) as e:
        raise ImproperlyConfigured(f"trueip: TRUEIP_VERIFY: {e}") from e
    return verifier, refuse


def _check_proxy_ssl_header(policy: Policy, settings: Any = None) -> None:
    """Refuses a ``SECURE_PROXY_SSL_HEADER`` naming a header ``policy`` does not withhold
    from a stranger (``HTTP_X_URL_SCHEME``, ``HTTP_X_HTTPS``): ``is_secure()`` reads it
    from META at each call, so a stranger that sent it would make the request secure.
    ``HTTP_X_FORWARDED_PROTO``, Django's own example, is withheld and passes only from
    trusted hops."""
    from django.core.exceptions import ImproperlyConfigured

    if settings is None:
        from django.conf import settings as django_settings

        settings = django_settings
    named = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not named:
        return
    header = named[0] if isinstance(named, (tuple, list)) and named else named
    if header not in policy._withheld_environ_keys(None):
        raise ImproperlyConfigured(
            f"trueip: SECURE_PROXY_SSL_HEADER names {header!r}, which this middleware does not remove from "
            "a client it does not trust, so any client could make request.is_secure() true; unset it (a "
            "trusted hop's X-Forwarded-Proto already sets the scheme) or name HTTP_X_FORWARDED_PROTO"
        )


class TrueIPMiddleware:
    """Applies the ``TRUEIP`` policy to every request (see the module doc)."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.policy = policy_from_settings()
        _check_proxy_ssl_header(self.policy)
        self.origin = origin_from_settings()
        self.verifier, self.refuse = verify_from_settings()
        # What `rewrite_around` and `merged_spellings` find on the first request: the server
        # does not change.
        self._rewrite: Any = _asgi._UNCHECKED
        self._merged: Any = _asgi._UNCHECKED

    def __call__(self, request: Any) -> Any:
        rewrite = self._rewrite
        if rewrite is _asgi._UNCHECKED:
            # Django's ASGI handler, and the WSGI bridge its WSGI handler may run behind, run
            # this middleware in another thread or task than uvicorn's own proxy headers.
            rewrite = self._rewrite = _wsgi.rewritten()
        if rewrite is not None:
            from django.http import HttpResponseServerError

            return HttpResponseServerError(_wsgi.refusal_text(rewrite), content_type="text/plain; charset=utf-8")
        meta = request.META
        # Django's ASGI requests keep their scope: under Mangum its event names the peer.
        scope = getattr(request, "scope", None)
        asgi = isinstance(scope, dict)
        peer, event = _asgi.scope_event_peer(scope, _wsgi._REMOTE_ADDR) if asgi else (_wsgi._REMOTE_ADDR, None)
        # Under ASGI the scope's lines decide: META is Django's fold of them, which once
        # merged a client's `X_Forwarded_For` into HTTP_X_FORWARDED_FOR (CVE-2026-3902).
        lines = list(scope.get("headers") or ()) if asgi else None
        at_stake = False
        if not asgi:
            # Under Django's WSGI handler META is the server's environ, with its keys as the
            # server folded them; under its ASGI handler the lines decide.
            merged = self._merged
            if merged is _asgi._UNCHECKED:
                merged = self._merged = _wsgi.merged_spellings(meta, self.policy._withheld_environ_keys(None))
                if merged is not None:
                    logging.getLogger("trueip").error("trueip: %s", merged)
            at_stake = merged is not None and _wsgi.merge_at_stake(merged, self.policy, meta)
        resolution = _wsgi.apply(
            self.policy, meta, self.origin, self.verifier, peer=peer, lines=lines, scope_event=event
        )
        request.trueip = resolution
        if at_stake and _wsgi.refused_merge(at_stake, resolution):
            from django.http import HttpResponseServerError

            return HttpResponseServerError(_wsgi.refusal_text(self._merged), content_type="text/plain; charset=utf-8")
        if self.verifier is not None:
            outcome = meta.get("trueip.signature")
            request.trueip_signature = outcome
            if self.refuse and outcome != "verified":
                from django.http import HttpResponse

                status, body = _signed.refusal(outcome or "missing")
                return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")
        if not asgi and "PATH_INFO" in meta["trueip.original"]:
            # gunicorn took SCRIPT_NAME from a header trueip does not take it from
            # (`trueip.wsgi._undo_gunicorn_script_name` put its own back in META), and Django
            # had computed the request's paths and script prefix from it: compute them again,
            # as its WSGI handler does, so the view is routed and reverses URLs under its own.
            from django.core.handlers.wsgi import get_path_info, get_script_name
            from django.urls import set_script_prefix

            script_name = get_script_name(meta)
            set_script_prefix(script_name)
            request.path_info = get_path_info(meta) or "/"
            request.path = "%s/%s" % (script_name.rstrip("/"), request.path_info.replace("/", "", 1))
        if asgi:
            # Django's ASGI requests read the scheme from the scope, not META; and a view (or
            # a library handed `request.scope`) reads the client and the header lines there.
            if resolution is not None:
                client = (resolution.ip_str, resolution.port or 0)
            else:
                client = None if peer is None else scope.get("client")
            request.scope = dict(scope, headers=lines, client=client)
            scheme = meta.get("wsgi.url_scheme")
            if scheme and scheme != meta["trueip.original"].get("wsgi.url_scheme"):
                request.scope["scheme"] = scheme
        # Django keeps `request.headers` (a copy of META) and `build_absolute_uri`'s scheme
        # and host the first time anything reads them: a middleware listed before this one
        # that did would leave the view a stranger's X-Forwarded-For and the hop's scheme.
        cached = request.__dict__
        cached.pop("headers", None)
        cached.pop("_current_scheme_host", None)
        return self.get_response(request)
