"""What the benchmark votes with: a realistic campaign, voters, and a request file.

Requests are generated before the clock starts and replayed by the load generator, so that
the client spends no CPU on tokens or JSON while it measures (the machine has two cores).
Each line is one vote: ``token TAB X-Forwarded-For TAB JSON body``.

Every (voter, candidate) pair occurs once in a file, and a voter's votes are spread over
the whole file (round by round), so that with the campaign's default rules — 10 votes a day,
one per candidate — every request of a run should be accepted.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voting_service.demo import demo_campaign
from voting_service.vote.identity import VoterTokens, voter_id

CAMPAIGN_ID = "bench2026"
USER_AGENT = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49")
"""Sent with every request: a phone in WeChat, the usual client of such a campaign."""


def bench_campaign(candidates: int = 100, campaign_id: str = CAMPAIGN_ID) -> dict[str, Any]:
    """The demo campaign (60 candidates) widened to ``candidates``, open all year.

    Rules: 10 votes a day, one per candidate, 600 per address a minute and the model's
    default per-network caps — the IP limiter runs as in production, fed varied
    ``X-Forwarded-For`` addresses; no proof of work.
    """
    data = demo_campaign(campaign_id)
    # pinned, whatever the demo says: anonymous voters, no proof of work (a load generator
    # cannot solve one per vote), the demo's quotas; other rules keep the model's defaults
    data["rules"] = {"votes_per_day": 10, "per_candidate_per_day": 1,
                     "identity": ["anonymous"], "challenge": "off",
                     "ip_per_minute": 600, "ip_per_day": 20000}
    data["status"] = "open"
    data["show_counts"] = True
    base = data["candidates"]
    assert isinstance(base, list)
    out = []
    for i in range(candidates):
        cand = copy.deepcopy(base[i % len(base)])
        cand["id"] = f"c{i + 1:03d}"
        cand["number"] = i + 1
        cand["photo_url"] = f"/static/photos/c{(i % len(base)) + 1:03d}.svg"
        out.append(cand)
    data["candidates"] = out
    # open now whatever today's date is (the demo is open for the current year only)
    year = dt.date.today().year
    data["opens_at"] = dt.datetime(year - 1, 1, 1, tzinfo=dt.UTC).isoformat()
    data["closes_at"] = dt.datetime(year + 1, 12, 31, tzinfo=dt.UTC).isoformat()
    return data


def issue_tokens(count: int, campaign_id: str, secret_key: str, pepper: str) -> list[str]:
    """Anonymous voter tokens, signed exactly as ``POST /voter`` would sign them."""
    tokens = VoterTokens([secret_key], pepper)
    return [tokens.issue(campaign_id) for _ in range(count)]


def synthetic_voter_ids(count: int, pepper: str, campaign_id: str) -> list[str]:
    """Voter ids in the shape ``identity.voter_id`` gives (for the no-HTTP benchmarks)."""
    return [voter_id(pepper, "anon", f"{campaign_id}:{i}") for i in range(count)]


@dataclass(frozen=True)
class Pairs:
    """The vote plan: for each round, every voter votes once for a distinct candidate; or,
    ``in_a_row``, each voter casts all its votes one after the other (as a citizen does on
    the page), the voters in a random order."""

    voters: int
    candidates: int
    per_voter: int
    seed: int = 7
    in_a_row: bool = False

    def __len__(self) -> int:
        return self.voters * self.per_voter

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """``(voter index, candidate index)``; candidates drawn by a Zipf-like popularity."""
        rng = random.Random(self.seed)
        cum = list(itertools.accumulate(1.0 / (rank + 1) ** 0.8
                                        for rank in range(self.candidates)))
        popular = list(range(self.candidates))
        rng.shuffle(popular)
        choices: list[list[int]] = []
        for _ in range(self.voters):
            picked: list[int] = []
            while len(picked) < min(self.per_voter, self.candidates):
                c = rng.choices(popular, cum_weights=cum)[0]
                if c not in picked:
                    picked.append(c)
            choices.append(picked)
        order = list(range(self.voters))
        if self.in_a_row:
            rng.shuffle(order)
            for v in order:
                for c in choices[v]:
                    yield v, c
            return
        for k in range(self.per_voter):
            rng.shuffle(order)
            for v in order:
                yield v, choices[v][k]


def client_ips(count: int, seed: int = 11) -> list[str]:
    """Plausible mobile client addresses: many hosts behind a few hundred /24 networks.

    Only ever used as ``X-Forwarded-For`` header values; no traffic goes to them.
    """
    rng = random.Random(seed)
    nets = [(rng.choice((36, 39, 58, 101, 112, 114, 117, 180, 183, 223)),
             rng.randrange(256), rng.randrange(256)) for _ in range(400)]
    return [f"{a}.{b}.{c}.{rng.randrange(1, 255)}" for a, b, c in
            (rng.choice(nets) for _ in range(count))]


def write_requests(path: Path, tokens: list[str], pairs: Pairs, ips: list[str]) -> int:
    """Write the vote plan as a request file; returns the number of lines. Each vote comes
    from a random address of ``ips``; with ``pairs.in_a_row``, all of a voter's from one."""
    rng = random.Random(pairs.seed + 1)
    n = 0
    with open(path, "w", encoding="ascii") as out:
        for v, c in pairs:
            body = f'{{"candidate_id":"c{c + 1:03d}"}}'
            ip = ips[v % len(ips)] if pairs.in_a_row else ips[rng.randrange(len(ips))]
            out.write(f"{tokens[v]}\t{ip}\t{body}\n")
            n += 1
    return n
