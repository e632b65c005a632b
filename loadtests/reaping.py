"""Reaping the short-lived helper processes of a measurement (wrk, py-spy, callgrind_control).

Long-lived children (servers, flushers) belong to ``procs.Children``; these are the ones a
coroutine starts and waits for itself, and must not leave behind when it fails or times out.
"""

from __future__ import annotations

import asyncio
import contextlib


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc`` if it still runs, then wait for it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()
