"""``/live`` for many watchers: one encoded tallies snapshot per campaign per second per
worker, the same bytes to every client, and only when it changed (a keep-alive comment
after quiet seconds).

Before, each client read and encoded the tallies itself every second: two thousand
watchers made two thousand snapshots a second and tripled the vote path's p95. Now one task
per watched campaign builds the frame, and each client's loop only waits for the next tick
(given when the frame changed, or for a keep-alive every ``KEEP_ALIVE_PERIODS``) and writes
what is there — a twentieth of the watchers at a time, every twentieth of a
period, so that no loop turn holds the votes behind two thousand writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

from ...errors import VotingError
from ..metrics import SSE_CLIENTS
from ..server.address_caps import AddressCaps

log = logging.getLogger(__name__)

KEEP_ALIVE = b": keep-alive\n\n"
KEEP_ALIVE_PERIODS = 15
"""Periods without a change before the watchers are woken for a keep-alive comment (15 s:
well inside the 60 s a proxy such as nginx waits on a quiet upstream). Waking two thousand
watchers each second to send a comment cost a measurable share of a core
(``docs/capacity.md``)."""
Snapshot = Callable[[str], Awaitable[dict[str, Any]]]
"""The tallies body of a campaign (``api_public.tallies_body``)."""
STAMPS = frozenset({"as_of"})
"""Fields of a snapshot that change with every read, not with the tallies: left out when
the feed decides whether the frame changed. With them in, every one-second refresh was a
new frame, and two thousand idle watchers got a write each second (``docs/capacity.md``)."""


SLOTS = 20
"""Watchers are woken in this many groups spread over the period, not all at once: two
thousand writes in one loop turn held the votes behind them for tens of milliseconds."""


class _Feed:
    def __init__(self) -> None:
        self.frame = b""
        """The last ``tallies`` event, encoded once for every watcher."""
        self.content: dict[str, Any] | None = None
        """The snapshot ``frame`` was made of, without its ``STAMPS``."""
        self.version = 0
        """Goes up each time ``frame`` changes."""
        self.ready = asyncio.Event()
        """Set once the first frame is there."""
        self.ticks = [asyncio.Event() for _ in range(SLOTS)]
        """One per group of watchers: set (and replaced) once a period, in turn."""
        self.watchers = 0
        self.joined = 0
        self.task: asyncio.Task[None] | None = None


class LiveTallies:
    """The feeds of one worker, one per watched campaign."""

    def __init__(self, snapshot: Snapshot, period: float = 1.0,
                 caps: AddressCaps | None = None) -> None:
        self._snapshot = snapshot
        self.caps = caps or AddressCaps(0, 0, 0)
        """Streams per address, network and in all (``/live`` takes a slot per stream)."""
        self.period = period
        self._feeds: dict[str, _Feed] = {}
        self._closed = False

    def watchers(self, campaign_id: str) -> int:
        feed = self._feeds.get(campaign_id)
        return feed.watchers if feed else 0

    async def events(self, campaign_id: str) -> AsyncIterator[bytes]:
        """One watcher's stream: the current frame at once, then each time the feed wakes
        it: the new frame, or a keep-alive comment when nothing changed."""
        feed = self._feeds.get(campaign_id)
        if feed is None:
            feed = self._feeds[campaign_id] = _Feed()
        feed.watchers += 1
        SSE_CLIENTS.inc()
        slot = feed.joined % SLOTS
        feed.joined += 1
        if feed.task is None:
            feed.task = asyncio.get_running_loop().create_task(self._run(campaign_id, feed))
        sent = 0
        try:
            await feed.ready.wait()
            while not self._closed:
                if feed.version != sent:
                    sent = feed.version
                    yield feed.frame
                else:
                    yield KEEP_ALIVE
                await feed.ticks[slot].wait()
        finally:
            feed.watchers -= 1
            SSE_CLIENTS.dec()

    async def _run(self, campaign_id: str, feed: _Feed) -> None:
        woken, quiet = 0, 0  # the version the watchers were last woken for; periods since
        try:
            while feed.watchers > 0:
                try:
                    snapshot = await self._snapshot(campaign_id)
                except Exception as exc:  # Redis away, campaign gone: keep the last frame
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError from exc  # a cancel seen as a timeout
                    if isinstance(exc, VotingError):
                        log.debug("live tallies of %s: %r", campaign_id, exc)
                    else:
                        log.exception("live tallies of %s failed", campaign_id)
                else:
                    content = {k: v for k, v in snapshot.items() if k not in STAMPS}
                    if content != feed.content:
                        feed.content = content
                        body = msgspec.json.encode(snapshot)
                        feed.frame = b"event: tallies\ndata: " + body + b"\n\n"
                        feed.version += 1
                feed.ready.set()
                if feed.version == woken and quiet < KEEP_ALIVE_PERIODS:
                    quiet += 1  # nothing to send: the watchers sleep on
                    await asyncio.sleep(self.period)
                    continue
                woken, quiet = feed.version, 0
                for slot in range(SLOTS):
                    tick, feed.ticks[slot] = feed.ticks[slot], asyncio.Event()
                    tick.set()
                    await asyncio.sleep(self.period / SLOTS)
        finally:
            feed.task = None
            if feed.watchers <= 0 and self._feeds.get(campaign_id) is feed:
                del self._feeds[campaign_id]
            if self._closed:  # shutting down: wake every watcher so that its stream ends
                feed.ready.set()
                for tick in feed.ticks:
                    tick.set()

    async def close(self) -> None:
        """Stop the feeds; every watcher's stream ends."""
        self._closed = True
        tasks = [f.task for f in self._feeds.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
