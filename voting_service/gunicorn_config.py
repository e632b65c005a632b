"""Gunicorn settings of ``serve --workers N`` (``-c python:voting_service.gunicorn_config``).

Each worker keeps its metrics in ``PROMETHEUS_MULTIPROC_DIR``; when one exits, its live
gauges (open SSE streams) are dropped, while its counters stay and keep adding up.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
