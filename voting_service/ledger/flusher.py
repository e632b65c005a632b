"""Moves the vote ledger from the Redis shard streams into PostgreSQL, exactly once in effect.

Each shard stream has a mark in PostgreSQL (``marks``): the id of its last committed entry.
A pass reads the entries after the in-memory read position with ``XREAD`` (one command for
every stream of a Cluster slot, or of the whole single node), then writes them in one
transaction that moves the marks from their committed values (compare and set), COPYs the
rows and adds the tallies (``batch``). Behind, the next read is already under way while
PostgreSQL writes; keeping up, passes start at most every ``PASS_INTERVAL``. After the
commit ``XTRIM MINID`` drops the committed entries, so the stream holds the unflushed tail
(plus, for a moment, what was just committed). A crash anywhere leaves the mark as the
truth: the next owner reads on from it. Nothing is acknowledged entry by entry and nothing
is written twice.

One flusher writes a shard at a time: it holds the shard's lease (``flusher_lease.lua``),
renews it every few seconds and another flusher takes the shard once the lease lapses.
Flushers share the shards: each keeps about ``shards / live flushers`` of them.

Idle, a flusher blocks in ``XREAD BLOCK`` instead of polling, and it stops reading the
streams of a closed campaign once they are drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import socket
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import msgspec
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import PipelineCommand
from redis.exceptions import NoScriptError, RedisError

from ..models import Campaign, decode_snapshot
from ..redis import keys, scripts
from ..redis.barrier import Barrier, NotDurable
from ..redis.store import AnyRedis
from . import batch as batches
from . import marks, progress, transparency
from .batch import Batch, RawEntry, Stream
from .marks import Mark, MarkMoved
from .partitions import Known
from .repair import Repaired, Repairer

log = logging.getLogger(__name__)

LEASE_TTL_MS = 15_000
"""A shard whose flusher stopped renewing for this long is taken over by another."""
HEARTBEAT_TTL = 15
LOG_TICK = 2.0
"""Seconds between the log passes of ``run`` (tree building, head signing)."""
REFRESH_SECONDS = 2.0
"""How often the campaign list, the shares and (every third time) the leases are looked at."""
CLOSED_GRACE_SECONDS = 60.0
"""A campaign is read for this long after it closes: a vote checked just before the close
may still reach its stream."""
BLOCK_MS = 10_000
"""Idle, one ``XREAD BLOCK`` per slot group waits this long before it is sent again."""
PASS_INTERVAL = 0.1
"""A pass that read less than a full ``COUNT`` from every stream (the flusher keeps up)
starts the next one no sooner than this after its own start: light traffic is written in a
few larger transactions rather than in one per loop turn: a commit per turn cost the
flusher and PostgreSQL a sizeable share of a core at moderate rates (``docs/capacity.md``),
and a WAL fsync each on the disk Valkey's AOF shares. A vote is durable in
Redis before it is acknowledged, so this only delays its row (by at most the interval)."""


@dataclass
class Stats:
    flushed: int = 0
    batches: int = 0
    backlog: int = 0
    lag_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def inserted(self) -> int:
        """Rows written: every entry is written once, so this equals ``flushed``."""
        return self.flushed


@dataclass
class _Group:
    """Streams one ``XREAD`` reads together: one Cluster slot, or all on a single node."""

    streams: list[Stream]
    keys: list[str]
    node: Any = None
    task: asyncio.Task[tuple[Batch, dict[Stream, str]]] | None = None
    blocking: bool = False
    idle: bool = False
    """The last read found nothing: the next one blocks."""
    full: bool = False
    """The last read brought a full ``COUNT`` of some stream: more is waiting."""


def _closed(c: Campaign | None, now: float) -> bool:
    if c is None:
        return False
    return c.status == "closed" or now > c.closes_at.timestamp() + CLOSED_GRACE_SECONDS


def _raw(response: Any, **_: Any) -> Any:
    return response


class Flusher:
    def __init__(
        self,
        redis: AnyRedis,
        database_url: str,
        shards: int,
        *,
        name: str | None = None,
        batch: int = 2000,
        reader: AnyRedis | None = None,
        block_ms: int | None = None,
        lease_ttl_ms: int = LEASE_TTL_MS,
        replica_acks: int = 0,
        replica_timeout_ms: int = 2000,
        pass_interval: float = PASS_INTERVAL,
        repair_interval: float = 0.0,
        log: transparency.LogConfig | None = None,
        log_positions: bool = True,
    ) -> None:
        """``reader`` is a client whose socket timeout outlasts ``block_ms`` (idle reads
        block that long); without one, reads go through ``redis`` and block at most 0.5 s.
        ``replica_acks`` ≥ 1: nothing is committed to PostgreSQL before that many replicas
        of the server each entry was read from hold it (``WAIT``/``WAITAOF`` there).
        ``pass_interval``: see ``PASS_INTERVAL`` (``run`` only; ``step`` and ``drain`` never
        wait). ``repair_interval`` > 0: every that many seconds, between two passes, the
        drift repair of the shards held (``repair``). ``log``: ``run`` builds the
        transparency log's tree and signs its heads every ``LOG_TICK`` seconds;
        ``log_positions`` off leaves the rows without log positions (only to measure what
        the log costs: a ledger flushed so has no log)."""
        self.redis = redis
        self.reader = reader or redis
        if reader is not None:
            reader.set_response_callback("XREAD", _raw)  # the flusher parses entries itself
        self.block_ms = block_ms if block_ms is not None else (BLOCK_MS if reader else 500)
        self.database_url = database_url
        self.shards = shards
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.lease_ttl_ms = lease_ttl_ms
        self.replica_acks = replica_acks
        self.replica_timeout_ms = replica_timeout_ms
        self.pass_interval = pass_interval
        self.repair_interval = repair_interval
        self._repairer = Repairer(redis, self.name, shards)
        self._repaired_at = time.monotonic()
        self.log = log
        self.log_positions = log_positions
        self._log_at = -math.inf
        self.stats = Stats()
        self._partitions = Known()
        self._cluster = isinstance(redis, RedisCluster)
        self._conn: asyncpg.Connection | None = None
        self._version: str | None = None
        self._campaigns: dict[str, Campaign | None] = {}
        self._owned: set[Stream] = set()
        self._finished: set[Stream] = set()
        self._committed: dict[Stream, Mark] = {}
        self._pos: dict[Stream, str] = {}
        self._source: dict[Stream, Any] = {}
        """The Cluster node each stream's uncommitted entries were read from."""
        self._untrimmed: set[Stream] = set()
        self._groups: list[_Group] = []
        self._regroup = True
        self._refreshed_at = -math.inf
        self._leased_at = -math.inf
        self._members = 1
        self._behind = False
        """The last pass read a full ``COUNT`` of some stream (``run`` goes on at once)."""

    # -- PostgreSQL -------------------------------------------------------------------------

    async def _db(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.database_url, timeout=5)
        return self._conn

    async def close(self, *, release: bool = True) -> None:
        """Stop: cancel reads, give the leases up (another flusher takes them at once)."""
        await self._cancel_reads()
        if release and self._owned:
            with contextlib.suppress(RedisError, OSError):
                await self._lease_calls(scripts.load("flusher_release"), sorted(self._owned),
                                        [self.name])
                await self.redis.zrem(keys.FLUSHER_MEMBERS, self.name)
        self._owned.clear()
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

    # -- campaigns, shares, leases ----------------------------------------------------------

    async def register(self) -> int:
        """Say this flusher is alive; returns how many are."""
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(keys.FLUSHER_MEMBERS, {self.name: now_ms + self.lease_ttl_ms})
        pipe.zremrangebyscore(keys.FLUSHER_MEMBERS, "-inf", now_ms)
        pipe.zcard(keys.FLUSHER_MEMBERS)
        self._members = max(int((await pipe.execute())[-1]), 1)
        return self._members

    async def _load_campaigns(self) -> None:
        version = cast(str | None, await self.redis.get(keys.CONFIG_VERSION))
        if version is not None and version == self._version and self._campaigns:
            return
        raw = await self.redis.hgetall(keys.CONFIG_HASH)
        fresh: dict[str, Campaign | None] = {}
        for cid, snapshot in raw.items():
            try:
                fresh[str(cid)] = decode_snapshot(snapshot)
            except (msgspec.ValidationError, msgspec.DecodeError):
                fresh[str(cid)] = None  # unreadable: its streams are flushed all the same
        for cid, c in fresh.items():
            old = self._campaigns.get(cid)
            if c is None or old is None or old.status != c.status \
                    or old.closes_at != c.closes_at:
                # reopened or changed: read its streams again
                self._finished -= {s for s in self._finished if s[0] == cid}
        self._campaigns, self._version = fresh, version

    def wanted(self) -> list[Stream]:
        """Every stream this flusher should be reading, if it can lease it."""
        return [(cid, shard) for cid in sorted(self._campaigns) for shard in range(self.shards)
                if (cid, shard) not in self._finished]

    async def _lease_calls(
        self, script: scripts.Script, streams: list[Stream], args: list[Any]
    ) -> list[int]:
        if not streams:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for s in streams:
            pipe.execute_command("EVALSHA", script.sha, 1, keys.flusher_lease(*s), *args)
        results = list(await pipe.execute(raise_on_error=False))
        for i, r in enumerate(results):
            if isinstance(r, NoScriptError):
                results[i] = await script(self.redis, [keys.flusher_lease(*streams[i])], args)
            elif isinstance(r, Exception):
                raise r
        return [int(r) for r in results]

    async def refresh(self, *, leases: bool = True) -> None:
        """Campaigns, shares and leases: which streams this flusher writes from now on."""
        await self._load_campaigns()
        self._refreshed_at = time.monotonic()
        if not leases:
            return
        self._leased_at = time.monotonic()
        members = await self.register()
        wanted = self.wanted()
        share = math.ceil(len(wanted) / members)
        wanted_set = set(wanted)
        keep = sorted(s for s in self._owned if s in wanted_set)
        surplus = keep[share:] if len(keep) > share else []
        keep = keep[:share] if surplus else keep
        ttl = [self.name, self.lease_ttl_ms]
        renewed = await self._lease_calls(scripts.load("flusher_lease"), keep, ttl)
        mine = {s for s, ok in zip(keep, renewed, strict=True) if ok}
        if surplus:  # a flusher joined: leave it its share
            await self._lease_calls(scripts.load("flusher_release"), surplus, [self.name])
        free = [s for s in wanted if s not in mine and s not in surplus]
        random.shuffle(free)  # flushers starting together split the shards between them
        gained: set[Stream] = set()
        while free and len(mine) + len(gained) < share:  # others hold some: try further
            need = share - len(mine) - len(gained)
            want, free = free[:need], free[need:]
            taken = await self._lease_calls(scripts.load("flusher_lease"), want, ttl)
            gained |= {s for s, ok in zip(want, taken, strict=True) if ok}
        owned = mine | gained
        await self._adopt(s for s in owned if s not in self._committed)
        if owned != self._owned:
            self._owned = owned
            for s in list(self._committed):
                if s not in self._owned:
                    self._forget(s)
            self._regroup = True

    async def _adopt(self, streams: Iterable[Stream]) -> None:
        """Newly leased streams start at their committed mark."""
        by_campaign: dict[str, list[int]] = defaultdict(list)
        for cid, shard in streams:
            by_campaign[cid].append(shard)
        if not by_campaign:
            return
        conn = await self._db()
        for cid, shards in by_campaign.items():
            found = await marks.load(conn, cid, self.shards)
            for shard in shards:
                s = (cid, shard)
                self._committed[s] = found.get(shard, marks.ZERO)
                self._pos[s] = marks.to_id(self._committed[s])
                self._untrimmed.add(s)  # a previous owner may have died before its trim

    def _forget(self, s: Stream) -> None:
        self._committed.pop(s, None)
        self._pos.pop(s, None)
        self._source.pop(s, None)
        self._untrimmed.discard(s)

    # -- reading ----------------------------------------------------------------------------

    async def _build_groups(self) -> None:
        await self._cancel_reads()
        streams = sorted(self._owned - self._finished)
        by: dict[Any, list[Stream]] = defaultdict(list)
        nodes: dict[Any, Any] = {}
        if isinstance(self.reader, RedisCluster):
            await self.reader.initialize()
            for s in streams:
                key = keys.ledger(*s)
                slot = self.reader.keyslot(key)
                by[slot].append(s)
                nodes[slot] = self.reader.get_node_from_key(key)
        elif streams:
            by[0] = streams
        self._groups = [_Group(g, [keys.ledger(*s) for s in g], nodes.get(slot))
                        for slot, g in sorted(by.items())]
        self._regroup = False

    async def _cancel_reads(self) -> None:
        tasks = [g.task for g in self._groups if g.task is not None]
        for g in self._groups:
            g.task = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _xread(self, g: _Group, block: bool) -> tuple[Batch, dict[Stream, str]]:
        """Read and encode (while PostgreSQL writes the previous batch): the rows, and each
        stream's last id read."""
        part = Batch()
        last: dict[Stream, str] = {}
        read = await self._xread_raw(g, block)
        for s, entries in read:
            part.add(s, marks.ZERO, entries)
            last[s] = entries[-1][0]
        g.full = any(len(entries) >= self.batch for _, entries in read)
        return part, last

    async def _xread_raw(self, g: _Group, block: bool) -> list[tuple[Stream, list[RawEntry]]]:
        args: list[Any] = ["XREAD", "COUNT", self.batch]
        if block:
            args += ["BLOCK", self.block_ms]
        args += ["STREAMS", *g.keys, *(self._pos[s] for s in g.streams)]
        if g.node is not None:
            result = await self.reader.execute_command(*args, target_nodes=g.node)
        else:
            result = await self.reader.execute_command(*args)
        if not result:
            return []
        by_key = dict(zip(g.keys, g.streams, strict=True))
        pairs = result.items() if isinstance(result, dict) else result
        return [(by_key[str(key)], list(entries)) for key, entries in pairs if entries]

    def _start_reads(self, *, burst: bool) -> None:
        for g in self._groups:
            if g.task is None:
                g.blocking = g.idle and not burst
                g.task = asyncio.ensure_future(self._xread(g, g.blocking))

    async def _collect(
        self, stop: asyncio.Event | None, timeout: float
    ) -> Batch:
        """Entries of every read that is done (waiting for the non-blocking ones; for a
        blocking one only when nothing else is under way)."""
        busy = [g.task for g in self._groups if g.task is not None and not g.blocking]
        if busy:
            await asyncio.wait(busy)
        elif any(g.task is not None for g in self._groups):
            waiting: list[asyncio.Future[Any]] = [g.task for g in self._groups
                                                  if g.task is not None]
            stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
            try:
                await asyncio.wait([*waiting, *([stopper] if stopper else [])],
                                   timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if stopper is not None:
                    stopper.cancel()
        out = Batch()
        for g in self._groups:
            if g.task is None or not g.task.done():
                continue
            task, g.task = g.task, None
            part, last = task.result()  # a failed read raises: the pass starts over
            g.idle = not part
            for st in part.moves:
                self._source[st] = g.node
            out.merge(part, self._committed)
            self._pos.update(last)
        return out

    # -- writing ----------------------------------------------------------------------------

    async def _replicas_hold(self, moves: dict[Stream, tuple[Mark, Mark]],
                             sources: dict[Stream, Any]) -> None:
        """Before the commit, on each server the batch was read from and on one connection
        to it: ``flusher_hold.lua`` per stream (lease renewed, last entry read still there:
        a write ordered after every entry of the batch), then ``WAIT``/``WAITAOF`` until
        ``replica_acks`` replicas hold it. Nothing goes through the cluster client's own
        routing: after a connection error it sent a keyless ``WAITAOF`` again to another
        master, whose replicas acknowledged nothing of this batch (issue 23 §5)."""
        by_node: dict[str, tuple[Any, list[Stream]]] = {}
        for s in sorted(moves):
            node = sources.get(s) if self._cluster else None
            if self._cluster and node is None:
                raise OSError(f"stream {s} has no server it was read from: not committed")
            by_node.setdefault(node.name if node is not None else "", (node, []))[1].append(s)
        await asyncio.gather(*(self._hold_on(node, mine, moves)
                               for node, mine in by_node.values()))

    async def _hold_on(self, node: Any, streams: list[Stream],
                       moves: dict[Stream, tuple[Mark, Mark]]) -> None:
        """``_replicas_hold`` on one server (``node`` ``None``: the single node)."""
        hold = scripts.load("flusher_hold")
        barrier = Barrier(replicas=self.replica_acks)
        commands: list[tuple[Any, ...]] = [
            ("EVAL", hold.source, 2, keys.flusher_lease(*s), keys.ledger(*s), self.name,
             self.lease_ttl_ms, marks.to_id(moves[s][1])) for s in streams]
        commands += barrier.commands(self.replica_timeout_ms / 1000)
        if node is not None:
            queued = [PipelineCommand(i, *c) for i, c in enumerate(commands)]
            await node.execute_pipeline(queued)  # one connection, no retry elsewhere
            replies = [c.result for c in queued]
        else:
            pipe = self.redis.pipeline(transaction=False)  # one connection
            for c in commands:
                pipe.execute_command(*c)
            replies = list(await pipe.execute(raise_on_error=False))
        for s, reply in zip(streams, replies, strict=False):
            if isinstance(reply, Exception):
                raise OSError(f"holding {s} failed: {reply!r}: not committed, retried")
            if int(reply) == 0:
                raise MarkMoved("a shard's lease went to another flusher")
            if int(reply) < 0:
                raise OSError(f"{node.name if node is not None else 'redis'} lacks the "
                              f"entries read from {s}: read from a stale master, read again")
        try:
            barrier.acknowledged(replies[len(streams):])
        except NotDurable as exc:
            raise OSError(f"too few replicas hold the entries ({exc}): not committed, "
                          "retried") from exc

    async def _write(self, b: Batch) -> None:
        conn = await self._db()
        hold = None
        if self.replica_acks > 0:
            moves = dict(b.moves)
            sources = {s: self._source.get(s) for s in moves}

            async def hold() -> None:
                await self._replicas_hold(moves, sources)

        await batches.commit(conn, b, hold, self._partitions, log=self.log_positions)
        for s, (_, new) in b.moves.items():
            self._committed[s] = new
            self._untrimmed.add(s)
        self.stats.flushed += b.rows
        self.stats.batches += 1

    async def trim(self) -> None:
        """Drop committed entries from the streams (``XTRIM MINID`` past each mark)."""
        todo = sorted(s for s in self._untrimmed if s in self._committed)
        if not todo:
            return
        pipe = self.redis.pipeline(transaction=False)
        for s in todo:
            pipe.execute_command("XTRIM", keys.ledger(*s), "MINID",
                                 marks.trim_below(self._committed[s]))
        results = await pipe.execute(raise_on_error=False)
        for s, r in zip(todo, results, strict=True):
            if not isinstance(r, Exception):
                self._untrimmed.discard(s)

    async def _reset(self) -> None:
        """After a failed pass: reads start again from the committed marks."""
        await self._cancel_reads()
        for s, m in self._committed.items():
            self._pos[s] = marks.to_id(m)
        for g in self._groups:
            g.idle = False

    async def _reload_marks(self) -> None:
        """Another writer (an invalidation, a flusher that still thought it owned a shard)
        moved marks: take PostgreSQL's values."""
        await self._reset()
        await self._adopt(list(self._owned))

    # -- drift repair ---------------------------------------------------------------------

    async def repair(self) -> list[Repaired]:
        """Drift repair of the shards this flusher holds (``ledger.repair``); between two
        passes, so nothing is committed to them meanwhile. A failure is logged, not raised:
        flushing goes on."""
        self._repaired_at = time.monotonic()
        try:
            return await self._repairer.run(await self._db(), self._campaigns,
                                            sorted(self._owned - self._finished))
        except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                TimeoutError, ValueError) as exc:  # ValueError: an entry it cannot read
            log.warning("drift repair pass failed (%r); next one in %.0f s", exc,
                        self.repair_interval)
            return []

    # -- the loop ---------------------------------------------------------------------------

    async def step(self, stop: asyncio.Event | None = None, *, burst: bool = False) -> int:
        """One pass: refresh if due, collect reads, write what came; returns the rows."""
        now = time.monotonic()
        if now - self._refreshed_at >= REFRESH_SECONDS:
            await self.refresh(leases=now - self._leased_at >= self.lease_ttl_ms / 3000)
        if 0 < self.repair_interval <= now - self._repaired_at and self._owned:
            await self.repair()
        if self._regroup:
            await self._build_groups()
        if not self._groups:
            if not burst:
                await _sleep(stop, REFRESH_SECONDS)
            return 0
        self._start_reads(burst=burst)
        wait = max(REFRESH_SECONDS - (time.monotonic() - self._refreshed_at), 0.05)
        found = await self._collect(stop, wait)
        self._behind = any(g.full for g in self._groups)
        if not found:
            self._drained_closed()
            if self._untrimmed:
                await self.trim()
            return 0
        if self._behind or burst:
            self._start_reads(burst=burst)  # the next read runs while PostgreSQL writes
        try:
            await self._write(found)
        except MarkMoved as exc:
            log.info("flusher %s: %s; reading on from PostgreSQL's marks", self.name, exc)
            await self._reload_marks()
            return 0
        except BaseException:
            await self._reset()
            raise
        await self.trim()
        return found.rows

    def _drained_closed(self) -> None:
        """Streams of closed campaigns that just read empty are done for good."""
        now = time.time()
        done = {s for g in self._groups if g.idle for s in g.streams
                if _closed(self._campaigns.get(s[0]), now)}
        if done - self._finished:
            self._finished |= done
            self._regroup = True

    async def drain(self) -> int:
        """Flush until every stream this flusher holds reads empty (``burst`` mode)."""
        total = 0
        await self.refresh()
        while True:
            n = await self.step(burst=True)
            total += n
            if n == 0 and self._groups_idle():
                return total

    def _groups_idle(self) -> bool:
        return all(g.idle and g.task is None for g in self._groups)

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        backoff = 0.1
        last_beat = -math.inf
        while not stop.is_set():
            try:
                started = time.monotonic()
                n = await self.step(stop, burst=burst)
                if self.log is not None and time.monotonic() - self._log_at >= LOG_TICK:
                    await self.log_tick()
                if time.monotonic() - last_beat > 5.0:
                    await self.heartbeat()
                    last_beat = time.monotonic()
                backoff = 0.1
                rest = self.pass_interval - (time.monotonic() - started)
                if n and not self._behind and not burst and rest > 0:  # let rows gather
                    await _sleep(stop, rest)
            except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    TimeoutError, ValueError) as exc:
                # ValueError: an entry no vote path wrote (entry.BadEntry); it is kept, not
                # skipped, until someone looks at it
                log.warning("flusher pass failed (%r); retrying in %.1fs", exc, backoff)
                await self._reset()
                self._regroup = True
                if self._conn is not None:
                    self._conn.terminate()
                    self._conn = None
                await _sleep(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if burst and n == 0 and self._groups_idle():
                return

    async def log_tick(self, now: Any = None) -> int:
        """Build the transparency log's trees and sign the heads that are due (after the
        commits, off the vote path); returns the heads signed."""
        self._log_at = time.monotonic()
        if self.log is None:
            return 0
        zones = {cid: c.timezone for cid, c in self._campaigns.items() if c is not None}
        return await transparency.tick(await self._db(), self.log, zones, now)

    # -- health -----------------------------------------------------------------------------

    async def measure(self) -> tuple[int, float]:
        """Backlog (entries after the marks) and lag (age of the oldest, seconds) of the
        streams this flusher holds and has not found idle."""
        streams = sorted(s for g in self._groups if not g.idle for s in g.streams)
        if not streams:
            return 0, 0.0
        found = await progress.measure(self.redis, {s: self._committed[s] for s in streams
                                                    if s in self._committed})
        return found.backlog, found.lag_seconds

    async def heartbeat(self) -> None:
        backlog, lag = await self.measure()
        self.stats.backlog, self.stats.lag_seconds = backlog, lag
        elapsed = max(time.monotonic() - self.stats.started, 1e-9)
        info = {"name": self.name, "at": time.time(), "backlog": backlog, "lag_seconds": lag,
                "flushed": self.stats.flushed, "rows_per_second": self.stats.flushed / elapsed,
                "streams": len(self._owned - self._finished)}
        await self.redis.set(keys.FLUSHER_HEARTBEAT + self.name, json.dumps(info),
                             ex=HEARTBEAT_TTL)
        log.info("flusher %s: streams=%d backlog=%d lag=%.2fs flushed=%d batches=%d rate=%.0f/s",
                 self.name, info["streams"], backlog, lag, self.stats.flushed,
                 self.stats.batches, info["rows_per_second"])


async def _sleep(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def healthy(redis: AnyRedis, max_lag: float = 60.0) -> tuple[bool, str]:
    """For ``flusher --check``: a live flusher reported recently, with bounded lag."""
    names = [k async for k in redis.scan_iter(match=keys.FLUSHER_HEARTBEAT + "*")]
    if not names:
        return False, "no flusher heartbeat in the last 15 s"
    beats = [json.loads(v) for v in await asyncio.gather(*(redis.get(n) for n in names)) if v]
    worst = max((b["lag_seconds"] for b in beats), default=0.0)
    ok = bool(beats) and worst <= max_lag
    return ok, f"{len(beats)} flusher(s), lag {worst:.2f}s"
