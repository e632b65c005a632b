"""The shapes of the API's answers, as msgspec types for ``/openapi.json``.

Requests are decoded with the models of ``models.py``; answers are built as plain dicts by
the routes, and these types say what those dicts hold. The schemathesis test checks every
answer against them, so a route that changes its answer without changing these fails.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec

from ...models import (
    Candidate,
    CandidateStatus,
    ChallengeMode,
    IdentityMode,
    RecommenderKind,
    Rules,
    Status,
)


class Problem(msgspec.Struct):
    """RFC 9457 problem details; ``code`` is the stable member clients branch on."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str = ""


class PublicRules(msgspec.Struct):
    votes_per_day: int
    per_candidate_per_day: int
    identity: list[IdentityMode]
    challenge: ChallengeMode


class ChannelRef(msgspec.Struct):
    id: str
    name: str


class CampaignView(msgspec.Struct):
    id: str
    title: str
    year: int
    """评选年度, the selection year."""
    status: str
    """``open``, ``upcoming``, ``closed``, ``paused`` or ``draft``."""
    opens_at: str
    closes_at: str
    timezone: str
    show_counts: bool
    candidate_count: int
    rules: PublicRules
    channels: list[ChannelRef]


class CandidateView(msgspec.Struct, omit_defaults=True):
    id: str
    number: int
    name: str
    gender: str
    region: str
    industry: str
    employer: str
    occupation: str
    summary: str
    photo_url: str
    deeds: str = ""
    """Only on the single-candidate answer."""
    votes: int | None = None
    """Only when the campaign's counts are public."""


class CandidateList(msgspec.Struct):
    campaign_id: str
    candidates: list[CandidateView]


class CandidateVotes(msgspec.Struct):
    candidate_id: str
    votes: int


class Tallies(msgspec.Struct):
    campaign_id: str
    total: int
    as_of: str
    candidates: list[CandidateVotes]


class VoterToken(msgspec.Struct):
    token: str


class VoteAccepted(msgspec.Struct, omit_defaults=True):
    vote_id: str
    candidate_id: str
    votes_left_today: int
    candidate_votes: int | None = None


class Challenge(msgspec.Struct):
    """An ALTCHA challenge; solve it and send the payload as the vote's ``proof``."""

    algorithm: str
    challenge: str
    maxnumber: int
    maxNumber: int  # the name later ALTCHA widgets read
    salt: str
    signature: str
    expires: int


class SmsSent(msgspec.Struct):
    sent: bool
    expires_in: int
    resend_after: int


class ChannelView(msgspec.Struct):
    id: str
    name: str
    allowed_origins: list[str]


class ChannelCreated(msgspec.Struct):
    id: str
    name: str
    allowed_origins: list[str]
    secret: str
    """The partner signing secret, shown this once."""


class SecretRotated(msgspec.Struct):
    id: str
    secret: str
    previous_valid_until: dt.datetime


class CampaignAdmin(msgspec.Struct):
    id: str
    title: str
    year: int
    """评选年度, the selection year."""
    timezone: str
    opens_at: dt.datetime
    closes_at: dt.datetime
    status: Status
    show_counts: bool
    rules: Rules
    candidates: list[Candidate]
    channels: list[ChannelView]


class CampaignSummary(msgspec.Struct):
    id: str
    title: str
    year: int
    status: Status
    opens_at: dt.datetime
    closes_at: dt.datetime


class QuotaUse(msgspec.Struct):
    quota: int
    used: int
    """Candidates of this recommender in the current list."""
    kind: RecommenderKind


class QuotaTotal(msgspec.Struct):
    quota: int
    used: int


class QuotaUsage(msgspec.Struct):
    campaign_id: str
    quotas: dict[str, QuotaUse]
    unlisted: dict[str, int]
    """Recommenders with candidates but no quota: their candidate counts."""
    total: QuotaTotal


class ImportReport(msgspec.Struct):
    campaign_id: str
    dry_run: bool
    imported: int
    by_recommender: dict[str, int]
    created: list[str]
    updated: list[str]
    removed: list[str]
    """Candidate ids; after a dry run, what the import would have done."""


class ImportRowError(msgspec.Struct):
    row: int | None
    """The spreadsheet's row number (1 is the first row); ``null`` for the whole file."""
    column: str | None
    message: str
    code: str


class ImportProblem(msgspec.Struct):
    """``import_rejected``: nothing was imported; ``errors`` says what to fix, row by row."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: list[ImportRowError]
    """The first 200 errors, in the file's order."""
    errors_total: int = 0
    """Every error found, listed or not."""
    instance: str = ""


class ResultRow(msgspec.Struct):
    candidate_id: str
    number: int
    name: str
    votes: int
    status: CandidateStatus | Literal["removed"]
    """``removed``: no longer listed, yet votes for it are in the ledger."""
    rank: int | None
    """Equal votes share a rank (1, 2, 2, 4); ``null`` for a candidate who is not
    ``active`` (withdrawn or removed: their votes count, they take no rank)."""


class ReasonCount(msgspec.Struct):
    reason: str
    votes: int
    invalidations: list[int]


class Invalidated(msgspec.Struct):
    total: int
    by_reason: list[ReasonCount]


class LedgerDay(msgspec.Struct):
    day: str
    votes: int
    digest: str
    """The chained SHA-256 digest after this day (``docs/verification.md``)."""


class Results(msgspec.Struct):
    """The published results (公示), frozen; they add up to the public ledger."""

    campaign_id: str
    title: str
    published_at: str
    note: str
    total: int
    candidates: list[ResultRow]
    invalidated: Invalidated
    days: list[LedgerDay]
    digest: str


class LedgerRecord(msgspec.Struct):
    day: str
    vote_id: str
    voter: str
    """The voter's pseudonym in this campaign."""
    candidate: str
    channel: str
    status: str | int
    """``"valid"`` or the id of the invalidation that struck the vote."""


class LedgerLookup(msgspec.Struct):
    campaign_id: str
    vote_id: str
    records: list[LedgerRecord]


Object = dict[str, Any]
"""An answer documented by its route's description rather than field by field."""
Objects = list[dict[str, Any]]


# -- transparency log (issue #26) ------------------------------------------------------------


class LogKey(msgspec.Struct):
    algorithm: Literal["Ed25519"]
    public_key: str
    """The raw 32-byte public key, 64 hex digits."""
    key_id: str


class TreeHead(msgspec.Struct):
    """A signed tree head (docs/verification.md: the signed bytes)."""

    campaign_id: str
    tree_size: int
    root_hash: str
    timestamp: int
    """Milliseconds since 1970-01-01 UTC."""
    key_id: str
    signature: str
    """Ed25519, base64."""


class TreeHeads(msgspec.Struct):
    campaign_id: str
    heads: list[TreeHead]
    more: bool


class ConsistencyProof(msgspec.Struct):
    campaign_id: str
    first: int
    second: int
    proof: list[str]


class InclusionItem(msgspec.Struct):
    log_index: int
    leaf: str
    """The vote's leaf bytes (its canonical record as accepted) as text."""
    path: list[str]


class InclusionProof(msgspec.Struct):
    campaign_id: str
    vote_id: str
    tree_size: int
    proofs: list[InclusionItem]
