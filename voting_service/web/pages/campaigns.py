"""Server-rendered pages (DESIGN §7): open votes, candidate list and detail, embed widget.

Every page works as plain HTML (filters are a GET form); ``app.js`` adds instant filtering,
voting with proof of work and live counts. Pages carry no per-visitor data, so a rendered
page is reused for about a second by everyone asking for the same thing.
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import json
import re
import time
import weakref
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ... import digits
from ...errors import CampaignNotFound, NotPublished, Unavailable
from ...ledger import gongshi, objections, public_ledger, transparency
from ...models import Candidate, region_order
from ...services import Services, services
from ...settings import Settings
from ...vote import wechat
from ...vote.registry import LiveCampaign, Registry
from .. import i18n
from ..api import wechat as api_wechat
from ..api.votes import VOTER_COOKIE
from ..assets import accepts_gzip, assets, photo, static_file
from ..server.security import channel_origins, is_https, normalize_origin, page_csp

env = jinja2.Environment(
    loader=jinja2.PackageLoader("voting_service", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
env.filters["num"] = lambda n: f"{n:,}"
_QUOTED = re.compile(r"“[^”]{1,20}”")


def _keep_quotes(text: str) -> Markup:
    """A short “quoted name” in a heading never breaks across lines."""
    escaped = str(escape(text))
    return Markup(_QUOTED.sub(lambda m: f'<span class="nb">{m[0]}</span>', escaped))


env.filters["keep_quotes"] = _keep_quotes

EMBED_LIST_LIMIT = 10
_CACHE_SIZE = 512
_Rendered = tuple[int, bytes, bytes, str]
_caches: weakref.WeakKeyDictionary[Registry, dict[tuple[Any, ...], _Rendered]] = (
    weakref.WeakKeyDictionary()
)
"""Rendered pages per app (keyed by its registry), reused while the key holds."""


def _lang(request: Request) -> i18n.Words:
    return i18n.Words(
        i18n.pick(request.query_params.get("lang"), request.headers.get("accept-language"))
    )


def _config_json(config: Mapping[str, Any]) -> str:
    # a JSON data block inside <script>: "<" escaped so no "</script>" can end it early
    return json.dumps(config, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _html(request: Request, status: int, body: bytes, gz: bytes, csp: str) -> Response:
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": "public, max-age=5" if status == 200 else "no-store",
        "Vary": "Accept-Encoding, Accept-Language",
    }
    if "frame-ancestors 'none'" in csp:
        headers["X-Frame-Options"] = "DENY"
    if accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        body = gz
    return Response(body, status, headers, media_type="text/html; charset=utf-8")


def render(
    request: Request, template: str, words: i18n.Words, status: int = 200,
    frame_ancestors: str = "'none'", cache_key: tuple[Any, ...] | None = None,
    **context: Any,
) -> Response:
    key = None if cache_key is None else (template, words.lang, status, frame_ancestors,
                                          *cache_key)
    cache = _caches.setdefault(services(request).registry, {})
    hit = cache.get(key) if key is not None else None
    if hit is None:
        text = env.get_template(template).render(
            t=words, static=assets().url, lang_url=_lang_url(request, words),
            site=site_notice(services(request).settings), **context
        )
        body = text.encode()
        hit = (status, body, gzip.compress(body, 6), page_csp(frame_ancestors))
        if key is not None:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[key] = hit
    return _html(request, *hit)


@functools.cache
def _site_notice(icp: str, psb: str, contact: str) -> dict[str, str]:
    return {"icp": icp, "psb": psb, "contact": contact,
            "psb_code": "".join(ch for ch in psb if ch.isascii() and ch.isdigit())}


def site_notice(settings: Settings) -> dict[str, str]:
    """The site's filings and contact for every footer: ICP备案号 (linked to the MIIT's
    register), 公安备案号 (linked to its record by number) and the contact line."""
    return _site_notice(settings.site_icp, settings.site_psb, settings.site_contact)


_KEPT_PARAMS = ("q", "region", "industry", "sort", "channel", "candidate", "origin")


def _lang_url(request: Request, words: i18n.Words) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k in _KEPT_PARAMS]
    params.append(("lang", "en" if words.lang == "zh" else "zh"))
    return f"{request.url.path}?{urlencode(params)}"


def not_found(request: Request, words: i18n.Words | None = None) -> Response:
    return render(request, "error.html", words or _lang(request), status=404,
                  cache_key=(request.url.path,))


async def _counts(svc: Services, live: LiveCampaign) -> tuple[dict[str, int] | None, str]:
    """The campaign's counts if public; a page still renders without them if Redis is down."""
    if not live.c.show_counts:
        return None, ""
    try:
        return await svc.registry.tallies(live.id)
    except Unavailable:
        return None, ""


def photo_url(live: LiveCampaign, cand: Candidate) -> str:
    return cand.photo_url or f"/static/photos/{cand.id}.svg?c={live.id}"


def _matches(cand: Candidate, text: str, region: str, industry: str) -> bool:
    if region and cand.region != region:
        return False
    if industry and cand.industry != industry:
        return False
    if not text:
        return True
    number = digits.fold(text).removesuffix("号").removeprefix("No.").strip().lstrip("0")
    if digits.is_number(number) and int(number) == cand.number:
        return True
    return text.lower() in cand.name.lower() or text == cand.id


def _card(live: LiveCampaign, cand: Candidate, votes: int | None, hidden: bool,
          lang_query: str) -> dict[str, Any]:
    return {
        "id": cand.id, "number": cand.number, "name": cand.name, "region": cand.region,
        "industry": cand.industry, "employer": cand.employer, "occupation": cand.occupation,
        "summary": cand.summary, "photo": photo_url(live, cand), "votes": votes,
        "hidden": hidden, "url": f"/c/{live.id}/{cand.id}{lang_query}",
        "withdrawn": cand.status == "withdrawn", "recommender": cand.recommender,
        "deed_type": cand.deed_type, "honors": cand.honors, "video": cand.video_url,
    }


def _distinct(values: list[str]) -> list[str]:
    return [v for v in dict.fromkeys(values) if v]


def _campaign_context(
    live: LiveCampaign, words: i18n.Words, counts: dict[str, int] | None, now: float,
    channel: str = "", embed: bool = False, parent_origin: str = "", wechat_start: str = "",
    log_key: str = "",
) -> dict[str, Any]:
    c = live.c
    state = live.state(now)
    opens, closes = live.opens_local, live.closes_local
    config = {
        "cid": live.id, "tz": c.timezone, "tzName": words.tz_name(c.timezone),
        "locale": words("locale"), "identity": list(c.rules.identity),
        "challenge": c.rules.challenge, "counts": counts is not None, "status": state,
        "channel": channel, "embed": embed, "parentOrigin": parent_origin,
        "pow": assets().url("pow.js"), "t": dict(words.js), "wechat": wechat_start,
        "logKey": log_key,
    }
    return {
        "c": c, "state": state, "open": state == "open",
        "results_url": f"/c/{live.id}/results" if c.published_at else "",
        "window": words.window(opens, closes, c.timezone),
        "rules": words("rules", n=c.rules.votes_per_day, k=c.rules.per_candidate_per_day),
        "total": None if counts is None else sum(counts.values()),
        "config": _config_json(config),
        "log_key": log_key,
    }


async def home(request: Request) -> Response:
    svc = services(request)
    words = _lang(request)
    now = time.time()
    lives = [x for x in svc.registry.campaigns.values() if svc.registry.public(x.id)]
    lives.sort(key=lambda x: (x.state(now) != "open", -x.opens, x.id))
    items = [
        {"id": x.id, "title": x.c.title, "state": x.state(now),
         "window": words.window(x.opens_local, x.closes_local, x.c.timezone)}
        for x in lives
    ]
    return render(request, "index.html", words, campaigns=items,
                  cache_key=(svc.registry.version, int(now) // 60))


async def campaign_page(request: Request) -> Response:
    svc = services(request)
    words = _lang(request)
    live = svc.registry.public(request.path_params["cid"])
    if live is None:
        return not_found(request, words)
    redirect = _wechat_redirect(request, svc, live)
    if redirect is not None:
        return redirect
    counts, as_of = await _counts(svc, live)
    q = request.query_params
    text = (q.get("q") or "").strip()[:50]
    region, industry = q.get("region") or "", q.get("industry") or ""
    sort = "votes" if q.get("sort") == "votes" and counts is not None else "number"
    lang_query = "?lang=en" if q.get("lang") == "en" else ""
    cands = list(live.c.candidates)
    if sort == "votes" and counts is not None:
        cands.sort(key=lambda x: (-counts.get(x.id, 0), x.number))
    cards = [
        _card(live, x, None if counts is None else counts.get(x.id, 0),
              not _matches(x, text, region, industry), lang_query)
        for x in cands
    ]
    now = time.time()
    return render(
        request, "campaign.html", words,
        cache_key=(live.id, svc.registry.version, as_of, q.get("lang"), text, region,
                   industry, sort, _base(request), int(now)),
        **_campaign_context(live, words, counts, now,
                            wechat_start=_wechat_start(svc, live, f"/c/{live.id}"),
                            log_key=transparency.public_key_hex(svc.settings)),
        cards=cards, shown=sum(not x["hidden"] for x in cards),
        regions=region_order([x.region for x in live.c.candidates]),
        industries=_distinct([x.industry for x in live.c.candidates]),
        query={"q": text, "region": region, "industry": industry, "sort": sort},
        canonical=f"{_base(request)}/c/{live.id}",
    )


def _wechat_start(svc: Services, live: LiveCampaign, path: str) -> str:
    """Where the page sends a voter inside WeChat to sign in ("" when not offered)."""
    if not api_wechat.offered(svc, live):
        return ""
    return f"{wechat.START_PATH}?{urlencode({'campaign_id': live.id, 'next': path})}"


def _wechat_redirect(request: Request, svc: Services, live: LiveCampaign) -> Response | None:
    """Inside WeChat's browser, a visitor without a voter cookie goes to WeChat's silent
    authorisation first (``?wechat=0`` stays: the way back after a failed sign-in)."""
    if (api_wechat.offered(svc, live) and wechat.in_wechat(request.headers.get("user-agent"))
            and request.query_params.get("wechat") != "0"
            and VOTER_COOKIE + live.id not in request.cookies
            and live.state(time.time()) != "closed"):
        back = api_wechat.next_path(live, request.url.path)
        return api_wechat.to_wechat(request, svc, live, back)
    return None


def _base(request: Request) -> str:
    """This service's address as the visitor sees it (https behind a trusted proxy)."""
    base = str(request.base_url).rstrip("/")
    if base.startswith("http://") and is_https(request.scope,
                                               services(request).settings.trusted_proxies):
        base = "https://" + base.removeprefix("http://")
    return base


async def candidate_page(request: Request) -> Response:
    svc = services(request)
    words = _lang(request)
    live = svc.registry.public(request.path_params["cid"])
    if live is None:
        return not_found(request, words)
    cand = live.candidates.get(request.path_params["candidate"])
    if cand is None:
        return not_found(request, words)
    redirect = _wechat_redirect(request, svc, live)
    if redirect is not None:
        return redirect
    counts, as_of = await _counts(svc, live)
    now = time.time()
    lang_query = "?lang=en" if request.query_params.get("lang") == "en" else ""
    card = _card(live, cand, None if counts is None else counts.get(cand.id, 0), False,
                 lang_query)
    image = card["photo"] if card["photo"].startswith("http") else _base(request) + card["photo"]
    return render(
        request, "candidate.html", words,
        cache_key=(live.id, svc.registry.version, cand.id, as_of, request.query_params.get("lang"),
                   _base(request), int(now)),
        **_campaign_context(live, words, counts, now,
                            wechat_start=_wechat_start(svc, live, f"/c/{live.id}/{cand.id}")),
        x=card, deeds=[p.strip() for p in cand.deeds.splitlines() if p.strip()],
        back=f"/c/{live.id}{lang_query}",
        canonical=f"{_base(request)}/c/{live.id}/{cand.id}", image=image,
    )


def _parent_origin(request: Request, allowed: Any) -> str:
    """The embedding page's origin, if the channel lists it: from ``?origin=``, else Referer."""
    for raw in (request.query_params.get("origin"), request.headers.get("referer")):
        if not raw:
            continue
        parts = urlsplit(raw)
        origin = normalize_origin(f"{parts.scheme}://{parts.netloc}")
        if origin is not None and allowed.allows(origin):
            return origin
    return ""


async def embed_page(request: Request) -> Response:
    svc = services(request)
    words = _lang(request)
    live = svc.registry.public(request.path_params["cid"])
    if live is None:
        return not_found(request, words)
    channel_id = request.query_params.get("channel") or ""
    allowed = channel_origins(live).get(channel_id) if channel_id else None  # "" = all
    if allowed is None:
        return render(request, "error.html", words, status=404,
                      message=words("embed_refused"), cache_key=(live.id, channel_id[:64]))
    counts, as_of = await _counts(svc, live)
    now = time.time()
    only = request.query_params.get("candidate") or ""
    cand = live.candidates.get(only) if only else None
    if only and cand is None:
        return not_found(request, words)
    chosen = [cand] if cand is not None else list(live.c.candidates)
    cards = [_card(live, x, None if counts is None else counts.get(x.id, 0),
                   cand is None and i >= EMBED_LIST_LIMIT, "")
             for i, x in enumerate(chosen)]
    for card in cards:
        card["url"] = f"/c/{live.id}/{card['id']}"
    parent = _parent_origin(request, allowed)
    return render(
        request, "embed.html", words, frame_ancestors=allowed.csp_source_list(),
        cache_key=(live.id, svc.registry.version, channel_id, only, parent, as_of,
                   request.query_params.get("lang"), int(now)),
        **_campaign_context(live, words, counts, now, channel=channel_id, embed=True,
                            parent_origin=parent),
        cards=cards, single=cand is not None, limit=EMBED_LIST_LIMIT,
    )


async def embed_js(request: Request) -> Response:
    return assets().response(request, "embed.js", cache="public, max-age=300")


async def results_page(request: Request) -> Response:
    """The published results (公示), readable on a phone, with the lookup of one's own vote."""
    svc = services(request)
    words = _lang(request)
    live = svc.registry.public(request.path_params["cid"])
    if live is None:
        return not_found(request, words)
    if live.c.published_at is None:
        lang_query = "?lang=en" if request.query_params.get("lang") == "en" else ""
        return render(request, "error.html", words, status=404,
                      cache_key=(request.url.path, "unpublished", request.query_params.get("lang")),
                      heading=words("not_published"), message=words("not_published_text"),
                      back=f"/c/{live.id}{lang_query}", back_text=words("back_to_vote"))
    context = await results_context(request, svc, live, words)
    if context is None:
        return not_found(request, words)
    return render(request, "results.html", words,
                  cache_key=(live.id, context["results"]["published_at"],
                             request.query_params.get("lang"), context["vote_id"],
                             _base(request), context["period"]["state"],
                             context["objection"]["sent"]),
                  **context)


async def results_context(request: Request, svc: Services, live: LiveCampaign,
                          words: i18n.Words) -> dict[str, Any] | None:
    """What the results page shows (also under an objection form sent back with errors)."""
    vote_id = (request.query_params.get("vote") or "").strip()[:64]
    try:
        results = (await svc.frozen.results(live.id)).results
    except (NotPublished, CampaignNotFound):
        return None
    period = objection_period(svc, live, results)
    found = []
    async with svc.db("public") as conn:  # short reads; nothing waits on the client here
        if _VOTE_ID.fullmatch(vote_id):
            found = await public_ledger.lookup(conn, live.id, str(svc.settings.pepper), vote_id)
        counts = await objections.counts(conn, live.id) if period["state"] == "over" else {}
    names = {x.id: x for x in live.c.candidates}
    lang_query = "?lang=en" if request.query_params.get("lang") == "en" else ""
    published = dt.datetime.fromisoformat(results["published_at"]).astimezone(live.zone)
    total = results["total"]
    rows = [r | {"share": f"{r['votes'] * 100 / total:.2f}" if total else "0.00",
                 "url": f"/c/{live.id}/{r['candidate_id']}{lang_query}"
                 if r["candidate_id"] in names else "",
                 "objections": counts.get(r["candidate_id"], 0)}
            for r in results["candidates"]]
    s = svc.settings
    return {
        **_campaign_context(live, words, None, time.time()),
        "results": results, "rows": rows, "back": f"/c/{live.id}{lang_query}",
        "published": words("published_at", at=published.strftime("%Y-%m-%d %H:%M")),
        "vote_id": vote_id,
        "found": [r.as_json() | {"name": names[r.candidate].name
                                 if r.candidate in names else r.candidate} for r in found],
        "ledger_url": f"/api/v1/campaigns/{live.id}/ledger",
        "canonical": f"{_base(request)}/c/{live.id}/results",
        "period": period | {"text": _period_text(words, live, period, s.gongshi_working_days)},
        "contact": {"phone": s.organiser_phone, "address": s.organiser_address,
                    "email": s.organiser_email},
        "sms_needed": s.sms_sender != "console",
        "choices": [x for x in live.c.candidates],
        "objection": {"typed": {}, "errors": {}, "code_sent": "",
                      "sent": sent if (sent := request.query_params.get("sent", "")).isdigit()
                      and len(sent) < 12 else None},
        "lang_query": lang_query,
    }


def objection_period(svc: Services, live: LiveCampaign,
                     results: dict[str, Any] | None) -> dict[str, Any]:
    """The 公示 of a published campaign: its start, end and whether it is on now."""
    if results is None:
        return {"state": "none", "start": None, "end": None}
    start = dt.datetime.fromisoformat(results["published_at"])
    s = svc.settings
    end = gongshi.ends_at(start, live.c.timezone, s.gongshi_working_days, s.holidays,
                          s.extra_workdays)
    return {"state": "on" if time.time() < end.timestamp() else "over", "start": start,
            "end": end}


def _period_text(words: i18n.Words, live: LiveCampaign, period: dict[str, Any],
                 days: int) -> str:
    if period["state"] == "none":
        return ""
    start = words.moment(period["start"].astimezone(live.zone))
    end = words.moment((period["end"] - dt.timedelta(minutes=1)).astimezone(live.zone))
    if period["state"] == "over":
        return words("gongshi_over", end=end)
    return words("gongshi_period", start=start, end=end, n=days)


_VOTE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

routes = [
    Route("/", home),
    Route("/c/{cid}", campaign_page),
    Route("/c/{cid}/results", results_page),
    Route("/c/{cid}/{candidate}", candidate_page),
    Route("/embed/{cid}", embed_page),
    Route("/embed.js", embed_js),
    Route("/static/photos/{stem}.svg", photo),
    Route("/static/{path:path}", static_file),
]
