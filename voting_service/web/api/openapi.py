"""``/openapi.json`` (OpenAPI 3.1) and ``/docs``, built from one table of operations.

``OPERATIONS`` is the single place an API route is described; request and answer schemas
come from the msgspec types (``models.py``, ``web/api/schemas.py``). A test fails when a route under
``/api/`` is missing here, and schemathesis checks the live answers against the document.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ... import models
from . import schemas as s
from .organisers import Quotas

VOTER = ("voterToken", "voterCookie", "partnerBearer")
ADMIN = ("adminBearer",)
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    where: str = "query"
    description: str = ""


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    tag: str
    answer: Any = None
    """The msgspec type of the success body; ``None`` for a non-JSON answer (``media``)."""
    status: int = 200
    body: Any = None
    errors: tuple[int, ...] = (400, 404, 503)
    security: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    media: tuple[str, ...] = (JSON_TYPE,)
    body_required: bool = True
    upload: tuple[str, ...] = ()
    """Media types of a raw file body (instead of a JSON ``body``)."""
    problems: tuple[tuple[int, Any], ...] = ()
    """Error statuses whose problem body has more members: (status, msgspec type)."""
    codes: tuple[str, ...] = ()
    """The ``code`` values of the operation's conflicts (409) and refusals, for the reader."""


ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}
TEXT = {"type": "string", "maxLength": 64}
SIZE = {"type": "integer", "minimum": 0}
WHEN = {"type": "string", "format": "date-time"}
VOTE_ERRORS = (400, 401, 403, 404, 409, 413, 429, 503)
ADMIN_READ = (400, 401, 403, 404, 429, 503)
ADMIN_WRITE = (400, 401, 403, 404, 409, 413, 429, 503)
"""Admin answers; 429 ``too_many_attempts``: failed bearer tokens from the address or its
network past the limit (``fraud.auth_limits``)."""
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NDJSON_TYPE = "application/x-ndjson"
C = "/api/v1/campaigns/{cid}"
A = "/api/v1/admin"

OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/api/v1/campaigns", "Open and upcoming campaigns", "public", list[s.CampaignView]),
    Op("GET", C, "A campaign: window, time zone, the rules a voter needs", "public",
       s.CampaignView),
    Op("GET", f"{C}/candidates", "Candidates, filtered by region, industry or text", "public",
       s.CandidateList, params=(Param("region", TEXT), Param("industry", TEXT),
                                Param("q", TEXT, description="name, number or id"))),
    Op("GET", C + "/candidates/{candidate}", "One candidate with the full deeds", "public",
       s.CandidateView, params=(Param("candidate", TEXT, "path"),)),
    Op("GET", f"{C}/tallies", "Votes per candidate when counts are public", "public",
       s.Tallies, errors=(400, 403, 404, 503)),
    Op("GET", f"{C}/live", "Server-Sent Events: a tallies event at most once a second",
       "public", None, errors=(400, 403, 404, 503), media=("text/event-stream",)),
    Op("POST", f"{C}/voter",
       "An anonymous voter token (also set as a cookie); counted against the address's and "
       "network's caps; with a proof of work (from the challenge with for=voter) when the "
       "campaign's challenge is on", "public",
       s.VoterToken, status=201, body=models.VoterIn, body_required=False,
       errors=(400, 403, 404, 413, 429, 503)),
    Op("GET", f"{C}/challenge",
       "A proof-of-work challenge for this voter; with for=voter, for this address to mint "
       "an anonymous token (no credential then)", "voter",
       s.Challenge, errors=(400, 401, 403, 404, 429, 503), security=VOTER,
       params=(Param("for", {"type": "string", "enum": ["voter"]},
                     description="voter: a challenge to mint a token, issued to the address"),)),
    Op("POST", f"{C}/votes", "Cast a vote (retry with the same vote_id after a 503)", "voter",
       s.VoteAccepted, body=models.VoteIn, errors=VOTE_ERRORS, security=VOTER),
    Op("POST", "/api/v1/auth/sms/start", "Send a one-time code to a phone", "voter",
       s.SmsSent, status=202, body=models.SmsStart, errors=(400, 403, 404, 413, 429, 503)),
    Op("POST", "/api/v1/auth/sms/verify", "Exchange the code for a voter token", "voter",
       s.VoterToken, body=models.SmsVerify, errors=(400, 403, 404, 413, 429, 503)),
    Op("POST", f"{A}/campaigns", "Create a campaign with its rules and candidates", "admin",
       s.CampaignAdmin, status=201, body=models.CampaignIn, errors=ADMIN_WRITE, security=ADMIN),
    Op("GET", f"{A}/campaigns", "Every campaign", "admin", list[s.CampaignSummary],
       errors=ADMIN_READ, security=ADMIN),
    Op("GET", A + "/campaigns/{cid}", "A campaign as stored", "admin", s.CampaignAdmin,
       errors=ADMIN_READ, security=ADMIN),
    Op("PATCH", A + "/campaigns/{cid}", "Change rules, window, status (pause, resume)",
       "admin", s.CampaignAdmin, body=models.CampaignPatch, errors=ADMIN_WRITE,
       security=ADMIN),
    Op("POST", A + "/campaigns/{cid}/channels", "Add a media channel", "admin",
       s.ChannelCreated, status=201, body=models.ChannelIn, errors=ADMIN_WRITE,
       security=ADMIN),
    Op("GET", A + "/campaigns/{cid}/channels", "The campaign's channels", "admin",
       list[s.ChannelView], errors=ADMIN_READ, security=ADMIN),
    Op("POST", A + "/campaigns/{cid}/channels/{channel}/secret",
       "Rotate a channel's partner secret (the old one stays valid for a grace period)",
       "admin", s.SecretRotated, body=models.SecretRotation, errors=ADMIN_WRITE,
       security=ADMIN, params=(Param("channel", ID, "path"),), body_required=False),
    Op("GET", A + "/campaigns/{cid}/results", "Results from PostgreSQL, valid votes only",
       "admin", s.Object, errors=ADMIN_READ, security=ADMIN),
    Op("GET", A + "/campaigns/{cid}/export", "Results as a CSV or XLSX file", "admin", None,
       errors=ADMIN_READ, security=ADMIN,
       params=(Param("format", {"type": "string", "enum": ["csv", "xlsx"]}),),
       media=("text/csv", XLSX_TYPE)),
    Op("GET", f"{A}/audit", "The latest admin actions", "admin", s.Objects,
       errors=ADMIN_READ, security=ADMIN),
    Op("POST", f"{A}/blocklist", "Block a voter or an address/network", "admin", s.Object,
       status=201, body=models.BlockIn, errors=ADMIN_WRITE, security=ADMIN),
    Op("GET", f"{A}/blocklist", "Blocklist entries", "admin", s.Objects, errors=ADMIN_READ,
       security=ADMIN, params=(Param("kind", {"type": "string", "enum": ["voter", "ip"]}),
                               Param("campaign_id", ID),
                               Param("all", {"type": "string", "enum": ["0", "1"]}))),
    Op("DELETE", A + "/blocklist/{entry}", "Lift a block", "admin", s.Object,
       errors=ADMIN_WRITE, security=ADMIN,
       params=(Param("entry", {"type": "string", "maxLength": 32}, "path"),)),
    Op("GET", A + "/campaigns/{cid}/suspicious", "Suspicious groups with their evidence",
       "admin", s.Object, errors=ADMIN_READ, security=ADMIN,
       params=(Param("since", WHEN), Param("until", WHEN),
               Param("min_votes", {"type": "integer", "minimum": 2, "maximum": 1_000_000}),
               Param("bucket_minutes", {"type": "integer", "minimum": 1, "maximum": 1440}))),
    Op("POST", A + "/campaigns/{cid}/invalidations",
       "Strike out votes (by voter, IP/CIDR, channel, time range); tallies recomputed",
       "admin", s.Object, status=201, body=models.InvalidationIn, errors=ADMIN_WRITE,
       security=ADMIN),
    Op("GET", A + "/campaigns/{cid}/invalidations", "Invalidations so far", "admin",
       s.Objects, errors=ADMIN_READ, security=ADMIN),
    Op("PUT", A + "/campaigns/{cid}/quotas",
       "Set the quota table: recommender (推荐单位) to its most candidates", "admin",
       s.QuotaUsage, body=Quotas, errors=ADMIN_WRITE, security=ADMIN, codes=("published",)),
    Op("GET", A + "/campaigns/{cid}/quotas", "Quotas and how many candidates use them",
       "admin", s.QuotaUsage, errors=ADMIN_READ, security=ADMIN),
    Op("POST", A + "/campaigns/{cid}/candidates/import",
       "Replace the candidate list from a CSV or XLSX file (all rows or none)", "admin",
       s.ImportReport, errors=(400, 401, 403, 404, 409, 413, 422, 429, 503), security=ADMIN,
       upload=("text/csv", XLSX_TYPE),
       params=(Param("dry_run", {"type": "string", "enum": ["0", "1"]},
                     description="1: check the file and report, change nothing"),),
       problems=((422, s.ImportProblem),),
       codes=("published", "import_rejected (errors: bad_file, file_too_large, "
              "xlsx_too_large, xlsx_ratio, too_many_rows, too_many_cells, cell_too_long, "
              "no_header, over_quota, unknown_recommender, candidate_has_votes, …; the first "
              "200 listed, errors_total counts them all)")),
    Op("PATCH", A + "/campaigns/{cid}/candidates/{candidate}",
       "Withdraw a candidate (no new votes; the votes cast stay counted) or reinstate",
       "admin", models.Candidate, body=models.CandidatePatch, errors=ADMIN_WRITE,
       security=ADMIN, params=(Param("candidate", TEXT, "path"),), codes=("published",)),
    Op("POST", A + "/campaigns/{cid}/publication",
       "Publish the results once voting has closed and the ledger is complete (freezes)",
       "admin", s.Results, status=201, body=models.PublicationIn, errors=ADMIN_WRITE,
       security=ADMIN, body_required=False,
       codes=("voting_not_closed", "ledger_behind", "published")),
    Op("GET", f"{C}/results", "The published results (公示)", "public", s.Results,
       errors=(400, 404, 503), codes=("not_published (404)",)),
    Op("GET", f"{C}/ledger",
       "The public ledger as NDJSON (docs/verification.md); ?vote_id= finds one vote as JSON",
       "public", s.LedgerLookup, errors=(400, 404, 503), media=(JSON_TYPE, NDJSON_TYPE),
       params=(Param("vote_id", {"type": "string", "pattern": r"^[A-Za-z0-9_-]{8,64}$"}),),
       codes=("not_published (404)",)),
    Op("GET", "/api/v1/log/key", "The transparency log's Ed25519 public key", "log", s.LogKey,
       errors=(404,), codes=("no_tree_head (404: no key configured)",)),
    Op("GET", f"{C}/log/head", "The latest signed tree head", "log", s.TreeHead,
       codes=("no_tree_head (404)",)),
    Op("GET", f"{C}/log/heads", "Signed tree heads after a size, oldest first (1,000 a page)",
       "log", s.TreeHeads, params=(Param("after", SIZE),)),
    Op("GET", f"{C}/log/heads/{{size}}", "The signed tree head of a size", "log", s.TreeHead,
       params=(Param("size", SIZE, "path"),), codes=("no_tree_head (404)",)),
    Op("GET", f"{C}/log/consistency", "RFC 9162 consistency proof between two tree sizes",
       "log", s.ConsistencyProof, params=(Param("first", SIZE), Param("second", SIZE)),
       codes=("no_tree_head (404)", "log_behind (503)")),
    Op("GET", f"{C}/log/inclusion",
       "RFC 9162 inclusion proof of a vote in a signed tree (default: the latest head)",
       "log", s.InclusionProof,
       params=(Param("vote_id", {"type": "string", "pattern": r"^[A-Za-z0-9_-]{8,64}$"}),
               Param("size", SIZE), Param("after", SIZE, description="the receipt's head")),
       codes=("no_tree_head (404)", "not_in_log (404)", "log_behind (503)")),
)

SECURITY_SCHEMES = {
    "voterToken": {"type": "apiKey", "in": "header", "name": "X-Voter-Token",
                   "description": "From POST /campaigns/{cid}/voter or SMS sign-in."},
    "voterCookie": {"type": "apiKey", "in": "cookie", "name": "vs_voter_{cid}",
                    "description": "The same token as a cookie, named after the campaign."},
    "partnerBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                      "description": "HS256 with the channel's secret; iss = channel, "
                                     "sub = platform user, aud = campaign, exp ≤ 24 h."},
    "adminBearer": {"type": "http", "scheme": "bearer",
                    "description": "A machine token (created in the console or by `voting-service "
                                   "token create`) or a VOTING_ADMIN_TOKENS bootstrap token: "
                                   "role admin, or read-only ops."},
}


def _operation(op: Op, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    params = list(op.params)
    if "{cid}" in op.path:
        params.insert(0, Param("cid", ID | {"examples": ["demo2026"]}, "path", "campaign id"))
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{op.path.strip('/').replace('/', '_')}"
                       .replace("{", "").replace("}", ""),
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {},
    }
    if params:
        out["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.where == "path", "schema": p.schema}
            | ({"description": p.description} if p.description else {})
            for p in params
        ]
    if op.codes:
        out["description"] = "Error codes: " + ", ".join(op.codes) + "."
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required,
                              "content": {JSON_TYPE: {"schema": refs[op.body]}}}
    elif op.upload:
        out["requestBody"] = {"required": True, "content": {
            m: {"schema": {"type": "string", "format": "binary"}} for m in op.upload}}
    content = {m: {"schema": {"type": "string"}} for m in op.media if m != JSON_TYPE}
    if op.answer is not None:
        content = {JSON_TYPE: {"schema": refs[op.answer]}} | content
    out["responses"][str(op.status)] = {"description": "OK", "content": content}
    typed = dict(op.problems)
    for status in op.errors:
        if status in typed:
            out["responses"][str(status)] = {
                "description": PROBLEM_STATUSES[status],
                "content": {"application/problem+json": {"schema": refs[typed[status]]}}}
        else:
            out["responses"][str(status)] = {"$ref": f"#/components/responses/Problem{status}"}
    out["security"] = [{name: []} for name in op.security] if op.security else []
    return out


PROBLEM_STATUSES = {400: "Invalid request", 401: "Credentials required", 403: "Forbidden",
                    404: "Not found", 409: "Conflict", 413: "Body too large",
                    422: "Refused: nothing was changed", 429: "Too many requests",
                    503: "Unavailable: retry"}


@functools.cache
def document() -> dict[str, Any]:
    types = list(dict.fromkeys(
        [s.Problem] + [t for op in OPERATIONS
                       for t in (op.body, op.answer, *(t for _, t in op.problems))
                       if t is not None]))
    found, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(types, found, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    problem = refs[s.Problem]
    responses = {
        f"Problem{status}": {
            "description": text,
            "content": {"application/problem+json": {"schema": problem}},
            **({"headers": {"Retry-After": {"schema": {"type": "integer"}}}}
               if status in (429, 503) else {}),
        }
        for status, text in PROBLEM_STATUSES.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "voting-service", "version": "1",
                 "description": "Public vote, voter sign-in and admin API. Every error is "
                                "application/problem+json with a stable `code`."},
        "tags": [{"name": "public"}, {"name": "voter"}, {"name": "admin"}],
        "paths": paths,
        "components": {"schemas": components, "responses": responses,
                       "securitySchemes": SECURITY_SCHEMES},
    }


@functools.cache
def _encoded() -> bytes:
    return msgspec.json.encode(document())


async def openapi_json(request: Request) -> Response:
    return Response(_encoded(), media_type=JSON_TYPE,
                    headers={"Cache-Control": "public, max-age=300"})


@functools.cache
def _docs_html() -> str:
    rows = []
    for op in OPERATIONS:
        auth = {"": "none", "adminBearer": "admin bearer"}.get(",".join(op.security),
                                                                "voter token or partner JWT")
        rows.append(
            f"<tr><td><code>{op.method}</code></td><td><code>{html.escape(op.path)}</code></td>"
            f"<td>{html.escape(op.summary)}</td><td>{auth}</td>"
            f"<td>{op.status} · {' '.join(map(str, op.errors))}</td></tr>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>voting-service API</title><style>body{font:15px/1.5 system-ui,sans-serif;"
        "margin:1rem}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;"
        "padding:.3rem .6rem;text-align:left;vertical-align:top}</style></head><body>"
        "<h1>voting-service API</h1><p>The machine-readable document: "
        "<a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1). Errors are "
        "<code>application/problem+json</code> with a stable <code>code</code>.</p>"
        "<table><tr><th>method</th><th>path</th><th>what</th><th>auth</th>"
        "<th>statuses</th></tr>" + "".join(rows) + "</table></body></html>")


async def docs(request: Request) -> Response:
    return HTMLResponse(_docs_html())


routes = [Route("/openapi.json", openapi_json), Route("/docs", docs)]
