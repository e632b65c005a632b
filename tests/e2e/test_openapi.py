"""schemathesis against ``/openapi.json`` of the service as a process: public and admin
operations (admin token supplied; the SSE stream excluded) never answer 5xx and every
answer matches the document — status, content type and schema."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Service

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


EXAMPLES = int(os.environ.get("VOTING_SCHEMATHESIS_EXAMPLES", "25"))
"""Generated cases per operation: small, so the whole run stays well under a minute."""


def test_api_matches_its_document(service: Service) -> None:
    service.create_campaign(cid="demo2026")  # the documented example id: found, not 404
    loaded = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    schema = loaded.exclude(path="/api/v1/campaigns/{cid}/live")
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document loads whole
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                   checks=CHECKS)

        tested += 1
        try:
            run()
        except BaseException as exc:  # schemathesis reports a group of failures
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {exc!r}")
    assert tested >= 25  # every documented operation but the SSE stream
    assert failures == [], "\n\n".join(failures)
