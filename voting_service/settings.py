"""Every setting, read from the environment in one place (DESIGN §8).

Values are passed into the parts that need them; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)


class ConfigurationError(Exception):
    pass


def _parse_admin_tokens(raw: str) -> dict[str, str]:
    """``role:token,role:token`` → {token: role}."""
    tokens: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        role, sep, token = item.partition(":")
        if not sep or role not in ("admin", "ops") or len(token) < 16:
            raise ConfigurationError(
                "VOTING_ADMIN_TOKENS must be 'admin:<token>' or 'ops:<token>' items, "
                "tokens of at least 16 characters"
            )
        tokens[token] = role
    return tokens


def _parse_proxies(raw: str, name: str = "VOTING_TRUSTED_PROXIES") -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        if item == "*":
            raise ConfigurationError(f"{name} must list CIDRs, never '*'")
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigurationError(f"{name}: bad CIDR {item!r}") from exc
    return tuple(nets)


LOOPBACK = "127.0.0.0/8,::1/128"


def _number(env: Mapping[str, str], name: str, default: str, cast: type[int] | type[float]) -> Any:
    raw = env.get(name, default)
    try:
        if not raw.strip().isascii():  # int() and float() take any script's digits
            raise ValueError(raw)
        return cast(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number") from exc


def _replica_acks(env: Mapping[str, str]) -> int:
    acks = _number(env, "VOTING_REDIS_REPLICA_ACKS", "0", int)
    if not 0 <= acks <= 5:
        raise ConfigurationError("VOTING_REDIS_REPLICA_ACKS must be between 0 and 5")
    return int(acks)


def _head_timeout(env: Mapping[str, str]) -> float:
    seconds = _number(env, "VOTING_HEAD_TIMEOUT", "10", float)
    if not 0.1 <= seconds <= 300:
        raise ConfigurationError("VOTING_HEAD_TIMEOUT must be between 0.1 and 300 seconds")
    return float(seconds)


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _on(env: Mapping[str, str], name: str) -> bool:
    """A switch that is on unless set to 0, off or no."""
    return env.get(name, "1").strip().lower() not in ("0", "off", "no")


def _sms_settings(env: Mapping[str, str]) -> dict[str, Any]:
    sender = env.get("VOTING_SMS_SENDER", "console").strip().lower() or "console"
    url = env.get("VOTING_SMS_HTTP_URL", "").strip()
    if sender not in ("console", "http"):
        raise ConfigurationError("VOTING_SMS_SENDER must be 'console' or 'http'")
    if sender == "http" and not url.startswith(("http://", "https://")):
        raise ConfigurationError("VOTING_SMS_SENDER=http needs VOTING_SMS_HTTP_URL (http[s]://…)")
    return {
        "sms_sender": sender,
        "sms_http_url": url,
        "sms_http_token": Secret(env.get("VOTING_SMS_HTTP_TOKEN", "")),
        "sms_http_timeout": _number(env, "VOTING_SMS_HTTP_TIMEOUT", "5", float),
    }


def _log_settings(env: Mapping[str, str]) -> dict[str, Any]:
    key = env.get("VOTING_LOG_SIGNING_KEY", "").strip()
    if key:
        try:
            ok = len(bytes.fromhex(key)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise ConfigurationError("VOTING_LOG_SIGNING_KEY must be 64 hex digits (an Ed25519"
                                     " seed: `python -c 'import secrets; print(secrets"
                                     ".token_hex(32))'`)")
    minutes = _number(env, "VOTING_LOG_HEAD_MINUTES", "10", float)
    if not 0.05 <= minutes <= 1440:
        raise ConfigurationError("VOTING_LOG_HEAD_MINUTES must be between 0.05 and 1440")
    return {"log_signing_key": Secret(key), "log_head_minutes": minutes,
            "log_positions": _on(env, "VOTING_LOG_POSITIONS")}


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    """``redis://…``; ``None`` means the embedded Valkey started by ``voting-service up``."""
    redis_cluster: bool = False
    database_url: str | None = None
    secret_key: Secret = field(default_factory=lambda: Secret(secrets.token_urlsafe(32)))
    """Signs voter tokens; a list separated by spaces rotates keys (first signs, all verify)."""
    pepper: Secret = field(default_factory=lambda: Secret(secrets.token_urlsafe(32)))
    """Keys the identity HMAC: without it a voter id cannot be tied back to a phone number."""
    admin_tokens: Mapping[str, str] = field(default_factory=dict)
    trusted_proxies: tuple[IPNetwork, ...] = ()
    shards: int = 16
    data_dir: Path = Path(".voting-data")
    accept_weak_durability: bool = False
    """Accept a Redis whose persistence could lose acknowledged votes."""
    redis_timeout: float = 0.8
    """Seconds a vote waits for Redis before answering 503 (the contract is 1 s)."""
    redis_replica_acks: int = 0
    """Replicas that must hold a vote (``WAITAOF 1 N`` per batch per node) before it is
    answered 200; 0 = the master's own fsync only. Production: at least 1."""
    config_refresh: float = 1.0
    """Seconds between checks for campaign changes made by other workers."""
    head_timeout: float = 10.0
    """Seconds a connection may take to send a complete request head (``web/protocol.py``)."""
    sms_sender: str = "console"
    """``console`` prints SMS codes (local use only); ``http`` posts them to a gateway."""
    sms_http_url: str = ""
    """The gateway endpoint for ``http``: receives JSON ``{phone, code, text, ttl_seconds}``."""
    sms_http_token: Secret = field(default_factory=lambda: Secret(""))
    """Sent to the gateway as ``Authorization: Bearer <token>`` when set."""
    sms_http_timeout: float = 5.0
    health_interval: float = 5.0
    """Seconds between health snapshots (backlog, lag, drift) taken by every web worker."""
    metrics_allow: tuple[IPNetwork, ...] = _parse_proxies(LOOPBACK)
    """Addresses that may read ``/metrics`` without a token (the Prometheus server)."""
    vote_metrics: bool = True
    """Count every vote in ``voting_votes_total`` and its duration (off only to measure
    what counting costs: ``make bench`` phase M)."""
    direct_votes: bool = True
    """Votes answered by the HTTP protocol itself (``web/protocol.py``), not through ASGI;
    off only to measure what that saves (``make bench`` phase D)."""

    # -- transparency log (issue #26, docs/verification.md) ---------------------------------
    log_signing_key: Secret = field(default_factory=lambda: Secret(""))
    """Ed25519 seed (64 hex digits) the flusher signs tree heads with, and the web shows the
    public half of; empty: the tree is built, no heads are signed."""
    log_head_minutes: float = 10.0
    """Minutes between signed tree heads (besides the one at each local midnight)."""
    log_positions: bool = True
    """Give flushed rows log positions (off only to measure the log's cost: ``make bench``
    phase B; a ledger flushed without them has no log)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        shards = _number(env, "VOTING_SHARDS", "16", int)
        if not 1 <= shards <= 1024:
            raise ConfigurationError("VOTING_SHARDS must be between 1 and 1024")
        secret_key = env.get("VOTING_SECRET_KEY", "")
        pepper = env.get("VOTING_PEPPER", "")
        for name, value in (("VOTING_SECRET_KEY", secret_key), ("VOTING_PEPPER", pepper)):
            if not value.strip():  # blank: no signing key at all (VoterTokens needs one)
                raise ConfigurationError(f"{name} must be set (a long random string)")
        return cls(
            redis_url=env.get("REDIS_URL") or None,
            redis_cluster=_flag(env, "VOTING_REDIS_CLUSTER"),
            database_url=env.get("DATABASE_URL") or None,
            secret_key=Secret(secret_key),
            pepper=Secret(pepper),
            admin_tokens=_parse_admin_tokens(env.get("VOTING_ADMIN_TOKENS", "")),
            trusted_proxies=_parse_proxies(env.get("VOTING_TRUSTED_PROXIES", "")),
            shards=shards,
            data_dir=Path(env.get("VOTING_DATA_DIR", ".voting-data")),
            accept_weak_durability=_flag(env, "VOTING_ACCEPT_WEAK_DURABILITY"),
            redis_timeout=_number(env, "VOTING_REDIS_TIMEOUT", "0.8", float),
            redis_replica_acks=_replica_acks(env),
            head_timeout=_head_timeout(env),
            health_interval=_number(env, "VOTING_HEALTH_INTERVAL", "5", float),
            metrics_allow=_parse_proxies(
                env.get("VOTING_METRICS_ALLOW", LOOPBACK), "VOTING_METRICS_ALLOW"),
            vote_metrics=_on(env, "VOTING_METRICS"),
            direct_votes=_on(env, "VOTING_DIRECT_VOTES"),
            **_sms_settings(env),
            **_log_settings(env),
        )

    @property
    def secret_keys(self) -> list[str]:
        return str(self.secret_key).split()
