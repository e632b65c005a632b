"""Is an acknowledged vote safe in this Redis? (DESIGN §3.5)

Safe: AOF on with ``appendfsync always`` on every primary. ``everysec`` is not enough by
itself; a worker may accept it only with ``WAITAOF`` (single node) or by explicit choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from redis.exceptions import RedisError

from ..vote.pipeline import Barrier
from ..vote.store import AnyRedis, RedisCluster


@dataclass(frozen=True)
class Durability:
    safe: bool
    waitaof: bool
    """Append ``WAITAOF 1 0`` to each vote batch (``everysec`` on a single node)."""
    reason: str
    aof: bool = False
    """AOF is on (``WAITAOF`` may ask for the local fsync)."""
    has_waitaof: bool = True
    """The server knows ``WAITAOF`` (Redis ≥ 7.2, Valkey); else replicas are counted by ``WAIT``."""

    def barrier(self, replica_acks: int = 0) -> Barrier | None:
        """What each node's vote batch ends with: the local fsync (``everysec``) and/or
        ``replica_acks`` replicas (``VOTING_REDIS_REPLICA_ACKS``); ``None`` = nothing."""
        if replica_acks:
            if not self.has_waitaof:
                return Barrier(0, replica_acks, use_wait=True)
            return Barrier(1 if self.aof else 0, replica_acks)
        return Barrier(1, 0) if self.waitaof else None


async def _config(client: AnyRedis) -> list[dict[str, str]]:
    """``appendonly``/``appendfsync`` of every primary."""
    if isinstance(client, RedisCluster):
        raw = cast(dict[str, Any], await client.config_get(
            "append*", target_nodes=RedisCluster.PRIMARIES))
        # one merged dict per node, keyed by node name
        if raw and all(isinstance(v, dict) for v in raw.values()):
            return [{str(k): str(v) for k, v in node.items()} for node in raw.values()]
        return [{str(k): str(v) for k, v in raw.items()}]
    single = await client.config_get("append*")
    return [{str(k): str(v) for k, v in single.items()}]


async def check(client: AnyRedis) -> Durability:
    try:
        configs = await _config(client)
    except RedisError as exc:
        return Durability(False, False, f"cannot read the persistence settings: {exc}")
    has_waitaof = await _knows_waitaof(client)
    if any(c.get("appendonly") != "yes" for c in configs):
        return Durability(False, False, "AOF is off (appendonly no): a crash loses votes",
                          has_waitaof=has_waitaof)
    fsyncs = {c.get("appendfsync") for c in configs}
    if fsyncs == {"always"}:
        return Durability(True, False, "AOF with appendfsync always", True, has_waitaof)
    if fsyncs == {"everysec"} and not isinstance(client, RedisCluster):
        if not has_waitaof:
            return Durability(False, False, "appendfsync everysec and no WAITAOF", True, False)
        return Durability(True, True, "appendfsync everysec with WAITAOF per batch", True)
    return Durability(False, False, f"appendfsync {sorted(map(str, fsyncs))} can lose votes",
                      True, has_waitaof)


async def _knows_waitaof(client: AnyRedis) -> bool:
    try:
        if isinstance(client, RedisCluster):
            await client.execute_command(
                "WAITAOF", 0, 0, 0, target_nodes=RedisCluster.PRIMARIES)
        else:
            await client.execute_command("WAITAOF", 0, 0, 0)  # type: ignore[no-untyped-call]
    except RedisError:
        return False
    return True
