"""The long-lived parts one worker shares between requests, opened once by the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
from starlette.requests import Request

from .errors import Unavailable
from .fraud.blocklist import NetworkBlocks
from .fraud.sms import ConsoleSender, Sender
from .fraud.sms_budget import Budget
from .ledger.health import Health
from .settings import Settings
from .vote.addresses import ClientAddresses
from .vote.identity import VoterTokens
from .vote.outcomes import Outcomes
from .vote.partner import PartnerTokens
from .vote.pipeline import Pipeline
from .vote.registry import Registry
from .vote.store import AnyRedis
from .vote.timeline import Timeline


@dataclass
class Services:
    settings: Settings
    redis: AnyRedis
    batcher: Pipeline
    """The vote path's Redis client: script calls batched per loop turn per node."""
    registry: Registry
    tokens: VoterTokens
    pool: asyncpg.Pool | None = None
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

    def __post_init__(self) -> None:
        self.addresses = ClientAddresses(self.settings.trusted_proxies)

    @asynccontextmanager
    async def db(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; an unreachable database is a 503, not a 500."""
        if self.pool is None:
            raise Unavailable("the database is not configured")
        try:
            conn = await self.pool.acquire()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise Unavailable("the database is unreachable") from exc
        try:
            yield conn
        finally:
            await self.pool.release(conn)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
