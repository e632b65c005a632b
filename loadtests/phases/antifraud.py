"""Phase C of ``make bench`` (table C): what the anti-fraud features cost the vote endpoint.

Four configurations of one campaign, whose rules change between rows (the server restarts each time,
on the same settings): no proof of work and no IP limits (the baseline), the IP limits
alone, the proof of work alone, both. The limits are set high enough that nothing is
refused; the ``X-Forwarded-For`` addresses of the request file spread over 400 /24 networks.
The baseline runs again at the end: the rows are compared with the mean of the two, and
their difference shows how much the machine drifted meanwhile (two shared cores).

For the proof-of-work rows each request carries its own solved ALTCHA challenge, issued to
its voter with ``challenge.Challenges.issue`` and solved with ``challenge.solve`` as the
widget would, before the clock starts (in a process pool: a solution costs ~0.6 ms of CPU
at ``challenge_max_number`` 1000). Only the server's side is measured: decoding the proof,
checking its salt's parameters, one SHA-256 and one HMAC (whatever the difficulty), and the
spent marker that ``cast_vote.lua`` writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voting_service.fraud import challenge
from voting_service.models import Rules
from voting_service.vote.identity import VoterTokens

from ..context import Context, server_us
from ..report import pct, table

CAMPAIGN_ID = "antifraud"
MAX_NUMBER = 1000
"""``challenge_max_number`` of the proof-of-work rows: solving stays cheap; checking a proof
costs the server the same whatever the difficulty."""
GOAL = 0.75
"""The full anti-fraud path keeps at least this share of the baseline's votes/s."""
MIN_OK = 0.99
"""Below this share of 200s in any row the comparison means nothing."""
LIMITS_OFF = {"ip_per_minute": 0, "ip_per_day": 0, "net_per_minute": 0, "net_per_day": 0}
LIMITS_ON = {"ip_per_minute": 600, "ip_per_day": 20_000, "net_per_minute": 6000,
             "net_per_day": 200_000}
"""Realistic caps (the model's defaults), far above what the bench sends per address:
~20,000 addresses in 400 /24 networks share ~1,500 votes/s."""
CHUNK = 250
"""Proofs per task of the process pool."""
PROOF_MARGIN = 1.2
"""Proofs solved for a proof-of-work row, at least per request the fastest earlier row sent."""


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    challenge: bool
    limits: bool

    def rules(self) -> dict[str, Any]:
        return {"challenge": "on" if self.challenge else "off",
                "challenge_max_number": MAX_NUMBER,
                **(LIMITS_ON if self.limits else LIMITS_OFF)}


ROWS = (
    Row("baseline", "1  challenge off, limits off", challenge=False, limits=False),
    Row("limits", "2  challenge off, limits on", challenge=False, limits=True),
    Row("challenge", "3  challenge on, limits off", challenge=True, limits=False),
    Row("full", "4  challenge on + limits on", challenge=True, limits=True),
    Row("baseline_again", "1' = 1, again at the end", challenge=False, limits=False),
)
BASELINES = ("baseline", "baseline_again")
DRIFT_WARN = 0.10
"""The two baseline runs differing by more than this share: the machine was too noisy."""
BUSY_OTHER = 0.25
"""Cores used by processes the bench did not start, above which a row counts as disturbed
(on a quiet machine they use ~0.05)."""


def solve_chunk(secret_key: str, pepper: str, campaign_id: str, max_number: int,
                tokens: list[str]) -> list[str]:
    """One proof per token, bound to the token's voter, valid ``challenge.TTL`` s from now.

    Runs in a pool process: everything it needs comes in as plain arguments."""
    voters = VoterTokens([secret_key], pepper)
    signer = challenge.Challenges([secret_key])
    rules = Rules(challenge="on", challenge_max_number=max_number)
    out = []
    for token in tokens:
        voter, _ = voters.credential(token, campaign_id)
        issued = signer.issue(campaign_id, voter, rules, 0, time.time())
        out.append(challenge.solve(issued))
    return out


def _read_lines(path: Path, start: int, count: int) -> list[tuple[str, str, str]]:
    """``(token, x-forwarded-for, body)`` of request-file lines ``start`` … ``start+count-1``."""
    out = []
    with open(path, encoding="ascii") as f:
        for line in itertools.islice(f, start, start + count):
            token, xff, body = line.rstrip("\n").split("\t", 2)
            out.append((token, xff, body))
    return out


def _write_with_proofs(path: Path, lines: list[tuple[str, str, str]], proofs: list[str]) -> None:
    with open(path, "w", encoding="ascii") as out:
        for (token, xff, body), proof in zip(lines, proofs, strict=True):
            vote = json.loads(body)
            vote["proof"] = proof
            out.write(f"{token}\t{xff}\t{json.dumps(vote, separators=(',', ':'))}\n")


async def write_proof_file(src: Path, dst: Path, start: int, count: int, *, secret_key: str,
                           pepper: str, campaign_id: str = CAMPAIGN_ID,
                           max_number: int = MAX_NUMBER,
                           processes: int | None = None) -> dict[str, Any]:
    """Copy request-file lines ``start`` … of ``src`` into ``dst``, each vote with its own
    solved proof of work. The pool is gone when this returns (or raises)."""
    began = time.monotonic()
    lines = await asyncio.to_thread(_read_lines, src, start, count)
    if not lines:
        raise ValueError(f"no request lines from {start} in {src}")
    tokens = [t for t, _, _ in lines]
    workers = processes or os.cpu_count() or 1
    # spawn, not fork: the parent runs an event loop and threads
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        loop = asyncio.get_running_loop()
        tasks = [loop.run_in_executor(pool, solve_chunk, secret_key, pepper, campaign_id,
                                      max_number, tokens[i:i + CHUNK])
                 for i in range(0, len(tokens), CHUNK)]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    proofs = [p for part in parts for p in part]
    await asyncio.to_thread(_write_with_proofs, dst, lines, proofs)
    return {"proofs": len(proofs), "seconds": round(time.monotonic() - began, 2),
            "processes": workers, "max_number": max_number,
            "valid_s": challenge.TTL}


def _server_s_per_vote(load: dict[str, Any]) -> float | None:
    seconds = load.get("extra", {}).get("cpu_seconds", {}).get("server")
    return seconds / load["requests"] if seconds and load["requests"] else None


def other_cores(row: dict[str, Any]) -> float:
    """Cores the processes not started by the bench used during the row's window."""
    return float(row["vote"].get("extra", {}).get("cpu_cores", {}).get("other", 0.0))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios to the baseline and whether the goal is met (and meaningful).

    The baseline is the mean of its runs (first and last row). ``ratios``: votes/s of each
    row / the baseline's (what the goal is about); ``cpu_ratios``: the baseline's server CPU
    per vote / the row's — the votes/s ratio the server alone would give at a full core,
    steadier when other work shares the machine; ``drift``: last baseline / first, votes/s."""
    bases = [r for r in rows if r["key"] in BASELINES]
    base_rps = _mean([r["vote"]["rps"] for r in bases])
    out: dict[str, Any] = {"goal": GOAL, "min_ok": MIN_OK}
    if not base_rps:
        return out
    out["baseline_rps"] = round(base_rps, 1)
    out["ratios"] = {r["key"]: round(r["vote"]["rps"] / base_rps, 3) for r in rows}
    base_cpus = [c for r in bases if (c := _server_s_per_vote(r["vote"]))]
    if base_cpus:
        out["baseline_server_us"] = round(_mean(base_cpus) * 1e6, 1)
        out["cpu_ratios"] = {r["key"]: round(_mean(base_cpus) / cpu, 3) for r in rows
                             if (cpu := _server_s_per_vote(r["vote"]))}
    out["disturbed"] = [r["key"] for r in rows if other_cores(r) > BUSY_OTHER]
    out["steady"] = not out["disturbed"]
    if len(bases) == 2 and bases[0]["vote"]["rps"]:
        out["drift"] = round(bases[1]["vote"]["rps"] / bases[0]["vote"]["rps"], 3)
        out["steady"] = out["steady"] and abs(out["drift"] - 1) <= DRIFT_WARN
    out["ok_fractions"] = {r["key"]: r["vote"]["ok_fraction"] for r in rows}
    out["all_ok"] = all(r["vote"]["ok_fraction"] >= MIN_OK for r in rows)
    if "full" in out["ratios"]:
        out["full_ratio"] = out["ratios"]["full"]
        out["met"] = out["full_ratio"] >= GOAL
        out["meaningful"] = out["all_ok"] and len(rows) == len(ROWS)
    return out


def remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


async def run(ctx: Context) -> dict[str, Any]:
    """C: the vote endpoint with proof of work off/on × IP limits off/on, one campaign
    whose rules change between rows, the same server settings (1 worker) and load."""
    cid = CAMPAIGN_ID
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = ctx.keep("antifraud", {  # filled as it goes
        "campaign": cid, "rows": rows, "limits_on": LIMITS_ON,
        "challenge_max_number": MAX_NUMBER})
    await ctx.set_rules(cid, ROWS[0].rules())
    plain, lines = await ctx.request_file(cid, "antifraud.tsv", seed=5)
    with_proofs = ctx.res.workdir / "antifraud-pow.tsv"
    path = f"/api/v1/campaigns/{cid}/votes"
    env = ctx.service_env(ctx.valkey_url)
    offset = 0
    try:
        for row in ROWS:
            await ctx.set_rules(cid, row.rules())
            file, start, limit = plain, offset, lines - offset
            proofs: dict[str, Any] = {}
            if row.challenge:
                # one proof per request, made just before the row (valid challenge.TTL s)
                limit = min(_proofs_needed(ctx, rows), lines - offset)
                ctx.log(f"C: solving {limit} challenges (maxnumber "
                        f"{MAX_NUMBER}) for '{row.label}'")
                proofs = await write_proof_file(
                    plain, with_proofs, offset, limit, secret_key=ctx.secret_key,
                    pepper=ctx.pepper, campaign_id=cid)
                ctx.log(f"C: {proofs['proofs']} proofs in {proofs['seconds']} s")
                file, start = with_proofs, 0
            result, extra = await ctx.vote_phase(
                f"antifraud-{row.key}", ctx.valkey_url, env, 1, start, requests=file,
                path=path, limit=limit)
            ctx.check_load(result, f"C {row.key}")
            offset += result.consumed
            rows.append({"key": row.key, "label": row.label, "challenge": row.challenge,
                         "limits": row.limits, "rules": row.rules(),
                         "vote": result.as_dict(), **extra,
                         **({"proofs": proofs} if proofs else {})})
            ctx.log(f"C {row.key}: {result.rps:,.0f} votes/s "
                    f"({pct(result.ok_fraction)} 200)")
    finally:
        remove(plain, with_proofs)
        summary.update(verdict(rows))
    return {"antifraud": summary}


def _proofs_needed(ctx: Context, done: list[dict[str, Any]]) -> int:
    """Requests a proof-of-work row may send in its warm-up + window, with room to spare:
    running out would replay spent proofs and spoil the row.

    One worker cannot use more than one core, and a proof only adds to the baseline's
    server CPU per vote: so at most 1 s / (baseline CPU per vote) votes a second — taking
    the CPU per vote 10 % lower, for noise — and at least PROOF_MARGIN × what any earlier
    row sent."""
    window = ctx.o.warmup + ctx.o.seconds
    base = next((r for r in done if r["key"] == "baseline"), None)
    us = server_us(base["vote"]) if base else None
    bound = 1e6 / (0.9 * us) * window if us else 3000 * window  # no baseline: generous
    sent = max((r["vote"]["consumed"] for r in done), default=0)
    return math.ceil(max(bound, sent * PROOF_MARGIN)) + 2 * ctx.o.connections


def render(ph: dict[str, Any]) -> str:
    """Table C, when the phase has rows."""
    af = ph.get("antifraud", {})
    if not af.get("rows"):
        return ""
    rows = []
    base_us = af.get("baseline_server_us")
    for r in af["rows"]:
        v = r["vote"]
        ratio = af.get("ratios", {}).get(r["key"])
        cpu_ratio = af.get("cpu_ratios", {}).get(r["key"])
        us = server_us(v)
        ok = pct(v["ok_fraction"]) + ("" if v["ok_fraction"] >= MIN_OK else " < 99%")
        if v.get("wrapped"):
            ok += " (ran out of requests)"
        busy = r["key"] in af.get("disturbed", [])
        rows.append([r["label"] + (" *" if busy else ""), v["rps"], v["p50_ms"], v["p99_ms"],
                     ok, us,
                     f"{us - base_us:+.0f}" if us is not None and base_us is not None else None,
                     server_us(v, "valkey"), "-" if ratio is None else f"{ratio:.2f}",
                     "-" if cpu_ratio is None else f"{cpu_ratio:.2f}"])
    lim = af.get("limits_on", {})
    note = (f"limits on = ip_per_minute {lim.get('ip_per_minute')}, ip_per_day "
            f"{lim.get('ip_per_day'):,}, net_per_minute {lim.get('net_per_minute')}, "
            f"net_per_day {lim.get('net_per_day'):,} (X-Forwarded-For over 400 /24s); off = 0\n"
            f"challenge on: one proof per request, bound to its voter, solved beforehand "
            f"(maxnumber {af.get('challenge_max_number')}): only verifying is measured")
    proofs = [r["proofs"] for r in af["rows"] if r.get("proofs")]
    if proofs:
        note += " (" + ", ".join(f"{p['proofs']:,} solved in {p['seconds']:g} s"
                                 for p in proofs) + ")"
    note += ("\nbaseline = mean of 1 and 1'; ×1: votes/s / the baseline's; ×1 CPU: the "
             "baseline's server CPU per vote / the row's (the votes/s ratio at a full core, "
             "steadier under noise); Δ µs: server CPU per vote over the baseline's")
    if af.get("disturbed"):
        note += (f"\n* other processes used more than {BUSY_OTHER:g} cores during "
                 "this row (see the CPU table): its figures are disturbed")
    drift = af.get("drift")
    if drift is not None:
        note += f"\n1' / 1 = {drift:.3f} (how much the machine drifted during the phase)"
        if abs(drift - 1) > DRIFT_WARN:
            note += (f": more than {DRIFT_WARN:.0%}, the ratios are noisy — "
                     "run the phase again (--only antifraud)")
    if "full_ratio" in af:
        met = "MET" if af["met"] else "NOT MET"
        cpu = af.get("cpu_ratios", {}).get("full")
        note += (f"\ngoal: the full anti-fraud path (4) keeps ≥ {af['goal']:.0%} of the "
                 f"baseline's votes/s: 4/1 = {af['full_ratio']:.3f} → {met}"
                 + (f" (by server CPU per vote: {cpu:.3f})" if cpu else "")
                 + ("" if af.get("steady", True) else " — unreliable: the machine was busy"))
        if not af.get("meaningful"):
            note += (f"\nWARNING: a row is missing or got fewer than {af['min_ok']:.0%} 200s: "
                     "the comparison is meaningless")
    return table(
        "\nC. Anti-fraud cost: vote endpoint, 1 worker, same server settings and load "
        "(+ flusher), one campaign whose rules change between rows",
        ["row", "votes/s", "p50 ms", "p99 ms", "200s", "server CPU µs/vote", "Δ µs",
         "Valkey CPU µs/vote", "×1", "×1 CPU"], rows, note)
