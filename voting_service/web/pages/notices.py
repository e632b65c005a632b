"""The privacy notice (``/privacy``, linked from every public page's footer).

What the service collects and keeps, written from what the code does: phone numbers,
WeChat openids and partner user ids only as keyed HMACs, addresses for fraud control, and
how long each is kept (``VOTING_RETENTION_DAYS`` after publication, see ``ledger/purge``).
With ``?c=<campaign>`` it names that campaign's organisers and contact line.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...services import services
from ...vote.identity import VOTER_TOKEN_MAX_AGE
from .campaigns import _lang, render


async def privacy(request: Request) -> Response:
    svc = services(request)
    words = _lang(request)
    cid = (request.query_params.get("c") or "")[:64]
    live = svc.registry.public(cid) if cid else None
    modes = set(live.c.rules.identity) if live else {"anonymous", "sms", "partner", "wechat"}
    return render(
        request, "privacy.html", words,
        cache_key=(cid if live else "", svc.registry.version if live else 0),
        c=live.c if live else None, modes=modes, days=svc.settings.retention_days,
        token_days=VOTER_TOKEN_MAX_AGE // 86400,
        back=f"/c/{live.id}" if live else "/",
    )


routes = [Route("/privacy", privacy)]
