"""WeChat sign-in routes (``vote/wechat.py``): the trip to WeChat's authorisation page and
the callback that turns its ``code`` into a voter token (also the voter cookie).

``GET /auth/wechat/start?campaign_id=…&next=…`` sends a browser to WeChat (the vote page
does the same by itself for a visitor inside WeChat without a voter cookie);
``GET /auth/wechat/callback?code=…&state=…`` comes back. A failed callback is a problem
with a stable ``code`` (``wechat_state_invalid``, ``wechat_code_invalid``,
``wechat_code_used``, ``wechat_snapshot_user``, ``wechat_rate_limited``,
``wechat_unavailable``) — as
``application/problem+json``, or for a browser as a page linking back to the vote page,
where the campaign's other ways to vote are offered (``?wechat=0``: no new redirect).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ...errors import Forbidden, NotFound, VotingError, WechatCodeInvalid, WechatNotConfigured
from ...services import Services, services
from ...vote import identity, wechat
from ...vote.registry import LiveCampaign
from .. import i18n
from ..http import problem
from ..server.security import is_https
from .voter import NO_STORE, request_ip, set_voter_cookie

_NEXT = re.compile(r"/c/[A-Za-z0-9][A-Za-z0-9_-]{0,63}(?:/[A-Za-z0-9][A-Za-z0-9_-]{0,63})?")


def offered(svc: Services, live: LiveCampaign) -> bool:
    """Whether this campaign signs voters in by WeChat here (allowed and configured)."""
    return "wechat" in live.c.rules.identity and svc.settings.wechat_enabled


def next_path(live: LiveCampaign, raw: str | None) -> str:
    """Where to come back to: one of this campaign's pages, nothing else (no open redirect)."""
    if raw and _NEXT.fullmatch(raw) and raw.split("/")[2] == live.id:
        return raw
    return f"/c/{live.id}"


def to_wechat(request: Request, svc: Services, live: LiveCampaign, back: str) -> Response:
    """A redirect to WeChat's authorisation page, with this browser's state cookie."""
    url, cookie = wechat.begin(svc.settings, live.id, back)
    response = RedirectResponse(url, status_code=302, headers=NO_STORE)
    response.set_cookie(wechat.STATE_COOKIE, cookie, max_age=wechat.STATE_MAX_AGE,
                        httponly=True, samesite="lax", path="/auth/wechat",
                        secure=is_https(request.scope, svc.settings.trusted_proxies))
    return response


def _live(svc: Services, campaign_id: str) -> LiveCampaign:
    live = svc.registry.get(campaign_id)
    if not svc.settings.wechat_enabled:
        raise WechatNotConfigured()
    if "wechat" not in live.c.rules.identity:
        raise Forbidden("this campaign does not sign voters in by WeChat")
    return live


async def start(request: Request) -> Response:
    svc = services(request)
    live = _live(svc, request.query_params.get("campaign_id") or "")
    svc.ip_blocks.check(live.id, request_ip(svc, request))
    return to_wechat(request, svc, live, next_path(live, request.query_params.get("next")))


async def callback(request: Request) -> Response:
    svc = services(request)
    pending: wechat.Pending | None = None
    try:
        pending = wechat.returned(svc.settings, request.cookies.get(wechat.STATE_COOKIE),
                                  request.query_params.get("state") or "")
        live = _live(svc, pending.campaign_id)
        svc.ip_blocks.check(live.id, request_ip(svc, request))
        code = request.query_params.get("code") or ""
        if not code or len(code) > 256:
            raise WechatCodeInvalid("WeChat sent no sign-in code")
        openid = await wechat.openid(svc.settings, code, svc.settings.sms_http_timeout)
    except VotingError as exc:
        return _failed(request, exc, pending)
    voter = wechat_voter(svc, openid)
    del openid  # only its keyed hash goes on
    token = svc.tokens.issue_verified(live.id, "wechat", voter)
    response = RedirectResponse(next_path(live, pending.next_path), status_code=303,
                                headers=NO_STORE)
    set_voter_cookie(response, request, svc, live.id, token)
    response.delete_cookie(wechat.STATE_COOKIE, path="/auth/wechat")  # one trip, one use
    return response


def wechat_voter(svc: Services, openid: str) -> str:
    return identity.voter_id(str(svc.settings.pepper), "wechat", openid)


def _failed(request: Request, exc: VotingError, pending: wechat.Pending | None) -> Response:
    accept = request.headers.get("accept", "")
    if "text/html" not in accept:
        response = problem(exc, request.url.path)
    else:
        from ..pages.campaigns import render

        words = i18n.Words(i18n.pick(None, request.headers.get("accept-language")))
        back = f"/c/{pending.campaign_id}?wechat=0" if pending and pending.campaign_id else ""
        response = render(request, "signin_error.html", words, status=exc.status,
                          message=exc.detail, code=exc.code, back=back)
        response.headers.update(exc.headers)
    response.headers["Cache-Control"] = "no-store"
    return response


async def mp_verify(request: Request) -> Response:
    """The domain check file WeChat asks for before it accepts the 网页授权域名."""
    name = services(request).settings.wechat_mp_verify
    if not name or request.url.path != f"/{name}":
        raise NotFound()
    code = name.removeprefix("MP_verify_").removesuffix(".txt")
    return PlainTextResponse(code, headers={"Cache-Control": "no-store"})


routes = [
    Route("/MP_verify_{code}.txt", mp_verify, methods=["GET"]),
    Route(wechat.START_PATH, start, methods=["GET"]),
    Route(wechat.CALLBACK_PATH, callback, methods=["GET"]),
]
