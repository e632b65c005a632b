"""The web application: ``create_app()`` and the lifespan that opens pools once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from .errors import VotingError
from .fraud import blocklist, invalidation, sms
from .ledger import campaigns, db, durability, health
from .services import Services, services
from .settings import IPNetwork, Settings
from .vote import store
from .vote.identity import VoterTokens
from .vote.registry import Registry
from .vote.timeline import Timeline
from .web import (
    api_admin,
    api_fraud,
    api_organisers,
    api_public,
    api_results,
    api_voter,
    metrics,
    openapi,
    ops,
    ops_api,
    pages,
    server,
)
from .web.edge import EdgeMiddleware
from .web.http import (
    JSON,
    on_backend_down,
    on_bad_data,
    on_http_exception,
    on_unexpected,
    on_voting_error,
)
from .web.security import SecurityMiddleware
from .web.votes import DirectVotes, VoteRoute

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
        async with asyncio.timeout(1.0), svc.db() as conn:
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
    """Starlette, with the vote route (``web.votes``) ahead of its whole middleware stack:
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
        batcher = store.pipeline(settings, found.barrier if found.barrier.needed else None)
        with contextlib.suppress(Exception):  # Redis down at start: the first vote retries
            await batcher.start()
        registry = Registry(redis, settings.shards, settings.config_refresh, settings.redis_timeout)
        pool = None
        if settings.database_url:
            pool = await db.connect_pool(settings.database_url, min_size=0, max_size=5)
        svc = Services(
            settings, redis, batcher, registry,
            VoterTokens(settings.secret_keys, str(settings.pepper)), pool,
            sms=sms.sender_from(settings),
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
                    await campaigns.publish_all(conn, redis)
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
            redis, svc.db if pool is not None else None, lambda: list(registry.campaigns),
            settings.shards, settings.health_interval, publish, settings.redis_replica_acks))
        gc_tuning.settle()
        state: dict[str, Any] = {}
        if settings.direct_votes and server.direct_votes() and isinstance(app, VotingApp):
            # uvicorn hands this to each connection's protocol (web.server.DIRECT_ROUTE)
            state[server.DIRECT_ROUTE] = DirectVotes(app.vote_security, svc)
        try:
            yield state
        finally:
            timeline_shipper.cancel()
            with contextlib.suppress(Exception):  # the last second's counts
                await svc.timeline.ship()
            await _stop(refresher, blocks_watcher, timeline_shipper, health_watcher)
            await app.state.live.close()
            await batcher.close()
            if pool is not None:
                try:  # a connection still held (a request cut short) must not hang the stop
                    await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT)
                except TimeoutError:
                    log.warning("PostgreSQL pool did not close in time; terminating it")
                    pool.terminate()
            await redis.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *api_public.routes,
        *api_voter.routes,
        *api_admin.routes,
        *api_organisers.routes,
        *api_results.routes,
        *api_fraud.routes,
        *ops.routes,
        *ops_api.routes,
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
