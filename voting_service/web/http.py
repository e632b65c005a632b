"""HTTP edge helpers: JSON in and out, RFC 9457 problems, admin auth."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import digits
from ..errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    VotingError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_encoder = msgspec.json.Encoder()


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def problem_body(exc: VotingError, instance: str = "") -> bytes:
    """The RFC 9457 body of a domain error (``problem`` and the vote route send it)."""
    body: dict[str, Any] = {
        "type": f"https://errors.voting-service/{exc.code}",
        "title": exc.title,
        "status": exc.status,
        "code": exc.code,
        "detail": exc.detail,
    }
    if instance:
        body["instance"] = instance
    body.update(exc.extra)
    return _encoder.encode(body)


def encode_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header lines as they go on the wire, each ending in CRLF (for routes that write
    their own head; every name and value must be one of the service's own)."""
    return b"".join([b"%s: %s\r\n" % h for h in headers])


def problem(exc: VotingError, instance: str = "") -> Response:
    return Response(
        problem_body(exc, instance),
        status_code=exc.status,
        headers=exc.headers,
        media_type="application/problem+json",
    )


async def on_voting_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VotingError)
    return problem(exc, request.url.path)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    mapped: VotingError
    if exc.status_code == 404:
        mapped = NotFound()
    elif exc.status_code == 405:
        mapped = MethodNotAllowed(headers=exc.headers)
    else:
        mapped = InvalidRequest(str(exc.detail))
    return problem(mapped, request.url.path)


async def on_backend_down(request: Request, exc: Exception) -> Response:
    """Redis or PostgreSQL unreachable: a 503 the client may retry, never a 500."""
    log.warning("backend error on %s %s: %r", request.method, request.url.path, exc)
    return problem(Unavailable(), request.url.path)


async def on_bad_data(request: Request, exc: Exception) -> Response:
    """PostgreSQL refused a value it was sent (a NUL character in a text, say): the input
    was bad, so a 400, not a 500."""
    log.info("PostgreSQL refused data on %s %s: %r", request.method, request.url.path, exc)
    return problem(InvalidRequest("a value cannot be stored (e.g. a NUL character in a text)"),
                   request.url.path)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(InternalError(), request.url.path)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not digits.is_number(declared) or int(declared) > limit):
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(body: bytes, type_: type[T]) -> T:
    if not body:
        raise InvalidRequest("a JSON body is required")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc)) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from exc


async def json_body(request: Request, type_: type[T], limit: int = 2048) -> T:
    return decode(await read_body(request, limit), type_)


def role_of(tokens: Mapping[str, str], token: str) -> str | None:
    """The role of an admin token, compared in constant time against every known token."""
    role = None
    for known, known_role in tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            role = known_role
    return role


def fingerprint(token: str) -> str:
    """What the audit log shows of a token: enough to tell tokens apart, useless to a thief."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]
