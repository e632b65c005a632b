"""``/metrics`` in-process: who may read it, the vote counter as an outcome observer, and
the health gauges (the two-worker count is in ``tests/e2e/test_metrics.py``)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import OPS, Harness, client_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(h: Harness) -> Samples:
    async with client_for(h.app, "127.0.0.1") as local:
        r = await local.get("/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text) for s in family.samples
    }


def votes(samples: Samples, outcome: str, cid: str = "t2026") -> float:
    return samples.get(("voting_votes_total", (("campaign", cid), ("outcome", outcome))), 0.0)


async def test_only_allowed_addresses_or_operators_read_metrics(harness: Harness) -> None:
    public = await harness.client.get("/metrics")  # 203.0.113.7: not in VOTING_METRICS_ALLOW
    assert public.status_code == 401
    assert public.headers["content-type"] == "application/problem+json"
    assert (await harness.client.get("/metrics", headers=OPS)).status_code == 200
    wrong = await harness.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert await scrape(harness)


async def test_each_vote_outcome_is_counted_once(harness: Harness) -> None:
    await harness.create_campaign()
    before = await scrape(harness)
    token = await harness.voter()
    assert (await harness.vote(token, "c001")).status_code == 200
    assert (await harness.vote(token, "c001")).status_code == 409
    assert (await harness.vote(token, "zzz")).status_code == 404
    r = await harness.client.post("/api/v1/campaigns/t2026/votes", content=b"{",
                                  headers={"X-Voter-Token": token})
    assert r.status_code == 400
    after = await scrape(harness)
    for outcome, n in (("accepted", 1), ("already_voted", 1), ("candidate_not_found", 1),
                       ("invalid_request", 1), ("voting_closed", 0)):
        assert votes(after, outcome) - votes(before, outcome) == n, outcome
    durations = ("voting_vote_duration_seconds_count", ())
    assert after[durations] - before.get(durations, 0.0) == 4
    assert after[("voting_redis_up", ())] in (0.0, 1.0)


@pytest.mark.parametrize("backend", ["single"], indirect=True)
async def test_a_vote_redis_did_not_confirm_is_a_redis_error(harness: Harness) -> None:
    await harness.create_campaign()
    token = await harness.voter()
    before = await scrape(harness)
    await harness.redis.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
    try:
        r = await harness.vote(token, "c001")
    finally:
        await harness.redis.execute_command("CLIENT", "UNPAUSE")
    assert r.status_code == 503 and r.json()["code"] == "unavailable"
    after = await scrape(harness)
    assert votes(after, "unavailable") - votes(before, "unavailable") == 1
    errors = ("voting_redis_errors_total", ())
    assert after[errors] - before.get(errors, 0.0) == 1
