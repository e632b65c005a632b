"""Bearer tokens of machines (CI, scripts, Prometheus) on the admin API and ``/metrics``.

A token is known if it is one of ``VOTING_ADMIN_TOKENS`` (named bootstrap tokens, kept in
memory) or an unrevoked row of ``machine_tokens`` (created in the console or by
``voting-service token create``; only its SHA-256 is stored). Each worker keeps the table's
hashes for up to a second, so a revocation reaches every worker within about a second (at
once on the worker that revoked it).

A token not known from memory is checked against PostgreSQL only after the failed-attempt
throttle (per address and per network, ``fraud.auth_limits``) reserved the attempt: 500
wrong tokens fired at once from one address get ``too_many_attempts`` (429, Retry-After)
past the limit instead of 500 checks. A refused token is written to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import asyncpg
from redis.exceptions import RedisError
from starlette.requests import Request

from ..accounts import store
from ..errors import Forbidden, TooManyAttempts, Unauthorized, Unavailable
from ..fraud.auth_limits import AuthThrottle, Limits
from ..ledger import db
from ..services import Services
from ..settings import Settings
from ..vote import identity
from .http import fingerprint
from .metrics import AUTH_CHECKS, AUTH_REFUSED

log = logging.getLogger(__name__)

REFRESH = 1.0
"""Seconds a worker trusts its copy of the token table."""

DB_DOWN = (Unavailable, OSError, asyncpg.InterfaceError,
           asyncpg.exceptions.PostgresConnectionError, TimeoutError)
"""What an unreachable PostgreSQL raises."""


@dataclass
class Bearers:
    """The tokens a worker knows: bootstrap ones from the settings, the table's cached."""

    bootstrap: dict[bytes, tuple[str, str]]
    _table: dict[bytes, tuple[str, str]] = field(default_factory=dict)
    _loaded: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def of(cls, settings: Settings) -> Bearers:
        names = settings.admin_token_names
        return cls({store.digest(token): (names.get(token) or f"env-{fingerprint(token)}", role)
                    for token, role in settings.admin_tokens.items()})

    def forget(self) -> None:
        """Reload the table on the next request (a token was created or revoked here)."""
        self._loaded = float("-inf")

    async def known(self, svc: Services, token_hash: bytes) -> tuple[str, str] | None:
        found = self.bootstrap.get(token_hash)
        if found is not None:
            return found
        if time.monotonic() - self._loaded > REFRESH:
            async with self._lock:
                if time.monotonic() - self._loaded > REFRESH:
                    try:
                        async with svc.db() as conn:
                            self._table = await store.valid_tokens(conn)
                    except DB_DOWN as exc:  # keep the last copy; try again in a second
                        log.warning("machine tokens not reloaded: %r", exc)
                    self._loaded = time.monotonic()
        return self._table.get(token_hash)

    async def check(self, svc: Services, token_hash: bytes) -> tuple[str, str] | None:
        """The table itself (a token created on another worker a moment ago)."""
        async with svc.db() as conn:
            return await store.token_by_hash(conn, token_hash)


@dataclass
class Auth:
    """One app's credential state: the known tokens and the failed-attempt throttle."""

    bearers: Bearers
    throttle: AuthThrottle


def auth_of(request: Request, svc: Services) -> Auth:
    found: Auth | None = getattr(request.app.state, "auth", None)
    if found is None:
        s = svc.settings
        limits = Limits(s.auth_per_address, s.auth_per_network, s.auth_per_account,
                        s.auth_window)
        found = Auth(Bearers.of(s), AuthThrottle(limits))
        request.app.state.auth = found
    return found


def client_ip(request: Request, svc: Services) -> str:
    client = request.client
    return identity.client_ip(client.host if client else None,
                              request.headers.get("x-forwarded-for"),
                              svc.settings.trusted_proxies)


async def audit_quietly(svc: Services, actor: str, action: str, target: str,
                        request: dict[str, object]) -> None:
    """An audit row that must not turn a refusal into a 503 (PostgreSQL down)."""
    try:
        async with svc.db() as conn:
            await db.audit(conn, actor, action, target, request)
    except DB_DOWN as exc:
        log.warning("audit row %s not written: %r", action, exc)


async def authorize(request: Request, svc: Services, *roles: str) -> str:
    """Check the bearer token; return the actor (``role:name``) for the audit log."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        raise Unauthorized(headers={"WWW-Authenticate": "Bearer"})
    auth = auth_of(request, svc)
    token_hash = store.digest(token)
    found = await auth.bearers.known(svc, token_hash)
    if found is None:
        ip = client_ip(request, svc)
        try:
            reservation = await auth.throttle.reserve(
                svc.redis, auth.throttle.address_keys("bearer", ip))
        except TooManyAttempts:
            AUTH_REFUSED.labels("bearer").inc()
            raise
        AUTH_CHECKS.labels("bearer").inc()
        found = await auth.bearers.check(svc, token_hash)
        if found is None:
            await audit_quietly(svc, f"anonymous@{ip}", "token.refused", "",
                                {"address": ip, "path": request.url.path,
                                 "tries_left": reservation.left})
            raise Unauthorized("unknown admin token", headers={"WWW-Authenticate": "Bearer"})
        with contextlib.suppress(RedisError, OSError):
            await auth.throttle.refund(svc.redis, reservation)
    name, role = found
    if role not in roles:
        raise Forbidden(f"role {role!r} may not do this")
    return f"{role}:{name}"
