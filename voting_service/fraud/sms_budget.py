"""The SMS budget against SMS pumping: a day's and an hour's sends, and per number prefix.

A bot that requests codes for thousands of numbers (often premium or foreign routes, paid
by whoever sends) is stopped by the per-phone and per-address meters only as far as it
lacks addresses. The budget bounds what the service can spend whatever the addresses:
``sms_budget.lua`` checks and takes one message from the day's budget, the hour's budget and
the number's 7-digit prefix at once (one slot, atomic), raises an alarm once at 80 % of the
day or the hour (a log line, ``voting_sms_budget_alarms_total`` and the console) and refuses
at 100 % (``sms_budget_exhausted``, ``sms_prefix_limited``). Sends and their cost are in
``/metrics`` (``voting_sms_sends_total``, ``voting_sms_spend_yuan_total``) and in the
console (``/ops/sms``), from the per-day outcome hash.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..errors import SmsBudgetExhausted, SmsPrefixLimited
from ..redis import keys, scripts
from ..redis.pipeline import Pipeline
from ..redis.store import AnyRedis
from ..settings import Settings

log = logging.getLogger(__name__)

ZONE = ZoneInfo("Asia/Shanghai")
ALARM_PERCENT = 80
PREFIX_DIGITS = 7
"""号段 (3 digits) and the HLR block (4): 10,000 numbers of one carrier and region."""
DAY_KEY_SECONDS = 3 * 86400
HOUR_KEY_SECONDS = 2 * 3600

REGISTRY = CollectorRegistry()
"""Added to ``/metrics`` by ``web.metrics`` (under gunicorn, the workers' files are read)."""
SENDS = Counter("voting_sms_sends", "SMS sends by sender and outcome (sent or the problem "
                "code).", ["sender", "outcome"], registry=REGISTRY)
SPEND = Counter("voting_sms_spend_yuan", "What the sent SMS cost, in yuan (VOTING_SMS_PRICE "
                "a message).", ["sender"], registry=REGISTRY)
ALARMS = Counter("voting_sms_budget_alarms", "Times a budget passed 80 % (once per day or "
                 "hour).", ["period"], registry=REGISTRY)
USED = Gauge("voting_sms_budget_used_ratio", "Share of the SMS budget used, at the last send.",
             ["period"], multiprocess_mode="livemax", registry=REGISTRY)
for _period in ("day", "hour"):  # present from the start, for the alert and the dashboard
    USED.labels(_period)


@dataclass(frozen=True)
class Budget:
    daily: int = 0
    hourly: int = 0
    prefix_daily: int = 0
    price: float = 0.0
    """Yuan a message."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Budget:
        return cls(settings.sms_daily_budget, settings.sms_hourly_budget,
                   settings.sms_prefix_daily_cap, settings.sms_price)


def _local(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, ZONE)


def _wait(now: float, period: str) -> int:
    """Seconds until the refused period ends (``Retry-After``)."""
    local = _local(now)
    if period == "hour":
        end = local.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    else:
        end = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), ZONE)
    return max(1, int(end.timestamp() - now) + 1)


_last_refusal_log: dict[str, float] = {}


async def take(pipeline: Pipeline, budget: Budget, phone: str, now: float) -> None:
    """One message out of the budget, or ``SmsBudgetExhausted`` / ``SmsPrefixLimited``."""
    local = _local(now)
    day, hour = local.date().isoformat(), f"{local.hour:02d}"
    result = await pipeline.call(scripts.load("sms_budget"), [
        keys.sms_budget_day(day), keys.sms_budget_hour(day, hour),
        keys.sms_budget_prefix(day, phone[:PREFIX_DIGITS]), keys.sms_budget_outcomes(day),
        keys.sms_budget_alarms(day),
    ], [budget.daily, budget.hourly, budget.prefix_daily, ALARM_PERCENT, hour,
        DAY_KEY_SECONDS, HOUR_KEY_SECONDS])
    allowed, note = int(result[0]), _text(result[1])
    used_day, used_hour = int(result[2]), int(result[3])
    if budget.daily:
        USED.labels("day").set(used_day / budget.daily)
    if budget.hourly:
        USED.labels("hour").set(used_hour / budget.hourly)
    if not allowed:
        retry = {"Retry-After": str(_wait(now, "hour" if note == "hour" else "day"))}
        if note == "prefix":
            raise SmsPrefixLimited(headers=retry)
        if now - _last_refusal_log.get(note, 0.0) >= 60:  # under attack: a line a minute
            _last_refusal_log[note] = now
            log.error("SMS %s budget used up (%d of %d): codes refused until it renews", note,
                      used_day if note == "day" else used_hour,
                      budget.daily if note == "day" else budget.hourly)
        raise SmsBudgetExhausted(headers=retry, extra={"budget": note})
    for period in filter(None, note.split(",")):
        ALARMS.labels(period).inc()
        log.warning("SMS %s budget at %d %%: %d of %d sent", period, ALARM_PERCENT,
                    used_day if period == "day" else used_hour,
                    budget.daily if period == "day" else budget.hourly)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def record(redis: AnyRedis, sender: str, outcome: str, price: float, now: float) -> None:
    """Count a send's outcome: in ``/metrics`` and in the day's hash the console reads."""
    SENDS.labels(sender, outcome).inc()
    if outcome == "sent":
        SPEND.labels(sender).inc(price)
    key = keys.sms_budget_outcomes(_local(now).date().isoformat())
    await redis.hincrby(key, outcome, 1)
    await redis.expire(key, DAY_KEY_SECONDS)


@dataclass(frozen=True)
class Usage:
    """Today's figures for the console."""

    day: str
    hour: str
    sent_today: int
    sent_this_hour: int
    outcomes: dict[str, int]
    alarms: list[str]
    budget: Budget

    @property
    def spend(self) -> float:
        return round(self.outcomes.get("sent", 0) * self.budget.price, 2)

    def share(self, period: str) -> float | None:
        limit = self.budget.daily if period == "day" else self.budget.hourly
        used = self.sent_today if period == "day" else self.sent_this_hour
        return None if not limit else used / limit


async def usage(redis: AnyRedis, budget: Budget, now: float) -> Usage:
    local = _local(now)
    day, hour = local.date().isoformat(), f"{local.hour:02d}"
    sent_day = await redis.get(keys.sms_budget_day(day))
    sent_hour = await redis.get(keys.sms_budget_hour(day, hour))
    outcomes = await redis.hgetall(keys.sms_budget_outcomes(day))
    alarms = await redis.hgetall(keys.sms_budget_alarms(day))
    return Usage(day, hour, int(sent_day or 0), int(sent_hour or 0),
                 {_text(k): int(v) for k, v in outcomes.items()},
                 sorted(_text(k) for k in alarms if _text(k) in ("day", f"hour:{hour}")),
                 budget)
