"""The blocklist: voters and IP networks that may not vote, with reason and optional expiry.

PostgreSQL (table ``blocklist``) is the record; Redis holds what the vote path reads:
- a blocked voter is a field of ``keys.blocked_voters`` in the voter's shard group, so
  ``cast_vote.lua`` refuses the vote in the same atomic step (effective at once);
- blocked networks are one JSON list (``keys.BLOCKED_NETWORKS``) that every worker reloads
  when ``keys.BLOCKED_NETWORKS_VERSION`` changes — it polls every second — and checks in
  process before any script runs.
Entries are never deleted: removing one stamps ``removed_at``/``removed_by``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import Any

import asyncpg
import msgspec

from ..errors import Blocked, InvalidRequest
from ..ledger import db
from ..models import BlockIn
from ..redis import keys
from ..redis.store import AnyRedis
from ..vote import identity

log = logging.getLogger(__name__)

MIN_PREFIX = {4: 8, 6: 16}
"""Broader blocks than these would shut out whole provinces: refused as a likely mistake."""
EVERY_CAMPAIGN = ""

INSERT = """
INSERT INTO blocklist (kind, value, campaign_id, reason, created_by, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *
"""
ACTIVE = "removed_at IS NULL AND (expires_at IS NULL OR expires_at > now())"


def normalize(kind: str, value: str) -> str:
    value = value.strip()
    if kind == "voter":
        if len(value) != 32 or any(ch not in "0123456789abcdef" for ch in value):
            raise InvalidRequest("a voter id is 32 lowercase hex digits")
        return value
    try:
        net = identity.network(value)
    except ValueError as exc:
        raise InvalidRequest(f"not an IP address or CIDR: {value!r}") from exc
    if net.prefixlen < MIN_PREFIX[net.version]:
        raise InvalidRequest(f"/{net.prefixlen} is too broad to block")
    return str(net)


def view(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row)


# --- networks, in every worker's memory ------------------------------------------------


class NetworkBlocks:
    """Blocked networks by campaign (``""`` = every campaign), looked up per prefix length.

    A lookup costs one dict probe per distinct prefix length in use, however many entries.
    """

    def __init__(self) -> None:
        self.version = -1
        # campaign -> (ip version, prefix length) -> network as int -> until (0 = never)
        self._nets: dict[str, dict[tuple[int, int], dict[int, float]]] = {}

    def load(self, entries: Iterable[dict[str, Any]], version: int) -> None:
        nets: dict[str, dict[tuple[int, int], dict[int, float]]] = {}
        for e in entries:
            try:
                net = identity.network(str(e["net"]))
            except ValueError:
                log.error("unreadable blocked network %r", e)
                continue
            by_len = nets.setdefault(str(e.get("campaign") or EVERY_CAMPAIGN), {})
            slot = by_len.setdefault((net.version, net.prefixlen), {})
            until = float(e.get("until") or 0)
            known = slot.get(int(net.network_address))
            slot[int(net.network_address)] = (
                0.0 if known == 0.0 or until == 0.0 else max(until, known or 0.0)
            )
        self._nets = nets
        self.version = version

    def blocked(self, campaign_id: str, ip: str, now: float) -> bool:
        if not self._nets:
            return False
        try:
            addr = identity.address(ip)
        except ValueError:
            return False
        value, bits = int(addr), addr.max_prefixlen
        for scope in (campaign_id, EVERY_CAMPAIGN):
            for (version, length), slot in self._nets.get(scope, {}).items():
                if version != addr.version:
                    continue
                mask = ((1 << length) - 1) << (bits - length) if length else 0
                until = slot.get(value & mask)
                if until is not None and (until == 0.0 or until > now):
                    return True
        return False

    def check(self, campaign_id: str, ip: str) -> None:
        if self.blocked(campaign_id, ip, time.time()):
            raise Blocked("this network is blocked")

    async def refresh(self, redis: AnyRedis) -> bool:
        version = int(await redis.get(keys.BLOCKED_NETWORKS_VERSION) or 0)
        if version == self.version:
            return False
        raw = await redis.get(keys.BLOCKED_NETWORKS)
        self.load(msgspec.json.decode(raw) if raw else [], version)
        return True

    async def watch(self, redis: AnyRedis, every: float) -> None:
        """Reload on change, checking every ``every`` seconds (the lifespan runs this)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh(redis)
            except Exception as exc:  # keep the last good list
                log.warning("blocked networks refresh failed: %r", exc)


async def publish_networks(conn: asyncpg.Connection, redis: AnyRedis) -> int:
    """Rewrite the list of active network blocks that workers read; returns its length."""
    rows = await conn.fetch(
        f"SELECT value, campaign_id, expires_at FROM blocklist WHERE kind = 'ip' AND {ACTIVE}"
    )
    entries = [
        {"net": r["value"], "campaign": r["campaign_id"] or EVERY_CAMPAIGN,
         "until": r["expires_at"].timestamp() if r["expires_at"] else 0}
        for r in rows
    ]
    await redis.set(keys.BLOCKED_NETWORKS, msgspec.json.encode(entries))
    await redis.incr(keys.BLOCKED_NETWORKS_VERSION)
    return len(entries)


# --- voters, in their shard group's hash ------------------------------------------------


async def _apply_voter(
    conn: asyncpg.Connection, redis: AnyRedis, shards: int, voter: str, campaign_ids: list[str]
) -> None:
    """Make the Redis hashes say what PostgreSQL says about ``voter`` in these campaigns."""
    shard = keys.shard_of(voter, shards)
    pipe = redis.pipeline(transaction=False)
    for cid in campaign_ids:
        rows = await conn.fetch(
            f"SELECT expires_at FROM blocklist WHERE kind = 'voter' AND value = $1"
            f" AND (campaign_id = $2 OR campaign_id IS NULL) AND {ACTIVE}", voter, cid,
        )
        if not rows:
            pipe.hdel(keys.blocked_voters(cid, shard), voter)
            continue
        ends = [r["expires_at"] for r in rows]
        until = 0 if any(e is None for e in ends) else max(int(e.timestamp()) + 1 for e in ends)
        pipe.hset(keys.blocked_voters(cid, shard), voter, str(until))
    await pipe.execute()


async def sync_campaign(
    conn: asyncpg.Connection, redis: AnyRedis, campaign_id: str, shards: int
) -> int:
    """Write every active voter block that applies to this campaign into its shard hashes
    (a new campaign inherits the blocks that apply to every campaign)."""
    rows = await conn.fetch(
        f"SELECT DISTINCT value FROM blocklist WHERE kind = 'voter'"
        f" AND (campaign_id = $1 OR campaign_id IS NULL) AND {ACTIVE}", campaign_id,
    )
    for r in rows:
        await _apply_voter(conn, redis, shards, r["value"], [campaign_id])
    return len(rows)


async def restore(conn: asyncpg.Connection, redis: AnyRedis, shards: int) -> None:
    """Write every active block back into an emptied Redis (PostgreSQL is the record)."""
    await publish_networks(conn, redis)
    for cid in await db.campaign_ids(conn):
        await sync_campaign(conn, redis, cid, shards)


async def _campaigns_of(conn: asyncpg.Connection, campaign_id: str | None) -> list[str]:
    return [campaign_id] if campaign_id else await db.campaign_ids(conn)


async def add(
    conn: asyncpg.Connection, redis: AnyRedis, shards: int, actor: str, body: BlockIn
) -> dict[str, Any]:
    value = normalize(body.kind, body.value)
    if body.expires_at is not None:
        if body.expires_at.tzinfo is None:
            raise InvalidRequest("expires_at needs a UTC offset")
        if body.expires_at <= dt.datetime.now(dt.UTC):
            raise InvalidRequest("expires_at is in the past")
    async with conn.transaction():
        if body.campaign_id and not await db.campaign_exists(conn, body.campaign_id):
            raise InvalidRequest(f"no campaign {body.campaign_id!r}")
        row = await conn.fetchrow(
            INSERT, body.kind, value, body.campaign_id, body.reason, actor, body.expires_at
        )
        assert row is not None
        await db.audit(conn, actor, "blocklist.add", f"{body.kind}:{value}",
                       msgspec.to_builtins(body))
    await _push(conn, redis, shards, body.kind, value, body.campaign_id)
    return view(row)


async def remove(
    conn: asyncpg.Connection, redis: AnyRedis, shards: int, actor: str, entry_id: int
) -> dict[str, Any] | None:
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE blocklist SET removed_at = now(), removed_by = $2"
            " WHERE id = $1 AND removed_at IS NULL RETURNING *", entry_id, actor,
        )
        if row is None:
            return None
        await db.audit(conn, actor, "blocklist.remove", f"{row['kind']}:{row['value']}",
                       {"id": entry_id})
    await _push(conn, redis, shards, row["kind"], row["value"], row["campaign_id"])
    return view(row)


async def _push(
    conn: asyncpg.Connection, redis: AnyRedis, shards: int, kind: str, value: str,
    campaign_id: str | None,
) -> None:
    if kind == "voter":
        await _apply_voter(conn, redis, shards, value, await _campaigns_of(conn, campaign_id))
    else:
        await publish_networks(conn, redis)


async def listing(
    conn: asyncpg.Connection, *, kind: str | None, campaign_id: str | None, active_only: bool
) -> list[dict[str, Any]]:
    where, args = ["TRUE"], []
    if kind:
        args.append(kind)
        where.append(f"kind = ${len(args)}")
    if campaign_id:
        args.append(campaign_id)
        where.append(f"(campaign_id = ${len(args)} OR campaign_id IS NULL)")
    if active_only:
        where.append(ACTIVE)
    rows = await conn.fetch(
        f"SELECT * FROM blocklist WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT 5000", *args
    )
    return [view(r) for r in rows]
