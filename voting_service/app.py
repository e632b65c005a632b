"""The web application: ``create_app()`` and the lifespan that opens pools once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from . import gc_tuning
from .accounts import store as accounts_store
from .errors import VotingError
from .fraud import blocklist, invalidation, sms, sms_budget
from .ledger import campaigns, db, durability, health
from .redis import store
from .services import Services, services
from .settings import IPNetwork, Settings
from .vote.identity import VoterTokens
from .vote.registry import Registry
from .vote.timeline import Timeline
from .web import metrics
from .web.api import (
    admin as api_admin,
)
from .web.api import (
    fraud as api_fraud,
)
from .web.api import (
    log as api_log,
)
from .web.api import (
    openapi,
)
from .web.api import (
    organisers as api_organisers,
)
from .web.api import (
    public as api_public,
)
from .web.api import (
    results as api_results,
)
from .web.api import (
    voter as api_voter,
)
from .web.api import (
    wechat as api_wechat,
)
from .web.api.votes import DirectVotes, VoteRoute
from .web.http import (
    JSON,
    on_backend_down,
    on_bad_data,
    on_http_exception,
    on_unexpected,
    on_voting_error,
)
from .web.ops import (
    accounts as ops_accounts,
)
from .web.ops import (
    api as ops_api,
)
from .web.ops import (
    console as ops,
)
from .web.ops import (
    sms as ops_sms,
)
from .web.ops import (
    staff as ops_staff,
)
from .web.ops import (
    year as ops_year,
)
from .web.pages import campaigns as pages
from .web.pages import notices
from .web.pages import objections as objection_pages
from .web.server import contract as server
from .web.server.address_caps import SERVER_LIMITS, AddressCaps, ServerLimits
from .web.server.edge import EdgeMiddleware
from .web.server.security import SecurityMiddleware

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 only when Redis and PostgreSQL answer and Redis keeps acknowledged votes (with
    ``VOTING_REDIS_REPLICA_ACKS`` replicas acknowledging on every primary)."""
    svc = services(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(1.0):
            await svc.redis.ping()
        found = await durability.check(svc.redis, svc.settings.redis_replica_acks)
        ok = found.safe or svc.settings.accept_weak_durability
        checks["redis"] = "ok" if ok else f"unsafe: {found.reason}"
    except Exception as exc:
        checks["redis"] = f"down: {exc!r}"
    try:
        async with asyncio.timeout(1.0), svc.db("health") as conn:
            await conn.fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"down: {exc!r}"
    ready = all(v == "ok" for v in checks.values())
    return JSON({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def _tallies_of(registry: Registry, campaign_id: str) -> dict[str, int]:
    counts, _ = await registry.tallies(campaign_id)
    return counts


class VotingApp(Starlette):
    """Starlette, with the vote route (``web.api.votes``) ahead of its whole middleware stack:
    votes are most of the traffic, and each layer costs every vote a few µs."""

    def __init__(self, *, trusted_proxies: tuple[IPNetwork, ...], **options: Any) -> None:
        super().__init__(
            middleware=[Middleware(SecurityMiddleware, trusted_proxies=trusted_proxies),
                        Middleware(EdgeMiddleware)],
            **options,
        )
        self.vote_security = SecurityMiddleware(self.router, trusted_proxies=trusted_proxies)
        """The middleware's checks and headers for the vote route, which runs ahead of the
        stack (its inner app is never called)."""

    def build_middleware_stack(self) -> ASGIApp:
        return VoteRoute(super().build_middleware_stack(), self.vote_security)


POOL_CLOSE_TIMEOUT = 5.0
FD_RESERVE = 256
"""Open files a worker keeps for itself beyond its clients' connections: Redis and
PostgreSQL pools, the flusher's and the log's files, the metrics files."""


def open_file_limit() -> int:
    """The worker's open-file limit, raised to the hard limit first (the soft one is often
    1,024, the hard one far more: without this a few thousand idle clients exhaust it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)


def server_limits(settings: Settings) -> ServerLimits:
    """The caps of ``web/server/protocol.py`` for one worker, from the settings; the total by
    default what the open-file limit leaves once ``FD_RESERVE`` is kept."""
    total = settings.conn_per_worker or max(64, open_file_limit() - FD_RESERVE)
    return ServerLimits(
        AddressCaps(settings.conn_per_address, settings.conn_per_network, total),
        settings.trusted_proxies, settings.body_timeout, settings.body_min_rate,
        refused=lambda level: metrics.CONNECTIONS_REFUSED.labels(level).inc(),
        timed_out=metrics.BODY_TIMEOUTS.inc)


async def _stop(*tasks: asyncio.Task[Any]) -> None:
    """Cancel background tasks and wait until each has ended. A task is cancelled again if
    it swallowed the first cancel (on Python 3.11 a cancel landing as an ``asyncio.timeout``
    fires becomes a ``TimeoutError``, which a watcher's retry loop catches and sleeps on)."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        redis = store.connect(settings)
        found = await durability.check(redis, settings.redis_replica_acks)
        if not found.safe and not settings.accept_weak_durability:
            raise RuntimeError(
                f"refusing to start: Redis would lose acknowledged votes ({found.reason}); "
                "set VOTING_ACCEPT_WEAK_DURABILITY=1 to accept that risk"
            )
        if not found.safe:
            log.warning("Redis could lose acknowledged votes: %s", found.reason)
        if (slow := durability.slow_reason(found)) is not None:
            log.warning("%s", slow)
        pipeline = store.pipeline(settings, found.barrier if found.barrier.needed else None)
        with contextlib.suppress(Exception):  # Redis down at start: the first vote retries
            await pipeline.start()
        registry = Registry(redis, settings.shards, settings.config_refresh,
                            settings.redis_timeout, settings.legacy_records_until)
        pool = None
        pools: dict[str, asyncpg.Pool] = {}
        if settings.database_url:
            # one pool per budget: readers that hold theirs never starve admin or health
            for budget, size in (("public", settings.db_pool_public),
                                 ("admin", settings.db_pool_admin),
                                 ("health", settings.db_pool_health)):
                pools[budget] = await db.connect_pool(settings.database_url, min_size=0,
                                                      max_size=size)
            pool = pools["admin"]
        svc = Services(
            settings, redis, pipeline, registry,
            VoterTokens(settings.secret_keys, str(settings.pepper)), pool,
            pools=pools, sms=sms.sender_from(settings),
            sms_budget=sms_budget.Budget.from_settings(settings),
        )
        with contextlib.suppress(Exception):  # Redis down at start: the watcher retries
            await svc.ip_blocks.refresh(redis)
        if pool is not None:
            with contextlib.suppress(Exception):  # a crash left Redis tallies to update
                async with svc.db() as conn:
                    await invalidation.apply_pending(conn, redis, settings.shards)
        await registry.refresh(force=True)
        if not registry.campaigns and pool is not None:
            with contextlib.suppress(Exception):
                async with svc.db() as conn:
                    await campaigns.push_all_snapshots(conn, redis)
                    await blocklist.restore(conn, redis, settings.shards)  # an empty Redis
                await registry.refresh(force=True)
                await svc.ip_blocks.refresh(redis)
        if settings.vote_metrics:
            svc.outcomes.subscribe(metrics.VoteCounter())
        svc.timeline = Timeline(redis, registry.has_channel)
        svc.outcomes.subscribe(svc.timeline.observe)
        app.state.services = svc
        app.state.live = api_public.live_feeds(svc)
        refresher = asyncio.create_task(registry.run())
        blocks_watcher = asyncio.create_task(
            svc.ip_blocks.watch(redis, settings.config_refresh))
        timeline_shipper = asyncio.create_task(svc.timeline.run(
            lambda: [cid for cid, live in registry.campaigns.items()
                     if live.c.status in ("open", "paused")],
            lambda cid: _tallies_of(registry, cid)))

        def publish(snapshot: health.Health) -> None:
            svc.health = snapshot

        health_watcher = asyncio.create_task(health.watch(
            redis, (lambda: svc.db("health")) if pool is not None else None,
            lambda: list(registry.campaigns),
            settings.shards, settings.health_interval, publish, settings.redis_replica_acks))
        background = [refresher, blocks_watcher, timeline_shipper, health_watcher]
        if pool is not None:
            background.append(asyncio.create_task(
                accounts_store.prune_forever(pool, settings.audit_retention_days)))
        gc_tuning.settle()
        state: dict[str, Any] = {}
        state[SERVER_LIMITS] = server_limits(settings)
        if settings.direct_votes and server.direct_votes() and isinstance(app, VotingApp):
            # uvicorn hands this to each connection's protocol (web.server.contract.DIRECT_ROUTE)
            state[server.DIRECT_ROUTE] = DirectVotes(app.vote_security, svc)
        try:
            yield state
        finally:
            timeline_shipper.cancel()
            with contextlib.suppress(Exception):  # the last second's counts
                await svc.timeline.ship()
            await _stop(*background)
            await app.state.live.close()
            await pipeline.close()
            for each in pools.values():
                try:  # a connection still held (a request cut short) must not hang the stop
                    await asyncio.wait_for(each.close(), POOL_CLOSE_TIMEOUT)
                except TimeoutError:
                    log.warning("PostgreSQL pool did not close in time; terminating it")
                    each.terminate()
            await redis.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *api_public.routes,
        *api_voter.routes,
        *api_wechat.routes,
        *api_admin.routes,
        *api_organisers.routes,
        *api_results.routes,
        *api_log.routes,
        *api_fraud.routes,
        *ops_year.routes,
        *objection_pages.routes,
        *ops.routes,
        *ops_accounts.routes,
        *ops_staff.routes,
        *ops_sms.routes,
        *ops_api.routes,
        *notices.routes,
        *pages.routes,
        *metrics.routes,
        *openapi.routes,
    ]
    return VotingApp(
        routes=routes,
        lifespan=lifespan,
        trusted_proxies=settings.trusted_proxies,
        exception_handlers={
            VotingError: on_voting_error,
            RedisError: metrics.on_redis_error,
            asyncpg.PostgresConnectionError: on_backend_down,
            asyncpg.InterfaceError: on_backend_down,
            asyncpg.DataError: on_bad_data,
            OSError: on_backend_down,
            HTTPException: on_http_exception,
            Exception: on_unexpected,
        },
    )


def app_from_env() -> Starlette:
    """ASGI factory for uvicorn/gunicorn (``voting_service.app:app_from_env``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(Settings.from_env())
