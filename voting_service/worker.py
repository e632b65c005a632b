"""Gunicorn worker class for ``serve --workers N``.

uvicorn's own proxy-header handling is switched off: which ``X-Forwarded-For`` to believe is
decided in one place only, by ``VOTING_TRUSTED_PROXIES`` (identity.client_ip). Request heads
are bounded by ``web/protocol.py``, chosen by ``web/server.py`` (gunicorn's
``limit_request_*`` do not apply to uvicorn workers, which parse requests themselves).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from .settings import Settings
from .web.server import http_protocol


class VotingWorker(UvicornWorker):  # type: ignore[misc,unused-ignore]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "httptools",
        "proxy_headers": False,
        "lifespan": "on",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.CONFIG_KWARGS = {  # type: ignore[misc]
            **VotingWorker.CONFIG_KWARGS,
            "http": http_protocol(Settings.from_env().head_timeout),
        }
        super().__init__(*args, **kwargs)
