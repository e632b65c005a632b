"""Every setting, read from the environment in one place (DESIGN §8).

Values are passed into the parts that need them; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def _admin_token_items(raw: str) -> list[tuple[str, str, str]]:
    """``[name=]role:token,...`` → [(name or "", role, token)]."""
    items = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        head, sep, token = item.partition(":")
        name, named, role = head.rpartition("=")
        if not sep or role not in ("admin", "ops") or len(token) < 16 or (
                named and not re.fullmatch(r"[a-z][a-z0-9._-]{1,47}", name)):
            raise ConfigurationError(
                "VOTING_ADMIN_TOKENS must be '[name=]admin:<token>' or '[name=]ops:<token>'"
                " items, tokens of at least 16 characters, names of a-z 0-9 . _ -"
            )
        items.append((name, role, token))
    return items


def _parse_admin_tokens(raw: str) -> dict[str, str]:
    """``[name=]role:token,...`` → {token: role}."""
    return {token: role for _, role, token in _admin_token_items(raw)}


def _admin_token_names(raw: str) -> dict[str, str]:
    """{token: name} of the bootstrap tokens given a name (``ci=admin:<token>``)."""
    return {token: name for name, _, token in _admin_token_items(raw) if name}


AUDIT_RETENTION_FLOOR = 180
"""Days: the audit log is kept at least this long, whatever the setting says."""


def _account_settings(env: Mapping[str, str]) -> dict[str, Any]:
    days = _number(env, "VOTING_AUDIT_RETENTION_DAYS", "365", int)
    if days < AUDIT_RETENTION_FLOOR:
        raise ConfigurationError(
            f"VOTING_AUDIT_RETENTION_DAYS must be at least {AUDIT_RETENTION_FLOOR}")
    values: dict[str, Any] = {"audit_retention_days": days}
    for name, key, default in (("VOTING_AUTH_PER_ADDRESS", "auth_per_address", "5"),
                               ("VOTING_AUTH_PER_NETWORK", "auth_per_network", "25"),
                               ("VOTING_AUTH_PER_ACCOUNT", "auth_per_account", "10"),
                               ("VOTING_AUTH_WINDOW", "auth_window", "900")):
        value = _number(env, name, default, int)
        if not 1 <= value <= 100_000:
            raise ConfigurationError(f"{name} must be between 1 and 100000")
        values[key] = value
    return values


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


def _instant(env: Mapping[str, str], name: str) -> float:
    """An ISO 8601 date and time with its UTC offset, as unix seconds; unset: 0."""
    text = env.get(name, "").strip()
    if not text:
        return 0.0
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ConfigurationError(
            f"{name} must be a date and time with its offset, e.g. 2026-12-10T12:00+08:00")
    return when.timestamp()


def _head_timeout(env: Mapping[str, str]) -> float:
    seconds = _number(env, "VOTING_HEAD_TIMEOUT", "10", float)
    if not 0.1 <= seconds <= 300:
        raise ConfigurationError("VOTING_HEAD_TIMEOUT must be between 0.1 and 300 seconds")
    return float(seconds)


def _bounded(env: Mapping[str, str], name: str, default: str, cast: type[int] | type[float],
             low: float, high: float) -> Any:
    value = _number(env, name, default, cast)
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g}")
    return value


def _caps_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """What one client may hold open: bodies' deadlines, connections, live streams."""
    return {
        "body_timeout": float(_bounded(env, "VOTING_BODY_TIMEOUT", "10", float, 0.1, 600)),
        "body_min_rate": _bounded(env, "VOTING_BODY_MIN_RATE", "16384", int, 1, 1 << 30),
        "conn_per_address": _bounded(env, "VOTING_CONN_PER_ADDRESS", "256", int, 0, 1 << 20),
        "conn_per_network": _bounded(env, "VOTING_CONN_PER_NETWORK", "1024", int, 0, 1 << 20),
        "conn_per_worker": _bounded(env, "VOTING_CONN_PER_WORKER", "0", int, 0, 1 << 20),
        "sse_per_address": _bounded(env, "VOTING_SSE_PER_ADDRESS", "8", int, 0, 1 << 20),
        "sse_per_network": _bounded(env, "VOTING_SSE_PER_NETWORK", "64", int, 0, 1 << 20),
        "sse_per_worker": _bounded(env, "VOTING_SSE_PER_WORKER", "4000", int, 0, 1 << 20),
    }


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _on(env: Mapping[str, str], name: str) -> bool:
    """A switch that is on unless set to 0, off or no."""
    return env.get(name, "1").strip().lower() not in ("0", "off", "no")


def _sms_settings(env: Mapping[str, str]) -> dict[str, Any]:
    sender = env.get("VOTING_SMS_SENDER", "console").strip().lower() or "console"
    url = env.get("VOTING_SMS_HTTP_URL", "").strip()
    if sender not in SMS_SENDERS:
        raise ConfigurationError(
            "VOTING_SMS_SENDER must be one of " + ", ".join(repr(x) for x in SMS_SENDERS))
    if sender == "http" and not url.startswith(("http://", "https://")):
        raise ConfigurationError("VOTING_SMS_SENDER=http needs VOTING_SMS_HTTP_URL (http[s]://…)")
    return {
        "sms_sender": sender,
        "sms_http_url": url,
        "sms_http_token": Secret(env.get("VOTING_SMS_HTTP_TOKEN", "")),
        "sms_http_timeout": _number(env, "VOTING_SMS_HTTP_TIMEOUT", "5", float),
        **_sms_provider_settings(env, sender),
    }


# --- issue 25: WeChat sign-in, SMS providers and budgets, public notices, retention -------

SMS_SENDERS = ("console", "http", "aliyun", "tencent")


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).strip().rstrip("/")
    if value and not value.startswith(("http://", "https://")):
        raise ConfigurationError(f"{name} must be an http(s):// address")
    return value


def _sms_endpoint(env: Mapping[str, str], name: str, default: str) -> str:
    """A provider SDK's endpoint: a scheme and a host (and port), no path — the SDKs
    post to ``/``."""
    value = _url(env, name, default)
    parts = urlsplit(value)
    if not parts.netloc or parts.path or parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must be http(s)://host[:port], without a path")
    return value


def _count(env: Mapping[str, str], name: str, default: str) -> int:
    value = _number(env, name, default, int)
    if value < 0:
        raise ConfigurationError(f"{name} must be 0 (no limit) or more")
    return int(value)


def _sms_provider_settings(env: Mapping[str, str], sender: str) -> dict[str, Any]:
    """Alibaba Cloud and Tencent Cloud SMS, and the budget every sender spends from."""
    values: dict[str, Any] = {
        "sms_sign_name": env.get("VOTING_SMS_SIGN_NAME", "").strip(),
        "sms_template_id": env.get("VOTING_SMS_TEMPLATE_ID", "").strip(),
        "aliyun_access_key_id": env.get("VOTING_ALIYUN_ACCESS_KEY_ID", "").strip(),
        "aliyun_access_key_secret": Secret(env.get("VOTING_ALIYUN_ACCESS_KEY_SECRET", "")),
        "aliyun_sms_endpoint": _sms_endpoint(env, "VOTING_ALIYUN_SMS_ENDPOINT",
                                             "https://dysmsapi.aliyuncs.com"),
        "aliyun_region": env.get("VOTING_ALIYUN_REGION", "cn-hangzhou").strip(),
        "tencent_secret_id": env.get("VOTING_TENCENT_SECRET_ID", "").strip(),
        "tencent_secret_key": Secret(env.get("VOTING_TENCENT_SECRET_KEY", "")),
        "tencent_sms_app_id": env.get("VOTING_TENCENT_SMS_APP_ID", "").strip(),
        "tencent_sms_endpoint": _sms_endpoint(env, "VOTING_TENCENT_SMS_ENDPOINT",
                                              "https://sms.tencentcloudapi.com"),
        "tencent_region": env.get("VOTING_TENCENT_REGION", "ap-guangzhou").strip(),
        "sms_daily_budget": _count(env, "VOTING_SMS_DAILY_BUDGET", "20000"),
        "sms_hourly_budget": _count(env, "VOTING_SMS_HOURLY_BUDGET", "3000"),
        "sms_prefix_daily_cap": _count(env, "VOTING_SMS_PREFIX_DAILY_CAP", "200"),
        "sms_price": float(_number(env, "VOTING_SMS_PRICE", "0.045", float)),
    }
    needed = {
        "aliyun": ("VOTING_ALIYUN_ACCESS_KEY_ID", "VOTING_ALIYUN_ACCESS_KEY_SECRET",
                   "VOTING_SMS_SIGN_NAME", "VOTING_SMS_TEMPLATE_ID"),
        "tencent": ("VOTING_TENCENT_SECRET_ID", "VOTING_TENCENT_SECRET_KEY",
                    "VOTING_TENCENT_SMS_APP_ID", "VOTING_SMS_SIGN_NAME",
                    "VOTING_SMS_TEMPLATE_ID"),
    }.get(sender, ())
    missing = [name for name in needed if not env.get(name, "").strip()]
    if missing:
        raise ConfigurationError(f"VOTING_SMS_SENDER={sender} needs " + ", ".join(missing))
    if values["sms_price"] < 0:
        raise ConfigurationError("VOTING_SMS_PRICE must be 0 or more (yuan a message)")
    return values


def _wechat_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The official account's web authorisation (网页授权): all three or none."""
    app_id = env.get("VOTING_WECHAT_APP_ID", "").strip()
    secret = env.get("VOTING_WECHAT_APP_SECRET", "")
    callback = _url(env, "VOTING_WECHAT_CALLBACK_BASE", "")
    verify = env.get("VOTING_WECHAT_MP_VERIFY", "").strip()
    if verify and not re.fullmatch(r"MP_verify_[A-Za-z0-9]{1,64}\.txt", verify):
        raise ConfigurationError(
            "VOTING_WECHAT_MP_VERIFY must be the file name WeChat gives, MP_verify_<code>.txt")
    given = [bool(app_id), bool(secret.strip()), bool(callback)]
    if any(given) and not all(given):
        raise ConfigurationError(
            "WeChat sign-in needs VOTING_WECHAT_APP_ID, VOTING_WECHAT_APP_SECRET and "
            "VOTING_WECHAT_CALLBACK_BASE together")
    return {
        "wechat_app_id": app_id,
        "wechat_app_secret": Secret(secret),
        "wechat_callback_base": callback,
        "wechat_mp_verify": verify,
        "wechat_api_base": _url(env, "VOTING_WECHAT_API_BASE", "https://api.weixin.qq.com"),
        "wechat_authorize_url": _url(env, "VOTING_WECHAT_AUTHORIZE_URL",
                                     "https://open.weixin.qq.com/connect/oauth2/authorize"),
    }


def _notice_settings(env: Mapping[str, str]) -> dict[str, Any]:
    days = _number(env, "VOTING_RETENTION_DAYS", "180", int)
    if not 1 <= days <= 3650:
        raise ConfigurationError("VOTING_RETENTION_DAYS must be between 1 and 3650")
    return {
        "site_icp": env.get("VOTING_SITE_ICP", "").strip(),
        "site_psb": env.get("VOTING_SITE_PSB", "").strip(),
        "site_contact": env.get("VOTING_SITE_CONTACT", "").strip(),
        "retention_days": int(days),
    }


def _dates(env: Mapping[str, str], name: str) -> tuple[dt.date, ...]:
    found = []
    for item in env.get(name, "").replace(" ", ",").split(","):
        if not item.strip():
            continue
        try:
            found.append(dt.date.fromisoformat(item.strip()))
        except ValueError as exc:
            raise ConfigurationError(f"{name}: {item.strip()!r} is not a date (YYYY-MM-DD)"
                                     ) from exc
    return tuple(sorted(set(found)))


def _organiser_settings(env: Mapping[str, str]) -> dict[str, Any]:
    days = _number(env, "VOTING_GONGSHI_WORKING_DAYS", "5", int)
    if not 1 <= days <= 60:
        raise ConfigurationError("VOTING_GONGSHI_WORKING_DAYS must be between 1 and 60")
    return {
        "gongshi_working_days": days,
        "objection_retention_days": _number(env, "VOTING_OBJECTION_RETENTION_DAYS", "365", int),
        "holidays": _dates(env, "VOTING_HOLIDAYS"),
        "extra_workdays": _dates(env, "VOTING_EXTRA_WORKDAYS"),
        "organiser_phone": env.get("VOTING_ORGANISER_PHONE", "").strip()[:100],
        "organiser_address": env.get("VOTING_ORGANISER_ADDRESS", "").strip()[:300],
        "organiser_email": env.get("VOTING_ORGANISER_EMAIL", "").strip()[:200],
    }


def _slow_reader_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Pool budgets, the acquire and write deadlines, the frozen ledgers' cache (§1)."""
    out: dict[str, Any] = {}
    for name, key, default in (("VOTING_DB_POOL_PUBLIC", "db_pool_public", "4"),
                               ("VOTING_DB_POOL_ADMIN", "db_pool_admin", "4"),
                               ("VOTING_DB_POOL_HEALTH", "db_pool_health", "2")):
        size = _number(env, name, default, int)
        if not 1 <= size <= 100:
            raise ConfigurationError(f"{name} must be between 1 and 100")
        out[key] = int(size)
    for name, key, default, top in (("VOTING_DB_ACQUIRE_TIMEOUT", "db_acquire_timeout", "2", 60),
                                    ("VOTING_DB_ADMIN_ACQUIRE_TIMEOUT",
                                     "db_admin_acquire_timeout", "60", 600),
                                    ("VOTING_WRITE_TIMEOUT", "write_timeout", "30", 3600)):
        seconds = _number(env, name, default, float)
        if not 0.1 <= seconds <= top:
            raise ConfigurationError(f"{name} must be between 0.1 and {top} seconds")
        out[key] = float(seconds)
    cache = env.get("VOTING_LEDGER_CACHE_DIR", "").strip()
    out["ledger_cache_dir"] = Path(cache) if cache else None
    return out
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
    legacy_records_until: float = 0.0
    """Unix seconds: until then votes also keep their idempotency record as a key of its
    own, as releases before issue 28 did, so that an upgrade during a vote finds the records
    of votes the old release acknowledged and old workers find the new ones (0 = never)."""
    config_refresh: float = 1.0
    """Seconds between checks for campaign changes made by other workers."""
    head_timeout: float = 10.0
    """Seconds a connection may take to send a complete request head
    (``web/server/protocol.py``)."""
    # --- what one client may hold open (web/server/address_caps.py, the HTTP protocol) ---
    body_timeout: float = 10.0
    """Seconds after its head within which a request's body must have arrived, plus
    ``received bytes / body_min_rate`` (a large upload at a fair rate is not cut off)."""
    body_min_rate: int = 16384
    """Bytes a second a long upload must keep up to earn more time than ``body_timeout``."""
    conn_per_address: int = 256
    """Open connections one address (IPv4 /32, IPv6 /64) may hold in one worker; 0: no cap.
    Peers in ``trusted_proxies`` (nginx) are not capped by address: nginx's ``limit_conn``
    caps its clients."""
    conn_per_network: int = 1024
    """Open connections one network (/24, /48) may hold in one worker; 0: no cap."""
    conn_per_worker: int = 0
    """Open connections a worker accepts in all; 0: its open-file limit less a reserve for
    Redis, PostgreSQL and files."""
    sse_per_address: int = 8
    """``/live`` streams one address may hold open in one worker."""
    sse_per_network: int = 64
    sse_per_worker: int = 4000
    """``/live`` streams one worker holds in all (each ~18 KiB of memory)."""
    sms_sender: str = "console"
    """``console`` prints SMS codes (local use only); ``http`` posts them to a gateway."""
    sms_http_url: str = ""
    """The gateway endpoint for ``http``: receives JSON ``{phone, code, text, ttl_seconds}``."""
    sms_http_token: Secret = field(default_factory=lambda: Secret(""))
    """Sent to the gateway as ``Authorization: Bearer <token>`` when set."""
    sms_http_timeout: float = 5.0
    # --- issue 25: WeChat sign-in, SMS providers and budgets, public notices, retention ---
    wechat_app_id: str = ""
    """The official account's AppID; empty = no WeChat sign-in."""
    wechat_app_secret: Secret = field(default_factory=lambda: Secret(""))
    wechat_callback_base: str = ""
    """``https://vote.example.cn``: its domain is the account's 网页授权域名."""
    wechat_api_base: str = "https://api.weixin.qq.com"
    """Where ``/sns/oauth2/access_token`` is asked (a local stand-in in tests)."""
    wechat_authorize_url: str = "https://open.weixin.qq.com/connect/oauth2/authorize"
    wechat_mp_verify: str = ""
    """``MP_verify_<code>.txt``: served at the site's root with ``<code>`` as its content,
    so the account can check the 网页授权域名."""
    sms_sign_name: str = ""
    """The approved signature (签名) of ``aliyun`` and ``tencent`` messages."""
    sms_template_id: str = ""
    """The approved template: Aliyun ``SMS_…`` with ``${code}``; Tencent's numeric id, ``{1}``."""
    aliyun_access_key_id: str = ""
    aliyun_access_key_secret: Secret = field(default_factory=lambda: Secret(""))
    aliyun_sms_endpoint: str = "https://dysmsapi.aliyuncs.com"
    aliyun_region: str = "cn-hangzhou"
    tencent_secret_id: str = ""
    tencent_secret_key: Secret = field(default_factory=lambda: Secret(""))
    tencent_sms_app_id: str = ""
    """``SmsSdkAppId`` of the Tencent Cloud SMS application."""
    tencent_sms_endpoint: str = "https://sms.tencentcloudapi.com"
    tencent_region: str = "ap-guangzhou"
    sms_daily_budget: int = 20000
    """Messages all senders may send in one Asia/Shanghai day; 0 = no budget."""
    sms_hourly_budget: int = 3000
    """Messages in one clock hour; 0 = no budget."""
    sms_prefix_daily_cap: int = 200
    """Messages a day to the numbers of one 7-digit prefix (号段 + area block); 0 = no cap."""
    sms_price: float = 0.045
    """Yuan a message: what ``voting_sms_spend_yuan_total`` and the console count."""
    site_icp: str = ""
    """ICP备案号 shown in every public footer, linked to beian.miit.gov.cn."""
    site_psb: str = ""
    """公安备案号 (e.g. 苏公网安备32010202000001号) shown in every public footer."""
    site_contact: str = ""
    """Who answers questions about the vote and personal data (footer, privacy notice)."""
    retention_days: int = 180
    """Days after publication until ``purge`` pseudonymises voters and drops addresses."""
    health_interval: float = 5.0
    """Seconds between health snapshots (backlog, lag, drift) taken by every web worker."""
    metrics_allow: tuple[IPNetwork, ...] = _parse_proxies(LOOPBACK)
    """Addresses that may read ``/metrics`` without a token (the Prometheus server)."""
    vote_metrics: bool = True
    """Count every vote in ``voting_votes_total`` and its duration (off only to measure
    what counting costs: ``make bench`` phase M)."""
    direct_votes: bool = True
    """Votes answered by the HTTP protocol itself (``web/server/protocol.py``), not through ASGI;
    off only to measure what that saves (``make bench`` phase D)."""
    # --- slow readers and database budgets (issue 23 §1) -------------------------------
    db_pool_public: int = 4
    """PostgreSQL connections per worker for public reads (results, vote look-ups, the
    ledger's first copy to local disk): a crowd of readers cannot take admin's or health's."""
    db_pool_admin: int = 4
    """Connections per worker for the admin API and the ops console."""
    db_pool_health: int = 2
    """Connections per worker for ``/readyz`` and the health snapshots."""
    db_acquire_timeout: float = 2.0
    """Seconds a public or health request waits for a connection of its budget before
    answering 503: anyone can send them, so a queue of them must not grow for long."""
    db_admin_acquire_timeout: float = 60.0
    """The same for the admin budget: few, authenticated callers, whose bursts (200
    strike-outs at once) wait their turn rather than fail."""
    write_timeout: float = 30.0
    """Seconds a connection may leave the server's bytes unread (its write buffer full)
    before it is cut off (``web/server/protocol.py``): a reader that stops holds nothing for
    long."""
    ledger_cache_dir: Path | None = None
    """Where each pod keeps its copy of the frozen ledgers (``ledger/frozen.py``);
    ``None`` = ``<data_dir>/published``."""

    # -- drift repair after a failover (issue 23 §5) --
    drift_repair_interval: float = 30.0
    """Seconds between a flusher's drift checks of the shards it holds; a difference two
    checks in a row agree on is repaired in Redis from the ledger (``ledger/repair.py``).
    0 turns the repair off (``voting-service reconcile``/``rebuild`` remain)."""
    # --- staff accounts, machine tokens, credential throttles (issue 25 §3, issue 23 §4) ---
    admin_token_names: Mapping[str, str] = field(default_factory=dict)
    """Names of the ``VOTING_ADMIN_TOKENS`` bootstrap tokens (token → name), for the audit
    log; an unnamed one is ``env-<fingerprint>``."""
    audit_retention_days: int = 365
    """Days the audit log keeps a row (``VOTING_AUDIT_RETENTION_DAYS``, at least 180)."""
    auth_per_address: int = 5
    """Failed sign-ins (or bearer tokens) per address (IPv4 /32, IPv6 /64) per window."""
    auth_per_network: int = 25
    """The same per network (IPv4 /24, IPv6 /48): a guesser rotating addresses."""
    auth_per_account: int = 10
    """Failed passwords and codes at one staff account per window: its lock-out."""
    auth_window: int = 900
    """Seconds of each of those windows (from its first failure)."""
    # --- the organisers' year (issue 24): 公示 period and the organisers' contact --------
    gongshi_working_days: int = 5
    """Working days the 公示 lasts after publication (``VOTING_GONGSHI_WORKING_DAYS``)."""
    holidays: tuple[dt.date, ...] = ()
    """Public holidays that are not working days (``VOTING_HOLIDAYS``: dates, comma-separated)."""
    extra_workdays: tuple[dt.date, ...] = ()
    """Weekend days worked instead (调休; ``VOTING_EXTRA_WORKDAYS``)."""
    objection_retention_days: int = 365
    """Days after the 公示 ends that objection submitters' personal data are kept
    (``VOTING_OBJECTION_RETENTION_DAYS``); ``voting-service purge-objections`` deletes them."""
    organiser_phone: str = ""
    organiser_address: str = ""
    organiser_email: str = ""
    """The organisers' contact on the results page (``VOTING_ORGANISER_PHONE``, ``…_ADDRESS``,
    ``…_EMAIL``)."""

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
            admin_token_names=_admin_token_names(env.get("VOTING_ADMIN_TOKENS", "")),
            trusted_proxies=_parse_proxies(env.get("VOTING_TRUSTED_PROXIES", "")),
            shards=shards,
            data_dir=Path(env.get("VOTING_DATA_DIR", ".voting-data")),
            accept_weak_durability=_flag(env, "VOTING_ACCEPT_WEAK_DURABILITY"),
            redis_timeout=_number(env, "VOTING_REDIS_TIMEOUT", "0.8", float),
            redis_replica_acks=_replica_acks(env),
            legacy_records_until=_instant(env, "VOTING_LEGACY_RECORDS_UNTIL"),
            head_timeout=_head_timeout(env),
            health_interval=_number(env, "VOTING_HEALTH_INTERVAL", "5", float),
            metrics_allow=_parse_proxies(
                env.get("VOTING_METRICS_ALLOW", LOOPBACK), "VOTING_METRICS_ALLOW"),
            vote_metrics=_on(env, "VOTING_METRICS"),
            direct_votes=_on(env, "VOTING_DIRECT_VOTES"),
            drift_repair_interval=_number(env, "VOTING_DRIFT_REPAIR_INTERVAL", "30", float),
            **_slow_reader_settings(env),
            **_sms_settings(env),
            **_caps_settings(env),
            **_account_settings(env),
            **_organiser_settings(env),
            **_wechat_settings(env),
            **_notice_settings(env),
            **_log_settings(env),
        )

    @property
    def ledger_cache(self) -> Path:
        return self.ledger_cache_dir or self.data_dir / "published"

    @property
    def secret_keys(self) -> list[str]:
        return str(self.secret_key).split()

    @property
    def wechat_enabled(self) -> bool:
        return bool(self.wechat_app_id and self.wechat_app_secret and self.wechat_callback_base)
