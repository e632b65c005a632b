"""Redis key names (DESIGN §4): one Cluster slot per vote, IP limits tagged by prefix."""

from __future__ import annotations

import re
import zlib

import pytest
from redis.crc import key_slot

from voting_service.redis import keys
from voting_service.vote.identity import ip_prefixes, network_prefixes


def slot(key: str) -> int:
    return key_slot(key.encode())


def hash_tag(key: str) -> str:
    """The part of the key Cluster hashes: the first ``{…}`` with something inside."""
    match = re.search(r"\{([^}]+)\}", key)
    assert match is not None, f"{key!r} has no hash tag"
    return match.group(1)


def vote_keys(campaign: str, shard: int, voter: str, day: str = "2026-07-01") -> list[str]:
    """Every key ``cast_vote.lua`` gets for one vote (the order of ``voting.cast``)."""
    return [
        keys.quota(campaign, shard, day, voter),
        keys.tally(campaign, shard),
        keys.ledger(campaign, shard),
        keys.idempotency(campaign, shard, voter, "0123456789abcdef"),
        keys.blocked_voters(campaign, shard),
    ]


def test_slot_function_matches_the_cluster_spec() -> None:
    # CRC16/XMODEM("123456789") = 0x31C3, the check value of the Redis Cluster spec
    assert slot("123456789") == 0x31C3 % 16384
    assert slot("{user1000}.following") == slot("{user1000}.followers")


@pytest.mark.parametrize("shards", [1, 8, 16, 1024])
def test_every_key_of_one_vote_shares_one_slot(shards: int) -> None:
    for n in range(200):
        voter = f"{n:032x}"
        shard = keys.shard_of(voter, shards)
        assert 0 <= shard < shards
        ks = vote_keys("jsgj2026", shard, voter)
        assert len(set(ks)) == len(ks), "keys must be distinct"
        assert {hash_tag(k) for k in ks} == {f"c:jsgj2026:g{shard:02d}"}
        assert len({slot(k) for k in ks}) == 1, ks


def test_shard_is_crc32_of_the_voter_and_stable() -> None:
    voter = "9f86d081884c7d659a2feaa0c55ad015"
    assert keys.shard_of(voter, 16) == zlib.crc32(voter.encode()) % 16
    assert keys.shard_of(voter, 16) == keys.shard_of(voter, 16)


def test_shard_groups_spread_over_slots_and_campaigns() -> None:
    slots = {slot(keys.tally("jsgj2026", s)) for s in range(16)}
    assert len(slots) > 1, "all shard groups in one slot would make one hot node"
    assert keys.tally("a", 3) != keys.tally("b", 3)
    assert keys.ledger("a", 3) != keys.ledger("a", 4)


def test_voters_spread_over_shard_groups() -> None:
    shards = {keys.shard_of(f"voter-{n}", 16) for n in range(1000)}
    assert shards == set(range(16))


def test_daily_key_carries_the_date() -> None:
    assert "2026-07-01" in keys.quota("c", 0, "2026-07-01", "v")
    assert keys.quota("c", 0, "2026-07-01", "v") != keys.quota("c", 0, "2026-07-02", "v")


def test_no_key_is_tagged_by_candidate() -> None:
    # cast_vote.lua gets the candidate as an argument, never inside a key name
    for k in vote_keys("jsgj2026", 5, "v" * 32):
        assert "c001" not in k
    for k in (keys.limits("jsgj2026", "1.2.3.0/24"), keys.mint_limits("jsgj2026", "1.2.3.0/24")):
        assert "c001" not in k


@pytest.mark.parametrize("ip", ["203.0.113.7", "2001:db8:1:2:3:4:5:6"])
def test_limit_hashes_are_tagged_by_network(ip: str) -> None:
    _, network = network_prefixes(ip)
    votes, minted = keys.limits("jsgj2026", network), keys.mint_limits("jsgj2026", network)
    assert hash_tag(votes) == hash_tag(minted) == f"ip:jsgj2026:{network}"
    assert votes != minted
    assert keys.limits("c1", network) != keys.limits("c2", network)


def test_level_fields_of_one_network_differ() -> None:
    """Every level of a network is a field prefix in its hash: none may collide."""
    net = "1.2.3.0/24"
    fields = {keys.level_field(f"1.2.3.{h}/32", net) for h in range(256)}
    assert len(fields) == 256 and "" not in fields
    assert keys.level_field(net, net) == ""
    assert keys.level_field("1.2.3.7/32", net) == "7:"
    v6 = "2001:db8:1::/48"
    assert keys.level_field("2001:db8:1:2::/64", v6) != keys.level_field("2001:db8:1:3::/64", v6)
    assert keys.level_field(v6, v6) == ""


def test_ip_prefixes() -> None:
    assert ip_prefixes("203.0.113.7") == ["203.0.113.7/32", "203.0.113.0/24"]
    assert ip_prefixes("2001:db8:1:2:3:4:5:6") == ["2001:db8:1:2::/64", "2001:db8:1::/48"]
    # two addresses of one IPv6 /64 are one network
    assert ip_prefixes("2001:db8::1")[0] == ip_prefixes("2001:db8::ffff:1")[0]
    with pytest.raises(ValueError):
        ip_prefixes("not-an-ip")


def test_a_flusher_lease_lives_in_the_slot_of_its_stream() -> None:
    """The lease is renewed before a WAITAOF on the stream's node: it must be on that node."""
    for shard in range(16):
        assert slot(keys.flusher_lease("c1", shard)) == slot(keys.ledger("c1", shard))
    assert keys.flusher_lease("c1", 1) != keys.flusher_lease("c1", 2)
