"""A scripted bot farm: 50 voters behind one /24 vote for one candidate in machine rhythm.

Suspicious lists them, an invalidation strikes them out, and they vanish from the public
tallies and the admin results, while ordinary voters' votes stay.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import ADMIN, OPS, Backend, Harness
from tests.integration.antifraud_support import (
    CID,
    clients,
    drain,
    eventually,
    new_voter,
    no_drift,
    public_tallies,
    redis_totals,
    relaxed_settings,
    vote,
)
from voting_service.settings import Settings

FARM = "198.51.100.0/24"
TARGET = "c007"
SUSPICIOUS = f"/api/v1/admin/campaigns/{CID}/suspicious"


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return relaxed_settings(backend, pg_url)


def ordinary_address(i: int) -> str:
    return f"{11 + i}.{20 + i * 3}.{30 + i}.{40 + i}"  # one voter per network


async def suspicious(h: Harness) -> list[dict[str, Any]]:
    r = await h.client.get(SUSPICIOUS, headers=OPS)
    assert r.status_code == 200, r.text
    groups: list[dict[str, Any]] = r.json()["groups"]
    return groups


def about(groups: list[dict[str, Any]], prefix: str) -> dict[str, dict[str, Any]]:
    return {g["signal"]: g for g in groups if prefix in g["evidence"].get("prefixes", {})}


async def test_a_bot_farm_is_found_struck_out_and_vanishes(harness: Harness) -> None:
    h = harness
    await h.create_campaign(rules={"votes_per_day": 5})  # the default network limits
    expected: dict[str, int] = {}
    async with clients(h, [ordinary_address(i) for i in range(24)]) as people:
        for i, client in enumerate(people):
            token = await new_voter(client)
            picks = [f"c{(i + k) % 6 + 1:03d}" for k in range(1 + i % 3)]
            if i % 6 == 0:
                picks.append(TARGET)
            for cand in picks:
                r = await vote(client, token, cand)
                assert r.status_code == 200, r.text
                expected[cand] = expected.get(cand, 0) + 1
    async with clients(h, [f"198.51.100.{n}" for n in range(1, 51)]) as bots:
        tokens = [await new_voter(bot) for bot in bots]
        for bot, token in zip(bots, tokens, strict=True):
            r = await vote(bot, token, TARGET)
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.02)  # the farm's metronome
    assert await redis_totals(h) == {**expected, TARGET: expected[TARGET] + 50}
    await drain(h)

    groups = await suspicious(h)
    found = about(groups, FARM)
    assert {"prefix_volume", "prefix_candidate", "new_voter_burst"} <= set(found), groups
    share = found["prefix_candidate"]
    assert share["evidence"]["votes"] == share["evidence"]["voters"] == 50
    assert share["evidence"]["candidates"] == {TARGET: 50}
    assert share["evidence"]["channels"] == {"direct": 50}
    assert share["evidence"]["attempts_today"] == {FARM: 50}
    assert len(share["voter_ids"]) == 50 and share["score"] > 0
    assert share["criteria"]["ip"] == FARM and share["criteria"]["candidate_id"] == TARGET
    assert found["new_voter_burst"]["evidence"]["voters"] == 50
    spikes = [g for g in groups if g["signal"] == "candidate_spike"]
    assert [g["evidence"]["candidate_id"] for g in spikes] == [TARGET]
    for i in range(24):  # no ordinary voter's network is named by a network signal
        network = ".".join(ordinary_address(i).split(".")[:3]) + ".0/24"
        assert not {s for s in about(groups, network) if s != "candidate_spike"}, network

    r = await h.client.post(f"/api/v1/admin/campaigns/{CID}/invalidations",
                            json={"reason": "刷票: 198.51.100.0/24", **share["criteria"]},
                            headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["votes_invalidated"] == 50

    assert await redis_totals(h) == expected

    async def gone_from_public() -> bool:
        return await public_tallies(h.client) == expected

    assert await eventually(gone_from_public, within=5.0)
    results = (await h.client.get(f"/api/v1/admin/campaigns/{CID}/results",
                                  headers=OPS)).json()
    assert {c["candidate_id"]: c["votes"] for c in results["candidates"] if c["votes"]} == \
        expected
    assert results["total"] == sum(expected.values())
    await no_drift(h)
    assert about(await suspicious(h), FARM) == {}, "struck-out votes are not evidence any more"
