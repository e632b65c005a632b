"""Browser tests: the service as a real process, a "media site" on another origin, Chromium.

Chromium is the machine's (``CHROMIUM``, ``chromium``/``chromium-browser`` on ``PATH``, or
Debian's ``/usr/bin/chromium``, installed by the run itself as root with apt: see
``system_packages``), driven by Playwright from PyPI with ``executable_path``: Playwright's
own browser download does not work offline.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)

from tests.conftest import ADMIN, ADMIN_TOKEN, OPS_TOKEN, SHARDS, campaign_payload
from tests.e2e.system_packages import (
    Missing,
    apt_install,
    can_apt,
    ensure_chromium,
    ensure_cjk_fonts,
)
from voting_service.embedded import free_port
from voting_service.stack import Stack, wait_ready_blocking

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1440, "height": 1000}
SCREENSHOTS = os.environ.get("VOTING_SCREENSHOTS", "")
"""Directory for the README screenshots (``docs/screenshots``); unset: a temp directory."""


@dataclass
class Service:
    """The web app as a process (uvicorn), on the test session's Valkey and PostgreSQL."""

    url: str
    redis_url: str
    database_url: str
    log: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    async def drain(self) -> None:
        """Commit the ledger to PostgreSQL, as the flusher process would."""
        from voting_service.ledger.flusher import Flusher
        from voting_service.redis import store
        from voting_service.settings import Settings

        redis = store.connect(Settings(redis_url=self.redis_url))
        flusher = Flusher(redis, self.database_url, SHARDS)
        try:
            await flusher.drain()
        finally:
            await flusher.close()
            await redis.aclose()

    def create_campaign(self, **changes: Any) -> dict[str, Any]:
        """A fresh campaign (unique id) through the admin API."""
        changes.setdefault("cid", f"e2e{uuid.uuid4().hex[:10]}")
        payload = campaign_payload(**changes)
        r = self.client.post("/api/v1/admin/campaigns", json=payload, headers=ADMIN)
        assert r.status_code == 201, r.text
        return payload

    def add_channel(self, cid: str, channel: str, origins: list[str]) -> str:
        r = self.client.post(
            f"/api/v1/admin/campaigns/{cid}/channels",
            json={"id": channel, "name": "媒体合作渠道", "allowed_origins": origins},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        secret: str = r.json()["secret"]
        return secret

    def set_status(self, cid: str, status: str) -> None:
        r = self.client.patch(
            f"/api/v1/admin/campaigns/{cid}", json={"status": status}, headers=ADMIN
        )
        assert r.status_code == 200, r.text

    def cast(self, cid: str, candidate: str, token: str | None = None) -> httpx.Response:
        """A vote as a non-browser client would cast it (fresh anonymous voter by default)."""
        from voting_service.fraud.challenge import solve

        campaign = self.client.get(f"/api/v1/campaigns/{cid}").json()
        proved = campaign["rules"]["challenge"] != "off"
        if token is None:
            minting: dict[str, Any] = {}
            if proved:  # a new token costs a proof of work too, issued to the address
                ch = self.client.get(f"/api/v1/campaigns/{cid}/challenge?for=voter")
                assert ch.status_code == 200, ch.text
                minting["json"] = {"proof": solve(ch.json())}
            r = self.client.post(f"/api/v1/campaigns/{cid}/voter", **minting)
            assert r.status_code == 201, r.text
            token = str(r.json()["token"])
        body: dict[str, Any] = {"candidate_id": candidate}
        if proved:
            ch = self.client.get(
                f"/api/v1/campaigns/{cid}/challenge", headers={"X-Voter-Token": token}
            )
            assert ch.status_code == 200, ch.text
            body["proof"] = solve(ch.json())
        return self.client.post(
            f"/api/v1/campaigns/{cid}/votes", json=body, headers={"X-Voter-Token": token}
        )

    def votes(self, cid: str) -> dict[str, int]:
        r = self.client.get(f"/api/v1/campaigns/{cid}/tallies")
        assert r.status_code == 200, r.text
        return {c["candidate_id"]: c["votes"] for c in r.json()["candidates"]}


SECRET_KEY = "e2e-secret-key-0123456789abcdef"
PEPPER = "e2e-pepper-0123456789abcdef"


@contextlib.contextmanager
def running_service(
    single_url: str, migrated: str, log: Path, *, env: dict[str, str] | None = None,
    args: tuple[str, ...] = (), port: int | None = None,
) -> Iterator[Service]:
    """``voting-service serve`` as a process on the test servers, stopped on the way out
    (on ``port`` when the test must know its address beforehand, e.g. for a callback)."""
    with Stack(log.parent, redis_url=single_url, database_url=migrated, secret_key=SECRET_KEY,
               pepper=PEPPER, admin_tokens=f"admin:{ADMIN_TOKEN},ops:{OPS_TOKEN}",
               shards=SHARDS, extra=env) as stack:
        web = stack.start_web(*args, port=port, log=log)
        wait_ready_blocking(web, port=web.port or 0)
        svc = Service(web.url, single_url, migrated, log)
        yield svc
        svc.client.close()


SERVERS = ["uvicorn", "gunicorn"]
"""What ``serve`` runs: uvicorn alone, or gunicorn with two uvicorn workers."""


@contextlib.contextmanager
def served_by(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              name: str, env: dict[str, str]) -> Iterator[Service]:
    """:func:`running_service` as ``request.param`` of ``SERVERS`` runs it."""
    log = tmp_path_factory.mktemp(name) / "serve.log"
    args = ("--workers", "2") if request.param == "gunicorn" else ()
    with running_service(request.getfixturevalue("single_url"),
                         request.getfixturevalue("migrated"), log, args=args, env=env) as svc:
        yield svc


@pytest.fixture(scope="module")
def service(single_url: str, migrated: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("service") / "serve.log"
    with running_service(single_url, migrated, log) as svc:
        yield svc


ARTICLE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>江苏最美工匠评选网络投票开启</title>
<style>
body{{margin:0;font:17px/1.7 system-ui,"Noto Sans CJK SC",sans-serif;color:#222;background:#fff}}
.masthead{{background:#0b3d91;color:#fff;padding:10px 16px;font-weight:700;letter-spacing:2px}}
article{{padding:4px 16px 40px}} h1{{font-size:22px;line-height:1.4;margin:14px 0 6px}}
.by{{color:#888;font-size:13px;margin:0 0 10px}}
</style></head>
<body><div class="masthead">江海新闻</div>
<article><h1>2026年“江苏最美工匠”评选网络投票正式开启</h1>
<p class="by">本报记者 · 2026-07-01</p>
<p>今年的候选人来自全省13个设区市，涵盖装备制造、电子信息、传统工艺等行业。即日起，读者可以在下方为心目中的最美工匠投票。</p>
{script}
<p>投票结果将作为评选的重要参考，最终结果以主办方公布为准。</p>
</article></body></html>
"""


def article_html(service_url: str, query: dict[str, list[str]]) -> str:
    attrs = {
        "data-campaign": query.get("campaign", [""])[0],
        "data-channel": query.get("channel", [""])[0],
    }
    for name in ("candidate", "partner-token", "lang"):
        if query.get(name):
            attrs[f"data-{name}"] = query[name][0]
    rendered = " ".join(f'{k}="{escape(v)}"' for k, v in attrs.items())
    script = f'<script src="{escape(service_url)}/embed.js" {rendered} async></script>'
    return ARTICLE.format(script=script)


@dataclass(frozen=True)
class MediaSite:
    """A media platform's article page, reachable as two origins on one port."""

    port: int

    @property
    def listed(self) -> str:
        """The origin the tests list in the channel's allowed_origins."""
        return f"http://localhost:{self.port}"

    @property
    def unlisted(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def media_site(service: Service) -> Iterator[MediaSite]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/article":
                self.send_error(404)
                return
            body = article_html(service.url, parse_qs(parts.query)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield MediaSite(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


_found: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before any test runs: a Chromium when a collected test drives one (and CJK fonts when
    screenshots are kept), installed as root with apt, else one line saying how to get it."""
    if not any("browser" in getattr(item, "fixturenames", ()) for item in items):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def install(package: str) -> None:
        if reporter is not None:
            reporter.write_line(f"installing Debian's {package} (apt-get install {package}) ...")
        apt_install(package)

    installer = install if can_apt() else None
    try:
        _found["chromium"] = ensure_chromium(installer=installer)
        if SCREENSHOTS:
            ensure_cjk_fonts(installer=installer)
    except Missing as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    chromium = _found.get("chromium") or ensure_chromium()
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def new_phone(browser: Browser, **options: Any) -> BrowserContext:
    settings: dict[str, Any] = {
        "viewport": PHONE, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
        "locale": "zh-CN", "timezone_id": "Asia/Shanghai",
    }
    settings.update(options)
    ctx = await browser.new_context(**settings)
    ctx.set_default_timeout(20_000)
    return ctx


@pytest.fixture
async def desk(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A desktop browser (the ops console), closed after the test."""
    ctx = await browser.new_context(viewport=DESKTOP, locale="zh-CN",
                                    timezone_id="Asia/Shanghai")
    ctx.set_default_timeout(20_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh phone: its own storage and cookies."""
    ctx = await new_phone(browser)
    try:
        yield ctx
    finally:
        await ctx.close()


@dataclass
class Problems:
    """JavaScript errors and console errors a page reported (CSP violations show up here)."""

    messages: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        # "Failed to load resource" is Chromium noting a 4xx answer (409 already voted, ...)
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.messages.append(f"console: {message.text}")


@pytest.fixture
def problems() -> Problems:
    return Problems()


def screenshot_path(tmp_path: Path, name: str) -> Path:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name

