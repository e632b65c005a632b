"""The objection form of the results page (issue 24 §2): ``POST /c/{cid}/objections``.

Accepted during the 公示 only, under a real name with a phone number (verified by an SMS
code when a real SMS sender is configured, through ``fraud.sms`` as for SMS voters) and a
postal address, with an optional attachment within bounds. Limited per address and per
network like the vote (fixed windows in Redis); every mistake is said beside its field.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from redis.exceptions import RedisError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...errors import InvalidCode, InvalidRequest, RateLimited
from ...fraud import sms
from ...ledger import objections
from ...redis import keys, scripts
from ...services import Services, services
from ...vote import identity
from ...vote.registry import LiveCampaign
from .. import i18n
from ..http import read_body
from .campaigns import _lang, not_found, render, results_context

BODY_LIMIT = objections.ATTACHMENT_LIMIT + 64 * 1024
PER_ADDRESS_HOUR = 5
PER_NETWORK_DAY = 50


async def _limit(svc: Services, request: Request) -> int:
    """Count this submission; the seconds to wait when over a limit (0: go on)."""
    address, network = identity.ip_prefixes(_ip(svc, request))[:2]
    count = scripts.load("count_failure")
    for key, window, cap in ((keys.objection_rate(address, "h"), 3600, PER_ADDRESS_HOUR),
                             (keys.objection_rate(network, "d"), 86400, PER_NETWORK_DAY)):
        n, ttl = await count(svc.redis, [key], [window])
        if int(n) > cap:
            return max(int(ttl), 1)
    return 0


def _ip(svc: Services, request: Request) -> str:
    client = request.client
    return identity.client_ip(client.host if client else None,
                              request.headers.get("x-forwarded-for"),
                              svc.settings.trusted_proxies)


async def _form(request: Request) -> tuple[dict[str, str], UploadFile | None]:
    raw = await read_body(request, BODY_LIMIT)
    request._body = raw  # parsed from what was read within the bound
    try:
        form = await request.form(max_files=1, max_fields=12,
                                  max_part_size=objections.ATTACHMENT_LIMIT + 1024)
    except Exception as exc:  # malformed multipart: the page says so, never a 500
        raise InvalidRequest(f"malformed form: {exc}") from exc
    values = {k: v.replace("\x00", "").strip() for k, v in form.items() if isinstance(v, str)}
    file = form.get("file")
    return values, file if isinstance(file, UploadFile) and file.filename else None


def _check(words: i18n.Words, live: LiveCampaign, v: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if v.get("candidate", "") not in live.candidates:
        errors["candidate"] = words("o_required")
    for name, limit in (("name", 50), ("address", 300)):
        if not v.get(name):
            errors[name] = words("o_required")
        elif len(v[name]) > limit:
            errors[name] = words("o_long", n=limit)
    text = v.get("text", "")
    if not text:
        errors["text"] = words("o_required")
    elif len(text) < 10:
        errors["text"] = words("o_text_short")
    elif len(text) > objections.TEXT_LIMIT:
        errors["text"] = words("o_text_long")
    return errors


def _phone(words: i18n.Words, raw: str) -> tuple[str, str]:
    if not raw:
        return "", words("o_required")
    try:
        return sms.normalize_phone(raw), ""
    except InvalidRequest:
        return "", words("o_phone_bad")


async def submit(request: Request) -> Response:
    svc = services(request)
    words = _lang(request)
    live = svc.registry.public(request.path_params["cid"])
    if live is None or live.c.published_at is None:
        return not_found(request, words)
    context = await results_context(request, svc, live, words)
    if context is None:
        return not_found(request, words)

    def page(status: int, **objection: Any) -> Response:
        context["objection"] = {"typed": {}, "errors": {}, "sent": None,
                                "code_sent": ""} | objection
        return render(request, "results.html", words, status=status, **context)

    if context["period"]["state"] != "on":
        return page(409, errors={"form": words("o_closed")})
    try:
        values, file = await _form(request)
    except InvalidRequest as exc:
        return page(400, errors={"form": exc.detail or exc.title})
    errors = _check(words, live, values)
    phone, phone_error = _phone(words, values.get("phone", ""))
    if phone_error:
        errors["phone"] = phone_error
    shown = {k: values.get(k, "") for k in ("candidate", "name", "phone", "address", "text")}
    sms_needed = bool(context["sms_needed"])
    try:
        if values.get("action") == "code":
            if phone_error:
                return page(422, typed=shown, errors={"phone": phone_error})
            await sms.start(svc.redis, svc.pipeline, svc.sms, str(svc.settings.pepper), live,
                            phone, _ip(svc, request))
            return page(200, typed=shown, code_sent=sms.masked(phone))
        attachment: bytes | None = None
        kind = ""
        if file is not None:
            attachment = await file.read(objections.ATTACHMENT_LIMIT + 1)
            kind = (file.content_type or "").split(";")[0].strip().lower()
            if len(attachment) > objections.ATTACHMENT_LIMIT:
                errors["file"] = words("o_file_big")
            elif kind not in objections.ATTACHMENT_TYPES or not _looks_like(attachment, kind):
                errors["file"] = words("o_file_type")
        verified = False
        if sms_needed and not errors:
            if not values.get("code"):
                errors["code"] = words("o_code_needed")
            else:
                await sms.verify(svc.pipeline, str(svc.settings.pepper), live, phone,
                                 values["code"], _ip(svc, request))
                verified = True
        if errors:
            return page(422, typed=shown, errors=errors)
        wait = await _limit(svc, request)
        if wait:
            return page(429, typed=shown,
                        errors={"form": words("o_rate", m=max(1, round(wait / 60)))})
        end: dt.datetime = context["period"]["end"]
        purge_after = end + dt.timedelta(days=svc.settings.objection_retention_days)
        name = re.sub(r"[^\w.\-]+", "_", (file.filename or "") if file else "")[:100]
        async with svc.db("public") as conn:
            oid = await objections.submit(conn, live.id, objections.Submission(
                values["candidate"], values["name"], phone, values["address"], values["text"],
                verified, attachment, name, kind), purge_after)
    except InvalidCode:
        return page(422, typed=shown, errors={"code": words("o_code_bad")})
    except RateLimited as exc:  # the SMS code's limits too
        wait = int((exc.headers or {}).get("Retry-After", "60"))
        return page(429, typed=shown,
                    errors={"form": words("o_rate", m=max(1, round(wait / 60)))})
    except (RedisError, OSError):
        return page(503, typed=shown, errors={"form": words("o_rate", m=1)})
    lang = "&lang=en" if words.lang == "en" else ""
    return RedirectResponse(f"/c/{live.id}/results?sent={oid}{lang}#vs-gongshi",
                            status_code=303)


_MAGIC = {"application/pdf": (b"%PDF",), "image/jpeg": (b"\xff\xd8\xff",),
          "image/png": (b"\x89PNG\r\n\x1a\n",)}


def _looks_like(body: bytes, kind: str) -> bool:
    """The file is what it says it is (its first bytes), not only by its name."""
    return body.startswith(_MAGIC.get(kind, (b"\x00\x00never",)))


routes = [
    Route("/c/{cid}/objections", submit, methods=["POST"]),
]
