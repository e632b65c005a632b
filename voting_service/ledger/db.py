"""PostgreSQL: pool, migrations, and the SQL of the admin side (as module constants)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from importlib import resources
from typing import Any

import asyncpg
import msgspec

from ..errors import CampaignNotFound, CandidateHasVotes
from ..models import (
    Campaign,
    CampaignIn,
    Candidate,
    Channel,
    Notice,
    Rules,
    opening_year,
    recommender_kind_of,
)

log = logging.getLogger(__name__)

MIGRATION_LOCK = 7_406_531_001
"""Advisory lock id held while migrating, so several processes may run ``migrate`` at once."""


async def connect_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, command_timeout=60, timeout=5
    )


def migration_files() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("voting_service.ledger.migrations").iterdir():
        match = re.fullmatch(r"([0-9]{4})_([a-z0-9_]+)\.sql", entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text("utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection, upto: int | None = None) -> list[int]:
    """Apply pending migrations in order, each once, each in its own transaction; with
    ``upto``, only those numbered up to it (a schema as an older release left it)."""
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done or (upto is not None and version > upto):
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %04d_%s", version, name)
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied_now


UPSERT_CAMPAIGN = """
INSERT INTO campaigns (id, title, timezone, opens_at, closes_at, status, show_counts, rules,
    notice, year)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10)
ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, timezone = EXCLUDED.timezone,
    opens_at = EXCLUDED.opens_at, closes_at = EXCLUDED.closes_at, status = EXCLUDED.status,
    show_counts = EXCLUDED.show_counts, rules = EXCLUDED.rules, notice = EXCLUDED.notice,
    year = EXCLUDED.year, updated_at = now()
"""
UPSERT_CANDIDATE = """
INSERT INTO candidates (campaign_id, id, number, name, gender, region, industry, employer,
    occupation, summary, deeds, photo_url, recommender, recommender_kind, deed_type, honors,
    video_url, status, withdrawn_reason, withdrawn_at, person_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21)
ON CONFLICT (campaign_id, id) DO UPDATE SET number = EXCLUDED.number, name = EXCLUDED.name,
    gender = EXCLUDED.gender, region = EXCLUDED.region, industry = EXCLUDED.industry,
    employer = EXCLUDED.employer, occupation = EXCLUDED.occupation, summary = EXCLUDED.summary,
    deeds = EXCLUDED.deeds, photo_url = EXCLUDED.photo_url,
    recommender = EXCLUDED.recommender, recommender_kind = EXCLUDED.recommender_kind,
    deed_type = EXCLUDED.deed_type, honors = EXCLUDED.honors, video_url = EXCLUDED.video_url,
    status = EXCLUDED.status, withdrawn_reason = EXCLUDED.withdrawn_reason,
    withdrawn_at = EXCLUDED.withdrawn_at,
    person_key = COALESCE(NULLIF(EXCLUDED.person_key, ''), candidates.person_key)
"""
CANDIDATE_FIELDS = tuple(Candidate.__struct_fields__)
VOTED_IN_LEDGER = """
SELECT c.id, c.number, c.name FROM candidates c
WHERE c.campaign_id = $1 AND c.id = ANY($2::text[])
  AND (EXISTS (SELECT 1 FROM tallies t WHERE t.campaign_id = c.campaign_id
                                         AND t.candidate_id = c.id)
       OR c.id = ANY($3::text[]))
ORDER BY c.number, c.id
"""
INSERT_CHANNEL = """
INSERT INTO channels (campaign_id, id, name, allowed_origins, secret)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (campaign_id, id) DO NOTHING
RETURNING id
"""
WINDOW_COLUMNS = """
    LEAST(GREATEST(opens_at, '0001-01-02 00:00+00'), '9999-12-30 00:00+00') AS opens_at,
    LEAST(GREATEST(closes_at, '0001-01-02 00:00+00'), '9999-12-30 00:00+00') AS closes_at
"""
"""A campaign's window as Python can hold it in any zone: PostgreSQL keeps times past the
calendar's ends (a window accepted before times were checked), ``datetime`` cannot."""
SELECT_CAMPAIGN = f"""
SELECT id, title, year, timezone, status, show_counts, rules, notice, {WINDOW_COLUMNS}
FROM campaigns WHERE id = $1
"""
INSERT_AUDIT = "INSERT INTO audit_log (actor, action, target, request) VALUES ($1, $2, $3, $4)"


async def campaign_exists(conn: asyncpg.Connection, campaign_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM campaigns WHERE id = $1", campaign_id))


async def require_campaign(conn: asyncpg.Connection, campaign_id: str) -> None:
    if not await campaign_exists(conn, campaign_id):
        raise CampaignNotFound(f"no campaign {campaign_id!r}")


def has_votes_message(rows: list[asyncpg.Record]) -> str:
    who = "、".join(f"{r['number']}号 {r['name']}（{r['id']}）" for r in rows[:10])
    more = f" 等 {len(rows)} 人" if len(rows) > 10 else ""
    return (f"候选人 {who}{more} 已有选票，不能删除；请保留在名单中，或将其标记为已退出"
            f" (candidate_has_votes: {', '.join(r['id'] for r in rows)})")


async def save_campaign(
    conn: asyncpg.Connection, c: CampaignIn | Campaign, *,
    voted: frozenset[str] | set[str] = frozenset(), person_keys: dict[str, str] | None = None,
) -> None:
    """Upsert a campaign and its candidates; candidates not listed are removed — unless one
    has votes (a row in ``tallies``, or in ``voted``: Redis counts not flushed yet), which
    refuses the whole change with ``CandidateHasVotes``."""
    keys = person_keys or {}
    async with conn.transaction():
        listed = [x.id for x in c.candidates]
        kept = await conn.fetch(
            VOTED_IN_LEDGER, c.id,
            [r["id"] for r in await conn.fetch(
                "SELECT id FROM candidates WHERE campaign_id = $1"
                " AND NOT (id = ANY($2::text[]))", c.id, listed)],
            sorted(voted),
        )
        if kept:
            raise CandidateHasVotes(has_votes_message(kept),
                                    extra={"candidates": [r["id"] for r in kept]})
        await conn.execute(
            UPSERT_CAMPAIGN, c.id, c.title, c.timezone, c.opens_at, c.closes_at, c.status,
            c.show_counts, msgspec.json.encode(c.rules).decode(),
            msgspec.json.encode(c.notice).decode(),
            c.year or opening_year(c.opens_at, c.timezone),
        )
        await conn.executemany(
            UPSERT_CANDIDATE,
            [
                (c.id, x.id, x.number, x.name, x.gender, x.region, x.industry, x.employer,
                 x.occupation, x.summary, x.deeds, x.photo_url, x.recommender,
                 recommender_kind_of(x.recommender, x.recommender_kind), x.deed_type,
                 list(x.honors), x.video_url, x.status, x.withdrawn_reason, x.withdrawn_at,
                 keys.get(x.id, ""))
                for x in c.candidates
            ],
        )
        await conn.execute(
            "DELETE FROM candidates WHERE campaign_id = $1 AND NOT (id = ANY($2::text[]))",
            c.id, [x.id for x in c.candidates],
        )


async def load_campaign(conn: asyncpg.Connection, campaign_id: str) -> Campaign | None:
    row = await conn.fetchrow(SELECT_CAMPAIGN, campaign_id)
    if row is None:
        return None
    cands = await conn.fetch(
        "SELECT * FROM candidates WHERE campaign_id = $1 ORDER BY number, id", campaign_id
    )
    chans = await conn.fetch(
        "SELECT * FROM channels WHERE campaign_id = $1 ORDER BY id", campaign_id
    )
    published_at = await conn.fetchval(
        "SELECT published_at FROM publications WHERE campaign_id = $1", campaign_id)
    return Campaign(
        id=row["id"], title=row["title"], year=row["year"], timezone=row["timezone"],
        opens_at=row["opens_at"],
        closes_at=row["closes_at"], status=row["status"], show_counts=row["show_counts"],
        rules=msgspec.json.decode(row["rules"], type=Rules),
        notice=msgspec.json.decode(row["notice"], type=Notice),
        candidates=[
            msgspec.convert({k: r[k] for k in CANDIDATE_FIELDS}, Candidate, from_attributes=True)
            for r in cands
        ],
        channels=[
            Channel(id=r["id"], name=r["name"], allowed_origins=list(r["allowed_origins"]),
                    secret=r["secret"], previous_secret=r["previous_secret"],
                    previous_expires_at=r["previous_expires_at"])
            for r in chans
        ],
        published_at=published_at,
    )


async def campaign_ids(conn: asyncpg.Connection) -> list[str]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM campaigns ORDER BY id")]


async def audit(
    conn: asyncpg.Connection, actor: str, action: str, target: str, request: Any
) -> None:
    await conn.execute(INSERT_AUDIT, actor, action, target, json.dumps(request, default=str))


RESULTS = """
SELECT c.id AS candidate_id, c.number, c.name, c.gender, c.region, c.industry,
       c.recommender, c.deed_type, c.status, COALESCE(t.votes, 0) AS votes
FROM candidates c
LEFT JOIN tallies t ON t.campaign_id = c.campaign_id AND t.candidate_id = c.id
WHERE c.campaign_id = $1
ORDER BY votes DESC, c.number
"""


async def results(conn: asyncpg.Connection, campaign_id: str) -> dict[str, Any]:
    """Final ranking from PostgreSQL, valid votes only, with breakdowns for the panel."""
    rows = await conn.fetch(RESULTS, campaign_id)
    candidates = [dict(r) for r in rows]
    total = sum(r["votes"] for r in candidates)
    breakdowns: dict[str, dict[str, Any]] = {}
    for dim in ("region", "industry", "gender", "recommender", "deed_type"):
        acc: dict[str, int] = {}
        for r in candidates:
            acc[r[dim]] = acc.get(r[dim], 0) + r["votes"]
        breakdowns[dim] = acc
    by_channel = await conn.fetch(
        "SELECT channel, count(*) AS n FROM votes WHERE campaign_id = $1 AND valid"
        " GROUP BY channel ORDER BY channel", campaign_id,
    )
    by_day = await conn.fetch(
        "SELECT day, count(*) AS n FROM votes WHERE campaign_id = $1 AND valid"
        " GROUP BY day ORDER BY day", campaign_id,
    )
    breakdowns["channel"] = {r["channel"] or "direct": r["n"] for r in by_channel}
    attribution = await conn.fetch(
        "SELECT channel, count(*) FILTER (WHERE channel_signed) AS signed,"
        " count(*) FILTER (WHERE NOT channel_signed) AS claimed FROM votes"
        " WHERE campaign_id = $1 AND valid AND channel <> '' GROUP BY channel ORDER BY channel",
        campaign_id,
    )
    # signed: the channel is a partner token's issuer; claimed: only the request named it
    breakdowns["channel_attribution"] = {
        r["channel"]: {"signed": r["signed"], "claimed": r["claimed"]} for r in attribution}
    breakdowns["day"] = {r["day"].isoformat(): r["n"] for r in by_day}
    return {
        "campaign_id": campaign_id,
        "total": total,
        "as_of": dt.datetime.now(dt.UTC).isoformat(),
        "candidates": candidates,
        "breakdowns": breakdowns,
    }
