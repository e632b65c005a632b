"""Realistic load on a running deployment: citizens browse the candidates, then vote;
media embeds and a partner app push bursts; a bot farm hammers from one network.

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 200 -r 20 --run-time 2m

``make load`` (``loadtests/load.py``) starts a local stack, runs this file headless for two
minutes with the burst shape below (``LOCUST_SHAPE=slo``), and checks the service-level
objectives afterwards, PostgreSQL included.

Each simulated citizen opens the campaign page, gets an anonymous voter token
(``POST /voter``), browses the list (sometimes filtered by region or searched), opens a few
candidates, polls the tallies, and casts votes for distinct candidates — solving the
proof-of-work challenge when the campaign asks for one — until the daily quota is used;
then leaves, and a new citizen takes the slot. Think times are those of a person on a
phone (``LOCUST_THINK=min,max`` seconds, default 1,4). ``EmbedReader`` is a reader of a
media article who votes from the embedded widget (``LOCUST_EMBED_CHANNEL``);
``PartnerAppUser`` a logged-in user of a partner app whose votes carry a JWT signed with the
channel's secret (``LOCUST_PARTNER_CHANNEL``, ``LOCUST_PARTNER_SECRET``); ``BotFarm`` votes
as fast as it can from one /24 with fresh tokens, and must be held to the network caps.
Name the classes to run on the command line (``… Citizen``) for a run of one kind only.

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
import json
import os
import random
import socket
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import gevent  # type: ignore[import-untyped]
import jwt
from locust import HttpUser, LoadTestShape, User, between, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

from voting_service.fraud import challenge

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
BY_SCENARIO: dict[str, Counter[int]] = {}
ACKNOWLEDGED: list[str] = []
"""vote_id of every 200: ``make load`` looks each one up in PostgreSQL afterwards."""
REQUESTS = Counter[str]()
BOT_NETWORK = "203.0.113"
"""The bot farm's /24 (a documentation range: no real citizen comes from it)."""
BOT_SOLVE_LIMIT = 2_000
"""A bot solves a challenge up to this ``maxnumber``; past it the work costs more than the
vote is worth to it (and would stall the load generator), so it sends no proof."""


def _count(request_type: str, name: str, response_time: float, response_length: int,
           response: Any = None, exception: BaseException | None = None,
           **kwargs: Any) -> None:
    REQUESTS["total"] += 1
    status = getattr(response, "status_code", 0)
    if exception is not None and not status:
        REQUESTS["transport"] += 1
    if status >= 500:
        REQUESTS["5xx"] += 1


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
    summary = os.environ.get("LOCUST_SUMMARY")
    if summary:
        with open(summary, "w", encoding="utf-8") as f:
            json.dump({"requests": dict(REQUESTS), "votes": dict(VOTES),
                       "by_scenario": {k: dict(v) for k, v in BY_SCENARIO.items()},
                       "acknowledged": ACKNOWLEDGED}, f)


events.test_start.add_listener(_guard)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_report)  # type: ignore[no-untyped-call]
events.request.add_listener(_count)  # type: ignore[no-untyped-call]


def _random_ip(rng: random.Random) -> str:
    """A plausible mobile address (header value only: nothing is sent to it)."""
    return (f"{rng.choice((36, 39, 58, 112, 114, 117, 183, 223))}.{rng.randrange(256)}."
            f"{rng.randrange(256)}.{rng.randrange(1, 255)}")


class Visitor(HttpUser):
    """What every kind of voter shares: the campaign, its candidates, casting a vote."""

    abstract = True
    scenario = ""
    campaign = ""
    candidates: list[dict[str, Any]]
    credential: dict[str, str]
    voted: set[str]
    left = 1
    address = ""

    def arrive(self, address: str) -> None:
        self.address = address
        self.client.headers.update({
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Accept-Language": "zh-CN,zh;q=0.9",
            "X-Forwarded-For": address,
        })
        self.campaign = os.environ.get("LOCUST_CAMPAIGN") or self._first_open_campaign()
        self.voted = set()
        self.left = 1

    def _first_open_campaign(self) -> str:
        with self.client.get("/api/v1/campaigns", name="/campaigns", catch_response=True) as r:
            open_ = [c["id"] for c in (r.json() if r.ok else []) if c.get("status") == "open"]
            if not open_:
                r.failure("no open campaign")
                raise StopUser()
            return str(open_[0])

    def anonymous_token(self) -> None:
        with self.client.post(f"/api/v1/campaigns/{self.campaign}/voter",
                              name="/campaigns/{cid}/voter", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"no voter token: {r.status_code}")
                raise StopUser()
            self.credential = {"X-Voter-Token": r.json()["token"]}

    def _list(self, **params: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/campaigns/{self.campaign}/candidates", params=params,
                            name="/campaigns/{cid}/candidates")
        if not r.ok:
            return getattr(self, "candidates", [])
        found: list[dict[str, Any]] = r.json().get("candidates", [])
        return found

    def proof(self, solve_limit: int = 10**9) -> str | None:
        """A proof of work when the campaign asks for one (``None``: it does not, or the
        work is past ``solve_limit``)."""
        with self.client.get(f"/api/v1/campaigns/{self.campaign}/challenge",
                             headers=self.credential, name="/campaigns/{cid}/challenge",
                             catch_response=True) as r:
            if r.status_code == 404 or r.status_code == 429:
                r.success()
                return None
            if not r.ok:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                return None
            issued = r.json()
        if int(issued["maxnumber"]) > solve_limit:
            return None
        return challenge.solve(issued)

    def cast(self, cand: str, *, channel: str = "", proof: str | None = None) -> int:
        body: dict[str, Any] = {"candidate_id": cand, "vote_id": uuid.uuid4().hex}
        if channel:
            body["channel"] = channel
        if proof:
            body["proof"] = proof
        with self.client.post(f"/api/v1/campaigns/{self.campaign}/votes", json=body,
                              headers=self.credential, name="/campaigns/{cid}/votes",
                              catch_response=True) as r:
            self.voted.add(cand)
            VOTES[r.status_code] += 1
            BY_SCENARIO.setdefault(self.scenario, Counter())[r.status_code] += 1
            if r.status_code == 200:
                ACKNOWLEDGED.append(body["vote_id"])
                self.left = int(r.json().get("votes_left_today", 0))
            elif r.status_code in (403, 409, 429) and self.scenario == "bot farm":
                r.success()  # the limits doing their job
            elif r.status_code in (409, 429):
                r.success()  # an expected refusal, not an error of the service
                if r.status_code == 429:
                    self.left = 0
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")
            return int(r.status_code)

    def pick(self) -> str | None:
        choices = [c["id"] for c in self.candidates if c["id"] not in self.voted]
        if not choices or self.left <= 0:
            return None
        # popular candidates get more votes: weight by list position, favourites first
        weights = [1.0 / (i + 1) ** 0.5 for i in range(len(choices))]
        return str(random.choices(choices, weights)[0])


class Citizen(Visitor):
    """One person with a phone: browse, then vote up to the daily quota, then leave."""

    scenario = "citizens"
    wait_time = between(_think[0], _think[-1])

    def on_start(self) -> None:
        self.arrive(_random_ip(random.Random()))
        self.client.get(f"/c/{self.campaign}", name="/c/{cid}",
                        headers={"Accept": "text/html"})
        self.candidates = self._list()
        self.anonymous_token()

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
        cand = self.pick()
        if cand is None:
            self.on_start()  # quota used: a new citizen (new token, new address) arrives
            return
        self.cast(cand, proof=self.proof())


class EmbedReader(Visitor):
    """A reader of a media article: the widget loads, one or two votes, gone."""

    scenario = "media embed"
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.arrive(_random_ip(random.Random()))
        channel = os.environ.get("LOCUST_EMBED_CHANNEL", "")
        self.client.get(f"/embed/{self.campaign}", params={"channel": channel},
                        name="/embed/{cid}", headers={"Accept": "text/html"})
        self.candidates = self._list()
        self.anonymous_token()
        self.wanted = random.choice((1, 1, 2))

    @task
    def vote(self) -> None:
        cand = self.pick()
        if cand is None or len(self.voted) >= self.wanted:
            self.on_start()
            return
        self.cast(cand, channel=os.environ.get("LOCUST_EMBED_CHANNEL", ""),
                  proof=self.proof())


class PartnerAppUser(Visitor):
    """A logged-in user of a partner app: votes carry the app's signed JWT."""

    scenario = "partner app"
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.arrive(_random_ip(random.Random()))
        channel = os.environ.get("LOCUST_PARTNER_CHANNEL", "")
        secret = os.environ.get("LOCUST_PARTNER_SECRET", "")
        if not channel or not secret:
            raise StopUser()
        token = jwt.encode({"iss": channel, "sub": f"user-{uuid.uuid4().hex[:12]}",
                            "aud": self.campaign, "exp": int(time.time()) + 3600},
                           secret, algorithm="HS256")
        self.credential = {"Authorization": f"Bearer {token}"}
        self.candidates = self._list()

    @task
    def vote(self) -> None:
        cand = self.pick()
        if cand is None:
            self.on_start()
            return
        self.cast(cand, channel=os.environ.get("LOCUST_PARTNER_CHANNEL", ""),
                  proof=self.proof())


class BotFarm(Visitor):
    """Scripted voting from one /24: fresh tokens, rotating addresses, no pause."""

    scenario = "bot farm"
    wait_time = constant(0.2)
    fixed_count = 3

    def on_start(self) -> None:
        self.arrive(f"{BOT_NETWORK}.{random.randrange(1, 255)}")
        self.candidates = self._list()

    @task
    def vote(self) -> None:
        self.client.headers["X-Forwarded-For"] = f"{BOT_NETWORK}.{random.randrange(1, 255)}"
        self.anonymous_token()
        self.voted, self.left = set(), 1
        cand = self.pick()
        if cand is not None:
            self.cast(cand, proof=self.proof(BOT_SOLVE_LIMIT))


if os.environ.get("LOCUST_SHAPE") == "slo":
    class SloShape(LoadTestShape):
        """Citizens all along (``LOCUST_USERS``), a media embed burst at 35–55 % of the run
        (as many readers again), a partner app burst at 65–80 %, the bot farm throughout."""

        users = int(os.environ.get("LOCUST_USERS", "100"))
        seconds = float(os.environ.get("LOCUST_SECONDS", "120"))

        def tick(self) -> tuple[int, float, list[type[User]] | None] | None:
            t = self.get_run_time() / self.seconds  # type: ignore[no-untyped-call]
            bots = BotFarm.fixed_count
            if t >= 1.0:
                return None
            if 0.35 <= t < 0.55:
                return (2 * self.users + bots, self.users / 2,
                        [Citizen, EmbedReader, BotFarm])
            if 0.65 <= t < 0.80:
                return (2 * self.users + bots, self.users / 2,
                        [Citizen, PartnerAppUser, BotFarm])
            return (self.users + bots, self.users / 5, [Citizen, BotFarm])
