"""The ops console's JSON, under ``/ops/api``: what ``ops.js`` polls and the console's writes.

The session cookie is the credential (``ops_session``); writes need the admin role, come
through the same functions as the admin API (so they are audited the same way, with the
console's actor) and, like every state-changing request, pass the same-origin check of
``security.SecurityMiddleware``. Request bodies here are the console's own small contract.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any, Literal

import msgspec
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import Forbidden, InvalidRequest, NotFound, Unauthorized, Unavailable
from ...fraud import blocklist, invalidation, suspicious
from ...models import BlockIn, CampaignPatch, InvalidationIn, Reason
from ...services import Services, services
from ...vote import timeline
from ..api.admin import update_campaign
from ..http import JSON, json_body
from . import words as ops_words
from .console import campaign_rows
from .session import Session, console, current


class StatusIn(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["paused", "open"]


class StrikeIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason
    criteria: dict[str, Any]
    """A suspicious group's ``criteria``, as the detector gave it."""


class ConsoleBlockIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["voter", "ip"]
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    reason: Reason
    scope: Literal["campaign", "all"] = "campaign"
    hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 366)] | None = None


async def _session(request: Request, write: bool = False) -> tuple[Services, Session]:
    svc = services(request)
    session = await current(request, svc, console(request, svc).sessions, write=write,
                            auditor=True)
    if session is None:
        raise Unauthorized("sign in to the ops console first")
    if not session.can_read_console:
        raise Forbidden("the auditor role reads the audit log only")
    if write and not session.can_write:
        raise Forbidden("the ops role reads only; this needs an admin account")
    return svc, session


async def campaigns(request: Request) -> Response:
    svc, _ = await _session(request)
    return JSON(await campaign_rows(svc, time.time()))


def _since(request: Request, now: int) -> int:
    raw = request.query_params.get("since", "")
    since = int(raw) if raw.isdigit() else 0
    return min(max(since, now - timeline.WINDOW), now)


async def live(request: Request) -> Response:
    """Totals, ranking, the seconds counted after ``?since=`` and health, for one poll."""
    svc, _ = await _session(request)
    current_live = svc.registry.get(request.path_params["cid"], drafts=True)
    cid = current_live.id
    now = int(time.time())
    since = _since(request, now)
    body: dict[str, Any] = {"now": now, "since": since, "settle": timeline.SETTLE,
                            "state": current_live.state(now), "status": current_live.c.status,
                            "redis": True}
    try:
        counts, as_of = await svc.registry.tallies(cid)
        seconds = await timeline.read_seconds(svc.redis, cid, since, now)
        then = await timeline.oldest_snapshot(svc.redis, cid, 10, now)
    except (Unavailable, RedisError, OSError):
        body["redis"] = False
        return JSON(body | {"health": health_view(svc, cid)})
    recent = timeline.since_snapshot(counts, then)
    body |= {
        "total": sum(counts.values()), "as_of": as_of,
        "candidates": [[x.id, counts.get(x.id, 0), recent.get(x.id, 0)]
                       for x in current_live.c.candidates],
        "recent_since": then.minute * 60 if then else None,
        "seconds": {str(s): f for s, f in sorted(seconds.items())},
        "health": health_view(svc, cid),
    }
    return JSON(body)


def health_view(svc: Services, campaign_id: str) -> dict[str, Any] | None:
    """The health snapshot the web process keeps (``ledger.health``), for one campaign;
    ``None`` until the first one is taken."""
    health = svc.health
    if not health.at:
        return None
    found = health.to_dict()
    mine = found["campaigns"].get(campaign_id, {})
    return {
        "age_seconds": round(max(0.0, time.time() - found["at"]), 1),
        "problems": found["problems"],
        "redis_up": found["redis"]["up"], "durable": found["redis"]["durable"],
        "durability": found["redis"]["durability"], "postgres_up": found["postgres"]["up"],
        "backlog": mine.get("backlog"), "lag_seconds": mine.get("lag_seconds"),
        "drift": mine.get("drift"), "drifting": mine.get("drifting", []),
        "repairs": health.repaired(campaign_id),
    }


async def set_status(request: Request) -> Response:
    """Pause or resume: published to every worker at once (each polls within a second)."""
    svc, session = await _session(request, write=True)
    live = svc.registry.get(request.path_params["cid"], drafts=True)
    body = await json_body(request, StatusIn, 256)
    wanted_from = {"paused": "open", "open": "paused"}[body.status]
    if live.c.status != wanted_from:
        raise InvalidRequest(f"the campaign is {live.c.status}, not {wanted_from}")
    action = "campaign.pause" if body.status == "paused" else "campaign.resume"
    updated = await update_campaign(svc, session.actor, live.id,
                                    CampaignPatch(status=body.status), action=action)
    return JSON({"id": updated.id, "status": updated.status,
                 "state": svc.registry.get(updated.id, drafts=True).state(time.time())})


SUSPICIOUS_FOR = 20.0
"""Seconds one search for suspicious groups serves every console (``?fresh=1`` redoes it)."""


async def get_suspicious(request: Request) -> Response:
    svc, _ = await _session(request)
    live = svc.registry.get(request.path_params["cid"], drafts=True)
    lang = ops_words.words(request.query_params.get("lang"),
                           request.headers.get("accept-language")).lang
    cache = console(request, svc).suspicious
    hit = cache.get(live.id)
    if hit is None or time.monotonic() - hit[0] > SUSPICIOUS_FOR or \
            request.query_params.get("fresh") == "1":
        until = dt.datetime.now(dt.UTC)
        window = suspicious.Window(until - dt.timedelta(hours=24), until)
        async with svc.db() as conn:
            groups = await suspicious.find(conn, svc.redis, live.id, window,
                                           live.day(time.time()).expire_at)
        for g in groups:
            g.pop("voter_ids", None)  # the criteria name them when a strike-out needs them
        found: dict[str, Any] = {"campaign_id": live.id, "since": window.since.isoformat(),
                                 "until": until.isoformat(), "groups": groups}
        hit = cache[live.id] = (time.monotonic(), found)
    body = hit[1] | {"groups": [g | {"description": ops_words.describe(g, live, lang)}
                                for g in hit[1]["groups"]]}
    return JSON(body)


async def strike(request: Request) -> Response:
    svc, session = await _session(request, write=True)
    live = svc.registry.get(request.path_params["cid"], drafts=True)
    body = await json_body(request, StrikeIn, 512 * 1024)
    try:
        criteria = msgspec.convert({**body.criteria, "reason": body.reason}, InvalidationIn,
                                   str_keys=True)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"criteria: {exc}") from exc
    async with svc.db() as conn:
        result = await invalidation.invalidate(conn, svc.redis, live.id, svc.settings.shards,
                                               session.actor, criteria)
    console(request, svc).suspicious.pop(live.id, None)  # the struck votes are gone from it
    return JSON(result, status_code=201)


async def get_blocklist(request: Request) -> Response:
    svc, _ = await _session(request)
    live = svc.registry.get(request.path_params["cid"], drafts=True)
    async with svc.db() as conn:
        rows = await blocklist.listing(conn, kind=None, campaign_id=live.id, active_only=True)
    return JSON(rows)


async def add_block(request: Request) -> Response:
    svc, session = await _session(request, write=True)
    live = svc.registry.get(request.path_params["cid"], drafts=True)
    body = await json_body(request, ConsoleBlockIn, 4096)
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=body.hours)
               if body.hours else None)
    entry = BlockIn(kind=body.kind, value=body.value, reason=body.reason,
                    campaign_id=live.id if body.scope == "campaign" else None, expires_at=expires)
    async with svc.db() as conn:
        row = await blocklist.add(conn, svc.redis, svc.settings.shards, session.actor, entry)
    if body.kind == "ip":
        await svc.ip_blocks.refresh(svc.redis)  # this worker at once, the others within 1 s
    return JSON(row, status_code=201)


async def remove_block(request: Request) -> Response:
    svc, session = await _session(request, write=True)
    raw = request.path_params["entry"]
    if not raw.isdigit() or int(raw) >= 2**63:
        raise NotFound()
    async with svc.db() as conn:
        entry = await blocklist.remove(conn, svc.redis, svc.settings.shards, session.actor,
                                       int(raw))
    if entry is None:
        raise NotFound("no such active blocklist entry")
    if entry["kind"] == "ip":
        await svc.ip_blocks.refresh(svc.redis)
    return JSON(entry)


routes = [
    Route("/ops/api/campaigns", campaigns),
    Route("/ops/api/c/{cid}/live", live),
    Route("/ops/api/c/{cid}/status", set_status, methods=["POST"]),
    Route("/ops/api/c/{cid}/suspicious", get_suspicious),
    Route("/ops/api/c/{cid}/invalidations", strike, methods=["POST"]),
    Route("/ops/api/c/{cid}/blocklist", get_blocklist),
    Route("/ops/api/c/{cid}/blocklist", add_block, methods=["POST"]),
    Route("/ops/api/blocklist/{entry}", remove_block, methods=["DELETE"]),
]
