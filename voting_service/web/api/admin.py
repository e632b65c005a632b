"""Admin API under ``/api/v1/admin``: role ``admin`` writes, ``ops`` reads."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import CampaignNotFound, Conflict, InvalidRequest, NotFound
from ...fraud import blocklist
from ...ledger import campaigns, db, export, publication
from ...models import (
    Campaign,
    CampaignIn,
    CampaignPatch,
    ChannelIn,
    SecretRotation,
    check_campaign,
    merge_rules,
)
from ...services import Services, services
from ..auth import authorize
from ..http import JSON, decode, json_body, read_body

ADMIN = ("admin",)
READERS = ("admin", "ops")
CAMPAIGN_BODY_LIMIT = 4 * 1024 * 1024
FROZEN = frozenset({"opens_at", "closes_at", "timezone", "status", "candidates"})
"""What a published campaign keeps as it was (its results are frozen)."""


def admin_view(c: Campaign) -> dict[str, Any]:
    view = msgspec.to_builtins(c)
    view["channels"] = [
        {"id": ch.id, "name": ch.name, "allowed_origins": ch.allowed_origins} for ch in c.channels
    ]
    return view  # type: ignore[no-any-return]


async def _publish(svc: Services, conn: asyncpg.Connection, cid: str) -> Campaign:
    campaign = await campaigns.push_snapshot(conn, svc.redis, cid)
    await blocklist.sync_campaign(conn, svc.redis, cid, svc.settings.shards)
    await svc.registry.refresh(force=True)
    return campaign


async def create_campaign(request: Request) -> Response:
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    body = await json_body(request, CampaignIn, CAMPAIGN_BODY_LIMIT)
    campaign = await new_campaign(svc, actor, body)
    return JSON(admin_view(campaign), status_code=201)


async def new_campaign(svc: Services, actor: str, body: CampaignIn) -> Campaign:
    """Create a campaign (audited as ``actor``; the API and the console)."""
    check_campaign(body)
    async with svc.db() as conn:
        async with conn.transaction():
            if await db.campaign_exists(conn, body.id):
                raise Conflict(f"campaign {body.id!r} exists; PATCH it instead")
            await campaigns.save(conn, svc.redis, body, svc.settings.shards)
            await db.audit(conn, actor, "campaign.create", body.id, msgspec.to_builtins(body))
        return await _publish(svc, conn, body.id)


async def update_campaign(svc: Services, actor: str, cid: str, patch: CampaignPatch,
                          action: str = "campaign.update") -> Campaign:
    """Change a campaign (audited as ``actor``) and publish it to every worker; the API and
    the ops console's pause and resume both come through here."""
    async with svc.db() as conn:
        async with conn.transaction():
            current = await db.load_campaign(conn, cid)
            if current is None:
                raise CampaignNotFound()
            changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not None}
            if FROZEN & changes.keys():
                await publication.ensure_unpublished(conn, cid, ", ".join(sorted(
                    FROZEN & changes.keys())))
            if patch.rules is not None:
                changes["rules"] = merge_rules(current.rules, patch.rules)
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            if (patch.status == "closed" and current.status != "closed"
                    and patch.closes_at is None and current.opens_at < now < current.closes_at):
                # closed early: the window ends when it really closed (pages, exports, 公示)
                changes["closes_at"] = now
            updated = msgspec.structs.replace(current, **changes)
            check_campaign(updated)
            await campaigns.save(conn, svc.redis, updated, svc.settings.shards)
            logged = msgspec.to_builtins(patch)
            if "closes_at" in changes and patch.closes_at is None:
                logged |= {"closes_at": changes["closes_at"].isoformat(),
                           "planned_closes_at": current.closes_at.isoformat()}
            await db.audit(conn, actor, action, cid, logged)
        return await _publish(svc, conn, cid)


async def patch_campaign(request: Request) -> Response:
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    patch = await json_body(request, CampaignPatch, CAMPAIGN_BODY_LIMIT)
    campaign = await update_campaign(svc, actor, request.path_params["cid"], patch)
    return JSON(admin_view(campaign))


async def get_campaign(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *READERS)
    async with svc.db() as conn:
        campaign = await db.load_campaign(conn, request.path_params["cid"])
    if campaign is None:
        raise CampaignNotFound()
    return JSON(admin_view(campaign))


async def list_campaigns(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *READERS)
    async with svc.db() as conn:
        rows = await conn.fetch(
            f"SELECT id, title, year, status, {db.WINDOW_COLUMNS} FROM campaigns ORDER BY id"
        )
    return JSON([dict(r) for r in rows])


async def create_channel(request: Request) -> Response:
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    cid = request.path_params["cid"]
    body = await json_body(request, ChannelIn, 64 * 1024)
    return JSON(await add_channel(svc, actor, cid, body), status_code=201)


async def add_channel(svc: Services, actor: str, cid: str, body: ChannelIn) -> dict[str, Any]:
    """A media channel; the answer carries its partner signing secret (shown once)."""
    secret = secrets.token_urlsafe(32)
    async with svc.db() as conn:
        async with conn.transaction():
            await db.require_campaign(conn, cid)
            created = await conn.fetchval(
                db.INSERT_CHANNEL, cid, body.id, body.name, body.allowed_origins, secret
            )
            if created is None:
                raise Conflict(f"channel {body.id!r} exists")
            await db.audit(conn, actor, "channel.create", f"{cid}/{body.id}",
                           msgspec.to_builtins(body))
        await _publish(svc, conn, cid)
    return {"id": body.id, "name": body.name, "allowed_origins": body.allowed_origins,
            "secret": secret}


async def rotate_channel_secret(request: Request) -> Response:
    """A new partner signing secret; the one it replaces keeps working for ``grace_seconds``
    (two valid secrets during a rotation, so partners can switch without downtime)."""
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    cid, chid = request.path_params["cid"], request.path_params["channel"]
    raw = await read_body(request, 1024)
    body = decode(raw, SecretRotation) if raw.strip() else SecretRotation()
    return JSON(await rotate_secret(svc, actor, cid, chid, body))


async def rotate_secret(svc: Services, actor: str, cid: str, chid: str,
                        body: SecretRotation) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    async with svc.db() as conn:
        async with conn.transaction():
            until = await conn.fetchval(
                "UPDATE channels SET previous_secret = secret, secret = $3,"
                " previous_expires_at = now() + make_interval(secs => $4)"
                " WHERE campaign_id = $1 AND id = $2 RETURNING previous_expires_at",
                cid, chid, secret, body.grace_seconds,
            )
            if until is None:
                raise NotFound(f"no channel {chid!r} in campaign {cid!r}")
            await db.audit(conn, actor, "channel.rotate_secret", f"{cid}/{chid}",
                           msgspec.to_builtins(body))
        await _publish(svc, conn, cid)
    return {"id": chid, "secret": secret, "previous_valid_until": until}


async def list_channels(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *READERS)
    live = svc.registry.get(request.path_params["cid"], drafts=True)
    return JSON(admin_view(live.c)["channels"])


async def get_results(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *READERS)
    cid = request.path_params["cid"]
    async with svc.db() as conn:
        await db.require_campaign(conn, cid)
        return JSON(await db.results(conn, cid))


async def export_results(request: Request) -> Response:
    """The results as a file for the expert panel: ``?format=csv`` (ranking) or ``xlsx``."""
    svc = services(request)
    actor = await authorize(request, svc, *READERS)
    return await export_response(svc, actor, request.path_params["cid"],
                                 request.query_params.get("format", "csv"))


async def export_response(svc: Services, actor: str, cid: str, fmt: str) -> Response:
    """The results file as a download, audited as ``actor`` (API and ops console)."""
    if fmt not in export.FORMATS:
        raise InvalidRequest(f"format is one of {', '.join(export.FORMATS)}")
    async with svc.db() as conn:
        results = await export.collect(conn, cid)
        if results is None:
            raise CampaignNotFound()
        name = export.filename(results, fmt)
        await db.audit(conn, actor, "results.export", cid,
                       {"format": fmt, "file": name, "total": results.total,
                        "invalidated": results.invalidated})
    body = await asyncio.to_thread(export.render, results, fmt)  # keep the vote path moving
    return Response(body, media_type=export.MEDIA_TYPES[fmt], headers={
        "Content-Disposition": export.content_disposition(name), "Cache-Control": "no-store"})


async def get_audit(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *ADMIN)
    async with svc.db() as conn:
        rows = await conn.fetch(
            "SELECT id, at, actor, action, target, request FROM audit_log"
            " ORDER BY id DESC LIMIT 500"
        )
    return JSON([dict(r) | {"request": msgspec.json.decode(r["request"])} for r in rows])


routes = [
    Route("/api/v1/admin/campaigns", create_campaign, methods=["POST"]),
    Route("/api/v1/admin/campaigns", list_campaigns, methods=["GET"]),
    Route("/api/v1/admin/campaigns/{cid}", get_campaign, methods=["GET"]),
    Route("/api/v1/admin/campaigns/{cid}", patch_campaign, methods=["PATCH"]),
    Route("/api/v1/admin/campaigns/{cid}/channels", create_channel, methods=["POST"]),
    Route("/api/v1/admin/campaigns/{cid}/channels", list_channels, methods=["GET"]),
    Route("/api/v1/admin/campaigns/{cid}/channels/{channel}/secret", rotate_channel_secret,
          methods=["POST"]),
    Route("/api/v1/admin/campaigns/{cid}/results", get_results, methods=["GET"]),
    Route("/api/v1/admin/campaigns/{cid}/export", export_results, methods=["GET"]),
    Route("/api/v1/admin/audit", get_audit, methods=["GET"]),
]
