"""Ops console sessions: log in once with an admin or ops token, then a signed cookie.

The token is posted once (a password field, never a URL) and the browser keeps only a
signed, expiring (8 h) ``HttpOnly; SameSite=Strict`` cookie naming the role and the token's
fingerprint. A session ends when it expires, when its token leaves ``VOTING_ADMIN_TOKENS``
or changes role, or at logout (``keys.ops_session_ended`` in Redis until it would have
expired). Wrong tokens are counted per address (``count_failure.lua``); past
``LOGIN_FAILURES`` in ``LOGIN_WINDOW`` seconds that address may not try again until the
window ends, right token or not.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from ..errors import Unavailable
from ..services import Services
from ..vote import identity, keys, scripts
from . import security
from .http import fingerprint, role_of

log = logging.getLogger(__name__)

COOKIE = "vs_ops"
COOKIE_PATH = "/ops"
SESSION_SECONDS = 8 * 3600
LOGIN_FAILURES = 5
LOGIN_WINDOW = 900
WRITERS = frozenset({"admin"})


@dataclass(frozen=True)
class Session:
    id: str
    role: str
    fingerprint: str
    expires_at: float

    @property
    def actor(self) -> str:
        """As the admin API writes it in the audit log (role + token fingerprint), marked as
        coming from the console."""
        return f"{self.role}:{self.fingerprint}@console"

    @property
    def can_write(self) -> bool:
        return self.role in WRITERS


class Sessions:
    """Signs and reads session cookies; the first secret key signs, every listed one reads."""

    def __init__(self, secret_keys: Sequence[str], tokens: Mapping[str, str],
                 max_age: int = SESSION_SECONDS) -> None:
        # itsdangerous signs with the last key of its list (oldest to newest): reverse ours
        self._serializer = URLSafeTimedSerializer(list(secret_keys)[::-1], salt="ops-session")
        self._tokens = tokens
        self._roles = {fingerprint(token): role for token, role in tokens.items()}
        self.max_age = max_age

    def role_of(self, token: str) -> str | None:
        return role_of(self._tokens, token) if token else None

    def issue(self, token: str, role: str, now: float | None = None) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(16)
        session = Session(sid, role, fingerprint(token),
                          (time.time() if now is None else now) + self.max_age)
        return self._serializer.dumps({"s": sid, "r": role, "f": session.fingerprint}), session

    def read(self, value: str | None) -> Session | None:
        """The session a cookie carries, if its signature, age and token still hold."""
        if not value or len(value) > 512:
            return None
        try:
            data, signed_at = self._serializer.loads(value, max_age=self.max_age,
                                                     return_timestamp=True)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        sid, role, fp = data.get("s"), data.get("r"), data.get("f")
        if not isinstance(sid, str) or not isinstance(fp, str) or self._roles.get(fp) != role:
            return None  # the token was removed from VOTING_ADMIN_TOKENS or changed role
        return Session(sid, str(role), fp, signed_at.timestamp() + self.max_age)


def is_https(request: Request, svc: Services) -> bool:
    """Served over TLS, directly or behind one of ``VOTING_TRUSTED_PROXIES``: the one rule
    of every cookie (``security.is_https``)."""
    return security.is_https(request.scope, svc.settings.trusted_proxies)


def set_cookie(response: Response, request: Request, svc: Services, value: str,
               max_age: int) -> None:
    response.set_cookie(COOKIE, value, max_age=max_age, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=is_https(request, svc))


def clear_cookie(response: Response, request: Request, svc: Services) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=is_https(request, svc))


async def current(request: Request, svc: Services, sessions: Sessions,
                  write: bool = False) -> Session | None:
    """The request's live session, or ``None``. If Redis cannot say whether it was logged
    out, a read goes on (the console matters most when Redis is in trouble) and a write is
    a 503."""
    session = sessions.read(request.cookies.get(COOKIE))
    if session is None:
        return None
    try:
        ended = await svc.redis.exists(keys.ops_session_ended(session.id))
    except (RedisError, OSError) as exc:
        if write:
            raise Unavailable("Redis is unreachable; try again in a moment") from exc
        return session
    return None if ended else session


async def end(svc: Services, session: Session) -> None:
    ttl = max(1, int(session.expires_at - time.time()) + 1)
    await svc.redis.set(keys.ops_session_ended(session.id), "1", ex=ttl)


def address_of(request: Request, svc: Services) -> str:
    """The client's address as the limits see it (IPv4 /32, IPv6 /64)."""
    client = request.client
    ip = identity.client_ip(client.host if client else None,
                            request.headers.get("x-forwarded-for"), svc.settings.trusted_proxies)
    return identity.ip_prefixes(ip)[0]


class Throttle:
    """Wrong tokens per address. Redis holds the count for every worker; while Redis is
    unreachable each worker counts in memory, so a Redis outage does not open the door."""

    def __init__(self, failures: int = LOGIN_FAILURES, window: int = LOGIN_WINDOW) -> None:
        self.failures = failures
        self.window = window
        self._local: dict[str, tuple[int, float]] = {}

    def _local_count(self, address: str, now: float) -> tuple[int, float]:
        n, ends = self._local.get(address, (0, 0.0))
        return (0, 0.0) if ends <= now else (n, ends)

    async def wait(self, svc: Services, address: str) -> int:
        """Seconds this address must wait before trying a token; 0 = it may try now."""
        now = time.time()
        n, ends = self._local_count(address, now)
        if n >= self.failures:
            return max(1, int(ends - now))
        try:
            pipe = svc.redis.pipeline(transaction=False)
            pipe.get(keys.ops_login_failures(address))
            pipe.ttl(keys.ops_login_failures(address))
            count, ttl = await pipe.execute()
        except (RedisError, OSError):
            return 0
        if count is not None and int(count) >= self.failures:
            return max(1, int(ttl))
        return 0

    async def failed(self, svc: Services, address: str) -> int:
        """Count a wrong token; returns the tries left in this window."""
        now = time.time()
        try:
            n, _ = await scripts.load("count_failure")(
                svc.redis, [keys.ops_login_failures(address)], [self.window])
        except (RedisError, OSError) as exc:
            log.warning("login throttle counts in memory (Redis: %r)", exc)
            if len(self._local) > 10_000:
                self._local = {a: v for a, v in self._local.items() if v[1] > now}
            local, ends = self._local_count(address, now)
            n = local + 1
            self._local[address] = (n, ends or now + self.window)
        return max(0, self.failures - int(n))


@dataclass
class Console:
    """What the console's routes share in one app: the session signer, the throttle, and
    the last suspicious-group search per campaign (a heavy query, shared by every open
    console for ``SUSPICIOUS_FOR`` seconds)."""

    sessions: Sessions
    throttle: Throttle
    suspicious: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)


def console(request: Request, svc: Services) -> Console:
    found: Console | None = getattr(request.app.state, "ops_console", None)
    if found is None:
        found = Console(Sessions(svc.settings.secret_keys, svc.settings.admin_tokens), Throttle())
        request.app.state.ops_console = found
    return found
