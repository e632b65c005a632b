"""``voting-service up`` as a real process: embedded servers, demo data, web and flusher.

Starts it on a fresh data directory, votes, stops it with Ctrl-C (SIGINT), starts it again on
the same directory and finds the vote still there. No server is left behind, even when an
assertion fails: the test tracks every process ``up`` started and kills what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import campaign_payload
from voting_service.embedded import free_port
from voting_service.stack import CLI, Child, clean_env, descendants
from voting_service.stack import running as alive

pytestmark = pytest.mark.e2e

T = TypeVar("T")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0


class Up:
    """One ``voting-service up`` process and everything it started."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = clean_env() | {
            "VOTING_DATA_DIR": str(data_dir),
            "XDG_STATE_HOME": str(data_dir.parent / "state"),  # not the user's own pointer
            "PYTHONUNBUFFERED": "1",
        }
        self.child = Child("up", [*CLI, "up", "--port", str(self.port)], env, log_path)
        self.process = self.child.popen
        self.seen: set[int] = set()

    def log_tail(self, size: int = 4000) -> str:
        return self.child.tail(size)

    def track(self) -> None:
        """Remember every descendant seen so far (they live in sessions of their own)."""
        if self.process.poll() is None:
            self.seen |= descendants(self.process.pid)

    def wait_ready(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self.track()
            if self.process.poll() is not None:
                pytest.fail(f"`up` exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                r = client.get(f"{self.base}/readyz", timeout=2)
                if r.status_code == 200:
                    self.track()
                    return
            time.sleep(0.3)
        pytest.fail(f"/readyz not 200 within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def interrupt(self) -> int:
        """Ctrl-C; the exit code once it has stopped everything."""
        self.track()
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`up` did not stop within {STOP_TIMEOUT:.0f} s:\n{self.log_tail()}")
        return code

    def kill_everything(self) -> None:
        """Whatever is still running: Ctrl-C first, then SIGTERM and SIGKILL to every group."""
        self.track()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [pid for pid in [self.process.pid, *sorted(self.seen)] if alive(pid)]
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(os.getpgid(pid), sig)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            deadline = time.monotonic() + 10
            while any(alive(pid) for pid in left) and time.monotonic() < deadline:
                time.sleep(0.1)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="voting-e2e-") as d:
        yield Path(d) / "data"


@pytest.fixture
def launch(data_dir: Path) -> Iterator[Callable[[], Up]]:
    started: list[Up] = []

    def start() -> Up:
        up = Up(data_dir, data_dir.parent / f"up-{len(started)}.log")
        started.append(up)
        return up

    try:
        yield start
    finally:
        for up in started:
            up.kill_everything()
        left = [pid for up in started for pid in up.seen if alive(pid)]
        assert not left, f"processes left behind: {left}"


def poll(fetch: Callable[[], T], done: Callable[[T], bool], within: float) -> T:
    deadline = time.monotonic() + within
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def admin_token(data_dir: Path) -> str:
    saved = json.loads((data_dir / "local-secrets.json").read_text())
    items = [i.strip() for i in saved["VOTING_ADMIN_TOKENS"].split(",")]
    return str(next(i.split(":", 1)[1] for i in items if i.startswith("admin:")))


def votes_of(tallies: dict[str, Any], candidate: str) -> int:
    return int(next(c["votes"] for c in tallies["candidates"] if c["candidate_id"] == candidate))


def test_up_votes_survive_a_restart(data_dir: Path, launch: Callable[[], Up]) -> None:
    with httpx.Client(timeout=10) as client:
        up = launch()
        up.wait_ready(client)
        up.track()
        assert len(up.seen) >= 4, "up started Valkey, PostgreSQL, the web app and the flusher"
        campaigns = client.get(f"{up.base}/api/v1/campaigns").json()
        assert campaigns, "the demo campaign is loaded"
        cid = campaigns[0]["id"]
        assert campaigns[0]["status"] == "open"
        listed = client.get(f"{up.base}/api/v1/campaigns/{cid}/candidates").json()
        candidate = listed["candidates"][0]["id"]
        assert len(listed["candidates"]) >= 10

        r = client.post(f"{up.base}/api/v1/campaigns/{cid}/voter")
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        client.cookies.clear()
        vote_url = f"{up.base}/api/v1/campaigns/{cid}/votes"
        r = client.post(vote_url, json={"candidate_id": candidate},
                        headers={"X-Voter-Token": token})
        assert r.status_code == 200, r.text
        vote_id = r.json()["vote_id"]

        tallies_url = f"{up.base}/api/v1/campaigns/{cid}/tallies"
        tallies = poll(lambda: client.get(tallies_url).json(),
                       lambda t: votes_of(t, candidate) >= 1, within=5)
        assert votes_of(tallies, candidate) == 1
        assert tallies["total"] == 1

        admin = {"Authorization": f"Bearer {admin_token(data_dir)}"}
        results_url = f"{up.base}/api/v1/admin/campaigns/{cid}/results"
        results = poll(lambda: client.get(results_url, headers=admin).json(),
                       lambda res: res.get("total", 0) >= 1, within=15)
        assert results["total"] == 1, "the flusher moved the vote into PostgreSQL"
        assert {c["candidate_id"]: c["votes"] for c in results["candidates"]}[candidate] == 1

        assert up.interrupt() == 0, up.log_tail()
        stopped = [pid for pid in up.seen if alive(pid)]
        assert not stopped, f"still running after `up` exited: {stopped}"

        again = launch()
        again.wait_ready(client)
        tallies = poll(lambda: client.get(
            f"{again.base}/api/v1/campaigns/{cid}/tallies").json(),
            lambda t: votes_of(t, candidate) >= 1, within=5)
        assert votes_of(tallies, candidate) == 1
        assert tallies["total"] == 1
        results = client.get(f"{again.base}/api/v1/admin/campaigns/{cid}/results",
                             headers=admin).json()
        assert results["total"] == 1
        r = client.post(f"{again.base}/api/v1/campaigns/{cid}/votes",
                        json={"candidate_id": candidate}, headers={"X-Voter-Token": token})
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "already_voted"
        # the same vote_id still gets its first answer after the restart
        r = client.post(f"{again.base}/api/v1/campaigns/{cid}/votes",
                        json={"candidate_id": candidate, "vote_id": vote_id},
                        headers={"X-Voter-Token": token})
        assert r.status_code == 200, r.text
        assert r.json()["vote_id"] == vote_id
        assert again.interrupt() == 0, again.log_tail()


def _cli(cwd: Path, *args: str, state: Path) -> subprocess.CompletedProcess[str]:
    """A command run beside `up` the way a user types it: no variables set at all."""
    env = clean_env() | {"XDG_STATE_HOME": str(state)}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_cli_beside_up_uses_its_stack(data_dir: Path, launch: Callable[[], Up]) -> None:
    workdir = data_dir.parent
    state = workdir / "state"
    (workdir / ".voting-data").symlink_to(data_dir, target_is_directory=True)
    elsewhere = workdir / "spreadsheets"  # an organiser's own folder: no .voting-data there
    elsewhere.mkdir()
    with httpx.Client(timeout=10) as client:
        up = launch()
        up.wait_ready(client)
        log = up.log_tail(20000)
        assert "admin bearer token for scripts (local use only): " in log
        assert "ops bearer token for scripts (local use only): " in log
        # the first local admin: the printed password signs in, then enrols the second factor
        shown = re.search(r"sign in \(local use only\): name (\S+), password (\S+);", log)
        assert shown is not None, log[-2000:]
        r = client.post(f"{up.base}/ops/login",
                        data={"name": shown[1], "password": shown[2], "next": "/ops"})
        assert r.status_code == 303 and r.headers["location"].startswith("/ops/enrol"), r.text
        cid = client.get(f"{up.base}/api/v1/campaigns").json()[0]["id"]
        pointer = json.loads((state / "voting-service" / "local-stack.json").read_text())
        assert pointer["data_dir"] == str(data_dir.resolve())

        checked = _cli(workdir, "flusher", "--check", state=state)
        assert checked.returncode == 0, checked.stderr
        assert "using the local stack" in checked.stderr
        reconciled = _cli(workdir, "reconcile", state=state)
        assert reconciled.returncode == 0, reconciled.stderr
        assert f"{cid}: no drift" in reconciled.stdout
        exported = _cli(elsewhere, "export", "--campaign", cid, state=state)
        assert exported.returncode == 0, exported.stderr
        assert f"using the local stack of `voting-service up` (pid {up.process.pid}) in " \
            f"{data_dir.resolve()}" in exported.stderr, exported.stderr
        assert exported.stdout.lstrip("\ufeff").count("\n") >= 10, exported.stdout[:300]

        payload = campaign_payload(cid="beside2026", candidates=4)
        (elsewhere / "beside.json").write_text(json.dumps(payload, ensure_ascii=False))
        loaded = _cli(elsewhere, "campaign", "load", "beside.json", state=state)
        assert loaded.returncode == 0, loaded.stderr
        r = poll(lambda: client.get(f"{up.base}/api/v1/campaigns/beside2026"),
                 lambda r: r.status_code == 200, within=5)
        assert r.status_code == 200 and r.json()["title"] == payload["title"]

        assert up.interrupt() == 0, up.log_tail()
        assert not (data_dir / "local-stack.json").exists()
        assert not (state / "voting-service" / "local-stack.json").exists()
        after = _cli(workdir, "reconcile", state=state)
        assert after.returncode == 2 and "Traceback" not in after.stderr, after.stderr
        assert "make run" in after.stderr
        away = _cli(elsewhere, "reconcile", state=state)
        assert away.returncode == 2 and "make run" in away.stderr, away.stderr
