"""Saving a campaign to PostgreSQL and publishing its snapshot to every worker via Redis."""

from __future__ import annotations

import asyncpg
import msgspec

from ..models import Campaign, CampaignIn, check_campaign
from ..vote import store
from ..vote.store import AnyRedis
from . import db


async def publish(conn: asyncpg.Connection, redis: AnyRedis, campaign_id: str) -> Campaign:
    campaign = await db.load_campaign(conn, campaign_id)
    if campaign is None:
        raise LookupError(campaign_id)
    await store.publish_snapshot(redis, campaign_id, msgspec.json.encode(campaign).decode())
    return campaign


async def publish_all(conn: asyncpg.Connection, redis: AnyRedis) -> list[str]:
    ids = await db.campaign_ids(conn)
    for cid in ids:
        await publish(conn, redis, cid)
    return ids


async def load(conn: asyncpg.Connection, redis: AnyRedis, data: bytes) -> Campaign:
    """Create or replace a campaign from the admin create payload (JSON)."""
    campaign = msgspec.json.decode(data, type=CampaignIn)
    check_campaign(campaign)
    await db.save_campaign(conn, campaign)
    return await publish(conn, redis, campaign.id)
