"""Table M (metrics cost): the vote endpoint, 2 workers (prometheus-client in multiprocess
mode), the vote counter off and on, twice each in turn, same load: what counting costs."""

from __future__ import annotations

from typing import Any

from ..context import Context, server_us
from ..report import pct, table


async def run(ctx: Context) -> dict[str, Any]:
    cid = "metricscost"
    rows: list[dict[str, Any]] = ctx.keep("metrics", [])  # filled as it goes
    await ctx.set_rules(cid, {})
    file, lines = await ctx.request_file(cid, "metrics.tsv", seed=7)
    offset = 0
    try:
        for key, on in (("off", False), ("on", True), ("off_again", False),
                        ("on_again", True)):
            env = ctx.service_env(ctx.valkey_url, VOTING_METRICS="1" if on else "0")
            result, extra = await ctx.vote_phase(
                f"metrics-{key}", ctx.valkey_url, env, 2, offset, requests=file,
                path=f"/api/v1/campaigns/{cid}/votes", limit=lines - offset)
            ctx.check_load(result, f"M {key}")
            offset += result.consumed
            rows.append({"key": key, "metrics": on, "vote": result.as_dict(), **extra})
            ctx.log(f"M {key}: {result.rps:,.0f} votes/s ({pct(result.ok_fraction)} 200)")
    finally:
        file.unlink(missing_ok=True)
    return {"metrics": rows}


def render(ph: dict[str, Any]) -> str:
    """Table M, when the phase has rows."""
    rows = ph.get("metrics")
    if not rows:
        return ""
    table_rows = [[r["key"], "on" if r["metrics"] else "off", r["vote"]["rps"],
                   r["vote"]["p50_ms"], r["vote"]["p99_ms"], pct(r["vote"]["ok_fraction"]),
                   server_us(r["vote"])] for r in rows]
    note = ""
    on = [r["vote"] for r in rows if r["metrics"]]
    off = [r["vote"] for r in rows if not r["metrics"]]
    if on and off:
        rps_on = sum(v["rps"] for v in on) / len(on)
        rps_off = sum(v["rps"] for v in off) / len(off)
        note = f"votes/s with the vote counter / without: {rps_on / rps_off:.3f}"
        us_on = [u for u in map(server_us, on) if u]
        us_off = [u for u in map(server_us, off) if u]
        if us_on and us_off:
            mean_on, mean_off = sum(us_on) / len(us_on), sum(us_off) / len(us_off)
            note += (f"; server CPU per vote {mean_on:.0f} vs {mean_off:.0f} µs "
                     f"({mean_on / mean_off - 1:+.1%}); goal: ≤ 3 % of vote throughput")
    return table("\nM. Metrics cost: vote endpoint, 2 workers (multiprocess metrics), "
                 "vote counter off/on alternately, same load (+ flusher)",
                 ["row", "counter", "votes/s", "p50 ms", "p99 ms", "200s",
                  "server CPU µs/vote"], table_rows, note)
