"""The guarded server contract: the server stack installed at its pins, and on any other
uvicorn the service starts on uvicorn's stock protocol after one warning (the votes then
go through the ASGI route: ``tests/integration/test_direct_votes.py`` runs them so)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from voting_service.web.server import contract as server
from voting_service.web.server import protocol

ROOT = Path(__file__).parents[2]


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_the_server_stack_is_installed_at_its_pins() -> None:
    found = pins()
    assert {"uvicorn", "httptools", "uvloop", "starlette", "gunicorn", "uvicorn-worker"} <= set(
        found)
    installed = {name: importlib.metadata.version(name) for name in found}
    assert installed == found
    assert found["uvicorn"] == protocol.TESTED_UVICORN
    assert protocol.contract_broken(protocol.TESTED_UVICORN) is None


def test_every_install_honours_the_pins() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "$(PIP) install" in line
                and "-e " in line]  # the project's installs (not pip's own upgrade)
    assert installs and all("--constraint constraints.txt" in line for line in installs)
    assert re.search(r"^\$\(VENV\)/\.installed-%: .*constraints\.txt", makefile, re.M)
    container = re.sub(r"\\\n", " ", (ROOT / "Containerfile").read_text())
    copies = [line for line in container.splitlines() if line.startswith("COPY ")]
    assert any("constraints.txt" in line.split() for line in copies)
    builds = [line for line in container.splitlines()
              if line.startswith("RUN ") and "pip wheel" in line]
    assert builds and all("--constraint constraints.txt" in line for line in builds)


def test_another_uvicorn_release_breaks_the_contract() -> None:
    reason = protocol.contract_broken("0.56.0")
    assert reason is not None and "0.56.0" in reason and protocol.TESTED_UVICORN in reason


_STARTS = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
{tamper}
from voting_service import app, cli, worker
from voting_service.settings import Secret, Settings
from voting_service.web.server import contract as server
app.create_app(Settings(secret_key=Secret("k" * 32), pepper=Secret("p" * 32)))
worker.VotingWorker.CONFIG_KWARGS  # the gunicorn worker class imports too
print(server.http_protocol(5.0, 30.0), server.direct_votes(),
      "voting_service.web.server.protocol" in sys.modules)
print(server.MISMATCH)
"""


@pytest.mark.parametrize(("tamper", "named"), [
    ("import uvicorn; uvicorn.__version__ = '0.0.0'", "uvicorn 0.0.0 is installed"),
    ("import uvicorn.protocols.http.httptools_impl as m; del m.STATUS_LINE", "STATUS_LINE"),
    ("import uvicorn.protocols.http.httptools_impl as m; del m.RequestResponseCycle.send",
     "lacks send of RequestResponseCycle"),
], ids=["version", "module-attribute", "method"])
def test_on_a_mismatch_the_service_starts_on_the_stock_protocol(tamper: str, named: str) -> None:
    """A fresh interpreter, uvicorn changed before the service is imported: the app, the CLI
    and the worker still import, the choice is uvicorn's own protocol with no direct route,
    and the reason is one warning."""
    done = subprocess.run([sys.executable, "-c", _STARTS.format(tamper=tamper)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    choice, reason = done.stdout.splitlines()
    assert choice == "httptools False False"
    assert named in reason
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings == [f"WARNING voting_service.web.server.contract running uvicorn's stock HTTP "
                        f"protocol: {reason}; votes go through ASGI and request heads, bodies "
                        "and connections are not bounded by the service "
                        "(see web/server/contract.py)"]


def test_on_the_pinned_uvicorn_no_warning_and_the_own_protocol() -> None:
    done = subprocess.run([sys.executable, "-c", _STARTS.format(tamper="")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0].split()[-2:] == ["True", "True"]
    assert "BoundedHttpToolsProtocol" in done.stdout.splitlines()[0]
    assert "WARNING" not in done.stderr
    assert server.MISMATCH is None
