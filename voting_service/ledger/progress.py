"""How far PostgreSQL is behind the ledger streams: backlog, lag and the unflushed entries.

An entry is unflushed when its stream id is after its shard's mark in ``flush_marks``
(``marks``). The stream may still hold a few committed entries for a moment (the trim
follows the commit), so counting is done against the mark, never with ``XLEN`` alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import asyncpg

from ..redis import keys
from ..redis.store import AnyRedis
from ..vote import entry
from ..vote.entry import Entry
from . import marks
from .marks import Mark

Stream = tuple[str, int]
PAGE = 5000


@dataclass(frozen=True)
class Progress:
    backlog: int
    """Entries after the marks."""
    oldest_ms: int | None
    """Unix ms of the oldest of them (``None``: no backlog)."""

    @property
    def lag_seconds(self) -> float:
        """Age of the oldest unflushed vote; 0 without backlog."""
        if self.oldest_ms is None:
            return 0.0
        return max(0.0, time.time() - self.oldest_ms / 1000)


async def read_marks(conn: asyncpg.Connection, campaign_id: str) -> dict[int, Mark]:
    """Committed marks of a campaign; shards never flushed are at zero."""
    rows = await conn.fetch(marks.LOAD, campaign_id)
    return {int(r["shard"]): (int(r["last_ms"]), int(r["last_seq"])) for r in rows}


async def measure(redis: AnyRedis, at: dict[Stream, Mark]) -> Progress:
    """Backlog and oldest unflushed entry of the streams, each after its mark: three
    pipelined commands a stream, one more for a stream whose trim is still to come."""
    streams = sorted(at)
    pipe = redis.pipeline(transaction=False)
    for s in streams:
        key = keys.ledger(*s)
        pipe.xlen(key)
        pipe.xrange(key, "(" + marks.to_id(at[s]), "+", count=1)
        pipe.xrange(key, "-", "+", count=1)
    results = await pipe.execute()
    backlog = 0
    oldest: list[int] = []
    stale: list[Stream] = []
    for i, s in enumerate(streams):
        length, after, first = results[3 * i], results[3 * i + 1], results[3 * i + 2]
        if not after:
            continue
        oldest.append(marks.parse(after[0][0])[0])
        backlog += int(length)
        if not first or marks.parse(first[0][0]) <= at[s]:
            stale.append(s)  # committed entries still there, to count off
    for s in stale:  # rare: committed entries not trimmed yet; count them off
        start = "-"
        while True:
            page = cast(list[tuple[str, dict[str, str]]], await redis.xrange(
                keys.ledger(*s), start, marks.to_id(at[s]), count=PAGE) or [])
            backlog -= len(page)
            if len(page) < PAGE:
                break
            start = "(" + str(page[-1][0])
    return Progress(backlog, min(oldest) if oldest else None)


async def campaign(
    redis: AnyRedis, conn: asyncpg.Connection, campaign_id: str, shards: int
) -> Progress:
    """Backlog and lag of one campaign (the ops metrics and ``reconcile`` read this)."""
    found = await read_marks(conn, campaign_id)
    return await measure(redis, {(campaign_id, s): found.get(s, marks.ZERO)
                                 for s in range(shards)})


async def all_campaigns(redis: AnyRedis, conn: asyncpg.Connection, shards: int) -> Progress:
    """Backlog and lag over every campaign listed in Redis (``cfg:campaigns``)."""
    at: dict[Stream, Mark] = {}
    for cid in sorted(map(str, await redis.hkeys(keys.CONFIG_HASH))):
        found = await read_marks(conn, cid)
        at.update({(cid, s): found.get(s, marks.ZERO) for s in range(shards)})
    return await measure(redis, at)


async def stream_entries(
    redis: AnyRedis, campaign_id: str, shards: int, *, until_ms: int | None = None
) -> dict[int, list[tuple[str, Entry]]]:
    """Every entry in a campaign's streams (up to ``until_ms``), decoded, by shard."""
    end = "+" if until_ms is None else f"{until_ms}-18446744073709551615"
    out: dict[int, list[tuple[str, Entry]]] = {}
    for shard in range(shards):
        found: list[tuple[str, Entry]] = []
        start = "-"
        while True:
            raw = await redis.xrange(keys.ledger(campaign_id, shard), start, end, count=PAGE)
            page = cast(list[tuple[str, dict[str, str]]], raw or [])
            found += [(sid, entry.decode(f)) for sid, f in page if f]
            if len(page) < PAGE:
                break
            start = "(" + page[-1][0]
        out[shard] = found
    return out


def after_marks(
    entries: dict[int, list[tuple[str, Entry]]], at: dict[int, Mark]
) -> list[tuple[int, str, Entry]]:
    """``(shard, stream id, entry)`` of the entries after their shard's mark."""
    return [(shard, sid, e) for shard, found in sorted(entries.items()) for sid, e in found
            if marks.parse(sid) > at.get(shard, marks.ZERO)]
