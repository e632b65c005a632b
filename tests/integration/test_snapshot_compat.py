"""A rolling deploy: the new release's workers push campaign snapshots with fields the old
release does not know. The old workers must keep serving the campaign (dropping what they
do not know) rather than lose it, and its flusher must still read it."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Harness
from voting_service.ledger.flusher import Flusher
from voting_service.redis import keys

CID = "t2026"


async def test_a_snapshot_with_fields_of_a_newer_release_still_serves_the_campaign(
    harness: Harness,
) -> None:
    h = harness
    await h.create_campaign()
    svc: Any = h.app.state.services
    raw = await h.redis.hget(keys.CONFIG_HASH, CID)
    assert raw is not None
    snapshot = json.loads(raw)
    title = snapshot["title"]
    # what a later release might add: a field of the campaign, of its rules, of a candidate
    snapshot["future_field"] = {"nested": [1, 2]}
    snapshot["rules"]["future_rule"] = 3
    snapshot["candidates"][0]["future_detail"] = "x"
    snapshot["title"] = title + " (newer)"
    await h.redis.hset(keys.CONFIG_HASH, CID, json.dumps(snapshot, ensure_ascii=False))
    await h.redis.incr(keys.CONFIG_VERSION)

    assert await svc.registry.refresh()
    live = svc.registry.get(CID)
    assert live.c.title == title + " (newer)"  # the new snapshot, not the last good one
    assert not hasattr(live.c.rules, "future_rule")
    token = await h.voter()
    r = await h.vote(token, "c001")
    assert r.status_code == 200, r.text

    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards, name="compat")
    try:
        assert await flusher.drain() == 1  # it knows the campaign, so its votes are flushed
        known = flusher._campaigns[CID]
        assert known is not None and known.title == title + " (newer)"
    finally:
        await flusher.close()
