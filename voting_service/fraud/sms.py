"""SMS one-time codes: a phone number → a voter token, the number itself stored nowhere.

``start`` checks the number (mainland China mobile, in one ASCII form), meters sends per
phone, then per address and network across every campaign (``ip_limit.lua`` on their own
keys), stores a keyed hash of a fresh 6-digit code in Redis for five minutes and hands the
code to the sender. ``verify`` meters code checks per address and network, then checks the
typed code in ``sms_verify.lua``: five wrong tries burn it, a right one is used once. The
voter id is ``HMAC(pepper, "sms:" number)``; Redis keys carry an HMAC of the number, too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

import httpx
from redis.exceptions import RedisError

from .. import digits
from ..errors import (
    InvalidCode,
    InvalidRequest,
    RateLimited,
    TooManyCodeChecks,
    TooManyCodes,
    Unavailable,
)
from ..redis import keys, scripts
from ..redis.pipeline import Pipeline
from ..redis.store import AnyRedis
from ..settings import Settings
from ..vote import identity
from ..vote.registry import Day, LiveCampaign, local_day
from . import sms_budget
from .sms_providers import AliyunSender, TencentSender

log = logging.getLogger(__name__)

CODE_TTL = 300
MAX_TRIES = 5
PHONE_PER_MINUTE, PHONE_PER_DAY = 1, 10
"""Codes one phone may be sent: one a minute (the "resend" button), ten a day."""
ADDRESS_PER_MINUTE, ADDRESS_PER_DAY = 10, 100
NETWORK_PER_MINUTE, NETWORK_PER_DAY = 60, 2000
"""Codes requested from one address (/32, IPv6 /64) and one network (/24, IPv6 /48), counted
across every campaign: a farm of numbers gets no more codes by spreading over campaigns."""
CHECKS_ADDRESS_PER_MINUTE, CHECKS_ADDRESS_PER_DAY = 30, 300
CHECKS_NETWORK_PER_MINUTE, CHECKS_NETWORK_PER_DAY = 300, 3000
"""Codes checked (``verify``) from one address and one network, across campaigns: each code
allows five tries, so these leave room for every code an address may be sent, and stop a
guesser walking through the numbers it holds."""
ZONE = ZoneInfo("Asia/Shanghai")
"""The SMS meters' calendar day: one for every campaign (they are counted across campaigns),
that of the mainland China numbers they meter."""

_PHONE = re.compile(r"1[3-9][0-9]{9}")
_CODE = re.compile(r"[0-9]{6}")
_SEPARATORS = re.compile(r"[\s\-()]")


def normalize_phone(raw: str) -> str:
    """A mainland China mobile number as 11 ASCII digits, or ``InvalidRequest``.

    Accepts ``13812345678``, ``+86 138-1234-5678``, ``0086 13812345678``, ``86 138…``, and
    the same typed in full-width (``１３８…``): NFKC first, so each handset has one form —
    before it is keyed, hashed into a voter id or sent. Other scripts' digits are refused.
    """
    number = _SEPARATORS.sub("", digits.fold(raw))
    for prefix in ("+86", "0086", "86"):
        if number.startswith(prefix) and len(number) == len(prefix) + 11:
            number = number[len(prefix):]
            break
    if not _PHONE.fullmatch(number):
        raise InvalidRequest("not a mainland China mobile number")
    return number


def masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


def phone_key_id(pepper: str, phone: str) -> str:
    """Names a phone's Redis keys: keyed, and distinct from its voter id."""
    return hmac.new(pepper.encode(), f"sms-keys:{phone}".encode(), hashlib.sha256).hexdigest()[:32]


def code_digest(pepper: str, campaign_id: str, phone_id: str, code: str) -> str:
    message = f"sms-code:{campaign_id}:{phone_id}:{code}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def message_text(campaign: LiveCampaign, code: str) -> str:
    minutes = CODE_TTL // 60
    return f"【{campaign.c.title}】您的投票验证码是{code}，{minutes}分钟内有效。请勿告诉他人。"


class Sender(Protocol):
    name: str

    async def send(self, phone: str, code: str, text: str) -> None: ...


class ConsoleSender:
    """Prints codes to standard output: for local runs and tests only."""

    name = "console"

    async def send(self, phone: str, code: str, text: str) -> None:
        print(f"[sms] to {masked(phone)}: {text} (code {code})", file=sys.stdout, flush=True)


class HttpSender:
    """Posts ``{phone, code, text, ttl_seconds}`` as JSON to an SMS gateway (or an adapter in
    front of one); any 2xx answer counts as sent."""

    name = "http"

    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout

    async def send(self, phone: str, code: str, text: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"phone": phone, "code": code, "text": text, "ttl_seconds": CODE_TTL}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                r = await client.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable("the SMS gateway is unreachable") from exc
        if not r.is_success:
            log.warning("SMS gateway answered %d", r.status_code)
            raise Unavailable("the SMS gateway did not take the message")


def sender_from(settings: Settings) -> Sender:
    s = settings
    if s.sms_sender == "http":
        return HttpSender(s.sms_http_url, str(s.sms_http_token), s.sms_http_timeout)
    if s.sms_sender == "aliyun":
        return AliyunSender(s.aliyun_sms_endpoint, s.aliyun_access_key_id,
                            str(s.aliyun_access_key_secret), s.aliyun_region, s.sms_sign_name,
                            s.sms_template_id, s.sms_http_timeout)
    if s.sms_sender == "tencent":
        return TencentSender(s.tencent_sms_endpoint, s.tencent_secret_id,
                             str(s.tencent_secret_key), s.tencent_region, s.tencent_sms_app_id,
                             s.sms_sign_name, s.sms_template_id, s.sms_http_timeout)
    return ConsoleSender()


@dataclass(frozen=True)
class Sent:
    expires_in: int
    resend_after: int


def sms_day(now: float) -> Day:
    """The local day of ``ZONE``: what every SMS meter's day counter is keyed by."""
    return local_day(now, ZONE)


Meter = tuple[list[str], str]
"""One ``ip_limit.lua`` call: its one key (the levels' hash) and its levels
(``scripts.levels_arg``)."""


async def _meter(pipeline: Pipeline, meters: list[Meter], day: Day, now: float,
                 refused: type[RateLimited]) -> None:
    """Run the meters in turn; ``refused`` (with ``Retry-After``) at the first that says no.
    In turn, not at once: a request the phone's meter refuses (a resend too soon) uses none
    of its address's allowance. Each meter is all or nothing in itself."""
    script = scripts.ip_limit()
    for script_keys, levels in meters:
        result = await pipeline.call(script, script_keys, [
            day.expire_at, scripts.LimitMode.COUNT_ONLY.value, levels, int(now * 1000)])
        if result != 1:
            retry_ms = int(result[1])
            wait_ms = int((day.ends_at - now) * 1000) if retry_ms < 0 else retry_ms
            raise refused(headers={"Retry-After": str(max(1, -(-wait_ms // 1000)))})


def _address_meter(ip: str, hash_of: Callable[[str], str], limits: list[int]) -> Meter:
    """The address's and its network's levels in one call (all or nothing), in the
    network's hash, as votes are metered."""
    host, net = identity.network_prefixes(ip)
    return ([hash_of(net)], scripts.levels_arg(keys.level_field(host, net), limits[0], limits[1],
                                               (limits[2], limits[3])))


async def start(
    redis: AnyRedis, pipeline: Pipeline, sender: Sender, pepper: str, campaign: LiveCampaign,
    raw_phone: str, ip: str, budget: sms_budget.Budget | None = None,
) -> Sent:
    phone = normalize_phone(raw_phone)
    now = time.time()
    day = sms_day(now)
    pid = phone_key_id(pepper, phone)
    cid = campaign.id
    await _meter(pipeline, [
        ([keys.sms_limits(pid)], scripts.levels_arg("", PHONE_PER_MINUTE, PHONE_PER_DAY)),
        _address_meter(ip, keys.sms_ip_limits, [
            ADDRESS_PER_MINUTE, ADDRESS_PER_DAY, NETWORK_PER_MINUTE, NETWORK_PER_DAY]),
    ], day, now, TooManyCodes)
    if budget is not None:  # after the phone's and address's meters: they spend none of it
        await sms_budget.take(pipeline, budget, phone, now)
    code = f"{secrets.randbelow(10**6):06d}"
    digest = code_digest(pepper, cid, pid, code)
    try:  # a new code replaces the last one, with fresh tries
        await redis.set(keys.sms_code(pid), f"{digest}|0", ex=CODE_TTL)
    except (RedisError, OSError) as exc:
        raise Unavailable() from exc
    try:
        await sender.send(phone, code, message_text(campaign, code))
    except Exception as exc:
        with contextlib.suppress(RedisError, OSError):
            await redis.delete(keys.sms_code(pid))
            await sms_budget.record(redis, sender.name, getattr(exc, "code", "error"),
                                    0.0, now)
        raise
    with contextlib.suppress(RedisError, OSError):  # the code is out: counting is secondary
        await sms_budget.record(redis, sender.name, "sent",
                                budget.price if budget is not None else 0.0, now)
    return Sent(CODE_TTL, 60 // PHONE_PER_MINUTE)


async def verify(
    pipeline: Pipeline, pepper: str, campaign: LiveCampaign, raw_phone: str, code: str, ip: str
) -> str:
    """The voter id of the phone when ``code`` is its current code; else ``InvalidCode``.
    Each check counts against the address's and its network's check limits first."""
    phone = normalize_phone(raw_phone)
    typed = digits.fold(code).strip()
    if digits.foreign_digits(typed):
        raise InvalidRequest("the code is written with the ASCII digits 0-9")
    if not _CODE.fullmatch(typed):
        raise InvalidCode("the code is 6 digits")
    now = time.time()
    day = sms_day(now)
    await _meter(pipeline, [
        _address_meter(ip, keys.sms_check_limits, [
            CHECKS_ADDRESS_PER_MINUTE, CHECKS_ADDRESS_PER_DAY,
            CHECKS_NETWORK_PER_MINUTE, CHECKS_NETWORK_PER_DAY]),
    ], day, now, TooManyCodeChecks)
    pid = phone_key_id(pepper, phone)
    status, left = await pipeline.call(
        scripts.load("sms_verify"), [keys.sms_code(pid)],
        [code_digest(pepper, campaign.id, pid, typed), MAX_TRIES],
    )
    if int(status) == scripts.SmsStatus.RIGHT:
        return identity.voter_id(pepper, "sms", phone)
    if int(status) == scripts.SmsStatus.NO_CODE:
        raise InvalidCode("no valid code for this number: request a new one",
                          extra={"tries_left": 0})
    raise InvalidCode(extra={"tries_left": int(left)})
