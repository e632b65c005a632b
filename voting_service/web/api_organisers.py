"""Admin API of the organisers' year: quotas, spreadsheet import, withdrawals, publication."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import CandidateNotFound, InvalidRequest
from ..ledger import campaigns, candidate_import, db, publication, sheets, transparency
from ..models import CandidatePatch, PublicationIn
from ..services import Services, services
from .http import JSON, authorize, decode, json_body, read_body

ADMIN = ("admin",)
READERS = ("admin", "ops")
IMPORT_LIMIT = 16 * 1024 * 1024
Quotas = dict[Annotated[str, msgspec.Meta(min_length=1, max_length=200)],
              Annotated[int, msgspec.Meta(ge=0, le=100_000)]]


async def _refresh(svc: Services, cid: str) -> None:
    async with svc.db() as conn:
        await campaigns.publish(conn, svc.redis, cid)
    await svc.registry.refresh(force=True)


async def put_quotas(request: Request) -> Response:
    svc = services(request)
    actor = authorize(request, svc.settings.admin_tokens, *ADMIN)
    cid = request.path_params["cid"]
    quotas = decode(await read_body(request, 256 * 1024), Quotas)
    async with svc.db() as conn:
        async with conn.transaction():
            await db.require_campaign(conn, cid)
            await publication.ensure_unpublished(conn, cid, "the quota table")
            await candidate_import.set_quotas(conn, cid, quotas)
            await db.audit(conn, actor, "quotas.set", cid, quotas)
        return JSON(await candidate_import.quota_usage(conn, cid))


async def get_quotas(request: Request) -> Response:
    svc = services(request)
    authorize(request, svc.settings.admin_tokens, *READERS)
    cid = request.path_params["cid"]
    async with svc.db() as conn:
        await db.require_campaign(conn, cid)
        return JSON(await candidate_import.quota_usage(conn, cid))


async def import_candidates(request: Request) -> Response:
    """The body is the spreadsheet: ``text/csv`` (UTF-8, BOM or not, GB18030) or XLSX."""
    svc = services(request)
    actor = authorize(request, svc.settings.admin_tokens, *ADMIN)
    cid = request.path_params["cid"]
    dry_run = request.query_params.get("dry_run", "0") not in ("0", "", "false")
    kind, charset = sheets.media_kind(request.headers.get("content-type", ""))
    if not kind:
        raise InvalidRequest(f"Content-Type is text/csv or {sheets.XLSX_TYPE}")
    body = await read_body(request, IMPORT_LIMIT)
    if not body:
        raise InvalidRequest("the body is the spreadsheet file; it is empty")
    try:
        sheet = await asyncio.to_thread(sheets.read, body, kind, charset)  # votes keep moving
    except sheets.SheetError as exc:
        raise candidate_import.Rejected(
            [candidate_import.RowError(None, None, str(exc), "bad_file")]) from exc
    async with svc.db() as conn:
        report = await candidate_import.run(
            conn, svc.redis, cid, sheet, pepper=str(svc.settings.pepper),
            shards=svc.settings.shards, dry_run=dry_run, actor=actor)
    if not dry_run:
        await svc.registry.refresh(force=True)
    return JSON(report.as_json())


async def patch_candidate(request: Request) -> Response:
    """``{"status": "withdrawn", "reason": …}``: no new votes; the votes cast stay counted."""
    svc = services(request)
    actor = authorize(request, svc.settings.admin_tokens, *ADMIN)
    cid, cand = request.path_params["cid"], request.path_params["candidate"]
    body = await json_body(request, CandidatePatch, 8 * 1024)
    if body.status == "withdrawn" and not body.reason.strip():
        raise InvalidRequest("a withdrawal needs a reason")
    async with svc.db() as conn, conn.transaction():
        await db.require_campaign(conn, cid)
        await publication.ensure_unpublished(conn, cid, "the candidate list")
        withdrawn = body.status == "withdrawn"
        row = await conn.fetchrow(
            "UPDATE candidates SET status = $3, withdrawn_reason = $4,"
            " withdrawn_at = CASE WHEN $5 THEN COALESCE(withdrawn_at, $6) END"
            " WHERE campaign_id = $1 AND id = $2 RETURNING id",
            cid, cand, body.status, body.reason.strip() if withdrawn else "",
            withdrawn, dt.datetime.now(dt.UTC),
        )
        if row is None:
            raise CandidateNotFound(f"no candidate {cand!r} in campaign {cid!r}")
        await db.audit(conn, actor, f"candidate.{body.status}", f"{cid}/{cand}",
                       msgspec.to_builtins(body))
    await _refresh(svc, cid)
    live = svc.registry.get(cid, drafts=True)
    return JSON(msgspec.to_builtins(live.candidates[cand]))


async def publish_results(request: Request) -> Response:
    svc = services(request)
    actor = authorize(request, svc.settings.admin_tokens, *ADMIN)
    cid = request.path_params["cid"]
    raw = await read_body(request, 8 * 1024)
    body = decode(raw, PublicationIn) if raw.strip() else PublicationIn()
    async with svc.db() as conn:
        results = await publication.publish(
            conn, svc.redis, cid, shards=svc.settings.shards, pepper=str(svc.settings.pepper),
            actor=actor, note=body.note, log=transparency.config(svc.settings))
    await svc.registry.refresh(force=True)
    return JSON(results, status_code=201)


routes = [
    Route("/api/v1/admin/campaigns/{cid}/quotas", put_quotas, methods=["PUT"]),
    Route("/api/v1/admin/campaigns/{cid}/quotas", get_quotas, methods=["GET"]),
    Route("/api/v1/admin/campaigns/{cid}/candidates/import", import_candidates,
          methods=["POST"]),
    Route("/api/v1/admin/campaigns/{cid}/candidates/{candidate}", patch_candidate,
          methods=["PATCH"]),
    Route("/api/v1/admin/campaigns/{cid}/publication", publish_results, methods=["POST"]),
]
