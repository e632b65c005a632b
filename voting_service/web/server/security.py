"""Security headers, CORS and the cross-site check: one pure ASGI middleware for every response.

It runs on the vote path, so it stays cheap: header values are prebuilt bytes, the request
headers are scanned once, and the campaign's allowed origins are computed once per snapshot.

- Every response: ``X-Content-Type-Options: nosniff``, ``Referrer-Policy``, a
  ``Content-Security-Policy`` (pages bring their own; everything else gets ``default-src
  'none'``), ``X-Frame-Options: DENY`` unless the page chose its frame ancestors, and HSTS
  when served over HTTPS.
- CORS only for the read-only campaign paths (campaign, candidates, tallies) and only for an
  origin listed by one of the campaign's channels; the ``Origin`` is echoed only after that
  check, never ``*``. Votes from media pages go through the embed iframe, which is
  same-origin with the API, so no state-changing path needs CORS.
- State-changing requests from a browser must be same-origin (``Sec-Fetch-Site``, or
  ``Origin`` = ``Host`` for browsers without it). Requests with neither header do not come
  from a browser page (servers, load tests) and cannot ride on a visitor's cookies.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...errors import Forbidden
from ...settings import IPNetwork
from ...vote import identity
from ...vote.registry import LiveCampaign
from ..http import encode_headers, problem
from .headers import RequestHeaders

HSTS_SECONDS = 365 * 24 * 3600
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def page_csp(frame_ancestors: str = "'none'") -> str:
    """The policy of an HTML page: only our own scripts, styles, fonts and API."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
        "media-src 'self' https:; "
        "connect-src 'self'; worker-src 'self'; font-src 'self'; object-src 'none'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    )


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_IPV6 = re.compile(r"[0-9a-f:.]+")
_DEFAULT_PORT = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]``, lower case, no default port; ``None`` if not an origin.

    ``https://*.example.com`` is kept as a wildcard. The strict shape matters: these values
    end up in a CSP header, where a ``;`` or a space would add directives.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORT or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = parts.hostname or ""
    if ":" in host:
        if not _IPV6.fullmatch(host):
            return None
        host = f"[{host}]"
    elif not _HOST.fullmatch(host.removeprefix("*.")):
        return None
    suffix = "" if port is None or port == _DEFAULT_PORT[scheme] else f":{port}"
    return f"{scheme}://{host}{suffix}"


@dataclass(frozen=True)
class Origins:
    """A set of allowed origins, exact or ``scheme://*.domain[:port]``."""

    exact: frozenset[str]
    wildcards: tuple[tuple[str, str], ...] = ()
    """(``scheme://``, ``.domain[:port]``) pairs."""

    @classmethod
    def of(cls, values: Sequence[str]) -> Origins:
        exact: set[str] = set()
        wild: set[tuple[str, str]] = set()
        for value in values:
            origin = normalize_origin(value)
            if origin is None:
                continue
            scheme, _, rest = origin.partition("://")
            if rest.startswith("*."):
                wild.add((scheme + "://", rest[1:]))
            else:
                exact.add(origin)
        return cls(frozenset(exact), tuple(sorted(wild)))

    def allows(self, origin: str) -> bool:
        if origin in self.exact:
            return True
        for prefix, suffix in self.wildcards:
            if origin.startswith(prefix) and origin.endswith(suffix):
                label = origin[len(prefix):-len(suffix)]
                if label and _HOST.fullmatch(label):
                    return True
        return False

    def csp_source_list(self) -> str:
        listed = sorted(self.exact) + [f"{p}*{s}" for p, s in self.wildcards]
        return " ".join(listed) if listed else "'none'"


_origins_cache: weakref.WeakKeyDictionary[LiveCampaign, dict[str, Origins]] = (
    weakref.WeakKeyDictionary()
)


def channel_origins(live: LiveCampaign) -> dict[str, Origins]:
    """Allowed origins per channel id of this snapshot, and ``""`` for all channels together."""
    found = _origins_cache.get(live)
    if found is None:
        found = {ch.id: Origins.of(ch.allowed_origins) for ch in live.c.channels}
        found[""] = Origins.of([o for ch in live.c.channels for o in ch.allowed_origins])
        _origins_cache[live] = found
    return found


def from_trusted_proxy(client: Sequence[Any] | None, trusted: Sequence[IPNetwork]) -> bool:
    """Whether the peer is one of ``VOTING_TRUSTED_PROXIES`` (whose X-Forwarded-* count)."""
    if not client or not trusted:
        return False
    try:
        addr = identity.address(client[0])
    except ValueError:
        return False
    return any(addr in net for net in trusted)


def forwarded_https(scheme: str | None, forwarded_proto: bytes | str | None,
                    client: Sequence[Any] | None, trusted: Sequence[IPNetwork]) -> bool:
    """Whether the visitor reached us over TLS: the socket says so, or a trusted proxy does
    in ``X-Forwarded-Proto`` (its last value: the one the nearest proxy set). The header of
    any other peer is ignored — a client could send it with a plain-HTTP request."""
    if scheme in ("https", "wss"):
        return True
    if not forwarded_proto:
        return False
    text = forwarded_proto.decode("latin-1") if isinstance(forwarded_proto, bytes) \
        else forwarded_proto
    return text.rsplit(",", 1)[-1].strip().lower() == "https" \
        and from_trusted_proxy(client, trusted)


def is_https(scope: Scope, trusted: Sequence[IPNetwork]) -> bool:
    """``forwarded_https`` of a request: what every cookie's ``Secure`` and HSTS follow."""
    proto = RequestHeaders(scope.get("headers") or ()).forwarded_proto
    return forwarded_https(scope.get("scheme"), proto, scope.get("client"), trusted)


CROSS_SITE = "cross-site request refused: vote on the page or in the embed widget"

_CORS_PATH = re.compile(
    r"/api/v1/campaigns/([A-Za-z0-9][A-Za-z0-9_-]{0,63})(?:/candidates(?:/[^/]+)?|/tallies)?"
)
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _origin_matches_host(origin: bytes, host: bytes | None) -> bool:
    if host is None:
        return False
    normalized = normalize_origin(origin.decode("latin-1"))
    if normalized is None:
        return False
    netloc = normalized.partition("://")[2]
    own = host.decode("latin-1").lower()
    scheme = normalized.partition("://")[0]
    return netloc == own or f"{netloc}:{_DEFAULT_PORT[scheme]}" == own


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[IPNetwork] = ()) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
        ]
        self._plain = common
        self._https = [*common, (b"strict-transport-security", f"max-age={HSTS_SECONDS}".encode())]
        self._default_policy = [
            (b"content-security-policy", API_CSP.encode()),
            (b"x-frame-options", b"DENY"),
        ]
        self._api = {https: (headers, encode_headers(headers))
                     for https, headers in ((False, [*self._default_policy, *self._plain]),
                                            (True, [*self._default_policy, *self._https]))}

    def _is_https(self, scope: Scope, forwarded_proto: bytes | None) -> bool:
        return forwarded_https(scope.get("scheme"), forwarded_proto, scope.get("client"),
                               self.trusted_proxies)

    def _added(self, scope: Scope, forwarded_proto: bytes | None) -> list[tuple[bytes, bytes]]:
        return self._https if self._is_https(scope, forwarded_proto) else self._plain

    def api_headers(self, scope: Scope, heads: RequestHeaders) -> tuple[
            bool, tuple[list[tuple[bytes, bytes]], bytes]]:
        """For a route that answers a state-changing request itself (the vote route, ahead of
        this middleware), from the request headers it read: whether the request is
        same-origin (else it must be refused as cross-site), and the headers its JSON
        answer gets here, as a list and as encoded header lines (the same ones a refusal
        of this middleware gets)."""
        return (self._same_origin(heads.origin, heads.fetch_site, heads.host),
                self._api[self._is_https(scope, heads.forwarded_proto)])

    async def _refuse(self, scope: Scope, receive: Receive, send: Send,
                      heads: RequestHeaders) -> None:
        """The answer to a cross-site state-changing request."""
        refused = problem(
            Forbidden(CROSS_SITE),
            scope["path"],
        )
        await refused(scope, receive,
                      self._wrap(send, self._added(scope, heads.forwarded_proto)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        heads = RequestHeaders(scope["headers"])
        origin = heads.origin
        added = self._added(scope, heads.forwarded_proto)
        method: str = scope["method"]

        if method in _SAFE:
            match = _CORS_PATH.fullmatch(scope["path"])
            if match is not None:
                added = [*added, (b"vary", b"Origin")]
                allowed = self._cors_origin(scope, match[1], origin) if origin else None
                if allowed is not None:
                    added.append((b"access-control-allow-origin", allowed.encode()))
                if method == "OPTIONS" and heads.preflight is not None:
                    await self._preflight(added, send)
                    return
        elif not self._same_origin(origin, heads.fetch_site, heads.host):
            await self._refuse(scope, receive, send, heads)
            return
        await self.app(scope, receive, self._wrap(send, added))

    def _wrap(self, send: Send, added: list[tuple[bytes, bytes]]) -> Send:
        default_policy = self._default_policy

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                for name, _ in headers:
                    if name == b"content-security-policy":
                        break
                else:
                    headers += default_policy
                headers += added
                message["headers"] = headers  # a fresh list; the message is ours to amend
            await send(message)

        return send_with_headers

    @staticmethod
    async def _preflight(added: list[tuple[bytes, bytes]], send: Send) -> None:
        await send({
            "type": "http.response.start",
            "status": 204,
            "headers": [
                *added,
                (b"access-control-allow-methods", b"GET"),
                (b"access-control-max-age", b"600"),
                (b"content-security-policy", API_CSP.encode()),
            ],
        })
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _same_origin(origin: bytes | None, fetch_site: bytes | None, host: bytes | None) -> bool:
        if fetch_site is not None:
            return fetch_site in (b"same-origin", b"none")
        if origin is None:
            return True  # not a browser page: no visitor's cookies to abuse
        return _origin_matches_host(origin, host)

    @staticmethod
    def _cors_origin(scope: Scope, campaign_id: str, origin: bytes) -> str | None:
        """The request's origin if one of the campaign's channels lists it, else ``None``."""
        try:
            live = scope["app"].state.services.registry.public(campaign_id)
        except (AttributeError, KeyError):
            return None
        if live is None or not live.c.channels:
            return None
        normalized = normalize_origin(origin.decode("latin-1"))
        if normalized is None or not channel_origins(live)[""].allows(normalized):
            return None
        return normalized
