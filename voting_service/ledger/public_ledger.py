"""The public ledger: every accepted vote, one record a line, with chained day digests.

The format is specified in ``docs/verification.md``; ``verify`` (here, no database and no
secrets) recomputes it from the downloaded files alone. The only query of the ledger table
is ``RECORDS``, so a change of the table's shape is followed here and nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

FORMAT = "voting-service-ledger/1"
PURGED = "p:"
"""Marks a ``votes.voter_id`` that retention replaced by the voter's ledger pseudonym."""
RECORDS = """
SELECT day, vote_id, voter_id, candidate_id, channel, valid, invalidation_id
FROM votes WHERE campaign_id = $1
ORDER BY day, cast_at, vote_id, voter_id
"""
INSERT_PART = "INSERT INTO published_ledger (campaign_id, part, body) VALUES ($1, $2, $3)"
PARTS = "SELECT body FROM published_ledger WHERE campaign_id = $1 ORDER BY part"
PART_NUMBERS = "SELECT part FROM published_ledger WHERE campaign_id = $1 ORDER BY part"
PART = "SELECT body FROM published_ledger WHERE campaign_id = $1 AND part = $2"
LOOKUP = """
SELECT day, vote_id, voter_id, candidate_id, channel, valid, invalidation_id
FROM votes WHERE campaign_id = $1 AND vote_id = $2
ORDER BY day, cast_at, voter_id
"""


@dataclass(frozen=True)
class Record:
    day: str
    vote_id: str
    voter: str
    """The voter's pseudonym in this campaign (``Pseudonyms``), never the voter id."""
    candidate: str
    channel: str
    status: str | int
    """``"valid"`` or the id of the invalidation that struck the vote."""

    def canonical(self) -> bytes:
        return "\t".join((self.day, self.vote_id, self.voter, self.candidate, self.channel,
                          str(self.status))).encode() + b"\n"

    def as_json(self) -> dict[str, Any]:
        return {"day": self.day, "vote_id": self.vote_id, "voter": self.voter,
                "candidate": self.candidate, "channel": self.channel, "status": self.status}


class Pseudonyms:
    """Per-campaign keyed HMAC of the voter id: the votes of one voter link, but no one
    without the key can tie the pseudonym to a voter id (or one campaign's to another's)."""

    def __init__(self, pepper: str, campaign_id: str) -> None:
        self._key = hmac.new(pepper.encode(), b"ledger-pseudonym:" + campaign_id.encode(),
                             hashlib.sha256).digest()
        self._seen: dict[str, str] = {}

    def __call__(self, voter_id: str) -> str:
        known = self._seen.get(voter_id)
        if known is None:
            if voter_id.startswith(PURGED):  # already this pseudonym (``ledger/purge``)
                return voter_id[len(PURGED):]
            known = hmac.new(self._key, voter_id.encode(), hashlib.sha256).hexdigest()[:32]
            if len(self._seen) < 200_000:  # a day's busiest voters, bounded memory
                self._seen[voter_id] = known
        return known


def genesis(campaign_id: str) -> str:
    return hashlib.sha256(f"{FORMAT}\n{campaign_id}\n".encode()).hexdigest()


def _record(row: asyncpg.Record, pseudonym: Pseudonyms) -> Record:
    status: str | int = "valid" if row["valid"] else int(row["invalidation_id"] or 0)
    return Record(row["day"].isoformat(), row["vote_id"], pseudonym(row["voter_id"]),
                  row["candidate_id"], row["channel"] or "", status)


async def records(
    conn: asyncpg.Connection, campaign_id: str, pepper: str, prefetch: int = 5000
) -> AsyncIterator[Record]:
    """The campaign's ledger in its published order (call inside a transaction)."""
    pseudonym = Pseudonyms(pepper, campaign_id)
    async for row in conn.cursor(RECORDS, campaign_id, prefetch=prefetch):
        yield _record(row, pseudonym)


async def lookup(
    conn: asyncpg.Connection, campaign_id: str, pepper: str, vote_id: str
) -> list[Record]:
    pseudonym = Pseudonyms(pepper, campaign_id)
    return [_record(r, pseudonym) for r in await conn.fetch(LOOKUP, campaign_id, vote_id)]


@dataclass
class Chain:
    """Day digests chained over the days: ``D = SHA-256(previous hex digest, "\\n", day,
    "\\n", the day's canonical records)``, starting from ``genesis``."""

    campaign_id: str
    digest: str = ""
    days: list[dict[str, Any]] = field(default_factory=list)
    votes: int = 0
    valid: Counter[str] = field(default_factory=Counter)
    struck: Counter[int] = field(default_factory=Counter)
    file_bytes: int = 0
    """Length of the ledger file ``freeze`` wrote (0 before)."""
    file_sha256: str = ""
    """SHA-256 of that file: the strong ETag every pod serves it under."""
    _day: str = ""
    _count: int = 0
    _hash: Any = None

    def __post_init__(self) -> None:
        self.digest = genesis(self.campaign_id)

    def add(self, record: Record) -> dict[str, Any] | None:
        """Take the next record; return the finished day when this one starts a new day."""
        done = None
        if record.day != self._day:
            if record.day < self._day:
                raise ValueError(f"day {record.day} after {self._day}: records out of order")
            done = self.end_day()
            self._day = record.day
            self._hash = hashlib.sha256(f"{self.digest}\n{record.day}\n".encode())
        self._hash.update(record.canonical())
        self._count += 1
        self.votes += 1
        if record.status == "valid":
            self.valid[record.candidate] += 1
        else:
            self.struck[int(record.status)] += 1
        return done

    def end_day(self) -> dict[str, Any] | None:
        if not self._day:
            return None
        self.digest = self._hash.hexdigest()
        day = {"day": self._day, "votes": self._count, "digest": self.digest}
        self.days.append(day)
        self._day, self._count = "", 0
        return day


def header_line(campaign_id: str, published_at: str) -> dict[str, Any]:
    return {"format": FORMAT, "campaign_id": campaign_id, "published_at": published_at,
            "genesis": genesis(campaign_id)}


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def ndjson(
    source: AsyncIterator[Record], chain: Chain, published_at: str, lines_per_chunk: int = 20000
) -> AsyncIterator[bytes]:
    """The downloadable ledger in chunks: a header line, each day's records followed by a
    ``day_end`` line with its digest, and an ``end`` line with the last digest. ``chain``
    takes every record on the way, so it holds the digests when the last chunk is out."""
    batch = [_line(header_line(chain.campaign_id, published_at))]
    async for record in source:
        done = chain.add(record)
        if done is not None:
            batch.append(_line({"day_end": done["day"], "votes": done["votes"],
                                "digest": done["digest"]}))
        batch.append(_line(record.as_json()))
        if len(batch) >= lines_per_chunk:
            yield b"".join(batch)
            batch = []
    done = chain.end_day()
    if done is not None:
        batch.append(_line({"day_end": done["day"], "votes": done["votes"],
                            "digest": done["digest"]}))
    batch.append(_line({"end": True, "days": len(chain.days), "votes": chain.votes,
                        "digest": chain.digest}))
    yield b"".join(batch)


async def freeze(
    conn: asyncpg.Connection, campaign_id: str, pepper: str, published_at: str,
    lines_per_chunk: int = 20000,
) -> Chain:
    """Write the ledger file, compressed in parts, into ``published_ledger`` (call inside the
    publication's transaction): downloads then read it back instead of sorting the votes
    again, and it cannot drift from the digests published with it."""
    chain = Chain(campaign_id)
    part = 0
    whole = hashlib.sha256()
    async for chunk in ndjson(records(conn, campaign_id, pepper), chain, published_at,
                              lines_per_chunk):
        await conn.execute(INSERT_PART, campaign_id, part, zlib.compress(chunk, 6))
        whole.update(chunk)
        chain.file_bytes += len(chunk)
        part += 1
    chain.file_sha256 = whole.hexdigest()
    return chain


async def download(conn: asyncpg.Connection, campaign_id: str) -> AsyncIterator[bytes]:
    """The frozen ledger file, part by part."""
    async with conn.transaction(readonly=True):
        async for row in conn.cursor(PARTS, campaign_id, prefetch=2):
            yield zlib.decompress(row["body"])


# --- verification from the files alone --------------------------------------------------


class Mismatch(Exception):
    """The first place where the files do not agree."""


def _parse(lines: Iterable[bytes | str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(lines, start=1):
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise Mismatch(f"line {number}: not JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise Mismatch(f"line {number}: not a JSON object")
        yield number, obj


def _as_record(number: int, obj: dict[str, Any]) -> Record:
    try:
        status = obj["status"]
        if not (status == "valid" or (isinstance(status, int) and not isinstance(status, bool))):
            raise Mismatch(f"line {number}: status must be \"valid\" or an invalidation id")
        values = [obj[k] for k in ("day", "vote_id", "voter", "candidate", "channel")]
    except KeyError as exc:
        raise Mismatch(f"line {number}: record without {exc}") from exc
    if not all(isinstance(v, str) and "\t" not in v and "\n" not in v for v in values):
        raise Mismatch(f"line {number}: record fields must be text without tabs")
    day, vote_id, voter, candidate, channel = values
    return Record(day, vote_id, voter, candidate, channel, status)


def verify(lines: Iterable[bytes | str], results: dict[str, Any] | None = None) -> Chain:
    """Recompute the digests (and, given the published results, the totals); raise
    ``Mismatch`` at the first disagreement."""
    parsed = _parse(lines)
    try:
        number, head = next(parsed)
    except StopIteration:
        raise Mismatch("the ledger is empty") from None
    if head.get("format") != FORMAT or not isinstance(head.get("campaign_id"), str):
        raise Mismatch(f"line {number}: not a {FORMAT} header")
    campaign_id = head["campaign_id"]
    chain = Chain(campaign_id)
    if head.get("genesis") != chain.digest:
        raise Mismatch(f"line {number}: genesis is not SHA-256 of the header text")
    ended = False

    def check_day(done: dict[str, Any] | None, number: int, obj: dict[str, Any]) -> None:
        if done is None or obj.get("day_end") != done["day"]:
            raise Mismatch(f"line {number}: day_end {obj.get('day_end')!r} where the records"
                           f" of {done['day'] if done else 'no day'} end")
        if obj.get("votes") != done["votes"]:
            raise Mismatch(f"line {number}: {done['day']} has {done['votes']} records,"
                           f" the file says {obj.get('votes')}")
        if obj.get("digest") != done["digest"]:
            raise Mismatch(f"line {number}: digest of {done['day']} is {done['digest']},"
                           f" the file says {obj.get('digest')}")

    pending: dict[str, Any] | None = None
    for number, obj in parsed:
        if ended:
            raise Mismatch(f"line {number}: text after the end line")
        if "day_end" in obj:
            if chain._day == obj.get("day_end"):
                pending = chain.end_day()
            check_day(pending, number, obj)
            pending = None
        elif obj.get("end") is True:
            if chain._day:
                raise Mismatch(f"line {number}: the records of {chain._day} have no day_end")
            if obj.get("votes") != chain.votes or obj.get("days") != len(chain.days):
                raise Mismatch(f"line {number}: end line says {obj.get('votes')} votes over"
                               f" {obj.get('days')} days; counted {chain.votes} over"
                               f" {len(chain.days)}")
            if obj.get("digest") != chain.digest:
                raise Mismatch(f"line {number}: final digest is {chain.digest}, the file says"
                               f" {obj.get('digest')}")
            ended = True
        else:
            if chain._day and obj.get("day") != chain._day:
                raise Mismatch(f"line {number}: a record of {obj.get('day')} before the"
                               f" day_end of {chain._day}")
            if not chain._day and chain.days and str(obj.get("day")) <= chain.days[-1]["day"]:
                raise Mismatch(f"line {number}: day {obj.get('day')} after"
                               f" {chain.days[-1]['day']}: days out of order")
            try:
                chain.add(_as_record(number, obj))
            except ValueError as exc:
                raise Mismatch(f"line {number}: {exc}") from exc
    if not ended:
        raise Mismatch("the ledger has no end line (cut short?)")
    if results is not None:
        compare(chain, results)
    return chain


def compare(chain: Chain, results: dict[str, Any]) -> None:
    """The published results against what the ledger adds up to."""
    if results.get("campaign_id") != chain.campaign_id:
        raise Mismatch(f"results are of {results.get('campaign_id')!r}, the ledger of"
                       f" {chain.campaign_id!r}")
    if results.get("digest") != chain.digest:
        raise Mismatch(f"results digest {results.get('digest')} differs from the ledger's"
                       f" {chain.digest}")
    for published, day in zip(results.get("days") or [], chain.days, strict=False):
        if published != day:
            raise Mismatch(f"day {day['day']}: results say {published}, the ledger {day}")
    listed = {c.get("candidate_id"): c.get("votes") for c in results.get("candidates", [])}
    for cand in sorted(set(listed) | set(chain.valid)):
        if listed.get(cand, 0) != chain.valid.get(cand, 0):
            raise Mismatch(f"candidate {cand}: results say {listed.get(cand, 0)} valid votes,"
                           f" the ledger has {chain.valid.get(cand, 0)}")
    check_ranks(results.get("candidates", []))
    total = sum(chain.valid.values())
    if results.get("total") != total:
        raise Mismatch(f"results total {results.get('total')}, the ledger has {total} valid")
    struck = results.get("invalidated") or {}
    if struck.get("total") != sum(chain.struck.values()):
        raise Mismatch(f"results say {struck.get('total')} struck votes, the ledger has"
                       f" {sum(chain.struck.values())}")
    for item in struck.get("by_reason", []):
        ids = item.get("invalidations", [])
        counted = sum(chain.struck.get(int(i), 0) for i in ids)
        if counted != item.get("votes"):
            raise Mismatch(f"reason {item.get('reason')!r}: results say {item.get('votes')}"
                           f" struck votes, the ledger has {counted} for invalidations {ids}")


def check_ranks(candidates: list[dict[str, Any]]) -> None:
    """Only ``active`` candidates take a rank (competition ranking by votes: 1, 2, 2, 4); a
    withdrawn or removed candidate keeps their votes in the totals with ``rank`` null."""
    standing = sorted((c.get("votes", 0) for c in candidates if c.get("status") == "active"),
                      reverse=True)
    expected = {v: standing.index(v) + 1 for v in set(standing)}
    for c in candidates:
        want = expected.get(c.get("votes", 0)) if c.get("status") == "active" else None
        if c.get("rank") != want:
            raise Mismatch(f"candidate {c.get('candidate_id')} ({c.get('status')}, "
                           f"{c.get('votes')} votes): results give rank {c.get('rank')!r},"
                           f" expected {want!r}")
