"""A single node's pipeline sends the votes of one write as one ``cast_votes.lua`` call
(issue 28): each vote is counted, refused or replayed as it would be on its own, in its
order; a Cluster keeps two calls a vote, in their own slots."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Backend, Harness, commands_run, redis_tallies, reset_stats
from voting_service.errors import AlreadyVoted, RateLimited
from voting_service.models import VoteIn
from voting_service.redis import keys, scripts
from voting_service.vote import voting

CID = "t2026"


async def _cast(h: Harness, ballots: list[voting.Ballot]) -> list[Any]:
    svc: Any = h.app.state.services
    live = svc.registry.get(CID)
    return await asyncio.gather(
        *(voting.cast(svc.pipeline, svc.registry, live, b) for b in ballots),
        return_exceptions=True)


async def test_a_writes_votes_are_one_call_each_answered_as_alone(
    harness: Harness, backend: Backend,
) -> None:
    h = harness
    await h.create_campaign(rules={"ip_per_minute": 0, "ip_per_day": 3, "net_per_minute": 0,
                                   "net_per_day": 0})
    svc: Any = h.app.state.services
    voters = [svc.tokens.voter(svc.tokens.issue(CID), CID) for _ in range(4)]
    ballots = [voting.Ballot(v, VoteIn(candidate_id=c, vote_id=f"j-{i}-{c}-0123"), f"10.9.{i}.1")
               for i, v in enumerate(voters) for c in ("c001", "c002")]
    ballots += [
        voting.Ballot(voters[0], VoteIn(candidate_id="c001", vote_id="j-again-0123"),
                      "10.9.0.1"),  # a second vote for c001: already voted
        voting.Ballot(voters[1], VoteIn(candidate_id="c002", vote_id="j-1-c002-0123"),
                      "10.9.1.1"),  # its own retry, in the same write: the first answer
        voting.Ballot(voters[2], VoteIn(candidate_id="c003", vote_id="j-cap-0123"),
                      "10.9.2.1"),  # the address's third vote today: still allowed
        voting.Ballot(voters[2], VoteIn(candidate_id="c004", vote_id="j-over-0123"),
                      "10.9.2.1"),  # its fourth: over the cap of 3
    ]
    for script in (scripts.cast_votes(), scripts.ip_limit(), scripts.cast_vote()):
        await h.redis.script_load(script.source)  # known, so that a call is one EVALSHA
    await reset_stats(h.redis)
    answers = await _cast(h, ballots)

    accepted = answers[:8]
    assert all(isinstance(a, voting.Accepted) for a in accepted), answers
    assert [a.votes_left_today for a in accepted] == [4, 3] * 4, "in order, per voter"
    assert isinstance(answers[8], AlreadyVoted)
    assert isinstance(answers[9], voting.Accepted) and answers[9] == answers[3]
    assert isinstance(answers[10], voting.Accepted) and answers[10].votes_left_today == 2
    assert isinstance(answers[11], RateLimited)
    assert await redis_tallies(h) == {"c001": 4, "c002": 4, "c003": 1}
    shards = {keys.shard_of(v, h.settings.shards) for v in voters}
    assert sum([int(await h.redis.xlen(keys.ledger(CID, s))) for s in shards]) == 9

    calls = await commands_run(h.redis)
    assert "eval" not in calls, calls
    # the limits and the vote each read their hash; the refused vote, its limits only
    assert calls["hmget"] == 2 * len(ballots) - 1, "every vote ran its own checks"
    if backend.cluster:  # the limits in the address's slot, the vote in the voter's
        assert calls["evalsha"] == 2 * len(ballots) - 1, calls
    else:
        assert calls["evalsha"] == 1, calls


async def test_a_joined_call_unknown_to_redis_goes_again_as_eval(
    harness: Harness, backend: Backend,
) -> None:
    h = harness
    await h.create_campaign()
    svc: Any = h.app.state.services
    voters = [svc.tokens.voter(svc.tokens.issue(CID), CID) for _ in range(6)]
    ballots = [voting.Ballot(v, VoteIn(candidate_id="c005"), "10.8.0.1") for v in voters]
    await h.redis.script_flush()
    answers = await _cast(h, ballots)
    assert all(isinstance(a, voting.Accepted) for a in answers), answers
    assert await redis_tallies(h) == {"c005": 6}
    again = await _cast(h, [voting.Ballot(v, VoteIn(candidate_id="c006"), "10.8.0.1")
                            for v in voters])
    assert all(isinstance(a, voting.Accepted) for a in again), again
    assert await redis_tallies(h) == {"c005": 6, "c006": 6}
