"""The long-lived parts one worker shares between requests, opened once by the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import asyncpg
from starlette.requests import Request

from .errors import Unavailable
from .fraud.blocklist import NetworkBlocks
from .fraud.sms import ConsoleSender, Sender
from .fraud.sms_budget import Budget
from .ledger.frozen import Frozen
from .ledger.health import Health
from .redis.pipeline import Pipeline
from .redis.store import AnyRedis
from .settings import Settings
from .vote.addresses import ClientAddresses
from .vote.identity import VoterTokens
from .vote.outcomes import Outcomes
from .vote.partner import PartnerTokens
from .vote.registry import Registry
from .vote.timeline import Timeline

PoolBudget = Literal["public", "admin", "health"]
"""Which of a worker's PostgreSQL pools a request draws on."""
BUDGETS: tuple[PoolBudget, ...] = ("public", "admin", "health")


@dataclass
class Services:
    settings: Settings
    redis: AnyRedis
    pipeline: Pipeline
    """The vote path's Redis client: script calls batched per loop turn per node."""
    registry: Registry
    tokens: VoterTokens
    pool: asyncpg.Pool | None = None
    """The admin budget's pool (also ``pools["admin"]``)."""
    pools: dict[str, asyncpg.Pool] = field(default_factory=dict)
    """One pool per budget (``BUDGETS``), so that one class of requests holding all of its
    connections never makes another wait; without an entry a budget uses ``pool``."""
    ip_blocks: NetworkBlocks = field(default_factory=NetworkBlocks)
    """Blocked IP networks, reloaded every second (``blocklist``)."""
    sms: Sender = field(default_factory=ConsoleSender)
    sms_budget: Budget | None = None
    """The SMS budget every send takes from (``VOTING_SMS_*_BUDGET``)."""
    outcomes: Outcomes = field(default_factory=Outcomes)
    """Observers of every vote's outcome (metrics, the ops timeline)."""
    timeline: Timeline | None = None
    """Per-second outcome counts of this worker, shipped to Redis for the ops console."""
    health: Health = field(default_factory=Health.unknown)
    """Redis, PostgreSQL, backlog, lag and drift, refreshed in the background (``health``)."""
    partners: PartnerTokens = field(default_factory=PartnerTokens)
    """Verified partner JWTs, remembered until they lapse or their channel's secret changes."""
    addresses: ClientAddresses = field(init=False)
    """The client address of a request, by ``VOTING_TRUSTED_PROXIES``."""
    frozen: Frozen = field(init=False)
    """Published results and ledger files, read without a connection held for a client."""

    def __post_init__(self) -> None:
        self.addresses = ClientAddresses(self.settings.trusted_proxies)
        self.frozen = Frozen(self.settings.ledger_cache, lambda: self.db("public"))

    @asynccontextmanager
    async def db(self, budget: PoolBudget = "admin") -> AsyncIterator[asyncpg.Connection]:
        """A connection of ``budget``'s pool; an unreachable database, or a budget whose
        connections stay taken for its acquire timeout, is a 503, never a hang."""
        pool = self.pools.get(budget, self.pool)
        if pool is None:
            raise Unavailable("the database is not configured")
        wait = (self.settings.db_admin_acquire_timeout if budget == "admin"
                else self.settings.db_acquire_timeout)
        try:
            conn = await pool.acquire(timeout=wait)
        except TimeoutError as exc:
            raise Unavailable(f"no database connection free for {budget} requests",
                              headers={"Retry-After": "1"}) from exc
        except (OSError, asyncpg.PostgresError) as exc:
            raise Unavailable("the database is unreachable") from exc
        try:
            yield conn
        finally:
            await pool.release(conn)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
