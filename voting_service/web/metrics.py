"""Prometheus ``/metrics``: counters the vote path feeds, gauges from the health snapshot.

Under ``serve --workers N`` every gunicorn worker writes its counters to files in
``PROMETHEUS_MULTIPROC_DIR`` (set up by ``serve``), and a scrape of any worker adds them
all up, those of workers that have exited included. Backlog, lag and drift come from the
answering worker's health snapshot, so one scrape target reports the whole service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import Unauthorized, Unavailable
from ..fraud import sms_budget
from ..ledger.health import Health
from ..services import services
from ..vote.identity import client_ip
from ..vote.outcomes import Outcome
from .http import on_backend_down

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# a ``_created`` series per label set would double the scrape for nothing
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
"""This process's own metrics (one worker); under gunicorn the files are read instead."""

VOTES = Counter(
    "voting_votes", "Vote requests by campaign and outcome (accepted or the problem code).",
    ["campaign", "outcome"], registry=REGISTRY,
)
VOTE_SECONDS = Histogram(
    "voting_vote_duration_seconds", "Time the vote endpoint took, first byte read to answer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
SSE_REFUSED = Counter(
    "voting_sse_refused_total", "Live streams refused, by the cap reached (address, network, "
    "total).", ["level"], registry=REGISTRY,
)
CONNECTIONS_REFUSED = Counter(
    "voting_connections_refused_total", "Connections closed at once with a 503, by the cap "
    "reached (address, network, total).", ["level"], registry=REGISTRY,
)
BODY_TIMEOUTS = Counter(
    "voting_body_timeouts_total", "Requests whose body did not arrive in time (closed, 408).",
    registry=REGISTRY,
)
SSE_CLIENTS = Gauge(
    "voting_sse_clients", "Open Server-Sent Events streams of live tallies.",
    multiprocess_mode="livesum", registry=REGISTRY,
)
AUTH_CHECKS = Counter(
    "voting_auth_checks", "Credentials checked (password, second-factor code, bearer token) "
    "after the failed-attempt throttles let them through.", ["kind"], registry=REGISTRY,
)
AUTH_REFUSED = Counter(
    "voting_auth_throttled", "Credential attempts refused unchecked by the throttles (429).",
    ["kind"], registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "voting_redis_errors", "Requests answered 503 because Redis failed or did not answer.",
    registry=REGISTRY,
)


class VoteCounter:
    """The ``svc.outcomes`` observer: two increments a vote, label children cached (the
    label lookup costs more than the increment)."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str], Any] = {}

    def __call__(self, outcome: Outcome) -> None:
        key = (outcome.campaign_id, outcome.outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = VOTES.labels(*key)
        child.inc()
        VOTE_SECONDS.observe(outcome.seconds)
        if outcome.outcome == Unavailable.code:
            REDIS_ERRORS.inc()


async def on_redis_error(request: Request, exc: Exception) -> Response:
    """Counted, then the usual 503 (``http.on_backend_down``)."""
    if not (request.method == "POST" and request.url.path.endswith("/votes")):
        REDIS_ERRORS.inc()  # the vote route's own failures are counted from its outcome
    return await on_backend_down(request, exc)


class HealthCollector(Collector):
    """Gauges read from the health snapshot at scrape time (no Redis or SQL per scrape)."""

    def __init__(self, health: Callable[[], Health]) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        h = self._health()
        backlog = GaugeMetricFamily(
            "voting_ledger_backlog", "Ledger stream entries not yet committed to PostgreSQL.",
            labels=["campaign"])
        drift = GaugeMetricFamily(
            "voting_tally_drift",
            "Redis tallies minus (PostgreSQL valid votes + backlog); 0 when healthy.",
            labels=["campaign"])
        for cid, camp in sorted(h.campaigns.items()):
            backlog.add_metric([cid], camp.backlog)
            if camp.drift is not None:
                drift.add_metric([cid], camp.drift)
        yield backlog
        yield drift
        found = CounterMetricFamily(
            "voting_drift_found", "Shard groups the flushers found drifting from the ledger"
            " (after a failover) and repaired.", labels=["campaign"])
        repaired = CounterMetricFamily(
            "voting_drift_repaired", "Votes the drift repairs fixed in Redis: what=tally"
            " (tallies moved by), what=votes (quota and idempotency record given back).",
            labels=["campaign", "what"])
        for cid in sorted(set(h.campaigns) | set(h.repairs)):
            done = h.repaired(cid)
            found.add_metric([cid], done["found"])
            repaired.add_metric([cid, "tally"], done["tally"])
            repaired.add_metric([cid, "votes"], done["votes"])
        yield found
        yield repaired
        yield GaugeMetricFamily(
            "voting_flusher_lag_seconds", "Age of the oldest ledger entry not yet committed.",
            value=h.lag_seconds)
        if h.ledger_rows is not None:
            yield CounterMetricFamily(
                "voting_flusher_rows", "Ledger rows the flushers committed to PostgreSQL.",
                value=h.ledger_rows)
        for name, text, value in (
            ("voting_redis_up", "1 when Redis answered the last health check.", h.redis_up),
            ("voting_redis_durable", "1 when every Redis primary keeps acknowledged votes"
             " (AOF fsync always, or everysec with WAITAOF).", h.redis_durable),
            ("voting_postgres_up", "1 when PostgreSQL answered the last health check.",
             h.postgres_up),
        ):
            yield GaugeMetricFamily(name, text, value=float(value))
        yield GaugeMetricFamily(
            "voting_health_timestamp_seconds", "Unix time of the health snapshot.", value=h.at)


class _Own(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from sms_budget.REGISTRY.collect()


def exposition(health: Callable[[], Health]) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Own())
    registry.register(HealthCollector(health))
    return generate_latest(registry)


async def metrics(request: Request) -> Response:
    """Only for ``VOTING_METRICS_ALLOW`` addresses or an ops/admin bearer token."""
    svc = services(request)
    if request.headers.get("authorization"):
        from .auth import authorize  # auth counts its checks in this module's registry

        await authorize(request, svc, "admin", "ops")
    else:
        peer = request.client.host if request.client else None
        ip = ipaddress.ip_address(client_ip(
            peer, request.headers.get("x-forwarded-for"), svc.settings.trusted_proxies))
        if not any(ip in net for net in svc.settings.metrics_allow):
            raise Unauthorized("metrics need an ops or admin token from this address",
                               headers={"WWW-Authenticate": "Bearer"})
    # reading the workers' files is blocking I/O: off the event loop
    body = await asyncio.to_thread(exposition, lambda: svc.health)
    return Response(body, media_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


routes = [Route("/metrics", metrics)]
