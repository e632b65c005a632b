"""Settings.from_env (DESIGN §8): every setting read in one place, bad values refused."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from voting_service.settings import ConfigurationError, Secret, Settings

ADMIN = "admin-token-0123456789abcdef"
OPS = "ops-token-0123456789abcdefgh"


def env(**changes: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "VOTING_SECRET_KEY": "secret-key-0123456789abcdef",
        "VOTING_PEPPER": "pepper-0123456789abcdef",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_minimal_environment_gives_defaults() -> None:
    s = Settings.from_env(env())
    assert s.redis_url is None
    assert s.database_url is None
    assert s.redis_cluster is False
    assert s.admin_tokens == {}
    assert s.trusted_proxies == ()
    assert s.shards == 16
    assert s.data_dir == Path(".voting-data")
    assert s.accept_weak_durability is False
    assert s.secret_keys == ["secret-key-0123456789abcdef"]
    assert str(s.pepper) == "pepper-0123456789abcdef"


def test_full_environment() -> None:
    s = Settings.from_env(env(
        REDIS_URL="redis://127.0.0.1:7000/0",
        VOTING_REDIS_CLUSTER="1",
        DATABASE_URL="postgresql://u@h/db",
        VOTING_ADMIN_TOKENS=f"admin:{ADMIN}, ops:{OPS}",
        VOTING_TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.1,fd00::/8",
        VOTING_SHARDS="32",
        VOTING_DATA_DIR="/var/lib/voting",
        VOTING_ACCEPT_WEAK_DURABILITY="yes",
        VOTING_REDIS_TIMEOUT="0.5",
        VOTING_SECRET_KEY="new-key-0123456789 old-key-0123456789",
    ))
    assert s.redis_url == "redis://127.0.0.1:7000/0"
    assert s.redis_cluster is True
    assert s.database_url == "postgresql://u@h/db"
    assert s.admin_tokens == {ADMIN: "admin", OPS: "ops"}
    assert s.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.1/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert s.shards == 32
    assert s.data_dir == Path("/var/lib/voting")
    assert s.accept_weak_durability is True
    assert s.redis_timeout == 0.5
    assert s.secret_keys == ["new-key-0123456789", "old-key-0123456789"]


def test_empty_urls_mean_embedded() -> None:
    s = Settings.from_env(env(REDIS_URL="", DATABASE_URL=""))
    assert s.redis_url is None and s.database_url is None


@pytest.mark.parametrize("missing", ["VOTING_SECRET_KEY", "VOTING_PEPPER"])
def test_missing_secrets_are_refused(missing: str) -> None:
    with pytest.raises(ConfigurationError, match=missing):
        Settings.from_env(env(**{missing: None}))
    with pytest.raises(ConfigurationError, match=missing):
        Settings.from_env(env(**{missing: ""}))


@pytest.mark.parametrize("missing", ["VOTING_SECRET_KEY", "VOTING_PEPPER"])
def test_blank_secrets_are_refused(missing: str) -> None:
    with pytest.raises(ConfigurationError, match=missing):
        Settings.from_env(env(**{missing: "   "}))


@pytest.mark.parametrize(
    "proxies", ["*", "10.0.0.0/8,*", " * ", "not-a-network", "10.0.0.0/33", "10.0.0.0/8;"]
)
def test_bad_trusted_proxies_are_refused(proxies: str) -> None:
    with pytest.raises(ConfigurationError, match="VOTING_TRUSTED_PROXIES"):
        Settings.from_env(env(VOTING_TRUSTED_PROXIES=proxies))


@pytest.mark.parametrize(
    "tokens",
    [
        "root:" + ADMIN,  # unknown role
        ADMIN,  # no role
        "admin:short",  # under 16 characters
        "admin:",  # empty token
        f"admin:{ADMIN},viewer:{OPS}",
        f"Admin:{ADMIN}",
    ],
)
def test_bad_admin_tokens_are_refused(tokens: str) -> None:
    with pytest.raises(ConfigurationError, match="VOTING_ADMIN_TOKENS"):
        Settings.from_env(env(VOTING_ADMIN_TOKENS=tokens))


def test_admin_token_may_contain_colons() -> None:
    s = Settings.from_env(env(VOTING_ADMIN_TOKENS="admin:abc:def:0123456789abcdef"))
    assert s.admin_tokens == {"abc:def:0123456789abcdef": "admin"}


@pytest.mark.parametrize("shards", ["0", "-1", "1025"])
def test_shards_out_of_range_are_refused(shards: str) -> None:
    with pytest.raises(ConfigurationError, match="VOTING_SHARDS"):
        Settings.from_env(env(VOTING_SHARDS=shards))


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("ON", True),
                                            ("0", False), ("", False), ("no", False)])
def test_flags(value: str, expected: bool) -> None:
    assert Settings.from_env(env(VOTING_REDIS_CLUSTER=value)).redis_cluster is expected


def test_secrets_never_show_in_repr() -> None:
    s = Settings.from_env(env())
    assert "secret-key-0123456789abcdef" not in repr(s)
    assert "pepper-0123456789abcdef" not in repr(s)
    assert repr(Secret("hunter2")) == "Secret('**********')"
    assert str(Secret("hunter2")) == "hunter2"
    assert not Secret("")


def test_defaults_without_env_generate_random_secrets() -> None:
    a, b = Settings(), Settings()
    assert str(a.secret_key) and str(a.secret_key) != str(b.secret_key)
    assert str(a.pepper) != str(b.pepper)


@pytest.mark.parametrize("name", ["VOTING_SHARDS", "VOTING_REDIS_TIMEOUT"])
def test_non_numeric_values_are_configuration_errors(name: str) -> None:
    env = {"VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20, name: "many"}
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env)


def test_replica_acks() -> None:
    assert Settings.from_env(env()).redis_replica_acks == 0
    assert Settings.from_env(env(VOTING_REDIS_REPLICA_ACKS="1")).redis_replica_acks == 1
    for bad in ("-1", "6", "one"):
        with pytest.raises(ConfigurationError, match="VOTING_REDIS_REPLICA_ACKS"):
            Settings.from_env(env(VOTING_REDIS_REPLICA_ACKS=bad))


def test_metrics_settings() -> None:
    default = Settings.from_env(env())
    assert ipaddress.ip_address("127.0.0.1") in default.metrics_allow[0]
    assert any(ipaddress.ip_address("::1") in n for n in default.metrics_allow)
    assert not any(ipaddress.ip_address("10.0.0.5") in n for n in default.metrics_allow)
    assert default.vote_metrics and default.health_interval == 5.0
    custom = Settings.from_env(env(VOTING_METRICS_ALLOW="10.0.0.0/8", VOTING_METRICS="0",
                                   VOTING_HEALTH_INTERVAL="2.5"))
    assert custom.metrics_allow == (ipaddress.ip_network("10.0.0.0/8"),)
    assert not custom.vote_metrics and custom.health_interval == 2.5
    assert Settings.from_env(env(VOTING_METRICS_ALLOW="")).metrics_allow == ()  # tokens only
    with pytest.raises(ConfigurationError, match="VOTING_METRICS_ALLOW"):
        Settings.from_env(env(VOTING_METRICS_ALLOW="*"))
    with pytest.raises(ConfigurationError, match="VOTING_METRICS_ALLOW"):
        Settings.from_env(env(VOTING_METRICS_ALLOW="10.0.0.0/99"))


def test_slow_reader_settings() -> None:
    s = Settings.from_env(env())
    assert (s.db_pool_public, s.db_pool_admin, s.db_pool_health) == (4, 4, 2)
    assert (s.db_acquire_timeout, s.db_admin_acquire_timeout, s.write_timeout) == (2.0, 60, 30)
    assert s.ledger_cache == Path(".voting-data") / "published"
    s = Settings.from_env({**env(), "VOTING_DB_POOL_PUBLIC": "8", "VOTING_DB_POOL_HEALTH": "1",
                           "VOTING_WRITE_TIMEOUT": "5", "VOTING_LEDGER_CACHE_DIR": "/var/x"})
    assert (s.db_pool_public, s.db_pool_health, s.write_timeout) == (8, 1, 5.0)
    assert s.ledger_cache == Path("/var/x")
    for name, value in (("VOTING_DB_POOL_ADMIN", "0"), ("VOTING_DB_POOL_PUBLIC", "101"),
                        ("VOTING_WRITE_TIMEOUT", "0"), ("VOTING_DB_ACQUIRE_TIMEOUT", "x")):
        with pytest.raises(ConfigurationError, match=name):
            Settings.from_env({**env(), name: value})


def test_legacy_records_until_is_an_instant_with_its_offset() -> None:
    assert Settings.from_env(env()).legacy_records_until == 0.0
    s = Settings.from_env(env(VOTING_LEGACY_RECORDS_UNTIL="2026-12-10T12:00+08:00"))
    assert s.legacy_records_until == 1796875200.0  # 04:00 UTC
    for bad in ("2026-12-10T12:00", "next week", "1796875200"):
        with pytest.raises(ConfigurationError, match="VOTING_LEGACY_RECORDS_UNTIL"):
            Settings.from_env(env(VOTING_LEGACY_RECORDS_UNTIL=bad))
