"""The ops console's time series: vote outcomes per second, across all workers.

Each worker counts the outcomes it hears from ``svc.outcomes`` in memory (one dict
increment on the vote path) and ships them once a second in one pipeline of ``HINCRBY``
into per-minute hashes (``keys.timeline_minute``) that expire after about an hour. The
console reads those hashes back. Counts a worker has not shipped yet when it dies (at most
a second's) are lost: this is a display, the ledger is the record.

Once a minute a worker also keeps the tallies (``keys.timeline_snapshot``; the first one to
write it wins), so that "votes in the last 10 minutes" per candidate is a subtraction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import msgspec
from redis.exceptions import RedisError

from ..redis import keys
from ..redis.store import AnyRedis
from .outcomes import ACCEPTED, Outcome

log = logging.getLogger(__name__)

KEEP_SECONDS = 3900
"""Redis keeps an hour (and a bit) of the timeline: the console shows 30 minutes."""
WINDOW = 1800
OTHER_CHANNEL = "?"
"""A ``channel`` the campaign does not list (clients may send anything there)."""
DIRECT = "direct"
UNKNOWN_MODE = "unknown"

Counts = dict[tuple[int, str, str, str, str], int]
"""(unix second, campaign, outcome, identity mode, channel) → votes."""
Seconds = dict[int, dict[str, int]]
"""unix second → field (``o|accepted``, ``c|jhnews``, ``i|sms``, …) → count."""


def fields_of(outcome: str, mode: str, channel: str) -> list[str]:
    """The timeline fields one outcome adds to: its outcome, and for an accepted vote its
    channel and identity mode."""
    if outcome != ACCEPTED:
        return [f"o|{outcome}"]
    return [f"o|{outcome}", f"c|{channel or DIRECT}", f"i|{mode or UNKNOWN_MODE}"]


def group(
    counts: Counts, known: Callable[[str, str], bool]
) -> dict[tuple[str, int], dict[str, int]]:
    """Counts by (campaign, minute) → hash field → increment, ready for ``HINCRBY``."""
    out: dict[tuple[str, int], dict[str, int]] = {}
    for (second, cid, outcome, mode, channel), n in counts.items():
        if channel and not known(cid, channel):
            channel = OTHER_CHANNEL
        fields = out.setdefault((cid, second // 60), {})
        for name in fields_of(outcome, mode, channel):
            key = f"{second % 60}|{name}"
            fields[key] = fields.get(key, 0) + n
    return out


def parse_minute(minute: int, raw: Mapping[str, str]) -> Seconds:
    seconds: Seconds = {}
    for field, value in raw.items():
        offset, sep, name = field.partition("|")
        if not sep or not offset.isdigit():
            continue
        second = minute * 60 + int(offset)
        seconds.setdefault(second, {})[name] = int(value)
    return seconds


@dataclass(frozen=True)
class Snapshot:
    minute: int
    tallies: dict[str, int]


class Timeline:
    """Observer of ``svc.outcomes`` (``observe``) and the loop that ships its counts."""

    def __init__(self, redis: AnyRedis, known_channel: Callable[[str, str], bool]) -> None:
        self.redis = redis
        self._known = known_channel
        self._counts: Counts = {}
        self._snapshotted: dict[str, int] = {}

    def observe(self, o: Outcome) -> None:
        if not o.campaign_id:
            return
        key = (int(time.time()), o.campaign_id, o.outcome, o.mode, o.channel)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    async def ship(self) -> int:
        """Send what was counted since the last call; on a Redis error keep it for the next
        call (an hour at most). Returns the number of hash fields written."""
        counts, self._counts = self._counts, {}
        if not counts:
            return 0
        grouped = group(counts, self._known)
        pipe = self.redis.pipeline(transaction=False)
        written = 0
        for (cid, minute), fields in grouped.items():
            key = keys.timeline_minute(cid, minute)
            for name, n in fields.items():
                pipe.hincrby(key, name, n)
                written += 1
            pipe.expire(key, KEEP_SECONDS)
        try:
            await pipe.execute()
        except (RedisError, OSError):
            oldest = int(time.time()) - KEEP_SECONDS
            for k, n in counts.items():
                if k[0] >= oldest:
                    self._counts[k] = self._counts.get(k, 0) + n
            raise
        return written

    async def snapshot(self, campaign_id: str, tallies: Mapping[str, int],
                       now: float | None = None) -> bool:
        """Keep the tallies of this minute once (the first worker wins); cheap to call often."""
        minute = int(time.time() if now is None else now) // 60
        written = await self.redis.set(
            keys.timeline_snapshot(campaign_id, minute), msgspec.json.encode(dict(tallies)),
            nx=True, ex=KEEP_SECONDS,
        )
        self._snapshotted[campaign_id] = minute
        return bool(written)

    def wants_snapshot(self, campaign_id: str, now: float | None = None) -> bool:
        return self._snapshotted.get(campaign_id) != int(time.time() if now is None else now) // 60

    async def run(self, campaigns: Callable[[], Iterable[str]],
                  tallies: Callable[[str], Awaitable[Mapping[str, int]]],
                  every: float = 1.0) -> None:
        """Ship every ``every`` seconds, and keep each minute's tallies of ``campaigns()``."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.ship()
                for cid in campaigns():
                    if self.wants_snapshot(cid):
                        await self.snapshot(cid, await tallies(cid))
            except Exception as exc:  # a display: keep trying, never take the worker down
                log.debug("ops timeline not shipped: %r", exc)


async def read_seconds(redis: AnyRedis, campaign_id: str, since: int, until: int) -> Seconds:
    """Every counted second in ``(since, until]`` (at most the last hour)."""
    since = max(since, until - KEEP_SECONDS)
    minutes = range((since + 1) // 60, until // 60 + 1)
    pipe = redis.pipeline(transaction=False)
    for minute in minutes:
        pipe.hgetall(keys.timeline_minute(campaign_id, minute))
    found: Seconds = {}
    for minute, raw in zip(minutes, await pipe.execute(), strict=True):
        for second, fields in parse_minute(minute, raw).items():
            if since < second <= until:
                found[second] = fields
    return found


async def oldest_snapshot(redis: AnyRedis, campaign_id: str, minutes: int,
                          now: float | None = None) -> Snapshot | None:
    """The tallies from ``minutes`` ago, or the oldest kept since then (a fresh start)."""
    current = int(time.time() if now is None else now) // 60
    wanted = range(current - minutes, current + 1)
    pipe = redis.pipeline(transaction=False)
    for minute in wanted:
        pipe.get(keys.timeline_snapshot(campaign_id, minute))
    for minute, raw in zip(wanted, await pipe.execute(), strict=True):
        if raw:
            try:
                decoded = msgspec.json.decode(raw, type=dict[str, int])
            except msgspec.DecodeError:
                continue
            return Snapshot(minute, decoded)
    return None


def since_snapshot(now: Mapping[str, int], then: Snapshot | None) -> dict[str, int]:
    """Votes per candidate since the snapshot (never negative: invalidations take votes off)."""
    if then is None:
        return {}
    return {cand: max(0, n - then.tallies.get(cand, 0)) for cand, n in now.items()}


SETTLE = 2
"""Seconds before a second's counts are complete: every worker ships once a second."""


def rate(seconds: Seconds, now: int, span: int = 10) -> float:
    """Accepted votes per second over the ``span`` complete seconds before ``now``."""
    last = now - SETTLE
    accepted = sum(fields.get(f"o|{ACCEPTED}", 0) for second, fields in seconds.items()
                   if last - span < second <= last)
    return round(accepted / span, 1)
