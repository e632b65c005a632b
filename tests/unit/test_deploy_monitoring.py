"""The Prometheus alerts and the Grafana dashboard in ``deploy/`` use only metric names that
``/metrics`` exposes, and cover the alerts the operators asked for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from voting_service.ledger.health import CampaignHealth, Health
from voting_service.web.metrics import exposition

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bvoting_[a-z_]+")


def exposed() -> set[str]:
    snapshot = Health(1.0, True, True, Health.unknown().durability,
                      {"c": CampaignHealth("c", 1, 2.0, 0)}, 5)
    text = exposition(lambda: snapshot).decode()
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    families = {f.name for f in text_string_to_metric_families(text)}
    return names | families | {"voting_votes_total", "voting_redis_errors_total",
                                "voting_sms_sends_total"}


def test_alert_rules_cover_the_operators_alerts() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus/voting-alerts.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert {"VotingTallyDrift", "VotingFlusherLagging", "VotingUnavailableRatio",
            "VotingRedisNotDurable", "VotingLedgerBacklogGrowing"} <= set(alerts)
    assert "> 30" in alerts["VotingFlusherLagging"]
    assert "> 0.01" in alerts["VotingUnavailableRatio"]
    known = exposed()
    for expr in alerts.values():
        assert set(NAME.findall(expr)) <= known, expr


def test_dashboard_queries_use_exposed_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana/voting-service.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {n.removesuffix("_bucket") for e in exprs for n in NAME.findall(e)}
    assert used <= exposed() | {"voting_vote_duration_seconds"}
    prom = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["metrics_path"] == "/metrics"
