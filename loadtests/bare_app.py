"""The baseline of the vote benchmark: a bare Starlette endpoint on the same server settings.

It answers the same ``POST /api/v1/campaigns/{cid}/votes`` with the same body model
(``VoteIn``, decoded by msgspec) and a small JSON answer, but does no identity, no limits and
no Redis. The vote endpoint's throughput over this one (b/a) is the share of the HTTP
stack's capacity that the vote logic leaves: the issue's goal is ≥ 0.6.

``python -m loadtests.bare_app --port P --workers W`` starts it exactly as
``voting-service serve`` starts the service: uvicorn (uvloop + httptools) for one worker,
gunicorn with ``uvicorn_worker.UvicornWorker`` for more.
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

from voting_service.models import VoteIn

_encoder = msgspec.json.Encoder()


async def vote(request: Request) -> Response:
    body = await request.body()
    try:
        ballot = msgspec.json.decode(body, type=VoteIn)
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return Response(b'{"code":"invalid_request"}', 400, media_type="application/json")
    answer = {"candidate_id": ballot.candidate_id, "campaign_id": request.path_params["cid"],
              "votes_left_today": 9}
    return Response(_encoder.encode(answer), media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


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
    args = p.parse_args()
    # the same command lines as voting_service.cli.cmd_serve
    if args.workers > 1:
        os.execvp(sys.executable, [
            sys.executable, "-m", "gunicorn", "loadtests.bare_app:create_app()",
            "-k", "uvicorn_worker.UvicornWorker", "-w", str(args.workers),
            "-b", f"{args.host}:{args.port}", "--graceful-timeout", "10",
            "--access-logfile", "/dev/null",
        ])
    import uvicorn

    uvicorn.run(
        "loadtests.bare_app:create_app", factory=True, host=args.host, port=args.port,
        loop="uvloop", http="httptools", access_log=False, lifespan="on",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
