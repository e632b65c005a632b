"""Staff accounts, console sessions and machine tokens in PostgreSQL (migration 0025).

Secrets never reach the database in the clear where a hash will do: passwords as argon2id,
session ids and bearer tokens as SHA-256 (both are 256-bit random values, so a fast hash
is enough). Disabling an account, resetting its enrolment or changing its password ends its
sessions in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..errors import Conflict, InvalidRequest, NotFound

ROLES = ("admin", "ops", "auditor")
TOKEN_ROLES = ("admin", "ops")
NAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
TOKEN_NAME = re.compile(r"[a-z][a-z0-9._-]{1,47}")
TOKEN_PREFIX = "vst_"


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def normal_name(name: str) -> str:
    """Account names are compared in lower case, spaces around them dropped."""
    return name.strip().lower()


def check_name(name: str) -> str:
    name = normal_name(name)
    if not NAME.fullmatch(name):
        raise InvalidRequest("an account name is 2-32 of a-z, 0-9, '.', '_', '-', "
                             "starting with a letter")
    return name


def check_role(role: str, roles: tuple[str, ...] = ROLES) -> str:
    if role not in roles:
        raise InvalidRequest(f"role is one of {', '.join(roles)}")
    return role


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: str
    password_hash: str
    totp_secret: str | None
    totp_pending: str | None
    totp_step: int
    disabled: bool
    created_at: dt.datetime
    created_by: str

    @property
    def enrolled(self) -> bool:
        return self.totp_secret is not None

    def view(self) -> dict[str, Any]:
        """What the console and the CLI list (no secrets)."""
        return {"id": self.id, "name": self.name, "role": self.role,
                "enrolled": self.enrolled, "disabled": self.disabled,
                "created_at": self.created_at.isoformat(), "created_by": self.created_by}


_ACCOUNT = ("SELECT id, name, role, password_hash, totp_secret, totp_pending, totp_step,"
            " disabled_at IS NOT NULL AS disabled, created_at, created_by FROM staff_accounts")


def _account(row: asyncpg.Record | None) -> Account | None:
    return None if row is None else Account(**dict(row))


async def create_account(conn: asyncpg.Connection, name: str, role: str, password_hash: str,
                         actor: str) -> Account:
    try:
        row = await conn.fetchrow(
            "INSERT INTO staff_accounts (name, role, password_hash, created_by)"
            " VALUES ($1, $2, $3, $4) RETURNING id", check_name(name), check_role(role),
            password_hash, actor)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"an account named {normal_name(name)!r} exists") from exc
    found = await account_by_id(conn, row["id"])
    assert found is not None
    return found


async def account_by_name(conn: asyncpg.Connection, name: str) -> Account | None:
    return _account(await conn.fetchrow(_ACCOUNT + " WHERE name = $1", normal_name(name)))


async def account_by_id(conn: asyncpg.Connection, account_id: int) -> Account | None:
    return _account(await conn.fetchrow(_ACCOUNT + " WHERE id = $1", account_id))


async def require_account(conn: asyncpg.Connection, name: str) -> Account:
    found = await account_by_name(conn, name)
    if found is None:
        raise NotFound(f"no staff account named {normal_name(name)!r}")
    return found


async def accounts(conn: asyncpg.Connection) -> list[Account]:
    return [Account(**dict(r)) for r in await conn.fetch(_ACCOUNT + " ORDER BY name")]


async def any_admin(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM staff_accounts WHERE role = 'admin'"
        " AND disabled_at IS NULL)"))


async def end_sessions(conn: asyncpg.Connection, account_id: int,
                       keep: bytes | None = None) -> int:
    """End every live session of an account (but ``keep``, the one changing its password)."""
    status: str = await conn.execute(
        "UPDATE staff_sessions SET ended_at = now() WHERE account_id = $1"
        " AND ended_at IS NULL AND id_hash IS DISTINCT FROM $2", account_id, keep)
    return int(status.split()[-1])


async def set_disabled(conn: asyncpg.Connection, account_id: int, disabled: bool) -> int:
    """Disable (ending every session at once) or enable an account; returns the sessions
    ended."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE staff_accounts SET disabled_at = CASE WHEN $2 THEN COALESCE(disabled_at,"
            " now()) END WHERE id = $1", account_id, disabled)
        return await end_sessions(conn, account_id) if disabled else 0


async def reset_enrolment(conn: asyncpg.Connection, account_id: int) -> int:
    """Forget the second factor (a lost phone): the next sign-in enrols again."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE staff_accounts SET totp_secret = NULL, totp_pending = NULL, totp_step = 0"
            " WHERE id = $1", account_id)
        return await end_sessions(conn, account_id)


async def set_password(conn: asyncpg.Connection, account_id: int, password_hash: str,
                       keep: bytes | None = None) -> int:
    """A new password ends the account's other sessions."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE staff_accounts SET password_hash = $2, password_at = now() WHERE id = $1",
            account_id, password_hash)
        return await end_sessions(conn, account_id, keep)


async def offer_enrolment(conn: asyncpg.Connection, account_id: int, secret: str) -> str:
    """The secret the enrolment page shows: the one already offered, if any (a reload
    shows the same QR code), else ``secret``."""
    found: str = await conn.fetchval(
        "UPDATE staff_accounts SET totp_pending = COALESCE(totp_pending, $2)"
        " WHERE id = $1 AND totp_secret IS NULL RETURNING totp_pending", account_id, secret)
    if found is None:
        raise Conflict("this account has a second factor already")
    return found


async def confirm_enrolment(conn: asyncpg.Connection, account_id: int, step: int) -> bool:
    status: str = await conn.execute(
        "UPDATE staff_accounts SET totp_secret = totp_pending, totp_pending = NULL,"
        " totp_step = $2 WHERE id = $1 AND totp_secret IS NULL AND totp_pending IS NOT NULL",
        account_id, step)
    return status.endswith(" 1")


async def spend_step(conn: asyncpg.Connection, account_id: int, step: int) -> bool:
    """Accept a code's time step once: two requests racing with one code, one wins."""
    status: str = await conn.execute(
        "UPDATE staff_accounts SET totp_step = $2 WHERE id = $1 AND totp_step < $2",
        account_id, step)
    return status.endswith(" 1")


# --- sessions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionRow:
    account_id: int
    name: str
    role: str
    stage: str
    expires_at: dt.datetime


async def open_session(conn: asyncpg.Connection, account_id: int, stage: str, seconds: int,
                       address: str) -> tuple[str, dt.datetime]:
    """A new session id (to the cookie) and its end; only its hash is stored."""
    sid = secrets.token_urlsafe(32)
    expires: dt.datetime = await conn.fetchval(
        "INSERT INTO staff_sessions (id_hash, account_id, stage, address, expires_at)"
        " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING expires_at",
        digest(sid), account_id, stage, address, float(seconds))
    return sid, expires


async def read_session(conn: asyncpg.Connection, sid: str) -> SessionRow | None:
    """The live session of this id: not ended, not expired, its account not disabled."""
    row = await conn.fetchrow(
        "SELECT s.account_id, a.name, a.role, s.stage, s.expires_at FROM staff_sessions s"
        " JOIN staff_accounts a ON a.id = s.account_id WHERE s.id_hash = $1"
        " AND s.ended_at IS NULL AND s.expires_at > now() AND a.disabled_at IS NULL",
        digest(sid))
    return None if row is None else SessionRow(**dict(row))


async def end_session(conn: asyncpg.Connection, sid: str) -> bool:
    status: str = await conn.execute(
        "UPDATE staff_sessions SET ended_at = now() WHERE id_hash = $1 AND ended_at IS NULL",
        digest(sid))
    return status.endswith(" 1")


async def live_sessions(conn: asyncpg.Connection, account_id: int) -> int:
    n: int = await conn.fetchval(
        "SELECT count(*) FROM staff_sessions WHERE account_id = $1 AND ended_at IS NULL"
        " AND expires_at > now()", account_id)
    return n


# --- machine tokens ---------------------------------------------------------------------

async def create_token(conn: asyncpg.Connection, name: str, role: str,
                       actor: str) -> tuple[str, dict[str, Any]]:
    """A new bearer token (returned once; only its hash is kept) and its listing."""
    name = name.strip().lower()
    if not TOKEN_NAME.fullmatch(name):
        raise InvalidRequest("a token name is 2-48 of a-z, 0-9, '.', '_', '-', "
                             "starting with a letter")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        row = await conn.fetchrow(
            "INSERT INTO machine_tokens (name, role, token_hash, created_by)"
            " VALUES ($1, $2, $3, $4) RETURNING id, name, role, created_at, created_by,"
            " revoked_at", name, check_role(role, TOKEN_ROLES), digest(token), actor)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"a token named {name!r} exists (revoked ones keep their name)") from exc
    return token, _token_view(row)


def _token_view(row: asyncpg.Record) -> dict[str, Any]:
    view = dict(row)
    for key in ("created_at", "revoked_at"):
        view[key] = view[key].isoformat() if view[key] else None
    return view


async def tokens(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [_token_view(r) for r in await conn.fetch(
        "SELECT id, name, role, created_at, created_by, revoked_at FROM machine_tokens"
        " ORDER BY revoked_at IS NOT NULL, name")]


async def revoke_token(conn: asyncpg.Connection, name: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "UPDATE machine_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"
        " RETURNING id, name, role, created_at, created_by, revoked_at", name.strip().lower())
    return None if row is None else _token_view(row)


async def valid_tokens(conn: asyncpg.Connection) -> dict[bytes, tuple[str, str]]:
    """Every unrevoked token: hash → (name, role)."""
    return {bytes(r["token_hash"]): (r["name"], r["role"]) for r in await conn.fetch(
        "SELECT token_hash, name, role FROM machine_tokens WHERE revoked_at IS NULL")}


async def token_by_hash(conn: asyncpg.Connection, token_hash: bytes) -> tuple[str, str] | None:
    row = await conn.fetchrow("SELECT name, role FROM machine_tokens WHERE token_hash = $1"
                              " AND revoked_at IS NULL", token_hash)
    return None if row is None else (row["name"], row["role"])


# --- retention --------------------------------------------------------------------------

async def prune(conn: asyncpg.Connection, audit_days: int) -> dict[str, int]:
    """Delete audit rows older than the retention (never under 180 days: the settings
    refuse less) and sessions that ended or expired more than a day ago."""
    if audit_days < 180:
        raise ValueError("the audit log is kept at least 180 days")
    audit: str = await conn.execute(
        "DELETE FROM audit_log WHERE at < now() - make_interval(days => $1)", audit_days)
    sessions: str = await conn.execute(
        "DELETE FROM staff_sessions WHERE COALESCE(ended_at, expires_at)"
        " < now() - interval '1 day'")
    return {"audit": int(audit.split()[-1]), "sessions": int(sessions.split()[-1])}


PRUNE_EVERY = 3600.0
"""Seconds between the web workers' retention passes (idempotent: any worker may run one)."""


async def prune_forever(pool: asyncpg.Pool, audit_days: int,
                        every: float = PRUNE_EVERY) -> None:
    """The retention step, run by each web worker in the background (a PostgreSQL outage
    only postpones it)."""
    import asyncio
    import logging

    log = logging.getLogger(__name__)
    while True:
        try:
            async with pool.acquire() as conn:
                done = await prune(conn, audit_days)
            if any(done.values()):
                log.info("retention: deleted %(audit)d audit rows, %(sessions)d sessions",
                         done)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("retention pass postponed: %r", exc)
        await asyncio.sleep(every)
