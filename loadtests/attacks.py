"""Denial-of-service attacks of one client against a local stack (issue 23), each by name,
and what other clients see meanwhile.

    .venv/bin/python -m loadtests.attacks                          # every attack
    .venv/bin/python -m loadtests.attacks --attack slow-readers --readers 200 --seconds 20

A run starts its own embedded PostgreSQL and Valkey, ``voting-service serve`` and a flusher
(real processes, 127.0.0.1 only), publishes campaign ``pub2026`` with ``--votes`` ledger rows
and opens ``open2026`` for votes. Then, for each attack: a baseline phase of ``--seconds``
with ``--clients`` other clients (each loop: a new voter's token and vote, the results, a
vote look-up, the results page, ``/readyz``, an admin read), then the same with the attack
running. It prints per phase the p50/p99 of each request kind and its failures, what the
attack holds (its connections still open, PostgreSQL connections busy) and the server's
memory before and after, and writes it all to ``bench-results/attacks-<time>.json``.

Attacks (``ATTACKS``), bounded in count (``--readers`` ≤ 2,000) and time (``--seconds`` ≤
120, each attack also stops with its phase):

- ``slow-readers``: clients with a 4 KiB receive buffer ask for the published ledger, read
  the first bytes and stop reading, held open for the whole phase (issue 23 §1);
- ``held-connections``: ``--connections`` idle connections from one address (≤ 20,000);
- ``slow-bodies``: vote POSTs promising 2,000 bytes, then one byte every 2 s (≤ 500);
- ``live-flood``: ``/live`` streams from one address (≤ 2,000) (issue 23 §2).

The other clients come through 127.0.0.1, a trusted proxy naming them in
``X-Forwarded-For``; the attacker of §2 speaks from ``ATTACKER``, an address of its own, as a
client on the open internet would (the app caps connections by the peer's address).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from loadtests.procs import REPO, Child, sigterm_as_interrupt
from voting_service import stack as shared

PUBLISHED, OPEN = "pub2026", "open2026"
ATTACKER = "127.0.0.9"
NO_LIMITS = {"ip_per_minute": 0, "ip_per_day": 0, "net_per_minute": 0, "net_per_day": 0}


@dataclass
class Stack:
    port: int
    pg_url: str
    admin: str
    web: Child
    vote_ids: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mib(self) -> float:
        """Resident memory of the server's whole process group (master and workers)."""
        total = 0
        for pid in self.web.group_pids():
            with contextlib.suppress(OSError, StopIteration, ValueError), \
                    open(f"/proc/{pid}/status") as status:
                total += next(int(x.split()[1]) for x in status if x.startswith("VmRSS:"))
        return total / 1024

    async def pg_busy(self) -> int:
        """Connections of the service to PostgreSQL doing something or held in a transaction."""
        conn = await asyncpg.connect(self.pg_url)
        try:
            return int(await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                " AND state <> 'idle'"))
        finally:
            await conn.close()


class Held:
    """What an attack holds: its sockets (``open`` counts those the server has not cut)."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.answered = 0
        """Connections whose answer had begun when the attack stopped reading."""

    def open(self) -> int:
        """Sockets still established (``TCP_INFO``'s state; reading would unblock them, and
        a peek sees buffered bytes even after the server's reset)."""
        alive = 0
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                alive += sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 1
        return alive


@contextlib.asynccontextmanager
async def slow_readers(stack: Stack, a: argparse.Namespace) -> AsyncIterator[Held]:
    held = Held()
    loop = asyncio.get_running_loop()
    request = (f"GET /api/v1/campaigns/{PUBLISHED}/ledger HTTP/1.1\r\n"
               "Host: 127.0.0.1\r\n\r\n").encode()

    async def one() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        held.sockets.append(sock)
        try:
            async with asyncio.timeout(5):
                await loop.sock_connect(sock, ("127.0.0.1", stack.port))
                await loop.sock_sendall(sock, request)
                if await loop.sock_recv(sock, 512):  # the answer began: now stop reading
                    held.answered += 1
        except (OSError, TimeoutError):
            pass  # refused or not answered within 5 s (still held open by us)

    try:
        for start in range(0, a.readers, 50):  # 50 at a time: the listen backlog
            await asyncio.gather(*(one() for _ in range(min(50, a.readers - start))))
        yield held
    finally:
        for sock in held.sockets:
            sock.close()


async def _connect_from_attacker(stack: Stack, held: Held) -> socket.socket | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    held.sockets.append(sock)
    try:
        sock.bind((ATTACKER, 0))
        async with asyncio.timeout(5):
            await loop.sock_connect(sock, ("127.0.0.1", stack.port))
        return sock
    except (OSError, TimeoutError):
        return None


async def _first_bytes(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent within ``seconds`` (b"" if nothing, or closed)."""
    try:
        async with asyncio.timeout(seconds):
            return await asyncio.get_running_loop().sock_recv(sock, 512)
    except (OSError, TimeoutError):
        return b""


async def _in_batches(count: int, one: Callable[[], Any]) -> None:
    for start in range(0, count, 100):  # 100 at a time: the listen backlog
        await asyncio.gather(*(one() for _ in range(min(100, count - start))))


@contextlib.asynccontextmanager
async def held_connections(stack: Stack, a: argparse.Namespace) -> AsyncIterator[Held]:
    """Idle connections from one address; ``answered`` counts the ones refused at once."""
    held = Held()

    async def one() -> None:
        sock = await _connect_from_attacker(stack, held)
        if sock is not None and (await _first_bytes(sock, 0.5)).startswith(b"HTTP/1.1 503"):
            held.answered += 1

    try:
        await _in_batches(min(a.connections, 20_000), one)
        yield held
    finally:
        for sock in held.sockets:
            sock.close()


@contextlib.asynccontextmanager
async def slow_bodies(stack: Stack, a: argparse.Namespace) -> AsyncIterator[Held]:
    """Vote POSTs whose body trickles in; ``answered`` counts the 408s the server sent."""
    held = Held()
    loop = asyncio.get_running_loop()
    head = (f"POST /api/v1/campaigns/{OPEN}/votes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{").encode()

    async def one() -> None:
        sock = await _connect_from_attacker(stack, held)
        if sock is None:
            return
        with contextlib.suppress(OSError):
            await loop.sock_sendall(sock, head)
            while True:
                first = await _first_bytes(sock, 2.0)
                if first or sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 1:
                    held.answered += first.startswith(b"HTTP/1.1 408")
                    return
                await loop.sock_sendall(sock, b" ")

    tasks = [asyncio.ensure_future(one()) for _ in range(min(a.connections, 500))]
    try:
        await asyncio.sleep(1.0)
        yield held
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in held.sockets:
            sock.close()


@contextlib.asynccontextmanager
async def live_flood(stack: Stack, a: argparse.Namespace) -> AsyncIterator[Held]:
    """``/live`` streams from one address; ``answered`` counts the streams that began."""
    held = Held()
    loop = asyncio.get_running_loop()
    request = f"GET /api/v1/campaigns/{OPEN}/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

    async def one() -> None:
        sock = await _connect_from_attacker(stack, held)
        if sock is None:
            return
        with contextlib.suppress(OSError):
            await loop.sock_sendall(sock, request)
            first = await _first_bytes(sock, 5.0)
            held.answered += first.startswith(b"HTTP/1.1 200")

    try:
        await _in_batches(min(a.connections, 2000), one)
        yield held
    finally:
        for sock in held.sockets:
            sock.close()


Attack = Callable[[Stack, argparse.Namespace], AbstractAsyncContextManager[Held]]
ATTACKS: dict[str, Attack] = {"slow-readers": slow_readers,
                              "held-connections": held_connections,
                              "slow-bodies": slow_bodies, "live-flood": live_flood}


def _campaign(cid: str, status: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "id": cid, "title": "压力测试", "timezone": "Asia/Shanghai",
        "opens_at": (now - dt.timedelta(days=1)).isoformat(),
        "closes_at": (now + dt.timedelta(days=30)).isoformat(), "status": status,
        "show_counts": True,
        "rules": {"votes_per_day": 5, "per_candidate_per_day": 1, "identity": ["anonymous"],
                  "challenge": "off", **NO_LIMITS},
        "candidates": [{"id": f"c{i:03d}", "number": i, "name": f"候选人{i}", "gender": "男",
                        "region": "南京市", "industry": "装备制造", "employer": "某公司",
                        "occupation": "钳工", "summary": "简介", "deeds": "事迹",
                        "photo_url": ""} for i in range(1, 13)],
    }


async def _prepare(stack: Stack, votes: int) -> None:
    """``pub2026``: closed, ``votes`` ledger rows written straight into PostgreSQL, published
    (a file of about 180 bytes a vote); ``open2026``: open for votes."""
    headers = {"Authorization": f"Bearer {stack.admin}"}
    async with httpx.AsyncClient(base_url=stack.base, headers=headers, timeout=120) as http:
        for cid, status in ((PUBLISHED, "closed"), (OPEN, "open")):
            r = await http.post("/api/v1/admin/campaigns", json=_campaign(cid, status))
            assert r.status_code == 201, r.text
        conn = await asyncpg.connect(stack.pg_url)
        try:
            day = dt.date.today() - dt.timedelta(days=1)
            await conn.execute("SELECT votes_partition($1::date)", day)
            await conn.execute(
                "INSERT INTO votes (campaign_id, voter_id, vote_id, candidate_id, day, cast_at,"
                " stream_id, shard) SELECT $1, md5('voter' || g), 'vote' || lpad(g::text, 8,"
                " '0'), 'c00' || (1 + g % 9), $3::date, $3::date + time '02:00'"
                " + g * interval '1 ms',"
                " '1-' || g, g % 16 FROM generate_series(1, $2) g", PUBLISHED, votes, day)
        finally:
            await conn.close()
        r = await http.post(f"/api/v1/admin/campaigns/{PUBLISHED}/publication", json={})
        assert r.status_code == 201, r.text
        stack.vote_ids = [f"vote{n:08d}" for n in range(1, min(votes, 5000) + 1, 7)]
    await asyncio.sleep(1.5)  # every worker sees the publication (1 s poll)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _others(stack: Stack, a: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """``a.clients`` loops of the ordinary requests for ``seconds``: latency per kind."""
    times: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    admin = {"Authorization": f"Bearer {stack.admin}"}
    ends = time.monotonic() + seconds

    async def timed(http: httpx.AsyncClient, kind: str, method: str, path: str,
                    **kw: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            r = await http.request(method, path, **kw)
        except httpx.HTTPError:
            r = None
        times.setdefault(kind, []).append((time.perf_counter() - started) * 1000)
        if r is None or r.status_code >= 400:
            failed[kind] = failed.get(kind, 0) + 1
        return r

    async def loop(n: int) -> None:
        async with httpx.AsyncClient(base_url=stack.base, timeout=a.timeout) as http:
            i = 0
            while time.monotonic() < ends:
                i += 1
                ip = f"10.{n}.{i // 250 % 250}.{i % 250 + 1}"
                r = await timed(http, "voter token", "POST", f"/api/v1/campaigns/{OPEN}/voter",
                                headers={"X-Forwarded-For": ip})
                if r is not None and r.status_code == 201:
                    await timed(http, "vote", "POST", f"/api/v1/campaigns/{OPEN}/votes",
                                json={"candidate_id": f"c{1 + i % 12:03d}"},
                                headers={"X-Voter-Token": r.json()["token"],
                                         "X-Forwarded-For": ip})
                vote_id = stack.vote_ids[(n * 31 + i) % len(stack.vote_ids)]
                await timed(http, "results", "GET", f"/api/v1/campaigns/{PUBLISHED}/results")
                await timed(http, "vote look-up", "GET",
                            f"/api/v1/campaigns/{PUBLISHED}/ledger?vote_id={vote_id}")
                await timed(http, "results page", "GET", f"/c/{PUBLISHED}/results")
                await timed(http, "readyz", "GET", "/readyz")
                await timed(http, "admin", "GET", f"/api/v1/admin/campaigns/{PUBLISHED}",
                            headers=admin)

    await asyncio.gather(*(loop(n) for n in range(a.clients)))
    return {kind: {"requests": len(v), "failed": failed.get(kind, 0),
                   "p50_ms": _percentile(v, 0.50), "p99_ms": _percentile(v, 0.99),
                   "max_ms": max(v)} for kind, v in times.items()}


async def _phase(stack: Stack, a: argparse.Namespace, attack: Attack | None) -> dict[str, Any]:
    rss_before = stack.rss_mib()
    out: dict[str, Any] = {"rss_before_mib": rss_before}
    if attack is None:
        out["others"] = await _others(stack, a, a.seconds)
    else:
        started = time.monotonic()
        async with attack(stack, a) as held:
            out["attack_set_up_s"] = time.monotonic() - started
            out["held_at_start"] = held.open()
            out["pg_busy_at_start"] = await stack.pg_busy()
            out["others"] = await _others(stack, a, a.seconds)
            out["answered"] = held.answered  # at the phase's end: slow bodies' 408s come late
            out["rss_during_mib"] = stack.rss_mib()
            out["held_at_end"] = held.open()
            out["pg_busy_at_end"] = await stack.pg_busy()
    await asyncio.sleep(1.0)
    out["rss_after_mib"] = stack.rss_mib()
    return out


def _print(name: str, phase: str, result: dict[str, Any]) -> None:
    extra = ""
    if "held_at_start" in result:
        extra = (f" {result['answered']} answered (see the attack), held {result['held_at_start']}→"
                 f"{result['held_at_end']} connections,"
                 f" PostgreSQL busy {result['pg_busy_at_start']}→{result['pg_busy_at_end']},")
    during = f" → {result['rss_during_mib']:.0f}" if "rss_during_mib" in result else ""
    print(f"\n{name} / {phase}:{extra} server RSS {result['rss_before_mib']:.0f}{during} →"
          f" {result['rss_after_mib']:.0f} MiB")
    print(f"  {'request':<14} {'n':>6} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind, row in result["others"].items():
        print(f"  {kind:<14} {row['requests']:>6} {row['failed']:>7} {row['p50_ms']:>8.1f}"
              f" {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f}")


async def run(a: argparse.Namespace) -> int:
    admin = secrets.token_urlsafe(24)
    results: dict[str, Any] = {"config": {k: str(v) for k, v in vars(a).items()}}
    with tempfile.TemporaryDirectory(prefix="voting-attacks-") as tmp, shared.Stack(
            Path(tmp), admin_tokens=f"admin:{admin}", cwd=REPO, extra={
                "VOTING_TRUSTED_PROXIES": "127.0.0.1/32",
                "VOTING_DATA_DIR": str(Path(tmp) / "data"),
                "VOTING_WRITE_TIMEOUT": str(a.write_timeout)}) as local:
        local.migrate()
        web = local.start_web(workers=a.workers)
        await local.ready()
        local.start_flusher("attack-flusher")
        stack = Stack(web.port or 0, local.database_url, admin, web)
        await _prepare(stack, a.votes)
        names = list(ATTACKS) if a.attack == "all" else [a.attack]
        for name in names:
            baseline = await _phase(stack, a, None)
            _print(name, "baseline", baseline)
            attacked = await _phase(stack, a, ATTACKS[name])
            _print(name, "under attack", attacked)
            results[name] = {"baseline": baseline, "attack": attacked}
    out = REPO / "bench-results" / f"attacks-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\n{out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", choices=["all", *ATTACKS], default="all")
    parser.add_argument("--readers", type=int, default=200, help="slow readers (≤ 2000)")
    parser.add_argument("--connections", type=int, default=3000,
                        help="held-connections (≤ 20000), slow-bodies (≤ 500), live-flood (≤ 2000)")
    parser.add_argument("--seconds", type=float, default=15.0, help="each phase (≤ 120)")
    parser.add_argument("--clients", type=int, default=8, help="other clients' loops")
    parser.add_argument("--votes", type=int, default=60_000, help="rows of the ledger")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="an other client's request fails after this many seconds")
    parser.add_argument("--write-timeout", type=float, default=30.0,
                        help="VOTING_WRITE_TIMEOUT of the server")
    a = parser.parse_args()
    if not (1 <= a.readers <= 2000 and 1 <= a.seconds <= 120 and 1 <= a.clients <= 64
            and 1 <= a.votes <= 2_000_000):
        parser.error("bounded: --readers ≤ 2000, --seconds ≤ 120, --clients ≤ 64,"
                     " --votes ≤ 2,000,000")
    with sigterm_as_interrupt():
        return asyncio.run(run(a))


if __name__ == "__main__":
    sys.exit(main())
