"""Votes that look brushed: groups with a signal, evidence and a score (admin, off the hot path).

Read from the PostgreSQL ledger (valid votes only, so an invalidated group disappears) over a
time window, plus the Redis day counters of the networks named (attempts, refused ones too).
Signals:
- ``candidate_spike``   a candidate's votes in a few minutes far above its own rate of the
                        hour before;
- ``prefix_volume``     many votes from one network (IPv4 /24, IPv6 /48) against the median;
- ``prefix_candidate``  one candidate takes most of a busy network's votes;
- ``new_voter_burst``   many voters never seen before appear from one network within minutes;
- ``machine_timing``    gaps between votes as even as a timer: one voter's own votes, or the
                        votes of a whole network.
Each group carries ``criteria``: a body for ``POST …/invalidations`` that strikes out that
group (review it first: a score is a reason to look, not proof).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..ledger import partitions
from ..redis import keys
from ..redis.store import AnyRedis

PREFIX = "network(set_masklen(ip, CASE WHEN family(ip) = 4 THEN 24 ELSE 48 END))::text"
"""A vote's network, as text equal to ``identity.ip_prefixes(ip)[1]``."""
WINDOW = """campaign_id = $1 AND valid AND cast_at >= $2 AND cast_at <= $3"""

VOLUME_FACTOR = 5.0
SPIKE_FACTOR = 5.0
TRAILING = 12
"""A candidate's own rate: the median of the 12 buckets (an hour of 5 minutes) before."""
SHARE = 0.8
SPREAD = 0.15
"""Median absolute deviation of the gaps / their median: below this, timing looks scripted
(people's gaps spread widely: for random arrivals the ratio is about 0.7)."""
MIN_GAP = 0.05
"""Seconds: closer votes are a burst (other signals), not a rhythm."""
VOTER_MIN_VOTES = 4
MAX_VOTER_IDS = 500
MAX_GROUPS = 100


@dataclass(frozen=True)
class Window:
    since: dt.datetime
    until: dt.datetime
    min_votes: int = 20
    bucket: dt.timedelta = dt.timedelta(minutes=5)
    """Spike resolution."""
    fresh_bucket: dt.timedelta = dt.timedelta(minutes=10)
    """How close together new voters must appear to count as a burst."""


def spread(times: Sequence[float]) -> float | None:
    """How uneven the gaps between sorted ``times`` are (see ``SPREAD``); None: can't tell."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if len(gaps) < 3:
        return None
    mid = statistics.median(gaps)
    if mid < MIN_GAP:
        return None
    return statistics.median(abs(g - mid) for g in gaps) / mid


def ratio_score(ratio: float, full: float = 100.0) -> int:
    """0 at ratio 1, 100 at ``full`` and beyond, logarithmic in between."""
    if ratio <= 1:
        return 0
    return min(100, round(100 * math.log(ratio) / math.log(full)))


def _iso(t: dt.datetime) -> str:
    return t.isoformat()


def _group(
    signal: str, score: int, summary: str, evidence: dict[str, Any], voters: Iterable[str],
    criteria: dict[str, Any], first: dt.datetime, last: dt.datetime,
) -> dict[str, Any]:
    ids = sorted(set(voters))
    evidence = {"first_at": _iso(first), "last_at": _iso(last),
                "span_seconds": round((last - first).total_seconds(), 3)} | evidence
    return {
        "signal": signal,
        "score": score,
        "summary": summary,
        "evidence": evidence,
        "voter_ids": ids[:MAX_VOTER_IDS],
        "voter_ids_truncated": len(ids) > MAX_VOTER_IDS,
        "criteria": {k: v for k, v in criteria.items() if v is not None}
        | {"since": _iso(first), "until": _iso(last)},
    }


async def _prefix_groups(conn: asyncpg.Connection, cid: str, w: Window) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {PREFIX} AS prefix, count(*) AS n, count(DISTINCT voter_id) AS voters,"
        f" min(cast_at) AS first_at, max(cast_at) AS last_at"
        f" FROM votes WHERE {WINDOW} AND ip IS NOT NULL GROUP BY 1",
        cid, w.since, w.until,
    )
    if not rows:
        return []
    median = statistics.median(int(r["n"]) for r in rows)
    busy = {r["prefix"]: r for r in rows if r["n"] >= w.min_votes}
    if not busy:
        return []
    detail = await conn.fetch(
        f"SELECT {PREFIX} AS prefix, candidate_id, channel, voter_id, count(*) AS n,"
        f" array_agg(extract(epoch FROM cast_at)::float8 ORDER BY cast_at) AS times"
        f" FROM votes WHERE {WINDOW} AND ip IS NOT NULL AND {PREFIX} = ANY($4::text[])"
        f" GROUP BY 1, 2, 3, 4",
        cid, w.since, w.until, list(busy),
    )
    cands: dict[str, Counter[str]] = defaultdict(Counter)
    chans: dict[str, Counter[str]] = defaultdict(Counter)
    voters: dict[str, set[str]] = defaultdict(set)
    times: dict[str, list[float]] = defaultdict(list)
    for d in detail:
        p = d["prefix"]
        cands[p][d["candidate_id"]] += int(d["n"])
        chans[p][d["channel"] or "direct"] += int(d["n"])
        voters[p].add(d["voter_id"])
        times[p].extend(d["times"])
    groups = []
    for p, r in busy.items():
        n = int(r["n"])
        evidence = {"votes": n, "voters": int(r["voters"]), "prefixes": {p: n},
                    "candidates": dict(cands[p].most_common(10)),
                    "channels": dict(chans[p].most_common(10)),
                    "median_votes_per_network": median}
        ratio = n / max(median, 1)
        if ratio >= VOLUME_FACTOR:
            groups.append(_group(
                "prefix_volume", ratio_score(ratio, 1000),
                f"{n} votes from network {p}, {ratio:.0f}× the median network",
                evidence, voters[p], {"ip": p}, r["first_at"], r["last_at"]))
        top, top_n = cands[p].most_common(1)[0]
        share = top_n / n
        if share >= SHARE:
            groups.append(_group(
                "prefix_candidate", round(100 * (share - 0.5) / 0.5),
                f"{share:.0%} of the {n} votes from network {p} went to {top}",
                evidence | {"candidate_id": top, "share": round(share, 3)},
                voters[p], {"ip": p, "candidate_id": top}, r["first_at"], r["last_at"]))
        s = spread(sorted(times[p]))
        if s is not None and s < SPREAD:
            groups.append(_group(
                "machine_timing", round(100 * (1 - s / SPREAD)),
                f"the {n} votes from network {p} arrive at a machine-regular rhythm",
                evidence | {"gap_spread": round(s, 4)},
                voters[p], {"ip": p}, r["first_at"], r["last_at"]))
    return groups


async def _fresh_voter_groups(
    conn: asyncpg.Connection, cid: str, w: Window
) -> list[dict[str, Any]]:
    # "Never seen before" is asked of the sealed days (an index probe per voter) and of the
    # open ones (one hashed pass: they have no voter index) apart; as one NOT EXISTS the
    # planner probed the open day's partition with a scan per voter.
    rows = await conn.fetch(
        f"""
        WITH firsts AS (
            SELECT DISTINCT ON (voter_id) voter_id, cast_at, ip FROM votes
            WHERE {WINDOW} AND ip IS NOT NULL ORDER BY voter_id, cast_at
        ), fresh AS (
            SELECT f.* FROM firsts f WHERE NOT EXISTS (
                SELECT 1 FROM votes o
                WHERE o.campaign_id = $1 AND o.voter_id = f.voter_id AND o.cast_at < $2
                  AND o.day < $6)
            AND NOT EXISTS (
                SELECT 1 FROM votes o
                WHERE o.campaign_id = $1 AND o.voter_id = f.voter_id AND o.cast_at < $2
                  AND o.day >= $6)
        )
        SELECT {PREFIX} AS prefix, date_bin($4::interval, cast_at, $2) AS bucket,
               count(*) AS n, min(cast_at) AS first_at, max(cast_at) AS last_at,
               array_agg(voter_id) AS voters
        FROM fresh GROUP BY 1, 2 HAVING count(*) >= $5
        """,
        cid, w.since, w.until, w.fresh_bucket, w.min_votes, await partitions.first_open(conn),
    )
    groups = []
    for r in rows:
        n = int(r["n"])
        minutes = w.fresh_bucket.total_seconds() / 60
        groups.append(_group(
            "new_voter_burst", ratio_score(n / w.min_votes * 2, 20),
            f"{n} voters never seen before voted from network {r['prefix']}"
            f" within {minutes:.0f} minutes",
            {"votes": n, "voters": n, "prefixes": {r["prefix"]: n}},
            r["voters"], {"voter_ids": sorted(r["voters"])}, r["first_at"], r["last_at"]))
    return groups


async def _spike_groups(conn: asyncpg.Connection, cid: str, w: Window) -> list[dict[str, Any]]:
    """Buckets where a candidate got far more votes than in the hour before (its own rate)."""
    origin = w.since - TRAILING * w.bucket
    rows = await conn.fetch(
        "SELECT candidate_id, date_bin($4::interval, cast_at, $2) AS bucket, count(*) AS n"
        " FROM votes WHERE campaign_id = $1 AND valid AND cast_at >= $2 AND cast_at <= $3"
        " GROUP BY 1, 2",
        cid, origin, w.until, w.bucket,
    )
    buckets = TRAILING + math.floor((w.until - w.since) / w.bucket) + 1
    series: dict[str, list[int]] = defaultdict(lambda: [0] * buckets)
    for r in rows:
        series[r["candidate_id"]][int((r["bucket"] - origin) / w.bucket)] = int(r["n"])
    groups = []
    for cand, counts in series.items():
        spikes, baselines = [], []
        for i in range(TRAILING, buckets):
            baseline = max(statistics.median(counts[i - TRAILING:i]), 1.0)
            if counts[i] >= max(w.min_votes, SPIKE_FACTOR * baseline):
                spikes.append(i)
                baselines.append(baseline)
        for run in _runs(spikes):
            start = origin + run[0] * w.bucket
            end = min(origin + (run[-1] + 1) * w.bucket, w.until)
            baseline = baselines[spikes.index(run[0])]
            votes = sum(counts[i] for i in run)
            groups.append(await _spike_group(conn, cid, cand, start, end, votes, len(run),
                                             baseline))
    return groups


def _runs(indexes: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i in indexes:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


async def _spike_group(
    conn: asyncpg.Connection, cid: str, cand: str, start: dt.datetime, end: dt.datetime,
    n: int, buckets: int, baseline: float,
) -> dict[str, Any]:
    rows = await conn.fetch(
        f"SELECT COALESCE({PREFIX}, '') AS prefix, channel, voter_id, cast_at FROM votes"
        f" WHERE campaign_id = $1 AND valid AND candidate_id = $2 AND cast_at >= $3"
        f" AND cast_at < $4 ORDER BY cast_at LIMIT 50000",
        cid, cand, start, end,
    )
    per_bucket = n / buckets
    first = rows[0]["cast_at"] if rows else start
    last = rows[-1]["cast_at"] if rows else end
    evidence = {
        "votes": n, "voters": len({r["voter_id"] for r in rows}),
        "candidate_id": cand, "baseline_per_bucket": baseline,
        "bucket_seconds": (end - start).total_seconds() / buckets,
        "prefixes": dict(Counter(r["prefix"] for r in rows).most_common(10)),
        "channels": dict(Counter(r["channel"] or "direct" for r in rows).most_common(10)),
    }
    return _group(
        "candidate_spike", ratio_score(per_bucket / baseline, 1000),
        f"{cand} got {n} votes in {buckets} bucket(s),"
        f" {per_bucket / baseline:.0f}× its median of the hour before",
        evidence, (r["voter_id"] for r in rows), {"candidate_id": cand}, first, last)


async def _voter_timing_groups(
    conn: asyncpg.Connection, cid: str, w: Window
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT voter_id, min({PREFIX}) AS prefix, count(*) AS n,"
        f" array_agg(extract(epoch FROM cast_at)::float8 ORDER BY cast_at) AS times,"
        f" min(cast_at) AS first_at, max(cast_at) AS last_at"
        f" FROM votes WHERE {WINDOW} GROUP BY voter_id HAVING count(*) >= $4",
        cid, w.since, w.until, VOTER_MIN_VOTES,
    )
    by_prefix: dict[str, list[asyncpg.Record]] = defaultdict(list)
    spreads: dict[str, float] = {}
    for r in rows:
        s = spread(r["times"])
        if s is not None and s < SPREAD:
            by_prefix[r["prefix"] or ""].append(r)
            spreads[r["voter_id"]] = s
    groups = []
    for prefix, members in by_prefix.items():
        n = sum(int(m["n"]) for m in members)
        worst = max(spreads[m["voter_id"]] for m in members)
        groups.append(_group(
            "machine_timing", round(100 * (1 - worst / SPREAD)),
            f"{len(members)} voter(s) from {prefix or 'unknown networks'} vote at"
            f" machine-regular intervals",
            {"votes": n, "voters": len(members), "prefixes": {prefix: n},
             "gap_spread": round(worst, 4)},
            (m["voter_id"] for m in members), {"voter_ids": sorted(m["voter_id"] for m in members)},
            min(m["first_at"] for m in members), max(m["last_at"] for m in members)))
    return groups


async def _attempts(redis: AnyRedis, cid: str, prefixes: set[str], day: int) -> dict[str, int]:
    """Votes tried today from each network, refused ones included (the vote limiter's count:
    the network level of its ``keys.limits`` hash, field ``""`` = ``<day>|<count>|<tat>``
    as ``ip_limit.lua`` writes it, when that counts ``day``)."""
    names = sorted(p for p in prefixes if p)
    if not names:
        return {}
    pipe = redis.pipeline(transaction=False)
    for p in names:
        pipe.hget(keys.limits(cid, p), "")
    values = await pipe.execute()
    counts = {}
    for p, value in zip(names, values, strict=True):
        d, _, rest = (value or "").partition("|")
        if d == str(day):
            counts[p] = int(rest.partition("|")[0])
    return counts


async def find(
    conn: asyncpg.Connection, redis: AnyRedis | None, campaign_id: str, w: Window, today: int
) -> list[dict[str, Any]]:
    """The suspicious groups of the window; ``today`` = the campaign's ``Day.expire_at`` now,
    the mark of the day whose vote attempts the groups' evidence adds."""
    groups = [
        *await _spike_groups(conn, campaign_id, w),
        *await _prefix_groups(conn, campaign_id, w),
        *await _fresh_voter_groups(conn, campaign_id, w),
        *await _voter_timing_groups(conn, campaign_id, w),
    ]
    groups.sort(key=lambda g: (-g["score"], -g["evidence"]["votes"]))
    groups = groups[:MAX_GROUPS]
    if redis is not None:
        prefixes = {p for g in groups for p in g["evidence"].get("prefixes", {})}
        attempts = await _attempts(redis, campaign_id, prefixes, today)
        for g in groups:
            found = {p: attempts[p] for p in g["evidence"].get("prefixes", {}) if p in attempts}
            if found:
                g["evidence"]["attempts_today"] = found
    return groups
