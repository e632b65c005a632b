"""The service's own CSS and JavaScript, held in memory and gzip'd once; photo placeholders.

Nothing comes from a CDN (often unreachable for Chinese mobile users). URLs carry a content
hash (``/static/app.js?v=…``) so browsers keep the files for a year and a release still
reaches every phone at once.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import importlib.resources
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from starlette.requests import Request
from starlette.responses import Response

from ..services import services
from ..vote.registry import Registry

TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
YEAR = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "")


class Assets:
    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files: dict[str, Asset] = {}
        for name, body in files.items():
            suffix = name[name.rfind("."):]
            compressible = suffix in (".css", ".js", ".svg", ".json")
            gz = gzip.compress(body, 9, mtime=0) if compressible and len(body) > 256 else None
            self.files[name] = Asset(
                body, gz, TYPES.get(suffix, "application/octet-stream"),
                hashlib.sha256(body).hexdigest()[:12],
            )

    @classmethod
    def from_package(cls) -> Assets:
        root = importlib.resources.files("voting_service") / "static"
        return cls(dict(_walk(root, "")))

    def url(self, name: str) -> str:
        return f"/static/{name}?v={self.files[name].version}"

    def response(self, request: Request, name: str, cache: str | None = None) -> Response:
        asset = self.files.get(name)
        if asset is None:
            return Response(b"not found\n", 404, media_type="text/plain")
        if cache is None:
            cache = YEAR if request.query_params.get("v") == asset.version else SHORT
        headers = {"ETag": asset.etag, "Cache-Control": cache, "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        body = asset.body
        if asset.gzipped is not None and accepts_gzip(request):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        return Response(body, headers=headers, media_type=asset.media_type)


def _walk(node: Traversable, prefix: str) -> Iterable[tuple[str, bytes]]:
    for child in node.iterdir():
        name = prefix + child.name
        if child.is_dir():
            yield from _walk(child, name + "/")
        elif not child.name.startswith("."):
            yield name, child.read_bytes()


@functools.cache
def assets() -> Assets:
    return Assets.from_package()


async def static_file(request: Request) -> Response:
    return assets().response(request, request.path_params["path"])


# Placeholder portraits: the candidate's given name on a colour of its own.
_PALETTE = ("#b3261e", "#c2541a", "#a86b00", "#2e7d32", "#00796b", "#1565c0", "#5e35b1",
            "#8e244d", "#37474f", "#6d4c41")


def avatar_label(name: str) -> str:
    name = name.strip()
    if not name:
        return "?"
    if all(ord(ch) > 0x2E80 for ch in name):  # CJK: the given name, as on name badges
        return name[-2:] if len(name) >= 3 else name
    words = name.replace("-", " ").split()
    return "".join(w[0] for w in words[:2]).upper()


def avatar_svg(label: str, key: str) -> bytes:
    colour = _PALETTE[zlib.crc32(key.encode()) % len(_PALETTE)]
    size = 34 if len(label) <= 2 else 26
    text = html.escape(label[:4])
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 160" width="120" height="160">'
        f'<rect width="120" height="160" fill="{colour}"/>'
        '<path d="M0 118L120 62V160H0z" fill="#fff" fill-opacity=".08"/>'
        '<rect x="8" y="8" width="104" height="144" rx="4" fill="none" stroke="#fff"'
        ' stroke-opacity=".35"/>'
        f'<text x="60" y="{80 + size * 0.36:.0f}" text-anchor="middle" fill="#fff"'
        f' font-size="{size}" font-weight="600" font-family="PingFang SC,Hiragino Sans GB,'
        f'Microsoft YaHei,Noto Sans CJK SC,Noto Sans SC,sans-serif">{text}</text></svg>'
    ).encode()


def photo_name(registry: Registry, path: str, campaign_id: str | None, stem: str) -> str | None:
    """The name to draw: the candidate whose ``photo_url`` is this path, else by id."""
    if campaign_id:
        live = registry.public(campaign_id)
        if live is not None and stem in live.candidates:
            return live.candidates[stem].name
    for live in registry.campaigns.values():
        if registry.public(live.id) is None:
            continue  # a draft's candidates are not published: no names from them
        for cand in live.c.candidates:
            if cand.photo_url == path:
                return cand.name
    return None


async def photo(request: Request) -> Response:
    stem = request.path_params["stem"]
    name = photo_name(
        services(request).registry, request.url.path, request.query_params.get("c"), stem
    )
    label = avatar_label(name) if name is not None else stem[:4].upper()
    return Response(
        avatar_svg(label, stem),
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )
