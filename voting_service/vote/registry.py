"""What every worker keeps in memory: campaign snapshots and tally caches.

Snapshots live in Redis (so votes need no PostgreSQL); workers poll a version counter every
second and reload on change, so a pause reaches every worker within about a second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from redis.exceptions import RedisError

from ..errors import CampaignNotFound, Unavailable
from ..models import Campaign, Candidate, Channel, decode_snapshot
from ..redis import store
from ..redis.store import AnyRedis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Day:
    date: str
    """Local calendar day, ``YYYY-MM-DD``."""
    expire_at: int
    """Unix seconds a day after the local day ends: when daily keys may go."""
    ends_at: float
    """Unix seconds of the next local midnight."""
    before: str
    """The local calendar day before, ``YYYY-MM-DD``: a vote's idempotency record lives in
    its day's quota hash, so a retry after midnight looks there too (``cast_vote.lua``)."""


def local_day(now: float, zone: ZoneInfo) -> Day:
    """The calendar day of ``zone`` that ``now`` falls in."""
    date = dt.datetime.fromtimestamp(now, zone).date()
    midnight = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), zone).timestamp()
    return Day(date.isoformat(), int(midnight) + 86400, midnight,
               (date - dt.timedelta(days=1)).isoformat())


class LiveCampaign:
    def __init__(self, campaign: Campaign) -> None:
        self.c = campaign
        self.id = campaign.id
        self.zone = ZoneInfo(campaign.timezone)
        self.candidates: dict[str, Candidate] = {x.id: x for x in campaign.candidates}
        self.channels: dict[str, Channel] = {x.id: x for x in campaign.channels}
        self.opens = campaign.opens_at.timestamp()
        self.closes = campaign.closes_at.timestamp()
        self.opens_local = self.local(campaign.opens_at)
        self.closes_local = self.local(campaign.closes_at)
        self._day: Day | None = None

    def local(self, when: dt.datetime) -> dt.datetime:
        """``when`` in the campaign's zone; at the calendar's ends (a stored 9999-12-31) as
        stored, since the zone's offset would carry it out of ``datetime``'s range."""
        try:
            return when.astimezone(self.zone)
        except (OverflowError, ValueError):
            return when

    def is_open(self, now: float) -> bool:
        return self.c.status == "open" and self.opens <= now < self.closes

    def state(self, now: float) -> str:
        """``open`` only while running inside the window; else why not."""
        if self.c.status != "open":
            return self.c.status
        if now < self.opens:
            return "upcoming"
        if now >= self.closes:
            return "closed"
        return "open"

    def day(self, now: float) -> Day:
        cached = self._day
        if cached is not None and now < cached.ends_at:
            return cached
        day = self._day = local_day(now, self.zone)
        return day


@dataclass
class _TallyCache:
    shards: list[dict[str, int]]
    fetched: float
    as_of: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    totals: dict[str, int] = field(default_factory=dict)
    """The sum of ``shards``, kept up to date as votes report their shard's count."""
    refreshing: bool = False
    """A background refresh is on its way: the votes meanwhile start no other."""


class Registry:
    def __init__(
        self, redis: AnyRedis, shards: int, refresh: float = 1.0, timeout: float = 0.8,
        legacy_until: float = 0.0,
    ) -> None:
        self.redis = redis
        self.legacy_until = legacy_until
        """Unix seconds until which votes also read and write their idempotency record as
        a key of its own, as releases before issue 28 did (``voting.LEGACY_RECORD_TTL``;
        ``VOTING_LEGACY_RECORDS_UNTIL``)."""
        self.timeout = timeout
        self._background: set[asyncio.Task[Any]] = set()
        self.shards = shards
        self.refresh_every = refresh
        self.version = -1
        self.campaigns: dict[str, LiveCampaign] = {}
        self._tallies: dict[str, _TallyCache] = {}

    def get(self, campaign_id: str, *, drafts: bool = False) -> LiveCampaign:
        """The campaign, as the public sees it: a ``draft`` is not found (its id may be
        guessable, its candidates and rules are not published yet). Admin routes pass
        ``drafts=True``."""
        live = self.campaigns.get(campaign_id)
        if live is None or (live.c.status == "draft" and not drafts):
            raise CampaignNotFound(f"no campaign {campaign_id!r}")
        return live

    def public(self, campaign_id: str | None) -> LiveCampaign | None:
        """``get`` for callers that answer a missing campaign themselves (pages, photos)."""
        live = self.campaigns.get(campaign_id or "")
        return None if live is None or live.c.status == "draft" else live

    def has_channel(self, campaign_id: str, channel_id: str) -> bool:
        live = self.campaigns.get(campaign_id)
        return live is not None and channel_id in live.channels

    async def refresh(self, force: bool = False) -> bool:
        version = await store.config_version(self.redis)
        if version == self.version and not force:
            return False
        version, raw = await store.load_snapshots(self.redis)
        fresh = {}
        for cid, snapshot in raw.items():
            try:
                fresh[cid] = LiveCampaign(decode_snapshot(snapshot))
            except (msgspec.DecodeError, ValueError) as exc:
                log.error("campaign snapshot %s is unreadable: %s", cid, exc)
        self.campaigns = fresh
        self.version = version
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_every)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving the last good snapshot
                log.warning("campaign refresh failed: %r", exc)

    async def tallies(self, campaign_id: str, max_age: float = 1.0) -> tuple[dict[str, int], str]:
        """Campaign totals: the sum of the shard tallies, cached about a second."""
        cache = self._tallies.get(campaign_id)
        if cache is None:
            cache = self._tallies[campaign_id] = _TallyCache([], 0.0, "")
        if time.monotonic() - cache.fetched > max_age:
            async with cache.lock:
                if time.monotonic() - cache.fetched > max_age:
                    try:
                        async with asyncio.timeout(self.timeout):
                            shards = await store.shard_tallies(
                                self.redis, campaign_id, self.shards
                            )
                    except (TimeoutError, RedisError, OSError) as exc:
                        raise Unavailable("vote counts are unavailable right now") from exc
                    cache.shards = shards
                    cache.totals = store.sum_tallies(shards)
                    cache.fetched = time.monotonic()
                    cache.as_of = dt.datetime.now(dt.UTC).isoformat()
        return dict(cache.totals), cache.as_of

    def refresh_tallies_soon(self, campaign_id: str) -> None:
        """Refresh a stale cache in the background: the vote path never waits for it, and
        the votes that come before the refresh has begun start no other."""
        cache = self._tallies.get(campaign_id)
        if (cache is None or cache.refreshing or cache.lock.locked()
                or time.monotonic() - cache.fetched <= 1.0):
            return
        cache.refreshing = True
        task = asyncio.get_running_loop().create_task(self.tallies(campaign_id))
        self._background.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            cache.refreshing = False
            self._background_done(task)

        task.add_done_callback(done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("tally refresh failed: %r", task.exception())

    def has_tallies(self, campaign_id: str) -> bool:
        cache = self._tallies.get(campaign_id)
        return cache is not None and bool(cache.shards)

    def note_shard_count(
        self, campaign_id: str, shard: int, candidate: str, votes: int
    ) -> int | None:
        """Fold a fresh shard count from a vote into the cache; return the candidate's total."""
        cache = self._tallies.get(campaign_id)
        if cache is None or not cache.shards:
            return None
        self.refresh_tallies_soon(campaign_id)
        counts = cache.shards[shard]
        before = counts.get(candidate, 0)
        if before < votes:
            counts[candidate] = votes
            cache.totals[candidate] = cache.totals.get(candidate, 0) + votes - before
        return cache.totals.get(candidate, 0)
