"""Candidates from the recommenders' spreadsheets (推荐人选申报表), all or nothing.

A file is the campaign's whole list: every row is checked (columns, required fields, gender,
lengths, https media, duplicate numbers, the same person twice, each recommender's quota) and
any error refuses the whole file with every error found, by row and column as the
spreadsheet shows them. A person already listed keeps their candidate id (their votes follow
them); candidates without votes who are not in the file are replaced; one with votes is
never removed. Identity numbers (身份证号) are only used as keyed HMACs and never stored,
logged or echoed back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from ..errors import CampaignNotFound, CandidateHasVotes, ImportRejected
from ..models import Candidate, recommender_kind_of
from ..redis.store import AnyRedis
from . import campaigns, db, publication, sheets

COLUMNS: dict[str, str] = {
    "编号": "number", "姓名": "name", "性别": "gender", "地区": "region", "行业": "industry",
    "工作单位": "employer", "职业(工种)": "occupation", "职业": "occupation",
    "推荐单位": "recommender", "事迹类型": "deed_type", "主要荣誉": "honors",
    "事迹简介": "summary", "主要事迹": "deeds", "照片": "photo_url", "视频": "video_url",
    "身份证号": "id_number", "候选人id": "id",
}
"""Chinese headers of the 推荐人选申报表 → field; the English field names work as well."""
FIELDS = frozenset(COLUMNS.values())
REQUIRED = ("number", "name", "gender", "recommender")
LABELS = {
    "number": "编号", "name": "姓名", "gender": "性别", "region": "地区", "industry": "行业",
    "employer": "工作单位", "occupation": "职业（工种）", "recommender": "推荐单位",
    "deed_type": "事迹类型", "honors": "主要荣誉", "summary": "事迹简介", "deeds": "主要事迹",
    "photo_url": "照片", "video_url": "视频", "id_number": "身份证号", "id": "候选人ID",
}
LIMITS = {"summary": 2000, "deeds": 20000, "photo_url": 500, "video_url": 500}
TEXT_LIMIT = 200
MAX_HONORS = 50
GENDERS = ("男", "女")
_ID_NUMBER = re.compile(r"^\d{17}[\dX]$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_HONOR_SPLIT = re.compile(r"[；;\n]")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


@dataclass(frozen=True)
class RowError:
    row: int | None
    column: str | None
    message: str
    code: str


@dataclass
class Report:
    campaign_id: str
    dry_run: bool
    imported: int = 0
    by_recommender: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "dry_run": self.dry_run,
                "imported": self.imported, "by_recommender": self.by_recommender,
                "created": self.created, "updated": self.updated, "removed": self.removed}


MAX_ERRORS = 200
"""Errors an answer lists (with the total): a file of 5,020 bad rows × 64 columns made a
39.5 MB answer when every one was listed."""
ECHO = 40
"""Characters of the file's own text an error message repeats."""


def _echo(text: str) -> str:
    return text if len(text) <= ECHO else text[:ECHO] + "…"


class Errors(list[RowError]):
    """The errors found: the first ``MAX_ERRORS`` kept, all of them counted."""

    def __init__(self, errors: Iterable[RowError] = ()) -> None:
        super().__init__()
        self.total = 0
        self.extend(errors)

    def append(self, error: RowError) -> None:
        self.total += 1
        if len(self) < MAX_ERRORS:
            super().append(error)

    def extend(self, errors: Iterable[RowError]) -> None:
        for error in errors:
            self.append(error)

    def __iadd__(self, errors: Iterable[RowError]) -> Errors:  # type: ignore[override,misc]
        self.extend(errors)
        return self

    def __bool__(self) -> bool:
        return self.total > 0


class Rejected(ImportRejected):
    def __init__(self, errors: list[RowError]) -> None:
        found = errors if isinstance(errors, Errors) else Errors(errors)
        total = found.total
        more = f"，仅列出前 {len(found)} 处" if total > len(found) else ""
        super().__init__(
            f"{total} 处错误，文件未导入{more} ({total} error(s), nothing imported)",
            extra={"errors": [dataclasses.asdict(e) for e in found], "errors_total": total},
        )
        self.errors = found


def _header_key(text: str) -> str:
    return re.sub(r"\s+", "", text).replace("（", "(").replace("）", ")").lower()


def id_number_ok(number: str) -> bool:
    """An 18-character 居民身份证号码 with a right check digit (GB 11643)."""
    if not _ID_NUMBER.fullmatch(number):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17]


def person_key(pepper: str, *, id_number: str = "", name: str = "", employer: str = "") -> str:
    """Keyed HMAC of a person: the identity number if known, else name + employer."""
    subject = f"id:{id_number}" if id_number else f"ne:{name}\x1f{employer}"
    return hmac.new(pepper.encode(), b"person:" + subject.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Row:
    number: int
    values: dict[str, str]
    line: int
    person: str
    name_key: str


def _header(sheet: sheets.Sheet) -> tuple[int, list[str | None], list[RowError]]:
    """The header row (the first with 姓名 or name: title rows above it are skipped)."""
    for index, (line, cells) in enumerate(sheet.rows[:10]):
        keys = [_header_key(c) for c in cells]
        if "姓名" in keys or "name" in keys:
            errors = []
            fields: list[str | None] = []
            for col, (raw, key) in enumerate(zip(cells, keys, strict=True), start=1):
                name = COLUMNS.get(key) or (key if key in FIELDS else None)
                if not key:
                    fields.append(None)
                    continue
                if name is None:
                    errors.append(RowError(line, _echo(raw), f"未知的列“{_echo(raw)}”"
                                           f"（第 {col} 列） (unknown_column)",
                                           "unknown_column"))
                elif name in fields:
                    errors.append(RowError(line, _echo(raw), f"列“{_echo(raw)}”重复"
                                           " (duplicate_column)", "duplicate_column"))
                fields.append(name)
            missing = [LABELS[f] for f in REQUIRED if f not in fields]
            if missing:
                errors.append(RowError(line, None, f"缺少必需的列：{'、'.join(missing)}"
                                       " (missing_column)", "missing_column"))
            return index, fields, errors
    return -1, [], [RowError(1, None, "找不到表头：需要包含“姓名”等列的标题行 (no_header)",
                             "no_header")]


@dataclass
class Parsed:
    rows: list[Row]
    """The rows without errors."""
    errors: list[RowError]
    recommenders: list[tuple[int, str]] = field(default_factory=list)
    """``(row, recommender)`` of every row that names one, with errors or not (quotas)."""


def parse(sheet: sheets.Sheet, pepper: str) -> Parsed:
    """Rows checked on their own and against each other (numbers, the same person)."""
    start, fields, found = _header(sheet)
    errors = Errors(found)
    if start < 0 or errors:
        return Parsed([], errors)
    rows: list[Row] = []
    recommenders: list[tuple[int, str]] = []
    by_number: dict[int, int] = {}
    by_person: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for line, cells in sheet.rows[start + 1:]:
        values: dict[str, str] = {}
        bad = False

        def err(col: str | None, message: str, code: str, line: int = line) -> None:
            nonlocal bad
            bad = True
            errors.append(RowError(line, col, f"{message} ({code})", code))

        for col, cell in enumerate(cells):
            name = fields[col] if col < len(fields) else None
            if name is None:
                if cell:
                    err(f"第 {col + 1} 列", "此列没有表头，不能有内容", "unknown_column")
                continue
            values[name] = cell
        if values.get("recommender"):
            recommenders.append((line, values["recommender"]))
        for f in REQUIRED:
            if not values.get(f):
                err(LABELS[f], f"缺少必填项“{LABELS[f]}”", "missing_field")
        for f, text in values.items():
            limit = LIMITS.get(f, TEXT_LIMIT)
            if f not in ("honors", "id_number") and len(text) > limit:
                err(LABELS[f], f"“{LABELS[f]}”超过 {limit} 字（{len(text)} 字）", "too_long")
        number = -1
        raw_number = values.get("number", "")
        if raw_number:
            if raw_number.isdigit() and 0 < int(raw_number) <= 1_000_000:
                number = int(raw_number)
                if number in by_number:
                    err("编号", f"编号 {number} 与第 {by_number[number]} 行重复",
                        "duplicate_number")
                else:
                    by_number[number] = line
            else:
                err("编号", "编号须为 1 至 1000000 的整数", "bad_number")
        gender = values.get("gender", "")
        if gender and gender not in GENDERS:
            err("性别", "性别须为“男”或“女”", "bad_gender")
        for f in ("photo_url", "video_url"):
            url = values.get(f, "")
            if url and not (url.startswith("https://") and len(url) > len("https://")):
                err(LABELS[f], f"“{LABELS[f]}”须为 https:// 开头的网址", "not_https")
        honors = [h.strip() for h in _HONOR_SPLIT.split(values.get("honors", "")) if h.strip()]
        if len(honors) > MAX_HONORS:
            err("主要荣誉", f"主要荣誉最多 {MAX_HONORS} 项", "too_many_honors")
        if any(len(h) > TEXT_LIMIT for h in honors):
            err("主要荣誉", f"每项荣誉不超过 {TEXT_LIMIT} 字", "too_long")
        given_id = values.get("id", "")
        if given_id and not _ID.fullmatch(given_id):
            err("候选人ID", "候选人ID只能含字母、数字、_ 和 -，不超过 64 位", "bad_id")
        id_number = values.pop("id_number", "").upper().replace(" ", "")
        if id_number and not id_number_ok(id_number):
            err("身份证号", "身份证号格式或校验位不正确", "bad_id_number")
        name_key = person_key(pepper, name=values.get("name", ""),
                              employer=values.get("employer", ""))
        person = person_key(pepper, id_number=id_number) if id_number else name_key
        twin = by_person.get(person) or (None if id_number else by_name.get(name_key))
        if twin is not None and values.get("name"):
            how = "身份证号相同" if id_number else "姓名和工作单位相同"
            err("身份证号" if id_number else "姓名",
                f"与第 {twin} 行是同一人（{how}）：同一人一年只能被推荐一次", "same_person")
        by_person.setdefault(person, line)
        by_name.setdefault(name_key, line)
        if not bad:
            values["honors"] = "\x1f".join(honors)
            rows.append(Row(number, values, line, person, name_key))
    if not rows and not errors:
        errors.append(RowError(None, None, "文件中没有候选人 (no_rows)", "no_rows"))
    return Parsed(rows, errors, recommenders)


def check_quotas(recommenders: list[tuple[int, str]], quotas: dict[str, int]) -> list[RowError]:
    """Over a recommender's quota, or a recommender not in the quota table (when there is one)."""
    if not quotas:
        return []
    errors = []
    seen: Counter[str] = Counter()
    counts = Counter(rec for _, rec in recommenders)
    for line, rec in recommenders:
        seen[rec] += 1
        if rec not in quotas:
            if seen[rec] == 1:
                errors.append(RowError(line, "推荐单位",
                                       f"推荐单位“{_echo(rec)}”不在名额分配表中"
                                       " (unknown_recommender)", "unknown_recommender"))
        elif seen[rec] == quotas[rec] + 1:
            errors.append(RowError(
                line, "推荐单位",
                f"推荐单位“{_echo(rec)}”超出名额：名额 {quotas[rec]} 人，文件中 {counts[rec]} 人"
                f"（从此行起超出） (over_quota)", "over_quota"))
    return errors


async def quotas_of(conn: asyncpg.Connection, campaign_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT recommender, quota FROM candidate_quotas WHERE campaign_id = $1"
        " ORDER BY recommender", campaign_id)
    return {r["recommender"]: int(r["quota"]) for r in rows}


async def set_quotas(conn: asyncpg.Connection, campaign_id: str, quotas: dict[str, int]) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM candidate_quotas WHERE campaign_id = $1", campaign_id)
        await conn.executemany(
            "INSERT INTO candidate_quotas (campaign_id, recommender, quota) VALUES ($1, $2, $3)",
            [(campaign_id, rec, n) for rec, n in quotas.items()])


async def quota_usage(conn: asyncpg.Connection, campaign_id: str) -> dict[str, Any]:
    """The quota table with how many candidates each recommender has so far."""
    quotas = await quotas_of(conn, campaign_id)
    used = {r["recommender"]: int(r["n"]) for r in await conn.fetch(
        "SELECT recommender, count(*) AS n FROM candidates WHERE campaign_id = $1"
        " GROUP BY recommender", campaign_id)}
    return {
        "campaign_id": campaign_id,
        "quotas": {rec: {"quota": n, "used": used.get(rec, 0),
                         "kind": recommender_kind_of(rec)} for rec, n in quotas.items()},
        "unlisted": {rec: n for rec, n in sorted(used.items()) if rec not in quotas},
        "total": {"quota": sum(quotas.values()), "used": sum(used.values())},
    }


def _candidate(row: Row, cid: str) -> Candidate:
    v = row.values
    return Candidate(
        id=cid, number=row.number, name=v["name"], gender=v.get("gender", ""),
        region=v.get("region", ""), industry=v.get("industry", ""),
        employer=v.get("employer", ""), occupation=v.get("occupation", ""),
        summary=v.get("summary", ""), deeds=v.get("deeds", ""),
        photo_url=v.get("photo_url", ""), recommender=v["recommender"],
        recommender_kind=recommender_kind_of(v["recommender"]),
        deed_type=v.get("deed_type", ""),
        honors=[h for h in v.get("honors", "").split("\x1f") if h],
        video_url=v.get("video_url", ""),
    )


def assign_ids(rows: list[Row], existing: list[tuple[str, str, str]]) -> list[tuple[Row, str]]:
    """Each row's candidate id: an existing candidate who is the same person keeps theirs
    (``existing`` = ``(id, person key, name key)``), else the ``id`` column, else ``c<编号>``."""
    by_person = {key: cid for cid, key, _ in existing if key}
    by_name = {name: cid for cid, _, name in existing}
    taken: set[str] = set()
    chosen: list[tuple[Row, str | None]] = []
    for row in rows:
        cid = (row.values.get("id") or by_person.get(row.person)
               or by_name.get(row.name_key))
        if cid in taken:
            cid = None
        if cid:
            taken.add(cid)
        chosen.append((row, cid))
    out = []
    for row, cid in chosen:
        if cid is None:
            base = cid = f"c{row.number:03d}"
            n = 2
            while cid in taken:
                cid, n = f"{base}-{n}", n + 1
            taken.add(cid)
        out.append((row, cid))
    return out


async def _run(
    conn: asyncpg.Connection, redis: AnyRedis, campaign_id: str, sheet: sheets.Sheet, *,
    pepper: str, shards: int, dry_run: bool, actor: str, quotas: dict[str, int] | None,
) -> Report:
    parsed = parse(sheet, pepper)
    rows = parsed.rows
    errors = parsed.errors if isinstance(parsed.errors, Errors) else Errors(parsed.errors)
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM campaigns WHERE id = $1 FOR UPDATE",
                               campaign_id) is None:
            raise CampaignNotFound(f"no campaign {campaign_id!r}")
        await publication.ensure_unpublished(conn, campaign_id, "the candidate list")
        if quotas is not None:
            await set_quotas(conn, campaign_id, quotas)
            await db.audit(conn, actor, "quotas.set", campaign_id, quotas)
        current = await db.load_campaign(conn, campaign_id)
        assert current is not None
        errors += check_quotas(parsed.recommenders, await quotas_of(conn, campaign_id))
        stored = {r["id"]: r["person_key"] for r in await conn.fetch(
            "SELECT id, person_key FROM candidates WHERE campaign_id = $1", campaign_id)}
        existing = [(x.id, stored.get(x.id, ""),
                     person_key(pepper, name=x.name, employer=x.employer))
                    for x in current.candidates]
        assigned = assign_ids(rows, existing)
        new = [_candidate(row, cid) for row, cid in assigned]
        if errors:
            raise Rejected(errors)
        updated = msgspec.structs.replace(current, candidates=new)
        before = {x.id for x in current.candidates}
        after = {x.id for x in new}
        report = Report(
            campaign_id, dry_run, imported=len(new),
            by_recommender=dict(sorted(Counter(x.recommender for x in new).items())),
            created=sorted(after - before), updated=sorted(after & before),
            removed=sorted(before - after),
        )
        try:
            await campaigns.save(conn, redis, updated, shards,
                                 person_keys={cid: row.person for row, cid in assigned})
        except CandidateHasVotes as exc:
            raise Rejected([RowError(None, None, exc.detail, "candidate_has_votes")]) from exc
        if dry_run:
            raise _DryRun(report)
        await db.audit(conn, actor, "candidates.import", campaign_id, report.as_json())
    await campaigns.push_snapshot(conn, redis, campaign_id)
    return report


class _DryRun(Exception):
    """Rolls the transaction back after a dry run got as far as saving."""

    def __init__(self, report: Report) -> None:
        super().__init__("dry run")
        self.report = report


async def run(
    conn: asyncpg.Connection, redis: AnyRedis, campaign_id: str, sheet: sheets.Sheet, *,
    pepper: str, shards: int, dry_run: bool = False, actor: str = "",
    quotas: dict[str, int] | None = None,
) -> Report:
    """Check the file and, unless ``dry_run``, make it the campaign's candidate list (with
    ``quotas`` as its quota table, in the same transaction); a dry run goes as far as saving
    (so it finds what saving would refuse), then rolls everything back."""
    try:
        return await _run(conn, redis, campaign_id, sheet, pepper=pepper, shards=shards,
                          dry_run=dry_run, actor=actor, quotas=quotas)
    except _DryRun as done:
        return done.report
