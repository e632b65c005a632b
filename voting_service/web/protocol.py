"""uvicorn's HTTP protocol with bounded request heads, for a service reachable without nginx.

uvicorn's httptools protocol keeps reading a request head for as long as it grows, with
any number of headers, and waits for it forever: its keep-alive timeout only runs between
requests. gunicorn's ``limit_request_line``/``limit_request_fields``/
``limit_request_field_size`` do not help, since with uvicorn workers uvicorn parses the
requests, not gunicorn. So this subclass bounds the head itself:

- request line ≤ ``MAX_LINE`` bytes (else 414), each header line ≤ ``MAX_FIELD`` bytes and at
  most ``MAX_FIELDS`` headers (else 431), the whole head ≤ ``MAX_HEAD`` bytes (else 431,
  checked before the bytes reach the parser); the answer closes the connection;
- a head must be complete within ``head_timeout`` seconds of the connection or of its
  first byte (``VOTING_HEAD_TIMEOUT``), else the connection is closed: a silent or
  trickling client holds nothing for long.

``deploy/nginx`` stays the recommended front; these bounds match its defaults.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

MAX_LINE = 8 * 1024
MAX_FIELD = 8 * 1024
MAX_FIELDS = 100
MAX_HEAD = 32 * 1024
HEAD_TIMEOUT = 10.0

_REASONS = {414: "URI Too Long", 431: "Request Header Fields Too Large"}


class _Refused(Exception):
    """Raised from a parser callback: httptools stops and reports a callback error."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    head_timeout: float = HEAD_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_left: int | None = MAX_HEAD
        """Head bytes still allowed; ``None`` while a body is read."""
        self._line = 0
        self._fields = 0
        self._refusal: tuple[int, str] | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    # --- the head's deadline -------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("request head not complete within %.0f s from %s; connection closed",
                     self.head_timeout, self.client[0] if self.client else "-")
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    # --- the head's size -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        left = self._head_left
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
        self._line = self._fields = 0
        self._arm_head_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._line += len(url)
        if self._line > MAX_LINE:
            self._refusal = (414, f"request line longer than {MAX_LINE} bytes")
            raise _Refused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > MAX_FIELDS:
            self._refusal = (431, f"more than {MAX_FIELDS} header fields")
            raise _Refused
        if len(name) + len(value) > MAX_FIELD:
            self._refusal = (431, f"a header field longer than {MAX_FIELD} bytes")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_left = None
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_left = MAX_HEAD
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """The parser stopped: on one of our bounds, answer that bound's status instead."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        status, why = self._refusal
        self._refusal = None
        self._refuse(status, why)

    def _refuse(self, status: int, why: str) -> None:
        log.info("request head refused (%d, %s) from %s", status, why,
                 self.client[0] if self.client else "-")
        body = f"{status} {_REASONS[status]}: {why}\n".encode()
        self.transport.write(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            "content-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
        )
        self.transport.close()


def bounded_protocol(head_timeout: float) -> type[BoundedHttpToolsProtocol]:
    """The protocol class with this deadline for request heads (uvicorn's ``http=``)."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,),
                {"head_timeout": head_timeout})
