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
from urllib.parse import urlencode

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...errors import Unavailable
from ...services import Services, services
from ...vote import timeline
from ...vote.registry import LiveCampaign
from .. import i18n
from ..api.admin import export_response
from ..assets import accepts_gzip, assets
from ..pages.campaigns import env
from ..server.security import page_csp
from . import words as ops_words
from .session import Session, console, current, is_https

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
    """The console reader's session (admin, ops); an auditor's too, for the pages to send
    them to the audit log, the one page an auditor reads."""
    return await current(request, svc, console(request, svc).sessions, auditor=True)


def _to_audit(words: i18n.Words) -> Response:
    return RedirectResponse("/ops/audit" + _lang_query(words), status_code=303)


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
        rows.append({"id": live.id, "title": live.c.title, "year": live.c.year,
                     "state": live.state(now),
                     "total": total, "rate": rate})
    return rows


async def index(request: Request) -> Response:
    svc = services(request)
    words = _words(request)
    session = await _session(request, svc)
    if session is None:
        return _login(request, words)
    if not session.can_read_console:
        return _to_audit(words)
    now = time.time()
    rows = await campaign_rows(svc, now)
    for row in rows:
        row["window"] = window_text(svc.registry.campaigns[row["id"]], words.lang)
    config = {"page": "list", "lang": words.lang, "t": dict(words.js),
              "status": {k[7:]: v for k, v in words.messages.items() if k.startswith("status_")}}
    return _render(request, "ops_list.html", words, session=session, campaigns=rows,
                   config=_json(config))


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
    if not session.can_read_console:
        return _to_audit(words)
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
    if session is None or not session.can_read_console:
        return _login(request, _words(request), 401, next_path="/ops")
    return await export_response(svc, session.actor, request.path_params["cid"],
                                 request.query_params.get("format", "csv"))


routes = [
    Route("/ops", index),
    Route("/ops/c/{cid}", campaign),
    Route("/ops/c/{cid}/export", export_file),
]
