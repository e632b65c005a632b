"""What the fault tests share: the stack they break (``voting_service.stack``, one web app
and one flusher on a campaign of 20 candidates) and the voters who keep voting meanwhile,
every answer classified."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import campaign_payload
from voting_service.redis import keys
from voting_service.stack import Stack
from voting_service.vote.identity import VoterTokens

PHASE = float(os.environ.get("FAULT_SECONDS", "2.5"))
"""Seconds of load before and after a fault; ``FAULT_SECONDS`` stretches it for a long run."""
CLIENTS = 12
SHARDS = 8
CID = "t2026"


async def started(stack: Stack, flusher: str, **rules: Any) -> Stack:
    """``stack``'s servers migrated, campaign ``t2026`` loaded, its web app and a flusher
    (consumer name ``flusher``) running and ready."""
    stack.start()
    stack.migrate()
    payload = campaign_payload(candidates=20, rules={
        "votes_per_day": 1000, "per_candidate_per_day": 1000, **rules})
    (stack.dir / "campaign.json").write_text(json.dumps(payload))
    loaded = stack.cli("campaign", "load", str(stack.dir / "campaign.json"))
    assert loaded.returncode == 0, loaded.stderr
    stack.start_web()
    stack.start_flusher(flusher)
    await stack.ready()
    return stack


@dataclass
class Outcomes:
    acknowledged: dict[str, str] = field(default_factory=dict)  # vote_id -> candidate
    unknown: dict[str, str] = field(default_factory=dict)
    rejected: Counter[int] = field(default_factory=Counter)
    fast_503: int = 0
    slow_failures: int = 0
    acked_at: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, shard)
    token: dict[str, str] = field(default_factory=dict)  # vote_id -> the voter's token


class Load:
    """``CLIENTS`` concurrent clients voting (each vote a new vote_id) until stopped."""

    def __init__(self, stack: Stack, voters: int) -> None:
        self.stack = stack
        tokens = VoterTokens([stack.secret_key], stack.pepper)
        self.tokens = [tokens.issue(CID) for _ in range(voters)]
        self.shard = {t: keys.shard_of(tokens.voter(t, CID), SHARDS) for t in self.tokens}
        self.out = Outcomes()
        self.stop = asyncio.Event()

    async def client(self, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=self.stack.base, timeout=3.0) as http:
            while not self.stop.is_set():
                vote_id, cand = uuid.uuid4().hex, f"c{rng.randint(1, 20):03d}"
                token = rng.choice(self.tokens)
                self.out.token[vote_id] = token
                started = time.monotonic()
                try:
                    r = await http.post(f"/api/v1/campaigns/{CID}/votes",
                                        json={"candidate_id": cand, "vote_id": vote_id},
                                        headers={"X-Voter-Token": token})
                except httpx.TransportError as exc:
                    self.out.unknown[vote_id] = cand
                    if isinstance(exc, httpx.TimeoutException):
                        self.out.slow_failures += 1
                    await asyncio.sleep(0.05)
                    continue
                if r.status_code == 200:
                    self.out.acknowledged[vote_id] = cand
                    self.out.acked_at.append((time.monotonic(), self.shard[token]))
                elif r.status_code >= 500:
                    self.out.unknown[vote_id] = cand
                    if r.status_code == 503 and time.monotonic() - started < 2.0:
                        self.out.fast_503 += 1
                    else:
                        self.out.slow_failures += 1
                    await asyncio.sleep(0.05)
                else:
                    self.out.rejected[r.status_code] += 1

    @contextlib.asynccontextmanager
    async def voting(self) -> AsyncIterator[Outcomes]:
        """The clients vote inside the block; on the way out they finish their last vote."""
        tasks = [asyncio.create_task(self.client(i)) for i in range(CLIENTS)]
        try:
            yield self.out
        finally:
            self.stop.set()
            await asyncio.gather(*tasks)

    async def until(self, seen: Callable[[Outcomes], bool], within: float, what: str) -> float:
        """Poll the outcomes until ``seen`` holds (fail after ``within`` s); when it held."""
        deadline = time.monotonic() + within
        while not seen(self.out):
            assert time.monotonic() < deadline, f"not seen within {within:.0f} s: {what}"
            await asyncio.sleep(0.05)
        return time.monotonic()
