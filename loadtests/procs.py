"""Child processes of the benchmark: started in their own session, always stopped.

Every server, worker and flusher runs in a new session (process group), so that stopping the
group also stops gunicorn's workers; :class:`Children` remembers everything it started and
stops it on exit, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
"""The checkout: ``loadtests`` is not installed, so children run with it as cwd."""


class Child:
    """One child process group with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                list(argv), env=dict(env), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the whole group, then SIGKILL whatever is left after ``grace`` s."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # the leader may be gone while its workers linger: the group id outlives it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def group_pids(self) -> list[int]:
        """PIDs of the process group (the gunicorn master and its workers)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) == self.popen.pid:  # pgrp
                    pids.append(int(entry.name))
        return sorted(pids)


class Children:
    """Starts children and stops every one of them on exit, newest first."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self._children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        child = Child(name, argv, env, self.logdir / f"{name}.log")
        self._children.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        with contextlib.suppress(ValueError):
            self._children.remove(child)

    def stop_all(self) -> None:
        while self._children:
            self._children.pop().stop()

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so that every ``finally`` runs on ``kill``."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def http_status(port: int, path: str, timeout: float = 1.0) -> int:
    """Status of ``GET path`` on 127.0.0.1:port, or 0 if nothing answered."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Connection: close\r\n\r\n".encode())
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        return int(line.split()[1])
    except (OSError, TimeoutError, IndexError, ValueError):
        return 0


async def wait_ready(child: Child, port: int, path: str, timeout: float = 60.0) -> None:
    """Until ``GET path`` answers 200; fail early if the child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited at start:\n{child.tail()}")
        if await http_status(port, path) == 200:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready on port {port} after {timeout:.0f}s:\n"
                       f"{child.tail()}")


def python() -> str:
    return sys.executable
