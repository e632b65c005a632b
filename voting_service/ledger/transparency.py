"""The transparency log: a Merkle tree (RFC 9162) per campaign over the committed ledger.

Leaves, in log order (``docs/verification.md`` has the exact bytes):
- a vote: its canonical ledger record as accepted (status ``valid``), at the position the
  flusher's commit gave it (``batch.write``: consecutive from ``log_state.size``);
- an invalidation: its id, reason and the positions of the votes it strikes (``append``, in
  the invalidation's transaction), so the count of valid votes follows from the log alone;
- the published results, canonical JSON (in the publication's transaction): candidates'
  names, numbers, statuses and ranks (withdrawn candidates keep their votes and take no
  rank), the note and the reasons are then under the signature of the heads that follow.

Storage that keeps proofs cheap: vote leaves are not stored, they are recomputed from their
rows (in SQL: the pseudonym is an HMAC, written out as two SHA-256 calls); the complete
subtrees of 256 leaves and above are stored (``log_nodes``, two rows per 256 votes), by
``build`` off the vote path (the flusher's log tick). Rows are found by position through a
BRIN on the open day (a b-tree kept in step with each COPY cost the flusher a quarter of its
PostgreSQL rows a second; ``summarize``) and a b-tree once the day is sealed. A proof reads
O(log n) nodes and the leaves of at most a few 256-leaf chunks. Heads are signed with
Ed25519 every ``interval`` and at each local midnight, and kept forever.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import merkle

log = logging.getLogger(__name__)

HEAD_FORMAT = "voting-service-tree-head/1"
CHUNK_LEVEL = 8
CHUNK = 1 << CHUNK_LEVEL
"""Below this many leaves nothing is stored: a proof recomputes one chunk from its rows."""
BUILD_CHUNKS = 64
"""Chunks read in one query while building (16,384 leaves)."""
TICK_LEAVES = 1 << 17
"""Leaves one log tick builds at most per campaign (about half a second of PostgreSQL)."""
MAX_PROOF_LEAVES = 8 * CHUNK
"""A proof that would read more leaves than this waits for the builder (``LogBehind``)."""

RESERVE = """
INSERT INTO log_state (campaign_id, size) SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (campaign_id) DO UPDATE SET size = log_state.size + EXCLUDED.size
RETURNING campaign_id, size
"""
LEAVES = r"""
SELECT log_index AS idx, sha256('\x00'::bytea || convert_to(
    to_char(day, 'YYYY-MM-DD') || E'\t' || vote_id || E'\t'
    || CASE WHEN starts_with(voter_id, 'p:') THEN substr(voter_id, 3)
       ELSE encode(substr(sha256($2::bytea || sha256($3::bytea || convert_to(voter_id, 'UTF8'))),
                          1, 16), 'hex') END
    || E'\t' || candidate_id || E'\t' || channel || E'\tvalid\n', 'UTF8')) AS hash
FROM votes WHERE campaign_id = $1 AND log_index >= $4 AND log_index < $5
UNION ALL
SELECT idx, sha256('\x00'::bytea || body) FROM log_records
WHERE campaign_id = $1 AND idx >= $4 AND idx < $5
ORDER BY 1
"""
"""Each leaf from its row; a voter id the retention purge replaced (``p:`` + the ledger
pseudonym, ``ledger/purge``) already is the pseudonym, so the leaf is the one signed."""
OPEN_LOG_INDEXES = """
SELECT format('%I.%I', n.nspname, t.relname) AS part, h.inhrelid::regclass::text AS brin,
       NOT EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname
                   AND s.tablename = t.relname AND s.attname = 'log_index') AS unanalyzed
FROM pg_inherits h JOIN pg_index x ON x.indexrelid = h.inhrelid
JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class ic ON ic.oid = h.inhrelid JOIN pg_am am ON am.oid = ic.relam
WHERE h.inhparent = 'votes_log'::regclass AND am.amname = 'brin' AND NOT EXISTS (
    SELECT 1 FROM pg_index y JOIN pg_class i ON i.oid = y.indexrelid
    WHERE y.indrelid = t.oid AND i.relname = t.relname || '_log' AND y.indisvalid)
ORDER BY 1
"""
"""The partitions whose log positions only the BRIN of migration 0031 indexes (no sealed
day's b-tree yet), and whether the planner has their statistics."""
VOTE_ROWS = """
SELECT log_index, day, vote_id, voter_id, candidate_id, channel FROM votes
WHERE campaign_id = $1 AND vote_id = $2 AND log_index >= $3 AND log_index < $4
ORDER BY log_index LIMIT 8
"""


class LogBehind(Exception):
    """The tree is not built far enough for this proof yet (the builder catches up)."""


# --- keys and heads ---------------------------------------------------------------------


def signing_key(seed_hex: str) -> Ed25519PrivateKey:
    """The Ed25519 key from its 32-byte seed, 64 hex digits (``VOTING_LOG_SIGNING_KEY``)."""
    try:
        seed = bytes.fromhex(seed_hex.strip())
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ValueError("VOTING_LOG_SIGNING_KEY must be 64 hex digits (an Ed25519 seed)")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def head_message(campaign_id: str, size: int, root: bytes, timestamp_ms: int) -> bytes:
    """The bytes an Ed25519 head signature covers."""
    return (f"{HEAD_FORMAT}\n{campaign_id}\n{size}\n{root.hex()}\n{timestamp_ms}\n").encode()


def head_json(campaign_id: str, row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    at: dt.datetime = row["signed_at"]
    return {"campaign_id": campaign_id, "tree_size": int(row["size"]),
            "root_hash": bytes(row["root"]).hex(),
            "timestamp": int(at.timestamp() * 1000), "key_id": row["key_id"],
            "signature": base64.b64encode(bytes(row["signature"])).decode()}


def check_head(head: dict[str, Any], public: bytes) -> None:
    """Raise ``ValueError`` unless ``head`` is well formed and signed by ``public``."""
    want = {"campaign_id", "tree_size", "root_hash", "timestamp", "key_id", "signature"}
    if not isinstance(head, dict) or set(head) != want:
        raise ValueError(f"a head has exactly the fields {sorted(want)}")
    size, stamp = head["tree_size"], head["timestamp"]
    if any(type(v) is not int or v < 0 for v in (size, stamp)):
        raise ValueError("tree_size and timestamp are non-negative integers")
    root = bytes.fromhex(head["root_hash"]) if isinstance(head["root_hash"], str) else b""
    if len(root) != 32 or head["root_hash"] != root.hex():
        raise ValueError("root_hash is 64 lowercase hex digits")
    if head["key_id"] != key_id(public):
        raise ValueError(f"head signed by key {head['key_id']!r}, not {key_id(public)!r}")
    try:
        signature = base64.b64decode(head["signature"], validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(
            signature, head_message(head["campaign_id"], size, root, stamp))
    except Exception as exc:  # InvalidSignature, binascii.Error, TypeError
        raise ValueError(f"the signature of the head of size {size} does not verify") from exc


# --- leaves ----------------------------------------------------------------------------


class _Pseudonym:
    """The ledger pseudonym's HMAC key as the two padded keys SQL's ``sha256`` needs."""

    def __init__(self, pepper: str, campaign_id: str) -> None:
        key = hmac.new(pepper.encode(), b"ledger-pseudonym:" + campaign_id.encode(),
                       hashlib.sha256).digest().ljust(64, b"\0")
        self.inner = bytes(b ^ 0x36 for b in key)
        self.outer = bytes(b ^ 0x5C for b in key)


def canonical_json(obj: Any) -> str:
    """Keys sorted, no spaces, non-ASCII as UTF-8 (docs/verification.md, canonical JSON)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def invalidation_leaf(inv_id: int, reason: str, struck: Iterable[int]) -> bytes:
    head = f"invalidation\t{inv_id}\t{canonical_json(reason)}\n"
    return (head + "".join(f"{i}\n" for i in sorted(struck))).encode()


def results_leaf(results: dict[str, Any]) -> bytes:
    return f"results\n{canonical_json(results)}\n".encode()


async def reserve(conn: asyncpg.Connection, counts: dict[str, int]) -> dict[str, int]:
    """Take ``counts[c]`` consecutive positions of each campaign's log (inside the writer's
    transaction; the row lock orders concurrent writers, a rollback gives them back);
    returns each campaign's first position."""
    order = sorted(counts)
    rows = await conn.fetch(RESERVE, order, [counts[c] for c in order])
    return {r["campaign_id"]: int(r["size"]) - counts[r["campaign_id"]] for r in rows}


async def append(conn: asyncpg.Connection, campaign_id: str, kind: str, body: bytes) -> int:
    """A non-vote leaf at the log's end (inside the caller's transaction)."""
    at = (await reserve(conn, {campaign_id: 1}))[campaign_id]
    await conn.execute("INSERT INTO log_records (campaign_id, idx, kind, body)"
                       " VALUES ($1, $2, $3, $4)", campaign_id, at, kind, body)
    return at


async def append_invalidation(conn: asyncpg.Connection, campaign_id: str, inv_id: int,
                              reason: str) -> int | None:
    """The invalidation's leaf, naming the log positions of the votes it struck (call after
    they are marked, in the same transaction). ``None`` when the campaign has no log."""
    if not await conn.fetchval("SELECT 1 FROM log_state WHERE campaign_id = $1", campaign_id):
        return None
    struck = [int(r[0]) for r in await conn.fetch(
        "SELECT log_index FROM votes WHERE invalidation_id = $1 AND log_index IS NOT NULL",
        inv_id)]
    return await append(conn, campaign_id, "invalidation",
                        invalidation_leaf(inv_id, reason, struck))


# --- the stored tree -------------------------------------------------------------------


class Stored:
    """Range hashes of one campaign's stored tree: ``load`` what some ranges need (nodes of
    complete subtrees below ``built``, leaves elsewhere), then answer them synchronously."""

    def __init__(self, conn: asyncpg.Connection, campaign_id: str, pepper: str,
                 built: int) -> None:
        self.conn, self.campaign_id, self.built = conn, campaign_id, built
        self._keys = _Pseudonym(pepper, campaign_id)
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.leaves: dict[int, bytes] = {}

    def _plan(self, start: int, end: int, nodes: set[tuple[int, int]],
              leaves: set[int]) -> None:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0 and n >= CHUNK and end <= self.built:
            nodes.add((n.bit_length() - 1, start // n))
            return
        if n <= CHUNK:
            for c in range(start // CHUNK, (end - 1) // CHUNK + 1):
                leaves.add(c)
            return
        k = merkle.split(n)
        self._plan(start, start + k, nodes, leaves)
        self._plan(start + k, end, nodes, leaves)

    async def load(self, ranges: Iterable[tuple[int, int]], size: int) -> None:
        nodes: set[tuple[int, int]] = set()
        chunks: set[int] = set()
        for start, end in ranges:
            self._plan(start, end, nodes, chunks)
        want_nodes = sorted(k for k in nodes if k not in self.nodes)
        if want_nodes:
            rows = await self.conn.fetch(
                "SELECT level, idx, hash FROM log_nodes WHERE campaign_id = $1 AND (level, idx)"
                " IN (SELECT * FROM unnest($2::smallint[], $3::bigint[]))",
                self.campaign_id, [lv for lv, _ in want_nodes], [i for _, i in want_nodes])
            for r in rows:
                self.nodes[(int(r["level"]), int(r["idx"]))] = bytes(r["hash"])
            if len(rows) != len(want_nodes):
                raise LogBehind("the tree's stored nodes are missing some subtrees")
        want = sorted(c for c in chunks if c * CHUNK not in self.leaves)
        if len(want) * CHUNK > MAX_PROOF_LEAVES:
            raise LogBehind("the tree is not built that far yet")
        for c in want:
            await self.fetch_leaves(c * CHUNK, min((c + 1) * CHUNK, size))

    async def fetch_leaves(self, start: int, end: int) -> list[bytes]:
        rows = await self.conn.fetch(LEAVES, self.campaign_id, self._keys.outer,
                                     self._keys.inner, start, end)
        if len(rows) != end - start or (rows and (rows[0]["idx"] != start
                                                  or rows[-1]["idx"] != end - 1)):
            raise LogBehind(f"leaves {start}..{end} are not all in the ledger")
        out = [bytes(r["hash"]) for r in rows]
        for i, h in enumerate(out):
            self.leaves[start + i] = h
        return out

    def __call__(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 1:
            return self.leaves[start]
        if n & (n - 1) == 0 and start % n == 0 and n >= CHUNK and end <= self.built:
            return self.nodes[(n.bit_length() - 1, start // n)]
        k = merkle.split(n)
        return merkle.node_hash(self(start, start + k), self(start + k, end))


def _needed(fn: Any, *args: int) -> list[tuple[int, int]]:
    """The ranges a proof or root asks for (run once with a recording oracle)."""
    asked: list[tuple[int, int]] = []

    def record(start: int, end: int) -> bytes:
        asked.append((start, end))
        return merkle.EMPTY

    fn(record, *args)
    return asked


async def tree(conn: asyncpg.Connection, campaign_id: str, pepper: str) -> Stored:
    built = await conn.fetchval("SELECT built FROM log_trees WHERE campaign_id = $1",
                                campaign_id)
    return Stored(conn, campaign_id, pepper, int(built or 0))


async def root_of(t: Stored, size: int) -> bytes:
    if size == 0:
        return merkle.EMPTY
    await t.load([(0, size)], size)
    return t(0, size)


async def inclusion_proof(t: Stored, index: int, size: int) -> list[bytes]:
    await t.load(_needed(merkle.inclusion, index, size), size)
    return merkle.inclusion(t, index, size)


async def consistency_proof(t: Stored, first: int, second: int) -> list[bytes]:
    await t.load(_needed(merkle.consistency, first, second), second)
    return merkle.consistency(t, first, second)


async def summarize(conn: asyncpg.Connection) -> int:
    """Before the builder reads new leaves (inside its transaction, a savepoint): summarize
    the page ranges of the log positions' BRIN that were filled since the last call (one
    not summarized is read whole by every look-up of positions), and analyze a partition
    the planner knows nothing of yet (without the column's correlation it scans the whole
    partition rather than use the BRIN). Waits for no lock: a sealing pass's index build
    holds the partition's; skipped, look-ups are only slower. Returns the ranges
    summarized."""
    done = 0
    before = await conn.fetchval("SELECT current_setting('lock_timeout')")
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '200ms'")
            for r in await conn.fetch(OPEN_LOG_INDEXES):
                done += int(await conn.fetchval(
                    "SELECT brin_summarize_new_values($1::regclass)", r["brin"]))
                if r["unanalyzed"]:
                    await conn.execute(f"ANALYZE {r['part']}")
            await conn.execute("SELECT set_config('lock_timeout', $1, true)", before)
    except (asyncpg.LockNotAvailableError, asyncpg.InsufficientPrivilegeError) as exc:
        log.info("log positions' index not summarized this time: %s", exc)
        return 0
    return done


async def build(conn: asyncpg.Connection, campaign_id: str, pepper: str,
                max_leaves: int | None = None) -> int:
    """Store the subtrees of every complete chunk of the committed log (inside a
    transaction; one builder at a time per campaign: the ``log_trees`` row lock). Returns
    the leaves now covered."""
    await conn.execute("INSERT INTO log_trees (campaign_id) VALUES ($1) ON CONFLICT DO NOTHING",
                       campaign_id)
    built = int(await conn.fetchval(
        "SELECT built FROM log_trees WHERE campaign_id = $1 FOR UPDATE", campaign_id))
    size = int(await conn.fetchval(
        "SELECT size FROM log_state WHERE campaign_id = $1", campaign_id) or 0)
    target = size // CHUNK * CHUNK
    if max_leaves is not None:
        target = min(target, built + max_leaves // CHUNK * CHUNK)
    if target <= built:
        return built
    await summarize(conn)
    t = Stored(conn, campaign_id, pepper, built)
    fresh: dict[tuple[int, int], bytes] = {}

    async def node(level: int, idx: int) -> bytes:
        found = fresh.get((level, idx))
        if found is None:
            found = bytes(await conn.fetchval(
                "SELECT hash FROM log_nodes WHERE campaign_id = $1 AND level = $2 AND idx = $3",
                campaign_id, level, idx))
        return found

    at = built
    while at < target:
        end = min(at + BUILD_CHUNKS * CHUNK, target)
        leaves = await t.fetch_leaves(at, end)
        t.leaves.clear()
        for c in range(0, end - at, CHUNK):
            level, idx = CHUNK_LEVEL, (at + c) // CHUNK
            fresh[(level, idx)] = merkle.MemoryRanges(b"".join(leaves[c:c + CHUNK]))(0, CHUNK)
            while idx & 1:  # a right child completes its parent
                parent = merkle.node_hash(await node(level, idx - 1), fresh[(level, idx)])
                level, idx = level + 1, idx >> 1
                fresh[(level, idx)] = parent
        at = end
    items = sorted(fresh.items())
    await conn.execute(
        "INSERT INTO log_nodes (campaign_id, level, idx, hash)"
        " SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])",
        campaign_id, [k[0] for k, _ in items], [k[1] for k, _ in items], [h for _, h in items])
    await conn.execute("UPDATE log_trees SET built = $2 WHERE campaign_id = $1",
                       campaign_id, target)
    return target


# --- heads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogConfig:
    """What the log needs beside the database: the pepper (for the leaves' pseudonyms), the
    signing key (``None``: the tree is built, no heads are signed) and the head interval."""

    pepper: str
    key: Ed25519PrivateKey | None = None
    interval: dt.timedelta = dt.timedelta(minutes=10)


def config(settings: Any) -> LogConfig:
    """The log's configuration from ``Settings``."""
    seed = str(settings.log_signing_key)
    return LogConfig(str(settings.pepper), signing_key(seed) if seed else None,
                     dt.timedelta(minutes=settings.log_head_minutes))


def public_key_hex(settings: Any) -> str:
    """The heads' public key, 64 hex digits ('' when no key is configured)."""
    return _public_hex(str(settings.log_signing_key))


@functools.lru_cache(maxsize=4)
def _public_hex(seed: str) -> str:
    return public_bytes(signing_key(seed)).hex() if seed else ""


async def latest_head(conn: asyncpg.Connection, campaign_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT size, root, signed_at, key_id, signature FROM log_heads WHERE campaign_id = $1"
        " ORDER BY size DESC LIMIT 1", campaign_id)
    return row


def _due(last: asyncpg.Record | None, now: dt.datetime, interval: dt.timedelta,
         zone: str) -> bool:
    if last is None:
        return True
    if now - last["signed_at"] >= interval:
        return True
    tz = ZoneInfo(zone)
    return bool(now.astimezone(tz).date() != last["signed_at"].astimezone(tz).date())


async def sign_head(conn: asyncpg.Connection, campaign_id: str, config: LogConfig,
                    now: dt.datetime | None = None, *, force: bool = False,
                    zone: str = "Asia/Shanghai") -> dict[str, Any] | None:
    """Build the tree, then sign a head of the committed log when one is due (the interval
    since the last head passed, or a local midnight; ``force``: whenever it grew). One
    transaction; a concurrent signer of the same campaign waits, then finds it done."""
    if config.key is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        await build(conn, campaign_id, config.pepper)
        last = await latest_head(conn, campaign_id)
        size = int(await conn.fetchval(
            "SELECT size FROM log_state WHERE campaign_id = $1", campaign_id) or 0)
        if size == 0 or (last is not None and int(last["size"]) >= size):
            return None
        if not force and not _due(last, now, config.interval, zone):
            return None
        t = await tree(conn, campaign_id, config.pepper)
        root = await root_of(t, size)
        at = now.replace(microsecond=now.microsecond // 1000 * 1000)
        stamp = int(at.timestamp() * 1000)
        signature = config.key.sign(head_message(campaign_id, size, root, stamp))
        row = {"size": size, "root": root, "signed_at": at,
               "key_id": key_id(public_bytes(config.key)), "signature": signature}
        await conn.execute(
            "INSERT INTO log_heads (campaign_id, size, root, signed_at, key_id, signature)"
            " VALUES ($1, $2, $3, $4, $5, $6)", campaign_id, size, root, at, row["key_id"],
            signature)
    return head_json(campaign_id, row)


async def tick(conn: asyncpg.Connection, config: LogConfig, zones: dict[str, str],
               now: dt.datetime | None = None) -> int:
    """The flusher's log pass: build every campaign's tree and sign the heads that are due.
    Returns the heads signed."""
    signed = 0
    for row in await conn.fetch("SELECT campaign_id, size FROM log_state ORDER BY campaign_id"):
        cid = row["campaign_id"]
        try:
            async with conn.transaction():  # a bounded step: the flusher's commits wait on it
                built = await build(conn, cid, config.pepper, TICK_LEAVES)
            if built < int(row["size"]) // CHUNK * CHUNK:
                continue  # far behind (the log just turned on): heads once it caught up
            head = await sign_head(conn, cid, config, now,
                                   zone=zones.get(cid, "Asia/Shanghai"))
        except LogBehind as exc:  # rows of a commit not visible yet: the next tick
            log.info("log of %s: %s", cid, exc)
            continue
        signed += head is not None
    return signed
