"""One write per fixed-length answer (``web.server.protocol._OneWrite``), over a real socket.

uvicorn writes a response's head and body separately; the service's protocol holds the head
of a fixed-length answer so both leave in one write. These tests run the protocol on a real
listening socket with a plain asyncio client and record what reaches the transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from voting_service.web.server.protocol import bounded_protocol

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Recorder:
    """The real transport, with every write kept."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def _serve(app: Any) -> tuple[asyncio.Server, int, list[bytes]]:
    config = Config(app=app, lifespan="off", http=bounded_protocol(5.0))
    config.load()
    state = ServerState()
    writes: list[bytes] = []
    protocol_class = config.http_protocol_class

    class Recording(protocol_class):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(Recorder(transport, writes))

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Recording(config=config, server_state=state, app_state={}), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port, writes


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head, await reader.readexactly(length)


async def fixed(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await receive()
    body = b'{"ok":true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def test_a_fixed_length_answer_leaves_in_one_write() -> None:
    server, port, writes = await _serve(fixed)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):  # and again on the same kept-alive connection
            writer.write(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}")
            head, body = await _read_response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert body == b'{"ok":true}'
        assert len(writes) == 3
        assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b'{"ok":true}')
                   for w in writes)
        writer.close()
    finally:
        server.close()


async def test_head_requests_and_pipelined_requests_get_every_answer() -> None:
    server, port, writes = await _serve(fixed)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HEAD /x HTTP/1.1\r\nhost: t\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")  # the head alone: it was not held back
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length: 11" in head
        writes.clear()
        request = b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}"
        writer.write(request * 3)  # pipelined: answered in order, each in one write
        for _ in range(3):
            _, body = await _read_response(reader)
            assert body == b'{"ok":true}'
        assert len(writes) == 3
        writer.close()
    finally:
        server.close()


async def test_a_streamed_answer_sends_its_head_before_its_body() -> None:
    release = asyncio.Event()

    async def streamed(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})

    server, port, writes = await _serve(streamed)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /live HTTP/1.1\r\nhost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"transfer-encoding: chunked" in head
        release.set()
        chunk = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        assert b"data: 1" in chunk
        assert len(writes) == 2
        writer.close()
    finally:
        server.close()


async def test_an_app_failing_after_its_head_closes_the_connection() -> None:
    async def broken(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        raise RuntimeError("boom")

    server, port, _ = await _serve(broken)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        got = await asyncio.wait_for(reader.read(), 5)  # read to EOF: the server closed
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\n")
        writer.close()
    finally:
        server.close()
