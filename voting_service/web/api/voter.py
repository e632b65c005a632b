"""Public API of becoming a voter (DESIGN §6): anonymous tokens, proof-of-work challenges
and SMS sign-in."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import Forbidden, Unavailable, VotingClosed
from ...fraud import challenge, minting, sms
from ...models import SmsStart, SmsVerify, VoterIn, level_for
from ...services import Services, services
from ...vote import identity, voting
from ...vote.registry import LiveCampaign
from ..http import JSON, decode, json_body, read_body
from ..server.security import is_https
from .public import resolve_voter
from .votes import VOTER_COOKIE

NO_STORE = {"Cache-Control": "no-store"}


def request_ip(svc: Services, request: Request) -> str:
    client = request.client
    return identity.client_ip(
        client.host if client else None,
        request.headers.get("x-forwarded-for"),
        svc.settings.trusted_proxies,
    )


def set_voter_cookie(response: Response, request: Request, svc: Services, campaign_id: str,
                     token: str) -> None:
    """The voter token as a cookie (anonymous and SMS alike): ``Secure`` whenever the visitor
    came over TLS, also through a trusted proxy (``security.is_https``)."""
    response.set_cookie(
        VOTER_COOKIE + campaign_id, token, max_age=identity.VOTER_TOKEN_MAX_AGE, httponly=True,
        samesite="lax", secure=is_https(request.scope, svc.settings.trusted_proxies), path="/",
    )


def _anonymous(live: LiveCampaign) -> None:
    if "anonymous" not in live.c.rules.identity:
        raise Forbidden("this campaign does not accept anonymous voters")


async def new_voter(request: Request) -> Response:
    """An anonymous voter token: counted against the address's and its network's minting
    limits, and paid with a proof of work when the campaign asks for one (``fraud.minting``)."""
    svc = services(request)
    live = svc.registry.get(request.path_params["cid"])
    _anonymous(live)
    raw = await read_body(request, 2048)
    body = decode(raw, VoterIn) if raw.strip() else VoterIn()
    ip = request_ip(svc, request)
    svc.ip_blocks.check(live.id, ip)
    try:
        async with asyncio.timeout(svc.settings.redis_timeout):
            await minting.admit(svc.pipeline, svc.settings.secret_keys, live, ip, body.proof,
                                time.time())
    except TimeoutError as exc:
        raise Unavailable("Redis did not answer in time") from exc
    token = svc.tokens.issue(live.id)
    response = JSON({"token": token}, status_code=201, headers=NO_STORE)
    set_voter_cookie(response, request, svc, live.id, token)
    return response


async def get_challenge(request: Request) -> Response:
    """An ALTCHA challenge in this campaign: for a vote, issued to the voter (credential as
    for a vote); with ``?for=voter``, issued to the address, to mint an anonymous token."""
    svc = services(request)
    live = svc.registry.get(request.path_params["cid"])
    minting_token = request.query_params.get("for") == "voter"
    ip = request_ip(svc, request)
    if minting_token:
        _anonymous(live)
        to = minting.subject(ip)
    else:
        to, _ = resolve_voter(svc, request, live)
    svc.ip_blocks.check(live.id, ip)
    rules = live.c.rules
    now = time.time()
    level = 0
    try:
        async with asyncio.timeout(svc.settings.redis_timeout):
            if minting_token:
                level = await minting.level(svc.pipeline, live, ip, now)
            elif rules.challenge == "adaptive":
                pressure = await voting.check_ip(svc.pipeline, live, ip, now, peek=True)
                level = level_for(pressure, rules)
    except TimeoutError as exc:
        raise Unavailable("Redis did not answer in time") from exc
    issued = challenge.signer(svc.settings.secret_keys).issue(live.id, to, rules, level, now)
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
    sent = await sms.start(svc.redis, svc.pipeline, svc.sms, str(svc.settings.pepper), live,
                           body.phone, ip, svc.sms_budget)
    return JSON({"sent": True, "expires_in": sent.expires_in, "resend_after": sent.resend_after},
                status_code=202, headers=NO_STORE)


async def sms_verify(request: Request) -> Response:
    svc = services(request)
    body = await json_body(request, SmsVerify)
    live = svc.registry.get(body.campaign_id)
    if "sms" not in live.c.rules.identity:
        raise Forbidden("this campaign does not sign voters in by SMS")
    ip = request_ip(svc, request)
    svc.ip_blocks.check(live.id, ip)
    voter = await sms.verify(svc.pipeline, str(svc.settings.pepper), live, body.phone, body.code,
                             ip)
    token = svc.tokens.issue_verified(live.id, "sms", voter)
    response = JSON({"token": token}, headers=NO_STORE)
    set_voter_cookie(response, request, svc, live.id, token)
    return response


routes = [
    Route("/api/v1/campaigns/{cid}/voter", new_voter, methods=["POST"]),
    Route("/api/v1/campaigns/{cid}/challenge", get_challenge, methods=["GET"]),
    Route("/api/v1/auth/sms/start", sms_start, methods=["POST"]),
    Route("/api/v1/auth/sms/verify", sms_verify, methods=["POST"]),
]
