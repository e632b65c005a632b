"""The vote path's Redis client against real servers: pipelining, NOSCRIPT, the durability
barrier, deadlines, reconnection after a restart, and MOVED/ASK while a slot migrates."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import Backend
from voting_service import embedded
from voting_service.errors import Unavailable
from voting_service.redis import scripts, store
from voting_service.redis.barrier import Barrier
from voting_service.redis.pipeline import Pipeline, slot_of
from voting_service.settings import Settings


def counting_script(tag: str) -> scripts.Script:
    """A script with its own SHA, so each test starts with Redis not knowing it."""
    source = f"-- {tag}\nreturn {{redis.call('INCR', KEYS[1]), ARGV[1]}}"
    return scripts.Script(tag, source, hashlib.sha1(source.encode()).hexdigest())


@pytest.fixture
async def pipeline(backend: Backend, redis: store.AnyRedis) -> AsyncIterator[Pipeline]:
    p = Pipeline(backend.url, cluster=backend.cluster, timeout=2.0)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def test_calls_of_one_loop_turn_go_out_in_batches_and_answer_in_order(
    pipeline: Pipeline, redis: store.AnyRedis
) -> None:
    script = counting_script("in-order")
    keys = [f"{{pipe:{i % 7}}}n" for i in range(300)]
    futures = [pipeline.call(script, [k], [str(i)]) for i, k in enumerate(keys)]
    replies = await asyncio.gather(*futures)
    seen: dict[str, int] = {}
    for i, (key, (count, echo)) in enumerate(zip(keys, replies, strict=True)):
        seen[key] = seen.get(key, 0) + 1
        assert echo == str(i), "each reply goes to the call that asked"
        assert count == seen[key], "calls on one key ran in the order they were made"
    for key, n in seen.items():
        assert int(await redis.get(key) or 0) == n


async def test_noscript_falls_back_to_eval_and_the_sha_works_after(pipeline: Pipeline) -> None:
    script = counting_script("noscript")
    key = "{pipe:ns}k"
    assert await pipeline.call(script, [key], ["a"]) == [1, "a"]
    assert await pipeline.command("SCRIPT", "FLUSH", key=key) == "OK"  # on the key's node
    assert await pipeline.call(script, [key], ["b"]) == [2, "b"]
    assert await pipeline.call(script, [key], ["c"]) == [3, "c"]


async def test_a_script_error_is_unavailable_not_a_hang(pipeline: Pipeline) -> None:
    broken = scripts.Script("broken", "return redis.call('NOPE')", "")
    with pytest.raises(Unavailable):
        await pipeline.call(broken, ["{pipe:x}k"], [])
    assert await pipeline.command("PING", key="{pipe:x}k") == "PONG", "the stream stays usable"


async def test_reconnects_after_a_redis_restart(tmp_path: Path) -> None:
    server = embedded.ValkeyServer(tmp_path / "v").start()
    p = Pipeline(server.url, timeout=0.5)
    script = counting_script("restart")
    try:
        assert (await p.call(script, ["k"], ["x"]))[0] == 1
        server.kill()
        with pytest.raises(Unavailable):
            await p.call(script, ["k"], ["x"])
        server.start()  # same data dir: the AOF has the first INCR; scripts are gone
        assert (await p.call(script, ["k"], ["x"]))[0] == 2
    finally:
        await p.close()
        server.stop()


async def test_a_paused_redis_fails_calls_by_their_deadline_then_recovers(
    tmp_path: Path,
) -> None:
    server = embedded.ValkeyServer(tmp_path / "v").start()
    p = Pipeline(server.url, timeout=0.3)
    try:
        assert await p.command("PING") == "PONG"
        server.signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 0.2
            with pytest.raises(Unavailable):
                await p.command("INCR", "late", deadline=deadline)
        finally:
            server.signal(signal.SIGCONT)
        # the late INCR may still land (the client retries with the same vote_id); the
        # stream stays in step: the next reply is the next call's own
        assert await p.command("SET", "after", "1") == "OK"
        assert await p.command("GET", "after") == "1"
    finally:
        await p.close()
        server.stop()


async def test_barrier_holds_replies_until_fsync_and_refuses_without_enough_replicas(
    tmp_path: Path,
) -> None:
    server = embedded.ValkeyServer(tmp_path / "v", appendfsync="everysec").start()
    fsynced = Pipeline(server.url, timeout=0.5, barrier=Barrier(local=True))
    replicated = Pipeline(server.url, timeout=0.5, barrier=Barrier(local=True, replicas=1))
    old_server = Pipeline(server.url, timeout=0.5, barrier=Barrier(replicas=1, waitaof=False))
    try:
        replies = await asyncio.gather(*(fsynced.command("INCR", "n") for _ in range(50)))
        assert sorted(replies) == list(range(1, 51))
        # no replica holds the write: every call of the batch answers Unavailable (the vote
        # is a 503, retried with its vote_id), never a success a failover could lose
        results = await asyncio.gather(*(replicated.command("INCR", "n") for _ in range(5)),
                                       return_exceptions=True)
        assert all(isinstance(r, Unavailable) for r in results)
        with pytest.raises(Unavailable):
            await old_server.command("INCR", "n")
    finally:
        for p in (fsynced, replicated, old_server):
            await p.close()
        server.stop()


async def test_durability_check_gives_the_barrier(tmp_path: Path) -> None:
    from voting_service.ledger import durability

    server = embedded.ValkeyServer(tmp_path / "v", appendfsync="everysec").start()
    client = store.connect(Settings(redis_url=server.url))
    try:
        found = await durability.check(client)
        assert found.barrier == Barrier(local=True)
        p = store.pipeline(Settings(redis_url=server.url), found.barrier)
        try:
            assert p.barrier == Barrier(local=True)
            assert await p.command("INCR", "n") == 1
        finally:
            await p.close()
    finally:
        await client.aclose()
        server.stop()


# --- Cluster: MOVED and ASK while a slot migrates ----------------------------------------


async def _node_clients(seed: str) -> dict[str, Redis]:
    first = Redis.from_url(seed, decode_responses=True)
    try:
        nodes = await first.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    finally:
        await first.aclose()
    found = {}
    for line in str(nodes).splitlines():
        node_id, address = line.split()[:2]
        host, port = address.split("@")[0].rsplit(":", 1)
        found[node_id] = Redis(host=host, port=int(port), decode_responses=True)
    return found


async def _owner(clients: dict[str, Redis], slot: int) -> str:
    client = next(iter(clients.values()))
    for start, end, master, *_ in await client.execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER", "SLOTS"):
        if int(start) <= slot <= int(end):
            for node_id, c in clients.items():
                if c.connection_pool.connection_kwargs["port"] == int(master[1]):
                    return node_id
    raise AssertionError(f"slot {slot} has no owner")


async def test_cluster_follows_ask_then_moved_while_a_slot_migrates(
    cluster_url: str, tmp_path: Path
) -> None:
    key = "{pipe:migrating}k"
    slot = slot_of(key)
    clients = await _node_clients(cluster_url)
    source = await _owner(clients, slot)
    target = next(n for n in clients if n != source)
    p = Pipeline(cluster_url, cluster=True, timeout=2.0)
    script = counting_script("migrating")
    try:
        await clients[source].delete(key)
        await p.start()
        assert (await p.call(script, [key], ["before"]))[0] == 1
        await clients[source].delete(key)  # absent keys of a migrating slot answer ASK

        await clients[target].execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER", "SETSLOT", slot, "IMPORTING", source)
        await clients[source].execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER", "SETSLOT", slot, "MIGRATING", target)
        assert (await p.call(script, [key], ["ask"]))[0] == 1, "ASK: ASKING + the call"
        async with clients[target].pipeline(transaction=False) as pipe:
            pipe.execute_command("ASKING")
            pipe.get(key)
            assert (await pipe.execute())[1] == "1", "the write landed on the importing node"
        source_port = clients[source].connection_pool.connection_kwargs["port"]
        assert p.slots[slot].endswith(f":{source_port}"), "ASK leaves the slot map alone"

        for c in clients.values():
            await c.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "SETSLOT", slot, "NODE", target)
        assert (await p.call(script, [key], ["moved"]))[0] == 2, "MOVED: resent to the owner"
        target_port = clients[target].connection_pool.connection_kwargs["port"]
        assert p.slots[slot].endswith(f":{target_port}"), "MOVED updates the slot map"
        assert (await p.call(script, [key], ["direct"]))[0] == 3
    finally:  # give the slot back, empty, whatever state the test left it in
        async with clients[target].pipeline(transaction=False) as pipe:
            pipe.execute_command("ASKING")
            pipe.delete(key)
            await pipe.execute(raise_on_error=False)
        for c in clients.values():
            await c.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "SETSLOT", slot, "NODE", source)
        await p.close()
        for c in clients.values():
            await c.aclose()


async def test_cluster_follows_a_failover_after_its_master_dies(tmp_path: Path) -> None:
    cluster = embedded.ValkeyCluster(tmp_path / "c", replicas=1, node_timeout_ms=1000).start()
    key = "{pipe:failover}k"
    slot = slot_of(key)
    acked = Pipeline(cluster.url, cluster=True, timeout=1.0, barrier=Barrier(replicas=1))
    # no replica acks after the failover: the promoted master has none left
    p = Pipeline(cluster.url, cluster=True, timeout=1.0)
    script = counting_script("failover")
    try:
        assert (await acked.call(script, [key], ["a"]))[0] == 1, "a replica holds it too"
        await acked.close()
        await p.start()
        old = p.slots[slot]
        master = next(n for n in cluster.nodes if old.endswith(f":{n.port}"))
        master.kill()
        deadline = time.monotonic() + 60
        while True:  # 503s while the cluster notices and promotes the replica
            try:
                count = (await p.call(script, [key], ["b"]))[0]
                break
            except Unavailable:
                assert time.monotonic() < deadline, "the failover was not followed"
                await asyncio.sleep(0.2)
        assert count == 2, "the replica had the acknowledged write"
        assert p.slots[slot] != old, "the slot map names the new master"
    finally:
        await acked.close()
        await p.close()
        cluster.stop()
