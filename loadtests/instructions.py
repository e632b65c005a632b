"""D3: instructions per request, counted by callgrind, for the same rows as D1.

A core of this machine runs the same code up to 40 % faster or slower from one few-second
window to the next (other tenants of the host), and D1's figures come from CPU seconds: a
vote row and the bare row a minute apart can see different machines. Instructions do not
depend on the machine's speed: the server runs under ``valgrind --tool=callgrind`` with
instrumentation on from its first request, its counters are zeroed when wrk's measured
window starts and dumped when it ends, and the total is divided by the requests wrk
counted. Two runs of the same row agree within a few per cent.

What the count leaves out, and how to read it: only the server's own user-space
instructions are counted, not the kernel's work for its system calls (a vote makes more of
those than a bare request: its Redis writes and reads); an instruction of a tight C loop
(``sprintf`` in hiredis' command packing) costs less time than one of the interpreter's.
Under valgrind the server is ~30× slower, so it, not Redis, is the bottleneck: its Redis
batches are full, which the count reflects. Compare rows with each other, within one run.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from .reaping import reap

CONTROL_TIMEOUT = 30.0
"""Seconds a ``callgrind_control`` command may take (the server answers it between two
system calls; under load that is within milliseconds)."""


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


@dataclass
class Callgrind:
    """Runs a server under callgrind and reads its count for one measured window."""

    out_dir: Path

    def argv(self, name: str) -> list[str]:
        """The prefix of the server's command line; instrumentation starts off, so that
        the interpreter starts at valgrind's plain speed."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.out_dir / name}.%p"]

    async def ready(self, pid: int) -> None:
        """Instrumentation on (before the warm-up run: its code is translated by then)."""
        await _control(pid, "--instr=on")

    async def window_starts(self, pid: int) -> None:
        await _control(pid, "--zero")

    async def window_ends(self, pid: int) -> int:
        """Instructions since ``window_starts``: the dump's total."""
        before = set(self.out_dir.glob(f"*.{pid}.*"))
        await _control(pid, "--dump")
        fresh = sorted(set(self.out_dir.glob(f"*.{pid}.*")) - before)
        if not fresh:
            raise RuntimeError(f"callgrind wrote no dump for pid {pid}")
        return totals(fresh[-1])


def totals(path: Path) -> int:
    """The ``totals:`` (or ``summary:``) line of a callgrind dump: instructions executed."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


async def _control(pid: int, command: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "callgrind_control", command, str(pid),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(CONTROL_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        await reap(proc)
        raise RuntimeError(f"callgrind_control {command} {pid}: no answer") from None
    if proc.returncode != 0 or b"OK" not in out:
        raise RuntimeError(f"callgrind_control {command} {pid}: {out.decode(errors='replace')}")
