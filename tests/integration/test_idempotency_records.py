"""A vote's idempotency record lives in its day's quota hash (issue 28): a retry after
midnight still gets the first answer, the window ends with the next day, and while
``VOTING_LEGACY_RECORDS_UNTIL`` says so the records of the release before (a key of their
own) are found and written too."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import ADMIN, Harness, redis_tallies
from voting_service.redis import keys
from voting_service.vote import voting
from voting_service.vote.registry import LiveCampaign

CID = "t2026"
DAY = 86400.0


class _Clock:
    """``voting``'s clock, ``days`` ahead of the machine's (tokens and the rest keep theirs)."""

    def __init__(self, days: float) -> None:
        self.offset = days * DAY

    def time(self) -> float:
        return time.time() + self.offset


def _voter(h: Harness, token: str) -> tuple[str, int]:
    svc: Any = h.app.state.services
    voter = svc.tokens.voter(token, CID)
    return voter, keys.shard_of(voter, h.settings.shards)


async def _ledger_entries(h: Harness, shard: int) -> int:
    return int(await h.redis.xlen(keys.ledger(CID, shard)))


async def test_a_retry_after_midnight_gets_the_first_answer(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = harness
    await h.create_campaign()
    token = await h.voter()
    first = await h.vote(token, "c001", vote_id="midnight-0123456789")
    assert first.status_code == 200, first.text
    voter, shard = _voter(h, token)
    live = LiveCampaign(h.app.state.services.registry.get(CID).c)
    today = live.day(time.time())
    record = await h.redis.hget(keys.quota(CID, shard, today.date, voter),
                                voting.record_field("midnight-0123456789"))
    assert record == "c001|4|1", "the record is a field of the day's quota hash"
    assert not await h.redis.exists(
        keys.idempotency(CID, shard, voter, "midnight-0123456789")), "no key of its own"

    monkeypatch.setattr(voting, "time", _Clock(1))  # the next day
    again = await h.vote(token, "c001", vote_id="midnight-0123456789")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await redis_tallies(h) == {"c001": 1}
    assert await _ledger_entries(h, shard) == 1
    tomorrow = live.day(time.time() + DAY)
    assert tomorrow.before == today.date
    assert not await h.redis.exists(keys.quota(CID, shard, tomorrow.date, voter)), (
        "a replay writes nothing into the new day")

    # refused now (paused), the retry is still answered from yesterday's hash
    r = await h.client.patch(f"/api/v1/admin/campaigns/{CID}", json={"status": "paused"},
                             headers=ADMIN)
    assert r.status_code == 200, r.text
    paused = await h.vote(token, "c001", vote_id="midnight-0123456789")
    assert paused.status_code == 200 and paused.json() == first.json(), paused.text
    fresh = await h.vote(token, "c002", vote_id="midnight-fresh-0001")
    assert fresh.status_code == 403 and fresh.json()["code"] == "voting_closed"


async def test_the_record_lasts_the_rest_of_its_day_and_the_next(
    harness: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two days on, the vote id is a new vote (the window that README states)."""
    h = harness
    await h.create_campaign()
    token = await h.voter()
    first = await h.vote(token, "c003", vote_id="window-0123456789")
    assert first.status_code == 200, first.text
    monkeypatch.setattr(voting, "time", _Clock(2))
    later = await h.vote(token, "c003", vote_id="window-0123456789")
    assert later.status_code == 200, later.text
    assert later.json()["votes_left_today"] == 4, "counted as the new day's first vote"
    assert await redis_tallies(h) == {"c003": 2}


async def test_legacy_records_are_read_and_written_while_the_upgrade_says_so(
    harness: Harness,
) -> None:
    h = harness
    await h.create_campaign()
    token = await h.voter()
    voter, shard = _voter(h, token)
    # a vote the release before acknowledged: its count and its record as a key of its own
    live = LiveCampaign(h.app.state.services.registry.get(CID).c)
    day = live.day(time.time())
    quota = keys.quota(CID, shard, day.date, voter)
    await h.redis.hset(quota, mapping={"_n": 1, "c004": 1})
    await h.redis.hincrby(keys.tally(CID, shard), "c004", 1)
    old = keys.idempotency(CID, shard, voter, "legacy-0123456789")
    await h.redis.set(old, "c004|4|1", ex=3 * 86400)

    registry = h.app.state.services.registry
    registry.legacy_until = 0.0  # not upgrading: the old key is not looked at
    other = await h.vote(token, "c004", vote_id="legacy-0123456789")
    assert other.status_code == 409 and other.json()["code"] == "already_voted", other.text

    registry.legacy_until = time.time() + 3 * DAY
    retry = await h.vote(token, "c004", vote_id="legacy-0123456789")
    assert retry.status_code == 200, retry.text
    assert retry.json()["candidate_id"] == "c004" and retry.json()["votes_left_today"] == 4
    assert await h.redis.ttl(old) > 2 * DAY, "renewed by the retry"

    # a new vote keeps both records: old workers of a roll-out find it
    new = await h.vote(token, "c005", vote_id="legacy-new-0123456")
    assert new.status_code == 200, new.text
    answer = await h.redis.get(keys.idempotency(CID, shard, voter, "legacy-new-0123456"))
    assert answer == await h.redis.hget(quota, voting.record_field("legacy-new-0123456"))
    assert answer is not None and str(answer).startswith("c005|3|")
    assert await redis_tallies(h) == {"c004": 1, "c005": 1}
