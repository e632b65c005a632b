"""Pure parts of anti-fraud: network blocks, phone numbers, timing, invalidation criteria."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random

import pytest
from redis.crc import key_slot

from voting_service.errors import InvalidRequest
from voting_service.fraud import blocklist, sms, suspicious
from voting_service.fraud.invalidation import Criteria
from voting_service.models import InvalidationIn
from voting_service.redis import keys
from voting_service.vote import identity


def blocks(*entries: dict[str, object]) -> blocklist.NetworkBlocks:
    found = blocklist.NetworkBlocks()
    found.load(entries, 1)
    return found


def test_network_blocks_match_by_prefix_campaign_and_expiry() -> None:
    now = 1_000_000.0
    b = blocks(
        {"net": "198.51.100.0/24", "campaign": "c1", "until": 0},
        {"net": "2001:db8:5::/48", "campaign": "", "until": 0},
        {"net": "192.0.2.7/32", "campaign": "", "until": now + 60},
        {"net": "203.0.113.0/24", "campaign": "", "until": now - 1},
    )
    assert b.blocked("c1", "198.51.100.200", now)
    assert not b.blocked("c2", "198.51.100.200", now), "campaign scoped"
    assert not b.blocked("c1", "198.51.101.1", now)
    assert b.blocked("c2", "2001:db8:5:ffff::1", now), "every campaign"
    assert not b.blocked("c2", "2001:db8:6::1", now)
    assert b.blocked("c1", "192.0.2.7", now) and not b.blocked("c1", "192.0.2.7", now + 61)
    assert not b.blocked("c1", "203.0.113.5", now), "expired"
    assert not b.blocked("c1", "not an address", now)
    assert not blocklist.NetworkBlocks().blocked("c1", "198.51.100.1", now)


def test_network_blocks_agree_with_ipaddress_on_random_addresses() -> None:
    rng = random.Random(7)
    nets = [ipaddress.ip_network(f"{rng.randrange(1, 224)}.{rng.randrange(256)}.0.0/"
                                 f"{rng.choice([8, 12, 16, 20, 24])}", strict=False)
            for _ in range(30)]
    b = blocks(*({"net": str(n), "campaign": "", "until": 0} for n in nets))
    for _ in range(3000):
        addr = ipaddress.ip_address(rng.getrandbits(32))
        assert b.blocked("c", str(addr), 0.0) == any(addr in n for n in nets), addr


def test_overlapping_blocks_keep_the_longest() -> None:
    b = blocks({"net": "192.0.2.0/24", "campaign": "", "until": 100.0},
               {"net": "192.0.2.0/24", "campaign": "", "until": 0})
    assert b.blocked("c", "192.0.2.1", 10**9)


@pytest.mark.parametrize("value, kind, normal", [
    ("198.51.100.77/24", "ip", "198.51.100.0/24"),
    ("2001:db8::1", "ip", "2001:db8::1/128"),
    ("0123456789abcdef0123456789abcdef", "voter", "0123456789abcdef0123456789abcdef"),
])
def test_block_values_are_normalised(value: str, kind: str, normal: str) -> None:
    assert blocklist.normalize(kind, value) == normal


@pytest.mark.parametrize("value, kind", [
    ("10.0.0.0/7", "ip"), ("::/8", "ip"), ("banana", "ip"),
    ("0123456789ABCDEF0123456789ABCDEF", "voter"), ("13800138000", "voter"),
])
def test_bad_block_values_are_refused(value: str, kind: str) -> None:
    with pytest.raises(InvalidRequest):
        blocklist.normalize(kind, value)


@pytest.mark.parametrize("raw", [
    "13800138000", "+86 138 0013 8000", "+86-138-0013-8000", "008613800138000",
    "86 13800138000", "(138)00138000",
])
def test_mainland_mobile_numbers_are_normalised(raw: str) -> None:
    assert sms.normalize_phone(raw) == "13800138000"


@pytest.mark.parametrize("raw", [
    "", "1380013800", "138001380000", "12800138000", "02512345678", "+1 650 555 0100",
    "1380013800a", "+8613800138000x",
])
def test_other_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest):
        sms.normalize_phone(raw)


def test_phone_keys_and_codes_never_show_the_number() -> None:
    pid = sms.phone_key_id("pepper", "13800138000")
    assert "13800138000" not in pid and len(pid) == 32
    assert pid != identity.voter_id("pepper", "sms", "13800138000")
    assert sms.masked("13800138000") == "138****8000"
    one = sms.code_digest("pepper", "c1", pid, "123456")
    assert one != sms.code_digest("pepper", "c2", pid, "123456"), "bound to the campaign"
    assert "123456" not in one


def test_timing_spread_tells_a_timer_from_people() -> None:
    timer = [10.0 + 37 * k + (0.003 if k % 2 else -0.002) for k in range(8)]
    spread = suspicious.spread(timer)
    assert spread is not None and spread < 0.01
    rng = random.Random(3)
    people = [0.0]
    for _ in range(40):
        people.append(people[-1] + rng.expovariate(1 / 60))
    spread = suspicious.spread(people)
    assert spread is not None and spread > suspicious.SPREAD
    assert suspicious.spread([1.0, 2.0, 3.0]) is None, "too few gaps to tell"
    assert suspicious.spread([1.0, 1.001, 1.002, 1.003, 1.004]) is None, "a burst, not a rhythm"


def test_ratio_scores_are_bounded_and_monotonic() -> None:
    scores = [suspicious.ratio_score(r) for r in (0.5, 1, 2, 10, 100, 10_000)]
    assert scores == sorted(scores) and scores[0] == 0 and scores[-1] == 100


def test_invalidation_criteria() -> None:
    now = dt.datetime(2026, 7, 10, 12, tzinfo=dt.UTC)
    with pytest.raises(InvalidRequest):
        Criteria.parse("c1", InvalidationIn(reason="x"), now)
    with pytest.raises(InvalidRequest):
        Criteria.parse("c1", InvalidationIn(reason="x", ip="nope"), now)
    late = InvalidationIn(reason="x", candidate_id="c001",
                          until=now + dt.timedelta(days=1))
    assert Criteria.parse("c1", late, now).cutoff == now, "never votes of the future"
    c = Criteria.parse("c1", InvalidationIn(
        reason="x", ip="198.51.100.9/24", channel="", since=now - dt.timedelta(hours=1)), now)
    where, args = c.where()
    assert "ip <<= $3::inet" in where and args[2] == "198.51.100.0/24"


def test_each_new_script_touches_one_cluster_slot() -> None:
    def slot(key: str) -> int:
        return key_slot(key.encode())

    voter = "0123456789abcdef0123456789abcdef"
    for shard in range(16):
        group = slot(keys.quota("c1", shard, "2026-07-01", voter))
        assert slot(keys.challenge_spent("c1", shard, "ab" * 16)) == group  # cast_vote KEYS[6]
        assert slot(keys.invalidation_applied("c1", shard, 7)) == slot(keys.tally("c1", shard))
    for prefix in ("198.51.100.0/24", "2001:db8::/48"):
        assert slot(keys.sms_check_limits(prefix)) == slot(keys.sms_ip_limits(prefix)), \
            "one slot per network, any campaign"
        assert slot(keys.mint_limits("c1", prefix)) == slot(keys.mint_spent(
            "c1", prefix, "ab" * 16)) == slot(keys.limits("c1", prefix))
    pid = sms.phone_key_id("pepper", "13800138000")
    assert slot(keys.sms_code(pid)) == slot(keys.sms_limits(pid))
