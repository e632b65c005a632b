"""Proof of work through HTTP: single use, bound to voter and campaign, adaptive difficulty."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from tests.conftest import Backend, Harness
from tests.integration.antifraud_support import (
    CHALLENGE,
    CID,
    NO_LIMITS,
    problem_code,
    proof_for,
    redis_totals,
    relaxed_settings,
    svc,
    vote,
)
from tests.integration.antifraud_support import issued as token_for
from voting_service.fraud import challenge
from voting_service.models import Rules
from voting_service.settings import Settings

EASY = {"challenge": "on", "challenge_max_number": 1000, **NO_LIMITS}


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return relaxed_settings(backend, pg_url)


async def test_a_vote_needs_a_fresh_proof_and_spends_it(harness: Harness) -> None:
    await harness.create_campaign(rules=EASY)
    token = await harness.voter()
    r = await vote(harness.client, token, "c001")
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")

    r = await harness.client.get(CHALLENGE, headers={"X-Voter-Token": token})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    issued = r.json()
    assert issued["algorithm"] == "SHA-256"
    assert issued["maxnumber"] == 1000
    assert set(issued) >= {"challenge", "salt", "signature", "expires"}
    assert 0 < issued["expires"] - time.time() <= challenge.TTL
    proof = challenge.solve(issued)

    r = await vote(harness.client, token, "c001", proof=proof)
    assert r.status_code == 200, r.text
    r = await vote(harness.client, token, "c002", proof=proof)
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")
    assert "already used" in r.json()["detail"]
    # a retry of the counted vote (same vote_id) still gets the first answer
    first = await vote(harness.client, token, "c003", proof=await proof_for(harness.client, token),
                       vote_id="retry-0123456789")
    again = await vote(harness.client, token, "c003", proof=proof, vote_id="retry-0123456789")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert await redis_totals(harness) == {"c001": 1, "c003": 1}


async def test_the_challenge_needs_a_voter_credential(harness: Harness) -> None:
    await harness.create_campaign(rules=EASY)
    r = await harness.client.get(CHALLENGE)
    assert (r.status_code, problem_code(r)) == (401, "voter_required")
    r = await harness.client.get(CHALLENGE, headers={"X-Voter-Token": "forged"})
    assert (r.status_code, problem_code(r)) == (401, "voter_required")


async def test_a_proof_is_bound_to_its_voter_and_campaign(harness: Harness) -> None:
    await harness.create_campaign(rules=EASY)
    alice, bob = await harness.voter(), await harness.voter()
    stolen = await proof_for(harness.client, alice)
    r = await vote(harness.client, bob, "c001", proof=stolen)
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")
    assert "another voter" in r.json()["detail"]
    signer = challenge.signer(harness.settings.secret_keys)
    elsewhere = signer.issue("other", svc(harness).tokens.credential(alice, CID)[0],
                             Rules(challenge_max_number=100), 0, time.time())
    r = await vote(harness.client, alice, "c001", proof=challenge.solve(elsewhere))
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")
    assert "another campaign" in r.json()["detail"]
    r = await vote(harness.client, alice, "c001", proof=stolen)
    assert r.status_code == 200, r.text
    assert await redis_totals(harness) == {"c001": 1}


async def test_expired_forged_and_garbled_proofs_fail(harness: Harness) -> None:
    await harness.create_campaign(rules=EASY)
    token = await harness.voter()
    voter = svc(harness).tokens.credential(token, CID)[0]
    signer = challenge.signer(harness.settings.secret_keys)
    rules = Rules(challenge_max_number=100)
    expired = signer.issue(CID, voter, rules, 0, time.time() - challenge.TTL - 5)
    r = await vote(harness.client, token, "c001", proof=challenge.solve(expired))
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")
    assert "expired" in r.json()["detail"]

    foreign = challenge.Challenges(["a-key-we-never-had-0123456789"])
    forged = foreign.issue(CID, voter, rules, 0, time.time())
    r = await vote(harness.client, token, "c001", proof=challenge.solve(forged))
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")

    good = signer.issue(CID, voter, rules, 0, time.time())
    payload = json.loads(base64.b64decode(challenge.solve(good)))
    wrong = dict(payload, number=payload["number"] + 1)
    harder = dict(payload, salt=payload["salt"].replace("l=0", "l=6"))
    garbled = ["%%%", base64.b64encode(b"[1,2]").decode(), base64.b64encode(b"{}").decode(),
               base64.b64encode(json.dumps(wrong).encode()).decode(),
               base64.b64encode(json.dumps(harder).encode()).decode()]
    for proof in garbled:
        r = await vote(harness.client, token, "c001", proof=proof)
        assert (r.status_code, problem_code(r)) == (403, "challenge_failed"), proof
    assert await redis_totals(harness) == {}


async def test_rotated_secret_keys_still_verify_issued_challenges(harness: Harness) -> None:
    await harness.create_campaign(rules=EASY)
    token = await harness.voter()
    issued = (await harness.client.get(CHALLENGE, headers={"X-Voter-Token": token})).json()
    rotated = challenge.Challenges(["a-new-key-0123456789abcdef", *harness.settings.secret_keys])
    voter = svc(harness).tokens.credential(token, CID)[0]
    checked = rotated.verify(challenge.solve(issued), CID, voter, time.time())
    assert checked.level == 0


async def test_proofs_are_ignored_when_the_campaign_asks_none(harness: Harness) -> None:
    await harness.create_campaign(rules=NO_LIMITS)
    token = await harness.voter()
    r = await vote(harness.client, token, "c001", proof="not even base64!")
    assert r.status_code == 200, r.text


async def test_200_concurrent_votes_with_one_proof_count_once(harness: Harness) -> None:
    await harness.create_campaign(rules={**EASY, "votes_per_day": 12})
    token = await harness.voter()
    proof = await proof_for(harness.client, token)
    responses = await asyncio.gather(*(
        vote(harness.client, token, f"c{i % 12 + 1:03d}", proof=proof) for i in range(200)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 1
    assert codes.count(403) == 199
    assert {problem_code(r) for r in responses if r.status_code == 403} == {"challenge_failed"}
    assert sum((await redis_totals(harness)).values()) == 1


async def test_adaptive_difficulty_rises_as_the_address_nears_its_cap(harness: Harness) -> None:
    await harness.create_campaign(rules={
        **NO_LIMITS, "challenge": "adaptive", "challenge_max_number": 200, "ip_per_day": 10,
        "soft_limit_percent": 50, "votes_per_day": 1})
    tokens = [token_for(harness) for _ in range(12)]
    early = await proof_for(harness.client, tokens[0])  # issued while the address is quiet
    levels: list[int] = []
    for token in tokens[1:8]:
        issued = (await harness.client.get(CHALLENGE, headers={"X-Voter-Token": token})).json()
        levels.append((issued["maxnumber"] // 200).bit_length() - 1)
        r = await vote(harness.client, token, "c001", proof=challenge.solve(issued))
        assert r.status_code == 200, r.text
    # 7 votes of 10: the address is past its soft cap, difficulty went up step by step
    assert levels == sorted(levels)
    assert levels[0] == 0 and levels[-1] >= 3, levels
    # a cheap proof fetched while the address was quiet no longer passes
    r = await vote(harness.client, tokens[0], "c001", proof=early)
    assert (r.status_code, problem_code(r)) == (403, "challenge_failed")
    assert "busy" in r.json()["detail"]
    # the hard cap still holds whatever work was done
    accepted = 7
    for token in tokens[8:]:
        r = await vote(harness.client, token, "c001", proof=await proof_for(harness.client, token))
        if r.status_code == 200:
            accepted += 1
        else:
            assert (r.status_code, problem_code(r)) == (429, "rate_limited")
    assert accepted < 10  # the refused cheap proof used one of the address's ten votes
    assert (await redis_totals(harness))["c001"] == accepted


async def test_fetching_challenges_uses_none_of_the_address_votes(harness: Harness) -> None:
    await harness.create_campaign(rules={
        **NO_LIMITS, "challenge": "adaptive", "challenge_max_number": 100, "ip_per_day": 3,
        "votes_per_day": 1})
    tokens = [token_for(harness) for _ in range(4)]
    for _ in range(30):
        r = await harness.client.get(CHALLENGE, headers={"X-Voter-Token": tokens[0]})
        assert r.status_code == 200 and r.json()["maxnumber"] == 100
    codes = [(await vote(harness.client, t, "c001",
                         proof=await proof_for(harness.client, t))).status_code for t in tokens]
    assert codes == [200, 200, 200, 429]
