"""How the page tests find a Chromium (and the screenshots CJK fonts) on a fresh machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.system_packages import Missing, ensure_chromium, ensure_cjk_fonts, find_chromium

ROOT = Path(__file__).resolve().parents[2]


def _executable(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_chromium_from_the_variable(tmp_path: Path) -> None:
    chosen = _executable(tmp_path / "opt", "my-chrome")
    _executable(tmp_path / "bin", "chromium")
    env = {"CHROMIUM": str(chosen), "PATH": str(tmp_path / "bin")}
    assert find_chromium(env, tmp_path / "none") == str(chosen)


def test_a_variable_naming_nothing_is_a_mistake(tmp_path: Path) -> None:
    with pytest.raises(Missing, match=r"CHROMIUM=.*not an executable"):
        find_chromium({"CHROMIUM": str(tmp_path / "nope"), "PATH": ""}, tmp_path / "none")


@pytest.mark.parametrize("name", ["chromium", "chromium-browser"])
def test_chromium_on_the_path(tmp_path: Path, name: str) -> None:
    found = _executable(tmp_path / "bin", name)
    assert find_chromium({"PATH": f"{tmp_path / 'empty'}:{tmp_path / 'bin'}"},
                         tmp_path / "none") == str(found)


def test_the_debian_path_last(tmp_path: Path) -> None:
    debian = _executable(tmp_path / "usr-bin", "chromium")
    assert find_chromium({"PATH": str(tmp_path / "empty")}, debian) == str(debian)


def test_installed_when_missing_and_we_may(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    asked: list[str] = []

    def install(package: str) -> None:
        asked.append(package)
        _executable(bin_dir, "chromium")

    found = ensure_chromium({"PATH": str(bin_dir)}, fallback=tmp_path / "none", installer=install)
    assert asked == ["chromium"] and found == str(bin_dir / "chromium")


def test_one_line_saying_how_when_we_may_not_install(tmp_path: Path) -> None:
    with pytest.raises(Missing) as caught:
        ensure_chromium({"PATH": str(tmp_path)}, fallback=tmp_path / "none", installer=None)
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install chromium" in message and "CHROMIUM=" in message


def test_cjk_fonts_installed_or_asked_for() -> None:
    installed: list[str] = []
    ensure_cjk_fonts(present=lambda: bool(installed), installer=installed.append)
    assert installed == ["fonts-noto-cjk"]
    with pytest.raises(Missing, match="apt-get install fonts-noto-cjk"):
        ensure_cjk_fonts(present=lambda: False, installer=None)


def test_a_test_run_without_chromium_stops_with_one_line() -> None:
    """The real hook: no page test starts, one line says what is wrong and how to fix it."""
    env = {**os.environ, "CHROMIUM": "/nonexistent/chromium"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/e2e/test_pages.py"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    said = [line for line in done.stdout.splitlines() if "CHROMIUM=" in line]
    assert len(said) == 1 and "/nonexistent/chromium is not an executable file" in said[0]
    assert " passed" not in done.stdout and "Traceback" not in done.stdout + done.stderr
