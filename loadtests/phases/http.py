"""Table A (HTTP): the vote endpoint against a bare Starlette endpoint, 1 and 2 workers.

The same run also gives table B's flusher lag (the flusher runs during the vote rows), the
optional py-spy profile of the vote workers, and the invariant after draining (Redis
tallies = PostgreSQL ledger).
"""

from __future__ import annotations

from typing import Any

from voting_service.ledger.reconcile import reconcile

from .. import dataset
from ..context import SHARDS, Context, server_us
from ..report import pct, table

GOAL_RATIO = 0.6


async def run(ctx: Context) -> dict[str, Any]:
    offset = 0
    rows: list[dict[str, Any]] = ctx.keep("http", [])  # filled as it goes
    for workers in ctx.o.workers:
        bare = await ctx.bare_phase(workers)
        ctx.check_load(bare, f"bare w{workers}")
        vote, extra = await ctx.vote_phase(f"vote-w{workers}", ctx.valkey_url,
                                           ctx.service_env(ctx.valkey_url), workers, offset)
        ctx.check_load(vote, f"vote w{workers}")
        offset += vote.consumed
        ratio = vote.rps / bare.rps if bare.rps else 0.0
        rows.append({"workers": workers, "bare": bare.as_dict(), "vote": vote.as_dict(),
                     "ratio": round(ratio, 3), **extra})
        ctx.log(f"w{workers}: bare {bare.rps:,.0f}/s, vote {vote.rps:,.0f}/s "
                f"({pct(vote.ok_fraction)} 200), b/a {ratio:.2f}")
    return {"http": rows, "invariant": await _invariant(ctx)}


async def _invariant(ctx: Context) -> dict[str, Any]:
    """DESIGN §3.6 after the vote phases drained: Redis tallies = PostgreSQL ledger."""
    async with ctx.stores() as (conn, redis):
        drift = await reconcile(redis, conn, dataset.CAMPAIGN_ID, SHARDS)
        rows = int(await conn.fetchval(
            "SELECT count(*) FROM votes WHERE campaign_id = $1", dataset.CAMPAIGN_ID))
    return {"ledger_rows": rows, "drifting_candidates": len(drift)}


def render(ph: dict[str, Any]) -> str:
    """Table A (HTTP)."""
    if "http" not in ph:
        return ""
    rows = []
    for r in ph["http"]:
        b, v = r["bare"], r["vote"]
        rows.append([r["workers"], "a  bare Starlette POST", b["rps"], b["p50_ms"],
                     b["p99_ms"], pct(b["ok_fraction"]), server_us(b), ""])
        rows.append([r["workers"], "b  POST /votes (+ flusher)", v["rps"], v["p50_ms"],
                     v["p99_ms"], pct(v["ok_fraction"]), server_us(v),
                     f"{r['ratio']:.2f}{'' if r['ratio'] >= GOAL_RATIO else ' < 0.6'}"])
    inv = ph.get("invariant", {})
    return table(
        "\nA. HTTP: vote endpoint (b) vs bare Starlette (a), same server settings",
        ["workers", "endpoint", "req/s", "p50 ms", "p99 ms", "200s", "server CPU µs/req",
         "b/a"], rows,
        f"goal b/a ≥ {GOAL_RATIO}; every vote request is a new (voter, candidate) pair "
        "with a varied X-Forwarded-For" + (
            f"\nledger after draining: {inv['ledger_rows']:,} rows in PostgreSQL, "
            f"{inv['drifting_candidates']} candidates drifting (reconcile)" if inv else ""))


def render_lag(ph: dict[str, Any]) -> str:
    """Table B (flusher lag) during the vote rows."""
    if "http" not in ph:
        return ""
    rows = [[r["workers"], r["vote"]["rps"], r["lag"].get("lag_p95_s"),
             r["lag"].get("lag_max_s"), r["lag"].get("backlog_max"), r.get("drain_s")]
            for r in ph["http"]]
    return table(
        "\nB. Flusher lag during A's vote phases (age of the oldest unflushed vote, "
        "Flusher.measure every 0.25 s)",
        ["workers", "votes/s", "lag p95 s", "lag max s", "backlog max", "drained in s"],
        rows)


def render_profile(ph: dict[str, Any]) -> str:
    """The py-spy summary of the vote workers (``--profile``), one block per worker count."""
    out = []
    for r in ph.get("http", []):
        prof = r.get("profile")
        if prof and prof.get("samples"):
            ours = [(n, v) for n, v in prof["inclusive"] if "voting_service/" in n
                    and not n.startswith(("main ", "cmd_serve ", "<module> "))][:12]
            lines = ["ours, inclusive:"] + [f"  {v * 100:5.1f}%  {n}" for n, v in ours]
            lines += ["all, self:"] + [f"  {v * 100:5.1f}%  {n}" for n, v in prof["self"][:12]]
            out.append(f"\nprofile of the vote workers, {r['workers']} worker(s), "
                       f"{prof['samples']} samples (raw stacks in {r.get('profile_dir', '')}):"
                       "\n  " + "\n  ".join(lines))
    return "\n".join(out)
