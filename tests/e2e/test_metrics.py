"""``/metrics`` of a real ``voting-service serve --workers 2``: the workers' counts add up to
exactly the votes cast, and stay when a worker is killed and replaced."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN, OPS_TOKEN, campaign_payload
from tests.e2e.conftest import running_service

pytestmark = pytest.mark.e2e


class Served:
    def __init__(self, url: str, metrics_dir: Path) -> None:
        self.url = url
        self.metrics_dir = metrics_dir

    def fresh(self) -> httpx.Client:
        """No keep-alive: each request a new connection, so both workers take votes."""
        return httpx.Client(base_url=self.url, timeout=30,
                            limits=httpx.Limits(max_keepalive_connections=0))

    def worker_pids(self) -> set[int]:
        return {int(p.stem.rsplit("_", 1)[1]) for p in self.metrics_dir.glob("counter_*.db")}


@pytest.fixture(scope="module")
def served(single_url: str, migrated: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("metrics")
    metrics_dir = base / "prom"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # a previous run's: wiped
    with running_service(single_url, migrated, base / "serve.log", args=("--workers", "2"),
                         env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as svc:
        yield Served(svc.url, metrics_dir)


def scrape(served: Served, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with served.fresh() as client:
        r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text) for s in family.samples
    }


def votes(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], cid: str,
          outcome: str) -> float:
    return samples.get(
        ("voting_votes_total", (("campaign", cid), ("outcome", outcome))), 0.0)


def test_two_workers_report_exactly_the_votes_cast(served: Served) -> None:
    cid = f"m{uuid.uuid4().hex[:10]}"
    with served.fresh() as client:
        r = client.post("/api/v1/admin/campaigns", json=campaign_payload(cid), headers=ADMIN)
        assert r.status_code == 201, r.text
        known = 0
        for _ in range(200):  # every worker has loaded the new campaign (about a second)
            known = known + 1 if client.get(f"/api/v1/campaigns/{cid}").status_code == 200 else 0
            if known == 10:
                break
            time.sleep(0.05)
        cast = {"accepted": 0, "already_voted": 0, "candidate_not_found": 0,
                "voter_required": 0}
        for _ in range(12):
            token = client.post(f"/api/v1/campaigns/{cid}/voter").json()["token"]
            voter = {"X-Voter-Token": token}
            for cand, outcome in (("c001", "accepted"), ("c002", "accepted"),
                                  ("c001", "already_voted"), ("nobody", "candidate_not_found")):
                r = client.post(f"/api/v1/campaigns/{cid}/votes",
                                json={"candidate_id": cand}, headers=voter)
                assert r.status_code == (200 if outcome == "accepted" else r.status_code)
                assert outcome == "accepted" or r.json()["code"] == outcome, r.text
                cast[outcome] += 1
            client.cookies.clear()  # no credential at all
            r = client.post(f"/api/v1/campaigns/{cid}/votes", json={"candidate_id": "c003"})
            assert r.json()["code"] == "voter_required"
            cast["voter_required"] += 1

    assert len(served.worker_pids()) == 2  # both workers took votes (and the stale file went)
    samples = scrape(served)
    for outcome, n in cast.items():
        assert votes(samples, cid, outcome) == n, outcome
    count = samples[("voting_vote_duration_seconds_count", ())]
    assert count >= sum(cast.values())

    # a worker killed outright is replaced; what it counted is still there
    victim = min(served.worker_pids())
    os.kill(victim, signal.SIGKILL)
    for _ in range(100):
        with served.fresh() as client:
            try:
                if client.get("/healthz").status_code == 200 and victim not in _live(served):
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    again = scrape(served)
    for outcome, n in cast.items():
        assert votes(again, cid, outcome) == n, outcome


def _live(served: Served) -> set[int]:
    alive = set()
    for pid in served.worker_pids():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.add(pid)
    return alive


def test_open_sse_streams_are_counted_across_workers(served: Served) -> None:
    cid = f"s{uuid.uuid4().hex[:10]}"
    with served.fresh() as client:
        r = client.post("/api/v1/admin/campaigns", json=campaign_payload(cid), headers=ADMIN)
        assert r.status_code == 201, r.text
        for _ in range(200):  # both workers know it
            if all(client.get(f"/api/v1/campaigns/{cid}").status_code == 200 for _ in range(6)):
                break
            time.sleep(0.05)
    gauge = ("voting_sse_clients", ())
    before = scrape(served).get(gauge, 0.0)
    with served.fresh() as a, served.fresh() as b, \
            a.stream("GET", f"/api/v1/campaigns/{cid}/live") as one, \
            b.stream("GET", f"/api/v1/campaigns/{cid}/live") as two:
        readers = [stream.iter_lines() for stream in (one, two)]  # kept: dropping one closes
        assert one.status_code == two.status_code == 200
        for lines in readers:
            assert next(lines).startswith("event: tallies")
        assert scrape(served)[gauge] == before + 2
    for _ in range(100):  # a closed stream is noticed at its next tick (about a second)
        if scrape(served)[gauge] == before:
            break
        time.sleep(0.1)
    assert scrape(served)[gauge] == before


def test_metrics_need_an_allowed_address_or_an_operator_token(
    served: Served, single_url: str, migrated: str,
) -> None:
    with served.fresh() as client:
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}
                          ).status_code == 401
    assert scrape(served, Authorization=f"Bearer {OPS_TOKEN}")  # a token works from anywhere
    health = scrape(served)
    assert health[("voting_redis_up", ())] == 1.0
    assert health[("voting_postgres_up", ())] == 1.0
    assert health[("voting_redis_durable", ())] == 1.0
