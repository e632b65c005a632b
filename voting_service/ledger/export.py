"""Results exports for the organisers and the expert panel (DESIGN §1, §6, §9): CSV and XLSX.

Everything is read from one read-only snapshot of PostgreSQL and counts valid ledger rows
only: invalidated votes stay in the ledger, marked, and are left out here (their number is
stated on the "about" sheet). Votes the flusher has not written yet are not included.
One scan of the campaign's ledger, grouped by candidate, channel and day, feeds every sheet,
so each breakdown adds up to the same total as the ranking.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import asyncpg
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FORMATS = tuple(MEDIA_TYPES)

RANKING_HEADER = ("排名", "编号", "候选人ID", "姓名", "性别", "地区", "行业", "工作单位", "职业",
                  "得票数", "得票率(%)", "推荐单位", "推荐单位类别", "事迹类型", "主要荣誉", "状态")
KINDS = {"city": "设区市", "provincial_unit": "省级单位", "": ""}
STATUS = {"active": "", "withdrawn": "已退出"}
BALANCE_TOP = 40
"""The balance sheet compares the top 40 by valid votes with the whole field (both of the
candidates still standing: a withdrawn candidate takes no rank and is in neither)."""
DIRECT = "direct"
"""Key of votes that came without a channel (as in the ``results`` breakdowns)."""
UNSET = "（未填写）"
VALID_ONLY = "仅统计有效票，已作废的票不计入（valid votes only）"

CHANNEL_NOTE = ("签名认证＝合作平台签名令牌的签发方（可信）；自报＝请求中自填的渠道（未验证）"
                "（signed = the issuer of a partner's signed token; claimed = named by the "
                "request, not verified）")

CAMPAIGN = "SELECT id, title, year, timezone, status, closes_at FROM campaigns WHERE id = $1"
CANDIDATES = """
SELECT id, number, name, gender, region, industry, employer, occupation, recommender,
       recommender_kind, deed_type, honors, status
FROM candidates WHERE campaign_id = $1
"""
CHANNELS = "SELECT id, name FROM channels WHERE campaign_id = $1"
TALLIES = "SELECT candidate_id, votes FROM tallies WHERE campaign_id = $1"
LEDGER = """
SELECT candidate_id, channel, channel_signed, day,
       count(*) FILTER (WHERE valid) AS valid,
       count(*) FILTER (WHERE NOT valid) AS invalid,
       max(cast_at) FILTER (WHERE valid) AS last_at
FROM votes WHERE campaign_id = $1
GROUP BY candidate_id, channel, channel_signed, day
"""


@dataclass(frozen=True)
class Ranked:
    rank: int | None
    """``None``: withdrawn, the votes count but take no rank (listed after the ranking)."""
    number: int
    candidate_id: str
    name: str
    gender: str
    region: str
    industry: str
    employer: str
    occupation: str
    votes: int
    share: Decimal
    """Percent of all valid votes, two decimals."""
    recommender: str = ""
    recommender_kind: str = ""
    deed_type: str = ""
    honors: tuple[str, ...] = ()
    status: str = "active"


@dataclass(frozen=True)
class Group:
    key: str
    label: str
    votes: int
    share: Decimal
    candidates: int = 0
    signed: int = 0
    """Channels: votes whose channel is a partner token's issuer (signed attribution)."""
    claimed: int = 0
    """Channels: votes whose channel only the request named (claimed, not verified)."""


@dataclass(frozen=True)
class Day:
    day: dt.date
    votes: int
    cumulative: int
    share: Decimal


@dataclass(frozen=True)
class Results:
    campaign_id: str
    title: str
    year: int
    """评选年度, as the campaign names it."""
    timezone: str
    generated_at: dt.datetime
    """UTC."""
    total: int
    """Valid votes of the listed candidates."""
    invalidated: int
    unranked: int
    """Valid votes for candidates no longer listed (not in the ranking nor the total)."""
    last_vote_at: dt.datetime | None
    tallies_agree: bool
    """The ``tallies`` table says the same as the ledger (it is kept in the same
    transactions; ``False`` means someone should run ``voting-service reconcile``)."""
    ranking: list[Ranked]
    by_region: list[Group]
    by_industry: list[Group]
    by_gender: list[Group]
    by_channel: list[Group]
    by_day: list[Day]
    by_recommender: list[Group] = field(default_factory=list)
    by_deed_type: list[Group] = field(default_factory=list)
    provisional: bool = False
    """The vote is still open: these numbers will change."""

    @property
    def local_generated_at(self) -> dt.datetime:
        return self.generated_at.astimezone(ZoneInfo(self.timezone))


def share(votes: int, total: int) -> Decimal:
    if not total:
        return Decimal("0.00")
    return (Decimal(votes * 100) / Decimal(total)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def _groups(ranking: list[Ranked], attr: str, total: int) -> list[Group]:
    votes: dict[str, int] = defaultdict(int)
    people: dict[str, int] = defaultdict(int)
    for r in ranking:
        key = getattr(r, attr)
        votes[key] += r.votes
        people[key] += 1
    return sorted(
        (Group(k, k or UNSET, n, share(n, total), people[k]) for k, n in votes.items()),
        key=lambda g: (-g.votes, g.key),
    )


async def collect(
    conn: asyncpg.Connection, campaign_id: str, now: dt.datetime | None = None
) -> Results | None:
    """The export's numbers, or ``None`` if there is no such campaign."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        campaign = await conn.fetchrow(CAMPAIGN, campaign_id)
        if campaign is None:
            return None
        candidates = await conn.fetch(CANDIDATES, campaign_id)
        channels = {r["id"]: r["name"] for r in await conn.fetch(CHANNELS, campaign_id)}
        tallies = {r["candidate_id"]: int(r["votes"])
                   for r in await conn.fetch(TALLIES, campaign_id)}
        ledger = await conn.fetch(LEDGER, campaign_id)
    listed = {r["id"] for r in candidates}
    in_ledger: dict[str, int] = defaultdict(int)  # listed or not, to check the tallies
    per_candidate: dict[str, int] = defaultdict(int)
    per_channel: dict[str, int] = defaultdict(int)
    signed: dict[str, int] = defaultdict(int)
    per_day: dict[dt.date, int] = defaultdict(int)
    invalidated = unranked = 0
    last: dt.datetime | None = None
    for row in ledger:
        invalidated += int(row["invalid"])
        valid = int(row["valid"])
        if not valid:
            continue
        in_ledger[row["candidate_id"]] += valid
        if row["candidate_id"] not in listed:
            unranked += valid
            continue
        per_candidate[row["candidate_id"]] += valid
        per_channel[row["channel"] or DIRECT] += valid
        if row["channel_signed"]:
            signed[row["channel"] or DIRECT] += valid
        per_day[row["day"]] += valid
        if last is None or row["last_at"] > last:
            last = row["last_at"]
    total = sum(per_candidate.values())
    ordered = sorted(candidates, key=lambda r: (r["status"] != "active", -per_candidate[r["id"]],
                                                r["number"], r["id"]))
    ranking: list[Ranked] = []
    for i, r in enumerate(ordered):
        votes = per_candidate[r["id"]]
        rank: int | None = None
        if r["status"] == "active":
            same = ranking and ranking[-1].rank is not None and ranking[-1].votes == votes
            rank = ranking[-1].rank if same else i + 1
        ranking.append(Ranked(
            rank, r["number"], r["id"], r["name"], r["gender"], r["region"], r["industry"],
            r["employer"], r["occupation"], votes, share(votes, total), r["recommender"],
            r["recommender_kind"], r["deed_type"], tuple(r["honors"]), r["status"]))
    days: list[Day] = []
    running = 0
    for day in sorted(per_day):
        running += per_day[day]
        days.append(Day(day, per_day[day], running, share(per_day[day], total)))
    generated = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return Results(
        provisional=not (campaign["status"] == "closed" or generated >= campaign["closes_at"]),
        by_recommender=_groups(ranking, "recommender", total),
        by_deed_type=_groups(ranking, "deed_type", total),
        campaign_id=campaign_id,
        title=campaign["title"],
        year=campaign["year"],
        timezone=campaign["timezone"],
        generated_at=generated,
        total=total,
        invalidated=invalidated,
        unranked=unranked,
        last_vote_at=last,
        tallies_agree=all(tallies.get(c, 0) == in_ledger.get(c, 0)
                          for c in tallies.keys() | in_ledger.keys()),
        ranking=ranking,
        by_region=_groups(ranking, "region", total),
        by_industry=_groups(ranking, "industry", total),
        by_gender=_groups(ranking, "gender", total),
        by_channel=sorted(
            (Group(k, "直接访问" if k == DIRECT else channels.get(k, k), n, share(n, total),
                   signed=signed[k], claimed=0 if k == DIRECT else n - signed[k])
             for k, n in per_channel.items()),
            key=lambda g: (-g.votes, g.key),
        ),
        by_day=days,
    )


# --- CSV ------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def neutralise(value: str) -> str:
    """A leading apostrophe on text a spreadsheet would run as a formula (CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _ranking_row(r: Ranked, text: Callable[[str], Any]) -> list[Any]:
    return [r.rank, r.number, text(r.candidate_id), text(r.name), text(r.gender),
            text(r.region), text(r.industry), text(r.employer), text(r.occupation), r.votes,
            r.share, text(r.recommender), KINDS.get(r.recommender_kind, r.recommender_kind),
            text(r.deed_type), text("；".join(r.honors)), STATUS.get(r.status, r.status)]


BALANCE_HEADER = ("维度", "取值", f"前{BALANCE_TOP}名人数", f"前{BALANCE_TOP}名占比(%)",
                  "全部候选人数", "全部占比(%)", "相差(百分点)")
BALANCE_DIMENSIONS = (("地区", "region"), ("行业", "industry"), ("性别", "gender"),
                      ("事迹类型", "deed_type"))


def balance(ranking: list[Ranked], top: int = BALANCE_TOP) -> list[Row]:
    """For each dimension, how the top ``top`` by valid votes spread beside the whole field:
    what a pure vote ranking would leave out shows as 0 in the top with a share in the field."""
    standing = [r for r in ranking if r.rank is not None]  # withdrawn: not in the field
    head = standing[:top]
    rows: list[Row] = []
    for label, attr in BALANCE_DIMENSIONS:
        field_counts: dict[str, int] = defaultdict(int)
        top_counts: dict[str, int] = defaultdict(int)
        for r in standing:
            field_counts[getattr(r, attr)] += 1
        for r in head:
            top_counts[getattr(r, attr)] += 1
        for key in sorted(field_counts, key=lambda k: (-field_counts[k], k)):
            in_top, in_field = share(top_counts[key], len(head)), share(field_counts[key],
                                                                      len(standing))
            rows.append((label, key or UNSET, top_counts[key], in_top, field_counts[key],
                         in_field, in_top - in_field))
    return rows


def to_csv(results: Results) -> bytes:
    """The ranking: UTF-8 with a BOM (Excel on Chinese Windows reads it right), CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(RANKING_HEADER)
    writer.writerows(_ranking_row(r, neutralise) for r in results.ranking)
    return out.getvalue().encode("utf-8-sig")


# --- XLSX -----------------------------------------------------------------------------------

_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_BOLD = Font(bold=True)
Row = Sequence[Any]


def _width(value: Any) -> int:
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _sheet(wb: Workbook, title: str, header: Row, rows: Iterable[Row],
           *, filter_: bool = False) -> Worksheet:
    """Bold frozen header, column widths from the content, text always stored as text."""
    ws: Worksheet = wb.create_sheet(title)
    ws.append(list(header))
    for cell in ws[1]:
        cell.font = _BOLD
    for row in rows:
        ws.append([float(v) if isinstance(v, Decimal)
                   else _ILLEGAL.sub("", v) if isinstance(v, str) else v for v in row])
    widths: dict[int, int] = defaultdict(lambda: 8)
    for row_cells in ws.iter_rows():
        for cell in row_cells:
            value = cell.value
            if isinstance(value, str):
                cell.data_type = "s"  # never a formula, whatever the text starts with
                if value.startswith(_FORMULA_START):
                    cell.quotePrefix = True  # nor one after an edit in Excel
            elif isinstance(value, float):
                cell.number_format = "0.00"
            elif isinstance(value, dt.date):
                cell.number_format = "yyyy-mm-dd"
            column = cell.column
            assert isinstance(column, int)
            widths[column] = max(widths[column], _width(value))
    for column, width in widths.items():
        ws.column_dimensions[get_column_letter(column)].width = min(width + 2, 60)
    ws.freeze_panes = "A2"
    if filter_ and ws.max_row > 1:
        ws.auto_filter.ref = ws.dimensions
    return ws


def _about(results: Results) -> list[tuple[str, Any]]:
    fmt = "%Y-%m-%d %H:%M:%S"
    local = results.local_generated_at
    rows: list[tuple[str, Any]] = [
        ("结果性质 status", "临时结果（投票仍在进行）provisional — the vote is still open"
         if results.provisional else "投票已结束 final — the vote has closed"),
        ("活动ID campaign id", results.campaign_id),
        ("活动名称 title", results.title),
        ("评选年度 year", results.year),
        (f"生成时间 generated at ({results.timezone})", local.strftime(fmt)),
        ("生成时间 generated at (UTC)", results.generated_at.strftime(fmt)),
        ("有效票总数 total valid votes", results.total),
        ("已作废票数 invalidated votes", results.invalidated),
        ("候选人数 candidates", len(results.ranking)),
        ("统计口径 note", VALID_ONLY),
        ("渠道归属 channel attribution", CHANNEL_NOTE),
        ("数据来源 source", "PostgreSQL 投票账本（已由 flusher 写入的投票）"),
        (f"最近一票时间 last vote counted ({results.timezone})",
         results.last_vote_at.astimezone(local.tzinfo).strftime(fmt)
         if results.last_vote_at else "—"),
        ("与汇总表核对 tallies check",
         "一致 consistent" if results.tallies_agree
         else "不一致 inconsistent — 请运行 voting-service reconcile"),
    ]
    if results.unranked:
        rows.append(("已删除候选人的有效票（未计入） valid votes for removed candidates",
                     results.unranked))
    return rows


def _group_rows(groups: list[Group]) -> list[Row]:
    return [(g.label, g.candidates, g.votes, g.share) for g in groups]


def to_xlsx(results: Results) -> bytes:
    wb = Workbook()
    assert wb.active is not None
    wb.remove(wb.active)
    wb.properties.title = f"{results.title} 投票结果" + ("（临时）" if results.provisional else "")
    wb.properties.creator = "voting-service"
    wb.properties.subject = f"{results.year}年度评选 selection year {results.year}"
    _sheet(wb, "排名", RANKING_HEADER,
           (_ranking_row(r, str) for r in results.ranking), filter_=True)
    for title, column, groups in (("按地区", "地区", results.by_region),
                                  ("按行业", "行业", results.by_industry),
                                  ("按性别", "性别", results.by_gender)):
        _sheet(wb, title, (column, "候选人数", "得票数", "得票率(%)"), _group_rows(groups))
    _sheet(wb, "按推荐单位", ("推荐单位", "候选人数", "得票数", "得票率(%)"),
           _group_rows(results.by_recommender))
    _sheet(wb, "按事迹类型", ("事迹类型", "候选人数", "得票数", "得票率(%)"),
           _group_rows(results.by_deed_type))
    _sheet(wb, "均衡", BALANCE_HEADER, balance(results.ranking))
    _sheet(wb, "按渠道", ("渠道ID", "渠道名称", "得票数", "其中签名认证 signed",
                        "其中自报未验证 claimed", "得票率(%)"),
           [(g.key, g.label, g.votes, g.signed, g.claimed, g.share)
            for g in results.by_channel])
    _sheet(wb, "按日期", ("日期", "得票数", "累计得票数", "得票率(%)"),
           [(d.day, d.votes, d.cumulative, d.share) for d in results.by_day])
    _sheet(wb, "说明", ("项目 item", "内容 value"), _about(results))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def render(results: Results, fmt: str) -> bytes:
    return to_xlsx(results) if fmt == "xlsx" else to_csv(results)


def filename(results: Results, fmt: str) -> str:
    return f"{results.campaign_id}-results-{results.local_generated_at:%Y%m%d-%H%M}.{fmt}"


_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` and, for other names, RFC 6266 ``filename*``."""
    if _SAFE.fullmatch(name):
        return f'attachment; filename="{name}"'
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
