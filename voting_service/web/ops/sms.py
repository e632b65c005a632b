"""The console's SMS budget page (``/ops/sms``): today's sends, the day's and the hour's
budget with the 80 % alarm, refusals by reason and what the messages cost.

A page of its own beside the campaign views (any console role may read it): the budget is
the service's, shared by every campaign. The figures come from the per-day hash that
``fraud/sms_budget.py`` keeps in Redis, so every worker's sends are in them.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...fraud import sms_budget
from ...services import services
from . import console as ops

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "短信预算", "sender": "短信通道", "period": "周期", "used": "已发送",
        "budget": "预算", "share": "占比", "day": "今日", "hour": "本小时",
        "none": "不限", "alarm": "已超过 80%，请核查是否存在短信轰炸",
        "full": "已用完，新验证码被拒绝", "outcomes": "今日发送结果", "outcome": "结果",
        "count": "条数", "spend": "今日花费", "yuan": "元",
        "prefix": "同一号段（前 7 位）每日上限", "no_redis": "Redis 暂不可用，无法读取",
    },
    "en": {
        "title": "SMS budget", "sender": "Sender", "period": "Period", "used": "Sent",
        "budget": "Budget", "share": "Share", "day": "Today", "hour": "This hour",
        "none": "no limit", "alarm": "Past 80 %: check for SMS pumping",
        "full": "Used up: new codes are refused", "outcomes": "Sends today by outcome",
        "outcome": "Outcome", "count": "Count", "spend": "Spent today", "yuan": "yuan",
        "prefix": "Daily cap per number prefix (first 7 digits)",
        "no_redis": "Redis is unavailable: no figures", "sms_link": "SMS budget",
    },
}


def _rows(used: sms_budget.Usage) -> list[dict[str, Any]]:
    rows = []
    for period, sent, limit in (("day", used.sent_today, used.budget.daily),
                                ("hour", used.sent_this_hour, used.budget.hourly)):
        share = used.share(period)
        alarm = any(a == period or a.startswith(f"{period}:") for a in used.alarms)
        rows.append({"period": period, "sent": sent, "limit": limit, "share": share,
                     "percent": None if share is None else round(share * 100, 1),
                     "state": "full" if share is not None and share >= 1 else
                     "alarm" if alarm or (share is not None and share >= 0.8) else ""})
    return rows


async def page(request: Request) -> Response:
    svc = services(request)
    words = ops._words(request)
    session = await ops._session(request, svc)
    if session is None:
        return ops._login(request, words)
    if not session.can_read_console:  # an auditor reads the audit log only
        return ops._to_audit(words)
    w = WORDS[words.lang]
    budget = svc.sms_budget or sms_budget.Budget()
    used: sms_budget.Usage | None = None
    with contextlib.suppress(RedisError, OSError):
        used = await sms_budget.usage(svc.redis, budget, time.time())
    return ops._render(
        request, "ops_sms.html", words, session=session, w=w, used=used, budget=budget,
        rows=_rows(used) if used else [], sender=svc.sms.name,
        outcomes=sorted(used.outcomes.items()) if used else [],
    )


routes = [Route("/ops/sms", page)]
