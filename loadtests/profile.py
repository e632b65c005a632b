"""Optional sampling profile of the server workers (``--profile``) with py-spy.

py-spy is not a dependency: ``.venv/bin/pip install py-spy`` first. The raw (collapsed)
stacks are kept in bench-results/ for flame graphs; the summary lists the functions with
the largest share of samples, inclusive and self, which is what a regression hunt needs.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .reaping import reap

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


async def record(pid: int, seconds: float, out: Path, delay: float, rate: int = 97) -> bool:
    """Sample ``pid`` for ``seconds`` after ``delay``; False if py-spy is missing or failed."""
    exe = py_spy()
    if exe is None:
        return False
    await asyncio.sleep(delay)
    proc = await asyncio.create_subprocess_exec(
        exe, "record", "-p", str(pid), "-d", str(max(int(seconds), 1)), "-r", str(rate),
        "-f", "raw", "-o", str(out), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(seconds + 30):
            await proc.wait()
    finally:
        await reap(proc)
    return proc.returncode == 0 and out.exists()


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m['func']} ({file.rsplit('/', 2)[-2] + '/' if '/' in file else ''}"\
           f"{file.rsplit('/', 1)[-1]})"


def summarize(files: list[Path], top: int = 25) -> dict[str, Any]:
    """Share of samples per function, inclusive (anywhere on the stack) and self (on top)."""
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    for file in files:
        for line in file.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_name(f) for f in stack.split(";") if f]
            # the first frame is the thread ("process 123:..."), not code
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            total += n
            for name in set(frames):
                inclusive[name] += n
            self_[frames[-1]] += n
    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v / total, 4)) for k, v in c.most_common(top)] if total else []
    return {"samples": total, "inclusive": share(inclusive), "self": share(self_)}
