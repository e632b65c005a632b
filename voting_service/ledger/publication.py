"""Publication of the results (公示): once the vote has closed and the ledger is complete.

Publishing freezes the campaign: the results, with the ledger's day digests, are written
once; from then on the campaign's window, status and candidates do not change and no vote is
struck out, so the ledger anyone downloads adds up to the published results.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from ..errors import CampaignNotFound, LedgerBehind, NotClosed, NotPublished, Published
from ..redis.store import AnyRedis
from . import campaigns, db, partitions, public_ledger, reconcile, transparency

logger = logging.getLogger(__name__)

INVALIDATIONS = """
SELECT id, reason FROM invalidations WHERE campaign_id = $1 ORDER BY id
"""


async def published(conn: asyncpg.Connection, campaign_id: str) -> dict[str, Any] | None:
    raw = await conn.fetchval(
        "SELECT results FROM publications WHERE campaign_id = $1", campaign_id)
    return None if raw is None else dict(json.loads(raw))


async def is_published(conn: asyncpg.Connection, campaign_id: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT 1 FROM publications WHERE campaign_id = $1", campaign_id))


async def ensure_unpublished(conn: asyncpg.Connection, campaign_id: str, what: str) -> None:
    """Refuse a change to a published campaign (call inside the change's transaction)."""
    # the lock an UPDATE of the row takes anyway (no deadlock between two changes), and
    # the one publication waits for
    await conn.execute("SELECT 1 FROM campaigns WHERE id = $1 FOR NO KEY UPDATE", campaign_id)
    if await is_published(conn, campaign_id):
        raise Published(f"the results of {campaign_id!r} are published: {what} is frozen")


async def require_published(conn: asyncpg.Connection, campaign_id: str) -> dict[str, Any]:
    results = await published(conn, campaign_id)
    if results is None:
        await db.require_campaign(conn, campaign_id)
        raise NotPublished(f"the results of {campaign_id!r} are not published yet")
    return results


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Active candidates first by votes (then number), equal votes sharing a rank (1, 2, 2,
    4); then the others (withdrawn, removed), who keep their votes and take no rank (the
    rule ``verify`` checks: ``public_ledger.rank_key`` and ``expected_ranks``)."""
    rows.sort(key=public_ledger.rank_key)
    for row, place in zip(rows, public_ledger.expected_ranks(rows), strict=True):
        row["rank"] = place
    return rows


async def publish(
    conn: asyncpg.Connection, redis: AnyRedis, campaign_id: str, *, shards: int, pepper: str,
    actor: str, note: str = "", now: dt.datetime | None = None,
    log: transparency.LogConfig | None = None,
) -> dict[str, Any]:
    """Freeze and publish; the results become the transparency log's last leaf, and with
    ``log`` (its signing key) a head over them is signed at once."""
    now = now or dt.datetime.now(dt.UTC)
    campaign = await db.load_campaign(conn, campaign_id)
    if campaign is None:
        raise CampaignNotFound(f"no campaign {campaign_id!r}")
    if await is_published(conn, campaign_id):
        raise Published(f"the results of {campaign_id!r} are already published")
    if not (campaign.status == "closed" or now >= campaign.closes_at):
        local = campaign.closes_at.astimezone(ZoneInfo(campaign.timezone))
        raise NotClosed(f"voting closes at {local:%Y-%m-%d %H:%M} {campaign.timezone}"
                        f" ({campaign.closes_at.isoformat()}); close it first or publish after"
                        " that", extra={"closes_at": campaign.closes_at.isoformat()})
    behind = await reconcile.unflushed(redis, conn, campaign_id, shards)
    if behind:
        raise LedgerBehind(f"{len(behind)} vote(s) are not in the ledger yet",
                           extra={"unflushed": len(behind)})
    async with conn.transaction():
        # the campaign row is the lock a strike-out or a change takes (ensure_unpublished)
        await conn.execute("SELECT 1 FROM campaigns WHERE id = $1 FOR UPDATE", campaign_id)
        if await is_published(conn, campaign_id):
            raise Published(f"the results of {campaign_id!r} are already published")
        chain = await public_ledger.freeze(conn, campaign_id, pepper, now.isoformat())
        reasons = {int(r["id"]): r["reason"]
                   for r in await conn.fetch(INVALIDATIONS, campaign_id)}
        listed = {x.id for x in campaign.candidates}
        rows = [{"candidate_id": x.id, "number": x.number, "name": x.name,
                 "votes": chain.valid.get(x.id, 0), "status": x.status}
                for x in campaign.candidates]
        rows += [{"candidate_id": cid, "number": 0, "name": "", "votes": n, "status": "removed"}
                 for cid, n in sorted(chain.valid.items()) if cid not in listed]
        by_reason: dict[str, list[int]] = {}
        for inv_id in sorted(chain.struck):
            by_reason.setdefault(reasons.get(inv_id, ""), []).append(inv_id)
        struck: Counter[str] = Counter()
        for reason, ids in by_reason.items():
            struck[reason] = sum(chain.struck[i] for i in ids)
        results = {
            "campaign_id": campaign_id,
            "title": campaign.title,
            "published_at": now.isoformat(),
            "note": note,
            "total": sum(chain.valid.values()),
            "candidates": rank(rows),
            "invalidated": {
                "total": sum(chain.struck.values()),
                "by_reason": [{"reason": reason, "votes": struck[reason], "invalidations": ids}
                              for reason, ids in sorted(by_reason.items(),
                                                        key=lambda kv: (-struck[kv[0]], kv[0]))],
            },
            "days": chain.days,
            "digest": chain.digest,
        }
        if await conn.fetchval("SELECT 1 FROM log_state WHERE campaign_id = $1", campaign_id):
            await transparency.append(conn, campaign_id, "results",
                                      transparency.results_leaf(results))
        await conn.execute(
            "INSERT INTO publications (campaign_id, published_at, actor, note, results, days,"
            " digest, ledger_bytes, ledger_sha256)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9)",
            campaign_id, now, actor, note, json.dumps(results, ensure_ascii=False),
            json.dumps(chain.days), chain.digest, chain.file_bytes, chain.file_sha256,
        )
        await db.audit(conn, actor, "results.publish", campaign_id,
                       {"note": note, "total": results["total"], "digest": chain.digest})
    # voters look their votes up by vote id: the campaign's days get their lookup indexes now
    try:
        await partitions.seal_days(conn, [dt.date.fromisoformat(d["day"]) for d in chain.days])
    except asyncpg.PostgresError as exc:  # published all the same: look-ups scan meanwhile
        logger.warning("the lookup indexes of %s were not built: %r", campaign_id, exc)
    await campaigns.push_snapshot(conn, redis, campaign_id)  # the pages link to the results
    if log is not None:
        await transparency.sign_head(conn, campaign_id, log, now, force=True,
                                     zone=campaign.timezone)
    return results


async def publication_row(conn: asyncpg.Connection, campaign_id: str
                          ) -> asyncpg.Record | None:
    """When the results were published and announced (``None``: not published)."""
    return await conn.fetchrow(
        "SELECT published_at, note, announced_at, announced_by, announce_note"
        " FROM publications WHERE campaign_id = $1", campaign_id)


async def announce(conn: asyncpg.Connection, campaign_id: str, actor: str, note: str,
                   now: dt.datetime | None = None) -> dt.datetime:
    """The year's last step, after the 公示: the selection is announced (once, audited)."""
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT announced_at FROM publications WHERE campaign_id = $1 FOR UPDATE",
            campaign_id)
        if row is None:
            await db.require_campaign(conn, campaign_id)
            raise NotPublished(f"the results of {campaign_id!r} are not published yet")
        if row["announced_at"] is not None:
            raise Published(f"{campaign_id!r} was announced at {row['announced_at']}")
        await conn.execute(
            "UPDATE publications SET announced_at = $2, announced_by = $3, announce_note = $4"
            " WHERE campaign_id = $1", campaign_id, now, actor, note)
        await db.audit(conn, actor, "results.announce", campaign_id, {"note": note})
    return now
