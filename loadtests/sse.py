"""Many ``/live`` watchers from one process: raw sockets reading Server-Sent Events.

Each watcher opens one connection to 127.0.0.1, sends one GET and reads until closed,
counting the ``tallies`` events and the bytes it got. They connect in small batches (the
server's listen backlog is finite) and ``open`` returns once every one has its first event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

BATCH = 100


@dataclass
class Watchers:
    port: int
    path: str
    count: int
    events: int = 0
    bytes: int = 0
    failed: int = 0
    _first: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _all_in: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self, timeout: float = 120.0) -> float:
        """Connect every watcher; seconds until the last one had its first event."""
        started = time.monotonic()
        for start in range(0, self.count, BATCH):
            batch = [asyncio.create_task(self._watch())
                     for _ in range(min(BATCH, self.count - start))]
            self._tasks += batch
            await asyncio.sleep(0.05)
        async with asyncio.timeout(timeout):
            await self._all_in.wait()
        return time.monotonic() - started

    async def _watch(self) -> None:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Accept: text/event-stream\r\n\r\n".encode())
            first = True
            while chunk := await reader.read(65536):
                self.bytes += len(chunk)
                got = chunk.count(b"event: tallies")
                self.events += got
                if first and got:
                    first = False
                    self._arrived()
        except OSError:
            self.failed += 1
            self._arrived()
        finally:
            if writer is not None:
                writer.close()

    def _arrived(self) -> None:
        self._first += 1
        if self._first >= self.count:
            self._all_in.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
