"""The deploy files are checked, not just written (issue 12 §3): ``deploy/compose.yaml``
against the Compose specification, ``deploy/k8s/`` against the schemas of a pinned
Kubernetes version, and the ``Containerfile`` for a non-root image that carries the Lua
scripts, templates, static files and migrations."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.31.0"
"""The oldest Kubernetes the manifests must run on (HPA autoscaling/v2, PDB policy/v1)."""


# ---- Compose ---------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def compose_errors(document: dict[str, Any], tmp_path: Path) -> str:
    """What the Compose specification's schema says about ``document`` ('' when valid)."""
    path = tmp_path / "compose.json"
    path.write_text(json.dumps(document))
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)], capture_output=True, text=True, timeout=120,
    )
    return "" if done.returncode == 0 else done.stdout + done.stderr


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    assert compose_errors(compose(), tmp_path) == ""


def test_compose_schema_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["nginx"]["restartt"] = "always"
    broken["services"]["migrate"]["depends_on"]["postgres"]["condition"] = "service_ready"
    errors = compose_errors(broken, tmp_path)
    assert "restartt" in errors and "service_ready" in errors


def test_compose_stack_is_wired_together() -> None:
    doc = compose()
    services: dict[str, dict[str, Any]] = doc["services"]
    valkeys = [f"valkey-{i}" for i in range(1, 7)]
    for name in [*valkeys, "valkey-init", "postgres", "migrate", "web-1", "web-2",
                 "flusher-1", "flusher-2", "nginx", "prometheus", "grafana"]:
        assert name in services, name
    for name, svc in services.items():
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown {dep}"
        nets = svc.get("networks", [])
        for net in nets if isinstance(nets, list) else nets.keys():
            assert net in doc["networks"], f"{name}: unknown network {net}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).resolve().is_file(), f"{name}: {source} missing"
            else:
                assert source in doc["volumes"], f"{name}: undeclared volume {source}"
        if "build" in svc:
            context = (DEPLOY / svc["build"]["context"]).resolve()
            assert (context / svc["build"]["dockerfile"]).is_file()
    # Valkey and PostgreSQL are private: internal network only, no published port
    assert doc["networks"]["backend"]["internal"] is True
    for name in [*valkeys, "postgres"]:
        assert services[name]["networks"] == ["backend"] and "ports" not in services[name]
    assert len({services[v]["volumes"][1] for v in valkeys}) == 6  # a data volume each
    for name in ("web-1", "web-2", "flusher-1", "flusher-2"):
        env = services[name]["environment"]
        assert env["VOTING_REDIS_CLUSTER"] == "1" and int(env["VOTING_REDIS_REPLICA_ACKS"]) >= 1
        assert "/readyz" in str(services[name].get("healthcheck", {})) or "flusher" in name
    nginx_ip = services["nginx"]["networks"]["frontend"]["ipv4_address"]
    assert services["web-1"]["environment"]["VOTING_TRUSTED_PROXIES"] == f"{nginx_ip}/32"
    for port in (p for s in services.values() for p in s.get("ports", [])):
        assert port.startswith("127.0.0.1:"), port  # published on loopback only
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["web-1:8000", "web-2:8000"]
    # Prometheus may read /metrics, and loads the alert rules of deploy/prometheus/
    prom_ip = services["prometheus"]["networks"]["frontend"]["ipv4_address"]
    assert services["web-1"]["environment"]["VOTING_METRICS_ALLOW"] == f"{prom_ip}/32"
    rules = [v.split(":")[1] for v in services["prometheus"]["volumes"] if "alerts" in v]
    assert rules == scrape["rule_files"]


def test_valkey_config_keeps_acknowledged_votes() -> None:
    conf = (DEPLOY / "valkey.conf").read_text()
    settings = dict(line.split("#")[0].split(None, 1) for line in conf.splitlines()
                    if line.strip() and not line.lstrip().startswith("#"))
    assert settings["appendonly"].strip() == "yes"
    assert settings["appendfsync"].strip() == "always"
    assert settings["maxmemory-policy"].strip() == "noeviction"


NGINX_SIZES = {"k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


@pytest.mark.parametrize("conf", ["nginx/voting.conf", "compose/nginx.conf"])
def test_nginx_passes_every_body_the_app_reads(conf: str) -> None:
    """nginx must not refuse a body the app reads (the candidates import, up to 16 MiB, and
    the console's form around it): its own 413 is an HTML page, not the app's problem
    answer, and the import's bound would be nginx's, stated nowhere."""
    from voting_service.web.api.organisers import IMPORT_LIMIT

    sizes = re.findall(r"^\s*client_max_body_size\s+(\d+)([kmg]?)\s*;",
                       (DEPLOY / conf).read_text(), re.M | re.I)
    assert sizes, "nginx's default (1 MiB) applies"
    for number, unit in sizes:
        assert int(number) * NGINX_SIZES.get(unit.lower(), 1) >= IMPORT_LIMIT + 64 * 1024


def test_valkey_server_accepts_the_config_files(tmp_path: Path) -> None:
    """valkey-server itself reads deploy/valkey.conf and the Kubernetes one (a "#" after a
    value is no comment to it: such a file stopped the server at start)."""
    from voting_service import embedded

    k8s = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "valkey.yaml").read_text())
               if d and d.get("kind") == "ConfigMap")["data"]["valkey.conf"]
    (tmp_path / "k8s.conf").write_text(k8s.replace("/data", str(tmp_path)))  # the volume
    for conf in (DEPLOY / "valkey.conf", tmp_path / "k8s.conf"):
        # port 0: the server reads its configuration, then exits, listening nowhere
        out = subprocess.run(
            [embedded.valkey_binary(), str(conf), "--port", "0", "--dir", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30).stdout
        assert "Configuration loaded" in out and "FATAL" not in out, (conf.name, out)


# ---- Kubernetes ------------------------------------------------------------------------

def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s_error(resource: dict[str, Any]) -> str:
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc.message)
    return ""


@pytest.mark.parametrize("resource", manifests(),
                         ids=lambda r: f"{r['kind']}/{r['metadata']['name']}")
def test_manifest_is_valid_for_the_pinned_kubernetes(resource: dict[str, Any]) -> None:
    assert k8s_error(resource) == ""


def test_kubernetes_check_rejects_a_broken_manifest() -> None:
    web = copy.deepcopy(by_kind("Deployment", "voting-web"))
    web["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    assert "periodSecond" in k8s_error(web)
    web = copy.deepcopy(by_kind("Deployment", "voting-web"))
    web["spec"]["replicas"] = "four"
    assert k8s_error(web) != ""


def by_kind(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_kubernetes_topology() -> None:
    web = by_kind("Deployment", "voting-web")["spec"]["template"]["spec"]
    container = web["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert [c["command"][-1] for c in web["initContainers"]] == ["migrate"]
    flusher = by_kind("Deployment", "voting-flusher")["spec"]
    assert flusher["replicas"] >= 2
    probe = flusher["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    assert probe[-2:] == ["flusher", "--check"]
    assert by_kind("HorizontalPodAutoscaler", "voting-web")["spec"]["scaleTargetRef"][
        "name"] == "voting-web"
    assert by_kind("PodDisruptionBudget", "voting-web")["spec"]["maxUnavailable"] == 1
    config = by_kind("ConfigMap", "voting-config")["data"]
    assert config["VOTING_REDIS_CLUSTER"] == "1" and int(config["VOTING_REDIS_REPLICA_ACKS"]) >= 1
    assert by_kind("StatefulSet", "valkey")["spec"]["replicas"] == 6
    valkey_conf = by_kind("ConfigMap", "valkey-config")["data"]["valkey.conf"]
    assert "appendfsync always" in valkey_conf
    # every pod runs as a non-root user; nothing escalates
    for doc in manifests():
        pod = (doc.get("spec", {}).get("template") or {}).get("spec")
        if pod is None:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # Valkey and PostgreSQL take connections from the web and flusher pods only
    policies = {d["metadata"]["name"]: d["spec"] for d in manifests()
                if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"]["podSelector"] == {}
    for name, app in (("valkey-private", "valkey"), ("postgres-private", "postgres")):
        spec = policies[name]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == app
        allowed = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                   for rule in spec["ingress"] for p in rule["from"]}
        assert {"voting-web", "voting-flusher"} <= allowed
        assert allowed <= {"voting-web", "voting-flusher", "voting-purge", app,
                           "valkey-cluster-init"}
    # the retention purge runs daily, as non-root, with the service's config and secrets
    purge = by_kind("CronJob", "voting-purge")["spec"]
    pod = purge["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["voting-service", "purge"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert purge["concurrencyPolicy"] == "Forbid"


# ---- Containerfile ---------------------------------------------------------------------

def stages() -> list[list[str]]:
    """The Containerfile's instructions (continuations joined, comments dropped), by stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Containerfile").read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def test_image_runs_as_a_non_root_user() -> None:
    final = stages()[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: runAsNonRoot can check it
    assert any("useradd" in line and f"--uid {uid}" in line for line in final)
    cmd = next(line for line in final if line.upper().startswith("CMD "))
    assert '"voting-service", "serve"' in cmd


def test_image_build_context_makes_a_package_with_lua_and_static_files(
    tmp_path: Path,
) -> None:
    """Copy exactly what the build stage COPYs, build the wheel from it as the image does,
    and look inside: the Lua scripts, templates, static files and migrations are there."""
    context = tmp_path / "context"
    context.mkdir()
    for line in stages()[0]:
        if line.upper().startswith("COPY "):
            *sources, _dest = line.split()[1:]
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, context / source,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(src, context / source)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
         str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next((tmp_path / "wheels").glob("voting_service-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    lua = {Path(n).name for n in names if n.startswith("voting_service/lua/")}
    assert lua >= {p.name for p in (ROOT / "lua").glob("*.lua")}
    static = {Path(n).name for n in names if n.startswith("voting_service/static/")}
    assert static >= {p.name for p in (ROOT / "voting_service" / "static").iterdir()
                      if p.is_file() and p.suffix != ".py"}
    assert any(n.startswith("voting_service/templates/") and n.endswith(".html") for n in names)
    assert any(n.startswith("voting_service/ledger/migrations/") and n.endswith(".sql")
               for n in names)
