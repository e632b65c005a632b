"""Public API under ``/api/v1`` (DESIGN §6): campaigns, candidates, tallies, voting."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ... import digits
from ...errors import CandidateNotFound, Forbidden, StreamsFull, TooManyStreams
from ...services import Services, services
from ...vote import identity
from ...vote.registry import LiveCampaign
from ..http import JSON
from ..metrics import SSE_REFUSED
from ..server.address_caps import AddressCaps
from . import votes
from .live import LiveTallies


def campaign_view(live: LiveCampaign, now: float) -> dict[str, Any]:
    c = live.c
    return {
        "id": c.id,
        "title": c.title,
        "year": c.year,
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
               "occupation", "summary", "photo_url", "recommender", "recommender_kind",
               "deed_type", "honors", "video_url", "status")


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
    """Server-Sent Events: a tallies event at most once a second, when the tallies changed
    (``live.LiveTallies``: one snapshot per campaign per second per worker)."""
    svc = services(request)
    live = svc.registry.get(request.path_params["cid"])
    if not live.c.show_counts:
        raise Forbidden("vote counts of this campaign are not public")
    feeds: LiveTallies = request.app.state.live
    client = request.client
    ip = identity.client_ip(client.host if client else None,
                            request.headers.get("x-forwarded-for"), svc.settings.trusted_proxies)
    held, refusal = feeds.caps.take(ip)
    if refusal is not None:
        SSE_REFUSED.labels(refusal.level).inc()
        retry = {"Retry-After": "30"}
        if refusal.level == "total":
            raise StreamsFull(headers=retry)
        raise TooManyStreams(
            f"at most {refusal.limit} live streams per {refusal.level} on each server; "
            "one stream per page is enough", headers=retry)
    return _HeldStream(
        feeds.events(live.id), lambda: feeds.caps.give_back(held),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _HeldStream(StreamingResponse):
    """A stream that gives its slot back when the response ends, however it ends (a client
    gone before the first event never starts the body's generator, whose ``finally`` would
    then never run)."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None],
                 **options: Any) -> None:
        super().__init__(content, **options)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def live_feeds(svc: Services) -> LiveTallies:
    """The worker's ``/live`` feeds: the tallies body of the campaign's current snapshot."""

    async def snapshot(campaign_id: str) -> dict[str, Any]:
        return await tallies_body(svc, svc.registry.get(campaign_id))

    s = svc.settings
    return LiveTallies(snapshot, caps=AddressCaps(s.sse_per_address, s.sse_per_network,
                                                  s.sse_per_worker))


def resolve_voter(svc: Services, request: Request, live: LiveCampaign) -> tuple[str, str]:
    """The credential → ``(voter_id, channel from the credential or "")``, as for a vote."""
    voter, channel, _ = votes.credential(
        svc, live, request.headers.get("authorization"), request.headers.get("x-voter-token"),
        request.headers.get("cookie"),
    )
    return voter, channel


routes = [
    # answered by votes.VoteRoute ahead of the router; listed so that other methods get 405
    Route("/api/v1/campaigns/{cid}/votes", votes.ahead_of_the_router, methods=["POST"]),
    Route("/api/v1/campaigns", list_campaigns),
    Route("/api/v1/campaigns/{cid}", get_campaign),
    Route("/api/v1/campaigns/{cid}/candidates", list_candidates),
    Route("/api/v1/campaigns/{cid}/candidates/{candidate}", get_candidate),
    Route("/api/v1/campaigns/{cid}/tallies", get_tallies),
    Route("/api/v1/campaigns/{cid}/live", live_tallies),
]
