"""The organisers' console (issue 24): the whole year in the browser, under ``/ops``.

Campaign create and edit, channels, the quota table, the recommenders' spreadsheet (checked,
shown as a table, then confirmed), the candidate list and withdrawals, the year's steps
(open, close now, publish, announce) and the expert panel's results. Plain forms posted to
the server (no JavaScript needed): each page calls the same functions as the admin API, so
a change is validated with the same errors, audited with the console's actor (``Session``),
and refused the same way; the errors are put into words beside the field they concern.
Writes need the admin role and pass the same-origin check every state change passes.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import msgspec
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...errors import Conflict, InvalidRequest, LedgerBehind, NotClosed, Published
from ...ledger import candidate_import, export, gongshi, objections, publication, sheets
from ...models import (
    YEARS,
    CampaignIn,
    CampaignPatch,
    CandidatePatch,
    ChannelIn,
    SecretRotation,
    check_campaign,
    opening_year,
)
from ...redis import keys
from ...services import Services, services
from ...vote.registry import LiveCampaign
from .. import i18n
from ..api.admin import add_channel, new_campaign, rotate_secret, update_campaign
from ..api.organisers import (
    IMPORT_LIMIT,
    change_candidate,
    import_sheet,
    publish_campaign,
    save_quotas,
)
from ..http import read_body
from .console import _base, _login, _render, _session, _words, embed_snippet

ZONE = "Asia/Shanghai"
UPLOAD_SECONDS = 1800
"""How long a checked spreadsheet waits for the organiser's confirmation."""
FORM_LIMIT = 256 * 1024
_FIELD = re.compile(r"\$\.([a-z_]+)(?:\.([a-z_]+))?")
_BOUND = re.compile(r"(>=|<=) (\d+)")
LOCAL_INPUT = "%Y-%m-%dT%H:%M"
T = TypeVar("T")


# --- sessions, forms, errors in words ------------------------------------------------------


class Page(Exception):
    """A finished answer raised from deep inside a handler (sign-in page, refusal)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


async def _who(request: Request, write: bool = False
               ) -> tuple[Services, Any, i18n.Words]:
    svc = services(request)
    words = _words(request)
    session = await _session(request, svc)
    if session is None:
        raise Page(_login(request, words, 401 if request.method == "POST" else 200,
                          next_path="/ops"))
    if write and not session.can_write:
        raise Page(_render(request, "ops_message.html", words, 403, session=session,
                           message=words("forbidden"), back="/ops"))
    return svc, session, words


def _live(svc: Services, request: Request, words: i18n.Words, session: Any) -> LiveCampaign:
    live = svc.registry.campaigns.get(request.path_params["cid"])
    if live is None:
        raise Page(_render(request, "ops_missing.html", words, 404, session=session))
    return live


async def _fields(request: Request) -> dict[str, str]:
    raw = await read_body(request, FORM_LIMIT)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=600)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("malformed form") from exc
    found: dict[str, str] = {}
    for k, v in pairs:
        found.setdefault(k, v.replace("\x00", ""))
    return found


def field_error(words: i18n.Words, message: str) -> tuple[str, str]:
    """The form field an API error names, and the error in the page's words."""
    found = _FIELD.search(message)
    name = (found.group(2) or found.group(1)) if found else ""
    text = message
    if "closes_at must be after" in message:
        return "closes_at", words("e_after")
    if "time zone" in message:
        return "timezone", message
    if "exists" in message:
        return "id", words("e_exists")
    if "year must lie" in message or (name == "year" and _BOUND.search(message)):
        return "year", words("e_year", a=YEARS[0], b=YEARS[1])
    if words.lang == "zh":
        bound = _BOUND.search(message)
        if "missing required field" in message:
            name = message.rsplit("`", 2)[-2] if message.count("`") >= 2 else name
            text = words("e_required")
        elif "length >= 1" in message:
            text = words("e_required")
        elif "matching regex" in message and name in ("id", "ch_id"):
            text = words("e_id")
        elif "length <=" in message and bound:
            text = words("e_long", n=bound.group(2))
        elif bound and "int" in message:
            text = words("e_min" if bound.group(1) == ">=" else "e_max", n=bound.group(2))
        elif "Expected `int" in message:  # also `int | null`, an optional number
            text = words("e_int")
        elif "datetime" in message:
            text = words("e_time")
    return name, text


_STAND_INS: dict[str, Any] = {"id": "x", "title": "x", "year": YEARS[0], "votes_per_day": 1,
                              "per_candidate_per_day": 1, "challenge": "off",
                              "opens_at": "2000-01-01T00:00:00+00:00",
                              "closes_at": "2999-01-01T00:00:00+00:00"}


def checked(doc: dict[str, Any], type_: type[T], words: i18n.Words) -> tuple[T | None,
                                                                            dict[str, str]]:
    """Decode the form's document as the API decodes its body, and find every field's
    error, not only the first: a field found wrong is replaced by a stand-in and the
    document decoded again."""
    errors: dict[str, str] = {}
    trial = json.loads(json.dumps(doc))
    for _ in range(len(_STAND_INS) + 1):
        try:
            value = msgspec.json.decode(json.dumps(trial), type=type_)
        except msgspec.ValidationError as exc:
            name, text = field_error(words, str(exc))
            path = _FIELD.search(str(exc))
            if not path or name in errors or name not in _STAND_INS:
                errors[name or "form"] = text
                return None, errors
            errors[name] = text
            if path.group(2):
                trial[path.group(1)][path.group(2)] = _STAND_INS[name]
            else:
                trial[name] = _STAND_INS[name]
        else:
            if errors and isinstance(value, CampaignIn):
                try:  # the API's checks across fields, on what the form got right
                    check_campaign(value)
                except InvalidRequest as exc:
                    name, text = field_error(words, str(exc))
                    errors.setdefault(name or "form", text)
            return (None if errors else value), errors
    return None, errors


def _local(value: dt.datetime, zone: str = ZONE) -> str:
    return value.astimezone(ZoneInfo(zone)).strftime(LOCAL_INPUT)


def _shown(words: i18n.Words, value: dt.datetime | None, zone: str = ZONE) -> str:
    """A moment in the campaign's local time, as the organisers read it."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(zone))
    return f"{words.moment(local)}{'（北京时间）' if words.lang == 'zh' else ' (Beijing time)'}"


def _parse_local(text: str, zone: str) -> str | None:
    """A ``datetime-local`` value read in the campaign's zone, as ISO 8601 with offset."""
    try:
        naive = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if naive.tzinfo is not None:
        return naive.isoformat()
    return naive.replace(tzinfo=ZoneInfo(zone)).isoformat()


def _number(text: str) -> int | str:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?[0-9]{1,12}", text) else text


def _done(path: str, words: i18n.Words, **query: str) -> Response:
    if words.lang == "en":
        query["lang"] = "en"
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, status_code=303)


def _flash(request: Request, words: i18n.Words) -> str:
    key = request.query_params.get("done", "")
    values = {k: v[:200] for k, v in request.query_params.items() if k not in ("done", "lang")}
    if key and re.fullmatch(r"[a-z_]{2,30}", key) and key in words.messages:
        try:
            return words(key, **values)
        except (KeyError, IndexError):
            return ""
    return ""


def _nav(live: LiveCampaign, here: str) -> dict[str, Any]:
    """The campaign's tabs, and the page the language link reloads (a GET, also after a
    form was posted)."""
    path = f"/ops/c/{live.id}" + ("" if here == "live" else f"/{here}")
    return {"nav_cid": live.id, "nav_here": here, "lang_path": path}


# --- campaign create and edit ----------------------------------------------------------------


def _campaign_form(fields: Mapping[str, str], zone: str, new: bool) -> dict[str, Any]:
    """The form as the API's JSON document (so the API's own decoding judges it)."""
    doc: dict[str, Any] = {
        "title": fields.get("title", "").strip(),
        "show_counts": fields.get("show_counts") == "1",
        "rules": {"votes_per_day": _number(fields.get("votes_per_day", "")),
                  "per_candidate_per_day": _number(fields.get("per_candidate_per_day", "")),
                  "challenge": fields.get("challenge", "adaptive")},
    }
    for name in ("opens_at", "closes_at"):
        if name in fields:
            doc[name] = _parse_local(fields[name], zone) or fields[name]
    year = fields.get("year", "").strip()
    if year:
        doc["year"] = _number(year)
    elif not new and isinstance(opens := doc.get("opens_at"), str):
        with contextlib.suppress(ValueError):  # left empty: the year the vote opens in
            doc["year"] = opening_year(dt.datetime.fromisoformat(opens), zone)
    if new:
        doc |= {"id": fields.get("id", "").strip(), "timezone": ZONE, "status": "draft",
                "candidates": []}
    return doc


def _values(live: LiveCampaign | None) -> dict[str, Any]:
    if live is None:
        now = dt.datetime.now(dt.UTC)
        return {"id": "", "title": "", "year": "",
                "opens_at": _local(now + dt.timedelta(days=30)),
                "closes_at": _local(now + dt.timedelta(days=60)), "votes_per_day": "10",
                "per_candidate_per_day": "1", "challenge": "adaptive", "show_counts": True}
    c = live.c
    return {"id": c.id, "title": c.title, "year": str(c.year),
            "opens_at": _local(c.opens_at, c.timezone),
            "closes_at": _local(c.closes_at, c.timezone),
            "votes_per_day": str(c.rules.votes_per_day),
            "per_candidate_per_day": str(c.rules.per_candidate_per_day),
            "challenge": c.rules.challenge, "show_counts": c.show_counts}


def _echo(fields: Mapping[str, str]) -> dict[str, Any]:
    return {k: fields.get(k, "") for k in ("id", "title", "year", "opens_at", "closes_at",
                                           "votes_per_day", "per_candidate_per_day",
                                           "challenge")} | {
        "show_counts": fields.get("show_counts") == "1"}


async def new_page(request: Request) -> Response:
    try:
        svc, session, words = await _who(request, write=request.method == "POST")
        errors: dict[str, str] = {}
        values = _values(None)
        if request.method == "POST":
            fields = await _fields(request)
            values = _echo(fields)
            body, errors = checked(_campaign_form(fields, ZONE, new=True), CampaignIn, words)
            if body is not None:
                try:
                    await new_campaign(svc, session.actor, body)
                except (InvalidRequest, Conflict) as exc:
                    name, text = field_error(words, str(exc))
                    errors[name or "form"] = text
                else:
                    return _done(f"/ops/c/{body.id}/setup", words, done="saved")
        return _render(request, "ops_setup.html", words, 422 if errors else 200,
                       session=session, live=None, values=values, errors=errors,
                       flash="", channels=[], secret=None)
    except Page as page:
        return page.response


async def setup_page(request: Request) -> Response:
    try:
        svc, session, words = await _who(request, write=request.method == "POST")
        live = _live(svc, request, words, session)
        errors: dict[str, str] = {}
        values = _values(live)
        if request.method == "POST":
            fields = await _fields(request)
            values = _echo(fields) | {"id": live.id}
            doc = _campaign_form(fields, live.c.timezone, new=False)
            if live.c.published_at is not None:
                doc.pop("opens_at", None)
                doc.pop("closes_at", None)
            patch, errors = checked(doc, CampaignPatch, words)
            if patch is not None:
                try:
                    await update_campaign(svc, session.actor, live.id, patch)
                except (InvalidRequest, Published) as exc:
                    name, text = field_error(words, str(exc))
                    errors[name or "form"] = text
                else:
                    return _done(f"/ops/c/{live.id}/setup", words, done="saved")
        return _render(request, "ops_setup.html", words, 422 if errors else 200,
                       session=session, live=live, values=values, errors=errors,
                       flash=_flash(request, words), channels=_channels(request, svc, live),
                       secret=None, **_nav(live, "setup"))
    except Page as page:
        return page.response


def _channels(request: Request, svc: Services, live: LiveCampaign) -> list[dict[str, Any]]:
    base = _base(request, svc)
    return [{"id": ch.id, "name": ch.name, "origins": ch.allowed_origins,
             "snippet": embed_snippet(base, live.id, ch.id)} for ch in live.c.channels]


async def channel_add(request: Request) -> Response:
    try:
        svc, session, words = await _who(request, write=True)
        live = _live(svc, request, words, session)
        fields = await _fields(request)
        origins = [x.strip() for x in fields.get("origins", "").splitlines() if x.strip()]
        errors: dict[str, str] = {}
        secret: dict[str, Any] | None = None
        try:
            body = msgspec.convert({"id": fields.get("ch_id", "").strip(),
                                    "name": fields.get("ch_name", "").strip(),
                                    "allowed_origins": origins}, ChannelIn)
            secret = await add_channel(svc, session.actor, live.id, body)
        except (msgspec.ValidationError, InvalidRequest, Conflict) as exc:
            name, text = field_error(words, str(exc))
            errors["ch_" + (name or "id")] = text
        live = svc.registry.campaigns[live.id]
        return _render(request, "ops_setup.html", words, 422 if errors else 201,
                       session=session, live=live, values=_values(live), errors=errors,
                       flash="", channels=_channels(request, svc, live), secret=secret,
                       ch_values=fields if errors else {}, **_nav(live, "setup"))
    except Page as page:
        return page.response


async def channel_rotate(request: Request) -> Response:
    try:
        svc, session, words = await _who(request, write=True)
        live = _live(svc, request, words, session)
        secret = await rotate_secret(svc, session.actor, live.id,
                                     request.path_params["channel"], SecretRotation())
        until = secret["previous_valid_until"]
        secret["until"] = _shown(words, until) if isinstance(until, dt.datetime) else ""
        live = svc.registry.campaigns[live.id]
        return _render(request, "ops_setup.html", words, session=session, live=live,
                       values=_values(live), errors={}, flash="",
                       channels=_channels(request, svc, live), secret=secret,
                       **_nav(live, "setup"))
    except Page as page:
        return page.response


# --- candidates: quotas, import, list, withdrawal --------------------------------------------


def _quota_rows(usage: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for rec, q in usage["quotas"].items():
        rows.append({"recommender": rec, "quota": q["quota"], "used": q["used"],
                     "left": q["quota"] - q["used"], "over": q["used"] > q["quota"]})
    return rows


async def _candidates_view(request: Request, svc: Services, session: Any, words: i18n.Words,
                           live: LiveCampaign, status: int = 200, **extra: Any) -> Response:
    async with svc.db() as conn:
        usage = await candidate_import.quota_usage(conn, live.id)
    q = (request.query_params.get("q") or "").strip()[:100]
    listed = [x for x in live.c.candidates
              if not q or q in x.name or q == str(x.number) or q in x.recommender]
    from ..pages.campaigns import photo_url  # the public pages' own photo address

    rows = [{"x": x, "photo": photo_url(live, x)} for x in listed]
    context: dict[str, Any] = {
        "session": session, "live": live, "c": live.c, "usage": usage,
        "quotas": _quota_rows(usage), "rows": rows, "q": q, "flash": _flash(request, words),
        "report": None, "problems": None, "upload": "", "frozen": live.c.published_at is not None,
        "quota_errors": {},
    } | _nav(live, "candidates") | extra
    return _render(request, "ops_candidates.html", words, status, **context)


async def candidates_page(request: Request) -> Response:
    try:
        svc, session, words = await _who(request)
        live = _live(svc, request, words, session)
        return await _candidates_view(request, svc, session, words, live)
    except Page as page:
        return page.response


async def quotas_save(request: Request) -> Response:
    try:
        svc, session, words = await _who(request, write=True)
        live = _live(svc, request, words, session)
        fields = await _fields(request)
        table: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for i in range(200):
            rec = fields.get(f"r{i}", "").strip()
            raw = fields.get(f"q{i}", "").strip()
            if not rec and not raw:
                continue
            if not rec:
                errors[f"r{i}"] = words("e_required")
                continue
            number = _number(raw)
            if not isinstance(number, int):
                errors[f"q{i}"] = words("e_int") if raw else words("e_required")
                continue
            table[rec] = number
        if not errors:
            try:
                body = msgspec.convert(table, dict[str, int])
                for rec, n in body.items():
                    if not 0 <= n <= 100_000:
                        raise InvalidRequest(f"Expected `int` >= 0 - at `$.{rec}`")
                await save_quotas(svc, session.actor, live.id, body)
            except (msgspec.ValidationError, InvalidRequest, Published) as exc:
                errors["form"] = field_error(words, str(exc))[1]
            else:
                return _done(f"/ops/c/{live.id}/candidates", words, done="saved")
        return await _candidates_view(request, svc, session, words, live, 422,
                                      quota_errors=errors)
    except Page as page:
        return page.response


async def _upload_from_form(request: Request) -> tuple[bytes, str]:
    raw = await read_body(request, IMPORT_LIMIT + 64 * 1024)
    request._body = raw  # the form parser reads the body already read (and bounded)
    form = await request.form(max_files=1, max_fields=4, max_part_size=IMPORT_LIMIT)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        return b"", ""
    return await file.read(), file.filename or ""


def _problem_text(words: i18n.Words, errors: candidate_import.Errors) -> str:
    """The line above the errors: how many the file has, and that only the first are
    listed when there are more (the table holds ``candidate_import.MAX_ERRORS``)."""
    if errors.total > len(errors):
        return words("import_errors_first", n=errors.total, k=len(errors))
    return words("import_errors", n=errors.total)


def _kind_of(name: str, body: bytes) -> tuple[str, str | None]:
    if body[:2] == b"PK" or name.lower().endswith(".xlsx"):
        return sheets.media_kind(sheets.XLSX_TYPE)
    return sheets.media_kind("text/csv")


async def import_check(request: Request) -> Response:
    """A dry run of the chosen file: its problems as a table, or a summary and a token to
    confirm it with (the file waits in Redis meanwhile, not on the page)."""
    try:
        svc, session, words = await _who(request, write=True)
        live = _live(svc, request, words, session)
        body, name = await _upload_from_form(request)
        if not body:
            return await _candidates_view(request, svc, session, words, live, 422,
                                          problems=[], problem_text=words("import_nofile"))
        kind, charset = _kind_of(name, body)
        try:
            report = await import_sheet(svc, session.actor, live.id, body, kind, charset,
                                        dry_run=True)
        except candidate_import.Rejected as exc:
            return await _candidates_view(
                request, svc, session, words, live, 422, problems=exc.errors,
                problem_text=_problem_text(words, exc.errors), filename=name)
        token = secrets.token_urlsafe(18)
        await svc.redis.hset(keys.ops_upload(token), mapping={
            "body": base64.b64encode(body).decode(), "kind": kind, "charset": charset or "",
            "campaign": live.id, "name": name})
        await svc.redis.expire(keys.ops_upload(token), UPLOAD_SECONDS)
        return await _candidates_view(request, svc, session, words, live, report=report,
                                      upload=token, filename=name)
    except Page as page:
        return page.response


async def import_confirm(request: Request) -> Response:
    try:
        svc, session, words = await _who(request, write=True)
        live = _live(svc, request, words, session)
        token = (await _fields(request)).get("upload", "")
        found = (await svc.redis.hgetall(keys.ops_upload(token))
                 if re.fullmatch(r"[A-Za-z0-9_-]{16,40}", token) else {})
        saved: dict[str, str] = {str(k): str(v) for k, v in found.items()}
        if not saved or saved.get("campaign") != live.id:
            return await _candidates_view(request, svc, session, words, live, 409,
                                          problems=[], problem_text=words("import_expired"))
        body = base64.b64decode(saved["body"])
        try:
            report = await import_sheet(svc, session.actor, live.id, body, saved["kind"],
                                        saved["charset"] or None, dry_run=False)
        except candidate_import.Rejected as exc:  # something changed since the check
            return await _candidates_view(
                request, svc, session, words, live, 422, problems=exc.errors,
                problem_text=_problem_text(words, exc.errors))
        await svc.redis.delete(keys.ops_upload(token))
        return _done(f"/ops/c/{live.id}/candidates", words, done="import_done",
                     n=str(report.imported))
    except Page as page:
        return page.response


async def withdraw_page(request: Request) -> Response:
    try:
        svc, session, words = await _who(request, write=request.method == "POST")
        live = _live(svc, request, words, session)
        cand = live.candidates.get(request.path_params["candidate"])
        if cand is None:
            return _render(request, "ops_missing.html", words, 404, session=session)
        error = ""
        reason = ""
        if request.method == "POST":
            reason = (await _fields(request)).get("reason", "").strip()
            if not reason:
                error = words("e_required")
            else:
                try:
                    await change_candidate(svc, session.actor, live.id, cand.id,
                                           CandidatePatch(status="withdrawn", reason=reason))
                except (msgspec.ValidationError, InvalidRequest, Published) as exc:
                    error = field_error(words, str(exc))[1]
                else:
                    return _done(f"/ops/c/{live.id}/candidates", words, done="withdrawn_ok",
                                 name=cand.name)
        return _render(request, "ops_withdraw.html", words, 422 if error else 200,
                       session=session, live=live, x=cand, error=error, reason=reason,
                       **_nav(live, "candidates"))
    except Page as page:
        return page.response


# --- the year's steps ------------------------------------------------------------------------


def _steps(words: i18n.Words, live: LiveCampaign, row: Any, ends: dt.datetime | None,
           now: float) -> list[dict[str, Any]]:
    state = live.state(now)
    c = live.c
    published = row is not None
    announced = published and row["announced_at"] is not None
    over = ends is not None and time.time() >= ends.timestamp()
    reached = {
        "draft": True,
        "open": c.status != "draft",
        "closed": state == "closed",
        "published": published,
        "gongshi": over,
        "announced": announced,
    }
    order = list(reached)
    current = next((k for k in order if not reached[k]), None)
    when = {
        "draft": "",
        "open": _shown(words, c.opens_at, c.timezone),
        "closed": _shown(words, c.closes_at, c.timezone),
        "published": _shown(words, row["published_at"], c.timezone) if published else "",
        "gongshi": _shown(words, ends, c.timezone) if ends else "",
        "announced": _shown(words, row["announced_at"], c.timezone) if announced else "",
    }
    return [{"key": k, "label": words(f"step_{k}"), "when": when[k],
             "state": "done" if reached[k] else ("now" if k == current else "todo")}
            for k in order]


async def year_view(request: Request, svc: Services, session: Any, words: i18n.Words,
                    live: LiveCampaign, status: int = 200, refusal: str = "",
                    confirm: str = "", note: str = "") -> Response:
    async with svc.db() as conn:
        row = await publication.publication_row(conn, live.id)
    ends = _gongshi_end(svc, live, row["published_at"]) if row else None
    return _render(
        request, "ops_year.html", words, status, session=session, live=live, c=live.c,
        state=live.state(time.time()), steps=_steps(words, live, row, ends, time.time()),
        refusal=refusal, confirm=confirm, note=note, flash=_flash(request, words),
        published=row is not None, announced=bool(row and row["announced_at"]),
        gongshi_over=bool(ends and time.time() >= ends.timestamp()),
        gongshi=words("gongshi_days", n=svc.settings.gongshi_working_days,
                      t=_shown(words, ends, live.c.timezone)) if ends else "",
        window=_shown(words, live.c.opens_at, live.c.timezone) + " – "
        + _shown(words, live.c.closes_at, live.c.timezone), **_nav(live, "year"))


def _gongshi_end(svc: Services, live: LiveCampaign, published_at: dt.datetime) -> dt.datetime:
    s = svc.settings
    return gongshi.ends_at(published_at, live.c.timezone, s.gongshi_working_days, s.holidays,
                           s.extra_workdays)


async def year_page(request: Request) -> Response:
    try:
        svc, session, words = await _who(request)
        live = _live(svc, request, words, session)
        return await year_view(request, svc, session, words, live)
    except Page as page:
        return page.response


def _state_word(words: i18n.Words, live: LiveCampaign) -> str:
    return words(f"status_{live.state(time.time())}")


async def year_step(request: Request) -> Response:
    """``open``, ``close`` or ``publish`` (each after a confirmation), or ``announce``."""
    try:
        svc, session, words = await _who(request, write=True)
        live = _live(svc, request, words, session)
        step = request.path_params["step"]
        fields = await _fields(request)
        confirmed = fields.get("confirmed") == "1"
        note = fields.get("note", "").strip()[:2000]
        c, now = live.c, time.time()
        refusal = ""
        if step == "open":
            if c.status not in ("draft", "paused"):
                refusal = words("no_open_state", s=_state_word(words, live))
            elif not c.candidates:
                refusal = words("no_open_empty")
            elif c.closes_at.timestamp() <= now:
                refusal = words("no_open_window", t=_shown(words, c.closes_at, c.timezone))
        elif step == "close":
            if live.state(now) not in ("open", "paused", "upcoming") or c.status == "draft":
                refusal = words("no_close_state", s=_state_word(words, live))
        elif step == "publish":
            if c.published_at is not None:
                refusal = words("no_publish_done", t=_shown(words, c.published_at, c.timezone))
            elif c.status == "draft":
                refusal = words("no_publish_draft")
            elif c.status != "closed" and now < c.closes_at.timestamp():
                refusal = words("no_publish_open", t=_shown(words, c.closes_at, c.timezone))
        elif step != "announce":
            return _render(request, "ops_missing.html", words, 404, session=session)
        if refusal:
            return await year_view(request, svc, session, words, live, 409, refusal=refusal)
        if step in ("open", "close", "publish") and not confirmed:
            return await year_view(request, svc, session, words, live, confirm=step, note=note)
        try:
            if step == "open":
                await update_campaign(svc, session.actor, live.id, CampaignPatch(status="open"),
                                      action="campaign.open")
                return _done(f"/ops/c/{live.id}/year", words, done="opened_ok")
            if step == "close":
                closed = await update_campaign(svc, session.actor, live.id,
                                               CampaignPatch(status="closed"),
                                               action="campaign.close")
                return _done(f"/ops/c/{live.id}/year", words, done="closed_ok",
                             t=_shown(words, closed.closes_at, closed.timezone))
            if step == "publish":
                await publish_campaign(svc, session.actor, live.id, note)
                return _done(f"/ops/c/{live.id}/year", words, done="published_ok")
            async with svc.db() as conn:
                row = await publication.publication_row(conn, live.id)
                if row is None:
                    return await year_view(request, svc, session, words, live, 409,
                                           refusal=words("no_publish_draft"))
                ends = _gongshi_end(svc, live, row["published_at"])
                if time.time() < ends.timestamp():
                    return await year_view(
                        request, svc, session, words, live, 409,
                        refusal=words("no_announce", t=_shown(words, ends, live.c.timezone)))
                await publication.announce(conn, live.id, session.actor, note)
            return _done(f"/ops/c/{live.id}/year", words, done="saved")
        except LedgerBehind as exc:
            n = (exc.extra or {}).get("unflushed", "")
            return await year_view(request, svc, session, words, live, 409,
                                   refusal=words("no_publish_behind", n=n))
        except (NotClosed, Published, InvalidRequest) as exc:
            return await year_view(request, svc, session, words, live, 409,
                                   refusal=exc.detail or exc.title)
    except Page as page:
        return page.response


# --- results for the expert panel ------------------------------------------------------------


async def results_page(request: Request) -> Response:
    try:
        svc, session, words = await _who(request)
        live = _live(svc, request, words, session)
        async with svc.db() as conn:
            results = await export.collect(conn, live.id)
        if results is None:
            return _render(request, "ops_missing.html", words, 404, session=session)
        groups = [("b_region", results.by_region), ("b_industry", results.by_industry),
                  ("b_gender", results.by_gender), ("b_deed", results.by_deed_type),
                  ("b_recommender", results.by_recommender), ("b_channel", results.by_channel)]
        return _render(request, "ops_results.html", words, session=session, live=live,
                       c=live.c, r=results, groups=groups, balance=export.balance(results.ranking),
                       top=export.BALANCE_TOP, **_nav(live, "results"))
    except Page as page:
        return page.response


# --- objections (异议) during the 公示 ---------------------------------------------------------


async def objections_page(request: Request) -> Response:
    """Every objection; the submitters' names, phones, addresses and attachments only for
    the admin role (the ops role sees the objections and their handling)."""
    try:
        svc, session, words = await _who(request)
        live = _live(svc, request, words, session)
        async with svc.db() as conn:
            rows = await objections.listing(conn, live.id, personal=session.can_write)
        names = {x.id: f"{x.number} {x.name}" for x in live.c.candidates}
        for row in rows:
            row["candidate"] = names.get(row["candidate_id"], row["candidate_id"])
            row["when"] = _shown(words, row["submitted_at"], live.c.timezone)
        return _render(request, "ops_objections.html", words, session=session, live=live,
                       c=live.c, rows=rows, flash=_flash(request, words),
                       **_nav(live, "objections"))
    except Page as page:
        return page.response


def _objection_id(request: Request) -> int:
    raw = request.path_params["oid"]
    if not raw.isdigit() or int(raw) >= 2**63:
        raise Page(Response(status_code=404))
    return int(raw)


async def objection_step(request: Request) -> Response:
    """``answer`` (with the organisers' answer) or ``close``; audited, never with the
    submitter's data."""
    try:
        svc, session, words = await _who(request, write=True)
        live = _live(svc, request, words, session)
        oid = _objection_id(request)
        step = request.path_params["step"]
        text = (await _fields(request)).get("answer", "").strip()
        try:
            async with svc.db() as conn:
                if step == "answer":
                    if not text:
                        return _done(f"/ops/c/{live.id}/objections", words,
                                     done="e_required_answer")
                    await objections.answer(conn, session.actor, live.id, oid, text[:5000])
                elif step == "close":
                    await objections.close(conn, session.actor, live.id, oid)
                else:
                    return _render(request, "ops_missing.html", words, 404, session=session)
        except Conflict:
            return _done(f"/ops/c/{live.id}/objections", words, done="o_is_closed")
        return _done(f"/ops/c/{live.id}/objections", words, done="saved")
    except Page as page:
        return page.response


async def objection_file(request: Request) -> Response:
    try:
        svc, session, words = await _who(request, write=True)  # personal data: admin only
        live = _live(svc, request, words, session)
        async with svc.db() as conn:
            found = await objections.attachment(conn, live.id, _objection_id(request))
        if found is None:
            return _render(request, "ops_missing.html", words, 404, session=session)
        body, _name, kind = found
        ext = objections.ATTACHMENT_TYPES.get(kind, ".bin")
        return Response(body, media_type=kind, headers={
            "Content-Disposition": f'attachment; filename="objection{ext}"',
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    except Page as page:
        return page.response


routes = [
    Route("/ops/c/{cid}/objections", objections_page),
    Route("/ops/c/{cid}/objections/{oid}/file", objection_file),
    Route("/ops/c/{cid}/objections/{oid}/{step}", objection_step, methods=["POST"]),
    Route("/ops/new", new_page, methods=["GET", "POST"]),
    Route("/ops/c/{cid}/setup", setup_page, methods=["GET", "POST"]),
    Route("/ops/c/{cid}/channels", channel_add, methods=["POST"]),
    Route("/ops/c/{cid}/channels/{channel}/secret", channel_rotate, methods=["POST"]),
    Route("/ops/c/{cid}/candidates", candidates_page),
    Route("/ops/c/{cid}/quotas", quotas_save, methods=["POST"]),
    Route("/ops/c/{cid}/import", import_check, methods=["POST"]),
    Route("/ops/c/{cid}/import/confirm", import_confirm, methods=["POST"]),
    Route("/ops/c/{cid}/candidates/{candidate}/withdraw", withdraw_page,
          methods=["GET", "POST"]),
    Route("/ops/c/{cid}/year", year_page),
    Route("/ops/c/{cid}/year/{step}", year_step, methods=["POST"]),
    Route("/ops/c/{cid}/results", results_page),
]
