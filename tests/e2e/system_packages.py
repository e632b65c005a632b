"""What the page tests need from the machine, found or installed by the test run itself.

``make test`` must pass on a fresh machine: the browser tests need a Chromium (Playwright
drives the system's, it downloads none) and the README screenshots need CJK fonts. Each is
looked for first; when missing and we run as root with apt (a container, a CI machine),
Debian's package is installed; otherwise the run stops with one line saying how to get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CJK_FAMILY = "Noto Sans CJK"


class Missing(Exception):
    """A requirement is missing and cannot be installed here; the message says how to."""


def find_chromium(env: Mapping[str, str], fallback: Path = DEBIAN_CHROMIUM) -> str | None:
    """``CHROMIUM`` if set, else ``chromium`` or ``chromium-browser`` on ``PATH``, else the
    Debian path. ``CHROMIUM`` naming nothing runnable is a mistake, not a reason to look on."""
    chosen = env.get("CHROMIUM", "").strip()
    if chosen:
        found = shutil.which(chosen, path=env.get("PATH", ""))
        if found is None:
            raise Missing(f"CHROMIUM={chosen} is not an executable file")
        return found
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name, path=env.get("PATH", os.defpath))
        if found is not None:
            return found
    return str(fallback) if os.access(fallback, os.X_OK) else None


def can_apt() -> bool:
    """Whether we may install Debian packages ourselves: root, with apt."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(package: str) -> None:
    """``apt-get install`` as root, quietly; a failure is ``Missing`` with apt's last line."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise Missing(f"`{' '.join(command)}` failed: {last}")


def ensure_chromium(
    env: Mapping[str, str] = os.environ, *, fallback: Path = DEBIAN_CHROMIUM,
    installer: Callable[[str], None] | None = None,
) -> str:
    """A Chromium to drive; when none is found, Debian's ``chromium`` through ``installer``
    (``apt_install`` when ``can_apt()``; ``None``: we may not install)."""
    found = find_chromium(env, fallback)
    if found is not None:
        return found
    if installer is None:
        raise Missing(
            "no Chromium for the page tests: install it (Debian/Ubuntu: `sudo apt-get install "
            "chromium`), put `chromium` on PATH, or set CHROMIUM=/path/to/chromium")
    installer("chromium")
    found = find_chromium(env, fallback)
    if found is None:
        raise Missing("installed Debian's chromium, yet no chromium is on PATH")
    return found


def has_cjk_fonts() -> bool:
    if shutil.which("fc-list") is None:
        return False
    listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,
                            check=False)
    return CJK_FAMILY in listed.stdout


def ensure_cjk_fonts(
    *, present: Callable[[], bool] = has_cjk_fonts,
    installer: Callable[[str], None] | None = None,
) -> None:
    """Noto CJK fonts for screenshots that look like an Android phone's (``installer`` as in
    ``ensure_chromium``)."""
    if present():
        return
    if installer is None:
        raise Missing(
            "screenshots need the Noto CJK fonts: install them (Debian/Ubuntu: `sudo apt-get "
            "install fonts-noto-cjk`), then run again")
    installer("fonts-noto-cjk")
    if not present():
        raise Missing("installed fonts-noto-cjk, yet fc-list lists no Noto Sans CJK")
