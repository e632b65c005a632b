"""``make load``: the load test with service-level objectives (issue 12 §4).

Starts a local stack on loopback (embedded PostgreSQL and Valkey with AOF always, the web
app with ``--workers``, one flusher), loads a campaign with a media channel and a partner
channel, runs ``loadtests/locustfile.py`` headless with its burst shape for ``--seconds``
(citizens throughout, a media embed burst, a partner app burst, a bot farm), writes locust's
CSV and HTML reports, then checks:

- vote p99 ≤ 50 ms at the offered rate (locust's stats of ``POST …/votes``);
- 5xx and transport errors < 0.1 % of all requests;
- no acknowledged vote lost: every vote_id answered 200 is in PostgreSQL once the flusher
  has drained;
- the bot farm held to its caps: its accepted votes (PostgreSQL, by network) are at most
  ``net_per_minute`` × (minutes + 1);

prints the table and exits 1 when one is missed. Loopback only; every child is stopped.

    .venv/bin/python -m loadtests.load [--seconds 120] [--users 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import math
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from voting_service.stack import Stack

from .procs import REPO, sigterm_as_interrupt

CAMPAIGN = "load2026"
P99_MS = 50.0
ERROR_RATIO = 0.001
RULES: dict[str, Any] = {
    "votes_per_day": 5, "per_candidate_per_day": 1, "identity": ["anonymous", "partner"],
    "challenge": "adaptive", "challenge_max_number": 1000,
    "ip_per_minute": 30, "ip_per_day": 2000, "net_per_minute": 120, "net_per_day": 5000,
}
BOT_NETWORK = "203.0.113.0/24"
"""The locustfile's bot farm network (``BOT_NETWORK`` there)."""


def campaign_payload() -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    regions = ["南京市", "苏州市", "无锡市", "常州市", "南通市", "扬州市"]
    industries = ["电子信息", "装备制造", "生物医药", "建筑", "交通运输"]
    return {
        "id": CAMPAIGN, "title": "负载测试投票", "timezone": "Asia/Shanghai",
        "opens_at": (now - dt.timedelta(days=1)).isoformat(),
        "closes_at": (now + dt.timedelta(days=30)).isoformat(),
        "status": "open", "show_counts": True, "rules": RULES,
        "candidates": [
            {"id": f"c{i:03d}", "number": i, "name": f"候选人{i}",
             "gender": "男" if i % 2 else "女", "region": regions[i % len(regions)],
             "industry": industries[i % len(industries)], "employer": "某公司",
             "occupation": "高级技师", "summary": "简介" * 20, "deeds": "事迹" * 200}
            for i in range(1, 61)
        ],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120.0, help="length of the run")
    p.add_argument("--users", type=int, default=100,
                   help="citizens throughout (each burst adds as many again)")
    p.add_argument("--workers", type=int, default=2, help="web workers")
    p.add_argument("--out-dir", type=Path, default=REPO / "load-results")
    return p.parse_args(argv)


def _stats_row(prefix: Path, name: str) -> dict[str, str]:
    with open(f"{prefix}_stats.csv", encoding="utf-8") as f:
        return next(row for row in csv.DictReader(f) if row["Name"] == name)


async def _acknowledged_in_pg(pg_url: str, vote_ids: list[str], timeout: float) -> int:
    """How many acknowledged votes are still missing from the ledger once the flusher has
    had ``timeout`` seconds to catch up."""
    conn = await asyncpg.connect(pg_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = await conn.fetchval(
                "SELECT count(DISTINCT vote_id) FROM votes WHERE campaign_id = $1"
                " AND vote_id = ANY($2::text[])", CAMPAIGN, vote_ids)
            missing = len(set(vote_ids)) - int(found)
            if missing == 0 or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def _bot_votes(pg_url: str) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM votes WHERE campaign_id = $1 AND ip <<= $2::inet",
            CAMPAIGN, BOT_NETWORK))
    finally:
        await conn.close()


async def run(a: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = a.out_dir / stamp
    out.mkdir(parents=True, exist_ok=True)
    admin = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="voting-load-") as tmp, Stack(
            Path(tmp), admin_tokens=f"admin:{admin}", logdir=out, cwd=REPO,
            base_env={k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")},
            extra={"VOTING_TRUSTED_PROXIES": "127.0.0.1/32"}) as local:
        local.migrate()
        web = local.start_web(workers=a.workers)
        await local.ready()
        local.start_flusher("load-flusher")
        base = web.url
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            r = await http.post("/api/v1/admin/campaigns", json=campaign_payload())
            assert r.status_code == 201, r.text
            r = await http.post(f"/api/v1/admin/campaigns/{CAMPAIGN}/channels",
                                json={"id": "media1", "name": "某新闻网",
                                      "allowed_origins": ["https://news.example.cn"]})
            assert r.status_code == 201, r.text
            r = await http.post(f"/api/v1/admin/campaigns/{CAMPAIGN}/channels",
                                json={"id": "app1", "name": "某资讯App"})
            assert r.status_code == 201, r.text
            partner_secret = str(r.json()["secret"])
        await asyncio.sleep(2.5)  # every worker picks up the channels (1 s poll)

        prefix = out / "locust"
        summary = out / "summary.json"
        locust_env = dict(local.env, LOCUST_SHAPE="slo", LOCUST_USERS=str(a.users),
                          LOCUST_SECONDS=str(a.seconds), LOCUST_CAMPAIGN=CAMPAIGN,
                          LOCUST_EMBED_CHANNEL="media1", LOCUST_PARTNER_CHANNEL="app1",
                          LOCUST_PARTNER_SECRET=partner_secret,
                          LOCUST_SUMMARY=str(summary),
                          LOCUST_MAX_SECONDS=str(a.seconds + 60))
        started = time.monotonic()
        locust = local.children.start("locust", [
            str(Path(sys.executable).parent / "locust"), "-f",
            str(REPO / "loadtests" / "locustfile.py"), "--host", base, "--headless",
            "--run-time", f"{math.ceil(a.seconds) + 10}s", "--csv", str(prefix),
            "--html", str(out / "report.html"), "--only-summary", "--stop-timeout", "5",
            "--exit-code-on-error", "0", "--loglevel", "WARNING",
        ], locust_env)
        while locust.alive():
            await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        if not summary.exists():
            raise RuntimeError(f"locust wrote no summary:\n{locust.tail()}")
        result = json.loads(summary.read_text())
        acknowledged: list[str] = result["acknowledged"]
        missing = await _acknowledged_in_pg(local.database_url, acknowledged, 90)
        bots = await _bot_votes(local.database_url)

    votes = _stats_row(prefix, "/campaigns/{cid}/votes")
    total = int(result["requests"].get("total", 0))
    errors = int(result["requests"].get("5xx", 0)) + int(result["requests"].get("transport", 0))
    minutes = a.seconds / 60
    bot_cap = int(RULES["net_per_minute"] * (minutes + 1))
    vote_rate = int(votes["Request Count"]) / max(elapsed, 1.0)
    p99 = float(votes["99%"])
    rows = [
        ("vote p99", f"{p99:.0f} ms at {vote_rate:.0f} votes/s offered", f"≤ {P99_MS:.0f} ms",
         p99 <= P99_MS),
        ("5xx + transport errors", f"{errors} of {total} ({errors / max(total, 1):.3%})",
         f"< {ERROR_RATIO:.1%}", errors / max(total, 1) < ERROR_RATIO),
        ("acknowledged votes lost", f"{missing} of {len(acknowledged)}", "0", missing == 0),
        ("bot farm accepted", f"{bots} votes from {BOT_NETWORK}",
         f"≤ {bot_cap} (net_per_minute × (min + 1))", bots <= bot_cap),
    ]
    print(f"\nload test: {a.seconds:.0f} s, {a.users} citizens (+ bursts), {a.workers} web "
          f"workers; votes by scenario and status: {result['by_scenario']}")
    print(f"reports: {out}/report.html, {prefix}_stats.csv\n")
    print(f"| {'SLO':<24} | {'measured':<44} | {'objective':<36} | ok |")
    print(f"|{'-' * 26}|{'-' * 46}|{'-' * 38}|----|")
    for name, measured, objective, ok in rows:
        print(f"| {name:<24} | {measured:<44} | {objective:<36} | {'✓' if ok else '✗'}  |")
    (out / "slo.json").write_text(json.dumps(
        [{"slo": n, "measured": m, "objective": o, "ok": ok} for n, m, o, ok in rows],
        ensure_ascii=False, indent=2))
    missed = [name for name, _, _, ok in rows if not ok]
    print(f"\n{'all SLOs met' if not missed else 'missed: ' + ', '.join(missed)}")
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    with sigterm_as_interrupt():
        return asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
