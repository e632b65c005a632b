"""``voting-service staff``, ``token`` and ``audit prune`` as processes against the test
PostgreSQL, and what they make used by the running service: an admin account created on
a deployment signs in (enrolling its second factor), a machine token works until revoked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN
from tests.e2e.conftest import PEPPER, SECRET_KEY, Service
from voting_service.stack import service_env

pytestmark = pytest.mark.e2e


def cli(service: Service, *args: str, stdin: str | None = None,
        extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = service_env(database_url=service.database_url, redis_url=service.redis_url,
                      secret_key=SECRET_KEY, pepper=PEPPER, extra=extra)
    return subprocess.run([sys.executable, "-m", "voting_service.cli", *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_an_admin_created_by_the_cli_signs_in_and_enrols(service: Service,
                                                        tmp_path: Path) -> None:
    name = f"cli.{os.getpid()}.{tmp_path.name[-6:]}".replace("_", "-").lower()[:32]
    made = cli(service, "staff", "create", name)
    assert made.returncode == 0, made.stderr
    shown = re.search(r"password \(shown once\): (\S+)", made.stdout)
    assert shown is not None, made.stdout
    again = cli(service, "staff", "create", name)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    listed = cli(service, "staff", "list")
    assert f"{name}\tadmin\tnot enrolled\tactive" in listed.stdout

    with httpx.Client(base_url=service.url) as browser_like:
        r = browser_like.post("/ops/login", data={"name": name, "password": shown[1]})
        assert r.status_code == 303 and r.headers["location"].startswith("/ops/enrol")
    assert cli(service, "staff", "disable", name).returncode == 0
    with httpx.Client(base_url=service.url) as browser_like:
        r = browser_like.post("/ops/login", data={"name": name, "password": shown[1]})
        assert r.status_code == 403
    weak = cli(service, "staff", "reset-password", name, "--password-stdin", stdin="short\n")
    assert weak.returncode == 2 and "12 to 256 characters" in weak.stderr
    audit = service.client.get("/api/v1/admin/audit", headers=ADMIN).json()
    mine = [(a["actor"].split(":")[0], a["action"]) for a in audit if a["target"] == name]
    assert ("cli", "account.create") in mine and ("cli", "account.disable") in mine


def test_a_machine_token_from_the_cli_works_until_revoked(service: Service) -> None:
    name = f"ci-{os.getpid()}"
    made = cli(service, "token", "create", name, "--role", "ops")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("vst_")
    bearer = {"Authorization": f"Bearer {token}"}
    assert service.client.get("/api/v1/admin/campaigns", headers=bearer).status_code == 200
    assert service.client.get("/metrics", headers=bearer).status_code == 200
    assert f"{name}\tops\tactive" in cli(service, "token", "list").stdout
    assert token not in cli(service, "token", "list").stdout
    assert cli(service, "token", "revoke", name).returncode == 0
    missing = cli(service, "token", "revoke", name)
    assert missing.returncode == 2 and "no live token" in missing.stderr

    def refused() -> bool:
        return service.client.get("/api/v1/admin/campaigns", headers=bearer).status_code == 401

    deadline = time.monotonic() + 10
    while not refused():  # another worker's copy of the table lasts up to a second
        assert time.monotonic() < deadline, "the revoked token still works"
        time.sleep(0.2)


def test_audit_prune_keeps_the_retention(service: Service) -> None:
    done = cli(service, "audit", "prune")
    assert done.returncode == 0, done.stderr
    assert "older than 365 days" in done.stdout
    short = cli(service, "audit", "prune", extra={"VOTING_AUDIT_RETENTION_DAYS": "30"})
    assert short.returncode == 2 and "at least 180" in short.stderr
