"""The console's people and machines (admins) and the audit log (admins and auditors).

``/ops/staff``: staff accounts (create with a generated first password shown once, disable
and enable, reset the second factor or the password; each of these ends the account's
sessions) and machine bearer tokens (create, shown once; revoke). ``/ops/audit``: the audit
log, newest first, filtered by actor or action. Every change is audited under the admin's
name; the forms post to the console itself (same-origin checked like every write).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...accounts import passwords, store
from ...errors import Forbidden, NotFound, Unauthorized, VotingError
from ...ledger import db
from ...services import Services, services
from .. import i18n
from ..auth import auth_of
from ..http import problem, read_body
from .accounts import FORM_LIMIT, form_of, login_page
from .console import _render, _words
from .session import Session, console, current

AUDIT_PAGE = 100


async def _admin(request: Request, svc: Services, write: bool = False) -> Session:
    session = await current(request, svc, console(request, svc).sessions, write=write,
                            auditor=True)
    if session is None:
        raise Unauthorized("sign in to the ops console first")
    if not session.can_write:
        raise Forbidden("only an admin manages accounts and tokens")
    return session


async def _staff_page(request: Request, svc: Services, session: Session, words: i18n.Words,
                      status: int = 200, **shown: Any) -> Response:
    async with svc.db() as conn:
        people = [a.view() for a in await store.accounts(conn)]
        machines = await store.tokens(conn)
    return _render(request, "ops_staff.html", words, status, session=session,
                   accounts=people, tokens=machines, roles=store.ROLES,
                   token_roles=store.TOKEN_ROLES, **shown)


def _html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def staff(request: Request) -> Response:
    svc = services(request)
    words = _words(request)
    try:
        session = await _admin(request, svc)
    except Unauthorized:
        return login_page(request, words, next_path="/ops")
    return await _staff_page(request, svc, session, words)


async def staff_post(request: Request) -> Response:
    """One form of ``/ops/staff``; a browser gets the page again with the outcome, any
    other client the problem+json of a refusal."""
    svc = services(request)
    form = form_of(await read_body(request, FORM_LIMIT))
    words = _words(request, form.get("lang"))
    session = await _admin(request, svc, write=True)
    try:
        shown = await _act(request, svc, session, form)
    except VotingError as exc:
        if not _html(request):
            return problem(exc, request.url.path)
        return await _staff_page(request, svc, session, words, exc.status, error=exc.detail)
    return await _staff_page(request, svc, session, words, 200, **shown)


async def _act(request: Request, svc: Services, session: Session,
               form: dict[str, str]) -> dict[str, Any]:
    action = request.path_params.get("action", "")
    kind = request.path_params["kind"]
    target = request.path_params.get("name", "")
    if kind == "accounts" and not target:
        name = store.check_name(form.get("name", ""))
        role = store.check_role(form.get("role", ""))
        password = passwords.generate()
        hashed = await passwords.ahash(password)
        async with svc.db() as conn, conn.transaction():
            account = await store.create_account(conn, name, role, hashed, session.actor)
            await db.audit(conn, session.actor, "account.create", account.name, {"role": role})
        return {"created": {"name": account.name, "role": role, "password": password}}
    if kind == "tokens" and not target:
        async with svc.db() as conn, conn.transaction():
            token, view = await store.create_token(conn, form.get("name", ""),
                                                   form.get("role", ""), session.actor)
            await db.audit(conn, session.actor, "token.create", view["name"],
                           {"role": view["role"]})
        auth_of(request, svc).bearers.forget()
        return {"token": {"name": view["name"], "role": view["role"], "value": token}}
    if kind == "tokens" and action == "revoke":
        async with svc.db() as conn, conn.transaction():
            revoked = await store.revoke_token(conn, target)
            if revoked is None:
                raise NotFound(f"no live token named {target!r}")
            await db.audit(conn, session.actor, "token.revoke", revoked["name"], {})
        auth_of(request, svc).bearers.forget()
        return {"done": "token_revoked", "target": revoked["name"]}
    if kind != "accounts" or action not in ("disable", "enable", "reset-enrolment",
                                             "reset-password"):
        raise NotFound()
    async with svc.db() as conn, conn.transaction():
        account = await store.require_account(conn, target)
        if account.id == session.account_id and action in ("disable", "reset-enrolment"):
            raise Forbidden("an admin cannot lock themselves out; ask another admin")
        shown: dict[str, Any] = {"done": action.replace("-", "_"), "target": account.name}
        if action == "disable":
            ended = await store.set_disabled(conn, account.id, True)
        elif action == "enable":
            ended = await store.set_disabled(conn, account.id, False)
        elif action == "reset-enrolment":
            ended = await store.reset_enrolment(conn, account.id)
        else:
            password = passwords.generate()
            ended = await store.set_password(conn, account.id, await passwords.ahash(password))
            shown["reset"] = {"name": account.name, "password": password}
        await db.audit(conn, session.actor, f"account.{action.replace('-', '_')}",
                       account.name, {"sessions_ended": ended})
    return shown


def _audit_row(row: Any) -> dict[str, Any]:
    at: dt.datetime = row["at"]
    request = msgspec.json.decode(row["request"]) if row["request"] else {}
    return {"id": row["id"], "at": at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "actor": row["actor"], "action": row["action"], "target": row["target"],
            "request": msgspec.json.encode(request).decode()[:300]}


async def audit_log(request: Request) -> Response:
    """The audit log, newest first, ``?actor=`` / ``?action=`` (prefix) and ``?before=`` id."""
    svc = services(request)
    words = _words(request)
    session = await current(request, svc, console(request, svc).sessions, auditor=True)
    if session is None:
        return login_page(request, words)
    if not session.can_read_audit:
        raise Forbidden("the audit log is for admins and auditors")
    actor = request.query_params.get("actor", "")[:64]
    action = request.query_params.get("action", "")[:64]
    before = request.query_params.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 19 else 2**62
    async with svc.db() as conn:
        rows = await conn.fetch(
            "SELECT id, at, actor, action, target, request FROM audit_log WHERE id < $1"
            " AND ($2 = '' OR actor LIKE $2 || '%') AND ($3 = '' OR action LIKE $3 || '%')"
            " ORDER BY id DESC LIMIT $4", before_id, actor.replace("%", ""),
            action.replace("%", ""), AUDIT_PAGE)
    entries = [_audit_row(r) for r in rows]
    older = entries[-1]["id"] if len(entries) == AUDIT_PAGE else None
    return _render(request, "ops_audit.html", words, session=session, entries=entries,
                   actor=actor, action=action, older=older,
                   retention=svc.settings.audit_retention_days)


routes = [
    Route("/ops/staff", staff, methods=["GET"]),
    Route("/ops/staff/{kind:str}", staff_post, methods=["POST"]),
    Route("/ops/staff/{kind:str}/{name:str}/{action:str}", staff_post, methods=["POST"]),
    Route("/ops/audit", audit_log, methods=["GET"]),
]
