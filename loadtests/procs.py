"""Child processes of the benchmark: started in their own session, always stopped.

A thin layer over :mod:`voting_service.stack`, which the tests share: every server, worker
and flusher runs in a new session (process group), so that stopping the group also stops
gunicorn's workers; :class:`Children` remembers everything it started and stops it on exit,
also on Ctrl-C or SIGTERM. Here children run in the checkout (``REPO``).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from voting_service import stack
from voting_service.stack import Child, http_status, wait_ready

__all__ = ["REPO", "Child", "Children", "http_status", "python", "sigterm_as_interrupt",
           "wait_ready"]

REPO = Path(__file__).resolve().parent.parent
"""The checkout: ``loadtests`` is not installed, so children run with it as cwd."""


class Children(stack.Children):
    """Starts children (in the checkout) and stops every one of them on exit, newest first."""

    def __init__(self, logdir: Path) -> None:
        super().__init__(logdir, cwd=REPO)


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


def python() -> str:
    return sys.executable
