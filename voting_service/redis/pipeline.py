"""The hot path's Redis client: one pipelined connection per node, replies matched in order.

Every call issued during one event-loop turn goes out in one write per node, or in writes of
``MAX_BATCH`` calls when the turn brings more; Redis answers in order, so a
``hiredis.Reader`` hands each reply to the next waiting call. redis-py's pipeline, pool and
one task per batch cost a vote more than the rest of its Redis part (``docs/capacity.md``,
"The figures behind the code").

- Durability: each node's batch may end with the barrier (``barrier.Barrier``: ``WAITAOF``
  for the master's fsync and N replicas, ``WAIT`` first when replicas count, ``WAIT`` alone
  where WAITAOF is unknown) on the same connection, so it covers the batch's writes. The
  batch's replies are held until it answers; too few acknowledgements in time and every
  call of the batch fails ``Unavailable``: never a 200 for a vote a crash could lose.
- Deadlines: a call carries an absolute deadline; one sweep timer (not a timer per call)
  fails the calls past theirs with ``Unavailable``. A reply that comes later is dropped.
- NOSCRIPT (a restarted or flushed Redis): the call is sent again as ``EVAL``.
- A lost connection fails its in-flight calls (``Unavailable``: the client retries with the
  same ``vote_id``); the next call reconnects. A connection that stops answering is closed.
- Cluster: a slot map from ``CLUSTER SLOTS``, a connection per master; ``MOVED`` updates
  the slot at once and refreshes the whole map, ``ASK`` resends once with ``ASKING``; a
  node that cannot be reached refreshes the map too, so a failover is followed.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.crc import key_slot

from ..errors import Unavailable
from .barrier import Barrier, NotDurable
from .scripts import Script

log = logging.getLogger(__name__)

SLOTS = 16384
MAX_REDIRECTS = 5
RETRY_AFTER = 0.025
"""Seconds before a call refused by ``CLUSTERDOWN``/``TRYAGAIN``/``LOADING`` goes again."""
_TRANSIENT = ("CLUSTERDOWN", "TRYAGAIN", "LOADING")
BARRIER_MARGIN = 0.02
"""Seconds the barrier leaves of the batch's deadline for its reply to come back."""
SWEEP_EVERY = 0.05
"""Seconds between deadline sweeps (a call fails at most this late)."""
MAX_BATCH = 32
"""Calls a node's batch holds before it is written, without waiting for the loop turn to
end. A turn that reads a wave of 64 votes would otherwise hand Redis all of them only once
the server had parsed the last one, leaving Redis idle meanwhile and the server idle while
Redis ran them; in writes of a part the two overlap. Each write Redis reads is one event
loop turn of its own, and so one AOF fsync (``appendfsync always``) for the votes in it:
smaller writes mean more fsyncs. 32 gave the least server CPU a vote and the lowest p99 of
8 / 16 / 32 / 64 measured side by side (``docs/capacity.md``, "The figures behind the
code")."""

Handler = Callable[[Any], None]


class _Call:
    __slots__ = ("args", "asking", "deadline", "future", "redirects", "script", "slot")

    def __init__(
        self, args: tuple[Any, ...], script: Script | None, future: asyncio.Future[Any],
        deadline: float, slot: int,
    ) -> None:
        self.args = args
        self.script = script
        self.future = future
        self.deadline = deadline
        self.slot = slot
        self.redirects = 0
        self.asking = False


@functools.lru_cache(maxsize=65536)
def _slot_of_tag(tag: str) -> int:
    return int(key_slot(tag.encode()))


def slot_of(key: str) -> int:
    """The Cluster slot of a key (its hash tag's, when it has one, as Redis computes it)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return _slot_of_tag(key[start + 1:end])
    return int(key_slot(key.encode()))


class _Node(asyncio.Protocol):
    """One connection to one Redis node; calls queue here until the loop turn ends."""

    def __init__(self, owner: Pipeline, host: str, port: int) -> None:
        self.owner = owner
        self.host, self.port = host, port
        self.address = f"{host}:{port}"
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.handlers: collections.deque[Handler] = collections.deque()
        self.queued: list[_Call] = []
        self.connecting: asyncio.Task[None] | None = None
        self.last_progress = 0.0
        self.closed = False

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        handlers, self.handlers = self.handlers, collections.deque()
        if handlers:
            log.warning("redis %s: connection lost with %d replies due: %r",
                        self.address, len(handlers), exc)
        for handler in handlers:
            handler(_LOST)
        if self.owner.cluster and not self.closed:
            self.owner.refresh_soon()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        gets, handlers = self.reader.gets, self.handlers
        self.last_progress = time.monotonic()
        while True:
            try:
                reply = gets()
            except hiredis.ProtocolError as exc:  # a broken stream: start over
                log.error("redis %s: protocol error %r", self.address, exc)
                if self.transport is not None:
                    self.transport.abort()
                return
            if reply is False:
                return
            handlers.popleft()(reply)

    # -- sending -----------------------------------------------------------------------
    def enqueue(self, call: _Call) -> None:
        if not self.queued:
            self.owner.dirty.append(self)
        self.queued.append(call)

    def flush(self) -> None:
        batch, self.queued = self.queued, []
        if not batch:
            return
        if self.transport is None or self.transport.is_closing():
            self._connect_then(batch)
            return
        owner = self.owner
        out: list[bytes] = []
        handlers = self.handlers
        if not handlers:
            self.last_progress = time.monotonic()
        barrier = owner.barrier
        if barrier is None:
            for call in batch:
                if call.asking:
                    out.append(_ASKING)
                    handlers.append(_ignore)
                out.append(hiredis.pack_command(call.args))
                handlers.append(functools.partial(owner.settle, call, self))
        else:
            replies: list[Any] = []
            for call in batch:
                if call.asking:
                    out.append(_ASKING)
                    handlers.append(_ignore)
                out.append(hiredis.pack_command(call.args))
                handlers.append(replies.append)
            # on this very connection, after the batch: it covers every write before it
            budget = min(c.deadline for c in batch) - time.monotonic() - BARRIER_MARGIN
            commands = barrier.commands(max(budget, 0.001))
            acks: list[Any] = []
            for command in commands[:-1]:
                out.append(hiredis.pack_command(command))
                handlers.append(acks.append)
            out.append(hiredis.pack_command(commands[-1]))
            handlers.append(functools.partial(owner.settle_batch, batch, replies, acks, self))
        assert self.transport is not None
        self.transport.write(b"".join(out))

    def _connect_then(self, batch: list[_Call]) -> None:
        """Queue the batch behind a (re)connection; one connection attempt at a time."""
        self.queued = batch + self.queued
        if self.connecting is None:
            self.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        owner = self.owner
        try:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(owner.timeout):
                await loop.create_connection(lambda: self, self.host, self.port, ssl=owner.ssl)
                for command in owner.hello:
                    reply = await self._raw(command)
                    if isinstance(reply, Exception):
                        raise OSError(f"redis {self.address} refused {command[0]}: {reply}")
        except (OSError, TimeoutError) as exc:
            log.warning("redis %s: cannot connect: %r", self.address, exc)
            if self.transport is not None:
                self.transport.abort()
            queued, self.queued = self.queued, []
            for call in queued:
                owner.fail(call)
            if owner.cluster:
                owner.refresh_soon()
            return
        finally:
            self.connecting = None
        if self.queued:
            self.flush()

    def _raw(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send one command right away (connection set-up, slot map)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        if not self.handlers:
            self.last_progress = time.monotonic()

        def answer(reply: Any) -> None:
            if not future.done():
                future.set_result(reply)

        self.handlers.append(answer)
        self.transport.write(hiredis.pack_command(args))
        return future

    def stalled(self, now: float, limit: float) -> bool:
        return bool(self.handlers) and now - self.last_progress > limit

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Lost(Exception):
    """Stands in for the reply of a call whose connection dropped."""


_LOST = _Lost()
_COUNTS = tuple(str(n) for n in range(64))
"""Key counts as ``EVALSHA`` gets them, converted once (hiredis packs strings cheaper)."""
_ASKING = hiredis.pack_command(("ASKING",))


def _ignore(reply: Any) -> None:
    return None


class Pipeline:
    """Script calls and commands of the hot path; see the module docstring."""

    def __init__(
        self, url: str, *, cluster: bool = False, timeout: float = 0.8,
        barrier: Barrier | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis:// URL: {parts.scheme}://…")
        self.cluster = cluster
        self.timeout = timeout
        self.barrier = barrier if barrier is not None and barrier.needed else None
        self.ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        hello: list[tuple[Any, ...]] = []
        if parts.password is not None:
            auth: tuple[Any, ...] = (unquote(parts.password),)
            if parts.username:
                auth = (unquote(parts.username), *auth)
            hello.append(("AUTH", *auth))
        db = parts.path.strip("/")
        if db and db != "0" and not cluster:
            hello.append(("SELECT", int(db)))
        self.hello = hello
        self._seed_address = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
        self.nodes: dict[str, _Node] = {}
        self.slots: list[str] = []
        """Cluster: the address of each slot's master (empty until the map is read)."""
        self.dirty: list[_Node] = []
        self._flush_scheduled = False
        self._deadlines: collections.deque[tuple[float, _Call]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._map_ready: asyncio.Future[None] | None = None
        self.stall_limit = max(2 * timeout, 1.0)

    # -- public ------------------------------------------------------------------------
    def call(
        self, script: Script, keys: Sequence[str], args: Sequence[Any],
        deadline: float | None = None,
    ) -> asyncio.Future[Any]:
        """``EVALSHA`` of a script (``EVAL`` after a NOSCRIPT); the future has its reply."""
        n = len(keys)
        return self.submit(("EVALSHA", script.sha, _COUNTS[n] if n < 64 else n, *keys, *args),
                           keys[0] if keys else None, deadline, script)

    def command(
        self, *args: Any, key: str | None = None, deadline: float | None = None
    ) -> asyncio.Future[Any]:
        """Any other command, routed by ``key`` in a Cluster."""
        return self.submit(tuple(args), key, deadline, None)

    def submit(
        self, args: tuple[Any, ...], key: str | None, deadline: float | None,
        script: Script | None,
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        call = _Call(args, script, future, deadline, slot_of(key) if key and self.cluster else 0)
        self._deadlines.append((deadline, call))
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)
        self.route(call)
        return future

    async def start(self) -> None:
        """Connect (and read the slot map) now rather than on the first vote."""
        if self.cluster:
            await self._ensure_map()
        else:
            await self.command("PING")

    async def close(self) -> None:
        tasks = [t for t in (self._refreshing, self._map_ready) if t is not None]
        tasks += [n.connecting for n in self.nodes.values() if n.connecting is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for node in self.nodes.values():
            node.close()
        for _, call in self._deadlines:
            self.fail(call)
        self._deadlines.clear()

    # -- routing -----------------------------------------------------------------------
    def route(self, call: _Call, address: str | None = None) -> None:
        if address is None:
            if self.cluster:
                if not self.slots:
                    self._after_map(call)
                    return
                address = self.slots[call.slot]
            else:
                address = self._seed_address
        node = self.nodes.get(address)
        if node is None:
            host, _, port = address.rpartition(":")
            node = self.nodes[address] = _Node(self, host, int(port))
        node.enqueue(call)
        if len(node.queued) >= MAX_BATCH:
            node.flush()  # the turn's later calls make the next batch (``dirty`` may list
            # the node twice then: its second flush finds nothing queued)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self.dirty = self.dirty, []
        for node in dirty:
            node.flush()

    # -- replies -----------------------------------------------------------------------
    def settle(self, call: _Call, node: _Node, reply: Any) -> None:
        future = call.future
        if future.done():
            return
        if isinstance(reply, hiredis.ReplyError):
            self._on_error(call, node, reply)
        elif reply is _LOST:
            future.set_exception(Unavailable())
        else:
            future.set_result(reply)

    def settle_batch(
        self, batch: list[_Call], replies: list[Any], acks: list[Any], node: _Node,
        last_ack: Any,
    ) -> None:
        assert self.barrier is not None
        acks.append(last_ack)
        if any(a is _LOST for a in acks) or len(replies) != len(batch):
            for call in batch:
                self.fail(call)
            return
        try:
            self.barrier.acknowledged(acks)
        except NotDurable as exc:
            log.warning("redis %s: %s: %d calls refused", node.address, exc, len(batch))
            if self.cluster:
                # e.g. a killed master back as a replica of its successor: its barrier says
                # "cannot be used with replica instances" and its writes answer MOVED
                self.refresh_soon()
            for call, reply in zip(batch, replies, strict=True):
                if isinstance(reply, hiredis.ReplyError):
                    self.settle(call, node, reply)  # refused unwritten: redirect or retry
                else:
                    self.fail(call)
            return
        for call, reply in zip(batch, replies, strict=True):
            self.settle(call, node, reply)

    def _on_error(self, call: _Call, node: _Node, error: hiredis.ReplyError) -> None:
        message = str(error)
        if message.startswith("NOSCRIPT") and call.script is not None:
            call.args = ("EVAL", call.script.source, *call.args[2:])
            call.script = None
            self.route(call, node.address)
            return
        if message.startswith(("MOVED ", "ASK ")) and call.redirects < MAX_REDIRECTS:
            kind, slot, address = [*message.split(" "), "", ""][:3]
            call.redirects += 1
            if kind == "MOVED":
                if self.slots and slot.isdigit():
                    self.slots[int(slot)] = address
                self.refresh_soon()
                call.asking = False
            else:
                call.asking = True
            self.route(call, address)
            return
        if message.startswith(_TRANSIENT) and time.monotonic() + RETRY_AFTER < call.deadline:
            # a cluster settling after a failover, a slot half moved, a node loading its
            # AOF: try again shortly, within the call's deadline
            if message.startswith("CLUSTERDOWN"):
                self.refresh_soon()
            asyncio.get_running_loop().call_later(RETRY_AFTER, self._retry, call)
            return
        log.warning("redis %s: %s failed: %s", node.address, call.args[0], message)
        call.future.set_exception(Unavailable())

    def _retry(self, call: _Call) -> None:
        if not call.future.done():
            self.route(call)

    def fail(self, call: _Call) -> None:
        if not call.future.done():
            call.future.set_exception(Unavailable())

    def _sweep(self) -> None:
        now = time.monotonic()
        deadlines = self._deadlines
        while deadlines:
            deadline, call = deadlines[0]
            if not call.future.done():
                if deadline > now:
                    break
                call.future.set_exception(Unavailable())
            deadlines.popleft()
        for node in list(self.nodes.values()):
            if node.stalled(now, self.stall_limit) and node.transport is not None:
                log.warning("redis %s: no reply for %.1f s, reconnecting",
                            node.address, now - node.last_progress)
                node.transport.abort()
        if deadlines:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)
        else:
            self._sweeper = None

    # -- cluster slot map --------------------------------------------------------------
    def _after_map(self, call: _Call) -> None:
        ready = self._ensure_map_future()

        def go(_: asyncio.Future[None]) -> None:
            if call.future.done():
                return
            if self.slots:
                self.route(call)
            else:
                self.fail(call)

        ready.add_done_callback(go)

    def _ensure_map_future(self) -> asyncio.Future[None]:
        if self._map_ready is None or (self._map_ready.done() and not self.slots):
            self._map_ready = asyncio.ensure_future(self._load_map())
        return self._map_ready

    async def _ensure_map(self) -> None:
        await self._ensure_map_future()
        if not self.slots:
            raise Unavailable("the Redis Cluster slot map is unavailable")

    def refresh_soon(self) -> None:
        """Re-read the slot map in the background (one refresh at a time)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._load_map())

    async def _load_map(self) -> None:
        candidates = list(dict.fromkeys([*self.nodes, self._seed_address]))
        for address in candidates:
            try:
                reply = await self._ask(address, ("CLUSTER", "SLOTS"))
                fresh = _parse_slots(reply, address)
            except (Unavailable, ValueError, TypeError, IndexError) as exc:
                log.info("redis %s: slot map not read: %r", address, exc)
                continue
            if fresh:
                self.slots = fresh
                for gone in set(self.nodes) - set(fresh):
                    if not self.nodes[gone].handlers and not self.nodes[gone].queued:
                        self.nodes.pop(gone).close()
                return
        log.warning("redis cluster: no node gave a slot map (%d tried)", len(candidates))

    async def _ask(self, address: str, args: tuple[Any, ...]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call = _Call(args, None, future, time.monotonic() + self.timeout, 0)
        self._deadlines.append((call.deadline, call))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)
        self.route(call, address)
        return await future


def _parse_slots(reply: Any, asked: str) -> list[str]:
    """``CLUSTER SLOTS`` → the master address of every slot ([] if any slot is unserved)."""
    table = [""] * SLOTS
    asked_host = asked.rpartition(":")[0]
    for entry in reply:
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        host = str(master[0]) or asked_host
        address = f"{host}:{int(master[1])}"
        for slot in range(start, end + 1):
            table[slot] = address
    return table if all(table) else []


__all__ = ["Pipeline", "slot_of"]
