"""Failed-credential throttles: per address, per network and per staff account.

An attempt is reserved (checked against the limits and counted, in one Lua call:
``reserve_attempt.lua``) before its credential is checked, and given back only when the
credential was right (``refund_attempt.lua``). However many requests race, at most the
limit of credentials are checked per window: checking first and counting after had let
64 of 800 simultaneous wrong sign-ins be checked against a limit of 5.

An address and its network share one hash slot (one call); an account is a slot of its
own (a second call), so a guesser spread over many networks still locks the account.
While Redis is unreachable each worker applies the same limits in memory (one
synchronous step, so atomic too): a Redis outage does not open the door.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from ..errors import TooManyAttempts
from ..redis import keys, scripts
from ..redis.store import AnyRedis
from ..vote import identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    per_address: int = 5
    per_network: int = 25
    per_account: int = 10
    window: int = 900
    """Seconds; a window starts with its first attempt."""


@dataclass(frozen=True)
class Reservation:
    """Attempts counted for one credential check, to give back if it was right."""

    groups: tuple[tuple[str, ...], ...]
    left: int
    """Attempts left in the tightest window after this one."""


IN_FLIGHT = 8
"""Throttle calls a worker has in flight at once: a burst of hundreds of attempts queues
here instead of exhausting the Redis client's connections (which would have sent the
count to the in-memory fallback and let more attempts through)."""


@dataclass
class AuthThrottle:
    limits: Limits = field(default_factory=Limits)
    _local: dict[str, tuple[int, float]] = field(default_factory=dict)
    _gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT))

    def address_keys(self, kind: str, ip: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        prefix, network = identity.ip_prefixes(ip)
        return ((keys.auth_address(kind, network, prefix), keys.auth_network(kind, network)),
                (self.limits.per_address, self.limits.per_network))

    def account_keys(self, name: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        return (keys.auth_account(name),), (self.limits.per_account,)

    async def reserve(self, redis: AnyRedis,
                      *groups: tuple[tuple[str, ...], tuple[int, ...]]) -> Reservation:
        """Count one attempt in every group, or raise ``TooManyAttempts`` (429 with
        ``Retry-After``) at the first group that is full; groups reserved before it keep
        their count (the attempt was made)."""
        left = -1
        taken: list[tuple[str, ...]] = []
        for group_keys, limits in groups:
            ok, value = await self._reserve(redis, group_keys, limits)
            if not ok:
                raise TooManyAttempts(
                    f"too many failed attempts; try again in {value} s",
                    headers={"Retry-After": str(value)}, extra={"retry_after": value})
            taken.append(group_keys)
            left = value if left < 0 else min(left, value)
        return Reservation(tuple(taken), max(0, left))

    async def refund(self, redis: AnyRedis, reservation: Reservation) -> None:
        for group_keys in reservation.groups:
            try:
                async with self._gate:
                    await scripts.load("refund_attempt")(redis, list(group_keys), [])
            except (RedisError, OSError):
                self._local_refund(group_keys)

    async def _reserve(self, redis: AnyRedis, group_keys: tuple[str, ...],
                       limits: tuple[int, ...]) -> tuple[bool, int]:
        try:
            async with self._gate:
                ok, value = await scripts.load("reserve_attempt")(
                    redis, list(group_keys), [self.limits.window, *limits])
            return bool(ok), max(int(value), 1 if not ok else 0)
        except (RedisError, OSError) as exc:
            log.warning("credential throttle counts in memory (Redis: %r)", exc)
            return self._local_reserve(group_keys, limits)

    def _local_reserve(self, group_keys: tuple[str, ...],
                       limits: tuple[int, ...]) -> tuple[bool, int]:
        now = time.time()
        if len(self._local) > 10_000:
            self._local = {k: v for k, v in self._local.items() if v[1] > now}
        counts = [self._local_count(k, now) for k in group_keys]
        for (n, ends), limit in zip(counts, limits, strict=True):
            if n >= limit:
                return False, max(1, int(ends - now))
        left = -1
        for key, (n, ends), limit in zip(group_keys, counts, limits, strict=True):
            self._local[key] = (n + 1, ends or now + self.limits.window)
            left = limit - n - 1 if left < 0 else min(left, limit - n - 1)
        return True, left

    def _local_refund(self, group_keys: tuple[str, ...]) -> None:
        now = time.time()
        for key in group_keys:
            n, ends = self._local_count(key, now)
            if n > 0:
                self._local[key] = (n - 1, ends)

    def _local_count(self, key: str, now: float) -> tuple[int, float]:
        n, ends = self._local.get(key, (0, 0.0))
        return (0, 0.0) if ends <= now else (n, ends)
