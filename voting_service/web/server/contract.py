"""Which HTTP protocol uvicorn runs for the service, and whether votes are answered in it.

The rest of the service (``cli serve``, the gunicorn worker, the app's lifespan, the vote
route) asks here and never imports ``web.server.protocol``, the one module that uses uvicorn's
internals. Importing that module checks the installed uvicorn against the release it was
tested on; if the check fails, one warning is logged and the service runs on uvicorn's stock
``httptools`` protocol: every vote goes through the ASGI vote route (the same answers, at
the cost ``web/server/protocol.py`` and ``docs/capacity.md`` give), and request heads, body
deadlines and connection caps are uvicorn's own (keep ``deploy/nginx`` in front until the pin
and the module agree).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

DIRECT_ROUTE = "voting_service.direct_route"
"""The lifespan state key under which the app offers its vote route to the protocol."""

MISMATCH: str | None = None
"""Why the service runs on uvicorn's stock protocol, or ``None`` (the tested release)."""

try:
    from . import protocol as _protocol
except ImportError as exc:
    _protocol = None  # type: ignore[assignment]
    MISMATCH = str(exc)
    log.warning("running uvicorn's stock HTTP protocol: %s; votes go through ASGI and request "
                "heads, bodies and connections are not bounded by the service "
                "(see web/server/contract.py)", MISMATCH)


def http_protocol(head_timeout: float, write_timeout: float) -> type[asyncio.Protocol] | str:
    """uvicorn's ``http=`` for the service: its own protocol (bounded heads, votes answered
    in the protocol), or ``"httptools"`` when the installed uvicorn is not the tested one."""
    if MISMATCH is not None or _protocol is None:
        return "httptools"
    return _protocol.bounded_protocol(head_timeout, DIRECT_ROUTE, write_timeout)


def direct_votes() -> bool:
    """Whether the protocol can answer votes itself (the lifespan then offers the route)."""
    return MISMATCH is None


def one_write(send: Any) -> Callable[[int, bytes, bytes], Awaitable[None]] | None:
    """The ``answer(status, head, body)`` of the request cycle behind an ASGI ``send``
    (the whole response in one write) when the service's protocol serves it, else ``None``."""
    cycle = getattr(send, "__self__", None)
    if _protocol is not None and type(cycle) is _protocol.AnsweringCycle:
        return cycle.answer
    return None
