"""``/live`` feeds: a frame goes out again only when the tallies changed, not when only the
time they were read at did."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from voting_service.web.api.live import KEEP_ALIVE, KEEP_ALIVE_PERIODS, LiveTallies


async def test_a_new_read_time_alone_is_not_a_new_frame() -> None:
    reads = 0
    votes = 0

    async def snapshot(campaign_id: str) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"campaign_id": campaign_id, "total": votes, "as_of": f"read {reads}",
                "candidates": [{"candidate_id": "c001", "votes": votes}]}

    feeds = LiveTallies(snapshot, period=0.005)
    stream = feeds.events("t2026")
    try:
        first = await anext(stream)
        assert first.startswith(b"event: tallies\ndata: ")
        assert b'"as_of":"read 1"' in first
        # every period reads the tallies again, each time with a new as_of; the watcher
        # only gets the keep-alive comment after KEEP_ALIVE_PERIODS quiet periods
        assert await anext(stream) == KEEP_ALIVE
        assert reads > KEEP_ALIVE_PERIODS
        votes = 3
        for _ in range(100):
            frame = await anext(stream)
            if frame != KEEP_ALIVE:
                break
        assert b'"total":3' in frame
        assert b'"candidate_id":"c001","votes":3' in frame
        assert b'"as_of":"read 1"' not in frame, "the frame carries the read that saw the change"
    finally:
        assert isinstance(stream, AsyncGenerator)
        await stream.aclose()
        await feeds.close()
