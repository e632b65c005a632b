"""``POST /api/v1/campaigns/{cid}/votes``: one handler (``handle_vote``), two ways in.

Votes are the bulk of the traffic, and Starlette's routing, ``Request``, exception
middleware and ``Response`` cost a vote as much as its own work (``docs/capacity.md``). So
the vote route runs ahead of Starlette's middleware, and under the service's HTTP protocol
most votes do not reach ASGI at all:

- ``DirectVotes.answer``: the protocol hands it a vote POST's parsed head and whole body
  (``web.server.protocol.DirectExchange``; chosen by ``web.server.contract``);
- ``VoteRoute``: the same route as pure ASGI, ahead of Starlette's stack, for everything the
  protocol leaves to uvicorn (``Expect: 100-continue``, a request pipelined behind one in
  flight, an escaped path, uvicorn's stock protocol).

Both build a ``VoteRequest`` (one scan of the headers, ``web.server.headers``) and write the
``Reply`` of ``handle_vote``, which applies what the middleware stack gives every other
route: ``SecurityMiddleware``'s cross-site refusal and headers, ``EdgeMiddleware``'s URL
check; then the body limit, the problem+json bodies, the credential sources (partner JWT,
``X-Voter-Token``, the voter cookie) and ``svc.outcomes.note`` once per vote.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import asyncpg
import msgspec
from redis.exceptions import RedisError
from starlette.requests import Request, cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ...errors import (
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
from ...fraud import challenge
from ...models import VoteIn
from ...redis import keys
from ...services import Services
from ...vote import voting
from ...vote.outcomes import ACCEPTED, Outcome
from ...vote.registry import LiveCampaign
from ..http import decode, encode_headers, problem_body
from ..server.contract import one_write
from ..server.edge import UNCLEAN_URL, url_ok
from ..server.headers import RequestHeaders
from ..server.security import CROSS_SITE, SecurityMiddleware

log = logging.getLogger(__name__)

PREFIX = "/api/v1/campaigns/"
SUFFIX = "/votes"
BODY_LIMIT = 2048
VOTER_COOKIE = "vs_voter_"
_JSON = (b"content-type", b"application/json")
_PROBLEM = (b"content-type", b"application/problem+json")
_encoder = msgspec.json.Encoder()

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""Status, header list and payload of a vote's answer (before the security headers)."""


class _Gone(Exception):
    """The client went away before its body arrived: nobody to answer."""


def campaign_of(path: str) -> str | None:
    """The campaign id of a vote path (``/api/v1/campaigns/{cid}/votes``), else ``None``."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        cid = path[len(PREFIX):-len(SUFFIX)]
        if cid and "/" not in cid:
            return cid
    return None


class VoteRequest:
    """What a vote needs of its request: its scope (ASGI's, or the one the protocol parsed),
    the campaign of its path, its headers read once, and a way to its body."""

    __slots__ = ("body", "cid", "heads", "path", "peer", "receive", "scope")

    def __init__(self, scope: Scope, cid: str, receive: Receive | None = None,
                 body: bytes | None = None) -> None:
        """``receive``: the body comes through ASGI; else ``body`` is all of it (``None``:
        it was over ``BODY_LIMIT``)."""
        self.scope = scope
        self.cid = cid
        self.path: str = scope["path"]
        self.heads = RequestHeaders(scope["headers"])
        client = scope.get("client")
        self.peer: str | None = client[0] if client else None
        self.receive = receive
        self.body = body

    async def read(self) -> bytes:
        """The whole body; ``PayloadTooLarge`` past ``BODY_LIMIT``, ``_Gone`` if the client
        hung up before it arrived."""
        check_declared_length(self.heads.content_length)
        receive = self.receive
        if receive is None:
            if self.body is None:
                raise PayloadTooLarge(f"body larger than {BODY_LIMIT} bytes")
            return self.body
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


class Reply:
    """A vote's answer: status, its own headers, payload, and the security headers every
    answer gets (as a list and as encoded header lines)."""

    __slots__ = ("added", "headers", "payload", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], payload: bytes,
                 added: tuple[list[tuple[bytes, bytes]], bytes]) -> None:
        self.status = status
        self.headers = headers
        self.payload = payload
        self.added = added

    def head(self) -> bytes:
        """Every header line, encoded (for an answer written in one piece)."""
        return encode_headers(self.headers) + self.added[1]


async def handle_vote(svc: Services, security: SecurityMiddleware,
                      request: VoteRequest) -> Reply | None:
    """The answer to one vote request, ``None`` if the client went away before its body
    arrived. The checks the middleware stack makes of every other request come first, in
    its order: cross-site (``SecurityMiddleware``), then the URL (``EdgeMiddleware``)."""
    same_origin, added = security.api_headers(request.scope, request.heads)
    if not same_origin:
        status, headers, payload = _refusal(Forbidden(CROSS_SITE), request.path)
    elif not url_ok(request.scope):
        status, headers, payload = _refusal(InvalidRequest(UNCLEAN_URL), request.path)
    else:
        answer = await vote_reply(svc, request)
        if answer is None:
            return None
        status, headers, payload = answer
    return Reply(status, headers, payload, added)


class VoteRoute:
    """The ASGI way in: serves vote POSTs itself, ahead of Starlette's stack; everything else
    goes on to ``app``. ``security`` is the app's ``SecurityMiddleware`` (its inner app is
    never called: its checks and headers are applied here without wrapping ``send``)."""

    def __init__(self, app: ASGIApp, security: SecurityMiddleware) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            cid = campaign_of(scope["path"])
            if cid is not None:
                reply = await handle_vote(scope["app"].state.services, self.security,
                                          VoteRequest(scope, cid, receive=receive))
                if reply is not None:
                    await _send(send, reply)
                return
        await self.app(scope, receive, send)


class DirectVotes:
    """The protocol's way in (``web.server.protocol.DirectRoute``): the request's head as uvicorn
    parsed it and its whole body, no ASGI scope of its own, no request cycle, no messages.
    The answer is the ASGI route's, header for header."""

    body_limit = BODY_LIMIT
    campaign_of = staticmethod(campaign_of)

    def __init__(self, security: SecurityMiddleware, services: Services) -> None:
        self.security = security
        self.services = services

    async def answer(self, scope: Scope, cid: str, body: bytes | None) -> tuple[
            int, bytes, bytes]:
        """``(status, encoded header lines, payload)``; ``body`` ``None``: over the limit."""
        reply = await handle_vote(self.services, self.security,
                                  VoteRequest(scope, cid, body=body))
        assert reply is not None  # the body is all here: the client cannot be "gone"
        return reply.status, reply.head(), reply.payload


async def ahead_of_the_router(request: Request) -> Response:
    """The router's entry for the vote path, there for its 405 on other methods and for the
    route tables: ``VoteRoute`` answers every POST to it before the router sees one."""
    log.error("a vote reached the router: the app was built without VoteRoute")
    raise InternalError()


def check_declared_length(declared: str | None) -> None:
    """``PayloadTooLarge`` for a ``Content-Length`` over the limit (or not a number)."""
    if declared is not None and (not declared.isdigit() or int(declared) > BODY_LIMIT):
        raise PayloadTooLarge(f"body larger than {BODY_LIMIT} bytes")


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


async def vote_reply(svc: Services, request: VoteRequest) -> Answer | None:
    """The vote's own answer, ``None`` if the client went away before its body arrived; its
    outcome noted once, whatever happened."""
    cid, path = request.cid, request.path
    started = time.perf_counter()
    seen = ["", ""]  # identity mode, channel: what the outcome reports
    outcome = ACCEPTED
    try:
        try:
            return await _vote(svc, request, seen)
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


async def _send(send: Send, reply: Reply) -> None:
    """Write a reply through ASGI: in one write when the service's protocol serves it."""
    answer = one_write(send)
    if answer is not None:
        await answer(reply.status, reply.head(), reply.payload)
    else:
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": reply.headers + reply.added[0]})
        await send({"type": "http.response.body", "body": reply.payload})


def _refusal(exc: VotingError, path: str) -> Answer:
    payload = problem_body(exc, path)
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    headers += [(b"content-length", str(len(payload)).encode()), _PROBLEM]
    return exc.status, headers, payload


async def _vote(svc: Services, request: VoteRequest, seen: list[str]) -> Answer:
    live = svc.registry.get(request.cid)
    vote = decode(await request.read(), VoteIn)
    heads = request.heads
    voter, token_channel, seen[0] = credential(
        svc, live, heads.authorization, heads.voter_token, heads.cookie)
    if token_channel and vote.channel and vote.channel != token_channel:
        raise InvalidRequest("channel differs from the partner token's issuer")
    ip = svc.addresses.of(request.peer, heads.forwarded_for)
    channel = seen[1] = token_channel or vote.channel or ""
    try:
        accepted = await _checked_cast(svc, live, vote, voter, ip, channel, bool(token_channel))
    except (VotingClosed, RateLimited, ChallengeFailed, Blocked):
        # a retry of a vote that did land gets its first answer, even if the campaign has
        # paused, the network hit a limit or the proof expired since (looked up only here,
        # on the refusal path, so accepted votes pay nothing for it)
        if vote.vote_id is None:
            raise
        first = await voting.replay(svc.pipeline, svc.registry, live, voter, vote.vote_id)
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
    return await voting.cast(svc.pipeline, svc.registry, live, ballot, deadline)
