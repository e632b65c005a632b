"""The Redis side alone: how many votes a second the Lua scripts take, without HTTP.

Votes go through the service's own ``voting.cast`` — so the key shapes, arguments and
batching (``pipeline.Pipeline``) are exactly those of the HTTP path, whatever they become —
from many coroutines of one uvloop process. Two modes:

* ``cast_vote``: the campaign's IP caps set to 0, so that ``voting.cast`` runs only
  ``cast_vote.lua`` (one round trip);
* ``full``: the campaign's own IP caps, i.e. ``limit_and_cast.lua`` on a single node (the
  address's limits and the vote in one call), as every HTTP vote does.

The rate seen by one Python process is a floor (the client may be the bottleneck); Redis'
own CPU time per vote gives the ceiling of one Redis core: ``1 / cpu_seconds_per_vote``.
Each run reads every master's ``INFO`` before and after (``Meter``): process CPU
(``used_cpu_sys + used_cpu_user``, what a core must supply), the scripts' own time
(``INFO commandstats`` usec of EVAL/EVALSHA), the commands the scripts ran (``redis.call``
counts by name), and the bytes appended to the AOF (``aof_current_size``). These are robust
to a noisy machine; votes/s is not.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from voting_service.errors import VotingError
from voting_service.models import Campaign, Rules, VoteIn
from voting_service.redis.pipeline import Pipeline
from voting_service.redis.store import AnyRedis
from voting_service.vote import voting
from voting_service.vote.registry import LiveCampaign, Registry

_SCRIPT_CMDS = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall"})
_NOT_VOTES = frozenset({"info", "config|resetstat", "config", "ping", "cluster|slots",
                        "cluster|shards", "cluster|nodes", "cluster|info", "hello", "client",
                        "client|setinfo", "select", "script|load", "command", "command|docs"})


@dataclass
class Snapshot:
    """One instant of the masters' counters, summed over the masters."""

    cpu_s: float
    sys_s: float
    """The kernel's share of ``cpu_s`` (reads, writes and fsyncs)."""
    aof_bytes: int
    calls: Counter[str]
    usec: Counter[str]


async def snapshot(nodes: list[AnyRedis]) -> Snapshot:
    cpu, sys_s, aof = 0.0, 0.0, 0
    calls: Counter[str] = Counter()
    usec: Counter[str] = Counter()
    for node in nodes:
        fields = await node.info("everything")  # redis-py parses it into a dict
        cpu += float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])
        sys_s += float(fields["used_cpu_sys"])
        aof += int(fields.get("aof_current_size", 0) or 0)
        for name, stats in fields.items():
            if name.startswith("cmdstat_") and isinstance(stats, dict):
                calls[name[8:]] += int(stats["calls"])
                usec[name[8:]] += int(stats["usec"])
    return Snapshot(cpu, sys_s, aof, calls, usec)


def delta(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """What the masters spent between two snapshots: CPU, script time, commands, AOF."""
    calls = {k: after.calls[k] - before.calls.get(k, 0) for k in after.calls
             if k not in _NOT_VOTES and after.calls[k] - before.calls.get(k, 0) > 0}
    usec = {k: after.usec[k] - before.usec.get(k, 0) for k in calls}
    return {
        "cpu_s": after.cpu_s - before.cpu_s,
        "sys_s": after.sys_s - before.sys_s,
        "aof_bytes": after.aof_bytes - before.aof_bytes,
        "script_calls": sum(v for k, v in calls.items() if k in _SCRIPT_CMDS),
        "script_usec": sum(v for k, v in usec.items() if k in _SCRIPT_CMDS),
        "calls": calls,
        "usec": usec,
        "aof_rewritten": after.aof_bytes < before.aof_bytes,
    }


@dataclass
class CeilingResult:
    mode: str
    votes: int
    seconds: float
    outcomes: dict[str, int]
    redis_cpu_s: float
    concurrency: int
    meter: dict[str, Any] = field(default_factory=dict)
    """``delta`` over the run: the masters' CPU, script usec, commands and AOF bytes."""
    masters: int = 1

    @property
    def rate(self) -> float:
        return self.votes / self.seconds if self.seconds else 0.0

    @property
    def redis_core_ceiling(self) -> float:
        """Votes a second one fully busy Redis core would take at this cost per vote."""
        return self.votes / self.redis_cpu_s if self.redis_cpu_s > 0 else 0.0

    def per_vote(self) -> dict[str, Any]:
        """The meter's figures divided by the votes: µs, bytes, commands per vote."""
        n = max(self.votes, 1)
        m = self.meter
        if not m:
            return {}
        calls = m["calls"]
        return {
            "cpu_us": round(m["cpu_s"] * 1e6 / n, 1),
            "sys_us": round(m.get("sys_s", 0.0) * 1e6 / n, 1),
            "script_us": round(m["script_usec"] / n, 1),
            "aof_bytes": None if m["aof_rewritten"] else round(m["aof_bytes"] / n, 1),
            "scripts": round(m["script_calls"] / n, 2),
            "redis_calls": round(sum(v for k, v in calls.items()
                                     if k not in _SCRIPT_CMDS) / n, 2),
            "by_command": {k: round(v / n, 2) for k, v in sorted(calls.items())},
            "usec_by_command": {k: round(v / n, 2) for k, v in sorted(m["usec"].items())},
            "per_master_core": round(n / m["cpu_s"]) if m["cpu_s"] > 0 else 0,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "votes": self.votes, "seconds": round(self.seconds, 3),
                "rate": round(self.rate, 1), "outcomes": self.outcomes,
                "redis_cpu_s": round(self.redis_cpu_s, 3),
                "redis_core_ceiling": round(self.redis_core_ceiling, 1),
                "concurrency": self.concurrency, "masters": self.masters,
                "meter": self.meter, "per_vote": self.per_vote()}


def without_ip_caps(campaign: Campaign) -> Campaign:
    """The campaign with every per-address and per-network cap at 0 (= not checked)."""
    caps = {f: 0 for f in Rules.__struct_fields__ if f.startswith(("ip_per_", "net_per_"))}
    return msgspec.structs.replace(campaign,
                                   rules=msgspec.structs.replace(campaign.rules, **caps))


async def lua_ceiling(
    client: AnyRedis,
    url: str,
    campaign: Campaign,
    plan: list[tuple[str, str, str]],
    *,
    shards: int,
    concurrency: int,
    seconds: float,
    full: bool,
    masters: list[AnyRedis] | None = None,
    cluster: bool = False,
    mode: str = "",
) -> CeilingResult:
    """Cast the ``(voter_id, candidate_id, ip)`` votes of ``plan`` until it or time runs out;
    ``masters`` (default: ``client``) are the nodes whose counters are metered."""
    live = LiveCampaign(campaign if full else without_ip_caps(campaign))
    registry = Registry(client, shards)
    pipeline = Pipeline(url, timeout=5.0, cluster=cluster)
    if cluster:
        await pipeline.start()
    metered = masters or [client]
    counter = itertools.count()
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def voter_loop() -> None:
        while time.monotonic() < deadline:
            i = next(counter)
            if i >= len(plan):
                return
            voter, candidate, ip = plan[i]
            # with a vote id, as the pages send one (a retry is safe)
            ballot = voting.Ballot(
                voter, VoteIn(candidate_id=candidate, vote_id=os.urandom(16).hex()), ip)
            try:
                await voting.cast(pipeline, registry, live, ballot)
                outcomes["accepted"] += 1
            except VotingError as exc:
                outcomes[exc.code] += 1

    for node in metered:  # no AOF rewrite during the run: it would shrink the file
        await node.config_set("auto-aof-rewrite-percentage", 0)
    before = await snapshot(metered)
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds + 30):
            await asyncio.gather(*(voter_loop() for _ in range(concurrency)))
    finally:
        await pipeline.close()
    elapsed = time.monotonic() - started
    meter = delta(before, await snapshot(metered))
    return CeilingResult(mode or ("full" if full else "cast_vote"), sum(outcomes.values()),
                         elapsed, dict(outcomes), meter["cpu_s"], concurrency, meter,
                         len(metered))


def _campaign(data: dict[str, Any]) -> Campaign:
    """The bench's campaign as the measured checkout's own ``Campaign``: an older checkout
    (``--baseline``) drops the fields it does not know, as its workers would."""
    fields = {f.encode_name for f in msgspec.structs.fields(Campaign)}
    return msgspec.convert({k: v for k, v in data.items() if k in fields}, type=Campaign)


async def _run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    from redis.asyncio import Redis, RedisCluster

    campaign = _campaign(spec["campaign"])
    plan = [tuple(p) for p in spec["plan"]]
    client: AnyRedis = (RedisCluster.from_url(spec["url"]) if spec["cluster"]
                        else Redis.from_url(spec["url"]))
    masters: list[AnyRedis] = [Redis.from_url(u) for u in spec["masters"]]
    try:
        result = await lua_ceiling(
            client, spec["url"], campaign, plan,
            shards=spec["shards"], concurrency=spec["concurrency"], seconds=spec["seconds"],
            full=spec["full"], masters=masters, cluster=spec["cluster"], mode=spec["mode"])
    finally:
        await client.aclose()
        for m in masters:
            await m.aclose()
    return result.as_dict()


def main() -> None:
    """``python loadtests/redis_ceiling.py SPEC.json``: one metered run, its result as JSON on
    stdout. Run by path, it imports only ``voting_service``, so the bench can run it against
    another checkout of the package (``PYTHONPATH=<checkout>``): the before/after rows."""
    import json
    import sys

    import uvloop

    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(_run_spec(spec))))


if __name__ == "__main__":
    main()
