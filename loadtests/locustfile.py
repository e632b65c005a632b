"""Realistic load on a running deployment: citizens browse the candidates, then vote.

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 200 -r 20 --run-time 2m

Each simulated citizen opens the campaign, gets an anonymous voter token (``POST /voter``),
browses the list (sometimes filtered by region or searched), opens a few candidates, looks
at the tallies, and casts votes for distinct candidates until the daily quota is used —
then leaves, and a new citizen takes the slot. Think times are those of a person on a
phone (``LOCUST_THINK=min,max`` seconds, default 1,4).

Expected refusals (409 already voted, 429 quota or rate limit) count as successes, so that
the failure count only shows what is wrong (5xx, timeouts, 401); how many votes were
accepted and refused, by status, is printed when the run ends.
Each citizen sends an ``X-Forwarded-For`` address of its own, which the service believes
only if the load generator's address is in ``VOTING_TRUSTED_PROXIES``.

Safety: traffic goes to loopback hosts only (it can never hit a live vote by mistake), and every
run stops by itself after ``LOCUST_MAX_SECONDS`` (default 600) even without --run-time.
``LOCUST_CAMPAIGN`` picks the campaign; by default the first open one.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import gevent  # type: ignore[import-untyped]
from locust import HttpUser, between, events, task
from locust.env import Environment
from locust.exception import StopUser

_think = [float(x) for x in os.environ.get("LOCUST_THINK", "1,4").split(",")]
MAX_SECONDS = float(os.environ.get("LOCUST_MAX_SECONDS", "600"))
USER_AGENT = ("Mozilla/5.0 (Linux; Android 14; V2309A) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0 Mobile Safari/537.36 MicroMessenger/8.0.49")


def _is_loopback(host: str) -> bool:
    name = urlsplit(host).hostname or ""
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0])).is_loopback for i in infos)


VOTES: Counter[int] = Counter()


def _guard(environment: Environment, **kwargs: Any) -> None:
    """Refuse non-loopback targets; stop every run after MAX_SECONDS at the latest."""
    host = environment.host or ""
    if not _is_loopback(host):
        raise SystemExit(f"refusing to load {host!r}: only loopback targets are allowed here")
    runner = environment.runner

    def stop_later() -> None:
        gevent.sleep(MAX_SECONDS)
        if runner is not None:
            runner.quit()

    gevent.spawn(stop_later)


def _report(environment: Environment, **kwargs: Any) -> None:
    total = sum(VOTES.values())
    if total:
        parts = ", ".join(f"{code}: {n} ({n / total:.1%})" for code, n in sorted(VOTES.items()))
        print(f"votes by status: {parts}")


events.test_start.add_listener(_guard)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_report)  # type: ignore[no-untyped-call]


def _random_ip(rng: random.Random) -> str:
    """A plausible mobile address (header value only: nothing is sent to it)."""
    return (f"{rng.choice((36, 39, 58, 112, 114, 117, 183, 223))}.{rng.randrange(256)}."
            f"{rng.randrange(256)}.{rng.randrange(1, 255)}")


class Citizen(HttpUser):
    """One person with a phone: browse, then vote up to the daily quota, then leave."""

    wait_time = between(_think[0], _think[-1])

    campaign = ""
    candidates: list[dict[str, Any]]
    token = ""
    voted: set[str]
    left = 1

    def on_start(self) -> None:
        rng = random.Random()
        self.client.headers.update({
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Accept-Language": "zh-CN,zh;q=0.9",
            "X-Forwarded-For": _random_ip(rng),
        })
        self.campaign = os.environ.get("LOCUST_CAMPAIGN") or self._first_open_campaign()
        self.client.get(f"/api/v1/campaigns/{self.campaign}", name="/campaigns/{cid}")
        self.candidates = self._list()
        with self.client.post(f"/api/v1/campaigns/{self.campaign}/voter",
                              name="/campaigns/{cid}/voter", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"no voter token: {r.status_code}")
                raise StopUser()
            self.token = r.json()["token"]
        self.voted = set()
        self.left = 1

    def _first_open_campaign(self) -> str:
        with self.client.get("/api/v1/campaigns", name="/campaigns", catch_response=True) as r:
            open_ = [c["id"] for c in (r.json() if r.ok else []) if c.get("status") == "open"]
            if not open_:
                r.failure("no open campaign")
                raise StopUser()
            return str(open_[0])

    def _list(self, **params: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/campaigns/{self.campaign}/candidates", params=params,
                            name="/campaigns/{cid}/candidates")
        if not r.ok:
            return getattr(self, "candidates", [])
        found: list[dict[str, Any]] = r.json().get("candidates", [])
        return found

    @task(3)
    def browse(self) -> None:
        roll = random.random()
        if roll < 0.2 and self.candidates:
            self._list(region=random.choice(self.candidates)["region"])
        elif roll < 0.3 and self.candidates:
            self._list(q=random.choice(self.candidates)["name"][:1])
        else:
            self._list()

    @task(3)
    def read_candidate(self) -> None:
        if self.candidates:
            cand = random.choice(self.candidates)
            self.client.get(f"/api/v1/campaigns/{self.campaign}/candidates/{cand['id']}",
                            name="/campaigns/{cid}/candidates/{id}")

    @task(1)
    def tallies(self) -> None:
        self.client.get(f"/api/v1/campaigns/{self.campaign}/tallies",
                        name="/campaigns/{cid}/tallies")

    @task(4)
    def vote(self) -> None:
        choices = [c["id"] for c in self.candidates if c["id"] not in self.voted]
        if not choices or self.left <= 0:
            self._leave()
            return
        # popular candidates get more votes: weight by list position, favourites first
        weights = [1.0 / (i + 1) ** 0.5 for i in range(len(choices))]
        cand = random.choices(choices, weights)[0]
        with self.client.post(f"/api/v1/campaigns/{self.campaign}/votes",
                              json={"candidate_id": cand},
                              headers={"X-Voter-Token": self.token},
                              name="/campaigns/{cid}/votes", catch_response=True) as r:
            self.voted.add(cand)
            VOTES[r.status_code] += 1
            if r.status_code == 200:
                self.left = int(r.json().get("votes_left_today", 0))
            elif r.status_code in (409, 429):
                r.success()  # an expected refusal, not an error of the service
                if r.status_code == 429:
                    self.left = 0
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")

    def _leave(self) -> None:
        """Quota used: this citizen is done; a new one (new token, new address) arrives."""
        self.on_start()
