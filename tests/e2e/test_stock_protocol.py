"""``voting-service serve`` on a uvicorn it was not tested with (one uvicorn process, and
gunicorn with two workers): one warning, then uvicorn's stock protocol, and the votes
answered as on the pinned one, through the ASGI vote route.

The mismatch is real, not mocked: a ``sitecustomize`` on the process's ``PYTHONPATH`` gives
uvicorn another version before the service is imported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Service, running_service
from tests.e2e.test_exposed import (
    test_votes_pipelined_on_one_connection_get_whole_answers_in_order as votes_pipelined,
)

pytestmark = pytest.mark.e2e
WARNING = "running uvicorn's stock HTTP protocol: uvicorn 0.0.0 is installed"


@pytest.fixture(scope="module", params=["uvicorn", "gunicorn"])
def exposed(request: pytest.FixtureRequest, single_url: str, migrated: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The name ``test_exposed``'s vote test asks for: here, on the mismatched uvicorn."""
    site = tmp_path_factory.mktemp("untested-uvicorn")
    (site / "sitecustomize.py").write_text("import uvicorn\nuvicorn.__version__ = '0.0.0'\n")
    log = tmp_path_factory.mktemp("stock") / "serve.log"
    args = ("--workers", "2") if request.param == "gunicorn" else ()
    with running_service(single_url, migrated, log, args=args,
                         env={"PYTHONPATH": str(site)}) as svc:
        yield svc


def test_votes_on_the_stock_protocol_get_the_pinned_answers(exposed: Service) -> None:
    votes_pipelined(exposed)  # the same votes and assertions as on the service's protocol
    log = exposed.log.read_text(errors="replace")
    assert log.count(WARNING) == 1, "one warning, however many workers"
    assert "Traceback" not in log
