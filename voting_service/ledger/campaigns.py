"""Saving a campaign to PostgreSQL and pushing its snapshot to every worker via Redis."""

from __future__ import annotations

import asyncpg
import msgspec
from redis.exceptions import RedisError

from ..errors import Unavailable
from ..models import Campaign, CampaignIn, Candidate, check_campaign, with_derived_facts
from ..redis import store
from ..redis.store import AnyRedis
from . import db

MAX_SHARDS = 1024
"""Upper bound of ``VOTING_SHARDS``: scanning that many tally hashes misses no vote."""


async def push_snapshot(conn: asyncpg.Connection, redis: AnyRedis, campaign_id: str) -> Campaign:
    campaign = await db.load_campaign(conn, campaign_id)
    if campaign is None:
        raise LookupError(campaign_id)
    await store.write_snapshot(redis, campaign_id, msgspec.json.encode(campaign).decode())
    return campaign


async def push_all_snapshots(conn: asyncpg.Connection, redis: AnyRedis) -> list[str]:
    ids = await db.campaign_ids(conn)
    for cid in ids:
        await push_snapshot(conn, redis, cid)
    return ids


async def voted_in_redis(redis: AnyRedis, campaign_id: str, shards: int) -> set[str]:
    """Candidates the Redis tallies know of: every vote counted, flushed or not (a struck
    vote leaves its field at 0, still there)."""
    try:
        return set(store.sum_tallies(await store.shard_tallies(redis, campaign_id, shards)))
    except (RedisError, OSError) as exc:
        raise Unavailable("Redis is unreachable; the candidates were not changed") from exc


def keep_withdrawals(current: list[Candidate], new: list[Candidate]) -> list[Candidate]:
    """A campaign document or an import never brings back a withdrawn candidate: withdrawal
    is changed only on the candidate itself (``PATCH …/candidates/{id}``)."""
    gone = {x.id: x for x in current if x.status == "withdrawn"}
    out = []
    for cand in new:
        was = gone.get(cand.id)
        if was is not None and cand.status == "active":
            cand = msgspec.structs.replace(cand, status="withdrawn",
                                           withdrawn_reason=was.withdrawn_reason,
                                           withdrawn_at=was.withdrawn_at)
        out.append(with_derived_facts(cand))
    return out


async def save(
    conn: asyncpg.Connection, redis: AnyRedis, campaign: CampaignIn | Campaign, shards: int,
    person_keys: dict[str, str] | None = None,
) -> CampaignIn | Campaign:
    """Save a campaign document, refusing to remove a candidate with votes."""
    current = await db.load_campaign(conn, campaign.id)
    if current is not None:
        campaign = msgspec.structs.replace(
            campaign, candidates=keep_withdrawals(current.candidates, campaign.candidates))
    else:
        campaign = msgspec.structs.replace(
            campaign, candidates=[with_derived_facts(x) for x in campaign.candidates])
    removed = ({x.id for x in current.candidates} - {x.id for x in campaign.candidates}
               if current is not None else set())
    voted = await voted_in_redis(redis, campaign.id, shards) & removed if removed else set()
    await db.save_campaign(conn, campaign, voted=voted, person_keys=person_keys)
    return campaign


async def load(
    conn: asyncpg.Connection, redis: AnyRedis, data: bytes, shards: int = MAX_SHARDS
) -> Campaign:
    """Create or replace a campaign from the admin create payload (JSON)."""
    campaign = msgspec.json.decode(data, type=CampaignIn)
    check_campaign(campaign)
    await save(conn, redis, campaign, shards)
    return await push_snapshot(conn, redis, campaign.id)
