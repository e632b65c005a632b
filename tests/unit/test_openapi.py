"""``/openapi.json`` is valid OpenAPI 3.1 and describes every API route of the app."""

from __future__ import annotations

from openapi_spec_validator import validate
from starlette.routing import Route

from voting_service.app import create_app
from voting_service.settings import Secret, Settings
from voting_service.web.api.openapi import document


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert set(doc["components"]["securitySchemes"]) == {
        "voterToken", "voterCookie", "partnerBearer", "adminBearer"}
    vote = doc["paths"]["/api/v1/campaigns/{cid}/votes"]["post"]
    assert vote["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/VoteIn"}
    assert "409" in vote["responses"] and "429" in vote["responses"]
    problem = doc["components"]["responses"]["Problem409"]["content"]
    assert "application/problem+json" in problem


def test_every_api_route_is_in_the_document() -> None:
    app = create_app(Settings(secret_key=Secret("k" * 32), pepper=Secret("p" * 32)))
    documented = {(path, method.upper()) for path, ops in document()["paths"].items()
                  for method in ops}
    missing = []
    for route in app.routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        for method in route.methods or ():
            if method != "HEAD" and (route.path, method) not in documented:
                missing.append(f"{method} {route.path}")
    assert missing == [], "add these to web/api/openapi.py OPERATIONS"
    assert len(documented) >= 27
