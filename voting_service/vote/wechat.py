"""WeChat sign-in: an official account's web authorisation (网页授权) with ``snsapi_base``.

Inside WeChat's browser the vote page sends the visitor to
``open.weixin.qq.com/connect/oauth2/authorize`` (silent: ``snsapi_base`` asks nothing);
WeChat comes back to ``/auth/wechat/callback?code=…&state=…``; the service exchanges the
code at ``sns/oauth2/access_token`` for the visitor's ``openid`` (one per person per
account) and signs a voter token for ``voter_id = HMAC(pepper, "wechat:" + openid)``. The
openid is kept nowhere: not in Redis, PostgreSQL or a log line (nor is the AppSecret that
the exchange's URL carries: ``HideSecret`` masks it in httpx's request log). An answer marked
``is_snapshotuser`` (the page shown as a snapshot, 快照页) carries a virtual account's
openid, which names no person: it is refused (``wechat_snapshot_user``).

``state`` is a random nonce that must equal the one in the signed, short-lived
``vs_wx_state`` cookie set by the same browser when it was sent away: a callback URL
crafted elsewhere (login CSRF, a code replayed into another browser) fails the check.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..errors import (
    WechatCodeInvalid,
    WechatCodeUsed,
    WechatRateLimited,
    WechatSnapshotUser,
    WechatStateInvalid,
    WechatUnavailable,
)
from ..settings import Settings

log = logging.getLogger(__name__)

CALLBACK_PATH = "/auth/wechat/callback"
START_PATH = "/auth/wechat/start"
STATE_COOKIE = "vs_wx_state"
STATE_MAX_AGE = 600
"""Seconds between leaving for WeChat and coming back: the round trip takes one or two."""
USER_AGENT_MARK = "MicroMessenger"
TOKEN_PATH = "/sns/oauth2/access_token"
HIDDEN_PARAMS = ("secret", "code")


class HideSecret(logging.Filter):
    """httpx logs every request's URL at INFO, and the ``access_token`` request carries the
    AppSecret and the sign-in code in its query (WeChat documents a GET): both are masked
    before the line reaches any handler, whatever the logging set-up."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
                isinstance(a, httpx.URL) and a.path.endswith(TOKEN_PATH) for a in record.args):
            record.args = tuple(_masked(a) if isinstance(a, httpx.URL) else a
                                for a in record.args)
        return True


def _masked(url: httpx.URL) -> httpx.URL:
    for name in HIDDEN_PARAMS:
        if name in url.params:
            url = url.copy_set_param(name, "***")
    return url


if not any(isinstance(f, HideSecret) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(HideSecret())


def in_wechat(user_agent: str | None) -> bool:
    """WeChat's built-in browser says ``MicroMessenger/<version>`` in its User-Agent."""
    return bool(user_agent) and USER_AGENT_MARK in (user_agent or "")


@dataclass(frozen=True)
class Pending:
    """What the state cookie holds: the nonce, the campaign and where to come back to."""

    nonce: str
    campaign_id: str
    next_path: str


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_keys[::-1], salt="wechat-state")


def begin(settings: Settings, campaign_id: str, next_path: str) -> tuple[str, str]:
    """``(authorisation URL, state cookie value)`` for one trip to WeChat and back."""
    nonce = secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")  # [A-Za-z0-9]
    cookie = _serializer(settings).dumps({"n": nonce, "c": campaign_id, "p": next_path})
    query = urlencode({
        "appid": settings.wechat_app_id,
        "redirect_uri": settings.wechat_callback_base + CALLBACK_PATH,
        "response_type": "code", "scope": "snsapi_base", "state": nonce,
    }, quote_via=quote)
    # parameters in WeChat's documented order; the fragment is required by WeChat
    return f"{settings.wechat_authorize_url}?{query}#wechat_redirect", cookie


def returned(settings: Settings, cookie: str | None, state: str) -> Pending:
    """The pending sign-in the callback's ``state`` belongs to, or ``WechatStateInvalid``."""
    if not cookie or not state or len(cookie) > 1024:
        raise WechatStateInvalid()
    try:
        data: Any = _serializer(settings).loads(cookie, max_age=STATE_MAX_AGE)
    except BadSignature as exc:  # SignatureExpired is a BadSignature
        raise WechatStateInvalid() from exc
    if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("n", "")), state):
        raise WechatStateInvalid()
    return Pending(str(data["n"]), str(data.get("c", "")), str(data.get("p", "")))


ERRORS: dict[int, type[WechatCodeInvalid | WechatCodeUsed | WechatRateLimited]] = {
    40029: WechatCodeInvalid,  # invalid code (wrong, expired after 5 minutes, other account)
    40163: WechatCodeUsed,     # code been used
    45011: WechatRateLimited,  # api minute-quota reach limit
}


async def openid(settings: Settings, code: str, timeout: float = 5.0) -> str:
    """Exchange an authorisation ``code`` for the visitor's openid (each code works once).

    WeChat answers errors with status 200 and ``{"errcode", "errmsg"}`` (as ``text/plain``
    at times, so the body is parsed whatever its type)."""
    params = {"appid": settings.wechat_app_id, "secret": str(settings.wechat_app_secret),
              "code": code, "grant_type": "authorization_code"}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            r = await client.get(f"{settings.wechat_api_base}{TOKEN_PATH}", params=params)
        body: Any = json.loads(r.content)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("WeChat sign-in: access_token unreachable or garbled: %s", exc)
        raise WechatUnavailable() from exc
    if not isinstance(body, dict):
        raise WechatUnavailable()
    found = body.get("openid")
    if isinstance(found, str) and found and not body.get("errcode"):
        if body.get("is_snapshotuser") == 1:
            # a page opened as WeChat's snapshot (快照页) gets a virtual account's openid:
            # it names no person, so it signs no one in
            raise WechatSnapshotUser(extra={"is_snapshotuser": 1})
        return found
    errcode = body.get("errcode")
    error = ERRORS.get(errcode) if isinstance(errcode, int) else None
    if error is WechatRateLimited:
        raise WechatRateLimited(headers={"Retry-After": "60"}, extra={"errcode": errcode})
    if error is not None:
        raise error(extra={"errcode": errcode})
    # -1 system busy, 40013 invalid appid, 40125 invalid secret, anything else: ours to fix
    # or WeChat's to recover from; the visitor can only retry later
    log.error("WeChat sign-in failed: errcode %s (%s)", errcode, str(body.get("errmsg"))[:100])
    raise WechatUnavailable(extra={"errcode": errcode})
