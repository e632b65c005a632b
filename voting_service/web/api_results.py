"""Public results after publication (公示) and the ledger anyone can recount."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import InvalidRequest
from ..ledger import public_ledger, publication
from ..services import services
from .http import JSON

_VOTE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


async def get_results(request: Request) -> Response:
    svc = services(request)
    async with svc.db() as conn:
        results = await publication.require_published(conn, request.path_params["cid"])
    return JSON(results, headers={"Cache-Control": "public, max-age=60"})


async def get_ledger(request: Request) -> Response:
    """Every accepted vote as NDJSON (``docs/verification.md``); ``?vote_id=`` finds one."""
    svc = services(request)
    cid = request.path_params["cid"]
    pepper = str(svc.settings.pepper)
    vote_id = request.query_params.get("vote_id")
    if vote_id is not None:
        if not _VOTE_ID.fullmatch(vote_id):
            raise InvalidRequest("vote_id is 8 to 64 letters, digits, _ or -")
        async with svc.db() as conn:
            await publication.require_published(conn, cid)
            found = await public_ledger.lookup(conn, cid, pepper, vote_id)
        return JSON({"campaign_id": cid, "vote_id": vote_id,
                     "records": [r.as_json() for r in found]})
    async with svc.db() as conn:
        await publication.require_published(conn, cid)

    async def body() -> AsyncIterator[bytes]:
        async with svc.db() as conn:
            async for chunk in public_ledger.download(conn, cid):
                yield chunk

    return StreamingResponse(body(), media_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{cid}-ledger.ndjson"',
        "Cache-Control": "public, max-age=300",
    })


routes = [
    Route("/api/v1/campaigns/{cid}/results", get_results),
    Route("/api/v1/campaigns/{cid}/ledger", get_ledger),
]
