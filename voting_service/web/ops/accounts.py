"""Signing in to the ops console with a staff account, and what a person does with theirs.

``POST /ops/login`` (name, password) → ``/ops/2fa`` (the TOTP code) → the console; on the
first sign-in (a new account, or an enrolment reset by an admin) ``/ops/enrol`` shows the
``otpauth://`` URI as a QR code and as text, and enables the second factor only once a code
from the app confirms it. Each credential check is reserved by the failed-attempt throttle
first (address + network, then account: ``fraud.auth_limits``), so racing requests cannot
check more than the limit; a right one is given back. Sign-ins, failures, enrolments,
sign-outs and password changes go to the audit log under the person's name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...accounts import passwords, store, totp
from ...errors import InvalidRequest, TooManyAttempts, VotingError
from ...fraud.auth_limits import Reservation
from ...services import Services, services
from .. import i18n
from ..auth import audit_quietly
from ..http import read_body
from ..metrics import AUTH_CHECKS, AUTH_REFUSED
from .console import _NEXT, _lang_query, _render, _words
from .session import (
    SESSION_SECONDS,
    STEP_SECONDS,
    Console,
    Session,
    address_of,
    clear_cookie,
    console,
    current,
    end,
    open_session,
    set_cookie,
)

FORM_LIMIT = 4096


def form_of(raw: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(raw.decode("utf-8"), max_num_fields=12)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("malformed form") from exc
    return {k: v[0] for k, v in parsed.items() if v}


def _next(raw: str | None) -> str:
    return raw if raw and _NEXT.fullmatch(raw) else "/ops"


def login_page(request: Request, words: i18n.Words, status: int = 200, message: str = "",
               next_path: str = "", headers: Mapping[str, str] | None = None,
               name: str = "") -> Response:
    next_path = next_path or request.url.path
    return _render(request, "ops_login.html", words, status, headers, message=message,
                   next=next_path, lang_path=next_path, session=None, name=name)


def _locked(words: i18n.Words, exc: TooManyAttempts) -> str:
    wait = int(exc.headers.get("Retry-After", "60"))
    return words("login_locked", m=max(1, round(wait / 60)))


async def _reserve(svc: Services, c: Console, kind: str, address: str,
                   name: str) -> Reservation:
    """Check and count one attempt (address + network, then the account) before the
    credential is looked at; ``TooManyAttempts`` past a limit."""
    try:
        reservation = await c.throttle.reserve(
            svc.redis, c.throttle.address_keys("console", address),
            c.throttle.account_keys(name or "-"))
    except TooManyAttempts:
        AUTH_REFUSED.labels(kind).inc()
        raise
    AUTH_CHECKS.labels(kind).inc()
    return reservation


async def _give_back(svc: Services, c: Console, reservation: Reservation) -> None:
    with contextlib.suppress(Exception):  # a right credential; Redis trouble costs a try
        await c.throttle.refund(svc.redis, reservation)


async def _failed(svc: Services, name: str, address: str, reason: str,
                  reservation: Reservation) -> None:
    await audit_quietly(svc, f"anonymous@{address}", "console.sign_in_failed", name,
                        {"address": address, "reason": reason,
                         "tries_left": reservation.left})


def _step_url(stage: str, next_path: str, words: i18n.Words) -> str:
    query = {"next": next_path} | ({"lang": "en"} if words.lang == "en" else {})
    return ("/ops/2fa" if stage == "second_factor" else "/ops/enrol") + "?" + urlencode(query)


def _with_cookie(response: Response, request: Request, svc: Services, c: Console,
                 session: Session) -> Response:
    max_age = SESSION_SECONDS if session.stage == "full" else STEP_SECONDS
    set_cookie(response, request, svc, c.sessions.sign(session), max_age)
    return response


async def login(request: Request) -> Response:
    """Name and password; then the second factor (or its enrolment) in a session step."""
    svc = services(request)
    c = console(request, svc)
    form = form_of(await read_body(request, FORM_LIMIT))
    words = _words(request, form.get("lang"))
    next_path = _next(form.get("next"))
    name = store.normal_name(form.get("name", ""))[:64]
    address = address_of(request, svc)
    try:
        reservation = await _reserve(svc, c, "password", address, name)
    except TooManyAttempts as exc:
        return login_page(request, words, 429, _locked(words, exc), next_path,
                          {"Retry-After": exc.headers["Retry-After"]}, name)
    account = None
    if store.NAME.fullmatch(name):
        async with svc.db() as conn:
            account = await store.account_by_name(conn, name)
    password = form.get("password", "")[:passwords.MAX_LENGTH]
    if not await passwords.averify(account.password_hash if account else None, password):
        await _failed(svc, name, address, "password", reservation)
        message = (words("login_wrong", n=reservation.left) if reservation.left else
                   words("login_locked", m=round(c.throttle.limits.window / 60)))
        return login_page(request, words, 401, message, next_path, name=name)
    assert account is not None
    if account.disabled:
        await _failed(svc, name, address, "disabled", reservation)
        return login_page(request, words, 403, words("login_disabled"), next_path, name=name)
    await _give_back(svc, c, reservation)
    stage = "second_factor" if account.enrolled else "enrol"
    session = await open_session(svc, account, stage, address)
    response = RedirectResponse(_step_url(stage, next_path, words), status_code=303)
    return _with_cookie(response, request, svc, c, session)


def _code_page(request: Request, words: i18n.Words, session: Session, status: int = 200,
               message: str = "", headers: Mapping[str, str] | None = None,
               **context: Any) -> Response:
    template = "ops_enrol.html" if session.stage == "enrol" else "ops_code.html"
    return _render(request, template, words, status, headers, message=message,
                   next=_next(request.query_params.get("next")), session=None,
                   person=session.name, **context)


async def _enrolment(svc: Services, session: Session) -> dict[str, Any]:
    async with svc.db() as conn:
        secret = await store.offer_enrolment(conn, session.account_id, totp.new_secret())
    uri = totp.uri(secret, session.name)
    return {"qr": totp.qr_svg(uri), "secret": " ".join(secret[i:i + 4]
                                                       for i in range(0, len(secret), 4)),
            "uri": uri}


async def code_form(request: Request) -> Response:
    """``GET /ops/2fa`` and ``GET /ops/enrol``: the code form of a half-finished sign-in."""
    svc = services(request)
    words = _words(request)
    stage = "enrol" if request.url.path == "/ops/enrol" else "second_factor"
    session = await current(request, svc, console(request, svc).sessions, auditor=True,
                            stage=stage)
    if session is None:
        return RedirectResponse("/ops" + _lang_query(words), status_code=303)
    extra = await _enrolment(svc, session) if stage == "enrol" else {}
    return _code_page(request, words, session, **extra)


async def code_post(request: Request) -> Response:
    """A TOTP code: completes the sign-in (and, at ``/ops/enrol``, enables the factor)."""
    svc = services(request)
    c = console(request, svc)
    form = form_of(await read_body(request, FORM_LIMIT))
    words = _words(request, form.get("lang"))
    stage = "enrol" if request.url.path == "/ops/enrol" else "second_factor"
    pending = await current(request, svc, c.sessions, auditor=True, stage=stage)
    if pending is None:
        return RedirectResponse("/ops" + _lang_query(words), status_code=303)
    next_path = _next(form.get("next"))
    address = address_of(request, svc)
    extra = await _enrolment(svc, pending) if stage == "enrol" else {}
    try:
        reservation = await _reserve(svc, c, "totp", address, pending.name)
    except TooManyAttempts as exc:
        return _code_page(request, words, pending, 429, _locked(words, exc),
                          {"Retry-After": exc.headers["Retry-After"]}, **extra)
    code = form.get("code", "")
    async with svc.db() as conn:
        account = await store.account_by_id(conn, pending.account_id)
        secret = None if account is None else (
            account.totp_pending if stage == "enrol" else account.totp_secret)
        step = None if account is None or secret is None else totp.match(
            secret, code, 0 if stage == "enrol" else account.totp_step)
        if step is not None:
            spent = (await store.confirm_enrolment(conn, pending.account_id, step)
                     if stage == "enrol" else
                     await store.spend_step(conn, pending.account_id, step))
            step = step if spent else None
    if account is None or account.disabled or step is None:
        await _failed(svc, pending.name, address, "code", reservation)
        message = (words("code_wrong", n=reservation.left) if reservation.left else
                   words("login_locked", m=round(c.throttle.limits.window / 60)))
        return _code_page(request, words, pending, 401, message, **extra)
    await _give_back(svc, c, reservation)
    await end(svc, pending)
    session = await open_session(svc, account, "full", address)
    if stage == "enrol":
        await audit_quietly(svc, session.actor, "account.enrolled", account.name,
                            {"address": address})
    await audit_quietly(svc, session.actor, "console.sign_in", account.name,
                        {"session": session.fingerprint, "address": address})
    response = RedirectResponse(
        (next_path if account.role != "auditor" else "/ops/audit") + _lang_query(words),
        status_code=303)
    return _with_cookie(response, request, svc, c, session)


async def logout(request: Request) -> Response:
    svc = services(request)
    words = _words(request)
    sessions = console(request, svc).sessions
    session = await current(request, svc, sessions, auditor=True)
    if session is not None:
        await end(svc, session)  # PostgreSQL down: a 503, the session is not ended
        await audit_quietly(svc, session.actor, "console.sign_out", session.name,
                            {"session": session.fingerprint,
                             "address": address_of(request, svc)})
    response = RedirectResponse("/ops" + _lang_query(words), status_code=303)
    clear_cookie(response, request, svc)
    return response


async def account_page(request: Request) -> Response:
    """``/ops/account``: who is signed in, and the password change."""
    svc = services(request)
    words = _words(request)
    session = await current(request, svc, console(request, svc).sessions, auditor=True)
    if session is None:
        return login_page(request, words)
    return _render(request, "ops_account.html", words, session=session)


async def change_password(request: Request) -> Response:
    svc = services(request)
    c = console(request, svc)
    form = form_of(await read_body(request, FORM_LIMIT))
    words = _words(request, form.get("lang"))
    session = await current(request, svc, c.sessions, write=True, auditor=True)
    if session is None:
        return login_page(request, words, 401, next_path="/ops")
    address = address_of(request, svc)

    def page(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
        return _render(request, "ops_account.html", words, status, headers, session=session,
                       message=message, ok=status == 200)

    new = form.get("new_password", "")
    if new != form.get("confirm_password", ""):
        return page(400, words("password_mismatch"))
    try:
        passwords.check_new(new)
    except VotingError:
        return page(400, words("password_weak", n=passwords.MIN_LENGTH))
    try:
        reservation = await _reserve(svc, c, "password", address, session.name)
    except TooManyAttempts as exc:
        return page(429, _locked(words, exc), {"Retry-After": exc.headers["Retry-After"]})
    async with svc.db() as conn:
        account = await store.account_by_id(conn, session.account_id)
    old = form.get("current_password", "")[:passwords.MAX_LENGTH]
    if account is None or not await passwords.averify(account.password_hash, old):
        await _failed(svc, session.name, address, "password_change", reservation)
        return page(401, words("password_wrong"))
    await _give_back(svc, c, reservation)
    hashed = await passwords.ahash(new)
    async with svc.db() as conn:
        ended = await store.set_password(conn, account.id, hashed, store.digest(session.id))
    await audit_quietly(svc, session.actor, "account.password_changed", account.name,
                        {"address": address, "sessions_ended": ended})
    return page(200, words("password_changed", n=ended))


routes = [
    Route("/ops/login", login, methods=["POST"]),
    Route("/ops/2fa", code_form, methods=["GET"]),
    Route("/ops/2fa", code_post, methods=["POST"]),
    Route("/ops/enrol", code_form, methods=["GET"]),
    Route("/ops/enrol", code_post, methods=["POST"]),
    Route("/ops/logout", logout, methods=["POST"]),
    Route("/ops/account", account_page, methods=["GET"]),
    Route("/ops/account/password", change_password, methods=["POST"]),
]
