"""Redis operations of the hot path and the campaign snapshot.

Votes arriving in the same event-loop turn are sent as one pipeline (one round trip per
node); each script call still runs atomically on its own. A batch that does not answer
within the timeout, or whose durability barrier (``barrier.py``: the master's fsync, N
replicas) does not hold in time, fails its votes with 503 — the client retries with the same
``vote_id`` and gets the first answer if the vote did land.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from ..errors import Unavailable
from ..settings import Settings
from . import keys, scripts
from .barrier import Barrier, hold_on_masters
from .scripts import AnyRedis, Script

log = logging.getLogger(__name__)

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # redis[hiredis] brings it; without it redis-py packs as before
    _hiredis_pack = None
_PACKABLE = frozenset({str, bytes, int, float})


class _HiredisPacking(AbstractConnection):
    """Builds RESP commands with hiredis' C packer instead of redis-py's Python one.

    redis-py's asyncio connection packs in Python: ~50 µs for one ``cast_vote`` call, a
    tenth of a vote's CPU. hiredis gives the same bytes for str/bytes/int/float arguments
    in UTF-8; anything else (a first argument with a space such as ``CONFIG GET``, bool,
    memoryview, another encoding) goes to redis-py's packer, errors included.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if (
            _hiredis_pack is not None
            and args
            and isinstance(args[0], str)
            and " " not in args[0]
            and all(type(a) in _PACKABLE for a in args)
            and self.encoder.encoding == "utf-8"
            and self.encoder.encoding_errors == "strict"
        ):
            try:
                return [_hiredis_pack(args)]
            except Exception:  # e.g. a lone surrogate: redis-py raises its own error below
                pass
        return super().pack_command(*args)


def _pack_with_hiredis(client: Redis) -> None:
    """Give the client's pool connections hiredis packing (single node; a cluster client
    creates its node connections itself and keeps redis-py's packer)."""
    pool = client.connection_pool
    base = pool.connection_class
    if _hiredis_pack is not None and not issubclass(base, _HiredisPacking):
        pool.connection_class = type(f"HiredisPacking{base.__name__}", (_HiredisPacking, base), {})


def connect(settings: Settings, url: str | None = None, **kwargs: Any) -> AnyRedis:
    url = url or settings.redis_url
    if not url:
        raise RuntimeError("REDIS_URL is not set")
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": max(settings.redis_timeout * 2, 1.0),
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 5,
        # one immediate retry on a dead pooled connection (Redis restarted); no backoff
        # sleeps, which would break the 1 s answer of the vote path
        "retry": Retry(NoBackoff(), 1),
    }
    options.update(kwargs)
    if settings.redis_cluster:
        return RedisCluster.from_url(url, **options)
    # blocking: past 64 connections a command waits (within the deadline) for a free one
    # instead of failing at once with MaxConnectionsError, a 503 for a mere burst
    pool = BlockingConnectionPool.from_url(
        url, max_connections=64, timeout=settings.redis_timeout, **options
    )
    client = Redis.from_pool(pool)
    _pack_with_hiredis(client)
    return client


MAX_BATCHES_IN_FLIGHT = 32
"""Pipelines one worker has waiting on Redis at once. Each holds a connection (per node), and
running out of them is an error, not a wait, in redis-py's cluster client: while Redis is slow
for a moment, later votes wait here for a slot (within their deadline) instead."""


@dataclass
class _Call:
    script: Script
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]


class Batcher:
    """Coalesces concurrent script calls into pipelines; see the module docstring."""

    def __init__(self, client: AnyRedis, timeout: float, *, barrier: Barrier | None = None
                 ) -> None:
        self._client = client
        self._timeout = timeout
        self._barrier = barrier if barrier is not None and barrier.needed else None
        self._pending: list[_Call] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)

    @property
    def client(self) -> AnyRedis:
        return self._client

    @property
    def timeout(self) -> float:
        return self._timeout

    def call(self, script: Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(_Call(script, keys, args, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Call]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline), self._slots:
                results = await self._execute(batch, by_sha=True, deadline=deadline)
                missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
                if missing:
                    retried = await self._execute([batch[i] for i in missing], by_sha=False,
                                                  deadline=deadline)
                    for i, result in zip(missing, retried, strict=True):
                        results[i] = result
                if self._barrier is not None and isinstance(self._client, RedisCluster):
                    await hold_on_masters(self._client, (c.keys[0] for c in batch if c.keys),
                                          self._barrier, self._wait_budget(deadline))
        except Exception as exc:  # every waiting vote must get an answer, never hang
            log.warning("redis batch of %d failed: %r", len(batch), exc)
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(Unavailable())
            return
        for call, result in zip(batch, results, strict=True):
            if call.future.done():
                continue
            if isinstance(result, Exception):
                log.warning("redis script %s failed: %r", call.script.name, result)
                call.future.set_exception(Unavailable())
            else:
                call.future.set_result(result)

    def _wait_budget(self, deadline: float) -> float:
        """Seconds the barrier may wait: what is left of the deadline, less a margin for its
        reply to come back before the deadline cuts the connection."""
        return max(0.001, deadline - asyncio.get_running_loop().time() - 0.02)

    async def _execute(self, batch: list[_Call], *, by_sha: bool, deadline: float) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for call in batch:
            # execute_command: redis-py refuses pipe.evalsha()/eval() on a cluster pipeline,
            # but routes the raw command by its first key all the same
            if by_sha:
                pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys,
                                     *call.args)
            else:
                pipe.execute_command("EVAL", call.script.source, len(call.keys), *call.keys,
                                     *call.args)
        # single node: the barrier ends the batch's own pipeline (one connection); a cluster
        # gets it per master after the pipeline (_run)
        inline = self._barrier if not isinstance(self._client, RedisCluster) else None
        barrier = inline.commands(self._wait_budget(deadline)) if inline is not None else []
        for command in barrier:
            pipe.execute_command(*command)
        results = list(await pipe.execute(raise_on_error=False))
        if inline is not None:
            inline.acknowledged(results[len(batch):])
            del results[len(batch):]
        return results

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def shard_tallies(client: AnyRedis, campaign_id: str, shards: int) -> list[dict[str, int]]:
    """Each shard group's tally hash, in shard order."""
    pipe = client.pipeline(transaction=False)
    for shard in range(shards):
        pipe.hgetall(keys.tally(campaign_id, shard))
    raw = await pipe.execute()
    return [{cand: int(n) for cand, n in h.items()} for h in raw]


def sum_tallies(per_shard: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for shard in per_shard:
        for cand, n in shard.items():
            total[cand] = total.get(cand, 0) + n
    return total


async def load_snapshots(client: AnyRedis) -> tuple[int, dict[str, str]]:
    version = int(await client.get(keys.CONFIG_VERSION) or 0)
    raw = await client.hgetall(keys.CONFIG_HASH)
    return version, {str(k): str(v) for k, v in raw.items()}


async def config_version(client: AnyRedis) -> int:
    return int(await client.get(keys.CONFIG_VERSION) or 0)


async def publish_snapshot(client: AnyRedis, campaign_id: str, snapshot: str) -> None:
    await client.hset(keys.CONFIG_HASH, campaign_id, snapshot)
    await client.incr(keys.CONFIG_VERSION)


async def run_script(client: AnyRedis, script: Script, keys_: list[str], args: list[Any]) -> Any:
    """One script call outside the hot path (no batching)."""
    try:
        return await script(client, keys_, args)
    except (RedisError, OSError) as exc:
        raise Unavailable() from exc


__all__ = [
    "AnyRedis",
    "Batcher",
    "Redis",
    "RedisCluster",
    "connect",
    "load_snapshots",
    "publish_snapshot",
    "run_script",
    "scripts",
    "shard_tallies",
    "sum_tallies",
]
