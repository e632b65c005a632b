"""Admin API of the organisers' year: quotas, spreadsheet import, withdrawals, publication."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import CandidateNotFound, InvalidRequest
from ...ledger import campaigns, candidate_import, db, publication, sheets, transparency
from ...models import CandidatePatch, PublicationIn
from ...services import Services, services
from ..auth import authorize
from ..http import JSON, decode, json_body, read_body

ADMIN = ("admin",)
READERS = ("admin", "ops")
IMPORT_LIMIT = 16 * 1024 * 1024
Quotas = dict[Annotated[str, msgspec.Meta(min_length=1, max_length=200)],
              Annotated[int, msgspec.Meta(ge=0, le=100_000)]]


async def _refresh(svc: Services, cid: str) -> None:
    async with svc.db() as conn:
        await campaigns.push_snapshot(conn, svc.redis, cid)
    await svc.registry.refresh(force=True)


async def put_quotas(request: Request) -> Response:
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    cid = request.path_params["cid"]
    quotas = decode(await read_body(request, 256 * 1024), Quotas)
    return JSON(await save_quotas(svc, actor, cid, quotas))


async def save_quotas(svc: Services, actor: str, cid: str, quotas: dict[str, int]
                      ) -> dict[str, object]:
    """Replace the quota table (audited as ``actor``; the API and the console)."""
    async with svc.db() as conn:
        async with conn.transaction():
            await db.require_campaign(conn, cid)
            await publication.ensure_unpublished(conn, cid, "the quota table")
            await candidate_import.set_quotas(conn, cid, quotas)
            await db.audit(conn, actor, "quotas.set", cid, quotas)
        return dict(await candidate_import.quota_usage(conn, cid))


async def get_quotas(request: Request) -> Response:
    svc = services(request)
    await authorize(request, svc, *READERS)
    cid = request.path_params["cid"]
    async with svc.db() as conn:
        await db.require_campaign(conn, cid)
        return JSON(await candidate_import.quota_usage(conn, cid))


async def import_candidates(request: Request) -> Response:
    """The body is the spreadsheet: ``text/csv`` (UTF-8, BOM or not, GB18030) or XLSX."""
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    cid = request.path_params["cid"]
    dry_run = request.query_params.get("dry_run", "0") not in ("0", "", "false")
    kind, charset = sheets.media_kind(request.headers.get("content-type", ""))
    if not kind:
        raise InvalidRequest(f"Content-Type is text/csv or {sheets.XLSX_TYPE}")
    body = await read_body(request, IMPORT_LIMIT)
    report = await import_sheet(svc, actor, cid, body, kind, charset, dry_run)
    return JSON(report.as_json())


async def import_sheet(svc: Services, actor: str, cid: str, body: bytes, kind: str,
                       charset: str | None, dry_run: bool) -> candidate_import.Report:
    """Read and import (or only check) one spreadsheet; ``Rejected`` lists its problems."""
    if not body:
        raise InvalidRequest("the body is the spreadsheet file; it is empty")
    try:
        sheet = await asyncio.to_thread(sheets.read, body, kind, charset)  # votes keep moving
    except sheets.SheetError as exc:
        raise candidate_import.Rejected(
            [candidate_import.RowError(None, None, str(exc), exc.code)]) from exc
    async with svc.db() as conn:
        report = await candidate_import.run(
            conn, svc.redis, cid, sheet, pepper=str(svc.settings.pepper),
            shards=svc.settings.shards, dry_run=dry_run, actor=actor)
    if not dry_run:
        await svc.registry.refresh(force=True)
    return report


async def patch_candidate(request: Request) -> Response:
    """``{"status": "withdrawn", "reason": …}``: no new votes; the votes cast stay counted."""
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    cid, cand = request.path_params["cid"], request.path_params["candidate"]
    body = await json_body(request, CandidatePatch, 8 * 1024)
    return JSON(await change_candidate(svc, actor, cid, cand, body))


async def change_candidate(svc: Services, actor: str, cid: str, cand: str,
                           body: CandidatePatch) -> dict[str, object]:
    """Withdraw (or reinstate) a candidate, audited as ``actor``."""
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
    return dict(msgspec.to_builtins(live.candidates[cand]))


async def publish_results(request: Request) -> Response:
    svc = services(request)
    actor = await authorize(request, svc, *ADMIN)
    cid = request.path_params["cid"]
    raw = await read_body(request, 8 * 1024)
    body = decode(raw, PublicationIn) if raw.strip() else PublicationIn()
    return JSON(await publish_campaign(svc, actor, cid, body.note), status_code=201)


async def publish_campaign(svc: Services, actor: str, cid: str, note: str) -> dict[str, object]:
    async with svc.db() as conn:
        results = await publication.publish(
            conn, svc.redis, cid, shards=svc.settings.shards, pepper=str(svc.settings.pepper),
            actor=actor, note=note, log=transparency.config(svc.settings))
    await svc.registry.refresh(force=True)
    return results


routes = [
    Route("/api/v1/admin/campaigns/{cid}/quotas", put_quotas, methods=["PUT"]),
    Route("/api/v1/admin/campaigns/{cid}/quotas", get_quotas, methods=["GET"]),
    Route("/api/v1/admin/campaigns/{cid}/candidates/import", import_candidates,
          methods=["POST"]),
    Route("/api/v1/admin/campaigns/{cid}/candidates/{candidate}", patch_candidate,
          methods=["PATCH"]),
    Route("/api/v1/admin/campaigns/{cid}/publication", publish_results, methods=["POST"]),
]
