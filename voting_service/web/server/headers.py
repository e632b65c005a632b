"""The request headers the service reads itself, in one pass and by one rule.

The vote route, ``SecurityMiddleware`` and ``security.is_https`` all read them here, so a
header sent twice means the same thing to each of them:

- the credential and body headers (``Authorization``, ``X-Voter-Token``, ``Cookie``,
  ``X-Forwarded-For``, ``Content-Length``): the first one counts, as Starlette's
  ``request.headers.get`` reads them on every other route;
- the headers of the security checks (``Host``, ``Origin``, ``Sec-Fetch-Site``,
  ``X-Forwarded-Proto``, ``Access-Control-Request-Method``): the last one counts (for
  ``X-Forwarded-Proto`` the one the nearest proxy set).
"""

from __future__ import annotations

from collections.abc import Iterable


class RequestHeaders:
    """One scan of a request's header list (ASGI's lower-case names, raw values)."""

    __slots__ = (
        "authorization",
        "content_length",
        "cookie",
        "fetch_site",
        "forwarded_for",
        "forwarded_proto",
        "host",
        "origin",
        "preflight",
        "voter_token",
    )

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        authorization = voter_token = cookie = forwarded_for = content_length = None
        origin = fetch_site = host = forwarded_proto = preflight = None
        for name, value in headers:
            if name == b"host":
                host = value
            elif name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"x-voter-token":
                if voter_token is None:
                    voter_token = value.decode("latin-1")
            elif name == b"cookie":
                if cookie is None:
                    cookie = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                if forwarded_for is None:
                    forwarded_for = value.decode("latin-1")
            elif name == b"content-length":
                if content_length is None:
                    content_length = value.decode("latin-1")
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = value
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
            elif name == b"access-control-request-method":
                preflight = value
        self.authorization: str | None = authorization
        self.voter_token: str | None = voter_token
        self.cookie: str | None = cookie
        self.forwarded_for: str | None = forwarded_for
        self.content_length: str | None = content_length
        self.host: bytes | None = host
        self.origin: bytes | None = origin
        self.fetch_site: bytes | None = fetch_site
        self.forwarded_proto: bytes | None = forwarded_proto
        self.preflight: bytes | None = preflight
