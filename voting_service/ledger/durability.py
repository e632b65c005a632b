"""Is an acknowledged vote safe in this Redis? (DESIGN §3.5)

Safe: AOF on with ``appendfsync always`` on every primary. ``everysec`` is not enough by
itself; a worker may accept it only with ``WAITAOF`` (single node) or by explicit choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from redis.exceptions import RedisError

from ..vote.store import AnyRedis, RedisCluster


@dataclass(frozen=True)
class Durability:
    safe: bool
    waitaof: bool
    """Append ``WAITAOF 1 0`` to each vote batch (``everysec`` on a single node)."""
    reason: str


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
    if any(c.get("appendonly") != "yes" for c in configs):
        return Durability(False, False, "AOF is off (appendonly no): a crash loses votes")
    fsyncs = {c.get("appendfsync") for c in configs}
    if fsyncs == {"always"}:
        return Durability(True, False, "AOF with appendfsync always")
    if fsyncs == {"everysec"} and not isinstance(client, RedisCluster):
        try:
            await client.execute_command("WAITAOF", 0, 0, 0)  # type: ignore[no-untyped-call]
        except RedisError:
            return Durability(False, False, "appendfsync everysec and no WAITAOF")
        return Durability(True, True, "appendfsync everysec with WAITAOF per batch")
    return Durability(False, False, f"appendfsync {sorted(map(str, fsyncs))} can lose votes")
