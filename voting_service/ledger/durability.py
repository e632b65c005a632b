"""Is an acknowledged vote safe in this Redis? (DESIGN §3.5, issue 12 §1)

Safe on one machine: AOF on with ``appendfsync always`` on every primary, or ``everysec``
with ``WAITAOF`` per batch. Safe against the loss of a machine: besides, every primary has
``VOTING_REDIS_REPLICA_ACKS`` replicas that acknowledge a write in time — checked by a real
probe (a small write and the vote path's own barrier on each primary), so a replica without
AOF or one far behind counts as missing, exactly as it would for a vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from redis.exceptions import RedisError

from ..redis import keys
from ..redis.barrier import Barrier, NotDurable, hold_on_node
from ..redis.store import AnyRedis, RedisCluster

PROBE_TIMEOUT = 0.5
"""Seconds a primary's replicas get to acknowledge the probe write."""


SLOW_EVERYSEC = (
    "appendfsync everysec with WAITAOF is safe but slow: each batch of votes waits for the "
    "next background fsync, and the vote path measured 1,911 votes/s against 10,454 with "
    "appendfsync always on the same machine (make bench, table B); set appendfsync always "
    "(deploy/valkey.conf), it is the faster of the two safe settings"
)
"""Logged at start-up by ``slow_reason``: the setting that turns a fast vote path slow."""


def slow_reason(found: Durability) -> str | None:
    """Why a safe setting makes votes slow (``everysec`` + ``WAITAOF``), else ``None``.
    Warned about, not refused: it loses no vote, and a deployment may want it for a while
    (e.g. during a disk migration)."""
    return SLOW_EVERYSEC if found.safe and found.waitaof else None


@dataclass(frozen=True)
class Durability:
    safe: bool
    waitaof: bool
    """The master's own fsync needs ``WAITAOF 1 …`` per batch (``everysec``)."""
    reason: str
    barrier: Barrier = field(default_factory=Barrier)
    """What each vote batch ends with (``pipeline.Pipeline(barrier=…)``)."""


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


async def _has_waitaof(client: AnyRedis) -> bool:
    try:
        if isinstance(client, RedisCluster):
            await client.execute_command(
                "WAITAOF", 0, 0, 0, target_nodes=RedisCluster.PRIMARIES)
        else:
            await client.execute_command("WAITAOF", 0, 0, 0)  # type: ignore[no-untyped-call]
    except RedisError:
        return False
    return True


def _probe_keys(client: RedisCluster) -> dict[str, str]:
    """Primary name → a barrier probe key in one of its slots."""
    wanted = {node.name for node in client.get_primaries()}
    found: dict[str, str] = {}
    for n in range(4096):
        if len(found) == len(wanted):
            break
        key = keys.barrier_probe(n)
        node = client.get_node_from_key(key)
        if node is not None and node.name in wanted:
            found.setdefault(node.name, key)
    return found


async def probe_replicas(client: AnyRedis, barrier: Barrier,
                         timeout: float = PROBE_TIMEOUT) -> str | None:
    """``None`` when every primary meets ``barrier`` now, else what falls short."""
    short: list[str] = []
    if isinstance(client, RedisCluster):
        found = _probe_keys(client)
        missing = {n.name for n in client.get_primaries()} - set(found)
        short += [f"{name}: no probe key" for name in sorted(missing)]
        for name, key in sorted(found.items()):
            node = client.get_node(node_name=name)
            try:
                if node is None:
                    raise NotDurable("left the cluster")
                await hold_on_node(node, key, barrier, timeout)
            except (NotDurable, RedisError, OSError) as exc:
                short.append(f"{name}: {exc}")
    else:
        pipe = client.pipeline(transaction=False)
        pipe.set(keys.barrier_probe(0), "1", px=60_000)
        for command in barrier.commands(timeout):
            pipe.execute_command(*command)
        try:
            barrier.acknowledged((await pipe.execute(raise_on_error=False))[1:])
        except (NotDurable, RedisError, OSError) as exc:
            short.append(str(exc))
    return "; ".join(short) if short else None


async def check(client: AnyRedis, replica_acks: int = 0) -> Durability:
    try:
        configs = await _config(client)
        waitaof = await _has_waitaof(client)
    except RedisError as exc:
        return Durability(False, False, f"cannot read the persistence settings: {exc}")
    aof = all(c.get("appendonly") == "yes" for c in configs)
    fsyncs = {c.get("appendfsync") for c in configs}
    local = aof and fsyncs == {"everysec"} and waitaof
    barrier = Barrier(local=local, replicas=replica_acks, waitaof=waitaof)
    if not aof:
        found = Durability(False, False, "AOF is off (appendonly no): a crash loses votes",
                           Barrier(replicas=replica_acks, waitaof=waitaof))
    elif fsyncs == {"always"}:
        found = Durability(True, False, "AOF with appendfsync always", barrier)
    elif local:
        found = Durability(True, True, "appendfsync everysec with WAITAOF per batch", barrier)
    elif fsyncs == {"everysec"}:
        found = Durability(False, False, "appendfsync everysec and no WAITAOF", barrier)
    else:
        found = Durability(False, False,
                           f"appendfsync {sorted(map(str, fsyncs))} can lose votes", barrier)
    if replica_acks <= 0:
        return found
    short = await probe_replicas(client, barrier)
    if short is None:
        how = "WAITAOF" if waitaof else "WAIT (memory, not disk)"
        return Durability(found.safe, found.waitaof,
                          f"{found.reason}; {replica_acks} replica ack(s) per batch by {how}",
                          barrier)
    return Durability(False, found.waitaof,
                      f"VOTING_REDIS_REPLICA_ACKS={replica_acks} cannot be met ({short})",
                      barrier)
