"""Proof-of-work challenges: issue, solve, verify; what a forged or misused proof gets."""

from __future__ import annotations

import base64
import json
import time

import pytest

from voting_service.errors import ChallengeFailed
from voting_service.fraud import challenge
from voting_service.fraud.challenge import Challenges, max_number
from voting_service.models import MAX_LEVEL, Rules, level_for

KEYS = ["first-secret-key-0123456789", "older-secret-key-0123456789"]
RULES = Rules(challenge_max_number=500)
VOTER = "0123456789abcdef0123456789abcdef"


def solved(signer: Challenges, *, cid: str = "c1", voter: str = VOTER, level: int = 0,
           now: float | None = None) -> str:
    issued = signer.issue(cid, voter, RULES, level, time.time() if now is None else now)
    return challenge.solve(issued)


def edit(proof: str, **changes: object) -> str:
    payload = json.loads(base64.b64decode(proof)) | changes
    return base64.b64encode(json.dumps(payload).encode()).decode()


def test_an_issued_challenge_is_altcha_shaped_and_verifies() -> None:
    signer = Challenges(KEYS)
    now = time.time()
    issued = signer.issue("c1", VOTER, RULES, 2, now)
    assert issued["algorithm"] == "SHA-256"
    assert issued["maxnumber"] == issued["maxNumber"] == 500 * 4
    assert len(issued["challenge"]) == len(issued["signature"]) == 64
    assert issued["expires"] == int(now) + challenge.TTL
    assert VOTER not in issued["salt"], "the salt names a hash of the voter, not the voter"
    proof = signer.verify(challenge.solve(issued), "c1", VOTER, now + 1)
    assert proof.level == 2
    assert proof.id == issued["challenge"][:32]
    assert proof.spent_until == proof.expires + challenge.SPENT_MARGIN


def test_a_challenge_binds_campaign_voter_time_and_key() -> None:
    signer = Challenges(KEYS)
    good = solved(signer)
    for cid, voter, when, why in (
        ("c2", VOTER, time.time(), "another campaign"),
        ("c1", "f" * 32, time.time(), "another voter"),
        ("c1", VOTER, time.time() + challenge.TTL + 1, "expired"),
    ):
        with pytest.raises(ChallengeFailed, match=why):
            signer.verify(good, cid, voter, when)
    with pytest.raises(ChallengeFailed, match="wrong"):
        Challenges(["someone-else-0123456789abc"]).verify(good, "c1", VOTER, time.time())


def test_rotated_keys_verify_challenges_of_the_older_key() -> None:
    old = solved(Challenges(KEYS[1:]))
    assert Challenges(KEYS).verify(old, "c1", VOTER, time.time()).level == 0


def test_tampering_is_caught() -> None:
    signer = Challenges(KEYS)
    good = solved(signer)
    payload = json.loads(base64.b64decode(good))
    salt = payload["salt"]
    tampered = [
        edit(good, number=payload["number"] + 1),
        edit(good, salt=salt.replace("l=0", "l=6")),
        edit(good, salt=salt.replace("&c=c1", "&c=c1&c=c2")),
        edit(good, salt=salt + "expires=99999999999&"),
        edit(good, algorithm="SHA-1"),
        edit(good, number=-1),
        edit(good, signature="0" * 64),
    ]
    for proof in tampered:
        with pytest.raises(ChallengeFailed):
            signer.verify(proof, "c1", VOTER, time.time())


@pytest.mark.parametrize("proof", [
    None, "", "not base64!", base64.b64encode(b"[]").decode(),
    base64.b64encode(b'{"algorithm": "SHA-256"}').decode(),
    base64.b64encode(b'{"algorithm": 1, "challenge": 2, "number": "x", "salt": 3,'
                     b' "signature": 4}').decode(),
    base64.b64encode(b"\xff\xfe").decode(),
])
def test_garbage_is_a_challenge_failure_not_a_crash(proof: str | None) -> None:
    with pytest.raises(ChallengeFailed):
        Challenges(KEYS).verify(proof, "c1", VOTER, time.time())


def test_extra_widget_members_are_fine() -> None:
    signer = Challenges(KEYS)
    proof = edit(solved(signer), took=1234)
    assert signer.verify(proof, "c1", VOTER, time.time()).level == 0


def test_difficulty_rises_past_the_soft_share_up_to_the_cap() -> None:
    rules = Rules(soft_limit_percent=50, challenge_max_number=1000)
    levels = [level_for(p / 100, rules) for p in range(0, 121, 5)]
    assert levels == sorted(levels)
    assert level_for(0.5, rules) == 0
    assert level_for(0.51, rules) == 1
    assert level_for(1.0, rules) == level_for(5.0, rules) == MAX_LEVEL
    assert [max_number(rules, n) for n in (0, 1, MAX_LEVEL, 99)] == [
        1000, 2000, 1000 << MAX_LEVEL, 1000 << MAX_LEVEL]
    assert level_for(0.99, Rules(soft_limit_percent=100)) == 0
    assert level_for(1.01, Rules(soft_limit_percent=100)) == MAX_LEVEL


def test_signers_are_shared_per_key_list() -> None:
    assert challenge.signer(KEYS) is challenge.signer(list(KEYS))
    assert challenge.signer(KEYS) is not challenge.signer(KEYS[:1])
