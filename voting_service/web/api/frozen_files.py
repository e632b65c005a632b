"""An immutable file over HTTP (RFC 9110): strong ETag, ``If-None-Match`` → 304, one byte
``Range`` → 206 (``If-Range`` honoured), an unsatisfiable range → 416.

It reads the file in bounded chunks and holds nothing else while the client reads: no
database connection, one chunk in memory; a client that stops reading is cut off by the
protocol's write deadline (``web/server/protocol.py``), and a client that hung up stops the reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

CHUNK = 64 * 1024


def etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    """Whether an ``If-None-Match`` (weak comparison) or ``If-Range`` (strong) list names
    ``etag``."""
    for item in header.split(","):
        tag = item.strip()
        if tag == "*" and weak:
            return True
        if tag.startswith("W/"):
            if not weak:
                continue
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def byte_range(header: str, size: int) -> tuple[int, int] | Literal[False] | None:
    """``(first, last)`` of a single ``bytes=`` range; ``None`` when the header is to be
    ignored (not bytes, malformed, several ranges: RFC 9110 lets a server send the whole
    file); ``False`` when no byte of it is in the file (416)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text.isascii() and last_text.isascii()):
        return None
    if not first_text:  # a suffix: the last N bytes
        if not last_text.isdigit():
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return False
        return max(0, size - suffix), size - 1
    if not first_text.isdigit() or (last_text and not last_text.isdigit()):
        return None
    first = int(first_text)
    last = int(last_text) if last_text else None
    if last is not None and last < first:
        return None
    if first >= size:
        return False
    last = size - 1 if last is None else last
    return first, min(last, size - 1)


class FrozenFileResponse:
    """The ASGI answer for ``path`` (``size`` bytes, never changing, tagged ``etag``)."""

    def __init__(self, path: Path, size: int, etag: str, media_type: str,
                 headers: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.size = size
        self.etag = etag
        self.media_type = media_type
        self.extra = dict(headers or {})

    def _head(self, status: int, length: int, extra: Mapping[str, str]) -> list[tuple[bytes,
                                                                                     bytes]]:
        fields = {"etag": self.etag, "accept-ranges": "bytes", **self.extra, **extra}
        if status != 304:
            fields["content-length"] = str(length)
        out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in fields.items()]
        if status in (200, 206):
            out.append((b"content-type", self.media_type.encode("latin-1")))
        return out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Headers(scope=scope)
        method = scope.get("method", "GET")
        status, first, last = 200, 0, self.size - 1
        extra: dict[str, str] = {}
        if etag_matches(request.get("if-none-match", ""), self.etag, weak=True):
            status = 304
        elif method == "GET" and "range" in request:
            if_range = request.get("if-range")
            if if_range is None or etag_matches(if_range, self.etag, weak=False):
                wanted = byte_range(request["range"], self.size)
                if wanted is False:
                    await self._empty(send, 416, {"content-range": f"bytes */{self.size}"})
                    return
                if wanted is not None:
                    first, last = wanted
                    status = 206
                    extra["content-range"] = f"bytes {first}-{last}/{self.size}"
        if status == 304:
            await self._empty(send, 304, {})
            return
        length = last - first + 1
        await send({"type": "http.response.start", "status": status,
                    "headers": self._head(status, length, extra)})
        if method == "HEAD" or length <= 0:
            await send({"type": "http.response.body", "body": b""})
            return
        await self._body(receive, send, first, length)

    async def _empty(self, send: Send, status: int, extra: Mapping[str, str]) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": self._head(status, 0, extra)})
        await send({"type": "http.response.body", "body": b""})

    async def _body(self, receive: Receive, send: Send, offset: int, length: int) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        fd = os.open(self.path, os.O_RDONLY)
        try:
            while length > 0 and not gone.is_set():
                chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, length), offset)
                if not chunk:
                    raise OSError(f"{self.path} is shorter than {self.size} bytes")
                offset += len(chunk)
                length -= len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": length > 0})
        finally:
            os.close(fd)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
