"""Public results after publication (公示) and the ledger anyone can recount."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import InvalidRequest
from ...ledger import public_ledger
from ...services import services
from ..http import JSON
from .frozen_files import FrozenFileResponse, etag_matches

_VOTE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


async def get_results(request: Request) -> Response:
    """The frozen results, from this worker's memory after the first read."""
    frozen = await services(request).frozen.results(request.path_params["cid"])
    headers = {"Cache-Control": "public, max-age=60", "ETag": frozen.etag}
    if etag_matches(request.headers.get("if-none-match", ""), frozen.etag, weak=True):
        return Response(status_code=304, headers=headers)
    return Response(frozen.body, headers=headers, media_type="application/json")


async def get_ledger(request: Request) -> Any:
    """Every accepted vote as NDJSON (``docs/verification.md``); ``?vote_id=`` finds one."""
    svc = services(request)
    cid = request.path_params["cid"]
    pepper = str(svc.settings.pepper)
    vote_id = request.query_params.get("vote_id")
    if vote_id is not None:
        if not _VOTE_ID.fullmatch(vote_id):
            raise InvalidRequest("vote_id is 8 to 64 letters, digits, _ or -")
        await svc.frozen.results(cid)  # not published: 404
        async with svc.db("public") as conn:
            found = await public_ledger.lookup(conn, cid, pepper, vote_id)
        return JSON({"campaign_id": cid, "vote_id": vote_id,
                     "records": [r.as_json() for r in found]})
    file = await svc.frozen.ledger(cid)
    # served from the pod's copy of the frozen file: no connection held while the client reads
    return FrozenFileResponse(file.path, file.size, file.etag, "application/x-ndjson", {
        "Content-Disposition": f'attachment; filename="{cid}-ledger.ndjson"',
        "Cache-Control": "public, max-age=300",
    })


routes = [
    Route("/api/v1/campaigns/{cid}/results", get_results),
    Route("/api/v1/campaigns/{cid}/ledger", get_ledger),
]
