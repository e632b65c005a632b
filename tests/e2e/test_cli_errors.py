"""``voting-service`` as a process: a mistake is one clear line on stderr and exit status 2.

No traceback for a bad campaign file (malformed JSON with its line and column, a wrong type
or an unknown field with its JSON path, an unknown time zone, a time at the calendar's end),
a missing file, a bad setting or a folder that does not exist; a server that does not answer
is one line and exit status 1.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import campaign_payload
from voting_service.embedded import free_port
from voting_service.stack import CLI, clean_env

pytestmark = pytest.mark.e2e


def run(cwd: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    base = clean_env() | {"VOTING_DATA_DIR": str(cwd / "no-stack-here")}
    return subprocess.run([*CLI, *args], cwd=cwd, env=base | (env or {}), capture_output=True,
                          text=True, timeout=60)


def one_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _campaign_with(**changes: Any) -> dict[str, Any]:
    payload = campaign_payload(cid="cli2026", candidates=5)
    payload.update(changes)
    return payload


def _write(folder: Path, name: str, content: str | dict[str, Any]) -> str:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    (folder / name).write_text(text, encoding="utf-8")
    return name


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    name = _write(tmp_path, "bad.json", '{\n  "id": "x1",\n  "title": "投票",\n  oops\n}\n')
    line = one_line(run(tmp_path, "campaign", "load", name), 2)
    assert line.startswith("voting-service campaign load: bad.json:"), line
    assert "line 4 column 3" in line, line


def test_a_wrong_type_names_its_json_path(tmp_path: Path) -> None:
    payload = _campaign_with()
    payload["candidates"][3]["number"] = "七"
    line = one_line(run(tmp_path, "campaign", "load", _write(tmp_path, "t.json", payload)), 2)
    assert "$.candidates[3].number" in line and "Expected `int`" in line, line


def test_an_unknown_field_names_its_json_path(tmp_path: Path) -> None:
    payload = _campaign_with()
    payload["rules"]["votes_per_week"] = 3
    line = one_line(run(tmp_path, "campaign", "load", _write(tmp_path, "u.json", payload)), 2)
    assert "votes_per_week" in line and "$.rules" in line, line


def test_an_unknown_time_zone(tmp_path: Path) -> None:
    name = _write(tmp_path, "tz.json", _campaign_with(timezone="Asia/Nanjing"))
    line = one_line(run(tmp_path, "campaign", "load", name), 2)
    assert "unknown time zone 'Asia/Nanjing'" in line, line


def test_a_time_at_the_calendars_end(tmp_path: Path) -> None:
    name = _write(tmp_path, "end.json", _campaign_with(closes_at="9999-12-31T23:59:59-14:00"))
    line = one_line(run(tmp_path, "campaign", "load", name), 2)
    assert "closes_at" in line, line


def test_a_missing_file(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "campaign", "load", "nowhere.json"), 2)
    assert line == "voting-service campaign load: nowhere.json: no such file", line


def test_a_bad_setting(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "reconcile", env={
        "VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20, "VOTING_SHARDS": "many"}), 2)
    assert line == "voting-service reconcile: VOTING_SHARDS must be a number", line


def test_no_settings_and_no_local_stack(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "reconcile"), 2)
    assert "VOTING_SECRET_KEY must be set" in line and "make run" in line, line


def test_an_output_folder_that_does_not_exist(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "export", "--output", "missing/results.xlsx"), 2)
    assert "missing" in line, line


def test_a_server_that_does_not_answer(tmp_path: Path) -> None:
    closed = free_port()
    env = {"VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20,
           "DATABASE_URL": f"postgresql://voting@127.0.0.1:{closed}/voting",
           "REDIS_URL": f"redis://127.0.0.1:{closed}/0"}
    line = one_line(run(tmp_path, "export", env=env), 1)
    assert str(closed) in line, line
    line = one_line(run(tmp_path, "reconcile", env=env), 1)
    assert str(closed) in line, line
