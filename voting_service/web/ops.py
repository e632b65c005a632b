"""The ops console's pages (issue 10 §1): sign-in, the campaign list, the live campaign view.

Server-rendered like the public pages (Jinja2, zh-CN first, ``?lang=en``); ``ops.js``
polls ``ops_api`` every second and draws the charts as SVG itself. The pages belong to one
person: never cached, never framed, and shown only with a live session (``ops_session``).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..errors import InvalidRequest, Unavailable
from ..ledger import db
from ..services import Services, services
from ..vote import timeline
from ..vote.registry import LiveCampaign
from . import i18n, ops_words
from .api_admin import export_response
from .assets import accepts_gzip, assets
from .http import read_body
from .ops_session import (
    Session,
    address_of,
    clear_cookie,
    console,
    current,
    end,
    is_https,
    set_cookie,
)
from .pages import env
from .security import page_csp

_NEXT = re.compile(r"/ops(?:/c/[A-Za-z0-9][A-Za-z0-9_-]{0,63})?")


def _words(request: Request, lang: str | None = None) -> i18n.Words:
    return ops_words.words(lang or request.query_params.get("lang"),
                           request.headers.get("accept-language"))


def _lang_query(words: i18n.Words) -> str:
    return "?lang=en" if words.lang == "en" else ""


def _json(value: Any) -> str:
    # a JSON data block inside <script>: "<" escaped so no "</script>" can end it early
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _render(request: Request, template: str, words: i18n.Words, status: int = 200,
            headers: Mapping[str, str] | None = None, **context: Any) -> Response:
    other = "en" if words.lang == "zh" else "zh"
    path = context.pop("lang_path", request.url.path)
    text = env.get_template(template).render(
        t=words, static=assets().url, lq=_lang_query(words),
        lang_url=f"{path}?{urlencode({'lang': other})}", **context)
    body = text.encode()
    out = {
        "Content-Security-Policy": page_csp(), "X-Frame-Options": "DENY",
        "Cache-Control": "no-store", "Vary": "Accept-Encoding, Accept-Language, Cookie",
        **(headers or {}),
    }
    if accepts_gzip(request):
        out["Content-Encoding"] = "gzip"
        body = gzip.compress(body, 6)
    return Response(body, status, out, media_type="text/html; charset=utf-8")


def _login(request: Request, words: i18n.Words, status: int = 200, message: str = "",
           next_path: str = "", headers: Mapping[str, str] | None = None) -> Response:
    next_path = next_path or request.url.path
    return _render(request, "ops_login.html", words, status, headers, message=message,
                   next=next_path, lang_path=next_path, session=None)


async def _session(request: Request, svc: Services) -> Session | None:
    return await current(request, svc, console(request, svc).sessions)


def window_text(live: LiveCampaign, lang: i18n.Lang) -> str:
    page_words = i18n.Words(lang)
    return page_words.window(live.c.opens_at.astimezone(live.zone),
                             live.c.closes_at.astimezone(live.zone), live.c.timezone)


async def campaign_rows(svc: Services, now: float) -> list[dict[str, Any]]:
    """Every campaign with its state, total and votes per second now (``None`` where Redis
    could not say)."""
    lives = sorted(svc.registry.campaigns.values(),
                   key=lambda x: (x.state(now) != "open", x.c.status == "draft", -x.opens, x.id))
    rows = []
    for live in lives:
        total: int | None = None
        rate: float | None = None
        with contextlib.suppress(Unavailable, RedisError, OSError):
            counts, _ = await svc.registry.tallies(live.id)
            total = sum(counts.values())
            seconds = await timeline.read_seconds(svc.redis, live.id, int(now) - 13, int(now))
            rate = timeline.rate(seconds, int(now))
        rows.append({"id": live.id, "title": live.c.title, "state": live.state(now),
                     "total": total, "rate": rate})
    return rows


async def index(request: Request) -> Response:
    svc = services(request)
    words = _words(request)
    session = await _session(request, svc)
    if session is None:
        return _login(request, words)
    now = time.time()
    rows = await campaign_rows(svc, now)
    for row in rows:
        row["window"] = window_text(svc.registry.campaigns[row["id"]], words.lang)
    config = {"page": "list", "lang": words.lang, "t": dict(words.js),
              "status": {k[7:]: v for k, v in words.messages.items() if k.startswith("status_")}}
    return _render(request, "ops_list.html", words, session=session, campaigns=rows,
                   config=_json(config))


def _form(raw: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(raw.decode("utf-8"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("malformed form") from exc
    return {k: v[0] for k, v in parsed.items() if v}


async def login(request: Request) -> Response:
    """Check a posted token; throttled per address (the check comes before the token's)."""
    svc = services(request)
    c = console(request, svc)
    form = _form(await read_body(request, 4096))
    words = _words(request, form.get("lang"))
    next_path = form.get("next", "/ops")
    if not _NEXT.fullmatch(next_path):
        next_path = "/ops"
    address = address_of(request, svc)
    wait = await c.throttle.wait(svc, address)
    if wait:
        return _login(request, words, 429, words("login_locked", m=max(1, round(wait / 60))),
                      next_path, {"Retry-After": str(wait)})
    token = form.get("token", "").strip()
    role = c.sessions.role_of(token)
    if role is None:
        left = await c.throttle.failed(svc, address)
        message = (words("login_wrong", n=left) if left else
                   words("login_locked", m=round(c.throttle.window / 60)))
        return _login(request, words, 401, message, next_path)
    value, session = c.sessions.issue(token, role)
    with contextlib.suppress(Exception):  # sign-in works while PostgreSQL is down
        async with svc.db() as conn:
            await db.audit(conn, session.actor, "console.login", "",
                           {"session": session.id[:8], "address": address})
    response = RedirectResponse(next_path + _lang_query(words), status_code=303)
    set_cookie(response, request, svc, value, c.sessions.max_age)
    return response


async def logout(request: Request) -> Response:
    svc = services(request)
    words = _words(request)
    session = await _session(request, svc)
    if session is not None:
        try:
            await end(svc, session)
        except Exception as exc:  # the cookie still goes; say the server could not end it
            raise Unavailable("Redis is unreachable: the session could not be ended") from exc
    response = RedirectResponse("/ops" + _lang_query(words), status_code=303)
    clear_cookie(response, request, svc)
    return response


def embed_snippet(base: str, campaign_id: str, channel_id: str) -> str:
    return (f'<script src="{base}/embed.js" data-campaign="{campaign_id}"'
            f' data-channel="{channel_id}" async></script>')


def _base(request: Request, svc: Services) -> str:
    scheme = "https" if is_https(request, svc) else request.url.scheme
    return f"{scheme}://{request.url.netloc}"


async def campaign(request: Request) -> Response:
    svc = services(request)
    words = _words(request)
    session = await _session(request, svc)
    if session is None:
        return _login(request, words)
    live = svc.registry.campaigns.get(request.path_params["cid"])
    if live is None:
        return _render(request, "ops_missing.html", words, 404, session=session)
    now = time.time()
    counts: dict[str, int] = {}
    with contextlib.suppress(Unavailable):
        counts, _ = await svc.registry.tallies(live.id)
    total = sum(counts.values())
    rows = sorted(live.c.candidates, key=lambda x: (-counts.get(x.id, 0), x.number))
    base = _base(request, svc)
    channels = [{"id": ch.id, "name": ch.name, "origins": ch.allowed_origins,
                 "snippet": embed_snippet(base, live.id, ch.id)} for ch in live.c.channels]
    config = {
        "page": "campaign", "cid": live.id, "lang": words.lang, "canWrite": session.can_write,
        "tz": live.c.timezone, "channels": {ch.id: ch.name for ch in live.c.channels},
        "t": dict(words.js), "reasons": list(ops_words.REASONS), "window": timeline.WINDOW,
        "status": {k[7:]: v for k, v in words.messages.items() if k.startswith("status_")},
        "candidates": [[x.id, x.number, x.name, x.region, x.industry]
                       for x in live.c.candidates],
    }
    return _render(
        request, "ops_campaign.html", words, session=session, live=live, c=live.c,
        state=live.state(now), window=window_text(live, words.lang), total=total,
        rows=[{"x": x, "votes": counts.get(x.id, 0),
               "share": counts.get(x.id, 0) / total if total else 0.0} for x in rows],
        channels=channels, config=_json(config), nav_cid=live.id, nav_here="live",
    )


async def export_file(request: Request) -> Response:
    svc = services(request)
    session = await _session(request, svc)
    if session is None:
        return _login(request, _words(request), 401, next_path="/ops")
    return await export_response(svc, session.actor, request.path_params["cid"],
                                 request.query_params.get("format", "csv"))


routes = [
    Route("/ops", index),
    Route("/ops/login", login, methods=["POST"]),
    Route("/ops/logout", logout, methods=["POST"]),
    Route("/ops/c/{cid}", campaign),
    Route("/ops/c/{cid}/export", export_file),
]
