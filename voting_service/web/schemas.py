"""The shapes of the API's answers, as msgspec types for ``/openapi.json``.

Requests are decoded with the models of ``models.py``; answers are built as plain dicts by
the routes, and these types say what those dicts hold. The schemathesis test checks every
answer against them, so a route that changes its answer without changing these fails.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from ..models import Candidate, ChallengeMode, IdentityMode, Rules, Status


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
    status: Status
    opens_at: dt.datetime
    closes_at: dt.datetime


Object = dict[str, Any]
"""An answer documented by its route's description rather than field by field."""
Objects = list[dict[str, Any]]
