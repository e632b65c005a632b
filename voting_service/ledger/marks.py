"""Per shard stream, the id of the last ledger entry committed to PostgreSQL (``flush_marks``).

The mark is the flusher's whole bookkeeping: entries after it are unflushed (the backlog),
entries up to it are in the ``votes`` table and may be trimmed from the stream. It moves in
the transaction that writes the entries, and only from the value the writer started from
(compare and set), so two writers racing for one shard cannot both commit the same entries.
"""

from __future__ import annotations

import asyncpg

Mark = tuple[int, int]
"""A stream id as ``(milliseconds, sequence)``."""
ZERO: Mark = (0, 0)

ENSURE = """
INSERT INTO flush_marks (campaign_id, shard)
SELECT $1, g FROM generate_series(0, $2::integer - 1) AS g
ON CONFLICT (campaign_id, shard) DO NOTHING
"""
LOAD = "SELECT shard, last_ms, last_seq FROM flush_marks WHERE campaign_id = $1"
LOCK = LOAD + " ORDER BY shard FOR UPDATE"
MOVE = """
UPDATE flush_marks m SET last_ms = d.new_ms, last_seq = d.new_seq, updated_at = now()
FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
     AS d(campaign_id, shard, old_ms, old_seq, new_ms, new_seq)
WHERE m.campaign_id = d.campaign_id AND m.shard = d.shard
  AND m.last_ms = d.old_ms AND m.last_seq = d.old_seq
"""


class MarkMoved(Exception):
    """Another writer committed entries of a shard since this one read its mark."""


def parse(stream_id: str) -> Mark:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def to_id(mark: Mark) -> str:
    return f"{mark[0]}-{mark[1]}"


def trim_below(mark: Mark) -> str:
    """``XTRIM MINID`` argument that removes the entries up to ``mark`` and keeps the rest."""
    return f"{mark[0]}-{mark[1] + 1}"


async def load(conn: asyncpg.Connection, campaign_id: str, shards: int) -> dict[int, Mark]:
    """Every shard's mark (rows are created at zero on first use)."""
    await conn.execute(ENSURE, campaign_id, shards)
    rows = await conn.fetch(LOAD, campaign_id)
    return {int(r["shard"]): (int(r["last_ms"]), int(r["last_seq"])) for r in rows}


async def lock(conn: asyncpg.Connection, campaign_id: str, shards: int) -> dict[int, Mark]:
    """``load`` and hold the rows until the transaction ends: flushers wait meanwhile."""
    await conn.execute(ENSURE, campaign_id, shards)
    rows = await conn.fetch(LOCK, campaign_id)
    return {int(r["shard"]): (int(r["last_ms"]), int(r["last_seq"])) for r in rows}


async def move(
    conn: asyncpg.Connection, moves: dict[tuple[str, int], tuple[Mark, Mark]]
) -> None:
    """Advance marks ``(campaign, shard) → (from, to)`` inside the caller's transaction;
    ``MarkMoved`` (the caller rolls back) if any mark is no longer at ``from``."""
    if not moves:
        return
    items = sorted(moves.items())  # one lock order for every writer
    status = await conn.execute(
        MOVE,
        [cid for (cid, _), _ in items], [shard for (_, shard), _ in items],
        [old[0] for _, (old, _) in items], [old[1] for _, (old, _) in items],
        [new[0] for _, (_, new) in items], [new[1] for _, (_, new) in items],
    )
    if int(status.rsplit(" ", 1)[-1]) != len(items):
        raise MarkMoved(f"a mark of {sorted({cid for (cid, _), _ in items})} moved meanwhile")
