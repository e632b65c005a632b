"""Staff account primitives: TOTP against the RFC test vectors, the enrolment URI and QR
code, argon2id passwords, and the key slots of the credential throttles."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest
from redis.crc import key_slot

from voting_service.accounts import passwords, totp
from voting_service.errors import WeakPassword
from voting_service.fraud.auth_limits import AuthThrottle, Limits
from voting_service.settings import ConfigurationError, Settings

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
"""The SHA-1 seed of RFC 6238 Appendix B (and RFC 4226 Appendix D)."""


def test_hotp_matches_rfc_4226_appendix_d() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314",
                "254676", "287922", "162583", "399871", "520489"]
    assert [totp.hotp(RFC_SECRET, i) for i in range(10)] == expected


@pytest.mark.parametrize(("when", "eight_digits"), [
    (59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
    (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130"),
])
def test_totp_matches_rfc_6238_appendix_b(when: int, eight_digits: str) -> None:
    # the RFC lists 8 digits; a 6-digit code is the same value modulo 10^6
    assert totp.code_at(RFC_SECRET, when) == eight_digits[-6:]


def test_a_code_is_taken_one_step_either_side_and_each_step_once() -> None:
    secret = totp.new_secret()
    now = 1_800_000_000.0
    step = totp.step_of(now)
    assert totp.match(secret, totp.code_at(secret, now), 0, now) == step
    assert totp.match(secret, totp.code_at(secret, now - 30), 0, now) == step - 1
    assert totp.match(secret, totp.code_at(secret, now + 30), 0, now) == step + 1
    assert totp.match(secret, totp.code_at(secret, now - 90), 0, now) is None
    # the step already spent: the same code again is refused (no replay)
    assert totp.match(secret, totp.code_at(secret, now), step, now) is None
    assert totp.match(secret, "12345", 0, now) is None
    assert totp.match(secret, "１２３４５６", 0, now) is None  # full-width digits


def test_the_enrolment_uri_and_its_qr_code() -> None:
    secret = totp.new_secret()
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20
    uri = totp.uri(secret, "wang.li")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    query = parse_qs(parts.query)
    assert query["secret"] == [secret] and query["digits"] == ["6"]
    assert query["period"] == ["30"] and query["algorithm"] == ["SHA1"]
    assert query["issuer"] == [totp.ISSUER]
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and "viewBox" in svg and "<script" not in svg


def test_passwords_are_argon2id_and_checked() -> None:
    hashed = passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify(hashed, "correct horse battery")
    assert not passwords.verify(hashed, "correct horse battery!")
    assert not passwords.verify("not a hash", "x")
    assert not passwords.verify_or_dummy(None, "anything")
    with pytest.raises(WeakPassword):
        passwords.check_new("short")
    passwords.check_new(passwords.generate())


def test_an_address_and_its_network_share_one_slot() -> None:
    throttle = AuthThrottle(Limits())
    for ip in ("203.0.113.9", "2001:db8:1:2::9"):
        names, limits = throttle.address_keys("bearer", ip)
        assert len(names) == 2 and limits == (5, 25)
        assert len({key_slot(n.encode()) for n in names}) == 1
    a, _ = throttle.address_keys("console", "203.0.113.9")
    b, _ = throttle.address_keys("console", "203.0.113.10")
    assert a[1] == b[1] and a[0] != b[0]  # one /24, two addresses


def test_the_audit_retention_has_a_floor_of_180_days() -> None:
    base = {"VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20}
    assert Settings.from_env(base).audit_retention_days == 365
    assert Settings.from_env(base | {"VOTING_AUDIT_RETENTION_DAYS": "180"}
                             ).audit_retention_days == 180
    with pytest.raises(ConfigurationError, match="at least 180"):
        Settings.from_env(base | {"VOTING_AUDIT_RETENTION_DAYS": "179"})
    named = Settings.from_env(base | {"VOTING_ADMIN_TOKENS": "ci=admin:" + "t" * 20})
    assert named.admin_tokens == {"t" * 20: "admin"}
    assert named.admin_token_names == {"t" * 20: "ci"}
    with pytest.raises(ConfigurationError, match="VOTING_ADMIN_TOKENS"):
        Settings.from_env(base | {"VOTING_ADMIN_TOKENS": "Bad Name=admin:" + "t" * 20})
