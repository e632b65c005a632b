"""A batch of ledger stream entries written to PostgreSQL in one transaction: the mark moves
first (compare and set, see ``marks``), then one text ``COPY`` into ``votes``, then the tally
upserts. No staging table and no ``ON CONFLICT``: the marks make each entry land once. The
day partitions the rows go to are created first, when missing (``partitions``).

The packed entry (``vote.entry``) is already in ``COPY`` text order, so a row costs a split
(for its candidate) and one f-string; entries that are not (an older format, no address)
take the slow, decoding path.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ..vote import entry
from . import marks
from .marks import Mark
from .partitions import Known

COLUMNS = ["vote_id", "voter_id", "candidate_id", "channel", "ip", "day", "channel_signed",
           "campaign_id", "shard", "stream_id", "cast_at"]
"""``COPY`` columns: the packed entry's parts, then what the stream says of it."""
ADD_TALLIES = """
INSERT INTO tallies (campaign_id, candidate_id, votes)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
ON CONFLICT (campaign_id, candidate_id) DO UPDATE SET votes = tallies.votes + EXCLUDED.votes
"""

Stream = tuple[str, int]
"""(campaign id, shard)"""
RawEntry = tuple[str, Any]
"""A stream id and its fields: ``["e", packed]`` as the server sends them, or a mapping."""


def fields_dict(fields: Any) -> dict[str, str]:
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[0::2], fields[1::2], strict=True))


def cast_at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") \
        .replace("\r", "\\r")


@dataclass
class Batch:
    lines: list[str] = field(default_factory=list)
    tallies: Counter[tuple[str, str]] = field(default_factory=Counter)
    moves: dict[Stream, tuple[Mark, Mark]] = field(default_factory=dict)
    rows: int = 0
    days: set[str] = field(default_factory=set)
    """The rows' days (ISO dates): the partitions they go to."""
    _stamps: dict[str, str] = field(default_factory=dict)
    """``cast_at`` text by stream-id milliseconds: votes of one millisecond share it."""
    _seconds: dict[int, str] = field(default_factory=dict)

    def add(self, stream: Stream, old: Mark, entries: Iterable[RawEntry]) -> None:
        """Entries of one stream, in order, that come right after its mark ``old``."""
        cid, shard = stream
        tail = f"\t{_escape(cid)}\t{shard}\t"
        lines, stamps, days = self.lines, self._stamps, self.days
        counts: dict[str, int] = {}
        sep, field_name, parts_n = entry.SEP, entry.FIELD, entry.PARTS
        last = ""
        n = 0
        for sid, fields in entries:
            last = sid
            n += 1
            ms = sid[: sid.index("-")]
            stamp = stamps.get(ms)
            if stamp is None:
                stamp = stamps[ms] = self._stamp(int(ms))
            packed: str = fields[1] if type(fields) is list and fields[0] == field_name else ""
            parts = packed.split(sep)
            if len(parts) == parts_n and parts[4] and "\\" not in packed \
                    and "\n" not in packed and "\r" not in packed:
                lines.append(f"{packed}{tail}{sid}\t{stamp}\n")
                cand = parts[2]
                days.add(parts[5])
            else:  # an older format, a mapping, no address: the decoding path
                e = entry.decode(fields_dict(fields))
                text = "\t".join((
                    *map(_escape, (e.vote_id, e.voter_id, e.candidate_id, e.channel)),
                    _escape(e.ip) if e.ip else "\\N", _escape(e.day),
                    "1" if e.channel_signed else "0"))
                lines.append(f"{text}{tail}{sid}\t{stamp}\n")
                cand = e.candidate_id
                days.add(e.day)
            counts[cand] = counts.get(cand, 0) + 1
        if n:
            self.rows += n
            for cand, k in counts.items():
                self.tallies[(cid, cand)] += k
            start = self.moves[stream][0] if stream in self.moves else old
            self.moves[stream] = (start, marks.parse(last))

    def _stamp(self, ms: int) -> str:
        sec = self._seconds.get(ms // 1000)
        if sec is None:
            sec = self._seconds[ms // 1000] = dt.datetime.fromtimestamp(
                ms // 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{sec}.{ms % 1000:03d}+00"

    def merge(self, part: Batch, committed: dict[Stream, Mark]) -> None:
        """Take ``part`` (encoded before the marks were known: reads run ahead of commits)
        whose streams each start right after their ``committed`` mark."""
        self.lines += part.lines
        self.tallies.update(part.tallies)
        self.days |= part.days
        self.rows += part.rows
        for s, (_, last) in part.moves.items():
            start = self.moves[s][0] if s in self.moves else committed[s]
            self.moves[s] = (start, last)

    def __bool__(self) -> bool:
        return self.rows > 0


async def commit(
    conn: asyncpg.Connection, batch: Batch,
    before_commit: Callable[[], Awaitable[None]] | None = None, known: Known | None = None,
) -> None:
    """Write ``batch`` in one transaction; ``marks.MarkMoved`` rolls it all back. A missing
    partition is created before, on its own: not under the transaction's locks.
    ``known``: the partitions the caller has seen exist."""
    known = known or Known()
    await known.ensure(conn, batch.days)
    async with conn.transaction():
        await write(conn, batch, known)
        if before_commit is not None:
            await before_commit()


async def write(conn: asyncpg.Connection, batch: Batch, known: Known | None = None) -> None:
    """``commit``'s statements, inside the caller's transaction."""
    if not batch:
        return
    await (known or Known()).ensure(conn, batch.days)
    await marks.move(conn, batch.moves)
    data = "".join(batch.lines).encode()
    await conn.copy_to_table("votes", source=io.BytesIO(data), columns=COLUMNS, format="text")
    items = sorted(batch.tallies.items())
    await conn.execute(ADD_TALLIES, [c for (c, _), _ in items], [k for (_, k), _ in items],
                       [n for _, n in items])
