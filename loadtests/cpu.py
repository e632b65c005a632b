"""Who used the two cores during a phase: server, Valkey, PostgreSQL, flusher, load generator.

On a two-core machine the server under test competes with everything else, so a throughput
figure means little without this split. Read from ``/proc/<pid>/stat`` a few times a second
(short-lived processes such as ``wrk`` are seen while they run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def snapshot() -> dict[int, tuple[str, int, int, int]]:
    """pid → (command name, process group, parent pid, user + system clock ticks)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            out[int(entry.name)] = (comm, int(fields[2]), int(fields[1]),
                                    int(fields[11]) + int(fields[12]))
    return out


@dataclass
class CpuSampler:
    """Accumulates CPU time per process over a window.

    ``groups`` names our process groups (every server we start leads its own group); a
    process whose parent leads a named group counts for it too (PostgreSQL's backends each
    start a session of their own). Anything else counts as "other", so that a busy neighbour
    on the machine shows up instead of skewing a role.
    """

    groups: Mapping[int, str]
    interval: float = 0.25
    _first: dict[int, int] = field(default_factory=dict)
    _last: dict[int, tuple[str, int, int, int]] = field(default_factory=dict)
    _start: float = 0.0
    _end: float = 0.0

    def _take(self, initial: bool) -> None:
        for pid, (comm, pgrp, ppid, ticks) in snapshot().items():
            if pid not in self._first:
                self._first[pid] = ticks if initial else 0
            self._last[pid] = (comm, pgrp, ppid, ticks)

    async def run(self, stop: asyncio.Event, start: asyncio.Event | None = None) -> None:
        """Sample until ``stop``; from ``start`` on if given (the measured window)."""
        if start is not None:
            waits = [asyncio.ensure_future(start.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            if stop.is_set():
                return
        self._start = time.monotonic()
        self._take(initial=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            self._take(initial=False)
        self._end = time.monotonic()

    def cores(self) -> dict[str, float]:
        """Average cores used per role over the window."""
        wall = self._end - self._start
        if wall <= 0:
            return {}
        return {k: round(v / wall, 2) for k, v in self.seconds().items()}

    def seconds(self) -> dict[str, float]:
        """CPU seconds used per role over the window, largest first."""
        me = os.getpid()
        used: dict[str, float] = {}
        for pid, (comm, pgrp, ppid, ticks) in self._last.items():
            delta = ticks - self._first.get(pid, 0)
            if delta <= 0:
                continue
            if pgrp in self.groups:
                role = self.groups[pgrp]
            elif ppid in self.groups:
                role = self.groups[ppid]
            elif pid == me:
                role = "bench"
            elif comm == "wrk" or (pgrp == os.getpgrp() and comm.startswith("python")):
                role = "load generator"  # wrk, or the rawclient fallback processes
            else:
                role = "other"  # not ours: whatever else runs on the machine
            used[role] = used.get(role, 0.0) + delta / TICK
        return {k: round(v, 3) for k, v in sorted(used.items(), key=lambda kv: -kv[1])}
