"""Gunicorn worker class for ``serve --workers N``.

uvicorn's own proxy-header handling is switched off: which ``X-Forwarded-For`` to believe is
decided in one place only, by ``VOTING_TRUSTED_PROXIES`` (identity.client_ip).
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker


class VotingWorker(UvicornWorker):  # type: ignore[misc,unused-ignore]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "httptools",
        "proxy_headers": False,
        "lifespan": "on",
    }
