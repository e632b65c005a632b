"""The baseline of the vote benchmark: a bare Starlette endpoint on the same server settings.

It answers the same ``POST /api/v1/campaigns/{cid}/votes`` with the same body model
(``VoteIn``, decoded by msgspec) and a small JSON answer, but does no identity, no limits and
no Redis. The vote endpoint's throughput over this one (b/a) is the share of the HTTP
stack's capacity that the vote logic leaves: the issue's goal is ≥ 0.6.

``python -m loadtests.bare_app --port P --workers W`` starts it as ``voting-service serve``
starts the service: uvicorn (uvloop + httptools, uvicorn's own protocol) for one worker,
gunicorn with ``uvicorn_worker.UvicornWorker`` for more. ``--asgi`` serves the same endpoint
as a plain ASGI callable instead, without Starlette.
"""

from __future__ import annotations

import argparse
import os
import sys

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from voting_service.models import VoteIn

_encoder = msgspec.json.Encoder()


def answer(body: bytes, campaign_id: str) -> tuple[int, bytes]:
    """Status and JSON body for a vote request's body: what both baselines answer."""
    try:
        ballot = msgspec.json.decode(body, type=VoteIn)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return 400, b'{"code":"invalid_request"}'
    return 200, _encoder.encode({"candidate_id": ballot.candidate_id,
                                 "campaign_id": campaign_id, "votes_left_today": 9})


async def vote(request: Request) -> Response:
    status, body = answer(await request.body(), request.path_params["cid"])
    return Response(body, status, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


_JSON = [(b"content-type", b"application/json")]


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The same endpoint as a plain ASGI callable, without Starlette (``--asgi``): the floor
    of any route on uvicorn, which the vote route (pure ASGI itself) is measured against in
    the votepath table, beside the Starlette baseline."""
    if scope["type"] == "lifespan":
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    status, body = 200, b'{"status":"ok"}'
    if scope["path"] != "/healthz":
        data = b""
        more = True
        while more:
            message = await receive()
            data += message.get("body", b"")
            more = message.get("more_body", False)
        status, body = answer(data, scope["path"].split("/")[4])
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app() -> Starlette:
    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/api/v1/campaigns/{cid}/votes", vote, methods=["POST"]),
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--asgi", action="store_true", help="the plain ASGI endpoint, no Starlette")
    args = p.parse_args()
    target = "loadtests.bare_app:asgi_app" if args.asgi else "loadtests.bare_app:create_app"
    # the same command lines as voting_service.cli.cmd_serve
    if args.workers > 1:
        os.execvp(sys.executable, [
            sys.executable, "-m", "gunicorn", target if args.asgi else f"{target}()",
            "-k", "uvicorn_worker.UvicornWorker", "-w", str(args.workers),
            "-b", f"{args.host}:{args.port}", "--graceful-timeout", "10",
            "--access-logfile", "/dev/null",
        ])
    import uvicorn

    uvicorn.run(
        target, factory=not args.asgi, host=args.host, port=args.port,
        loop="uvloop", http="httptools", access_log=False, lifespan="on",
        timeout_graceful_shutdown=10,
        proxy_headers=False,  # as the service: no uvicorn middleware reading X-Forwarded-For
    )


if __name__ == "__main__":
    main()
