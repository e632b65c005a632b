"""The bench's tables rendered from small recorded results, one phase at a time: a table
that a refactor of ``loadtests/`` breaks or drops shows here, not only in a 25-minute run."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from loadtests import bench
from loadtests.context import server_us
from loadtests.phases import antifraud, ceiling, durability, flusher, http, metrics, votepath


def load(rps: float, server_us_per_req: float, *, other: float = 0.1, p95_us: int = 9000,
         instructions: int = 0) -> dict[str, Any]:
    """A ``LoadResult.as_dict()`` as the bench records it (4 s window)."""
    n = int(rps * 4)
    extra: dict[str, Any] = {
        "latency_us": {"p50": 4000, "p95": p95_us, "p99": 15000},
        "cpu_cores": {"server": 0.5, "valkey": 0.1, "other": other},
        "cpu_seconds": {"server": server_us_per_req * n / 1e6, "valkey": 20 * n / 1e6}}
    if instructions:
        extra["instructions"] = instructions * n
    return {"tool": "wrk -t1 -c64", "requests": n, "seconds": 4.0, "p50_ms": 4.3,
            "p99_ms": 15.9, "statuses": {"200": n}, "errors": 0, "consumed": n + 500,
            "wrapped": False, "extra": extra, "rps": float(rps), "ok_fraction": 1.0}


HTTP = {"http": [{"workers": 1, "bare": load(12560, 37), "vote": load(2832, 116),
                  "ratio": 0.225, "lag": {"lag_p95_s": 0.102, "lag_max_s": 0.111,
                                          "backlog_max": 383}, "drain_s": 0.0}],
        "invariant": {"ledger_rows": 27772, "drifting_candidates": 0}}


def lines_with(text: str, *cells: str) -> list[str]:
    return [line for line in text.splitlines() if all(c in line for c in cells)]


def test_server_us_is_cpu_per_request_in_the_window() -> None:
    assert server_us(load(1000, 116)) == 116
    assert server_us(load(1000, 116), "valkey") == 20
    assert server_us({"requests": 0, "extra": {}}) is None


def test_http_tables_a_and_lag() -> None:
    a = http.render(HTTP)
    assert a.startswith("\nA. HTTP: vote endpoint (b) vs bare Starlette (a)")
    assert lines_with(a, "a  bare Starlette POST", "12,560", "37")
    assert lines_with(a, "b  POST /votes (+ flusher)", "2,832", "116", "0.23 < 0.6")
    assert "27,772 rows in PostgreSQL, 0 candidates drifting" in a
    lag = http.render_lag(HTTP)
    assert lag.startswith("\nB. Flusher lag during A's vote phases")
    assert lines_with(lag, "2,832", "0.10", "383")
    assert http.render({}) == http.render_lag({}) == http.render_profile(HTTP) == ""


def test_ceiling_tables_a_and_a2() -> None:
    runs = [{"mode": "full", "variant": v, "backend": "single", "round": r, "concurrency": 512,
             "rate": 9000.0, "votes": 18000,
             "per_vote": {"cpu_us": cpu, "sys_us": 3.25, "script_us": 9.5, "aof_bytes": 400,
                          "scripts": 1,
                          "redis_calls": 14, "by_command": {"evalsha": 1, "xadd": 1}}}
            for v, cpu in (("before", 31.0), ("after", 21.0)) for r in (1, 2)]
    grind = [{"variant": "after", "mode": "full", "votes": 3000, "instructions": 123_456_000,
              "per_vote": 41152, "outcomes": {"accepted": 3000}},
             {"variant": "after", "mode": "full", "backend": "cluster", "votes": 2990,
              "instructions": 700_000_000, "per_vote": 234114,
              "outcomes": {"accepted": 2990}}]
    text = ceiling.render({"ceiling": runs, "ceiling_instructions": grind})
    assert text.startswith("\nA. Redis alone: voting.cast through pipeline.Pipeline")
    assert lines_with(text, "single node, limits + vote (1 call)", "after", "21.0", "3.25",
                      "yes", "xadd 1")
    assert lines_with(text, "before", "31.0", "> 25")
    assert "\nA2. Valkey's instructions per vote" in text
    assert lines_with(text, "single", "full", "after", "3,000", "41.2", "100.00%")
    assert lines_with(text, "cluster", "full", "after", "2,990", "234", "100.00%")
    assert ceiling.render({}) == ""


def test_flusher_table_b() -> None:
    rows = [{"method": "flusher end to end", "rows": 50000, "seconds": 0.24,
             "rows_per_s": 208192.5, "complete": True, "batches": 2, "rows_per_batch": 25000,
             "stage_seconds": {"collect": 0.047, "write": 0.187}},
            {"method": "asyncpg executemany", "rows": 50000, "seconds": 0.794,
             "rows_per_s": 62966.6, "complete": False}]
    text = flusher.render({"flusher": rows})
    assert text.startswith("\nB. Into PostgreSQL: the same ledger rows, three ways")
    assert lines_with(text, "flusher end to end", "208,192", "yes")
    assert lines_with(text, "asyncpg executemany", "62,967", "no", "time bound hit")
    assert "2 passes of ~25000 rows; time in collect 0.05 s, write 0.19 s" in text


def test_durability_table_starts_with_table_a_vote() -> None:
    rows = [{"valkey": "appendonly no", "mode": "no AOF", "safe": False, "waitaof": False,
             "vote": load(3500, 100), "weak_flag": True}]
    text = durability.render({**HTTP, "durability": rows})
    assert text.startswith("\nB. Cost of durability: vote endpoint, 1 worker")
    body = text.splitlines()[4:]
    assert "appendfsync always (= A, 1 worker)" in body[0] and "2,832" in body[0]
    assert lines_with(text, "appendonly no", "[VOTING_ACCEPT_WEAK_DURABILITY=1]", "3,500")
    assert durability.render(HTTP) == ""


def test_antifraud_table_c_and_verdict() -> None:
    rows = [{"key": r.key, "label": r.label, "challenge": r.challenge, "limits": r.limits,
             "rules": r.rules(), "vote": load(rps, us)}
            for r, rps, us in zip(antifraud.ROWS, (3000, 2900, 2500, 2400, 3000),
                                  (100, 104, 120, 125, 100), strict=True)]
    summary = {"campaign": antifraud.CAMPAIGN_ID, "rows": rows,
               "limits_on": antifraud.LIMITS_ON, "challenge_max_number": antifraud.MAX_NUMBER,
               **antifraud.verdict(rows)}
    text = antifraud.render({"antifraud": summary})
    assert text.startswith("\nC. Anti-fraud cost: vote endpoint, 1 worker")
    assert lines_with(text, "4  challenge on + limits on", "2,400", "125", "+25", "0.80")
    assert "4/1 = 0.800 → MET" in text
    assert antifraud.render({"antifraud": {"rows": []}}) == ""


def test_metrics_table_m() -> None:
    rows = [{"key": k, "metrics": on, "vote": load(2000, us)}
            for k, on, us in (("off", False, 150), ("on", True, 153))]
    text = metrics.render({"metrics": rows})
    assert text.startswith("\nM. Metrics cost: vote endpoint, 2 workers")
    assert lines_with(text, "on ", "2,000", "153")
    assert "server CPU per vote 153 vs 150 µs (+2.0%)" in text


def test_votepath_tables_d1_d3_d2() -> None:
    def row(r: int) -> dict[str, Any]:
        return {v: {"load": load(12000 if v in votepath.BASELINES else 6000,
                                 50 if v in votepath.BASELINES else 60 + r)}
                for v in votepath.VARIANTS}
    out: dict[str, Any] = {
        "rounds": [row(0), row(2)],
        "sse": [{"load": load(6000, 60, p95_us=p95), "watchers": w, "idle_server_cores": idle}
                for w, p95, idle in ((0, 9000, 0.01), (votepath.WATCHERS, 9900, 0.02))],
        "instructions": {v: {"load": load(400, 3000, instructions=300_000 if v in
                                          votepath.BASELINES else 400_000)}
                         for v in votepath.COUNTED}}
    out["summary"] = votepath.summarize(out)
    text = votepath.render({"votepath": out})
    assert text.startswith("\nD1. Vote path by credential vs a bare request: 1 worker, "
                           "medians of 2 alternating rounds")
    assert lines_with(text, "vote, partner JWT", "6,000", "0.50", "61", "0.82", "met")
    assert "\nD3. Instructions per request (callgrind)" in text
    assert lines_with(text, "vote, SMS voter", "400", "0.75", "met")
    assert "\nD2. /live watchers on the vote worker" in text
    assert "vote p95 ×1.10 with the watchers (met" in text
    assert votepath.render({}) == ""


def test_bench_render_orders_the_sections_and_reports_errors() -> None:
    results = {"config": {"cpus": 2, "python": "3.11.7", "candidates": 100, "voters": 40000,
                          "loadgen": "wrk", "threads": 1, "connections": 64, "seconds": 4.0,
                          "warmup_s": 1.0},
               "phases": HTTP, "errors": {"metrics": "boom"}, "total_s": 73.0}
    text = bench.render(results)
    titles = ["\nA. HTTP", "\nCPU cores used in each HTTP phase", "\nB. Flusher lag",
              "\nPHASE metrics FAILED:\n  boom", "\ntotal 73.0 s"]
    at = [text.index(t) for t in titles]
    assert at == sorted(at)
    assert lines_with(text, "b w1", "0.50", "0.10")


def test_every_phase_runs_in_its_order() -> None:
    assert bench.PHASES == ("ceiling", "flusher", "http", "durability", "antifraud",
                            "votepath", "metrics")
    assert bench.parse_args(["--quick", "--only", "http,ceiling"]).phases == {"http", "ceiling"}


@pytest.mark.parametrize("phase", ["antifraud", "ceiling", "durability", "flusher", "http",
                                   "metrics", "votepath"])
def test_a_phase_does_not_import_bench(phase: str) -> None:
    code = (f"import sys, loadtests.phases.{phase}; "
            "sys.exit('loadtests.bench' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
