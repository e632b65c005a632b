"""The check of every request's URL, before any route sees it (pure ASGI, cheap).

- A path or query that decodes to a NUL character or to bytes that are not UTF-8 is
  answered ``400 invalid_request`` here, for every route at once: path parameters and query
  values then obey the same rule as JSON text fields (``models.TEXT_PATTERN``), and none of
  them can reach PostgreSQL, a Redis key or a log line. The vote route, which runs ahead of
  the middleware stack, makes the same check (``url_ok``, in ``votes.handle_vote``).
- A client that hangs up before its body arrived (routine on mobile networks) is one info
  line, not an unhandled error: nobody is left to answer.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_to_bytes

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ...errors import InvalidRequest
from ...models import text_ok
from ..http import problem

log = logging.getLogger(__name__)


def clean_url_part(raw: bytes) -> bool:
    """Whether a raw path or query string decodes to UTF-8 text without NUL."""
    if b"%" not in raw and raw.isascii():
        return b"\x00" not in raw
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:  # also CESU-8 surrogates (%ED%A0%80): not UTF-8
        return False
    return text_ok(text)


UNCLEAN_URL = "the path or the query holds a NUL character or is not UTF-8"


def url_ok(scope: Scope) -> bool:
    """Whether the request's raw path and query string are clean (``clean_url_part``)."""
    raw_path = scope.get("raw_path")
    if raw_path is None:
        raw_path = scope["path"].encode("utf-8", "surrogatepass")
    return clean_url_part(raw_path) and clean_url_part(scope.get("query_string", b""))


class EdgeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not url_ok(scope):
            refused = problem(InvalidRequest(UNCLEAN_URL))
            await refused(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            client = scope.get("client") or ("-", 0)
            log.info("client disconnected: %s %s from %s", scope["method"], scope["path"],
                     client[0])
