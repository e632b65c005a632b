"""schemathesis against ``/openapi.json`` of the service as a process: public and admin
operations (admin token supplied; the SSE stream excluded) never answer 5xx and every
answer matches the document — status, content type and schema."""

from __future__ import annotations

import os
from typing import Any

import msgspec
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

from tests.conftest import ADMIN, ADMIN_TOKEN
from tests.e2e.conftest import Service
from voting_service import models
from voting_service.web.api import schemas as s
from voting_service.web.api.openapi import NDJSON_TYPE, XLSX_TYPE

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


def _as(r: Any, status: int, kind: Any, media: str = "application/json") -> Any:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(media), r.headers
    return msgspec.json.decode(r.content, type=kind)


async def test_organiser_answers_decode_as_their_documented_types(service: Service) -> None:
    """The answers schemathesis rarely reaches (a valid file, a publication) against the
    types ``/openapi.json`` is built from."""
    cid = str(service.create_campaign(candidates=3)["id"])
    admin, api = dict(ADMIN), f"/api/v1/admin/campaigns/{cid}"
    put = service.client.put(f"{api}/quotas", json={"南京市": 5}, headers=admin)
    assert _as(put, 200, s.QuotaUsage).quotas["南京市"].kind == "city"
    _as(service.client.get(f"{api}/quotas", headers=admin), 200, s.QuotaUsage)
    sheet = "编号,姓名,性别,推荐单位\r\n1,王建国,男,南京市\r\n2,李秀英,女,南京市\r\n".encode()
    dry = service.client.post(f"{api}/candidates/import?dry_run=1", content=sheet,
                              headers=admin | {"Content-Type": "text/csv"})
    assert _as(dry, 200, s.ImportReport).imported == 2
    bad = service.client.post(f"{api}/candidates/import", content=b"\x00\x01",
                              headers=admin | {"Content-Type": XLSX_TYPE})
    assert _as(bad, 422, s.ImportProblem, "application/problem+json").errors
    withdrawn = service.client.patch(f"{api}/candidates/c002", headers=admin,
                                     json={"status": "withdrawn", "reason": "本人申请"})
    assert _as(withdrawn, 200, models.Candidate).status == "withdrawn"
    early = service.client.post(f"{api}/publication", headers=admin)
    assert _as(early, 409, s.Problem, "application/problem+json").code == "voting_not_closed"
    unpublished = service.client.get(f"/api/v1/campaigns/{cid}/results")
    assert _as(unpublished, 404, s.Problem, "application/problem+json").code == "not_published"

    vote = service.cast(cid, "c001")
    assert vote.status_code == 200, vote.text
    service.set_status(cid, "closed")
    await service.drain()
    published = _as(service.client.post(f"{api}/publication", headers=admin), 201, s.Results)
    public = _as(service.client.get(f"/api/v1/campaigns/{cid}/results"), 200, s.Results)
    assert public.digest == published.digest and public.total == 1
    ledger = service.client.get(f"/api/v1/campaigns/{cid}/ledger")
    assert ledger.status_code == 200 and ledger.headers["content-type"].startswith(NDJSON_TYPE)
    found = service.client.get(f"/api/v1/campaigns/{cid}/ledger",
                               params={"vote_id": vote.json()["vote_id"]})
    assert len(_as(found, 200, s.LedgerLookup).records) == 1
    frozen = service.client.put(f"{api}/quotas", json={}, headers=admin)
    assert _as(frozen, 409, s.Problem, "application/problem+json").code == "published"
