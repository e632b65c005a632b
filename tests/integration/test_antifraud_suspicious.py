"""The suspicious-vote signals over a day of ledger history (rows as the flusher writes them).

History is written straight into the ``votes`` table with chosen times, which the HTTP path
cannot do: a steady popular candidate, a rare one with a burst, a voter on a timer, a network
on a metronome, and a burst already struck out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from tests.conftest import ADMIN, OPS, Harness
from tests.integration.antifraud_support import CID, NO_LIMITS, problem_code
from voting_service.ledger import partitions

COLUMNS = ["campaign_id", "voter_id", "vote_id", "candidate_id", "channel", "ip", "day",
           "cast_at", "stream_id", "shard"]

SUSPICIOUS = f"/api/v1/admin/campaigns/{CID}/suspicious"
NOW = dt.datetime.now(dt.UTC)
START = NOW - dt.timedelta(hours=20)


def vid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:32]


class Ledger:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.invalid: list[tuple[Any, ...]] = []

    def add(self, voter: str, candidate: str, ip: str, at: dt.datetime, *,
            valid: bool = True) -> None:
        n = len(self.rows) + len(self.invalid)
        row = (CID, vid(voter), f"v{n:08d}", candidate, "", ip, at.date(), at,
               f"{int(at.timestamp() * 1000)}-{n}", 0)
        (self.rows if valid else self.invalid).append(row)

    async def write(self, h: Harness) -> None:
        days = {r[6].isoformat() for r in self.rows + self.invalid}
        await partitions.Known().ensure(h.pg, days)  # as the flusher does before its COPY
        await h.pg.copy_records_to_table("votes", records=self.rows, columns=COLUMNS)
        await h.pg.copy_records_to_table("votes", records=self.invalid, columns=COLUMNS)
        await h.pg.execute("UPDATE votes SET valid = false WHERE vote_id = ANY($1::text[])",
                           [r[2] for r in self.invalid])


def history() -> Ledger:
    ledger = Ledger()
    minute = dt.timedelta(minutes=1)
    for k in range(20 * 60 // 2):  # c001: popular and steady, one vote every 2 minutes
        ledger.add(f"fan{k}", "c001", f"{1 + k % 200}.{k // 200}.7.1", START + 2 * k * minute)
    for k in range(40):  # c002: rare …
        ledger.add(f"rare{k}", "c002", f"{1 + k}.99.8.1", START + 30 * k * minute)
    burst = START + dt.timedelta(hours=15, minutes=7)  # between two of the rare votes
    for k in range(60):  # … until 60 votes in two minutes from one network
        ledger.add(f"burst{k}", "c002", f"100.64.5.{k + 1}", burst + k * dt.timedelta(seconds=2))
    timer = START + dt.timedelta(hours=3)
    for k in range(6):  # a voter on a timer: 37 s apart, give or take 4 ms
        jitter = dt.timedelta(milliseconds=(-4, 2, 0, 3, -1, 4)[k])
        ledger.add("robot", f"c00{3 + k}", "9.9.9.9", timer + k * dt.timedelta(seconds=37) + jitter)
    human = START + dt.timedelta(hours=4)
    for k, gap in enumerate((0, 10, 105, 135, 535, 597)):  # a person: uneven gaps
        ledger.add("person", f"c00{3 + k}", "8.8.4.4", human + dt.timedelta(seconds=gap))
    metronome = START + dt.timedelta(hours=6)
    for k in range(25):  # 25 voters of one network, every 3 s, spread over candidates
        ledger.add(f"tick{k}", f"c{3 + k % 9:03d}", f"192.0.2.{k + 1}",
                   metronome + k * dt.timedelta(seconds=3))
    struck = START + dt.timedelta(hours=9)
    for k in range(40):  # a burst already invalidated: no longer evidence
        ledger.add(f"gone{k}", "c010", f"203.0.113.{k + 1}", struck + k * dt.timedelta(
            seconds=1), valid=False)
    return ledger


def signals(groups: list[dict[str, Any]], **where: Any) -> set[str]:
    found = set()
    for g in groups:
        prefixes = g["evidence"].get("prefixes", {})
        if "prefix" in where and where["prefix"] not in prefixes:
            continue
        if "voter" in where and vid(where["voter"]) not in g["voter_ids"]:
            continue
        if "candidate" in where and g["evidence"].get("candidate_id") != where["candidate"]:
            continue
        found.add(g["signal"])
    return found


async def test_signals_over_a_day_of_history(harness: Harness) -> None:
    h = harness
    await h.create_campaign(rules=NO_LIMITS)
    await history().write(h)
    r = await h.client.get(SUSPICIOUS, headers=OPS)
    assert r.status_code == 200, r.text
    groups = r.json()["groups"]
    assert [g["score"] for g in groups] == sorted((g["score"] for g in groups), reverse=True)

    spikes = [g for g in groups if g["signal"] == "candidate_spike"]
    assert [g["evidence"]["candidate_id"] for g in spikes] == ["c002"], "c001 is just popular"
    # the 5-minute grid may cut the two-minute burst: most of it is in the spike
    votes = spikes[0]["evidence"]["votes"]
    assert 30 <= votes <= 60, spikes
    assert spikes[0]["evidence"]["prefixes"] == {"100.64.5.0/24": votes}

    assert signals(groups, prefix="100.64.5.0/24") >= {
        "prefix_volume", "prefix_candidate", "new_voter_burst"}
    assert signals(groups, voter="robot") == {"machine_timing"}
    robot = next(g for g in groups if vid("robot") in g["voter_ids"])
    assert robot["voter_ids"] == [vid("robot")] and robot["evidence"]["votes"] == 6
    assert robot["criteria"]["voter_ids"] == [vid("robot")]
    assert signals(groups, voter="person") == set()
    assert "machine_timing" in signals(groups, prefix="192.0.2.0/24")
    assert "prefix_candidate" not in signals(groups, prefix="192.0.2.0/24")
    assert signals(groups, prefix="203.0.113.0/24") == set(), "struck-out votes are no evidence"

    # a window that ends before the burst does not see it
    until = (START + dt.timedelta(hours=14)).isoformat()
    r = await h.client.get(SUSPICIOUS, params={"until": until}, headers=OPS)
    assert "c002" not in {g["evidence"].get("candidate_id") for g in r.json()["groups"]}


async def test_suspicious_is_for_admins_and_checks_its_window(harness: Harness) -> None:
    h = harness
    await h.create_campaign(rules=NO_LIMITS)
    r = await h.client.get(SUSPICIOUS)
    assert (r.status_code, problem_code(r)) == (401, "unauthorized")
    assert (await h.client.get(SUSPICIOUS, headers=ADMIN)).json()["groups"] == []
    for params in ({"since": "yesterday"}, {"since": "2026-07-01T00:00:00"},
                   {"since": NOW.isoformat(), "until": (NOW - dt.timedelta(hours=1)).isoformat()},
                   {"min_votes": "0"}):
        r = await h.client.get(SUSPICIOUS, params=params, headers=OPS)
        assert (r.status_code, problem_code(r)) == (400, "invalid_request"), params
    r = await h.client.get("/api/v1/admin/campaigns/nope/suspicious", headers=OPS)
    assert (r.status_code, problem_code(r)) == (404, "campaign_not_found")
