"""``POST /api/v1/campaigns/{cid}/votes`` as a pure ASGI app, ahead of Starlette's router.

Votes are the bulk of the traffic, and Starlette's routing, ``Request``, exception
middleware and ``Response`` cost a vote ~60 µs, as much as the vote itself. This module
answers the vote path alone, ahead of Starlette's middleware, and passes every other
request on. ``SecurityMiddleware`` gives it the security headers and the cross-site refusal
that every route gets (without a wrapped ``send``); the body limit, the problem+json
bodies, the credential sources (partner JWT, ``X-Voter-Token``, the voter cookie) and
``svc.outcomes.note`` once per request are those of the rest of the API.

Under the service's own HTTP protocol most votes do not reach ASGI at all: ``DirectVotes``
answers them from the parsed head and body (``web.protocol.DirectExchange``), through the
same ``vote_reply``; this ASGI route serves the rest (see ``web/protocol.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
from redis.exceptions import RedisError
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import (
    Blocked,
    CampaignNotFound,
    ChallengeFailed,
    Forbidden,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    VoterRequired,
    VotingClosed,
    VotingError,
)
from ..fraud import challenge
from ..models import VoteIn
from ..services import Services
from ..vote import keys, voting
from ..vote.outcomes import ACCEPTED, Outcome
from ..vote.registry import LiveCampaign
from .http import decode, encode_headers, problem_body
from .protocol import AnsweringCycle
from .security import CROSS_SITE, SecurityMiddleware

log = logging.getLogger(__name__)

PREFIX = "/api/v1/campaigns/"
SUFFIX = "/votes"
BODY_LIMIT = 2048
VOTER_COOKIE = "vs_voter_"
_JSON = (b"content-type", b"application/json")
_PROBLEM = (b"content-type", b"application/problem+json")
_encoder = msgspec.json.Encoder()

BodyReader = Callable[[], Awaitable[bytes]]
"""Gives a vote request's whole body; ``PayloadTooLarge`` past ``BODY_LIMIT``."""
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""Status, header list and payload of a vote's answer (before the security headers)."""
Reply = tuple[int, bytes, bytes]
"""The same with every header encoded, the security ones included (``DirectVotes``)."""


class _Gone(Exception):
    """The client went away before its body arrived: nobody to answer."""


class VoteRoute:
    """Serves vote POSTs itself; everything else goes on to ``app`` (Starlette's middleware
    stack). ``security`` is the app's ``SecurityMiddleware``: its cross-site refusal and its
    response headers, applied here without wrapping ``send``."""

    def __init__(self, app: ASGIApp, security: SecurityMiddleware) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            cid = campaign_of(scope["path"])
            if cid is not None:
                request = _Request(scope)
                added = self.security.api_headers(
                    scope, request.origin, request.fetch_site, request.host,
                    request.forwarded_proto)
                if added is None:
                    await self.security.refuse(scope, receive, send)
                    return
                reply = await vote_reply(scope["app"].state.services, cid, scope["path"],
                                         request, functools.partial(_body, request, receive))
                if reply is not None:
                    await _send(send, reply, added)
                return
        await self.app(scope, receive, send)


def campaign_of(path: str) -> str | None:
    """The campaign id of a vote path (``/api/v1/campaigns/{cid}/votes``), else ``None``."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        cid = path[len(PREFIX):-len(SUFFIX)]
        if cid and "/" not in cid:
            return cid
    return None


class DirectVotes:
    """The vote route as the HTTP protocol calls it (``web.protocol.DirectRoute``), from the
    request's head as uvicorn parsed it and its whole body: no ASGI scope of its own, no
    request cycle, no messages. uvicorn's ASGI machinery cost a vote about as much as the
    vote's own work. The answer is the ASGI route's, header for header."""

    body_limit = BODY_LIMIT
    campaign_of = staticmethod(campaign_of)

    def __init__(self, security: SecurityMiddleware, services: Services) -> None:
        self.security = security
        self.services = services

    async def answer(self, scope: Scope, cid: str, body: bytes | None) -> Reply:
        """``(status, encoded header lines, payload)``; ``body`` ``None``: over the limit."""
        request = _Request(scope)
        security = self.security
        added = security.api_headers(scope, request.origin, request.fetch_site, request.host,
                                     request.forwarded_proto)
        if added is None:
            status, headers, payload = _refusal(Forbidden(CROSS_SITE), scope["path"])
            added = security.answer_headers(scope, request.forwarded_proto)
        else:
            async def whole() -> bytes:
                check_declared_length(request.content_length)
                if body is None:
                    raise PayloadTooLarge(f"body larger than {BODY_LIMIT} bytes")
                return body

            reply = await vote_reply(self.services, cid, scope["path"], request, whole)
            assert reply is not None  # the body is all here: the client cannot be "gone"
            status, headers, payload = reply
        return status, encode_headers(headers) + added[1], payload


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The same route for Starlette's router, behind ``SecurityMiddleware`` (an app built
    without ``VoteRoute``)."""
    request = _Request(scope)
    reply = await vote_reply(scope["app"].state.services, scope["path_params"]["cid"],
                             scope["path"], request, functools.partial(_body, request, receive))
    if reply is not None:
        await _send(send, reply, ([], b""))


class _Request:
    """What the vote and the security checks need from the request, read in one pass over
    the headers (the first of each; the security ones as ``SecurityMiddleware._scan`` reads
    them, the last)."""

    __slots__ = (
        "authorization",
        "content_length",
        "cookie",
        "fetch_site",
        "forwarded_for",
        "forwarded_proto",
        "host",
        "origin",
        "peer",
        "voter_token",
    )

    def __init__(self, scope: Scope) -> None:
        authorization = voter_token = cookie = forwarded_for = content_length = None
        origin = fetch_site = host = forwarded_proto = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"x-voter-token":
                if voter_token is None:
                    voter_token = value.decode("latin-1")
            elif name == b"cookie":
                if cookie is None:
                    cookie = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                if forwarded_for is None:
                    forwarded_for = value.decode("latin-1")
            elif name == b"content-length":
                if content_length is None:
                    content_length = value.decode("latin-1")
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = value
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
        self.authorization = authorization
        self.voter_token = voter_token
        self.cookie = cookie
        self.forwarded_for = forwarded_for
        self.content_length = content_length
        self.origin = origin
        self.fetch_site = fetch_site
        self.host = host
        self.forwarded_proto = forwarded_proto
        client = scope.get("client")
        self.peer: str | None = client[0] if client else None


def check_declared_length(declared: str | None) -> None:
    """``PayloadTooLarge`` for a ``Content-Length`` over the limit (or not a number)."""
    if declared is not None and (not declared.isdigit() or int(declared) > BODY_LIMIT):
        raise PayloadTooLarge(f"body larger than {BODY_LIMIT} bytes")


async def _body(request: _Request, receive: Receive) -> bytes:
    check_declared_length(request.content_length)
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > BODY_LIMIT:
            raise PayloadTooLarge(f"body larger than {BODY_LIMIT} bytes")
        if not message.get("more_body", False):
            return body


def credential(
    svc: Services, live: LiveCampaign, authorization: str | None, voter_token: str | None,
    cookie: str | None,
) -> tuple[str, str, str]:
    """The credential → ``(voter_id, channel from the credential or "", identity mode)``:
    a partner JWT in ``Authorization``, else ``X-Voter-Token``, else the voter cookie."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise VoterRequired("Authorization must be 'Bearer <partner token>'")
        voter, channel = svc.partners.voter(token, live.c, live.channels, str(svc.settings.pepper))
        return voter, channel, "partner"
    carried = voter_token or (cookie_parser(cookie).get(VOTER_COOKIE + live.id) if cookie else None)
    if not carried:
        raise VoterRequired()
    voter, mode = svc.tokens.credential(carried, live.id)
    if mode not in live.c.rules.identity:
        if mode == "anonymous":
            raise VoterRequired("this campaign needs a partner or SMS credential")
        raise VoterRequired(f"this campaign does not accept {mode} voters")
    return voter, "", mode


async def vote_reply(
    svc: Services, cid: str, path: str, request: _Request, body: BodyReader,
) -> Answer | None:
    """The answer to one vote request, ``None`` if the client went away before its body
    arrived; its outcome noted once, whatever happened."""
    started = time.perf_counter()
    seen = ["", ""]  # identity mode, channel: what the outcome reports
    outcome = ACCEPTED
    try:
        try:
            return await _vote(svc, cid, request, body, seen)
        except VotingError as exc:
            outcome = exc.code
            return _refusal(exc, path)
        except _Gone:
            outcome = Unavailable.code
            return None
        except (RedisError, OSError, asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError) as exc:
            log.warning("backend error on a vote: %r", exc)
            outcome = Unavailable.code
            return _refusal(Unavailable(), path)
        except Exception:
            log.exception("unhandled error on a vote")
            outcome = Unavailable.code
            return _refusal(InternalError(), path)
    finally:
        svc.outcomes.note(Outcome(
            cid if outcome != CampaignNotFound.code else "", outcome, seen[0], seen[1],
            time.perf_counter() - started,
        ))


async def _send(
    send: Send, reply: Answer,
    added: tuple[list[tuple[bytes, bytes]], bytes],
) -> None:
    """Write a reply through ASGI; ``added`` = the security headers every answer gets, as a
    list and encoded."""
    status, headers, payload = reply
    cycle = getattr(send, "__self__", None)
    if isinstance(cycle, AnsweringCycle):  # served by our protocol: one write
        await cycle.answer(status, encode_headers(headers) + added[1], payload)
    else:
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + added[0]})
        await send({"type": "http.response.body", "body": payload})


def _refusal(exc: VotingError, path: str) -> Answer:
    payload = problem_body(exc, path)
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    headers += [(b"content-length", str(len(payload)).encode()), _PROBLEM]
    return exc.status, headers, payload


async def _vote(
    svc: Services, cid: str, request: _Request, body: BodyReader, seen: list[str]
) -> Answer:
    live = svc.registry.get(cid)
    vote = decode(await body(), VoteIn)
    voter, token_channel, seen[0] = credential(
        svc, live, request.authorization, request.voter_token, request.cookie)
    if token_channel and vote.channel and vote.channel != token_channel:
        raise InvalidRequest("channel differs from the partner token's issuer")
    ip = svc.addresses.of(request.peer, request.forwarded_for)
    channel = seen[1] = token_channel or vote.channel or ""
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
    out: dict[str, Any] = {
        "vote_id": accepted.vote_id,
        "candidate_id": accepted.candidate_id,
        "votes_left_today": accepted.votes_left_today,
    }
    if accepted.candidate_votes is not None:
        out["candidate_votes"] = accepted.candidate_votes
    payload: bytes = _encoder.encode(out)
    headers = [(b"content-length", str(len(payload)).encode()), _JSON]
    quota = voting.quota_headers(
        live.c.rules, accepted.votes_left_today, accepted.day_ends_at, time.time())
    headers += [(b"ratelimit-policy", quota["RateLimit-Policy"].encode()),
                (b"ratelimit", quota["RateLimit"].encode())]
    return 200, headers, payload


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
    # one deadline for the whole Redis part: a slow or paused Redis is a 503 within 1 s
    deadline = time.monotonic() + svc.settings.redis_timeout
    if live.c.show_counts and not svc.registry.has_tallies(live.id):
        with contextlib.suppress(Unavailable):
            await svc.registry.tallies(live.id)  # warm this worker's cache once
    return await voting.cast(svc.batcher, svc.registry, live, ballot, deadline)
