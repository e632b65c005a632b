"""Slow readers hold no shared resource (issue 23 §1), over real sockets: clients that ask
for the published ledger and stop reading leave the results, the vote look-up, the results
page, the admin API and ``/readyz`` answering; a reader that stops is cut off by the write
deadline; the frozen file is served with a strong ETag and byte ranges (RFC 9110); each pool
budget runs out on its own, as a 503, never a hang."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from tests.conftest import ADMIN, Backend, Harness, client_for, make_settings
from voting_service.app import create_app
from voting_service.redis import store
from voting_service.services import Services
from voting_service.web.server.protocol import bounded_protocol

pytestmark = pytest.mark.parametrize("backend", ["single"], indirect=True)

CID = "t2026"
LEDGER = f"/api/v1/campaigns/{CID}/ledger"
VOTES = 40_000
"""Two parts of the frozen file (20,000 lines each), ~7 MB: more than the socket buffers of
a stalled client hold, so a download that streams from the database blocks with it."""
SLOW_READERS = 8
"""More than the whole pool the service had (5 connections per worker)."""
PROMPT = 10.0
"""A generous bound: what a request that waits on a stalled download never meets."""


@dataclass
class Served:
    h: Harness
    port: int
    svc: Services

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=PROMPT)


async def _published(h: Harness, votes: int = VOTES) -> None:
    """A closed campaign with ``votes`` ledger rows, published through the admin API."""
    await h.create_campaign(candidates=4)
    r = await h.client.patch(f"/api/v1/admin/campaigns/{CID}", json={"status": "closed"},
                             headers=ADMIN)
    assert r.status_code == 200, r.text
    await h.pg.execute("SELECT votes_partition('2026-07-01'::date)")
    await h.pg.execute(
        "INSERT INTO votes (campaign_id, voter_id, vote_id, candidate_id, day, cast_at,"
        " stream_id, shard) SELECT $1, md5('voter' || g), 'vote' || lpad(g::text, 8, '0'),"
        " 'c00' || (1 + g % 4), '2026-07-01', '2026-07-01 02:00+00'::timestamptz"
        " + g * interval '1 ms', '1-' || g, g % 8 FROM generate_series(1, $2) g", CID, votes)
    r = await h.client.post(f"/api/v1/admin/campaigns/{CID}/publication", headers=ADMIN,
                            json={})
    assert r.status_code == 201, r.text
    await h.app.state.services.registry.refresh(force=True)


@pytest.fixture
async def served(backend: Backend, pg_url: str, pg: asyncpg.Connection,
                 tmp_path: Any) -> AsyncIterator[Served]:
    """The app behind the service's protocol on a listening socket, as ``serve`` runs it,
    with a 2 s write deadline and a 1 s wait for an admin connection."""
    settings = make_settings(backend, pg_url, ledger_cache_dir=tmp_path / "ledgers",
                             write_timeout=2.0, db_admin_acquire_timeout=1.0)
    redis = store.connect(settings)
    await redis.flushall()
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app) as state, client_for(app) as client:
            config = Config(app=app, lifespan="off", proxy_headers=False,
                            http=bounded_protocol(5.0, write_timeout=settings.write_timeout))
            config.load()
            server_state = ServerState()
            protocol_class: Any = config.http_protocol_class
            server = await asyncio.get_running_loop().create_server(
                lambda: protocol_class(config=config, server_state=server_state,
                                       app_state=state or {}),
                "127.0.0.1", 0)
            try:
                port = server.sockets[0].getsockname()[1]
                yield Served(Harness(app, client, settings, redis, pg), port,
                             app.state.services)
            finally:
                server.close()
                for task in list(server_state.tasks):
                    task.cancel()
    finally:
        await redis.aclose()


async def _stalled_download(port: int) -> socket.socket:
    """A client with a tiny receive buffer that asks for the ledger, reads the first bytes
    of the answer and then reads no more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {LEDGER} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    first = await asyncio.wait_for(loop.sock_recv(sock, 1024), PROMPT)
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
    return sock


async def test_stalled_ledger_downloads_leave_every_other_request_answering(
    served: Served,
) -> None:
    await _published(served.h)
    vote_id = "vote00000007"
    stalled = [await _stalled_download(served.port) for _ in range(SLOW_READERS)]
    try:
        await asyncio.sleep(0.5)  # the downloads are under way, their buffers full
        async with served.http() as http:
            checks = {
                "/readyz": 200,
                f"/api/v1/campaigns/{CID}/results": 200,
                f"{LEDGER}?vote_id={vote_id}": 200,
                f"/c/{CID}/results?vote={vote_id}": 200,
                f"/api/v1/admin/campaigns/{CID}/results": 200,
            }
            for path, status in checks.items():
                r = await asyncio.wait_for(http.get(path, headers=ADMIN), PROMPT)
                assert r.status_code == status, (path, r.text[:300])
            found = (await http.get(f"{LEDGER}?vote_id={vote_id}")).json()["records"]
            assert [x["vote_id"] for x in found] == [vote_id]
            # and one more download, read at full speed, is whole
            whole = await asyncio.wait_for(http.get(LEDGER), PROMPT)
            assert whole.status_code == 200
            assert whole.content.count(b"\n") == VOTES + 3  # header, day_end, end
    finally:
        for sock in stalled:
            sock.close()


async def test_a_reader_that_stops_is_cut_off_at_the_write_deadline(served: Served) -> None:
    await _published(served.h)
    sock = await _stalled_download(served.port)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(served.h.settings.write_timeout + 1.5)
        # the server aborted: what is left in the buffer (if anything), then the end
        got = 0
        async with asyncio.timeout(PROMPT):
            while True:
                try:
                    chunk = await loop.sock_recv(sock, 65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                got += len(chunk)
        whole = served.svc.frozen._files[CID].size
        assert got < whole // 2, "the stalled client was not cut off"
    finally:
        sock.close()


async def test_the_frozen_ledger_has_a_strong_etag_and_byte_ranges(served: Served) -> None:
    await _published(served.h, votes=300)
    async with served.http() as http:
        full = await http.get(LEDGER)
        assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
        body = full.content
        etag = full.headers["etag"]
        assert etag == f'"{hashlib.sha256(body).hexdigest()}"'
        row = await served.h.pg.fetchrow(
            "SELECT ledger_bytes, ledger_sha256 FROM publications WHERE campaign_id = $1", CID)
        assert (row["ledger_bytes"], row["ledger_sha256"]) == (len(body), etag.strip('"'))
        size = len(body)

        r = await http.get(LEDGER, headers={"Range": "bytes=10-99"})
        assert r.status_code == 206 and r.content == body[10:100]
        assert r.headers["content-range"] == f"bytes 10-99/{size}"
        r = await http.get(LEDGER, headers={"Range": "bytes=-50"})
        assert r.status_code == 206 and r.content == body[-50:]
        r = await http.get(LEDGER, headers={"Range": f"bytes={size - 5}-"})
        assert r.status_code == 206 and r.content == body[-5:]
        r = await http.get(LEDGER, headers={"Range": f"bytes={size}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
        r = await http.get(LEDGER, headers={"Range": "bytes=9-2"})  # invalid: ignored
        assert r.status_code == 200 and r.content == body
        r = await http.get(LEDGER, headers={"Range": "bytes=0-9", "If-Range": etag})
        assert r.status_code == 206 and r.content == body[:10]
        r = await http.get(LEDGER, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert r.status_code == 200 and r.content == body
        r = await http.get(LEDGER, headers={"If-None-Match": f'"x", {etag}'})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
        r = await http.head(LEDGER)
        assert r.status_code == 200 and int(r.headers["content-length"]) == size

        results = await http.get(f"/api/v1/campaigns/{CID}/results")
        assert results.status_code == 200 and results.json()["total"] == 300
        r = await http.get(f"/api/v1/campaigns/{CID}/results",
                           headers={"If-None-Match": results.headers["etag"]})
        assert r.status_code == 304
    # another pod (an empty cache) copies the file from PostgreSQL: the same bytes and tag;
    # for a campaign published before its digest was recorded, it records it
    await served.h.pg.execute("UPDATE publications SET ledger_bytes = NULL,"
                              " ledger_sha256 = NULL WHERE campaign_id = $1", CID)
    other = make_settings(Backend("single", served.h.settings.redis_url or "", False),
                          served.h.settings.database_url or "")
    app = create_app(other)
    async with app.router.lifespan_context(app), client_for(app) as client:
        again = await client.get(LEDGER)
        assert again.content == body and again.headers["etag"] == etag
    assert await served.h.pg.fetchval(
        "SELECT ledger_sha256 FROM publications WHERE campaign_id = $1", CID) == etag.strip('"')


async def test_each_pool_budget_runs_out_on_its_own(served: Served) -> None:
    await _published(served.h, votes=100)
    svc = served.svc
    settings = served.h.settings
    held: list[tuple[asyncpg.Pool, asyncpg.Connection]] = []
    try:
        for budget, size in (("public", settings.db_pool_public),
                             ("admin", settings.db_pool_admin)):
            pool = svc.pools[budget]
            held += [(pool, await pool.acquire()) for _ in range(size)]
        async with served.http() as http:
            r = await asyncio.wait_for(http.get("/readyz"), PROMPT)
            assert r.status_code == 200, r.text
            # publics and admins are out of connections: a prompt 503, not a hang
            r = await asyncio.wait_for(http.get(f"{LEDGER}?vote_id=vote00000001"), PROMPT)
            assert r.status_code == 503 and r.json()["code"] == "unavailable"
            assert r.headers["retry-after"] == "1"
            r = await asyncio.wait_for(
                http.get(f"/api/v1/admin/campaigns/{CID}/results", headers=ADMIN), PROMPT)
            assert r.status_code == 503 and r.json()["code"] == "unavailable"
        for pool, conn in held[:settings.db_pool_public]:
            await pool.release(conn)
        del held[:settings.db_pool_public]
        async with served.http() as http:
            r = await asyncio.wait_for(http.get(f"{LEDGER}?vote_id=vote00000001"), PROMPT)
            assert r.status_code == 200
    finally:
        for pool, conn in held:
            await pool.release(conn)
