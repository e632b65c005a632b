"""One address against everyone: bounded attacks on a local stack, with other clients'
votes and pages measured meanwhile.

    .venv/bin/python -m loadtests.abuse                      # every attack, ~2 min
    .venv/bin/python -m loadtests.abuse --attacks slow-body --workers 2

Starts its own embedded Valkey and PostgreSQL, ``voting-service serve`` (no nginx in front:
the app's own limits) and a flusher, on 127.0.0.1 only. The attacker speaks from 127.0.0.1;
the other clients vote (fresh anonymous voters) and load the campaign page from 127.0.1.x,
another /24. For each attack: the others' p50/p99 and failures before and during it, what
the attacker held, and the server's memory (RSS of its processes) before and after.
Every attack is bounded in connections (``--connections``) and time (``--seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from voting_service import embedded

from .dataset import issue_tokens
from .procs import REPO, Child, Children, wait_ready

CAMPAIGN = "abuse2026"
ATTACKER = "127.0.0.1"
OTHERS = [f"127.0.1.{i}" for i in range(1, 9)]


def campaign() -> dict[str, Any]:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    return {
        "id": CAMPAIGN, "title": "压力测试", "timezone": "Asia/Shanghai",
        "opens_at": (now - dt.timedelta(days=1)).isoformat(),
        "closes_at": (now + dt.timedelta(days=30)).isoformat(),
        "status": "open", "show_counts": True,
        "rules": {"votes_per_day": 5, "per_candidate_per_day": 1, "identity": ["anonymous"],
                  "challenge": "off", "ip_per_minute": 0, "ip_per_day": 0,
                  "net_per_minute": 0, "net_per_day": 0},
        "candidates": [{"id": f"c{i:03d}", "number": i, "name": f"候选人{i}", "gender": "男",
                        "region": "南京市", "industry": "装备制造", "employer": "某公司",
                        "occupation": "钳工", "summary": "简介", "deeds": "事迹",
                        "photo_url": ""} for i in range(1, 21)],
    }


@dataclass
class Others:
    """Other clients' votes and page loads, timed, while an attack runs."""

    base: str
    tokens: list[str]
    votes: list[float] = field(default_factory=list)
    pages: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    async def run(self, until: float) -> None:
        await asyncio.gather(*(self._client(ip, until) for ip in OTHERS))

    async def _client(self, ip: str, until: float) -> None:
        transport = httpx.AsyncHTTPTransport(local_address=ip)
        async with httpx.AsyncClient(base_url=self.base, transport=transport,
                                     timeout=10) as http:
            while time.monotonic() < until:
                if not self.tokens:
                    return
                token = self.tokens.pop()
                try:
                    for n in range(1, 6):
                        t = time.monotonic()
                        r = await http.post(f"/api/v1/campaigns/{CAMPAIGN}/votes",
                                            json={"candidate_id": f"c{n:03d}"},
                                            headers={"X-Voter-Token": token})
                        self._timed(self.votes, t, r)
                    t = time.monotonic()
                    self._timed(self.pages, t, await http.get(f"/c/{CAMPAIGN}"))
                except httpx.HTTPError as exc:
                    self._failed(type(exc).__name__)
                    await asyncio.sleep(0.1)

    def _timed(self, into: list[float], started: float, r: httpx.Response) -> None:
        if r.status_code == 200:
            into.append((time.monotonic() - started) * 1000)
        else:
            self._failed(str(r.status_code))

    def _failed(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    def summary(self) -> dict[str, Any]:
        def pct(xs: list[float], q: int) -> float | None:
            return round(statistics.quantiles(xs, n=100)[q - 1], 1) if len(xs) >= 2 else None
        return {"votes": len(self.votes), "vote_p50_ms": pct(self.votes, 50),
                "vote_p99_ms": pct(self.votes, 99), "pages": len(self.pages),
                "page_p99_ms": pct(self.pages, 99), "failures": dict(self.failures)}


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, local_addr=(ATTACKER, 0)), 5)
    except (OSError, TimeoutError):
        return None


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bool, bytes]:
    """Whether the server answered or closed within ``seconds``; what it sent first."""
    try:
        first = await asyncio.wait_for(reader.read(200), seconds)
        return True, first
    except TimeoutError:
        return False, b""
    except OSError:
        return True, b""


async def held_connections(port: int, a: argparse.Namespace) -> dict[str, Any]:
    """As many idle connections as ``--connections`` from one address, opened at once."""
    opened = await asyncio.gather(*(_open(port) for _ in range(a.connections)))
    pairs = [p for p in opened if p is not None]
    checks = await asyncio.gather(*(_closed_within(r, 1.0) for r, _ in pairs))
    refused = [first for closed, first in checks if closed]
    held = len(pairs) - len(refused)
    await asyncio.sleep(max(0.0, a.seconds - 1.0))
    for _, w in pairs:
        w.close()
    return {"tried": a.connections, "connected": len(pairs), "held": held,
            "refused": len(refused), "refused_503": sum(f.startswith(b"HTTP/1.1 503")
                                                         for f in refused)}


async def slow_body(port: int, a: argparse.Namespace) -> dict[str, Any]:
    """Vote POSTs promising 2,000 bytes, then a byte every 2 s: how long each is held."""
    count = min(a.connections, 500)

    async def one() -> tuple[float, bytes]:
        pair = await _open(port)
        if pair is None:
            return 0.0, b""
        reader, writer = pair
        started = time.monotonic()
        writer.write(f"POST /api/v1/campaigns/{CAMPAIGN}/votes HTTP/1.1\r\nHost: x\r\n"
                     "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{".encode())
        first = b""
        while time.monotonic() - started < a.seconds:
            closed, first = await _closed_within(reader, 2.0)
            if closed:
                break
            with contextlib.suppress(OSError):
                writer.write(b" ")
        held = time.monotonic() - started
        writer.close()
        return held, first

    results = await asyncio.gather(*(one() for _ in range(count)))
    held = [h for h, _ in results]
    return {"connections": count, "held_max_s": round(max(held), 1),
            "held_median_s": round(statistics.median(held), 1),
            "answered_408": sum(f.startswith(b"HTTP/1.1 408") for _, f in results),
            "still_open_at_end": sum(h >= a.seconds for h in held)}


async def sse_flood(port: int, a: argparse.Namespace) -> dict[str, Any]:
    """``/live`` streams from one address, as many as ``--connections`` (≤ 2,000)."""
    count = min(a.connections, 2000)

    async def one() -> tuple[bytes, asyncio.StreamWriter | None]:
        pair = await _open(port)
        if pair is None:
            return b"", None
        reader, writer = pair
        writer.write(f"GET /api/v1/campaigns/{CAMPAIGN}/live HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        _, first = await _closed_within(reader, 5.0)
        return first, writer

    results = await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.sleep(a.seconds)
    for _, w in results:
        if w is not None:
            w.close()
    firsts = [f for f, _ in results]
    return {"tried": count, "streams_200": sum(f.startswith(b"HTTP/1.1 200") for f in firsts),
            "refused_429": sum(f.startswith(b"HTTP/1.1 429") for f in firsts),
            "refused_503": sum(f.startswith(b"HTTP/1.1 503") for f in firsts)}


Attack = Callable[[int, argparse.Namespace], Awaitable[dict[str, Any]]]
ATTACKS: dict[str, Attack] = {
    "held-connections": held_connections,
    "slow-body": slow_body,
    "sse-flood": sse_flood,
}


def rss_mib(child: Child) -> float:
    total = 0
    for pid in child.group_pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return round(total * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


async def run(a: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    admin = secrets.token_urlsafe(24)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="voting-abuse-") as tmp, \
            Children(Path(tmp)) as kids:
        pg = embedded.PostgresServer(Path(tmp) / "pg").start()
        valkey = embedded.ValkeyServer(Path(tmp) / "valkey").start()
        try:
            port = embedded.free_port()
            key, pepper = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            tokens = issue_tokens(40000, CAMPAIGN, key, pepper)  # votes, not minting, measured
            env = dict(os.environ, REDIS_URL=valkey.url, DATABASE_URL=pg.url,
                       VOTING_SECRET_KEY=key, VOTING_PEPPER=pepper,
                       VOTING_ADMIN_TOKENS=f"admin:{admin}", VOTING_SHARDS="16")
            cli = [sys.executable, "-m", "voting_service.cli"]
            migrate = kids.start("migrate", [*cli, "migrate"], env)
            assert migrate.popen.wait(120) == 0, migrate.tail()
            web = kids.start("web", [*cli, "serve", "--host", "127.0.0.1", "--port", str(port),
                                     "--workers", str(a.workers)], env)
            await wait_ready(web, port, "/readyz")
            kids.start("flusher", [*cli, "flusher", "--name", "abuse-flusher"], env)
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                r = await http.post("/api/v1/admin/campaigns", json=campaign(),
                                    headers={"Authorization": f"Bearer {admin}"})
                assert r.status_code == 201, r.text
            await asyncio.sleep(1.5)  # every worker has the campaign (1 s refresh)
            for name in a.attacks:
                quiet = Others(base, tokens)
                await quiet.run(time.monotonic() + 4)
                before = rss_mib(web)
                others = Others(base, tokens)
                until = time.monotonic() + a.seconds + 2
                attack: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(
                    ATTACKS[name](port, a))
                await others.run(until)
                held = await attack
                await asyncio.sleep(1.0)
                results[name] = {"attacker": held, "others_before": quiet.summary(),
                                 "others_during": others.summary(), "rss_mib_before": before,
                                 "rss_mib_after": rss_mib(web), "web_alive": web.alive()}
                print(f"{name}: {json.dumps(results[name], ensure_ascii=False)}", flush=True)
        finally:
            kids.stop_all()
            valkey.stop()
            pg.stop()
    return results


def render(results: dict[str, Any]) -> str:
    lines = ["| attack | what the attacker held | others' vote p99 before → during (ms) "
             "| failures during | server RSS MiB before → after |", "|---|---|---|---|---|"]
    for name, r in results.items():
        held = ", ".join(f"{k} {v}" for k, v in r["attacker"].items())
        b, d = r["others_before"], r["others_during"]
        lines.append(f"| {name} | {held} | {b['vote_p99_ms']} → {d['vote_p99_ms']} "
                     f"| {sum(d['failures'].values())} of "
                     f"{d['votes'] + d['pages'] + sum(d['failures'].values())} "
                     f"| {r['rss_mib_before']} → {r['rss_mib_after']} |")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtests.abuse", description=__doc__.split("\n")[0])
    p.add_argument("--attacks", default=",".join(ATTACKS),
                   help=f"comma-separated, of: {', '.join(ATTACKS)}")
    p.add_argument("--connections", type=int, default=3000,
                   help="attacker connections (≤ 20,000; slow-body ≤ 500, sse-flood ≤ 2,000)")
    p.add_argument("--seconds", type=float, default=15.0, help="each attack's duration (≤ 120)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench-results" / "abuse.json")
    a = p.parse_args(argv)
    a.attacks = [x for x in a.attacks.split(",") if x]
    unknown = set(a.attacks) - set(ATTACKS)
    if unknown:
        p.error(f"unknown attack(s): {sorted(unknown)}")
    a.connections = max(1, min(a.connections, 20000))
    a.seconds = max(2.0, min(a.seconds, 120.0))
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    results = asyncio.run(run(a))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print()
    print(render(results))


if __name__ == "__main__":
    main()
