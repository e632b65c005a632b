"""Phase D (tables D1–D3): the vote path by credential against a bare request, and
``/live`` watchers.

D1. Alternating rounds of: bare Starlette POST, the same as a plain ASGI callable (the
    floor of any route; the vote's own work is its CPU beyond it), vote with a partner JWT,
    vote with an anonymous voter token, vote with an SMS voter's token, and the anonymous
    vote twice more: through the ASGI route (``VOTING_DIRECT_VOTES=0``: what answering
    votes in the HTTP protocol saves), and with every vote a voter's first (the dearest
    case: the worker checks each credential, and each address, for the first time) — 1
    worker each, same load, the flusher running; medians per row. Each vote row has a
    request file of its own. In all but the last, as on the page, each voter casts its ten
    votes of the day one after the other from one address; a worker checks a credential on
    its first vote and remembers it.
    Goals (issue 9): server CPU per vote ≤ 1.4× the bare request's, votes/s ≥ 0.5× the bare
    endpoint's, p99 ≤ 20 ms at 64 connections.
D2. The anonymous vote with and without 2,000 ``/live`` watchers connected to the same
    worker (alternating): vote p95 raised < 20 %; and the watchers' own cost, the server's
    CPU while they are connected and no vote comes, minus the same without them: < 5 %.
D3. (full runs, or ``--instructions``) The bare rows and the goal rows once more, the server under
    callgrind: its instructions per request, which do not move with the machine's speed as
    D1's CPU seconds do (see ``instructions.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import jwt

from voting_service.ledger import campaigns, db
from voting_service.vote.identity import VoterTokens, voter_id
from voting_service.web.api.live import KEEP_ALIVE_PERIODS

from .. import dataset, instructions
from ..context import Context, cpu_us
from ..instructions import Callgrind
from ..report import pct, table

CAMPAIGN = "perf2026"
CHANNEL = "bench"
VARIANTS = ("bare", "asgi", "jwt", "token", "sms", "token-asgi", "token-first")
BASELINES = ("bare", "asgi")
GOALS = ("jwt", "token", "sms")
"""The rows the goals are for; the other two show a lever's gain and the dearest case."""
FIRSTS = ("token-first",)
"""Rows whose votes are each a voter's first (and only) vote: no vote of theirs repeats."""
LABELS = {"bare": "bare Starlette POST", "asgi": "bare ASGI POST (no Starlette)",
          "jwt": "vote, partner JWT", "token": "vote, anonymous token",
          "sms": "vote, SMS voter", "token-asgi": "vote, anonymous token, ASGI route",
          "token-first": "vote, anonymous token, voter's first"}
WATCH = "watch"
"""The request file of the D2 runs (anonymous votes)."""
ENV = {"token-asgi": {"VOTING_DIRECT_VOTES": "0"},
       # D2's 2,000 watchers (and wrk) all come from this machine's one address, where
       # citizens come from many: no per-address or per-network cap on streams or connections
       WATCH: {"VOTING_SSE_PER_ADDRESS": "0", "VOTING_SSE_PER_NETWORK": "0",
               "VOTING_CONN_PER_ADDRESS": "0", "VOTING_CONN_PER_NETWORK": "0"}}
COUNTED = (*BASELINES, *GOALS)
"""The rows of D3."""
COUNT_WARMUP = 3.0
COUNT_SECONDS = 15.0
"""D3's warm-up and measured window, seconds (at least the bench's own)."""
GOAL_CPU = 1.4
GOAL_RPS = 0.5
GOAL_P99_MS = 20.0
GOAL_SSE_P95 = 1.2
GOAL_SSE_CORE = 0.05
RATE_GUESS = 24000
"""Votes a second to size the request files for: above what one worker reaches on this
machine in its fast phases (15k/s), so that no row runs out and repeats votes (a repeat is
refused 409, cheaper than a vote, and flatters the row)."""
WATCHERS = 2000
IDLE_SECONDS = float(KEEP_ALIVE_PERIODS)
"""The watchers' idle cost is measured over one keep-alive cycle (the feed's period is 1 s):
a shorter window holds either the whole keep-alive burst or none of it."""


async def prepare(ctx: Context, runs: dict[str, int]) -> dict[str, tuple[Path, int]]:
    """The campaign (anonymous, partner and SMS voters; one channel) and one request file
    per credential, each with enough distinct (voter, candidate) pairs for its runs."""
    data = dataset.bench_campaign(ctx.o.candidates, CAMPAIGN)
    data["rules"]["identity"] = ["anonymous", "partner", "sms"]
    secret = secrets.token_urlsafe(32)
    async with ctx.stores() as (conn, redis):
        await campaigns.load(conn, redis, json.dumps(data).encode())
        await conn.fetchval(db.INSERT_CHANNEL, CAMPAIGN, CHANNEL, "Bench", [], secret)
        await campaigns.push_snapshot(conn, redis, CAMPAIGN)
    window = ctx.o.warmup + ctx.o.seconds
    files: dict[str, tuple[Path, int]] = {}
    for n, variant in enumerate(runs):
        per_voter = 1 if variant in FIRSTS else 10
        voters = max(2000, math.ceil(runs[variant] * RATE_GUESS * window / per_voter))
        tokens = await asyncio.to_thread(_credentials, _credential(variant), voters, ctx,
                                         secret)
        path = ctx.res.workdir / f"votes-{variant}.tsv"
        pairs = dataset.Pairs(voters, ctx.o.candidates, per_voter, seed=20 + n,
                              in_a_row=variant not in FIRSTS)
        lines = await asyncio.to_thread(dataset.write_requests, path, tokens, pairs, ctx.ips)
        files[variant] = (path, lines)
        ctx.log(f"D: {lines:,} {variant} requests ({voters:,} voters)")
    return files


def _credential(variant: str) -> str:
    """The credential a row's votes carry: ``jwt``, ``token`` or ``sms``."""
    return "token" if variant == WATCH else variant.split("-")[0]


def _credentials(variant: str, count: int, ctx: Context, secret: str) -> list[str]:
    if variant == "token":
        return dataset.issue_tokens(count, CAMPAIGN, ctx.secret_key, ctx.pepper)
    if variant == "jwt":
        exp = int(time.time()) + 20 * 3600
        return ["Bearer " + jwt.encode({"iss": CHANNEL, "aud": CAMPAIGN, "sub": f"user-{i}",
                                        "exp": exp}, secret, algorithm="HS256")
                for i in range(count)]
    tokens = VoterTokens([ctx.secret_key], ctx.pepper)
    return [tokens.issue_verified(CAMPAIGN, "sms",
                                  voter_id(ctx.pepper, "sms", f"+86138{i:08d}"))
            for i in range(count)]


def _p95(load: dict[str, Any]) -> float | None:
    lat = load.get("extra", {}).get("latency_us", {})
    return lat["p95"] / 1000 if "p95" in lat else None


async def run(ctx: Context) -> dict[str, Any]:
    rounds = 2 if ctx.o.quick else 4
    sse_pairs = 1 if ctx.o.quick else 2
    counted = int(ctx.o.instructions)
    runs = {v: rounds + (counted if v in GOALS else 0) for v in VARIANTS
            if v not in BASELINES} | {WATCH: 2 * sse_pairs}
    files = await prepare(ctx, runs)
    path = f"/api/v1/campaigns/{CAMPAIGN}/votes"
    offsets = dict.fromkeys(files, 0)
    out: dict[str, Any] = {"rounds": [], "sse": []}
    ctx.keep("votepath", out)  # kept if interrupted

    async def vote(name: str, variant: str, **kwargs: Any) -> dict[str, Any]:
        file, lines = files[variant]
        env = ctx.service_env(ctx.valkey_url, **ENV.get(variant, {}))
        result, extra = await ctx.vote_phase(
            name, ctx.valkey_url, env, 1, offsets[variant], requests=file, path=path,
            limit=lines - offsets[variant], **kwargs)
        offsets[variant] += result.consumed
        if result.wrapped:
            ctx.log(f"warning: {name} ran out of distinct requests")
        return {"load": result.as_dict(), **extra}

    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        row: dict[str, Any] = {}
        for variant in order:
            if variant in BASELINES:
                load = await ctx.bare_phase(1, asgi=variant == "asgi")
                row[variant] = {"load": load.as_dict()}
            else:
                row[variant] = await vote(f"D{r}-{variant}", variant)
        out["rounds"].append(row)
        ctx.log("D round " + str(r + 1) + ": " + ", ".join(
            f"{v} {row[v]['load']['rps']:,.0f}/s {cpu_us(row[v]['load']) or 0:.0f} µs"
            for v in VARIANTS))

    live = f"/api/v1/campaigns/{CAMPAIGN}/live"
    for k in range(sse_pairs):
        for watchers in ((0, WATCHERS) if k % 2 == 0 else (WATCHERS, 0)):
            got = await vote(f"D2-{k}-w{watchers}", WATCH, watchers=watchers,
                             watch_path=live, idle=IDLE_SECONDS)
            got["watchers"] = watchers
            out["sse"].append(got)
            ctx.log(f"D2 {watchers} watchers: vote p95 {_p95(got['load'])} ms, idle server "
                    f"{got.get('idle_server_cores')} cores")
    out["summary"] = summarize(out)
    if ctx.o.instructions:
        await _count(ctx, out, vote)
    return {"votepath": out}


async def _count(ctx: Context, out: dict[str, Any], vote: Any) -> None:
    """D3: each counted row once, its server under callgrind."""
    if not instructions.available():
        out["instructions_skipped"] = "valgrind not found (apt-get install valgrind)"
        ctx.log("D3 skipped: " + out["instructions_skipped"])
        return
    counting = Callgrind(ctx.res.workdir / "callgrind")
    rows: dict[str, Any] = out.setdefault("instructions", {})
    usual = ctx.load  # a longer window: at ~30× slower, 4 s hold too few requests
    ctx.load = dataclasses.replace(usual, warmup=max(usual.warmup, COUNT_WARMUP),
                                   seconds=max(usual.seconds, COUNT_SECONDS))
    try:
        for variant in COUNTED:
            if variant in BASELINES:
                load = await ctx.bare_phase(1, asgi=variant == "asgi", counting=counting)
                rows[variant] = {"load": load.as_dict()}
            else:
                rows[variant] = await vote(f"D3-{variant}", variant, counting=counting)
            got = rows[variant]["load"]
            ctx.log(f"D3 {variant}: {_per_request(got) or 0:,.0f} instructions/request over "
                    f"{got['requests']:,} requests")
    except RuntimeError as exc:  # callgrind misbehaving must not cost D1 and D2
        out["instructions_error"] = str(exc)
        ctx.log(f"D3 stopped: {exc}")
    finally:
        ctx.load = usual


def _per_request(load: dict[str, Any]) -> float | None:
    n = load.get("extra", {}).get("instructions")
    return n / load["requests"] if n and load["requests"] else None


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    med: dict[str, dict[str, float | None]] = {}
    for variant in VARIANTS:
        loads = [r[variant]["load"] for r in out["rounds"] if variant in r]
        if not loads:
            continue

        def median(values: list[float | None]) -> float | None:
            kept = [v for v in values if v is not None]
            return statistics.median(kept) if kept else None

        med[variant] = {
            "rps": median([x["rps"] for x in loads]),
            "p50_ms": median([x["p50_ms"] for x in loads]),
            "p99_ms": median([x["p99_ms"] for x in loads]),
            "server_us": median([cpu_us(x) for x in loads]),
            "ok": median([x["ok_fraction"] for x in loads]),
        }
    bare = med.get("bare", {})
    for variant, m in med.items():
        if variant == "bare" or not bare.get("rps") or not bare.get("server_us"):
            continue
        m["rps_ratio"] = (m["rps"] or 0) / bare["rps"]  # type: ignore[operator]
        m["cpu_ratio"] = bare["server_us"] / m["server_us"] if m["server_us"] else None  # type: ignore[operator]
    sse: dict[str, Any] = {}
    for watchers in (0, WATCHERS):
        rows = [s for s in out["sse"] if s["watchers"] == watchers]
        if rows:
            p95s = [p for p in (_p95(s["load"]) for s in rows) if p is not None]
            idles = [s["idle_server_cores"] for s in rows if s.get("idle_server_cores") is not None]
            sse[str(watchers)] = {"p95_ms": statistics.median(p95s) if p95s else None,
                                  "idle_cores": statistics.median(idles) if idles else None}
    return {"medians": med, "sse": sse}


def _own_work(med: dict[str, dict[str, float | None]]) -> str:
    """Each vote's server CPU beyond the plain ASGI request's: what the vote itself costs."""
    floor = med.get("asgi", {}).get("server_us")
    if not floor:
        return ""
    parts = [f"{LABELS[v].removeprefix('vote, ')} {us - floor:.0f}"
             for v, m in med.items() if v not in BASELINES and (us := m.get("server_us"))]
    return ("\nthe vote's own work (server CPU beyond the plain ASGI request), µs: "
            + ", ".join(parts)) if parts else ""


def render(ph: dict[str, Any]) -> str:
    """Tables D1, D3 and D2, when the phase has rounds."""
    out = ph.get("votepath", {})
    if not out.get("rounds"):
        return ""
    s = out.get("summary") or summarize(out)
    med = s["medians"]
    rows = []
    for variant in VARIANTS:
        m = med.get(variant)
        if m is None:
            continue
        verdict = ""
        if variant in GOALS and m.get("cpu_ratio"):
            ok = (m["cpu_ratio"] >= 1 / GOAL_CPU and m["rps_ratio"] >= GOAL_RPS
                  and (m["p99_ms"] or 1e9) <= GOAL_P99_MS)
            verdict = "met" if ok else "NOT met"
        rows.append([LABELS[variant], m["rps"], m.get("rps_ratio") and f"{m['rps_ratio']:.2f}",
                     m["p50_ms"], m["p99_ms"], m["server_us"] and round(m["server_us"]),
                     m.get("cpu_ratio") and f"{m['cpu_ratio']:.2f}", pct(m["ok"] or 0), verdict])
    text = table(
        f"\nD1. Vote path by credential vs a bare request: 1 worker, medians of "
        f"{len(out['rounds'])} alternating rounds (+ flusher)",
        ["endpoint", "votes/s", "×bare", "p50 ms", "p99 ms", "server CPU µs/req",
         "bare/vote CPU", "200s", "goals"], rows,
        f"goals: bare/vote CPU ≥ {1 / GOAL_CPU:.2f} (a vote ≤ {GOAL_CPU}× a bare request's "
        f"server CPU), ×bare ≥ {GOAL_RPS}, p99 ≤ {GOAL_P99_MS:g} ms" + _own_work(med))
    text += _render_instructions(out)
    sse = s.get("sse", {})
    if sse:
        without, with_ = sse.get("0", {}), sse.get(str(WATCHERS), {})
        p0, p1 = without.get("p95_ms"), with_.get("p95_ms")
        i0, i1 = without.get("idle_cores"), with_.get("idle_cores")
        rows = [["none", p0, i0], [f"{WATCHERS:,}", p1, i1]]
        note = ""
        if p0 and p1:
            note += (f"vote p95 ×{p1 / p0:.2f} with the watchers "
                     f"({'met' if p1 / p0 < GOAL_SSE_P95 else 'NOT met'}: < ×{GOAL_SSE_P95})")
        if i0 is not None and i1 is not None:
            cost = i1 - i0
            note += (f"\nthe watchers' own cost: {cost * 100:.1f} % of a core "
                     f"({'met' if cost < GOAL_SSE_CORE else 'NOT met'}: < "
                     f"{GOAL_SSE_CORE:.0%}), server CPU over {IDLE_SECONDS:g} s with no vote")
        text += "\n" + table(
            "\nD2. /live watchers on the vote worker (anonymous votes, alternating runs)",
            ["watchers", "vote p95 ms", "idle server cores"], rows, note)
    return text


def _render_instructions(out: dict[str, Any]) -> str:
    if "instructions_skipped" in out:
        return f"\n\nD3. skipped: {out['instructions_skipped']}"
    counted = out.get("instructions")
    if not counted:
        return ""
    bare = _per_request(counted.get("bare", {}).get("load", {}))
    rows = []
    for variant in COUNTED:
        got = counted.get(variant)
        if got is None:
            continue
        per = _per_request(got["load"])
        ratio = bare / per if bare and per and variant != "bare" else None
        verdict = ""
        if variant in GOALS and ratio is not None:
            verdict = "met" if ratio >= 1 / GOAL_CPU else "NOT met"
        rows.append([LABELS[variant], got["load"]["requests"], per and round(per / 1000, 1),
                     ratio and f"{ratio:.2f}", verdict])
    note = (f"the server under callgrind (~30× slower), 1 worker, the rows once each, "
            f"{COUNT_SECONDS:g} s after {COUNT_WARMUP:g} s of warm-up; user-space "
            f"instructions only (not the kernel's for the system calls); goal as D1's: bare/"
            f"vote ≥ {1 / GOAL_CPU:.2f}")
    if "instructions_error" in out:
        note += f"\nstopped: {out['instructions_error']}"
    return "\n" + table(
        "\nD3. Instructions per request (callgrind): the same rows on a measure that does not "
        "move with the machine's speed", ["endpoint", "requests", "k instructions/req",
                                          "bare/vote", "goal"], rows, note)
