"""The stack ``voting-service up`` runs on this machine, for the CLI commands beside it.

``up`` writes ``<data dir>/local-stack.json`` (mode 0600: it holds the local secrets) with
its pid and the environment it gave the web app and the flusher: the URLs of the embedded
servers (their ports change from run to run), the secrets, the shard count. It removes the
file when it stops. A command run with none of ``REDIS_URL``, ``DATABASE_URL``,
``VOTING_SECRET_KEY``, ``VOTING_PEPPER`` set uses that environment, so ``export``,
``reconcile``, ``flusher --check`` or ``campaign load`` work next to ``make run`` as they are.

Organisers keep their spreadsheets in folders of their own, so ``up`` also leaves a pointer
to its data dir in a per-user state file (``$XDG_STATE_HOME/voting-service/local-stack.json``,
by default under ``~/.local/state``): a command run from any folder, with no
``VOTING_DATA_DIR`` and no ``./.voting-data`` of its own, finds the stack through it, and says
which one it uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from .embedded import pid_alive

FILE = "local-stack.json"
POINTER = "local-stack.json"
"""Name of the per-user pointer file (in ``state_dir``): ``{"pid", "data_dir"}``."""
DEFAULT_DATA_DIR = ".voting-data"
CONNECTION = ("REDIS_URL", "DATABASE_URL", "VOTING_SECRET_KEY", "VOTING_PEPPER")
"""Any of these set: the caller chose its servers and secrets; the local stack stays out."""


class StackNotRunning(Exception):
    pass


def data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("VOTING_DATA_DIR") or DEFAULT_DATA_DIR)


def state_dir(env: Mapping[str, str]) -> Path:
    """The per-user state folder (XDG base directories)."""
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home())
                                            / ".local" / "state")
    return Path(base) / "voting-service"


def _write_private(path: Path, data: object) -> None:
    partial = path.parent / f".{path.name}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(partial, path)


def point(env: Mapping[str, str], folder: Path, pid: int) -> Path | None:
    """Record, for this user, that the running stack keeps its data in ``folder``; ``None``
    when the state folder cannot be written (the stack still works from its own folder)."""
    where = state_dir(env)
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(where / POINTER, {"pid": pid, "data_dir": str(folder.resolve())})
    except OSError:
        return None
    return where / POINTER


def unpoint(env: Mapping[str, str], pid: int) -> None:
    path = state_dir(env) / POINTER
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _pointed(env: Mapping[str, str]) -> Path | None:
    """The data dir the per-user pointer names, if its ``up`` still runs."""
    try:
        recorded = json.loads((state_dir(env) / POINTER).read_text())
        pid, folder = int(recorded["pid"]), Path(str(recorded["data_dir"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return folder if pid_alive(pid) else None


def find(env: Mapping[str, str]) -> Path:
    """The data dir whose stack a command uses: ``VOTING_DATA_DIR`` if set, else
    ``./.voting-data`` if it holds a stack, else the one the per-user pointer names."""
    if env.get("VOTING_DATA_DIR"):
        return Path(env["VOTING_DATA_DIR"])
    here = Path(DEFAULT_DATA_DIR)
    if (here / FILE).exists():
        return here
    return _pointed(env) or here


def shared(env: Mapping[str, str]) -> dict[str, str]:
    """What of ``up``'s environment the other commands need."""
    return {k: v for k, v in env.items()
            if k in ("REDIS_URL", "DATABASE_URL") or k.startswith("VOTING_")}


def write(folder: Path, env: Mapping[str, str], pid: int) -> Path:
    path = folder / FILE
    _write_private(path, {"pid": pid, "env": shared(env)})
    return path


def remove(folder: Path, pid: int) -> None:
    """Remove the file if it is still this ``up``'s (a second ``up`` may have replaced it)."""
    path = folder / FILE
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass



def environment(env: Mapping[str, str]) -> tuple[Mapping[str, str], str]:
    """``env``, completed from a running local stack when it names no servers or secrets.

    Returns the environment to read settings from and a note saying where it came from
    (``""``: ``env`` as given). Raises ``StackNotRunning`` when a stack was recorded but its
    ``up`` is gone (its servers went with it).
    """
    if any(env.get(name) for name in CONNECTION):
        return env, ""
    folder = find(env)
    path = folder / FILE
    try:
        recorded = json.loads(path.read_text())
        pid = int(recorded["pid"])
        stack = {str(k): str(v) for k, v in recorded["env"].items()}
    except FileNotFoundError:
        return env, ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StackNotRunning(f"{path} is unreadable ({exc}); start `make run` again") from exc
    if not pid_alive(pid):
        raise StackNotRunning(
            f"the local stack recorded in {path} is not running (pid {pid} is gone): "
            "start it with `make run`, or set REDIS_URL, DATABASE_URL, VOTING_SECRET_KEY "
            "and VOTING_PEPPER")
    note = f"using the local stack of `voting-service up` (pid {pid}) in {folder.resolve()}"
    return {**stack, **env}, note
