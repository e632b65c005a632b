"""What every phase of ``make bench`` shares: the options, the resources and the helpers.

A phase (``loadtests/phases/*.py``) gets one :class:`Context` and uses it to start the
service or the bare app, drive a load at it and meter it; it never imports ``bench.py``,
which only chooses the phases, runs them in order and prints what they return.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from voting_service import embedded
from voting_service.ledger import campaigns, db, progress
from voting_service.redis import store
from voting_service.settings import Settings

from . import dataset, flusher_bench, profile, sse
from .cpu import CpuSampler
from .instructions import Callgrind
from .loadgen import LoadResult, LoadSpec, ensure_wrk
from .procs import Child, Children, python, wait_ready

SHARDS = 16
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    quick: bool
    voters: int
    candidates: int
    connections: int
    threads: int
    warmup: float
    seconds: float
    workers: tuple[int, ...]
    backlog: int
    db_seconds: float
    ceiling_seconds: float
    ceiling_concurrency: int
    loadgen: str
    install_wrk: bool
    phases: frozenset[str]
    weak_reference: bool
    baseline: str
    """Commit whose package table A also measures, beside this checkout ("" = none)."""
    profile: bool
    instructions: bool
    keep: bool
    out_dir: Path


@dataclass
class Resources:
    """What the sync outer layer stops in its ``finally``, whatever happened inside."""

    workdir: Path
    children: Children
    servers: list[embedded.ValkeyServer | embedded.PostgresServer] = field(default_factory=list)

    def stop(self) -> None:
        self.children.stop_all()
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        self.servers.clear()


def redis_client(url: str) -> store.AnyRedis:
    return store.connect(Settings(redis_url=url, shards=SHARDS))


def cpu_us(load: dict[str, Any], role: str = "server") -> float | None:
    """A role's CPU µs per request in the measured window (unrounded)."""
    seconds = load.get("extra", {}).get("cpu_seconds", {}).get(role)
    return seconds * 1e6 / load["requests"] if seconds and load["requests"] else None


def server_us(load: dict[str, Any], role: str = "server") -> int | None:
    """Server (or another role's) CPU per request in the measured window, rounded: steadier
    than req/s when other work shares the machine."""
    us = cpu_us(load, role)
    return None if us is None else round(us)


class Context:
    """The run's options, resources and shared state, and the measuring helpers."""

    def __init__(self, opts: Options, res: Resources) -> None:
        self.o = opts
        self.res = res
        self.started = time.monotonic()
        self.secret_key = secrets.token_urlsafe(32)
        self.pepper = secrets.token_urlsafe(32)
        self.admin_token = secrets.token_urlsafe(24)
        self.results: dict[str, Any] = {"phases": {}}
        self.pg_url = ""
        self.valkey_url = ""
        self.requests_file = res.workdir / "votes.tsv"
        self.request_lines = 0
        self.path = f"/api/v1/campaigns/{dataset.CAMPAIGN_ID}/votes"
        self.load = LoadSpec(None, opts.connections, opts.threads, opts.warmup, opts.seconds)
        self.ips = dataset.client_ips(20_000)
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.profile_dir = opts.out_dir / f"profile-{self.stamp}"

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def keep(self, key: str, value: T) -> T:
        """Put ``value`` (filled as the phase goes) in the results now: kept if interrupted."""
        self.results["phases"][key] = value
        return value

    # ---- setup -------------------------------------------------------------------------

    async def setup(self) -> None:
        wrk = None
        if self.o.loadgen != "python":
            wrk = await asyncio.to_thread(ensure_wrk, self.o.install_wrk)
            if wrk is None and self.o.loadgen == "wrk":
                raise SystemExit("wrk not found and could not be installed")
        self.load = LoadSpec(wrk, self.o.connections, self.o.threads, self.o.warmup,
                             self.o.seconds)
        self.log(f"load generator: {'wrk ' + wrk if wrk else 'python fallback (no wrk)'}")
        pg = embedded.PostgresServer(self.res.workdir / "pg")
        self.res.servers.append(pg)
        valkey = embedded.ValkeyServer(self.res.workdir / "valkey", appendfsync="always")
        self.res.servers.append(valkey)
        await asyncio.gather(asyncio.to_thread(pg.start), asyncio.to_thread(valkey.start))
        self.pg_url, self.valkey_url = pg.url, valkey.url
        self.log(f"PostgreSQL {pg.url}, Valkey {valkey.url} (appendfsync always)")
        async with self.stores() as (conn, redis):
            await db.migrate(conn)
            data = json.dumps(dataset.bench_campaign(self.o.candidates)).encode()
            await campaigns.load(conn, redis, data)
        self.log(f"campaign {dataset.CAMPAIGN_ID}: {self.o.candidates} candidates; "
                 f"issuing {self.o.voters} voter tokens")
        tokens = await asyncio.to_thread(dataset.issue_tokens, self.o.voters,
                                         dataset.CAMPAIGN_ID, self.secret_key, self.pepper)
        pairs = dataset.Pairs(self.o.voters, self.o.candidates, 10)
        self.request_lines = await asyncio.to_thread(
            dataset.write_requests, self.requests_file, tokens, pairs, self.ips)
        self.log(f"{self.request_lines} distinct (voter, candidate) requests written")
        self.results["config"] = {
            "quick": self.o.quick, "voters": self.o.voters, "candidates": self.o.candidates,
            "connections": self.o.connections, "threads": self.o.threads,
            "warmup_s": self.o.warmup, "seconds": self.o.seconds, "workers": self.o.workers,
            "backlog": self.o.backlog, "shards": SHARDS, "loadgen": wrk or "python",
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "started_at": dt.datetime.now(dt.UTC).isoformat(),
        }

    @contextlib.asynccontextmanager
    async def stores(self, redis_url: str = "",
                     ) -> AsyncIterator[tuple[asyncpg.Connection, store.AnyRedis]]:
        """A PostgreSQL connection and a Redis client (of ``redis_url``, default the main
        Valkey) for a few set-up or check queries, both closed afterwards."""
        conn = await asyncpg.connect(self.pg_url)
        redis = redis_client(redis_url or self.valkey_url)
        try:
            yield conn, redis
        finally:
            await conn.close()
            await redis.aclose()

    def groups(self) -> dict[int, str]:
        """Process group → role of the embedded servers running now."""
        out = {}
        for server in self.res.servers:
            if server.process is not None and server.process.poll() is None:
                role = "postgres" if isinstance(server, embedded.PostgresServer) else "valkey"
                out[server.process.pid] = role
        return out

    def service_env(self, redis_url: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VOTING_", "REDIS_", "DATABASE_"))}
        env.update({
            "REDIS_URL": redis_url,
            "DATABASE_URL": self.pg_url,
            "VOTING_SECRET_KEY": self.secret_key,
            "VOTING_PEPPER": self.pepper,
            "VOTING_SHARDS": str(SHARDS),
            "VOTING_ADMIN_TOKENS": f"admin:{self.admin_token}",
            "VOTING_TRUSTED_PROXIES": "127.0.0.1/32",
            "VOTING_DATA_DIR": str(self.res.workdir),
        })
        env.update(extra)
        return env

    async def set_rules(self, cid: str, rules: dict[str, Any]) -> None:
        """Save and publish the bench campaign ``cid`` with these rules (read by the next
        server at boot)."""
        data = dataset.bench_campaign(self.o.candidates, cid)
        data["rules"].update(rules)
        async with self.stores() as (conn, redis):
            await campaigns.load(conn, redis, json.dumps(data).encode())

    async def request_file(self, cid: str, name: str, seed: int) -> tuple[Path, int]:
        """Voter tokens of campaign ``cid`` and a request file ``name`` of their distinct
        (voter, candidate) pairs: its path and line count."""
        tokens = await asyncio.to_thread(dataset.issue_tokens, self.o.voters, cid,
                                         self.secret_key, self.pepper)
        file = self.res.workdir / name
        lines = await asyncio.to_thread(
            dataset.write_requests, file, tokens,
            dataset.Pairs(self.o.voters, self.o.candidates, 10, seed=seed), self.ips)
        return file, lines

    def check_load(self, r: LoadResult, what: str) -> None:
        if r.wrapped:
            self.log(f"warning: {what} ran out of distinct requests and repeated some "
                     "(raise --voters)")
        if r.errors:
            self.log(f"warning: {what}: {r.errors} socket errors/timeouts")

    # ---- measuring a server --------------------------------------------------------------

    async def _serve(self, name: str, argv: list[str], env: dict[str, str],
                     ready_path: str, workers: int, counting: Callgrind | None = None,
                     ) -> tuple[Child, int]:
        port = embedded.free_port()
        prefix = counting.argv(name) if counting else []
        child = self.res.children.start(name, [*prefix, *argv, "--port", str(port),
                                               "--workers", str(workers)], env)
        try:
            await wait_ready(child, port, ready_path, timeout=600.0 if counting else 60.0)
            await asyncio.sleep(0.5 if workers == 1 else 1.5)  # let every worker boot
            if counting:
                await counting.ready(child.pid)
        except BaseException:
            self.res.children.stop(child)
            raise
        return child, port

    async def _measure(self, port: int, requests: Path, path: str, measuring: asyncio.Event,
                       counting: Callgrind | None, pid: int, **kwargs: Any) -> LoadResult:
        """The load run; with ``counting``, the server's instructions in its window too."""
        if counting is None:
            return await self.load.run(port, requests, path, measuring=measuring, **kwargs)

        async def zero() -> None:
            await measuring.wait()
            await counting.window_starts(pid)

        zeroed = asyncio.create_task(zero())
        try:
            result = await self.load.run(port, requests, path, measuring=measuring, **kwargs)
        except BaseException:
            zeroed.cancel()
            raise
        await zeroed
        result.extra["instructions"] = await counting.window_ends(pid)
        return result

    async def bare_phase(self, workers: int, *, asgi: bool = False,
                         counting: Callgrind | None = None) -> LoadResult:
        """The bare endpoint (``loadtests.bare_app``): Starlette's, or with ``asgi`` the plain
        ASGI one; ``counting``: under callgrind, its instructions counted."""
        kind = "ASGI" if asgi else "Starlette"
        self.log(f"A(a) bare {kind}, {workers} worker(s)" + (" under callgrind" if counting
                                                            else ""))
        child, port = await self._serve(
            f"bare-{kind.lower()}-w{workers}",
            [python(), "-m", "loadtests.bare_app", *(["--asgi"] if asgi else [])],
            self.service_env(self.valkey_url), "/healthz", workers, counting)
        cpu = CpuSampler({**self.groups(), child.pid: "server"})
        stop, measuring = asyncio.Event(), asyncio.Event()
        sampling = asyncio.create_task(cpu.run(stop, measuring))
        try:
            result = await self._measure(port, self.requests_file, self.path, measuring,
                                         counting, child.pid)
        finally:
            stop.set()
            await sampling
            self.res.children.stop(child)
        result.extra["cpu_cores"] = cpu.cores()
        result.extra["cpu_seconds"] = cpu.seconds()
        return result

    async def vote_phase(self, name: str, redis_url: str, env: dict[str, str], workers: int,
                         offset: int, *, requests: Path | None = None, path: str | None = None,
                         limit: int | None = None, watchers: int = 0, watch_path: str = "",
                         idle: float = 0.0, counting: Callgrind | None = None,
                         ) -> tuple[LoadResult, dict[str, Any]]:
        """The vote endpoint under load with the flusher running; lag sampled meanwhile.

        ``requests`` (default: the main request file) is replayed from line ``offset``, at
        most ``limit`` lines (default: the rest of the main file) to ``path``. ``watchers``
        SSE clients of ``watch_path`` stay connected during the load; ``idle`` seconds of
        the server's CPU with no vote (watchers connected) are measured before it.
        ``counting``: the server runs under callgrind and its instructions are counted."""
        requests = requests or self.requests_file
        path = path or self.path
        limit = self.request_lines - offset if limit is None else limit
        self.log(f"{name}: vote endpoint, {workers} worker(s), from line {offset} of "
                 f"{requests.name}")
        redis = redis_client(redis_url)
        cli = [python(), "-m", "voting_service.cli"]
        flusher = self.res.children.start(f"{name}-flusher", [*cli, "flusher"], env)
        extra: dict[str, Any] = {}
        try:
            server, port = await self._serve(f"{name}-serve", [*cli, "serve"], env, "/readyz",
                                             workers, counting)
            watching = sse.Watchers(port, watch_path, watchers)
            if watchers:
                extra["watchers_connected_s"] = round(await watching.open(), 2)
            if idle:
                extra["idle_server_cores"] = await self._idle_cores(server, idle)
            sampler = flusher_bench.LagSampler(redis, self.pg_url, SHARDS)
            cpu = CpuSampler({**self.groups(), server.pid: "server", flusher.pid: "flusher"})
            stop, measuring = asyncio.Event(), asyncio.Event()
            sampling = asyncio.gather(sampler.run(stop), cpu.run(stop, measuring))
            profiling: list[Awaitable[Any]] = []
            if self.o.profile:
                profiling = self._profile(server, workers, name)
            try:
                result, *_ = await asyncio.gather(
                    self._measure(port, requests, path, measuring, counting, server.pid,
                                  offset=offset, limit=limit),
                    *profiling)
            finally:
                stop.set()
                await sampling
                if watchers:
                    extra["watcher_events"] = watching.events
                    extra["watchers_failed"] = watching.failed
                await watching.close()
                self.res.children.stop(server)
            extra["lag"] = sampler.summary()
            result.extra["cpu_cores"] = cpu.cores()
            result.extra["cpu_seconds"] = cpu.seconds()
            extra["drain_s"] = await self._wait_drained(redis, flusher)
            if self.o.profile:
                files = sorted(self.profile_dir.glob(f"{name}-*.txt"))
                extra["profile"] = profile.summarize(files, top=60)
                extra["profile_dir"] = str(self.profile_dir)
        finally:
            self.res.children.stop(flusher)
            await redis.aclose()
        return result, extra

    async def _idle_cores(self, server: Child, seconds: float) -> float:
        """Cores the server used over ``seconds`` with no load (its background work)."""
        cpu = CpuSampler({server.pid: "server"})
        stop, measuring = asyncio.Event(), asyncio.Event()
        measuring.set()
        sampling = asyncio.create_task(cpu.run(stop, measuring))
        await asyncio.sleep(seconds)
        stop.set()
        await sampling
        return cpu.cores().get("server", 0.0)

    def _profile(self, server: Child, workers: int, name: str) -> list[Awaitable[Any]]:
        pids = server.group_pids()
        if workers > 1:  # the gunicorn master only supervises
            pids = [p for p in pids if p != server.pid]
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return [profile.record(pid, self.o.seconds, self.profile_dir / f"{name}-{pid}.txt",
                               self.o.warmup)
                for pid in pids]

    async def _wait_drained(self, redis: store.AnyRedis, flusher: Child,
                            timeout: float = 60.0) -> float | None:
        """Seconds until the flusher emptied the streams after the load, None on timeout."""
        conn = await asyncpg.connect(self.pg_url)
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout and flusher.alive():
                if (await progress.all_campaigns(redis, conn, SHARDS)).backlog == 0:
                    return round(time.monotonic() - started, 2)
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        return None
