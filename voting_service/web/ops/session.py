"""Ops console sessions: one per person, signed in with a staff account (issue 25 §3).

Sign-in takes the account's name and password, then a TOTP code (or, on the first sign-in
after the account was created or its enrolment reset, enrols the authenticator app first:
``ops_accounts``). Each step is a session row in PostgreSQL (``staff_sessions``, only the
SHA-256 of its id stored); the browser holds the id in a signed ``HttpOnly;
SameSite=Strict`` cookie (``Secure`` behind TLS) with the account's name and role. A
session ends when it expires (8 h; 10 min for a half-finished sign-in), at sign-out, and
when its account is disabled, its enrolment reset or its password changed: every request
reads the row, so that takes effect on every worker at once.

If PostgreSQL cannot say whether a full session still lives, a read goes on with what the
signed cookie says (the console matters most when something is in trouble) and a write is
a 503.

``Session``, ``current`` and ``console`` are what every console page builds on: the role
checks (``can_write``), ``Session.actor`` for the audit log (``<role>:<name>@console``).
An ``auditor`` reads the audit log and nothing else, so ``current`` gives an auditor's
session only to callers that ask for it (``auditor=True``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ...accounts import store
from ...errors import Unavailable
from ...fraud.auth_limits import AuthThrottle
from ...services import Services
from ..auth import DB_DOWN, auth_of, client_ip
from ..server import security

COOKIE = "vs_ops"
COOKIE_PATH = "/ops"
SESSION_SECONDS = 8 * 3600
STEP_SECONDS = 600
"""A sign-in's password step stays valid this long for the code (or the enrolment)."""
WRITERS = frozenset({"admin"})
AUDIT_READERS = frozenset({"admin", "auditor"})
CONSOLE_READERS = frozenset({"admin", "ops"})


@dataclass(frozen=True)
class Session:
    id: str
    role: str
    name: str
    """The staff account's name: the person."""
    account_id: int
    expires_at: float
    stage: str = "full"
    """``full``; or ``second_factor`` / ``enrol`` while a sign-in waits for its code."""

    @property
    def actor(self) -> str:
        """As the audit log names the person: role and account name, from the console."""
        return f"{self.role}:{self.name}@console"

    @property
    def can_write(self) -> bool:
        return self.role in WRITERS

    @property
    def can_read_console(self) -> bool:
        """Campaigns, figures, suspicious groups: everyone but the auditor."""
        return self.role in CONSOLE_READERS

    @property
    def can_read_audit(self) -> bool:
        return self.role in AUDIT_READERS

    @property
    def fingerprint(self) -> str:
        """A short handle of the session (the audit log's ``session`` field)."""
        return hashlib.sha256(self.id.encode()).hexdigest()[:8]


class Sessions:
    """Signs and reads session cookies; the first secret key signs, every listed one reads."""

    def __init__(self, secret_keys: Sequence[str], max_age: int = SESSION_SECONDS) -> None:
        # itsdangerous signs with the last key of its list (oldest to newest): reverse ours
        self._serializer = URLSafeTimedSerializer(list(secret_keys)[::-1], salt="ops-session")
        self.max_age = max_age

    def sign(self, session: Session) -> str:
        return self._serializer.dumps({"s": session.id, "a": session.account_id,
                                       "n": session.name, "r": session.role,
                                       "g": session.stage, "e": int(session.expires_at)})

    def read(self, value: str | None) -> Session | None:
        """The session a cookie claims, if its signature and age hold (not yet whether it
        is live: ``current`` asks PostgreSQL)."""
        if not value or len(value) > 1024:
            return None
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        sid, account, name, role, stage, ends = (data.get(k) for k in "sanrge")
        if not (isinstance(sid, str) and isinstance(account, int) and isinstance(name, str)
                and isinstance(role, str) and isinstance(stage, str)
                and isinstance(ends, int)) or ends <= time.time():
            return None
        return Session(sid, role, name, account, float(ends), stage)


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
                  write: bool = False, *, auditor: bool = False,
                  stage: str = "full") -> Session | None:
    """The request's live session at ``stage``, or ``None``. An auditor's only with
    ``auditor=True`` (pages other than the audit log never see one)."""
    claimed = sessions.read(request.cookies.get(COOKIE))
    if claimed is None or claimed.stage != stage:
        return None
    try:
        async with svc.db() as conn:
            row = await store.read_session(conn, claimed.id)
    except DB_DOWN as exc:
        if write or stage != "full":
            raise Unavailable("PostgreSQL is unreachable; try again in a moment") from exc
        found: Session | None = claimed
    else:
        found = None if row is None or row.stage != stage else Session(
            claimed.id, row.role, row.name, row.account_id, row.expires_at.timestamp(),
            row.stage)
    if found is None or (found.role == "auditor" and not auditor):
        return None
    return found


async def open_session(svc: Services, account: store.Account, stage: str,
                       address: str) -> Session:
    seconds = SESSION_SECONDS if stage == "full" else STEP_SECONDS
    async with svc.db() as conn:
        sid, ends = await store.open_session(conn, account.id, stage, seconds, address)
    return Session(sid, account.role, account.name, account.id, ends.timestamp(), stage)


async def end(svc: Services, session: Session) -> None:
    async with svc.db() as conn:
        await store.end_session(conn, session.id)


def address_of(request: Request, svc: Services) -> str:
    """The client's address as the audit log and the throttles see it."""
    return client_ip(request, svc)


@dataclass
class Console:
    """What the console's routes share in one app: the session signer, the failed-sign-in
    throttle (per address, network and account), and the last suspicious-group search per
    campaign (a heavy query, shared by every open console for ``SUSPICIOUS_FOR`` seconds)."""

    sessions: Sessions
    throttle: AuthThrottle
    suspicious: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)


def console(request: Request, svc: Services) -> Console:
    found: Console | None = getattr(request.app.state, "ops_console", None)
    if found is None:
        found = Console(Sessions(svc.settings.secret_keys), auth_of(request, svc).throttle)
        request.app.state.ops_console = found
    return found
