"""The transparency log's public routes: signed tree heads and the proofs against them.

Every answer is a few short queries: heads by primary key, the proof's stored subtree nodes
by key, and the leaves of at most a few 256-leaf chunks (``transparency.MAX_PROOF_LEAVES``);
the connection goes back to the pool before the answer is sent. Proofs are given only up to
the latest signed head: that is what a client checks them against.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import InvalidRequest, LogBehind, NoHead, NotInLog
from ...ledger import db, public_ledger, transparency
from ...services import services
from ..http import JSON

_VOTE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
HEADS_PAGE = 1000
FRESH = {"Cache-Control": "public, max-age=5"}
FOREVER = {"Cache-Control": "public, max-age=86400, immutable"}


def _size(request: Request, name: str, default: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise InvalidRequest(f"{name} is required (a tree size)")
        return default
    if not raw.isdigit() or len(raw) > 15:
        raise InvalidRequest(f"{name} is a tree size: a non-negative integer")
    return int(raw)


async def _latest(conn: asyncpg.Connection, cid: str) -> asyncpg.Record:
    row = await transparency.latest_head(conn, cid)
    if row is None:
        await db.require_campaign(conn, cid)
        raise NoHead(f"no tree head of {cid!r} is signed yet")
    return row


async def get_key(request: Request) -> Response:
    public = transparency.public_key_hex(services(request).settings)
    if not public:
        raise NoHead("this service signs no tree heads (no key is configured)")
    return JSON({"algorithm": "Ed25519", "public_key": public,
                 "key_id": transparency.key_id(bytes.fromhex(public))}, headers=FRESH)


async def get_head(request: Request) -> Response:
    cid = request.path_params["cid"]
    async with services(request).db() as conn:
        row = await _latest(conn, cid)
    return JSON(transparency.head_json(cid, row), headers=FRESH)


async def get_heads(request: Request) -> Response:
    """Every head after ``after``, oldest first, a page at a time (the mirror's feed)."""
    cid = request.path_params["cid"]
    after = _size(request, "after", 0)
    async with services(request).db() as conn:
        rows = await conn.fetch(
            "SELECT size, root, signed_at, key_id, signature FROM log_heads"
            " WHERE campaign_id = $1 AND size > $2 ORDER BY size LIMIT $3",
            cid, after, HEADS_PAGE)
        if not rows:
            await db.require_campaign(conn, cid)
    return JSON({"campaign_id": cid, "heads": [transparency.head_json(cid, r) for r in rows],
                 "more": len(rows) == HEADS_PAGE}, headers=FRESH)


async def get_head_by_size(request: Request) -> Response:
    cid = request.path_params["cid"]
    raw = request.path_params["size"]
    if not raw.isdigit() or len(raw) > 15:
        raise InvalidRequest("the size is a non-negative integer")
    async with services(request).db() as conn:
        row = await conn.fetchrow(
            "SELECT size, root, signed_at, key_id, signature FROM log_heads"
            " WHERE campaign_id = $1 AND size = $2", cid, int(raw))
        if row is None:
            await db.require_campaign(conn, cid)
            raise NoHead(f"no signed head of {cid!r} has size {raw}")
    return JSON(transparency.head_json(cid, row), headers=FOREVER)


def _hex(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


async def get_consistency(request: Request) -> Response:
    cid = request.path_params["cid"]
    first, second = _size(request, "first"), _size(request, "second")
    svc = services(request)
    async with svc.db() as conn:
        latest = int((await _latest(conn, cid))["size"])
        if not 0 < first <= second <= latest:
            raise InvalidRequest(f"0 < first ≤ second ≤ {latest} (the latest signed head)")
        try:
            t = await transparency.tree(conn, cid, str(svc.settings.pepper))
            proof = await transparency.consistency_proof(t, first, second)
        except transparency.LogBehind as exc:
            raise LogBehind(str(exc)) from exc
    return JSON({"campaign_id": cid, "first": first, "second": second, "proof": _hex(proof)},
                headers=FOREVER)


async def get_inclusion(request: Request) -> Response:
    """The proof that a vote is a leaf of the tree of ``size`` (default: the latest head).
    ``after``: a size the vote is known to come after (the head on the voter's receipt),
    so only the rows since are looked through."""
    cid = request.path_params["cid"]
    vote_id = request.query_params.get("vote_id", "")
    if not _VOTE_ID.fullmatch(vote_id):
        raise InvalidRequest("vote_id is 8 to 64 letters, digits, _ or -")
    svc = services(request)
    pepper = str(svc.settings.pepper)
    async with svc.db() as conn:
        latest = int((await _latest(conn, cid))["size"])
        size = _size(request, "size", latest)
        after = _size(request, "after", 0)
        if not 0 < size <= latest:
            raise InvalidRequest(f"size is between 1 and {latest} (the latest signed head)")
        rows = await conn.fetch(transparency.VOTE_ROWS, cid, vote_id, after, size)
        if not rows:
            raise NotInLog(f"no vote {vote_id!r} among leaves {after}..{size - 1}")
        pseudonym = public_ledger.Pseudonyms(pepper, cid)
        proofs: list[dict[str, Any]] = []
        try:
            t = await transparency.tree(conn, cid, pepper)
            for r in rows:
                index = int(r["log_index"])
                record = public_ledger.Record(
                    r["day"].isoformat(), r["vote_id"], pseudonym(r["voter_id"]),
                    r["candidate_id"], r["channel"] or "", "valid", index)
                path = await transparency.inclusion_proof(t, index, size)
                proofs.append({"log_index": index, "leaf": record.leaf().decode(),
                               "path": _hex(path)})
        except transparency.LogBehind as exc:
            raise LogBehind(str(exc)) from exc
    return JSON({"campaign_id": cid, "vote_id": vote_id, "tree_size": size,
                 "proofs": proofs}, headers=FRESH)


routes = [
    Route("/api/v1/log/key", get_key),
    Route("/api/v1/campaigns/{cid}/log/head", get_head),
    Route("/api/v1/campaigns/{cid}/log/heads", get_heads),
    Route("/api/v1/campaigns/{cid}/log/heads/{size}", get_head_by_size),
    Route("/api/v1/campaigns/{cid}/log/consistency", get_consistency),
    Route("/api/v1/campaigns/{cid}/log/inclusion", get_inclusion),
]
