"""A published campaign's frozen results and ledger file, served without holding a
database connection while a client reads (issue 23 §1).

Publication writes the ledger file once into PostgreSQL (``published_ledger``, compressed
parts) with its length and SHA-256 (``publications.ledger_bytes``/``ledger_sha256``). Each
pod copies it once to its own disk (``VOTING_LEDGER_CACHE_DIR``), one part at a time, a
connection taken and given back per part; the copy is checked against the recorded digest
and then served from the file by every download, with the digest as its strong ETag, so all
pods answer ``If-None-Match``/``If-Range`` alike. Pods share no disk, so nothing else is
assumed: a pod that restarts on an empty disk copies the file again. The results, a few
kilobytes, are kept in memory once read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import zlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from ..errors import NotPublished, Unavailable
from . import db, public_ledger

log = logging.getLogger(__name__)

PUBLICATION = """
SELECT results::text AS results, ledger_bytes, ledger_sha256
FROM publications WHERE campaign_id = $1
"""
RECORD_FILE = """
UPDATE publications SET ledger_bytes = $2, ledger_sha256 = $3
WHERE campaign_id = $1 AND ledger_sha256 IS NULL
"""
KEPT_RESULTS = 1000
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

Connect = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


def etag_of(sha256_hex: str) -> str:
    return f'"{sha256_hex}"'


@dataclass(frozen=True)
class FrozenResults:
    results: dict[str, Any]
    body: bytes
    """The results as the API sends them (JSON)."""
    etag: str
    ledger_bytes: int | None
    ledger_sha256: str | None


@dataclass(frozen=True)
class LedgerFile:
    path: Path
    size: int
    etag: str


class Frozen:
    """This worker's view of the published campaigns (``Services.frozen``)."""

    def __init__(self, directory: Path, connect: Connect) -> None:
        self.directory = directory
        self._connect = connect
        """A connection of the public budget."""
        self._results: dict[str, FrozenResults] = {}
        self._files: dict[str, LedgerFile] = {}
        self._copying: dict[str, asyncio.Task[LedgerFile]] = {}

    async def results(self, campaign_id: str) -> FrozenResults:
        """The published results; ``NotPublished``/``CampaignNotFound`` otherwise."""
        known = self._results.get(campaign_id)
        if known is not None:
            return known
        async with self._connect() as conn:
            row = await conn.fetchrow(PUBLICATION, campaign_id)
            if row is None:
                await db.require_campaign(conn, campaign_id)
                raise NotPublished(f"the results of {campaign_id!r} are not published yet")
        results = dict(json.loads(row["results"]))
        body = msgspec.json.encode(results)
        frozen = FrozenResults(results, body, etag_of(hashlib.sha256(body).hexdigest()),
                               row["ledger_bytes"], row["ledger_sha256"])
        if len(self._results) < KEPT_RESULTS:
            self._results[campaign_id] = frozen
        return frozen

    async def ledger(self, campaign_id: str) -> LedgerFile:
        """The local copy of the campaign's ledger file, made on first use (concurrent
        first downloads wait for one copy; a download that gives up does not stop it)."""
        known = self._files.get(campaign_id)
        if known is not None and known.path.exists():
            return known
        task = self._copying.get(campaign_id)
        if task is None:
            task = asyncio.create_task(self._copy(campaign_id))
            self._copying[campaign_id] = task
            task.add_done_callback(lambda _: self._copying.pop(campaign_id, None))
        return await asyncio.shield(task)

    def _name(self, campaign_id: str, sha256_hex: str) -> Path:
        stem = (campaign_id if _SAFE_NAME.fullmatch(campaign_id)
                else hashlib.sha256(campaign_id.encode()).hexdigest()[:32])
        return self.directory / f"{stem}-{sha256_hex[:16]}.ndjson"

    async def _copy(self, campaign_id: str) -> LedgerFile:
        frozen = await self.results(campaign_id)
        size, sha = frozen.ledger_bytes, frozen.ledger_sha256
        if sha is not None and size is not None:
            path = self._name(campaign_id, sha)
            with contextlib.suppress(OSError):
                if path.stat().st_size == size:  # copied before (another worker, a restart)
                    return self._keep(campaign_id, LedgerFile(path, size, etag_of(sha)))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.directory / f".{os.getpid()}-{secrets.token_hex(6)}.partial"
        except OSError as exc:
            log.error("cannot keep frozen ledgers in %s: %r", self.directory, exc)
            raise Unavailable("the ledger file cannot be served right now") from exc
        try:
            digest, total = await self._write(campaign_id, partial)
            if sha is not None and (digest != sha or total != size):
                log.error("ledger of %s copied as %d bytes, sha256 %s; publication recorded"
                          " %s bytes, %s", campaign_id, total, digest, size, sha)
                raise Unavailable("the ledger file cannot be served right now")
            if sha is None:  # published before the digest was recorded: record it once
                async with self._connect() as conn:
                    await conn.execute(RECORD_FILE, campaign_id, total, digest)
                self._results.pop(campaign_id, None)
            path = self._name(campaign_id, digest)
            os.replace(partial, path)
        except OSError as exc:
            log.error("cannot write the ledger of %s to %s: %r", campaign_id, self.directory,
                      exc)
            raise Unavailable("the ledger file cannot be served right now") from exc
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        return self._keep(campaign_id, LedgerFile(path, total, etag_of(digest)))

    async def _write(self, campaign_id: str, partial: Path) -> tuple[str, int]:
        """The file, part by part, into ``partial``: one connection per part, given back
        before the part is decompressed and written."""
        async with self._connect() as conn:
            parts = [r["part"] for r in await conn.fetch(public_ledger.PART_NUMBERS,
                                                         campaign_id)]
        whole = hashlib.sha256()
        total = 0
        with open(partial, "wb") as out:
            for part in parts:
                async with self._connect() as conn:
                    body = await conn.fetchval(public_ledger.PART, campaign_id, part)
                chunk = await asyncio.to_thread(zlib.decompress, body)
                await asyncio.to_thread(out.write, chunk)
                whole.update(chunk)
                total += len(chunk)
        return whole.hexdigest(), total

    def _keep(self, campaign_id: str, file: LedgerFile) -> LedgerFile:
        if len(self._files) < KEPT_RESULTS:
            self._files[campaign_id] = file
        return file
