"""Public API under ``/api/v1`` (DESIGN §6): campaigns, candidates, tallies, voting."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .. import digits
from ..errors import (
    Blocked,
    CampaignNotFound,
    CandidateNotFound,
    ChallengeFailed,
    Forbidden,
    InvalidRequest,
    RateLimited,
    Unavailable,
    VoterRequired,
    VotingClosed,
    VotingError,
)
from ..fraud import challenge
from ..models import VoteIn
from ..services import Services, services
from ..settings import IPNetwork
from ..vote import identity, keys, voting
from ..vote.outcomes import ACCEPTED, Outcome
from ..vote.registry import LiveCampaign
from .http import JSON, json_body
from .metrics import SSE_CLIENTS

VOTER_COOKIE = "vs_voter_"


def campaign_view(live: LiveCampaign, now: float) -> dict[str, Any]:
    c = live.c
    return {
        "id": c.id,
        "title": c.title,
        "status": live.state(now),
        "opens_at": c.opens_at.isoformat(),
        "closes_at": c.closes_at.isoformat(),
        "timezone": c.timezone,
        "show_counts": c.show_counts,
        "candidate_count": len(c.candidates),
        "rules": {
            "votes_per_day": c.rules.votes_per_day,
            "per_candidate_per_day": c.rules.per_candidate_per_day,
            "identity": c.rules.identity,
            "challenge": c.rules.challenge,
        },
        "channels": [{"id": ch.id, "name": ch.name} for ch in c.channels],
    }


LIST_FIELDS = ("id", "number", "name", "gender", "region", "industry", "employer",
               "occupation", "summary", "photo_url")


def candidate_view(cand: msgspec.Struct, votes: int | None, full: bool) -> dict[str, Any]:
    view = {f: getattr(cand, f) for f in LIST_FIELDS}
    if full:
        view["deeds"] = cand.deeds  # type: ignore[attr-defined]
    if votes is not None:
        view["votes"] = votes
    return view


async def get_campaign(request: Request) -> Response:
    live = services(request).registry.get(request.path_params["cid"])
    return JSON(campaign_view(live, time.time()))


async def list_campaigns(request: Request) -> Response:
    now = time.time()
    lives = sorted(services(request).registry.campaigns.values(), key=lambda x: x.id)
    return JSON([campaign_view(x, now) for x in lives if x.c.status != "draft"])


async def _counts(svc: Services, live: LiveCampaign) -> dict[str, int] | None:
    if not live.c.show_counts:
        return None
    totals, _ = await svc.registry.tallies(live.id)
    return totals


async def list_candidates(request: Request) -> Response:
    svc = services(request)
    live = svc.registry.get(request.path_params["cid"])
    q = request.query_params
    region, industry, text = q.get("region"), q.get("industry"), (q.get("q") or "").strip()
    number = digits.fold(text)  # "１２" finds candidate 12, as on the page
    counts = await _counts(svc, live)
    out = []
    for cand in live.c.candidates:
        if region and cand.region != region:
            continue
        if industry and cand.industry != industry:
            continue
        if text and text not in cand.name and number != str(cand.number) and text != cand.id:
            continue
        out.append(candidate_view(cand, None if counts is None else counts.get(cand.id, 0), False))
    return JSON({"campaign_id": live.id, "candidates": out})


async def get_candidate(request: Request) -> Response:
    svc = services(request)
    live = svc.registry.get(request.path_params["cid"])
    cand = live.candidates.get(request.path_params["candidate"])
    if cand is None:
        raise CandidateNotFound()
    counts = await _counts(svc, live)
    return JSON(candidate_view(cand, None if counts is None else counts.get(cand.id, 0), True))


async def tallies_body(svc: Services, live: LiveCampaign) -> dict[str, Any]:
    totals, as_of = await svc.registry.tallies(live.id)
    return {
        "campaign_id": live.id,
        "total": sum(totals.values()),
        "as_of": as_of,
        "candidates": [
            {"candidate_id": c.id, "votes": totals.get(c.id, 0)} for c in live.c.candidates
        ],
    }


async def get_tallies(request: Request) -> Response:
    svc = services(request)
    live = svc.registry.get(request.path_params["cid"])
    if not live.c.show_counts:
        raise Forbidden("vote counts of this campaign are not public")
    return JSON(await tallies_body(svc, live))


async def live_tallies(request: Request) -> Response:
    """Server-Sent Events: one tallies event at most once a second."""
    svc = services(request)
    live = svc.registry.get(request.path_params["cid"])
    if not live.c.show_counts:
        raise Forbidden("vote counts of this campaign are not public")

    async def events() -> AsyncIterator[bytes]:
        last = b""
        SSE_CLIENTS.inc()
        try:
            while not await request.is_disconnected():
                current = svc.registry.public(live.id)
                if current is None:
                    return  # back to draft or gone: the stream ends
                body = msgspec.json.encode(await tallies_body(svc, current))
                if body != last:
                    yield b"event: tallies\ndata: " + body + b"\n\n"
                    last = body
                else:
                    yield b": keep-alive\n\n"
                await asyncio.sleep(1.0)
        finally:
            SSE_CLIENTS.dec()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def resolve_voter(svc: Services, request: Request, live: LiveCampaign) -> tuple[str, str]:
    """The credential → ``(voter_id, channel from the credential or "")``."""
    voter, channel, _ = resolve_credential(svc, request, live)
    return voter, channel


def resolve_credential(
    svc: Services, request: Request, live: LiveCampaign
) -> tuple[str, str, str]:
    """The credential → ``(voter_id, channel from the credential or "", identity mode)``."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise VoterRequired("Authorization must be 'Bearer <partner token>'")
        voter, channel = identity.partner_voter(token, live.c, str(svc.settings.pepper))
        return voter, channel, "partner"
    carried = request.headers.get("x-voter-token") or request.cookies.get(VOTER_COOKIE + live.id)
    if not carried:
        raise VoterRequired()
    voter, mode = svc.tokens.credential(carried, live.id)
    if mode not in live.c.rules.identity:
        if mode == "anonymous":
            raise VoterRequired("this campaign needs a partner or SMS credential")
        raise VoterRequired(f"this campaign does not accept {mode} voters")
    return voter, "", mode


@functools.lru_cache(maxsize=16384)
def _client_ip(peer: str | None, forwarded_for: str | None,
               trusted: tuple[IPNetwork, ...]) -> str:
    return identity.client_ip(peer, forwarded_for, trusted)


def client_ip(peer: str | None, forwarded_for: str | None,
              trusted: tuple[IPNetwork, ...]) -> str:
    """``identity.client_ip``, cached: it parses with ``ipaddress`` (~15 µs a vote) and a
    citizen's votes come in a row from one address. Long headers are not kept."""
    if forwarded_for is not None and len(forwarded_for) > 256:
        return identity.client_ip(peer, forwarded_for, trusted)
    return _client_ip(peer, forwarded_for, trusted)


async def post_vote(request: Request) -> Response:
    """The vote route: ``_vote`` does the work; every outcome is told to ``svc.outcomes``."""
    svc = services(request)
    started = time.perf_counter()
    seen: dict[str, str] = {}
    outcome = ACCEPTED
    try:
        return await _vote(svc, request, seen)
    except VotingError as exc:
        outcome = exc.code
        raise
    except Exception:
        outcome = Unavailable.code  # Redis or PostgreSQL errors answer 503 at the edge
        raise
    finally:
        svc.outcomes.note(Outcome(
            request.path_params["cid"] if outcome != CampaignNotFound.code else "",
            outcome, seen.get("mode", ""), seen.get("channel", ""),
            time.perf_counter() - started,
        ))


async def _vote(svc: Services, request: Request, seen: dict[str, str]) -> Response:
    live = svc.registry.get(request.path_params["cid"])
    vote = await json_body(request, VoteIn)
    voter, token_channel, seen["mode"] = resolve_credential(svc, request, live)
    if token_channel and vote.channel and vote.channel != token_channel:
        raise InvalidRequest("channel differs from the partner token's issuer")
    client = request.client
    ip = client_ip(
        client.host if client else None,
        request.headers.get("x-forwarded-for"),
        svc.settings.trusted_proxies,
    )
    channel = token_channel or vote.channel or ""
    seen["channel"] = channel
    try:
        accepted = await _checked_cast(svc, live, vote, voter, ip, channel, bool(token_channel))
    except (VotingClosed, RateLimited, ChallengeFailed, Blocked):
        # a retry of a vote that did land gets its first answer, even if the campaign has
        # paused, the network hit a limit or the proof expired since (looked up only here,
        # on the refusal path, so accepted votes pay nothing for it)
        if vote.vote_id is None:
            raise
        first = await voting.replay(svc.batcher, svc.registry, live, voter, vote.vote_id)
        if first is None:
            raise
        accepted = first
    body: dict[str, Any] = {
        "vote_id": accepted.vote_id,
        "candidate_id": accepted.candidate_id,
        "votes_left_today": accepted.votes_left_today,
    }
    if accepted.candidate_votes is not None:
        body["candidate_votes"] = accepted.candidate_votes
    return JSON(body, headers=voting.quota_headers(
        live.c.rules, accepted.votes_left_today, accepted.day_ends_at, time.time()))


async def _checked_cast(
    svc: Services, live: LiveCampaign, vote: VoteIn, voter: str, ip: str, channel: str,
    signed: bool,
) -> voting.Accepted:
    svc.ip_blocks.check(live.id, ip)
    pow_fields: dict[str, Any] = {}
    if live.c.rules.challenge != "off" and live.is_open(time.time()):
        proof = challenge.signer(svc.settings.secret_keys).verify(
            vote.proof, live.id, voter, time.time())
        pow_fields = {
            "challenge_key": keys.challenge_spent(
                live.id, keys.shard_of(voter, svc.registry.shards), proof.id),
            "challenge_expires": proof.spent_until,
            "challenge_level": proof.level,
        }
    ballot = voting.Ballot(voter, vote, ip, channel, signed, **pow_fields)
    try:
        # one deadline for the whole Redis part: a slow or paused Redis is a 503 within 1 s
        async with asyncio.timeout(svc.settings.redis_timeout):
            if live.c.show_counts and not svc.registry.has_tallies(live.id):
                with contextlib.suppress(Unavailable):
                    await svc.registry.tallies(live.id)  # warm this worker's cache once
            return await voting.cast(svc.batcher, svc.registry, live, ballot)
    except TimeoutError as exc:
        raise Unavailable("Redis did not answer in time; retry with the same vote_id") from exc


routes = [
    # the vote first: the router tries routes in order (~1.5 µs each) and votes are the
    # bulk of the traffic; no other pattern matches its paths, so the order changes nothing
    Route("/api/v1/campaigns/{cid}/votes", post_vote, methods=["POST"]),
    Route("/api/v1/campaigns", list_campaigns),
    Route("/api/v1/campaigns/{cid}", get_campaign),
    Route("/api/v1/campaigns/{cid}/candidates", list_candidates),
    Route("/api/v1/campaigns/{cid}/candidates/{candidate}", get_candidate),
    Route("/api/v1/campaigns/{cid}/tallies", get_tallies),
    Route("/api/v1/campaigns/{cid}/live", live_tallies),
]
