"""Payload shapes of the HTTP contract (DESIGN §6), validated by msgspec.

Unknown fields are rejected everywhere, so a typo in a client never passes silently.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from .errors import InvalidRequest

Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]
LongText = Annotated[str, msgspec.Meta(max_length=20000)]
VoteId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
Status = Literal["draft", "open", "paused", "closed"]
IdentityMode = Literal["anonymous", "partner", "sms"]
ChallengeMode = Literal["off", "on", "adaptive"]


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    pass


class Rules(Strict):
    votes_per_day: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    per_candidate_per_day: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    identity: list[IdentityMode] = msgspec.field(default_factory=lambda: ["anonymous"])
    challenge: ChallengeMode = "off"
    ip_per_minute: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 600
    ip_per_day: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] = 20000


class Candidate(Strict):
    id: Id
    number: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    name: ShortText
    gender: ShortText = ""
    region: ShortText = ""
    industry: ShortText = ""
    employer: ShortText = ""
    occupation: ShortText = ""
    summary: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    deeds: LongText = ""
    photo_url: Annotated[str, msgspec.Meta(max_length=500)] = ""


class CampaignIn(Strict):
    id: Id
    title: ShortText
    opens_at: dt.datetime
    closes_at: dt.datetime
    timezone: str = "Asia/Shanghai"
    status: Status = "draft"
    show_counts: bool = True
    rules: Rules = msgspec.field(default_factory=Rules)
    candidates: list[Candidate] = msgspec.field(default_factory=list)


class CampaignPatch(Strict):
    title: ShortText | None = None
    opens_at: dt.datetime | None = None
    closes_at: dt.datetime | None = None
    timezone: str | None = None
    status: Status | None = None
    show_counts: bool | None = None
    rules: Rules | None = None
    candidates: list[Candidate] | None = None


class Channel(Strict):
    id: Id
    name: ShortText
    allowed_origins: list[Annotated[str, msgspec.Meta(max_length=300)]] = msgspec.field(
        default_factory=list
    )
    secret: str = ""


class ChannelIn(Strict):
    id: Id
    name: ShortText
    allowed_origins: list[Annotated[str, msgspec.Meta(max_length=300)]] = msgspec.field(
        default_factory=list
    )


class Campaign(Strict):
    """The snapshot every worker holds: what a vote needs, without asking PostgreSQL."""

    id: str
    title: str
    timezone: str
    opens_at: dt.datetime
    closes_at: dt.datetime
    status: Status
    show_counts: bool
    rules: Rules
    candidates: list[Candidate]
    channels: list[Channel] = msgspec.field(default_factory=list)


class VoteIn(Strict):
    candidate_id: Annotated[str, msgspec.Meta(max_length=64)]
    channel: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    proof: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    vote_id: VoteId | None = None


def check_campaign(c: CampaignIn | Campaign) -> None:
    """Rules msgspec cannot express: a real time zone, aware datetimes, unique candidates."""
    try:
        ZoneInfo(c.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRequest(f"unknown time zone {c.timezone!r}") from exc
    if c.opens_at.tzinfo is None or c.closes_at.tzinfo is None:
        raise InvalidRequest("opens_at and closes_at need a UTC offset")
    if c.closes_at <= c.opens_at:
        raise InvalidRequest("closes_at must be after opens_at")
    ids = [cand.id for cand in c.candidates]
    if len(ids) != len(set(ids)):
        raise InvalidRequest("candidate ids must be unique")
    if not c.rules.identity:
        raise InvalidRequest("rules.identity needs at least one mode")
