"""Payload shapes of the HTTP contract (DESIGN §6), validated by msgspec.

Unknown fields are rejected everywhere, so a typo in a client never passes silently.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from .errors import InvalidRequest

# --- the edge's rules for text and time: every input type below uses these ---------------

TEXT_PATTERN = r"^[^\x00\ud800-\udfff]*$"
"""No NUL (PostgreSQL text cannot hold it) and no lone surrogate (not encodable as UTF-8)."""
BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")

EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
"""Times we accept lie in [EARLIEST, LATEST): far enough from the calendar's ends that any
zone offset, a day's arithmetic or a 62-day window never leaves ``datetime``'s range."""


def text_meta(max_length: int, min_length: int = 0) -> msgspec.Meta:
    """The constraint of a text field: its length and ``TEXT_PATTERN``."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=TEXT_PATTERN)


def text_ok(value: str) -> bool:
    """Whether a string from a path or a query obeys the same rule as JSON text fields."""
    return BAD_TEXT.search(value) is None


def check_time(name: str, value: dt.datetime) -> dt.datetime:
    """An aware time inside [EARLIEST, LATEST), else ``ValueError`` naming the field."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} needs a UTC offset")
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"{name} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} UTC")
    return value


def parse_time(name: str, raw: str) -> dt.datetime:
    """A time from a query value (ISO 8601 with an offset), checked like JSON times."""
    try:  # a "+" of an offset arrives as a space when the client did not encode it
        when = dt.datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError as exc:
        raise InvalidRequest(f"{name} is not an ISO 8601 time") from exc
    try:
        return check_time(name, when)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc


Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
ShortText = Annotated[str, text_meta(200)]
LongText = Annotated[str, text_meta(20000)]
VoteId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
Status = Literal["draft", "open", "paused", "closed"]
IdentityMode = Literal["anonymous", "partner", "sms", "wechat"]
ChallengeMode = Literal["off", "on", "adaptive"]
CandidateStatus = Literal["active", "withdrawn"]
RecommenderKind = Literal["", "city", "provincial_unit"]
MediaUrl = Annotated[str, text_meta(500)]

CITY_ORDER: tuple[str, ...] = ("南京市", "无锡市", "徐州市", "常州市", "苏州市", "南通市",
                               "连云港市", "淮安市", "盐城市", "扬州市", "镇江市", "泰州市",
                               "宿迁市")
"""The 13 cities (设区市) in the province's official order."""
CITIES = frozenset(CITY_ORDER)
"""The 13 cities (设区市) that recommend candidates; every other recommender is a provincial
unit (省级单位)."""


def region_order(values: list[str]) -> list[str]:
    """Distinct non-empty regions: the 13 cities in the official order, then the others as
    they came."""
    seen = {v: i for i, v in enumerate(dict.fromkeys(values)) if v}
    rank = {city: i for i, city in enumerate(CITY_ORDER)}
    return sorted(seen, key=lambda v: (rank.get(v, len(rank)), seen[v]))


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    pass


class Input(Strict):
    """A payload from outside: its times must obey ``check_time`` (msgspec has no bounds for
    datetimes). Stored snapshots are ``Strict`` only, so an old campaign still loads."""

    _times: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self._times:
            value = getattr(self, name)
            if value is not None:
                check_time(name, value)  # ValueError → msgspec.ValidationError


MAX_LEVEL = 6
"""The hardest challenge is 2^6 = 64 times the campaign's base."""


class Rules(Strict):
    votes_per_day: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    per_candidate_per_day: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    identity: list[IdentityMode] = msgspec.field(default_factory=lambda: ["anonymous"])
    challenge: ChallengeMode = "off"
    ip_per_minute: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 600
    ip_per_day: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] = 20000
    """Hard caps of one address (IPv4 /32, IPv6 /64); 0 = no cap."""
    net_per_minute: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] = 6000
    net_per_day: Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)] = 200_000
    """Hard caps of one network (IPv4 /24, IPv6 /48): offices, carrier NAT pools; 0 = none."""
    soft_limit_percent: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50
    """Past this share of a cap, ``adaptive`` proof of work gets harder."""
    challenge_max_number: Annotated[int, msgspec.Meta(ge=10, le=10_000_000)] = 50_000
    """ALTCHA ``maxnumber`` of an unloaded network: a phone needs about half as many hashes."""


class Candidate(Strict):
    id: Id
    number: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    name: ShortText
    gender: ShortText = ""
    region: ShortText = ""
    industry: ShortText = ""
    employer: ShortText = ""
    occupation: ShortText = ""
    summary: Annotated[str, text_meta(2000)] = ""
    deeds: LongText = ""
    photo_url: MediaUrl = ""
    recommender: ShortText = ""
    """推荐单位: one of the 13 cities or a provincial unit."""
    recommender_kind: RecommenderKind = ""
    """Derived from ``recommender`` when left empty (``recommender_kind_of``)."""
    deed_type: ShortText = ""
    honors: Annotated[list[ShortText], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )
    video_url: MediaUrl = ""
    status: CandidateStatus = "active"
    """``withdrawn``: takes no new votes, keeps the votes it has, stays listed."""
    withdrawn_reason: Annotated[str, text_meta(500)] = ""
    withdrawn_at: dt.datetime | None = None


def recommender_kind_of(recommender: str, given: str = "") -> RecommenderKind:
    """``city`` for the 13 cities, ``provincial_unit`` for any other named recommender."""
    if given == "city":
        return "city"
    if given == "provincial_unit":
        return "provincial_unit"
    if not recommender:
        return ""
    return "city" if recommender in CITIES else "provincial_unit"


def with_derived_facts(c: Candidate) -> Candidate:
    kind = recommender_kind_of(c.recommender, c.recommender_kind)
    return c if kind == c.recommender_kind else msgspec.structs.replace(c, recommender_kind=kind)


class CandidatePatch(Strict):
    """A candidate leaving (or coming back): the only change to one candidate on its own."""

    status: CandidateStatus
    reason: Annotated[str, text_meta(500)] = ""


class PublicationIn(Strict):
    note: Annotated[str, text_meta(2000)] = ""


class Notice(Strict):
    """What the public pages' footer says about the campaign (issue 25 §4)."""

    organisers: Annotated[list[ShortText], msgspec.Meta(max_length=10)] = msgspec.field(
        default_factory=list)
    """主办单位, in the order the organisers want them named."""
    contact: Annotated[str, text_meta(300)] = ""
    """A contact line for questions about the vote (phone, e-mail, address)."""


YEARS = (2000, 2100)
"""The selection years (评选年度) a campaign may name."""
Year = Annotated[int, msgspec.Meta(ge=YEARS[0], le=YEARS[1],
                                   description="评选年度, the selection year (e.g. 2026)")]


def opening_year(opens_at: dt.datetime, zone: str) -> int:
    """The year of ``opens_at`` in the campaign's zone: a campaign's year when it names none
    (0 when the zone is unknown, which ``check_campaign`` refuses anyway)."""
    try:
        return opens_at.astimezone(ZoneInfo(zone)).year
    except (ZoneInfoNotFoundError, ValueError, OverflowError):
        return 0


class CampaignIn(Input):
    _times = ("opens_at", "closes_at")
    id: Id
    title: ShortText
    opens_at: dt.datetime
    closes_at: dt.datetime
    timezone: Annotated[str, text_meta(64)] = "Asia/Shanghai"
    year: Year | None = None
    """Not given (or null): the year of ``opens_at`` in ``timezone``."""
    status: Status = "draft"
    show_counts: bool = True
    rules: Rules = msgspec.field(default_factory=Rules)
    candidates: list[Candidate] = msgspec.field(default_factory=list)
    notice: Notice = msgspec.field(default_factory=Notice)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.year is None:
            self.year = opening_year(self.opens_at, self.timezone) or None


class CampaignPatch(Input):
    _times = ("opens_at", "closes_at")
    title: ShortText | None = None
    year: Year | None = None
    """Changes only when given: moving the window keeps the year."""
    opens_at: dt.datetime | None = None
    closes_at: dt.datetime | None = None
    timezone: Annotated[str, text_meta(64)] | None = None
    status: Status | None = None
    show_counts: bool | None = None
    rules: dict[str, Any] | None = None
    """Only the rules named change; the others keep their values (merged in ``merge_rules``)."""
    candidates: list[Candidate] | None = None
    notice: Notice | None = None


def merge_rules(current: Rules, changes: dict[str, Any]) -> Rules:
    try:
        return msgspec.convert({**msgspec.to_builtins(current), **changes}, Rules)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"rules: {exc}") from exc


class Channel(Strict):
    id: Id
    name: ShortText
    allowed_origins: list[Annotated[str, msgspec.Meta(max_length=300)]] = msgspec.field(
        default_factory=list
    )
    secret: str = ""
    previous_secret: str = ""
    """The secret before the last rotation, still accepted until ``previous_expires_at``."""
    previous_expires_at: dt.datetime | None = None


class ChannelIn(Input):
    id: Id
    name: ShortText
    allowed_origins: list[Annotated[str, text_meta(300)]] = msgspec.field(
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
    published_at: dt.datetime | None = None
    """When the results were published (公示); then the campaign is frozen."""
    notice: Notice = msgspec.field(default_factory=Notice)
    year: int = 0
    """评选年度; a snapshot written before campaigns had one (0) takes the opening's year,
    as migration 0032 gave the stored rows."""

    def __post_init__(self) -> None:
        if self.year == 0:
            self.year = opening_year(self.opens_at, self.timezone)


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
    try:  # again here: a PATCH merges into a stored campaign without a decode
        check_time("opens_at", c.opens_at)
        check_time("closes_at", c.closes_at)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    if c.closes_at <= c.opens_at:
        raise InvalidRequest("closes_at must be after opens_at")
    if c.year is None or not YEARS[0] <= c.year <= YEARS[1]:
        raise InvalidRequest(f"year must lie between {YEARS[0]} and {YEARS[1]} (when not"
                             f" given, it is the year opens_at falls in), not {c.year}")
    ids = [cand.id for cand in c.candidates]
    if len(ids) != len(set(ids)):
        raise InvalidRequest("candidate ids must be unique")
    if not c.rules.identity:
        raise InvalidRequest("rules.identity needs at least one mode")
    for cand in c.candidates:
        if cand.video_url and not cand.video_url.startswith("https://"):
            raise InvalidRequest(f"candidate {cand.id!r}: video_url must be an https:// address")


VoterIdText = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
Reason = Annotated[str, text_meta(500, min_length=1)]


class SecretRotation(Input):
    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=30 * 86400)] = 86400
    """How long the secret being replaced keeps working (partners switch over meanwhile)."""


class BlockIn(Input):
    _times = ("expires_at",)
    kind: Literal["voter", "ip"]
    value: Annotated[str, text_meta(64, min_length=1)]
    """A voter id (32 hex digits) or an IP address / CIDR."""
    reason: Reason
    campaign_id: Id | None = None
    """``None``: every campaign."""
    expires_at: dt.datetime | None = None


class InvalidationIn(Input):
    _times = ("since", "until")
    reason: Reason
    voter_ids: Annotated[list[VoterIdText], msgspec.Meta(min_length=1, max_length=10000)] | None = (
        None
    )
    ip: Annotated[str, text_meta(64)] | None = None
    """An address or CIDR."""
    channel: Annotated[str, text_meta(64)] | None = None
    """A channel id; ``""`` means votes cast directly, not through a channel."""
    candidate_id: Annotated[str, text_meta(64)] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


class VoterIn(Strict):
    """Optional body of ``POST /campaigns/{cid}/voter``: the proof of work, when the campaign
    asks for one (solved from ``GET /campaigns/{cid}/challenge?for=voter``)."""

    proof: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class SmsStart(Strict):
    phone: Annotated[str, msgspec.Meta(max_length=32)]
    campaign_id: Id


class SmsVerify(Strict):
    phone: Annotated[str, msgspec.Meta(max_length=32)]
    code: Annotated[str, msgspec.Meta(max_length=16)]
    campaign_id: Id

def level_for(pressure: float, rules: Rules) -> int:
    """The difficulty level an ``adaptive`` campaign asks of a network under ``pressure``.

    ``pressure`` is how full the busier of the address's and its network's limits is
    (1.0 = at a hard cap). Below the soft share: level 0; from there up to the cap the
    level climbs evenly to ``MAX_LEVEL``.
    """
    soft = rules.soft_limit_percent / 100
    if pressure <= soft:
        return 0
    if soft >= 1.0:
        return MAX_LEVEL
    return min(MAX_LEVEL, 1 + math.floor((pressure - soft) / (1.0 - soft) * MAX_LEVEL))


def decode_snapshot(raw: bytes | str) -> Campaign:
    """A campaign snapshot as Redis holds it. During a rolling deploy the new release's
    workers push snapshots that the old release's still read, and those may hold fields the
    old one does not know: they are dropped (the old code has no use for them) instead of
    the whole campaign, which would make its votes and pages vanish from every old worker
    until it is replaced. Only such a snapshot pays for the second pass."""
    try:
        return msgspec.json.decode(raw, type=Campaign)
    except msgspec.ValidationError as exc:
        if "unknown field" not in str(exc):
            raise
    known = _known_fields(msgspec.json.decode(raw), msgspec.inspect.type_info(Campaign))
    return msgspec.convert(known, type=Campaign)


def _known_fields(value: Any, info: msgspec.inspect.Type) -> Any:
    """``value`` (decoded JSON) without the object keys the type ``info`` has no field for."""
    inspect = msgspec.inspect
    if isinstance(info, inspect.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in info.fields}
        return {k: _known_fields(v, fields[k]) for k, v in value.items() if k in fields}
    if isinstance(info, inspect.ListType) and isinstance(value, list):
        return [_known_fields(v, info.item_type) for v in value]
    if isinstance(info, inspect.UnionType):
        for member in info.types:
            if isinstance(member, inspect.StructType) and isinstance(value, dict):
                return _known_fields(value, member)
    return value
