"""Admin API against vote brushing: blocklist, suspicious groups, invalidations.

Role ``admin`` changes things (each change is in the audit log); ``ops`` reads.
"""

from __future__ import annotations

import datetime as dt
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ... import digits
from ...errors import InvalidRequest, NotFound
from ...fraud import blocklist, invalidation, suspicious
from ...ledger import db
from ...models import BlockIn, InvalidationIn, parse_time
from ...services import services
from ..auth import authorize
from ..http import JSON, json_body

ADMIN = ("admin",)
READERS = ("admin", "ops")
MAX_WINDOW = dt.timedelta(days=62)


def _when(request: Request, name: str) -> dt.datetime | None:
    raw = request.query_params.get(name)
    return parse_time(name, raw) if raw else None


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = digits.whole_number(raw)
    if value is None or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}")
    return value


async def add_block(request: Request) -> Response:
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    body = await json_body(request, BlockIn, 8 * 1024)
    async with svc.db() as conn:
        entry = await blocklist.add(conn, svc.redis, svc.settings.shards, actor, body)
    if body.kind == "ip":
        await svc.ip_blocks.refresh(svc.redis)  # this worker at once, the others within 1 s
    return JSON(entry, status_code=201)


async def list_blocks(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *READERS)
    q = request.query_params
    kind = q.get("kind")
    if kind not in (None, "voter", "ip"):
        raise InvalidRequest("kind is 'voter' or 'ip'")
    async with svc.db() as conn:
        rows = await blocklist.listing(
            conn, kind=kind, campaign_id=q.get("campaign_id"),
            active_only=q.get("all", "") not in ("1", "true"),
        )
    return JSON(rows)


async def remove_block(request: Request) -> Response:
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    raw = request.path_params["entry"]
    entry_id = digits.whole_number(raw)
    if entry_id is None or entry_id >= 2**63:
        raise NotFound()
    async with svc.db() as conn:
        entry = await blocklist.remove(conn, svc.redis, svc.settings.shards, actor, entry_id)
    if entry is None:
        raise NotFound("no such active blocklist entry")
    if entry["kind"] == "ip":
        await svc.ip_blocks.refresh(svc.redis)
    return JSON(entry)


async def get_suspicious(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *READERS)
    live = svc.registry.get(request.path_params["cid"], drafts=True)
    now = dt.datetime.now(dt.UTC)
    until = min(_when(request, "until") or now, now)
    since = _when(request, "since") or until - dt.timedelta(hours=24)
    if not dt.timedelta(0) < until - since <= MAX_WINDOW:
        raise InvalidRequest("since must be before until, at most 62 days apart")
    window = suspicious.Window(
        since, until,
        min_votes=_int(request, "min_votes", 20, 2, 1_000_000),
        bucket=dt.timedelta(minutes=_int(request, "bucket_minutes", 5, 1, 1440)),
    )
    async with svc.db() as conn:
        groups = await suspicious.find(conn, svc.redis, live.id, window,
                                       live.day(time.time()).expire_at)
    return JSON({"campaign_id": live.id, "since": since.isoformat(), "until": until.isoformat(),
                 "groups": groups})


async def create_invalidation(request: Request) -> Response:
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    cid = request.path_params["cid"]
    body = await json_body(request, InvalidationIn, 512 * 1024)
    async with svc.db() as conn:
        await db.require_campaign(conn, cid)
        result = await invalidation.invalidate(
            conn, svc.redis, cid, svc.settings.shards, actor, body)
    return JSON(result, status_code=201)


async def list_invalidations(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *READERS)
    cid = request.path_params["cid"]
    async with svc.db() as conn:
        await db.require_campaign(conn, cid)
        await invalidation.apply_pending(conn, svc.redis, svc.settings.shards)
        return JSON(await invalidation.listing(conn, cid))


routes = [
    Route("/api/v1/admin/blocklist", add_block, methods=["POST"]),
    Route("/api/v1/admin/blocklist", list_blocks, methods=["GET"]),
    Route("/api/v1/admin/blocklist/{entry}", remove_block, methods=["DELETE"]),
    Route("/api/v1/admin/campaigns/{cid}/suspicious", get_suspicious, methods=["GET"]),
    Route("/api/v1/admin/campaigns/{cid}/invalidations", create_invalidation, methods=["POST"]),
    Route("/api/v1/admin/campaigns/{cid}/invalidations", list_invalidations, methods=["GET"]),
]
