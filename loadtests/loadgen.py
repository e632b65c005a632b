"""HTTP load generation: ``wrk`` with ``replay.lua``, or the Python fallback client.

``wrk`` is preferred because a Python client would saturate before the server does: on two
cores every cycle the client spends is taken from the server under test. Both replay the
same pre-generated request file at a fixed concurrency for a fixed time after a warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import rawclient
from .dataset import USER_AGENT
from .procs import REPO
from .reaping import reap

REPLAY_LUA = Path(__file__).resolve().parent / "replay.lua"


@dataclass
class LoadResult:
    """One measured window (warm-up excluded)."""

    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    errors: int
    consumed: int
    """Request-file lines used, warm-up included: where the next run should start."""
    wrapped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_fraction(self) -> float:
        return self.statuses.get(200, 0) / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rps"] = round(self.rps, 1)
        out["ok_fraction"] = round(self.ok_fraction, 5)
        return out


def ensure_wrk(install: bool) -> str | None:
    """Path of ``wrk``; installs the Debian package ``wrk`` when missing and allowed.

    The bench needs ``wrk`` for trustworthy numbers (see the module docstring); a fresh
    machine lacks it, so with ``install`` (the default of ``make bench``, as root) we run
    ``apt-get install -y wrk`` once, after ``apt-get update`` if the package is unknown.
    """
    found = shutil.which("wrk")
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("wrk is missing: apt-get install -y wrk", file=sys.stderr, flush=True)
    for cmd in (["apt-get", "install", "-y", "-qq", "wrk"],
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "wrk"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(cmd, env=env, check=False, capture_output=True, timeout=300)
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


async def _communicate(proc: asyncio.subprocess.Process, timeout: float) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except BaseException:
        await reap(proc)
        raise
    return out


async def _wrk_once(wrk: str, port: int, file: Path, path: str, offset: int, limit: int,
                    connections: int, threads: int, seconds: float,
                    measuring: asyncio.Event | None = None) -> dict[str, Any]:
    """One wrk run; ``measuring`` is set once wrk has read its requests and starts its clock
    (its "Running …" line), so that samplers can leave the set-up time out."""
    # wrk printf()s into a pipe, fully buffered: stdbuf makes "Running" arrive on time
    unbuffer = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
    proc = await asyncio.create_subprocess_exec(
        *unbuffer, wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
        "--timeout", "5s", "-s", str(REPLAY_LUA), f"http://127.0.0.1:{port}{path}",
        "--", str(file), path, str(offset), str(limit), str(threads), USER_AGENT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    if not unbuffer and measuring is not None:
        measuring.set()  # no stdbuf: the window then includes wrk's set-up
    try:
        async with asyncio.timeout(seconds + 60):
            async for raw in proc.stdout:
                line = raw.decode(errors="replace")
                lines.append(line)
                if measuring is not None and line.startswith("Running "):
                    measuring.set()
            await proc.wait()
    finally:
        await reap(proc)
    for line in lines:
        if line.startswith("WRKJSON "):
            data: dict[str, Any] = json.loads(line[8:])
            return data
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{''.join(lines)[-2000:]}")


async def run_wrk(wrk: str, port: int, file: Path, path: str, *, offset: int, limit: int,
                  connections: int, threads: int, warmup: float, seconds: float,
                  measuring: asyncio.Event | None = None) -> LoadResult:
    """A warm-up run, then the measured run on the lines after it."""
    used = 0
    if warmup > 0:
        warm = await _wrk_once(wrk, port, file, path, offset, limit, connections, threads,
                               warmup)
        used = warm["sent_max_per_thread"] * threads
    data = await _wrk_once(wrk, port, file, path, offset + used, max(limit - used, threads),
                           connections, threads, seconds, measuring)
    e = data["errors"]
    lat = data["latency_us"]
    return LoadResult(
        tool=f"wrk -t{threads} -c{connections}",
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=lat["p50"] / 1000,
        p99_ms=lat["p99"] / 1000,
        statuses={int(k): int(v) for k, v in data["statuses"].items()},
        errors=sum(int(e[k]) for k in ("connect", "read", "write", "timeout")),
        consumed=used + data["sent_max_per_thread"] * threads,
        wrapped=bool(data["wrapped"]),
        extra={"latency_us": lat, "errors": e},
    )


async def run_python(port: int, file: Path, path: str, *, offset: int, limit: int,
                     connections: int, processes: int, warmup: float, seconds: float,
                     measuring: asyncio.Event | None = None) -> LoadResult:
    """The fallback: ``processes`` rawclient processes sharing the connections."""
    procs = []

    async def mark() -> None:  # the clients measure from their start + warm-up
        await asyncio.sleep(warmup + 0.5)
        if measuring is not None:
            measuring.set()

    marker = asyncio.create_task(mark())
    try:
        for share in range(processes):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loadtests.rawclient", "--port", str(port),
                "--file", str(file), "--path", path, "--offset", str(offset),
                "--limit", str(limit), "--share", str(share), "--shares", str(processes),
                "--connections", str(max(connections // processes, 1)),
                "--warmup", str(warmup), "--duration", str(seconds),
                "--user-agent", USER_AGENT, cwd=REPO, stdout=asyncio.subprocess.PIPE,
            ))
        outs = [await _communicate(p, warmup + seconds + 60) for p in procs]
    finally:
        marker.cancel()
        for p in procs:
            await reap(p)
    parts = [json.loads(o) for o in outs]
    hist: dict[int, int] = {}
    statuses: dict[int, int] = {}
    for part in parts:
        for k, v in part["hist"].items():
            hist[int(k)] = hist.get(int(k), 0) + v
        for k, v in part["statuses"].items():
            statuses[int(k)] = statuses.get(int(k), 0) + v
    return LoadResult(
        tool=f"python x{processes} -c{connections}",
        requests=sum(statuses.values()),
        seconds=seconds,
        p50_ms=rawclient.percentile(hist, 50) / 1000,
        p99_ms=rawclient.percentile(hist, 99) / 1000,
        statuses=statuses,
        errors=sum(int(p["errors"]) for p in parts),
        consumed=max(int(p["sent"]) for p in parts) * processes,
        wrapped=any(p["wrapped"] for p in parts),
        extra={"latency_us": {q: rawclient.percentile(hist, n)
                              for q, n in (("p50", 50), ("p95", 95), ("p99", 99))}},
    )


@dataclass(frozen=True)
class LoadSpec:
    """How every HTTP phase is driven: same tool, concurrency and times for all."""

    wrk: str | None
    connections: int
    threads: int
    warmup: float
    seconds: float

    async def run(self, port: int, file: Path, path: str, *, offset: int = 0,
                  limit: int = 10**9, measuring: asyncio.Event | None = None) -> LoadResult:
        """Warm up, then measure; ``measuring`` is set when the measured window starts."""
        if self.wrk:
            return await run_wrk(self.wrk, port, file, path, offset=offset, limit=limit,
                                 connections=self.connections, threads=self.threads,
                                 warmup=self.warmup, seconds=self.seconds, measuring=measuring)
        return await run_python(port, file, path, offset=offset, limit=limit,
                                connections=self.connections, processes=self.threads,
                                warmup=self.warmup, seconds=self.seconds, measuring=measuring)
