"""uvicorn's HTTP protocol with bounded request heads and votes answered in the protocol.

This is the only module that uses uvicorn's internals, and it runs only on the uvicorn
release it was tested on (``TESTED_UVICORN``, pinned in ``constraints.txt``): importing it
checks that release and every name it needs of uvicorn, and raises ``ImportError`` on a
mismatch, so that ``web.server.contract`` runs uvicorn's stock protocol instead (one warning).

Why a subclass of uvicorn's private ``HttpToolsProtocol``: uvicorn's one official extension
point for this is ``Config(http=<protocol class>)``, which the service uses (``web.server.contract``
hands uvicorn the class), but what it accepts is a whole ``asyncio.Protocol``; uvicorn
offers no public hook to bound a request head or to answer a request without its ASGI
cycle. A protocol of our own on ``httptools``, behind the same ``http=``, would touch no
internals but would re-implement keep-alive, pipelining, flow control, ``Expect:
100-continue``, upgrades and the ASGI cycle of every other route; a pure ASGI vote route
loses the gain below. So the subclass overrides a few callbacks, and the pin and the check
at import keep a new uvicorn from breaking or silently changing it.

Request heads are bounded here because uvicorn's httptools protocol keeps reading a head for
as long as it grows, with any number of headers, and waits for it forever (its keep-alive
timeout only runs between requests); gunicorn's ``limit_request_*`` do not apply, since
uvicorn parses the requests of its workers:

- request line ≤ ``MAX_LINE`` bytes (else 414), each header line ≤ ``MAX_FIELD`` bytes and at
  most ``MAX_FIELDS`` headers (else 431), the whole head ≤ ``MAX_HEAD`` bytes (else 431,
  counted before the bytes reach the parser, so it never buffers more); the answer closes
  the connection;
- a head must be complete within ``head_timeout`` seconds of the connection or of its
  first byte (``VOTING_HEAD_TIMEOUT``), else the connection is closed: a silent or
  trickling client holds nothing for long;
- a client that leaves the answer unread, its write buffer full, for ``write_timeout``
  seconds (``VOTING_WRITE_TIMEOUT``) is cut off (``abort``: a close would wait for the
  buffer to drain, forever): a download or a stream read by no one ends.

``deploy/nginx`` stays the recommended front; these bounds match its defaults.

Each fixed-length answer goes out in one write: uvicorn writes a response's head and its
body separately, two system calls and two TCP segments; ``_OneWrite`` holds the head until
the body joins it. A route that encodes its own head (the vote route, whose headers are all
its own constants and numbers) hands it to ``AnsweringCycle.answer``, skipping ``send``'s
checks of each header and the two ASGI messages.

Votes skip ASGI altogether: the app's lifespan puts a ``DirectRoute`` in the lifespan state
(under ``route_key``), which uvicorn gives every connection as ``app_state``. A plain
``POST`` to its path, with no request in flight before it on the connection, is then
answered by a ``DirectExchange`` in the cycle's place: the body gathered as it comes, one
task, one write. Anything else, including ``Expect: 100-continue``, takes uvicorn's path to
the same route in the ASGI app. The gain, measured side by side by ``make bench`` (rows
"vote, anonymous token" and "… ASGI route"): 8–15 µs less server CPU a vote
(``docs/capacity.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import Awaitable
from typing import Any, Protocol

import httptools
import uvicorn
from uvicorn.protocols import utils as _utils
from uvicorn.protocols.http import httptools_impl as _impl

from .address_caps import BODY_MIN_RATE, BODY_TIMEOUT, SERVER_LIMITS, ServerLimits

TESTED_UVICORN = "0.55.0"
"""The one uvicorn release this module was written and tested against (``constraints.txt``
pins the same; ``tests/unit/test_server_contract.py`` checks that they agree)."""

_NEEDED: tuple[tuple[Any, tuple[str, ...], tuple[str, ...]], ...] = (
    # (owner, attributes it must have, state its own code must set or read)
    (_impl, ("HttpToolsProtocol", "RequestResponseCycle", "STATUS_LINE"), ()),
    (_utils, ("get_client_addr", "get_path_with_query_string"), ()),
    (getattr(_impl, "HttpToolsProtocol", None), (
        "connection_made", "connection_lost", "data_received", "on_message_begin",
        "on_headers_complete", "on_body", "on_message_complete", "send_400_response",
        "on_response_complete", "pause_writing", "resume_writing",
    ), (
        "app_state", "transport", "loop", "client", "headers", "parser", "url", "cycle",
        "expect_100_continue", "limit_concurrency", "connections", "tasks", "root_path",
        "scope", "flow", "access_log", "access_logger", "server_state", "pipeline",
    )),
    (getattr(_impl, "RequestResponseCycle", None), ("send", "receive", "run_asgi"), (
        "flow", "disconnected", "response_started", "response_complete",
        "waiting_for_100_continue", "access_log", "access_logger", "scope", "transport",
        "default_headers", "keep_alive", "message_event", "on_response", "chunked_encoding",
        "expected_content_length",
    )),
)


def _state_names(klass: type) -> set[str]:
    """The attribute names a class's own functions use: its instances' state is set in
    ``__init__`` or later callbacks, so it is not on the class itself."""
    names: set[str] = set()
    for owner in klass.__mro__:
        for value in vars(owner).values():
            code = getattr(value, "__code__", None)
            if code is not None:
                names.update(code.co_names)
    return names


def contract_broken(version: str) -> str | None:
    """Why this module must not run on the installed uvicorn, or ``None``: a release other
    than the tested one, or a name this module needs that uvicorn no longer has."""
    if version != TESTED_UVICORN:
        return f"uvicorn {version} is installed, this protocol is tested on {TESTED_UVICORN}"
    for owner, attributes, state in _NEEDED:
        if owner is None:
            return "uvicorn's httptools protocol or request cycle is missing"
        missing = [name for name in attributes if not hasattr(owner, name)]
        if state:
            used = _state_names(owner)
            missing += [name for name in state if name not in used]
        if missing:
            return f"uvicorn {version} lacks {', '.join(missing)} of {owner.__name__}"
    return None


_BROKEN = contract_broken(uvicorn.__version__)
if _BROKEN is not None:
    # ``web.server.contract`` catches this and runs uvicorn's own protocol instead
    raise ImportError(_BROKEN)

from uvicorn.protocols.http.httptools_impl import (  # noqa: E402
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string  # noqa: E402

log = logging.getLogger(__name__)

MAX_LINE = 8 * 1024
MAX_FIELD = 8 * 1024
MAX_FIELDS = 100
MAX_HEAD = 32 * 1024
HEAD_TIMEOUT = 10.0
WRITE_TIMEOUT = 30.0

_REASONS = {414: "URI Too Long", 431: "Request Header Fields Too Large"}

def _problem_answer(status: str, code: str, title: str, detail: str, *extra: str) -> bytes:
    body = json.dumps({"type": f"https://errors.voting-service/{code}", "title": title,
                       "status": int(status.split()[0]), "code": code, "detail": detail},
                      ensure_ascii=False, separators=(",", ":")).encode()
    head = [f"HTTP/1.1 {status}", "content-type: application/problem+json",
            f"content-length: {len(body)}", *extra, "connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


TOO_MANY_CONNECTIONS = _problem_answer(
    "503 Service Unavailable", "too_many_connections",
    "Too many open connections from this network",
    "close some connections (a browser needs a few) and retry", "retry-after: 10")
BODY_TOO_SLOW = _problem_answer(
    "408 Request Timeout", "body_timeout", "The request body did not arrive in time",
    "send the whole body promptly after the request head")


class DirectRoute(Protocol):
    """A route the protocol answers itself, without ASGI (``web.api.votes.DirectVotes``)."""

    body_limit: int

    def campaign_of(self, path: str) -> str | None:
        """The route's argument if it serves a ``POST`` to ``path``, else ``None``."""

    def answer(
        self, scope: dict[str, Any], arg: str, body: bytes | None
    ) -> Awaitable[tuple[int, bytes, bytes] | None]:
        """``(status, encoded header lines, payload)`` for the request's scope (uvicorn's,
        with method, path and query) and whole body (``None``: over ``body_limit``)."""


class _NoEvent:
    """A cycle's ``message_event`` as uvicorn's protocol uses it (``set`` on a lost
    connection): a direct exchange has its whole body before it starts, nothing waits."""

    def set(self) -> None:
        return None


_NO_EVENT = _NoEvent()
_INTERNAL = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
             b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error")


class DirectExchange:
    """One request a ``DirectRoute`` answers: it stands in the protocol's ``cycle`` slot,
    with the attributes uvicorn's protocol reads of a cycle (``response_complete``,
    ``disconnected``, ``keep_alive``, ``message_event``), so requests pipelined behind it
    queue and start as they would behind an ASGI cycle."""

    __slots__ = ("arg", "chunks", "disconnected", "keep_alive", "protocol", "response_complete",
                 "route", "scope", "size")

    message_event = _NO_EVENT

    def __init__(self, protocol: BoundedHttpToolsProtocol, route: DirectRoute, arg: str,
                 keep_alive: bool) -> None:
        self.protocol: BoundedHttpToolsProtocol | None = protocol
        self.route = route
        self.arg = arg
        self.scope: Any = protocol.scope
        self.keep_alive = keep_alive
        self.chunks: list[bytes] | None = []
        self.size = 0
        self.response_complete = False
        self.disconnected = False

    def feed(self, body: bytes) -> None:
        if self.chunks is None:
            return  # over the limit already: the rest is read and dropped
        self.size += len(body)
        if self.size > self.route.body_limit:
            self.chunks = None
        else:
            self.chunks.append(body)

    async def run(self) -> None:
        protocol = self.protocol
        assert protocol is not None
        chunks = self.chunks
        try:
            reply = await self.route.answer(
                self.scope, self.arg, None if chunks is None else b"".join(chunks))
        except Exception:
            log.exception("unhandled error in a direct route")
            reply = None
            if not self.disconnected and not protocol.transport.is_closing():
                protocol.transport.write(_INTERNAL)
            protocol.transport.close()
        self.protocol = None  # the protocol holds this exchange: no cycle left behind
        if reply is None or self.disconnected or protocol.transport.is_closing():
            self.response_complete = True
            return
        if protocol.flow.write_paused:
            await protocol.flow.drain()
            if self.disconnected or protocol.transport.is_closing():
                self.response_complete = True
                return
        status, head, payload = reply
        if protocol.access_log:
            _log_access(protocol.access_logger, self.scope, status)
        protocol.transport.write(_response(status, protocol.server_state.default_headers, head,
                                           self.keep_alive, payload))
        self.response_complete = True
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()


class _OneWrite:
    """The transport as one response cycle sees it: the head of a response with a known,
    non-empty length is held back and goes out with the first piece of its body. Streamed
    (chunked) answers, HEAD answers and empty bodies are written as uvicorn writes them.
    The cycle is let go once its head is written: a cycle and its transport referring to
    each other would leave every request to the cyclic collector."""

    __slots__ = ("_cycle", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle: Any = cycle
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:  # this is the head
            self._cycle = None
            if (cycle.chunked_encoding is False and cycle.expected_content_length > 0
                    and cycle.scope["method"] != "HEAD"):
                self._held = data
                return
        self._transport.write(data)

    def close(self) -> None:
        self._cycle = None
        held, self._held = self._held, None
        if held is not None:  # an app that failed after its head: as uvicorn would
            self._transport.write(held)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


def _response(status: int, default_headers: list[tuple[bytes, bytes]], head: bytes,
              keep_alive: bool, body: bytes) -> bytes:
    """A whole response: uvicorn's status line and default headers (``server``, ``date``),
    the route's encoded header lines, ``connection: close`` unless kept alive, the body."""
    out = [STATUS_LINE[status]]
    for name, value in default_headers:
        out += (name, b": ", value, b"\r\n")
    out.append(head)
    if not keep_alive:
        out.append(b"connection: close\r\n")
    out += (b"\r\n", body)
    return b"".join(out)


def _log_access(logger: logging.Logger, scope: Any, status: int) -> None:
    """An access log line as uvicorn writes it."""
    logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(scope), scope["method"],
                get_path_with_query_string(scope), scope["http_version"], status)


class AnsweringCycle(RequestResponseCycle):
    """uvicorn's request cycle, plus a whole response in one call (no state of its own:
    the protocol turns each new cycle into one by its class)."""

    async def answer(self, status: int, head: bytes, body: bytes) -> None:
        """Send ``status``, the encoded header lines ``head`` (each ending in CRLF, with a
        content-length of ``body``, none of them ``connection``) and ``body``, and end the
        response: what ``send`` does with start and body messages, in one write."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected or self.response_started:
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        if self.access_log:
            _log_access(self.access_logger, self.scope, status)
        self.transport.write(_response(status, self.default_headers, head, self.keep_alive, body))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()


class _Refused(Exception):
    """Raised from a parser callback: httptools stops and reports a callback error."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Checks cost O(1) per request for the usual head under 8 KiB (no per-header callback,
    one timer per connection rather than one per request)."""

    head_timeout: float = HEAD_TIMEOUT
    route_key: str | None = None
    """The lifespan state key of the app's ``DirectRoute`` (uvicorn hands the lifespan's
    state to every connection's protocol as ``app_state``); ``None``: votes go to ASGI."""
    write_timeout: float = WRITE_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paused_since: float | None = None
        """Loop time the transport's write buffer last filled up; ``None`` while it drains."""
        self._write_timer: asyncio.TimerHandle | None = None
        self._head_left: int | None = MAX_HEAD
        """Head bytes still allowed; ``None`` while a body is read."""
        self._counted = False
        """Whether ``_head_left`` counted this head from its first byte (not so for a head
        pipelined behind a request in the same read)."""
        self._in_head = False
        self._head_since: float | None = None
        """Loop time the head being read began; ``None`` between heads."""
        self._refusal: tuple[int, str] | None = None
        self._pending: tuple[int, str] | None = None
        """A refusal waiting for the responses to the requests pipelined before it."""
        self._head_timer: asyncio.TimerHandle | None = None
        self._direct: DirectRoute | None = (
            None if self.route_key is None else self.app_state.get(self.route_key))
        limits: ServerLimits | None = self.app_state.get(SERVER_LIMITS)
        self._limits = limits
        self._body_timeout = limits.body_timeout if limits else BODY_TIMEOUT
        self._body_rate = float(limits.body_min_rate if limits else BODY_MIN_RATE)
        self._body_since: float | None = None
        """Loop time the body being read began (its head ended); ``None`` between bodies."""
        self._body_read = 0
        self._held: tuple[str, ...] | None = None
        """The caps' keys this connection counts under; ``None``: not counted."""
    # --- the deadlines of heads and bodies -----------------------------------------------

    def _check_head_deadline(self) -> None:
        """The connection's one timer: close it if a head or a body is overdue, else look
        again when the next deadline is due."""
        self._head_timer = None
        if self.transport.is_closing():
            return
        wait = self.head_timeout
        now = self.loop.time()
        if self._head_since is not None:
            wait = self._head_since + self.head_timeout - now
            if wait <= 0:
                log.info("request head not complete within %.1f s from %s; connection closed",
                         self.head_timeout, self.client[0] if self.client else "-")
                self.transport.close()
                return
        if self._body_since is not None:
            cycle: Any = self.cycle
            if self.flow.read_paused or getattr(cycle, "waiting_for_100_continue", False):
                # the app, not the client, is behind: the body's clock starts again
                self._body_since, self._body_read = now, 0
            left = self._body_since + self._body_timeout + self._body_read / self._body_rate - now
            if left <= 0:
                self._body_overdue()
                return
            wait = min(wait, left)
        self._head_timer = self.loop.call_later(wait, self._check_head_deadline)

    def _body_overdue(self) -> None:
        if self._limits is not None:
            self._limits.timed_out()
        log.info("request body not complete in time from %s (%d bytes in %.1f s); "
                 "connection closed", self.client[0] if self.client else "-", self._body_read,
                 self.loop.time() - (self._body_since or 0.0))
        cycle: Any = self.cycle
        if not getattr(cycle, "response_started", False):
            self.transport.write(BODY_TOO_SLOW)
        if cycle is not None:
            cycle.disconnected = True  # an app still reading the body hears it at once
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self._limits
        if limits is not None:
            host = self.client[0] if self.client else None
            held, refusal = limits.connections.take(
                host, host is not None and limits.counted(host))
            if refusal is not None:
                limits.refused(refusal.level)
                log.info("connection from %s refused: %d open from its %s", host or "-",
                         refusal.limit, refusal.level)
                transport.write(TOO_MANY_CONNECTIONS)
                transport.close()
                return
            self._held = held
        self._head_since = self.loop.time()  # a connection that never speaks is a late head
        self._head_timer = self.loop.call_later(self.head_timeout, self._check_head_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._held is not None and self._limits is not None:
            self._limits.connections.give_back(self._held)
            self._held = None
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)

    # --- the write deadline ---------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self._paused_since = self.loop.time()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout,
                                                     self._check_write_deadline)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._paused_since = None

    def _check_write_deadline(self) -> None:
        """One timer while the buffer is full: abort once it stayed full too long."""
        self._write_timer = None
        since = self._paused_since
        if since is None:
            return
        wait = since + self.write_timeout - self.loop.time()
        if wait > 0:
            self._write_timer = self.loop.call_later(wait, self._check_write_deadline)
            return
        log.info("client read nothing for %.1f s from %s; connection aborted",
                 self.write_timeout, self.client[0] if self.client else "-")
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # a reset: the kernel drops the queued bytes too, at once
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    # --- the head's size -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        left = self._head_left
        if left is not None and not self._in_head:  # a head starts with this read, if any
            self._counted = True
        if left is None or len(data) <= left:
            if left is not None:
                self._head_left = left - len(data)
            super().data_received(data)
            return
        # more than the head may hold: feed what it may, then see whether the head ended
        self._head_left = 0
        super().data_received(data[:left])
        if self.transport.is_closing():
            return
        if self._head_left == 0:
            self._refuse(431, f"request head larger than {MAX_HEAD} bytes")
            return
        self.data_received(data[left:])

    def on_message_begin(self) -> None:
        self._in_head = True
        if self._head_since is None:
            self._head_since = self.loop.time()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        read = MAX_HEAD - (self._head_left or 0)  # at least the head's size, when counted
        self._head_left = None
        self._head_since = None
        self._in_head = False
        if len(self.headers) > MAX_FIELDS:
            self._refusal = (431, f"more than {MAX_FIELDS} header fields")
        elif not self._counted or read > min(MAX_LINE, MAX_FIELD):
            self._refusal = self._measure()
        if self._refusal is not None:
            raise _Refused  # the parser stops; send_400_response answers with the bound
        now = self.loop.time()
        self._body_since, self._body_read = now, 0  # (a body-less request ends at once)
        timer = self._head_timer
        if timer is not None and timer.when() > now + self._body_timeout:
            timer.cancel()  # the body is due before the connection's timer looks again
            self._head_timer = self.loop.call_later(self._body_timeout,
                                                    self._check_head_deadline)
        if self._direct is not None and self._take_direct(self._direct):
            return
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and cycle is not None:  # not an upgrade: a new cycle
            cycle.__class__ = AnsweringCycle
            cycle.transport = _OneWrite(self.transport, cycle)  # type: ignore[assignment]

    def _take_direct(self, route: DirectRoute) -> bool:
        """Whether the request is one for the direct route, now set up as this protocol's
        cycle. Anything unusual (not a POST, a request pipelined behind one in flight,
        ``Expect: 100-continue``, an upgrade, an escaped path, the concurrency limit) is
        left to uvicorn and the ASGI app, which serves the same route."""
        parser = self.parser
        if (parser.get_method() != b"POST" or self.expect_100_continue
                or (self.cycle is not None and not self.cycle.response_complete)
                or parser.should_upgrade()):
            return False
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            return False
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        if b"%" in raw_path or self.root_path:
            return False
        path = raw_path.decode("ascii")
        arg = route.campaign_of(path)
        if arg is None:
            return False
        http_version = parser.get_http_version()
        scope = self.scope
        scope["method"] = "POST"
        scope["http_version"] = http_version
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = parsed.query or b""
        self.cycle = DirectExchange(  # type: ignore[assignment]
            self, route, arg, http_version != "1.0" and parser.should_keep_alive())
        return True

    def on_body(self, body: bytes) -> None:
        self._body_read += len(body)
        cycle: Any = self.cycle
        if type(cycle) is DirectExchange:
            cycle.feed(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._head_left = MAX_HEAD
        self._counted = False
        self._body_since = None
        cycle: Any = self.cycle
        if type(cycle) is DirectExchange:
            task = self.loop.create_task(cycle.run())
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
            return
        super().on_message_complete()

    def _measure(self) -> tuple[int, str] | None:
        """The head's bounds checked one by one (a head over 8 KiB, or one not counted)."""
        fields = [len(k) + len(v) for k, v in self.headers]
        if len(self.url) + sum(fields) > MAX_HEAD:
            return (431, f"request head larger than {MAX_HEAD} bytes")
        if len(self.url) > MAX_LINE:
            return (414, f"request line longer than {MAX_LINE} bytes")
        if fields and max(fields) > MAX_FIELD:
            return (431, f"a header field longer than {MAX_FIELD} bytes")
        return None

    def send_400_response(self, msg: str) -> None:
        """The parser stopped: on one of our bounds, answer that bound's status instead."""
        if self._pending is not None:
            return  # a refusal is already due on this connection; the rest is dropped
        if self._refusal is None:
            super().send_400_response(msg)
            return
        status, why = self._refusal
        self._refusal = None
        self._refuse(status, why)

    def on_response_complete(self) -> None:
        if self._pending is not None and not self.pipeline:
            self.server_state.total_requests += 1
            status, why = self._pending
            self._pending = None
            self._refuse(status, why)
            return
        super().on_response_complete()

    def _refuse(self, status: int, why: str) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self._pending = (status, why)  # answers go out in order: after the ones due
            self.flow.pause_reading()
            return
        log.info("request head refused (%d, %s) from %s", status, why,
                 self.client[0] if self.client else "-")
        body = f"{status} {_REASONS[status]}: {why}\n".encode()
        self.transport.write(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            "content-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
        )
        self.transport.close()


def bounded_protocol(head_timeout: float, route_key: str | None = None,
                     write_timeout: float = WRITE_TIMEOUT) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with these deadlines for request heads and for clients that stop
    reading, answering the direct route found under ``route_key`` in the lifespan state
    (for uvicorn's ``http=``)."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,),
                {"head_timeout": head_timeout, "route_key": route_key,
                 "write_timeout": write_timeout})
