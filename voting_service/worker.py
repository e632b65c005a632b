"""Gunicorn worker class for ``serve --workers N``.

uvicorn's own proxy-header handling is switched off: which ``X-Forwarded-For`` to believe is
decided in one place only, by ``VOTING_TRUSTED_PROXIES`` (identity.client_ip). Request heads
are bounded by ``web/server/protocol.py``, chosen by ``web/server/contract.py`` (gunicorn's
``limit_request_*`` do not apply to uvicorn workers, which parse requests themselves).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from .settings import Settings
from .web.server.contract import http_protocol


class VotingWorker(UvicornWorker):  # type: ignore[misc,unused-ignore]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "httptools",
        "proxy_headers": False,
        "lifespan": "on",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = Settings.from_env()
        self.CONFIG_KWARGS = {  # type: ignore[misc]
            **VotingWorker.CONFIG_KWARGS,
            "http": http_protocol(settings.head_timeout, settings.write_timeout),
        }
        super().__init__(*args, **kwargs)
