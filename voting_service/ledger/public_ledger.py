"""The public ledger: every accepted vote, one record a line, with chained day digests.

The format is specified in ``docs/verification.md``; ``verify`` (here, no database and no
secrets) recomputes it from the downloaded files alone. The only query of the ledger table
is ``RECORDS``, so a change of the table's shape is followed here and nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from . import merkle, transparency

FORMAT = "voting-service-ledger/1"
PURGED = "p:"
"""Marks a ``votes.voter_id`` that retention replaced by the voter's ledger pseudonym."""
RECORDS = """
SELECT day, vote_id, voter_id, candidate_id, channel, valid, invalidation_id, log_index
FROM votes WHERE campaign_id = $1
ORDER BY day, cast_at, vote_id, voter_id
"""
INSERT_PART = "INSERT INTO published_ledger (campaign_id, part, body) VALUES ($1, $2, $3)"
PARTS = "SELECT body FROM published_ledger WHERE campaign_id = $1 ORDER BY part"
PART_NUMBERS = "SELECT part FROM published_ledger WHERE campaign_id = $1 ORDER BY part"
PART = "SELECT body FROM published_ledger WHERE campaign_id = $1 AND part = $2"
LOG_LINES = """
SELECT idx, body FROM log_records WHERE campaign_id = $1 AND kind = 'invalidation' ORDER BY idx
"""
LOOKUP = """
SELECT day, vote_id, voter_id, candidate_id, channel, valid, invalidation_id, log_index
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
    log: int | None = None
    """The vote's position in the transparency log (``None``: flushed without the log)."""

    def canonical(self, status: str | int | None = None) -> bytes:
        return "\t".join((self.day, self.vote_id, self.voter, self.candidate, self.channel,
                          str(self.status if status is None else status))).encode() + b"\n"

    def leaf(self) -> bytes:
        """The vote's leaf in the transparency log: its record as accepted."""
        return self.canonical("valid")

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"day": self.day, "vote_id": self.vote_id, "voter": self.voter,
                               "candidate": self.candidate, "channel": self.channel,
                               "status": self.status}
        if self.log is not None:
            out["log"] = self.log
        return out


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
    log = row["log_index"]
    return Record(row["day"].isoformat(), row["vote_id"], pseudonym(row["voter_id"]),
                  row["candidate_id"], row["channel"] or "", status,
                  None if log is None else int(log))


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
    published_at: str = ""
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


def parse_invalidation_leaf(body: bytes) -> dict[str, Any]:
    """An invalidation leaf (``transparency.invalidation_leaf``) as its ledger line."""
    first, _, rest = body.decode().partition("\n")
    kind, inv_id, reason = first.split("\t", 2)
    if kind != "invalidation":
        raise ValueError("not an invalidation leaf")
    return {"invalidation": int(inv_id), "reason": json.loads(reason),
            "strikes": [int(x) for x in rest.split("\n") if x]}


async def ndjson(
    source: AsyncIterator[Record], chain: Chain, published_at: str, lines_per_chunk: int = 20000,
    log: tuple[int, list[dict[str, Any]]] | None = None,
) -> AsyncIterator[bytes]:
    """The downloadable ledger in chunks: a header line, each day's records followed by a
    ``day_end`` line with its digest, the log's invalidation lines, and an ``end`` line with
    the last digest (and the log's size). ``chain`` takes every record on the way, so it
    holds the digests when the last chunk is out. ``log``: the log's size and its
    invalidation lines (``{log, invalidation, reason, strikes}``)."""
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
    end: dict[str, Any] = {"end": True, "days": len(chain.days), "votes": chain.votes,
                           "digest": chain.digest}
    if log is not None:
        batch += [_line(x) for x in log[1]]
        end["log_size"] = log[0]
    batch.append(_line(end))
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
    # the log before its results leaf (a file frozen again after publication is the same)
    size = await conn.fetchval(
        "SELECT coalesce((SELECT min(idx) FROM log_records WHERE campaign_id = $1"
        " AND kind = 'results'), size) FROM log_state WHERE campaign_id = $1", campaign_id)
    log = None
    if size is not None:
        lines = [{"log": int(r["idx"]), **parse_invalidation_leaf(bytes(r["body"]))}
                 for r in await conn.fetch(LOG_LINES, campaign_id)]
        log = (int(size), lines)
    async for chunk in ndjson(records(conn, campaign_id, pepper), chain, published_at,
                              lines_per_chunk, log):
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


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        if key in out:
            raise Mismatch(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise Mismatch(f"non-canonical number {text} (only integers, without fraction or exponent)")


def _int(text: str) -> int:
    if text == "-0":
        raise Mismatch("non-canonical number -0")
    return int(text)


def _constant(text: str) -> Any:
    raise Mismatch(f"{text} is not JSON")


def strict_json(text: str | bytes) -> Any:
    """JSON as ``verify`` reads it: a duplicate key, a fraction, an exponent, ``-0``,
    ``NaN`` are errors (two parsers must not read one file two ways)."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_float=_no_float,
                          parse_int=_int, parse_constant=_constant)
    except ValueError as exc:
        if isinstance(exc, Mismatch):
            raise
        raise Mismatch(f"not JSON ({exc})") from exc


def _parse(lines: Iterable[bytes | str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            raise Mismatch(f"line {number}: not UTF-8") from exc
        if not text.strip():
            continue
        try:
            obj = strict_json(text)
        except Mismatch as exc:
            raise Mismatch(f"line {number}: {exc}") from exc
        if not isinstance(obj, dict):
            raise Mismatch(f"line {number}: not a JSON object")
        yield number, obj


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
RECORD_KEYS = frozenset({"day", "vote_id", "voter", "candidate", "channel", "status"})


def _is_int(value: Any, low: int = 0) -> bool:
    return type(value) is int and value >= low


def _keys(number: int, obj: dict[str, Any], want: Iterable[str], what: str) -> None:
    want = set(want)
    if set(obj) != want:
        extra, missing = sorted(set(obj) - want), sorted(want - set(obj))
        raise Mismatch(f"line {number}: a {what} has exactly the fields {sorted(want)}"
                       + (f"; unknown {extra}" if extra else "")
                       + (f"; missing {missing}" if missing else ""))


def _as_record(number: int, obj: dict[str, Any], logged: bool) -> Record:
    _keys(number, obj, RECORD_KEYS | ({"log"} if logged else set()), "record")
    status = obj["status"]
    if not (status == "valid" or _is_int(status, 1)):
        raise Mismatch(f"line {number}: status must be \"valid\" or an invalidation id")
    values = [obj[k] for k in ("day", "vote_id", "voter", "candidate", "channel")]
    if not all(isinstance(v, str) and "\t" not in v and "\n" not in v for v in values):
        raise Mismatch(f"line {number}: record fields must be text without tabs")
    day, vote_id, voter, candidate, channel = values
    if not _DAY.fullmatch(day) or not _HEX32.fullmatch(voter) or not vote_id or not candidate:
        raise Mismatch(f"line {number}: a record's day is YYYY-MM-DD, its voter 32 hex digits")
    position = obj.get("log")
    if logged and not _is_int(position):
        raise Mismatch(f"line {number}: log is the vote's position, an integer")
    return Record(day, vote_id, voter, candidate, channel, status, position)


@dataclass
class Log:
    """What the ledger file says of the transparency log: every leaf's hash by position."""

    size: int = 0
    leaves: dict[int, bytes] = field(default_factory=dict)
    strikes: dict[int, int] = field(default_factory=dict)
    """Log position of a struck vote → the invalidation that struck it."""
    reasons: dict[int, str] = field(default_factory=dict)
    """Invalidation id → its reason, as logged."""
    struck_status: dict[int, str | int] = field(default_factory=dict)
    """Log position of each vote → the status its record gives."""

    def put(self, number: int, position: int, leaf: bytes) -> None:
        if position in self.leaves:
            raise Mismatch(f"line {number}: log position {position} is taken twice")
        self.leaves[position] = merkle.leaf_hash(leaf)

    def hashes(self, extra: bytes | None = None) -> bytearray:
        """The leaf hashes in log order (plus ``extra``, the results leaf, at the end)."""
        out = bytearray()
        for i in range(self.size):
            out += self.leaves[i]
        if extra is not None:
            out += merkle.leaf_hash(extra)
        return out


def verify(lines: Iterable[bytes | str], results: dict[str, Any] | None = None) -> Chain:
    """Recompute the digests (and, given the published results, the totals); raise
    ``Mismatch`` at the first disagreement."""
    chain, _ = verify_all(lines, results)
    return chain


def verify_all(lines: Iterable[bytes | str], results: dict[str, Any] | None = None
               ) -> tuple[Chain, Log | None]:
    """``verify``, and the ledger's transparency log (``None`` when it has none)."""
    parsed = _parse(lines)
    try:
        number, head = next(parsed)
    except StopIteration:
        raise Mismatch("the ledger is empty") from None
    if head.get("format") != FORMAT or not isinstance(head.get("campaign_id"), str):
        raise Mismatch(f"line {number}: not a {FORMAT} header")
    _keys(number, head, ("format", "campaign_id", "published_at", "genesis"), "header")
    if not isinstance(head["published_at"], str):
        raise Mismatch(f"line {number}: published_at is text")
    campaign_id = head["campaign_id"]
    chain = Chain(campaign_id)
    chain.published_at = head["published_at"]
    if head.get("genesis") != chain.digest:
        raise Mismatch(f"line {number}: genesis is not SHA-256 of the header text")
    ended = False
    logged: bool | None = None
    log = Log()
    inv_lines = False

    def check_day(done: dict[str, Any] | None, number: int, obj: dict[str, Any]) -> None:
        _keys(number, obj, ("day_end", "votes", "digest"), "day_end line")
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
            if inv_lines:
                raise Mismatch(f"line {number}: a day after the log's invalidation lines")
            if chain._day == obj.get("day_end"):
                pending = chain.end_day()
            check_day(pending, number, obj)
            pending = None
        elif "end" in obj:
            if obj["end"] is not True:
                raise Mismatch(f"line {number}: end must be true")
            if chain._day:
                raise Mismatch(f"line {number}: the records of {chain._day} have no day_end")
            if logged is None:  # no vote: the end line says whether there is a log
                logged = "log_size" in obj
            _keys(number, obj, ("end", "days", "votes", "digest")
                  + (("log_size",) if logged else ()), "end line")
            if obj.get("votes") != chain.votes or obj.get("days") != len(chain.days):
                raise Mismatch(f"line {number}: end line says {obj.get('votes')} votes over"
                               f" {obj.get('days')} days; counted {chain.votes} over"
                               f" {len(chain.days)}")
            if obj.get("digest") != chain.digest:
                raise Mismatch(f"line {number}: final digest is {chain.digest}, the file says"
                               f" {obj.get('digest')}")
            if logged:
                if not _is_int(obj["log_size"]):
                    raise Mismatch(f"line {number}: log_size is an integer")
                log.size = obj["log_size"]
            ended = True
        elif "invalidation" in obj:
            if chain._day or logged is False:
                raise Mismatch(f"line {number}: an invalidation line belongs after the last"
                               " day_end, in a ledger with a log")
            logged, inv_lines = True, True
            _keys(number, obj, ("log", "invalidation", "reason", "strikes"),
                  "log invalidation line")
            inv, reason, strikes = obj["invalidation"], obj["reason"], obj["strikes"]
            if not (_is_int(obj["log"]) and _is_int(inv, 1) and isinstance(reason, str)
                    and isinstance(strikes, list) and all(_is_int(x) for x in strikes)
                    and strikes == sorted(set(strikes))):
                raise Mismatch(f"line {number}: an invalidation line is {{log, invalidation,"
                               " reason, strikes: [ascending positions]}")
            if inv in log.reasons:
                raise Mismatch(f"line {number}: invalidation {inv} is logged twice")
            log.reasons[inv] = reason
            for x in strikes:
                if x >= obj["log"]:
                    raise Mismatch(f"line {number}: invalidation {inv} strikes position {x},"
                                   " logged after it")
                if x in log.strikes:
                    raise Mismatch(f"line {number}: position {x} is struck twice")
                log.strikes[x] = inv
            log.put(number, obj["log"], transparency.invalidation_leaf(inv, reason, strikes))
        else:
            if inv_lines:
                raise Mismatch(f"line {number}: a record after the log's invalidation lines")
            if logged is None:
                logged = "log" in obj
            if chain._day and obj.get("day") != chain._day:
                raise Mismatch(f"line {number}: a record of {obj.get('day')} before the"
                               f" day_end of {chain._day}")
            if not chain._day and chain.days and str(obj.get("day")) <= chain.days[-1]["day"]:
                raise Mismatch(f"line {number}: day {obj.get('day')} after"
                               f" {chain.days[-1]['day']}: days out of order")
            record = _as_record(number, obj, logged)
            try:
                chain.add(record)
            except ValueError as exc:
                raise Mismatch(f"line {number}: {exc}") from exc
            if record.log is not None:
                log.put(number, record.log, record.leaf())
                log.struck_status[record.log] = record.status
    if not ended:
        raise Mismatch("the ledger has no end line (cut short?)")
    if logged:
        _check_log(log)
    if results is not None:
        compare(chain, results, log if logged else None)
    return chain, (log if logged else None)


def _check_log(log: Log) -> None:
    """Every position below the log's size is one record, and each vote's status is what the
    log's invalidations say: the recount follows from the log alone."""
    if len(log.leaves) != log.size or (log.leaves and max(log.leaves) != log.size - 1):
        missing = next((i for i in range(log.size) if i not in log.leaves), log.size)
        raise Mismatch(f"the log has {log.size} positions; position {missing} is not in the"
                       f" file or {len(log.leaves)} records claim positions")
    for position, status in log.struck_status.items():
        want: str | int = log.strikes.get(position, "valid")
        if status != want:
            raise Mismatch(f"the vote at log position {position} is {status!r} in the ledger;"
                           f" the log's invalidations make it {want!r}")
    for position in log.strikes:
        if position not in log.struck_status:
            raise Mismatch(f"an invalidation strikes log position {position}, not a vote")


RESULT_KEYS = ("campaign_id", "title", "published_at", "note", "total", "candidates",
               "invalidated", "days", "digest")
CANDIDATE_KEYS = ("candidate_id", "number", "name", "votes", "rank", "status")
STATUSES = ("active", "withdrawn", "removed")
UNCHECKED = ("title", "note", "candidates' names and numbers", "candidates' statuses other"
             " than what the ranks imply")
"""What of the results no ledger derives: checked only under a signed head."""


RANKED = "active"
"""Only candidates still standing take a rank; a withdrawn (or removed) candidate keeps the
votes cast for them, listed after the ranking with ``rank: null``."""


def rank_key(row: dict[str, Any]) -> tuple[bool, int, int, str]:
    """The results' order: standing candidates by votes, then number; then the others."""
    return (row["status"] != RANKED, -row["votes"], row["number"], row["candidate_id"])


def expected_ranks(rows: list[dict[str, Any]]) -> list[int | None]:
    """Competition ranking by votes (1, 2, 2, 4) of the standing candidates, in
    ``rank_key`` order; the others keep their votes and take no rank (``None``)."""
    ranks: list[int | None] = []
    place, last_votes, last_rank = 0, None, 0
    for row in rows:
        if row["status"] != RANKED:
            ranks.append(None)
            continue
        place += 1
        if row["votes"] != last_votes:
            last_rank, last_votes = place, row["votes"]
        ranks.append(last_rank)
    return ranks


def compare(chain: Chain, results: dict[str, Any], log: Log | None = None) -> None:
    """The published results against what the ledger adds up to: every field that the
    ledger determines, and the shape of the rest (``UNCHECKED``)."""
    def fail(text: str) -> Mismatch:
        return Mismatch(f"results: {text}")

    if not isinstance(results, dict) or set(results) != set(RESULT_KEYS):
        extra = sorted(set(results) - set(RESULT_KEYS)) if isinstance(results, dict) else []
        raise fail(f"the document has exactly the fields {list(RESULT_KEYS)}"
                   + (f"; unknown {extra}" if extra else ""))
    if results["campaign_id"] != chain.campaign_id:
        raise Mismatch(f"results are of {results.get('campaign_id')!r}, the ledger of"
                       f" {chain.campaign_id!r}")
    if results["published_at"] != chain.published_at:
        raise fail(f"published_at {results['published_at']!r}, the ledger's header says"
                   f" {chain.published_at!r}")
    if not isinstance(results["title"], str) or not isinstance(results["note"], str):
        raise fail("title and note are text")
    if results["digest"] != chain.digest:
        raise Mismatch(f"results digest {results.get('digest')} differs from the ledger's"
                       f" {chain.digest}")
    days = results["days"]
    if not isinstance(days, list) or len(days) != len(chain.days):
        raise fail(f"{len(days) if isinstance(days, list) else 'no'} days listed, the ledger"
                   f" has {len(chain.days)}")
    for published, day in zip(days, chain.days, strict=True):
        if published != day:
            raise Mismatch(f"day {day['day']}: results say {published}, the ledger {day}")
    rows = results["candidates"]
    if not isinstance(rows, list):
        raise fail("candidates is a list")
    seen: set[str] = set()
    numbers: set[int] = set()
    for row in rows:
        if not isinstance(row, dict) or set(row) != set(CANDIDATE_KEYS):
            raise fail(f"a candidate row has exactly the fields {list(CANDIDATE_KEYS)}")
        cid = row["candidate_id"]
        if not (isinstance(cid, str) and isinstance(row["name"], str) and _is_int(row["number"])
                and _is_int(row["votes"]) and row["status"] in STATUSES
                and (row["rank"] is None or _is_int(row["rank"], 1))):
            raise fail(f"candidate {cid!r}: a field of the wrong type")
        if cid in seen:
            raise fail(f"candidate {cid} is listed twice")
        seen.add(cid)
        if row["status"] != "removed":
            if row["number"] in numbers:
                raise fail(f"number {row['number']} is given twice")
            numbers.add(row["number"])
        elif row["number"] != 0 or row["name"] != "":
            raise fail(f"candidate {cid}: a removed candidate has number 0 and no name")
    listed = {c["candidate_id"]: c["votes"] for c in rows}
    for cand in sorted(set(listed) | set(chain.valid)):
        if listed.get(cand, 0) != chain.valid.get(cand, 0):
            raise Mismatch(f"candidate {cand}: results say {listed.get(cand, 0)} valid votes,"
                           f" the ledger has {chain.valid.get(cand, 0)}")
    if [r["candidate_id"] for r in sorted(rows, key=rank_key)] != [r["candidate_id"] for r in rows]:
        raise fail("candidates are not in order (standing candidates by votes, then number;"
                   " then the others)")
    for row, rank in zip(rows, expected_ranks(rows), strict=True):
        if row["rank"] != rank:
            raise fail(f"candidate {row['candidate_id']} ({row['status']}, {row['votes']}"
                       f" votes) has rank {row['rank']}, the ledger gives {rank}")
    total = sum(chain.valid.values())
    if results["total"] != total:
        raise Mismatch(f"results total {results.get('total')}, the ledger has {total} valid")
    _compare_struck(chain, results["invalidated"], log, fail)


def _compare_struck(chain: Chain, struck: Any, log: Log | None,
                    fail: Any) -> None:
    if not isinstance(struck, dict) or set(struck) != {"total", "by_reason"} \
            or not isinstance(struck["by_reason"], list):
        raise fail("invalidated is {total, by_reason: [...]}")
    if struck["total"] != sum(chain.struck.values()):
        raise Mismatch(f"results say {struck.get('total')} struck votes, the ledger has"
                       f" {sum(chain.struck.values())}")
    listed: set[int] = set()
    reasons: set[str] = set()
    for item in struck["by_reason"]:
        if not isinstance(item, dict) or set(item) != {"reason", "votes", "invalidations"}:
            raise fail("a by_reason item is exactly {reason, votes, invalidations}")
        ids, reason = item["invalidations"], item["reason"]
        if not (isinstance(reason, str) and _is_int(item["votes"]) and isinstance(ids, list)
                and ids and all(_is_int(i, 1) for i in ids)):
            raise fail(f"reason {reason!r}: a field of the wrong type")
        if reason in reasons:
            raise fail(f"reason {reason!r} is listed twice")
        reasons.add(reason)
        for i in ids:
            if i in listed:
                raise fail(f"invalidation {i} is listed twice")
            listed.add(i)
            if log is not None and log.reasons.get(i) != reason:
                raise fail(f"invalidation {i} has reason {reason!r}; the log says"
                           f" {log.reasons.get(i)!r}")
        counted = sum(chain.struck.get(i, 0) for i in ids)
        if counted != item["votes"]:
            raise Mismatch(f"reason {reason!r}: results say {item['votes']}"
                           f" struck votes, the ledger has {counted} for invalidations {ids}")
    if listed != set(chain.struck):
        raise fail(f"invalidations listed {sorted(listed)}, the ledger's struck votes name"
                   f" {sorted(chain.struck)}")


def check_heads(log: Log, results: dict[str, Any] | None, heads: list[dict[str, Any]],
                public: bytes, campaign_id: str) -> tuple[int, bool]:
    """Each signed head against the log the ledger (and the results, its last leaf) make:
    the signature, and the root of that many leaves. Returns the heads checked and whether
    one of them covers the results leaf (then every field of the results is signed)."""
    extra = transparency.results_leaf(results) if results is not None else None
    hashes = log.hashes(extra)
    full = len(hashes) // 32
    tree = merkle.MemoryRanges(bytes(hashes))
    roots: dict[int, str] = {}
    covered = False
    for n, head in enumerate(heads, start=1):
        try:
            transparency.check_head(head, public)
        except ValueError as exc:
            raise Mismatch(f"head {n}: {exc}") from exc
        size, root = head["tree_size"], head["root_hash"]
        if head["campaign_id"] != campaign_id:
            raise Mismatch(f"head {n} is of {head['campaign_id']!r}, not {campaign_id!r}")
        if roots.get(size, root) != root:
            raise Mismatch(f"two signed heads of size {size} disagree ({roots[size]} and {root}):"
                           " the log was forked")
        roots[size] = root
        if size > full:
            raise Mismatch(f"head {n} is of {size} leaves; the ledger and results make {full}"
                           " (records were dropped)")
        mine = merkle.root(tree, size).hex()
        if mine != root:
            what = ("the ledger or the results (the last leaf) differ from what was signed"
                    if extra is not None and size == full
                    else "the ledger was rewritten after that head")
            raise Mismatch(f"head {n} (size {size}, signed at {head['timestamp']}) has root"
                           f" {root}; the ledger's first {size} leaves make {mine}: {what}")
        covered = covered or (extra is not None and size == full)
    return len(heads), covered
