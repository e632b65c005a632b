"""``ip_limit.lua`` on its own, against real servers: one hash holds every level of a
network, a new day counts from zero, a peek writes nothing, a refusal counts nowhere. The
script gets ``now`` as its optional last argument, so no test waits on a clock."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from voting_service.redis import keys, scripts, store

NET = "198.51.100.0/24"
DAY1, DAY2 = 1_900_000_000, 1_900_086_400
"""Two days' counter expiries (unix s), which also name the days."""
NOW = 1_899_900_000_000
"""Unix ms, a while before DAY1 ends."""


async def limit(redis: store.AnyRedis, day: int, levels: list[tuple[str, int, int]], now: int,
                peek: bool = False) -> list[int]:
    (field, per_min, per_day), *network = levels
    spec = scripts.levels_arg(field, per_min, per_day,
                              (network[0][1], network[0][2]) if network else None)
    mode = scripts.LimitMode.PEEK if peek else scripts.LimitMode.COUNT
    args: list[Any] = [day, mode.value, spec, now]
    reply = await scripts.ip_limit()(redis, [keys.limits("t", NET)], args)
    return [int(x) for x in reply]


async def test_levels_count_per_day_in_one_hash_and_a_new_day_starts_from_zero(
    redis: store.AnyRedis,
) -> None:
    host = keys.level_field("198.51.100.7/32", NET)
    levels = [(host, 0, 3), ("", 0, 5)]
    for n in (1, 2, 3):
        assert await limit(redis, DAY1, levels, NOW + n) == [1, 0, 0, n, 0, n]
    assert (await limit(redis, DAY1, levels, NOW + 4))[:2] == [0, -1]  # the address's cap
    stored = await redis.hgetall(keys.limits("t", NET))
    assert stored == {host: f"{DAY1}|3|0", "": f"{DAY1}|3|0"}  # one field a level
    assert await redis.expiretime(keys.limits("t", NET)) == DAY1
    # the next day: both levels count from 0 again, and the hash lives until that day's end
    assert await limit(redis, DAY2, levels, NOW + 86_400_000) == [1, 0, 0, 1, 0, 1]
    assert await redis.expiretime(keys.limits("t", NET)) == DAY2


async def test_a_refused_vote_counts_at_no_level_and_a_peek_writes_nothing(
    redis: store.AnyRedis,
) -> None:
    a, b = keys.level_field("198.51.100.1/32", NET), keys.level_field("198.51.100.2/32", NET)
    net = ("", 60, 2)  # two a minute (a burst of 60), two a day
    assert (await limit(redis, DAY1, [(a, 60, 10), net], NOW))[0] == 1
    assert (await limit(redis, DAY1, [(b, 60, 10), net], NOW))[0] == 1
    before = await redis.hgetall(keys.limits("t", NET))
    refused = await limit(redis, DAY1, [(a, 60, 10), net], NOW)
    assert refused[:2] == [0, -1] and refused[3::2] == [0, 0]
    peeked = await limit(redis, DAY1, [(b, 60, 10), ("", 60, 5)], NOW, peek=True)
    assert peeked[0] == 1 and peeked[3::2] == [2, 3]  # as if one more came
    assert await redis.hgetall(keys.limits("t", NET)) == before


async def test_the_minute_limit_is_a_gcra_on_the_stored_time(redis: store.AnyRedis) -> None:
    levels = [("", 2, 0)]  # two a minute: one every 30 s, a burst of two
    assert (await limit(redis, DAY1, levels, NOW))[0] == 1
    assert (await limit(redis, DAY1, levels, NOW))[0] == 1
    refused = await limit(redis, DAY1, levels, NOW + 1000)
    assert refused[:2] == [0, 29_000]  # the next place frees 30 s after the first vote
    assert (await limit(redis, DAY1, levels, NOW + 30_000))[0] == 1
    assert await redis.hget(keys.limits("t", NET), "") == f"{DAY1}|3|{NOW + 90_000}"


async def test_levels_come_packed_in_one_argument_and_a_malformed_one_is_refused(
    redis: store.AnyRedis,
) -> None:
    assert scripts.levels_arg("7:", 60, 500) == "7:|60|500"
    assert scripts.levels_arg("7:", 60, 500, (600, 5000)) == "7:|60|500|600|5000"
    ok = await scripts.ip_limit()(redis, [keys.limits("t", NET)], [DAY1, "0", "7:|0|4", NOW])
    assert [int(x) for x in ok] == [1, 0, 0, 1]
    assert await redis.hgetall(keys.limits("t", NET)) == {"7:": f"{DAY1}|1|0"}
    for bad in ("7:|60", "7:|60|500|600", "7:|x|500", ""):
        try:
            await scripts.ip_limit()(redis, [keys.limits("t", NET)], [DAY1, "0", bad, NOW])
        except ResponseError as exc:
            assert "one or two levels" in str(exc), bad
        else:
            raise AssertionError(f"{bad!r} was taken")
    assert await redis.hgetall(keys.limits("t", NET)) == {"7:": f"{DAY1}|1|0"}  # unchanged


async def test_a_caller_that_needs_no_loads_gets_1_or_the_refusal(redis: store.AnyRedis) -> None:
    """Mode "2" counts as "0" does, but answers an allowed vote with 1, not a table."""
    assert scripts.LimitMode.COUNT_ONLY.value == "2"
    net = keys.limits("t", NET)
    spec = scripts.levels_arg("", 0, 2)
    assert await scripts.ip_limit()(redis, [net], [DAY1, "2", spec, NOW]) == 1
    assert await scripts.ip_limit()(redis, [net], [DAY1, "2", spec, NOW + 1]) == 1
    refused = await scripts.ip_limit()(redis, [net], [DAY1, "2", spec, NOW + 2])
    assert [int(x) for x in refused] == [0, -1, 1000, 0]
    assert await redis.hget(net, "") == f"{DAY1}|2|0"  # counted twice, the refusal not
