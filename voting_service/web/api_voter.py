"""Public API of becoming a voter (DESIGN §6): proof-of-work challenges and SMS sign-in."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import Forbidden, Unavailable, VotingClosed
from ..fraud import challenge, sms
from ..models import SmsStart, SmsVerify, level_for
from ..services import Services, services
from ..vote import identity, voting
from .api_public import resolve_voter, set_voter_cookie
from .http import JSON, json_body

NO_STORE = {"Cache-Control": "no-store"}


def request_ip(svc: Services, request: Request) -> str:
    client = request.client
    return identity.client_ip(
        client.host if client else None,
        request.headers.get("x-forwarded-for"),
        svc.settings.trusted_proxies,
    )


async def get_challenge(request: Request) -> Response:
    """An ALTCHA challenge for this voter (credential as for a vote) in this campaign."""
    svc = services(request)
    live = svc.registry.get(request.path_params["cid"])
    voter, _ = resolve_voter(svc, request, live)
    ip = request_ip(svc, request)
    svc.ip_blocks.check(live.id, ip)
    rules = live.c.rules
    now = time.time()
    level = 0
    if rules.challenge == "adaptive":
        try:
            async with asyncio.timeout(svc.settings.redis_timeout):
                pressure = await voting.check_ip(svc.batcher, live, ip, now, peek=True)
        except TimeoutError as exc:
            raise Unavailable("Redis did not answer in time") from exc
        level = level_for(pressure, rules)
    issued = challenge.signer(svc.settings.secret_keys).issue(live.id, voter, rules, level, now)
    return JSON(issued, headers=NO_STORE)


async def sms_start(request: Request) -> Response:
    svc = services(request)
    body = await json_body(request, SmsStart)
    live = svc.registry.get(body.campaign_id)
    if "sms" not in live.c.rules.identity:
        raise Forbidden("this campaign does not sign voters in by SMS")
    if live.state(time.time()) == "closed":
        raise VotingClosed("voting is closed")
    ip = request_ip(svc, request)
    svc.ip_blocks.check(live.id, ip)
    sent = await sms.start(svc.redis, svc.batcher, svc.sms, str(svc.settings.pepper), live,
                           body.phone, ip)
    return JSON({"sent": True, "expires_in": sent.expires_in, "resend_after": sent.resend_after},
                status_code=202, headers=NO_STORE)


async def sms_verify(request: Request) -> Response:
    svc = services(request)
    body = await json_body(request, SmsVerify)
    live = svc.registry.get(body.campaign_id)
    if "sms" not in live.c.rules.identity:
        raise Forbidden("this campaign does not sign voters in by SMS")
    voter = await sms.verify(svc.batcher, str(svc.settings.pepper), live, body.phone, body.code)
    token = svc.tokens.issue_verified(live.id, "sms", voter)
    response = JSON({"token": token}, headers=NO_STORE)
    set_voter_cookie(response, request, svc, live.id, token)
    return response


routes = [
    Route("/api/v1/campaigns/{cid}/challenge", get_challenge, methods=["GET"]),
    Route("/api/v1/auth/sms/start", sms_start, methods=["POST"]),
    Route("/api/v1/auth/sms/verify", sms_verify, methods=["POST"]),
]
