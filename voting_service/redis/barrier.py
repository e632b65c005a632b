"""The barrier that ends a vote batch: a vote is answered only once it is on disk on its
master and held by ``VOTING_REDIS_REPLICA_ACKS`` replicas (issue 12 §1).

``WAITAOF <local> <replicas> <ms>`` (``WAIT <replicas> <ms>`` on servers without it) waits
for the writes sent before it *on the same connection*. The vote path's ``pipeline`` has one
connection per node, so the barrier closes each node's batch there: one barrier per batch
per node, a group commit. The start-up probe (``hold_on_node``) makes a small write of its
own first on one connection of a redis-py cluster node, then the barrier.

With replicas, ``WAIT`` comes first: a replica answers the master's ``GETACK`` before its own
fsync of the same writes, so a lone ``WAITAOF`` would hear of that fsync only from the
replica's next periodic ack, about a second later. The ``WAITAOF`` after ``WAIT`` sends a
fresh ``GETACK`` once the replica has the writes, and its answer comes after the fsync:
two replica round trips instead of a wait for the replica's next periodic ack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import ClusterNode, PipelineCommand

from . import keys

BARRIER_TTL_MS = 60_000
"""The barrier key only has to exist for a moment; it never piles up."""


class NotDurable(Exception):
    """The master's fsync or enough replica acknowledgements did not come in time."""


@dataclass(frozen=True)
class Barrier:
    local: bool = False
    """Wait for the master's own fsync (``appendfsync everysec``)."""
    replicas: int = 0
    """Replicas that must acknowledge (``WAITAOF``: fsynced to their AOF)."""
    waitaof: bool = True
    """``False``: the server predates ``WAITAOF``; ``WAIT`` counts replicas' memory only."""

    @property
    def needed(self) -> bool:
        return self.local or self.replicas > 0

    def commands(self, timeout: float) -> list[tuple[Any, ...]]:
        """The barrier, waiting at most ``timeout`` seconds in all (never 0 ms: that blocks)."""
        if not self.waitaof:
            return [("WAIT", self.replicas, max(1, int(timeout * 1000)))]
        if self.replicas == 0:
            return [("WAITAOF", int(self.local), 0, max(1, int(timeout * 1000)))]
        half = max(1, int(timeout * 500))
        return [("WAIT", self.replicas, half), ("WAITAOF", int(self.local), self.replicas, half)]

    def acknowledged(self, replies: list[Any]) -> int:
        """Replicas that acknowledged (the replies of ``commands``, in order); raises when
        the barrier did not hold."""
        reply = replies[-1]
        if isinstance(reply, Exception):
            raise NotDurable(f"barrier failed: {reply!r}") from reply
        if self.waitaof:
            local, replicas = int(reply[0]), int(reply[1])
        else:
            local, replicas = 1, int(reply)
        if (self.local and local < 1) or replicas < self.replicas:
            raise NotDurable(
                f"fsynced locally: {local}, replicas: {replicas} of {self.replicas}")
        return replicas


async def hold_on_node(node: ClusterNode, key: str, barrier: Barrier, timeout: float) -> int:
    """Barrier write + barrier on one connection of ``node``, the master holding ``key``."""
    commands = [PipelineCommand(0, "SET", keys.barrier(key), "1", "PX", BARRIER_TTL_MS)]
    commands += [PipelineCommand(i, *args)
                 for i, args in enumerate(barrier.commands(timeout), start=1)]
    await node.execute_pipeline(commands)
    if isinstance(commands[0].result, Exception):
        raise NotDurable(f"barrier write failed: {commands[0].result!r}")
    return barrier.acknowledged([c.result for c in commands[1:]])
