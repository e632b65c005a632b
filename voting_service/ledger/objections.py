"""Objections (异议) to candidates during the 公示, and their handling by the organisers.

Made under a real name with a phone number and a postal address, so the organisers can
answer in writing. The submitter's data live in ``objection_submitters``: only the admin
role's console pages read them, the audit log never holds them (only objection ids and the
organisers' answers), and ``purge`` deletes them once the objection's ``purge_after``
(the 公示's end plus ``VOTING_OBJECTION_RETENTION_DAYS``) has passed. The public sees only
the number of objections per candidate, after the 公示.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..errors import Conflict, NotFound
from . import db

ATTACHMENT_LIMIT = 2 * 1024 * 1024
ATTACHMENT_TYPES = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}
TEXT_LIMIT = 5000


@dataclass(frozen=True)
class Submission:
    candidate_id: str
    name: str
    phone: str
    address: str
    text: str
    phone_verified: bool = False
    attachment: bytes | None = None
    attachment_name: str = ""
    attachment_type: str = ""


async def submit(conn: asyncpg.Connection, campaign_id: str, s: Submission,
                 purge_after: dt.datetime) -> int:
    async with conn.transaction():
        oid = int(await conn.fetchval(
            "INSERT INTO objections (campaign_id, candidate_id, text, phone_verified,"
            " purge_after) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            campaign_id, s.candidate_id, s.text, s.phone_verified, purge_after))
        await conn.execute(
            "INSERT INTO objection_submitters (objection_id, name, phone, address, attachment,"
            " attachment_name, attachment_type) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            oid, s.name, s.phone, s.address, s.attachment, s.attachment_name,
            s.attachment_type)
        await db.audit(conn, "public", "objection.submit", f"{campaign_id}/{s.candidate_id}",
                       {"objection": oid})
    return oid


LIST = """
SELECT o.id, o.candidate_id, o.submitted_at, o.text, o.phone_verified, o.status, o.answer,
       o.answered_at, o.answered_by, o.closed_at, o.closed_by, o.purge_after,
       s.name, s.phone, s.address, s.attachment_name, s.attachment_type,
       s.attachment IS NOT NULL AS has_attachment, s.objection_id IS NULL AS purged
FROM objections o LEFT JOIN objection_submitters s ON s.objection_id = o.id
WHERE o.campaign_id = $1 ORDER BY o.id DESC
"""
PERSONAL = ("name", "phone", "address", "attachment_name", "attachment_type")


async def listing(conn: asyncpg.Connection, campaign_id: str, personal: bool
                  ) -> list[dict[str, Any]]:
    """The campaign's objections, newest first; the submitters' data only if ``personal``."""
    rows = [dict(r) for r in await conn.fetch(LIST, campaign_id)]
    if not personal:
        for row in rows:
            for key in PERSONAL:
                row.pop(key, None)
    return rows


async def attachment(conn: asyncpg.Connection, campaign_id: str, oid: int
                     ) -> tuple[bytes, str, str] | None:
    row = await conn.fetchrow(
        "SELECT s.attachment, s.attachment_name, s.attachment_type FROM objection_submitters s"
        " JOIN objections o ON o.id = s.objection_id WHERE o.campaign_id = $1 AND o.id = $2",
        campaign_id, oid)
    if row is None or row["attachment"] is None:
        return None
    return bytes(row["attachment"]), row["attachment_name"], row["attachment_type"]


async def _change(conn: asyncpg.Connection, actor: str, campaign_id: str, oid: int,
                  action: str, sql: str, *args: Any) -> None:
    async with conn.transaction():
        status = await conn.fetchval(
            "SELECT status FROM objections WHERE campaign_id = $1 AND id = $2 FOR UPDATE",
            campaign_id, oid)
        if status is None:
            raise NotFound(f"no objection {oid} in campaign {campaign_id!r}")
        if status == "closed":
            raise Conflict(f"objection {oid} is closed")
        await conn.execute(sql, oid, actor, *args)
        await db.audit(conn, actor, action, f"{campaign_id}/objection/{oid}",
                       {"objection": oid, **({"text": args[0]} if args else {})})


async def answer(conn: asyncpg.Connection, actor: str, campaign_id: str, oid: int,
                 text: str) -> None:
    await _change(conn, actor, campaign_id, oid, "objection.answer",
                  "UPDATE objections SET status = 'answered', answer = $3, answered_at = now(),"
                  " answered_by = $2 WHERE id = $1", text)


async def close(conn: asyncpg.Connection, actor: str, campaign_id: str, oid: int) -> None:
    await _change(conn, actor, campaign_id, oid, "objection.close",
                  "UPDATE objections SET status = 'closed', closed_at = now(), closed_by = $2"
                  " WHERE id = $1")


async def counts(conn: asyncpg.Connection, campaign_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT candidate_id, count(*) AS n FROM objections WHERE campaign_id = $1"
        " GROUP BY candidate_id", campaign_id)
    return {r["candidate_id"]: int(r["n"]) for r in rows}


async def purge(conn: asyncpg.Connection, now: dt.datetime | None = None) -> int:
    """Delete the submitters' personal data whose retention has ended; returns how many."""
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        gone = await conn.fetch(
            "DELETE FROM objection_submitters s USING objections o"
            " WHERE o.id = s.objection_id AND o.purge_after < $1 RETURNING o.id", now)
        if gone:
            await db.audit(conn, "purge", "objection.purge", "",
                           {"objections": [int(r["id"]) for r in gone]})
    return len(gone)
