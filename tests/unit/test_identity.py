"""Voter credentials → voter id, and the client's address (no I/O)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from voting_service.errors import VoterRequired
from voting_service.models import Campaign, Candidate, Channel, Rules
from voting_service.settings import IPNetwork
from voting_service.vote.identity import (
    PARTNER_MAX_LIFETIME,
    VoterTokens,
    client_ip,
    voter_id,
)
from voting_service.vote.partner import PartnerTokens

PEPPER = "pepper-0123456789"
SECRET = "channel-secret-" + "0123456789abcdef" * 4


def partner_voter(token: str, c: Campaign, pepper: str) -> tuple[str, str]:
    """``(voter_id, channel_id)`` of a partner JWT, checked afresh (a new cache each time)."""
    return PartnerTokens().voter(token, c, {ch.id: ch for ch in c.channels}, pepper)


# --- voter ids -------------------------------------------------------------------------


def test_voter_id_is_a_keyed_hmac_without_the_subject() -> None:
    a = voter_id(PEPPER, "sms", "+8613800138000")
    assert a == voter_id(PEPPER, "sms", "+8613800138000")
    assert len(a) == 32
    assert "13800138000" not in a
    assert a != voter_id("other-pepper", "sms", "+8613800138000")
    assert a != voter_id(PEPPER, "partner", "+8613800138000")
    expected = hmac.new(PEPPER.encode(), b"sms:+8613800138000", hashlib.sha256).hexdigest()[:32]
    assert a == expected


# --- anonymous voter tokens ------------------------------------------------------------


def test_token_round_trip_gives_a_stable_voter() -> None:
    tokens = VoterTokens(["key-one"], PEPPER)
    token = tokens.issue("c2026")
    assert tokens.voter(token, "c2026") == tokens.voter(token, "c2026")
    other = tokens.issue("c2026")
    assert tokens.voter(other, "c2026") != tokens.voter(token, "c2026")


def test_voter_depends_on_the_pepper() -> None:
    token = VoterTokens(["key-one"], PEPPER).issue("c2026")
    assert VoterTokens(["key-one"], PEPPER).voter(token, "c2026") != VoterTokens(
        ["key-one"], "another-pepper"
    ).voter(token, "c2026")


def test_token_of_another_campaign_is_refused() -> None:
    tokens = VoterTokens(["key-one"], PEPPER)
    token = tokens.issue("c2026")
    with pytest.raises(VoterRequired):
        tokens.voter(token, "c2027")


def test_token_signed_with_an_unknown_key_is_refused() -> None:
    token = VoterTokens(["attacker-key"], PEPPER).issue("c2026")
    with pytest.raises(VoterRequired):
        VoterTokens(["key-one"], PEPPER).voter(token, "c2026")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-10] + ("A" if t[-10] != "A" else "B") + t[-9:],  # signature
        lambda t: "x" + t[1:],  # payload
        lambda t: t.replace(".", "", 1),
        lambda t: "",
        lambda t: "garbage",
        lambda t: "a" * 600,
        lambda t: t + "." + t,
    ],
)
def test_tampered_tokens_are_refused(mangle: Any) -> None:
    tokens = VoterTokens(["key-one"], PEPPER)
    token = tokens.issue("c2026")
    bad = mangle(token)
    assert bad != token
    with pytest.raises(VoterRequired):
        tokens.voter(bad, "c2026")


def test_forged_payload_with_the_right_shape_is_refused() -> None:
    tokens = VoterTokens(["key-one"], PEPPER)
    token = tokens.issue("c2026")
    _payload, *rest = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"c":"c2026","s":"chosen"}').rstrip(b"=").decode()
    with pytest.raises(VoterRequired):
        tokens.voter(".".join([forged, *rest]), "c2026")


def test_rotated_keys_old_tokens_still_verify() -> None:
    """After rotation (``VOTING_SECRET_KEY="new old"``) tokens signed by the old key work."""
    old = VoterTokens(["old-key"], PEPPER)
    rotated = VoterTokens(["new-key", "old-key"], PEPPER)
    token = old.issue("c2026")
    assert rotated.voter(token, "c2026") == old.voter(token, "c2026")


def test_rotated_keys_the_first_key_signs() -> None:
    """New tokens are signed by the first (new) key, so the old one can be retired later."""
    rotated = VoterTokens(["new-key", "old-key"], PEPPER)
    token = rotated.issue("c2026")
    voter = rotated.voter(token, "c2026")
    assert VoterTokens(["new-key"], PEPPER).voter(token, "c2026") == voter
    with pytest.raises(VoterRequired):
        VoterTokens(["old-key"], PEPPER).voter(token, "c2026")


def test_retired_key_no_longer_verifies() -> None:
    token = VoterTokens(["old-key"], PEPPER).issue("c2026")
    with pytest.raises(VoterRequired):
        VoterTokens(["new-key"], PEPPER).voter(token, "c2026")


# --- partner JWT -----------------------------------------------------------------------


def campaign(identity: list[str] | None = None) -> Campaign:
    now = dt.datetime.now(dt.UTC)
    return Campaign(
        id="c2026", title="t", timezone="Asia/Shanghai",
        opens_at=now - dt.timedelta(days=1), closes_at=now + dt.timedelta(days=1),
        status="open", show_counts=True,
        rules=Rules(identity=identity or ["anonymous", "partner"]),  # type: ignore[arg-type]
        candidates=[Candidate(id="c001", number=1, name="n")],
        channels=[Channel(id="xhby", name="新华报业", secret=SECRET)],
    )


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "xhby", "aud": "c2026", "sub": "user-42", "exp": int(time.time()) + 3600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], secret: str | None) -> str:
    """A JWT with any header; signed HMAC-SHA256 with ``secret`` (or unsigned)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    if secret is None:
        return head + "."
    sig = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + b64(sig)


def test_valid_partner_token_gives_voter_and_channel() -> None:
    voter, channel = partner_voter(sign(claims()), campaign(), PEPPER)
    assert channel == "xhby"
    assert voter == voter_id(PEPPER, "partner", "xhby:user-42")
    again, _ = partner_voter(sign(claims(exp=int(time.time()) + 60)), campaign(), PEPPER)
    assert again == voter, "the same platform user is the same voter"
    other, _ = partner_voter(sign(claims(sub="user-43")), campaign(), PEPPER)
    assert other != voter


def test_partner_token_just_under_24_hours_is_accepted() -> None:
    token = sign(claims(exp=int(time.time()) + PARTNER_MAX_LIFETIME - 60))
    assert partner_voter(token, campaign(), PEPPER)[1] == "xhby"


WRONG_SECRET = "wrong-secret-" + "fedcba9876543210" * 4
BAD_TOKENS: dict[str, Callable[[], str]] = {
    "wrong-secret": lambda: sign(claims(), secret=WRONG_SECRET),
    "wrong-aud": lambda: sign(claims(aud="c2027")),
    "missing-aud": lambda: sign(claims(aud=None)),
    "missing-exp": lambda: sign(claims(exp=None)),
    "expired": lambda: sign(claims(exp=int(time.time()) - 10)),
    "exp-over-24h": lambda: sign(claims(exp=int(time.time()) + 25 * 3600)),
    "missing-sub": lambda: sign(claims(sub=None)),
    "empty-sub": lambda: sign(claims(sub="")),
    "long-sub": lambda: sign(claims(sub="u" * 300)),
    "unknown-iss": lambda: sign(claims(iss="unknown-channel")),
    "missing-iss": lambda: sign(claims(iss=None)),
    "not-yet-valid": lambda: sign(claims(nbf=int(time.time()) + 600)),
    "hs512": lambda: sign(claims(), alg="HS512"),
    "hs384": lambda: sign(claims(), alg="HS384"),
    "alg-none": lambda: handmade({"alg": "none", "typ": "JWT"}, claims(), None),
    "alg-None": lambda: handmade({"alg": "None", "typ": "JWT"}, claims(), None),
    # algorithm confusion: RS256 header, HMAC signature with the shared secret
    "rs256-header": lambda: handmade({"alg": "RS256", "typ": "JWT"}, claims(), SECRET),
    "hs512-header-hs256-sig": lambda: handmade({"alg": "HS512", "typ": "JWT"}, claims(), SECRET),
    "garbage": lambda: "not.a.jwt",
    "empty": lambda: "",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_partner_tokens_are_refused(case: str) -> None:
    token = BAD_TOKENS[case]()
    with pytest.raises(VoterRequired):
        partner_voter(token, campaign(), PEPPER)


def test_handmade_hs256_token_is_accepted() -> None:
    """The hand-made tokens above fail for their header, not for being hand-made."""
    token = handmade({"alg": "HS256", "typ": "JWT"}, claims(), SECRET)
    assert partner_voter(token, campaign(), PEPPER)[1] == "xhby"


def test_partner_token_refused_when_the_campaign_has_no_partner_mode() -> None:
    with pytest.raises(VoterRequired):
        partner_voter(sign(claims()), campaign(identity=["anonymous"]), PEPPER)


# --- client address --------------------------------------------------------------------

PROXIES: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("fd00::/8"),
)


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert client_ip("203.0.113.7", "198.51.100.1", ()) == "203.0.113.7"


def test_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    assert client_ip("203.0.113.7", "198.51.100.1", PROXIES) == "203.0.113.7"
    assert client_ip("203.0.113.7", "10.0.0.5, 198.51.100.1", PROXIES) == "203.0.113.7"


def test_forwarded_for_is_believed_from_a_trusted_proxy() -> None:
    assert client_ip("10.0.0.1", "198.51.100.1", PROXIES) == "198.51.100.1"
    assert client_ip("fd00::1", "2001:db8::5", PROXIES) == "2001:db8::5"


def test_rightmost_untrusted_hop_wins() -> None:
    # the client put a forged address first; our proxies appended the real ones
    assert client_ip("10.0.0.1", "1.1.1.1, 198.51.100.1, 10.0.0.2", PROXIES) == "198.51.100.1"
    assert client_ip("10.0.0.1", " 1.1.1.1 ,198.51.100.1 ", PROXIES) == "198.51.100.1"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    assert client_ip("10.0.0.1", "10.0.0.3, 10.0.0.2", PROXIES) == "10.0.0.3"


def test_garbage_hop_stops_the_walk() -> None:
    assert client_ip("10.0.0.1", "198.51.100.1, not-an-ip", PROXIES) == "10.0.0.1"
    assert client_ip("10.0.0.1", "", PROXIES) == "10.0.0.1"


def test_missing_or_bad_peer() -> None:
    assert client_ip(None, None, PROXIES) == "0.0.0.0"
    assert client_ip("not-an-ip", "198.51.100.1", PROXIES) == "0.0.0.0"
    assert client_ip("2001:db8::1", None, ()) == "2001:db8::1"


def test_voter_id_of_a_lone_surrogate_subject_hashes() -> None:
    first = voter_id("pepper", "partner", "ch:\ud800")
    assert len(first) == 32 and first != voter_id("pepper", "partner", "ch:\ud801")


# --- IPv4-mapped addresses are IPv4 ----------------------------------------------------


def test_ipv4_mapped_peers_and_hops_are_unmapped() -> None:
    assert client_ip("::ffff:198.51.100.7", None, ()) == "198.51.100.7"
    assert client_ip("::FFFF:c633:6407", None, PROXIES) == "198.51.100.7"
    # a mapped proxy is still the trusted IPv4 proxy, and a mapped hop is its IPv4 client
    assert client_ip("::ffff:10.0.0.1", "::ffff:198.51.100.1", PROXIES) == "198.51.100.1"
    assert client_ip("10.0.0.1", "::ffff:10.0.0.9, 10.0.0.2", PROXIES) == "10.0.0.9"
    assert client_ip("fe80::1%eth0", None, ()) == "fe80::1"


def test_the_same_client_has_one_set_of_prefixes_mapped_or_not() -> None:
    from voting_service.vote.identity import ip_prefixes, network_prefixes

    assert ip_prefixes("::ffff:198.51.100.7") == ["198.51.100.7/32", "198.51.100.0/24"]
    assert network_prefixes("::ffff:198.51.100.7") == ("198.51.100.7/32", "198.51.100.0/24")
    assert ip_prefixes("2001:db8::1") == ["2001:db8::/64", "2001:db8::/48"]


def test_mapped_networks_are_ipv4_networks() -> None:
    from voting_service.vote.identity import address, network

    assert network("::ffff:198.51.100.0/120") == ipaddress.ip_network("198.51.100.0/24")
    assert network(" ::ffff:198.51.100.9 ") == ipaddress.ip_network("198.51.100.9/32")
    assert network("2001:db8::/32") == ipaddress.ip_network("2001:db8::/32")
    assert address("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")
    with pytest.raises(ValueError):
        address("１９２.0.2.1")


def _itsdangerous_loads(keys: list[str], token: str, max_age: int) -> tuple[object, int] | None:
    from itsdangerous import BadData, URLSafeTimedSerializer
    try:
        data, signed = URLSafeTimedSerializer(keys[::-1], salt="voter-token").loads(
            token, max_age=max_age, return_timestamp=True)
    except BadData:
        return None
    return data, int(signed.timestamp())


def _lean_loads(keys: list[str], token: str, max_age: int) -> tuple[object, int] | None:
    from voting_service.vote.identity import TOKEN_SALT, TimedTokens, _Invalid
    try:
        return TimedTokens(keys, TOKEN_SALT).loads(token, max_age, time.time())
    except _Invalid:
        return None


def test_the_lean_token_check_agrees_with_itsdangerous() -> None:
    """Every token itsdangerous accepts, the lean check accepts with the same data and time;
    every one it refuses (tampered anywhere, other keys, other salt, expired), it refuses."""
    from itsdangerous import URLSafeTimedSerializer

    old, new, other = "old-secret-" + "k" * 20, "new-secret-" + "n" * 20, "x" * 32
    keys = [new, old]
    tokens = VoterTokens([old], "pepper")  # issued before the rotation
    issued = [tokens.issue("c2026"), tokens.issue_verified("c2026", "sms", "a" * 32),
              VoterTokens(keys, "p").issue("c2026"),
              # a payload long enough for itsdangerous to compress it ("." prefix)
              URLSafeTimedSerializer([new], salt="voter-token").dumps({"c": "z" * 300})]
    assert issued[-1].startswith(".")
    foreign = [URLSafeTimedSerializer([other], salt="voter-token").dumps({"c": "c2026"}),
               URLSafeTimedSerializer([new], salt="ops-session").dumps({"c": "c2026"})]
    accepted = 0
    for token in issued + foreign:
        variants = {token, token + "x", token[:-1], "." + token, token.replace(".", "..", 1)}
        for i in range(len(token)):  # every position changed to another base64 character
            variants.add(token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:])
        for variant in variants:
            for max_age in (3600, -1):
                lean = _lean_loads(keys, variant, max_age)
                assert lean == _itsdangerous_loads(keys, variant, max_age), variant
                accepted += lean is not None
    # ours, untouched and within their age; a variant may differ only in the unused low bits
    # of a base64 character, so it decodes to the same signature and counts as well
    assert all(_lean_loads(keys, token, 3600) is not None for token in issued)
    assert all(_lean_loads(keys, token, 3600) is None for token in foreign)
    assert len(issued) <= accepted <= 2 * len(issued)
