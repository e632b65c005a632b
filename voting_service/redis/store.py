"""The redis-py client of everything but the vote path, and the tally and snapshot reads.

The vote path's script calls go through ``pipeline.Pipeline``: one write per loop turn per
node, the durability barrier (``redis/barrier.py``: the master's fsync, N replicas) ending each
node's batch, one deadline sweep; a batch whose barrier does not hold in time fails its
votes with 503 — the client retries with the same ``vote_id`` and gets the first answer if
the vote did land.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..errors import Unavailable
from ..settings import Settings
from . import keys, scripts
from .barrier import Barrier
from .pipeline import Pipeline
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

    redis-py's asyncio connection packs in Python, a tenth of a vote's CPU for one
    ``cast_vote`` call (``docs/capacity.md``). hiredis gives the same bytes for
    str/bytes/int/float arguments in UTF-8; anything else (a first argument with a space such
    as ``CONFIG GET``, bool, memoryview, another encoding) goes to redis-py's packer, errors
    included.
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


def pipeline(settings: Settings, barrier: Barrier | None = None) -> Pipeline:
    """The vote path's client of ``REDIS_URL`` (see ``pipeline``)."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set")
    return Pipeline(settings.redis_url, cluster=settings.redis_cluster,
                    timeout=settings.redis_timeout, barrier=barrier)


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


async def write_snapshot(client: AnyRedis, campaign_id: str, snapshot: str) -> None:
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
    "Pipeline",
    "Redis",
    "RedisCluster",
    "connect",
    "load_snapshots",
    "pipeline",
    "run_script",
    "scripts",
    "shard_tallies",
    "sum_tallies",
    "write_snapshot",
]
