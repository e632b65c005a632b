"""Fallback load generator when ``wrk`` is missing: keep-alive HTTP/1.1 over uvloop.

Run as a separate process (``python -m loadtests.rawclient``), one or two of them, so that it
does not share an event loop with the benchmark. It replays the same request file as
``replay.lua`` (lines dealt round-robin to the processes), warms up, then measures, and
prints one JSON line. Latencies go into a log-scale histogram so that processes merge.
A Python client tops out at some thousands of requests a second per core: when it is the
bottleneck, the figures it gives are a floor, not the server's capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter
from pathlib import Path

import uvloop

BUCKETS_PER_DECADE = 100


def bucket(seconds: float) -> int:
    return int(math.log10(max(seconds, 1e-7) * 1e6) * BUCKETS_PER_DECADE)


def bucket_us(index: int) -> float:
    return float(10 ** ((index + 0.5) / BUCKETS_PER_DECADE))


def percentile(hist: dict[int, int], q: float) -> float:
    """The ``q``-th percentile (0..100) in microseconds of a bucket histogram."""
    total = sum(hist.values())
    if not total:
        return 0.0
    rank = q / 100 * total
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bucket_us(index)
    return bucket_us(max(hist))


def load_requests(file: Path, path: str, offset: int, limit: int, share: int, shares: int,
                  user_agent: str) -> list[bytes]:
    out = []
    with open(file, encoding="ascii") as f:
        for lineno, line in enumerate(f):
            if lineno >= offset + limit:
                break
            if lineno < offset or (lineno - offset) % shares != share:
                continue
            token, xff, body = line.rstrip("\n").split("\t", 2)
            credential = (f"Authorization: {token}" if token.startswith("Bearer ")
                          else f"X-Voter-Token: {token}")
            out.append(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Accept: application/json\r\nUser-Agent: {user_agent}\r\n"
                f"{credential}\r\nX-Forwarded-For: {xff}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
            )
    return out


class Run:
    def __init__(self, requests: list[bytes], warmup: float, duration: float) -> None:
        self.requests = requests
        self.next = 0
        self.wrapped = 0
        self.start = time.monotonic() + warmup
        self.end = self.start + duration
        self.hist: Counter[int] = Counter()
        self.statuses: Counter[int] = Counter()
        self.errors = 0

    def take(self) -> bytes:
        if self.next >= len(self.requests):
            self.next = 0
            self.wrapped += 1
        req = self.requests[self.next]
        self.next += 1
        return req


async def connection(run: Run, port: int) -> None:
    while time.monotonic() < run.end:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            run.errors += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while (now := time.monotonic()) < run.end:
                writer.write(run.take())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                done = time.monotonic()
                if done >= run.start and done < run.end:
                    run.hist[bucket(done - now)] += 1
                    run.statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            run.errors += 1
        finally:
            writer.close()


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    requests = load_requests(Path(args.file), args.path, args.offset, args.limit, args.share,
                             args.shares, args.user_agent)
    run = Run(requests, args.warmup, args.duration)
    async with asyncio.timeout(args.warmup + args.duration + 10):
        await asyncio.gather(*(connection(run, args.port) for _ in range(args.connections)))
    return {
        "requests": sum(run.statuses.values()),
        "duration_s": args.duration,
        "sent": run.next + run.wrapped * len(requests),
        "wrapped": run.wrapped,
        "errors": run.errors,
        "statuses": {str(k): v for k, v in run.statuses.items()},
        "hist": {str(k): v for k, v in run.hist.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=10**9)
    p.add_argument("--share", type=int, default=0)
    p.add_argument("--shares", type=int, default=1)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--user-agent", default="loadtests")
    args = p.parse_args()
    print(json.dumps(uvloop.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
