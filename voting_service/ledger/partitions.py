"""The ledger's day partitions (migration 0006): created before a day's first rows are
written, and given their lookup indexes in one sorted pass once the day is over.

The open day's partition has only the indexes a COPY keeps cheaply (the compact primary key,
the BRINs on ``cast_at`` and on the log position, the partial index of struck-out votes).
Keeping the random-key lookup b-trees in step with every COPY more than halved the flusher's
PostgreSQL rows a second (``docs/capacity.md``, ``make bench`` table B); building them on a
finished day costs one sort. Until
then a lookup by voter or address scans the open days' partitions (a day or two of rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

LOOKUPS = {
    "voter": "(campaign_id, voter_id)",  # invalidations, suspicious groups, reconciliation
    "ip": "(campaign_id, ip)",  # invalidation by network, address signals
    "vote": "(campaign_id, vote_id)",  # the published ledger's look-up of one vote
    # log proofs: the open day answers them from the BRIN on log_index (migration 0031)
    "log": "(campaign_id, log_index) WHERE log_index IS NOT NULL",
}
"""Index suffix → columns: the indexes a sealed partition carries beside the open day's."""
OVER_AFTER = dt.timedelta(days=1, hours=13)
"""A day is over everywhere 36 h after its UTC midnight (its last local hour ends at
12:00 UTC the next day, in UTC−12); one more hour lets the flusher's tail land first."""
SEAL_EVERY = 600.0
"""Seconds between the flusher's sealing passes."""
LOCK_ID = 0x766F7465_7365616C
"""Session advisory lock of a sealing pass: one flusher of many seals at a time."""

PARTITIONS = """
SELECT c.relname AS name,
       array(SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
             WHERE x.indrelid = c.oid AND x.indisvalid) AS valid,
       array(SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
             WHERE x.indrelid = c.oid AND NOT x.indisvalid) AS invalid
FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
WHERE h.inhparent = 'votes'::regclass AND c.relname ~ '^votes_p[0-9]{8}$'
ORDER BY c.relname
"""


def name_of(day: dt.date) -> str:
    return f"votes_p{day:%Y%m%d}"


def day_of(name: str) -> dt.date:
    return dt.datetime.strptime(name.removeprefix("votes_p"), "%Y%m%d").date()


def sealable(day: dt.date, now: dt.datetime) -> bool:
    """Whether ``day`` is over in every time zone (and its late rows are in)."""
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
    return now >= midnight + OVER_AFTER


class Known:
    """The days whose partition this process has seen exist: a writer asks PostgreSQL only
    for a day it has not written before."""

    def __init__(self) -> None:
        self.days: set[str] = set()

    async def ensure(self, conn: asyncpg.Connection, days: Iterable[str]) -> None:
        """Create the partitions of ``days`` (ISO dates) that may be missing."""
        for day in sorted(set(days) - self.days):
            await conn.execute("SELECT votes_partition($1::date)", dt.date.fromisoformat(day))
            self.days.add(day)


async def first_open(conn: asyncpg.Connection) -> dt.date:
    """The first day whose partition has no voter index yet (``date.max`` when none): the
    days from it on are looked up by scanning, those before it through the indexes."""
    days = [day_of(r["name"]) for r in await conn.fetch(PARTITIONS)
            if f"{r['name']}_voter" not in r["valid"]]
    return min(days, default=dt.date.max)


@dataclass
class Sealed:
    name: str
    built: list[str]


async def seal(conn: asyncpg.Connection, now: dt.datetime | None = None,
               days: Iterable[dt.date] | None = None) -> list[Sealed]:
    """Build the lookup indexes missing on every partition whose day is over, or with
    ``days`` on those days' partitions only, whatever the hour (a published campaign's, so
    its votes are found at once); then gather the partition's statistics.

    ``CREATE INDEX CONCURRENTLY``: the flusher goes on writing meanwhile (a late row of that
    day waits for nothing). A build that failed half-way leaves an invalid index, which is
    dropped and built again. ``conn`` must not be inside a transaction."""
    now = now or dt.datetime.now(dt.UTC)
    named = None if days is None else {name_of(d) for d in days}
    out = []
    for row in await conn.fetch(PARTITIONS):
        name = row["name"]
        if not (sealable(day_of(name), now) if named is None else name in named):
            continue
        built = []
        for suffix, columns in LOOKUPS.items():
            index = f"{name}_{suffix}"
            if index in row["valid"]:
                continue
            if index in row["invalid"]:
                await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index}"')
            await conn.execute(f'CREATE INDEX CONCURRENTLY "{index}" ON "{name}" {columns}')
            built.append(index)
        if built:
            await conn.execute(f'ANALYZE "{name}"')  # the planner learns the finished day
            log.info("ledger partition %s sealed: built %s", name, ", ".join(built))
            out.append(Sealed(name, built))
    return out


async def seal_days(conn: asyncpg.Connection, days: Iterable[dt.date],
                    poll: float = 0.2) -> list[Sealed]:
    """``seal`` of ``days`` once no other process is sealing (a publication's request).

    An index another process is building shows as invalid, like a failed build: dropping
    it deadlocked with that build (a publication beside the flusher's pass). So this takes
    the pass's lock first. It polls the lock rather than wait on it: a session blocked on
    the lock holds a snapshot, which the other's ``CREATE INDEX CONCURRENTLY`` waits out."""
    waited = False
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
        if not waited:
            log.info("sealing waits for another process's sealing pass")
            waited = True
        await asyncio.sleep(poll)
    try:
        return await seal(conn, days=days)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)


async def seal_once(database_url: str) -> list[Sealed] | None:
    """One sealing pass on a connection of its own, if no other process is sealing
    (``None`` then)."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID):
            return None
        try:
            return await seal(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    finally:
        await conn.close()


async def run(database_url: str, stop: asyncio.Event, every: float = SEAL_EVERY) -> None:
    """Seal finished days now and every ``every`` seconds until ``stop``; a failed pass is
    logged and tried again at the next."""
    while not stop.is_set():
        try:
            await seal_once(database_url)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("sealing ledger partitions failed (%r); next try in %.0fs", exc, every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
