"""Votes answered by the HTTP protocol itself (``web.server.protocol.DirectExchange`` calling
``web.api.votes.DirectVotes``), over a real socket: the same answers as the ASGI route, requests
pipelined behind a direct one answered in order, the connection rules of HTTP/1.1 kept, and
a vote whose client hung up counted once, not lost.

Every test runs twice: on the service's protocol under the pinned uvicorn, and as the
service runs when ``web.server.contract`` finds another uvicorn (its stock protocol, every vote
through the ASGI route): the same answers either way."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from tests.conftest import Harness, client_for, redis_tallies
from voting_service.app import create_app
from voting_service.redis import store
from voting_service.settings import Settings
from voting_service.vote.outcomes import Outcome
from voting_service.web.server import contract as server
from voting_service.web.server import protocol

VOTES = "/api/v1/campaigns/t2026/votes"
CONSTRAINTS = Path(__file__).parents[2] / "constraints.txt"
RETRY_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class Served:
    harness: Harness
    port: int
    direct: list[str]
    """The path of every request the protocol handed to the direct route."""
    stock: bool
    """uvicorn's stock protocol, as on a uvicorn the service was not tested with."""

    def went_direct(self, *paths: str) -> list[str]:
        """What ``direct`` should hold once these requests were answered directly: none of
        them on the stock protocol."""
        return [] if self.stock else list(paths)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture(params=["pinned", "stock"])
async def served(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, settings: Settings,
    redis: store.AnyRedis, pg: asyncpg.Connection,
) -> AsyncIterator[Served]:
    """The app with its lifespan, behind the protocol ``web.server.contract`` chooses, on a real
    listening socket (as ``voting-service serve`` runs it), and the harness's in-process
    client beside it. ``stock``: the choice made when the installed uvicorn is not the
    tested one (``test_server_contract`` checks that an import makes it)."""
    stock = request.param == "stock"
    if stock:
        monkeypatch.setattr(server, "MISMATCH", "uvicorn 0.0.0 (forced by the test)")
    else:
        assert server.MISMATCH is None, "the installed uvicorn is the pinned one"
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state, client_for(app) as client:
        assert state is not None
        direct: list[str] = []
        if stock:
            assert server.DIRECT_ROUTE not in state
        else:
            route = state[server.DIRECT_ROUTE]
            answer: Callable[..., Awaitable[Any]] = route.answer

            async def counted(scope: dict[str, Any], arg: str, body: bytes | None) -> Any:
                direct.append(scope["path"])
                return await answer(scope, arg, body)

            route.answer = counted
        http = server.http_protocol(5.0, settings.write_timeout)
        assert (http == "httptools") is stock
        config = Config(app=app, lifespan="off", proxy_headers=False, http=http)
        config.load()
        server_state = ServerState()
        protocol_class: Any = config.http_protocol_class
        listening = await asyncio.get_running_loop().create_server(
            lambda: protocol_class(config=config, server_state=server_state, app_state=state),
            "127.0.0.1", 0)
        try:
            port = listening.sockets[0].getsockname()[1]
            yield Served(Harness(app, client, settings, redis, pg), port, direct, stock)
        finally:
            listening.close()
            for task in list(server_state.tasks):
                await task


def _post(token: str, body: bytes, *extra: str, path: str = VOTES, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: testserver", f"X-Voter-Token: {token}",
            "Content-Type: application/json", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _vote(token: str, candidate: str, *extra: str, path: str = VOTES, **fields: Any) -> bytes:
    return _post(token, json.dumps({"candidate_id": candidate, **fields}).encode(), *extra,
                 path=path)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names; the last of each), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def test_the_direct_route_runs_on_exactly_the_pinned_uvicorn() -> None:
    """The pinned tests above ran on this version, and it is the one the protocol knows."""
    pins = dict(line.split("==") for line in CONSTRAINTS.read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert importlib.metadata.version("uvicorn") == pins["uvicorn"] == protocol.TESTED_UVICORN
    assert server.MISMATCH is None and server.direct_votes()


async def test_a_direct_vote_gets_the_answer_of_the_asgi_route(served: Served) -> None:
    h = served.harness
    heard: list[Outcome] = []
    h.app.state.services.outcomes.subscribe(heard.append)
    await h.create_campaign()
    token = await h.voter()
    reader, writer = await served.connect()
    writer.write(_vote(token, "c001"))
    status, headers, body = await _response(reader)
    assert status == 200, body
    assert served.direct == served.went_direct(VOTES)
    asgi = await h.vote(token, "c002")  # the ASGI route, in-process
    assert asgi.status_code == 200
    # every header the ASGI route sends, with the same value where it is not per vote
    assert set(headers) == set(asgi.headers.keys())
    for name in ("content-type", "content-security-policy", "x-frame-options",
                 "x-content-type-options", "referrer-policy", "ratelimit-policy"):
        assert headers[name] == asgi.headers[name], name
    assert headers["ratelimit"].startswith('"daily";r=4;')
    answer = json.loads(body)
    assert answer.keys() == asgi.json().keys()
    assert answer["candidate_id"] == "c001" and answer["votes_left_today"] == 4

    # the connection stays open for the next vote, answered directly again
    writer.write(_vote(token, "c003"))
    status, headers, body = await _response(reader)
    assert status == 200 and json.loads(body)["votes_left_today"] == 2
    assert served.direct == served.went_direct(VOTES, VOTES)
    assert [o.outcome for o in heard] == ["accepted"] * 3
    assert await redis_tallies(h) == {"c001": 1, "c002": 1, "c003": 1}
    writer.close()


async def test_refusals_come_as_problem_bodies_from_the_direct_route(served: Served) -> None:
    h = served.harness
    await h.create_campaign()
    token = await h.voter()
    reader, writer = await served.connect()
    cases: list[tuple[bytes, int, str]] = [
        (_post(token, b"{not json"), 400, "invalid_request"),
        (_post(token, b'{"candidate_id": "c001", "x": "' + b"a" * 3000 + b'"}'), 413,
         "invalid_request"),
        (_vote("not-a-token", "c001"), 401, "voter_required"),
        (_vote(token, "c999"), 404, "candidate_not_found"),
        (_vote(token, "c001", path="/api/v1/campaigns/nope/votes"), 404,
         "campaign_not_found"),
        (_vote(token, "c001", "Sec-Fetch-Site: cross-site"), 403, "forbidden"),
    ]
    for request, expected, code in cases:
        writer.write(request)
        status, headers, body = await _response(reader)
        assert (status, json.loads(body)["code"]) == (expected, code), body
        assert headers["content-type"] == "application/problem+json"
        assert headers["x-frame-options"] == "DENY"
    assert len(served.direct) == (0 if served.stock else len(cases)), (
        "each answered by the direct route")

    # a chunked body over the limit: read to its end and refused, the connection kept
    chunk = b"a" * 1500
    writer.write(f"POST {VOTES} HTTP/1.1\r\nHost: testserver\r\nX-Voter-Token: {token}\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode()
                 + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2)) + b"0\r\n\r\n")
    status, _, body = await _response(reader)
    assert status == 413 and json.loads(body)["code"] == "invalid_request"
    writer.write(_vote(token, "c001"))
    assert (await _response(reader))[0] == 200
    assert await redis_tallies(h) == {"c001": 1}
    writer.close()


async def test_a_vote_url_gets_the_check_of_every_route(served: Served) -> None:
    """The vote route runs ahead of ``EdgeMiddleware`` and makes its check itself: a path or
    query holding NUL or not UTF-8 is refused before the vote, as on every route."""
    h = served.harness
    await h.create_campaign()
    token = await h.voter()
    reader, writer = await served.connect()
    for path in (f"{VOTES}?x=%00", f"{VOTES}?x=%FF", "/api/v1/campaigns/t2026%00/votes"):
        writer.write(_vote(token, "c001", path=path))
        status, headers, body = await _response(reader)
        assert (status, json.loads(body)["code"]) == (400, "invalid_request"), path
        assert headers["x-frame-options"] == "DENY"
    writer.write(_vote(token, "c001", path=f"{VOTES}?x=1"))
    assert (await _response(reader))[0] == 200
    assert await redis_tallies(h) == {"c001": 1}
    writer.close()


async def test_requests_pipelined_behind_a_direct_vote_are_answered_in_order(
    served: Served,
) -> None:
    h = served.harness
    await h.create_campaign()
    token = await h.voter()
    reader, writer = await served.connect()
    writer.write(_vote(token, "c001") + _vote(token, "c002")
                 + b"GET /healthz HTTP/1.1\r\nHost: testserver\r\n\r\n" + _vote(token, "c003"))
    answers = [await _response(reader) for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 200]
    assert [json.loads(a[2]).get("candidate_id") for a in answers] == [
        "c001", "c002", None, "c003"]
    assert [json.loads(a[2])["votes_left_today"] for a in answers if a[2].find(b"c0") > 0] == [
        4, 3, 2]
    # the first went direct; the ones queued behind it went through the ASGI app
    assert served.direct == served.went_direct(VOTES)
    writer.close()


async def test_connection_rules_hold_on_the_direct_route(served: Served) -> None:
    h = served.harness
    await h.create_campaign()
    token = await h.voter()

    reader, writer = await served.connect()
    writer.write(_vote(token, "c001", "Connection: close"))
    status, headers, _ = await _response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await reader.read() == b"", "closed after the answer"
    writer.close()

    reader, writer = await served.connect()
    writer.write(_post(token, b'{"candidate_id": "c002"}', version="1.0"))
    status, headers, _ = await _response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await reader.read() == b""
    writer.close()
    assert served.direct == served.went_direct(VOTES, VOTES)

    # Expect: 100-continue is left to uvicorn (it answers 100 first), the vote still counted
    reader, writer = await served.connect()
    body = b'{"candidate_id": "c003"}'
    writer.write(_post(token, body, "Expect: 100-continue")[: -len(body)])
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    writer.write(body)
    assert (await _response(reader))[0] == 200
    assert served.direct == served.went_direct(VOTES, VOTES)
    writer.close()
    assert await redis_tallies(h) == {"c001": 1, "c002": 1, "c003": 1}


async def test_a_vote_whose_client_hung_up_counts_once(served: Served) -> None:
    """The client sends its vote and goes before the answer; its retry with the same
    ``vote_id`` gets the first answer, and the vote counts once."""
    h = served.harness
    await h.create_campaign()
    token = await h.voter()
    reader, writer = await served.connect()
    writer.write(_vote(token, "c001", vote_id=RETRY_ID))
    await writer.drain()
    writer.transport.abort()
    for _ in range(100):  # the task the protocol started goes on without its client
        if await redis_tallies(h) == {"c001": 1}:
            break
        await asyncio.sleep(0.05)
    assert served.direct == served.went_direct(VOTES)
    assert await redis_tallies(h) == {"c001": 1}, "cast though its client had gone"
    reader, writer = await served.connect()
    writer.write(_vote(token, "c001", vote_id=RETRY_ID))
    status, _, body = await _response(reader)
    assert status == 200 and json.loads(body)["vote_id"] == RETRY_ID
    assert await redis_tallies(h) == {"c001": 1}
    writer.close()


async def test_the_direct_route_can_be_switched_off(
    settings: Settings, redis: store.AnyRedis, pg: asyncpg.Connection
) -> None:
    app = create_app(dataclasses.replace(settings, direct_votes=False))
    async with app.router.lifespan_context(app) as state:
        assert server.DIRECT_ROUTE not in (state or {})
    assert Settings.from_env({"VOTING_SECRET_KEY": "k", "VOTING_PEPPER": "p",
                              "VOTING_DIRECT_VOTES": "0"}).direct_votes is False
    assert Settings.from_env({"VOTING_SECRET_KEY": "k", "VOTING_PEPPER": "p"}).direct_votes
