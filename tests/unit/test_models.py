"""Payload validation (DESIGN §6): strict shapes, and the campaign rules msgspec can't say."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
import pytest

from voting_service.errors import InvalidRequest
from voting_service.models import (
    Campaign,
    CampaignIn,
    CampaignPatch,
    ChannelIn,
    Rules,
    VoteIn,
    check_campaign,
    decode_snapshot,
)
from voting_service.web.http import decode


def campaign(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "jsgj2026",
        "title": "江苏最美工匠",
        "opens_at": "2026-07-01T00:00:00+08:00",
        "closes_at": "2026-08-31T23:59:59+08:00",
        "timezone": "Asia/Shanghai",
        "status": "open",
        "rules": {"votes_per_day": 10},
        "candidates": [
            {"id": "c001", "number": 1, "name": "张三"},
            {"id": "c002", "number": 2, "name": "李四", "deeds": "事迹"},
        ],
    }
    body.update(changes)
    return body


def as_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def test_valid_campaign_decodes_with_defaults() -> None:
    c = decode(as_bytes(campaign()), CampaignIn)
    check_campaign(c)
    assert c.rules.votes_per_day == 10
    assert c.rules.per_candidate_per_day == 1
    assert c.rules.identity == ["anonymous"]
    assert c.show_counts is True
    assert [x.id for x in c.candidates] == ["c001", "c002"]
    assert c.candidates[1].deeds == "事迹"
    assert c.opens_at.utcoffset() == dt.timedelta(hours=8)


# --- unknown fields and wrong types ----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        campaign(extra=1),
        campaign(rules={"votes_per_day": 10, "votes_per_hour": 3}),
        campaign(candidates=[{"id": "c001", "number": 1, "name": "n", "age": 40}]),
    ],
    ids=["top", "rules", "candidate"],
)
def test_campaign_rejects_unknown_fields(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        decode(as_bytes(body), CampaignIn)


@pytest.mark.parametrize(
    "changes",
    [
        {"id": 5},
        {"id": "has space"},
        {"id": "-leading-dash"},
        {"id": "x" * 65},
        {"title": None},
        {"title": "t" * 201},
        {"opens_at": "yesterday"},
        {"status": "running"},
        {"show_counts": "yes"},
        {"rules": {"votes_per_day": 0}},
        {"rules": {"votes_per_day": "10"}},
        {"rules": {"votes_per_day": 1.5}},
        {"rules": {"identity": ["password"]}},
        {"rules": {"challenge": "maybe"}},
        {"rules": {"ip_per_minute": -1}},
        {"candidates": {"id": "c001"}},
        {"candidates": [{"id": "c001", "number": -1, "name": "n"}]},
        {"candidates": [{"id": "c001", "number": "1", "name": "n"}]},
        {"candidates": [{"id": "c001", "name": "n"}]},
        {"candidates": [{"id": "c/1", "number": 1, "name": "n"}]},
        {"candidates": [{"id": "c001", "number": 1, "name": "n", "deeds": "x" * 20001}]},
    ],
)
def test_campaign_rejects_wrong_types_and_values(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        decode(as_bytes(campaign(**changes)), CampaignIn)


def test_campaign_requires_id_title_and_window() -> None:
    for field in ("id", "title", "opens_at", "closes_at"):
        body = campaign()
        del body[field]
        with pytest.raises(InvalidRequest):
            decode(as_bytes(body), CampaignIn)


def test_patch_and_channel_are_strict_too() -> None:
    assert decode(b'{"status": "paused"}', CampaignPatch).status == "paused"
    assert decode(b'{"status": "paused"}', CampaignPatch).title is None
    with pytest.raises(InvalidRequest):
        decode(b'{"status": "paused", "id": "other"}', CampaignPatch)
    with pytest.raises(InvalidRequest):
        decode(b'{"status": "stopped"}', CampaignPatch)
    assert decode(b'{"id": "xhby", "name": "n"}', ChannelIn).allowed_origins == []
    with pytest.raises(InvalidRequest):
        decode(b'{"id": "xhby", "name": "n", "secret": "chosen"}', ChannelIn)


# --- votes -----------------------------------------------------------------------------


def test_vote_decodes() -> None:
    v = decode(b'{"candidate_id": "c001", "vote_id": "abcdef0123456789"}', VoteIn)
    assert (v.candidate_id, v.vote_id, v.channel, v.proof) == (
        "c001", "abcdef0123456789", None, None)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"c001"',
        b"{}",
        b'{"candidate_id": 1}',
        b'{"candidate_id": null}',
        b'{"candidate_id": ["c001"]}',
        b'{"candidate_id": "c001", "extra": true}',
        b'{"candidate_id": "c001", "vote_id": "short"}',
        b'{"candidate_id": "c001", "vote_id": "has spaces in it"}',
        b'{"candidate_id": "c001", "vote_id": 12345678}',
        b'{"candidate_id": "c001", "channel": 7}',
        b'{"candidate_id": "' + b"x" * 65 + b'"}',
        b'{"candidate_id": "\xff\xfe"}',
        b'\xef\xbb\xbf{"candidate_id": "c001"}',
        b'{"candidate_id": "c001"} trailing',
    ],
)
def test_bad_vote_bodies_are_invalid_requests(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode(body, VoteIn)
    assert info.value.code == "invalid_request"
    assert info.value.status == 400


def test_msgspec_rejects_unknown_fields_directly() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"votes_per_day": 3, "x": 1}', type=Rules)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"candidate_id": "c001", "x": 1}, VoteIn)


# --- check_campaign --------------------------------------------------------------------


def checked(**changes: Any) -> None:
    check_campaign(decode(as_bytes(campaign(**changes)), CampaignIn))


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime",
                                  "Asia/Shanghai/", "Asia"])
def test_check_campaign_rejects_bad_time_zones(zone: str) -> None:
    with pytest.raises(InvalidRequest, match="time zone"):
        checked(timezone=zone)


@pytest.mark.parametrize("field", ["opens_at", "closes_at"])
def test_check_campaign_rejects_naive_datetimes(field: str) -> None:
    with pytest.raises(InvalidRequest, match="UTC offset"):
        checked(**{field: "2026-07-15T00:00:00"})


@pytest.mark.parametrize("closes", ["2026-07-01T00:00:00+08:00", "2026-06-30T16:00:00Z",
                                    "2026-06-01T00:00:00+08:00"])
def test_check_campaign_rejects_closes_not_after_opens(closes: str) -> None:
    with pytest.raises(InvalidRequest, match="after"):
        checked(closes_at=closes)


def test_check_campaign_compares_instants_not_wall_clocks() -> None:
    # 01:00 in Shanghai is 17:00 UTC the day before: a window of one hour, not a negative one
    checked(opens_at="2026-07-01T00:00:00+08:00", closes_at="2026-06-30T17:00:00Z")


def test_check_campaign_rejects_duplicate_candidate_ids() -> None:
    dupes = [{"id": "c001", "number": 1, "name": "a"}, {"id": "c001", "number": 2, "name": "b"}]
    with pytest.raises(InvalidRequest, match="unique"):
        checked(candidates=dupes)


def test_check_campaign_rejects_empty_identity() -> None:
    with pytest.raises(InvalidRequest, match="identity"):
        checked(rules={"identity": []})


def test_check_campaign_accepts_other_real_zones_and_no_candidates() -> None:
    checked(timezone="UTC", candidates=[])
    checked(timezone="Europe/Berlin")


def test_check_campaign_also_checks_the_stored_snapshot() -> None:
    c = decode(as_bytes(campaign()), CampaignIn)
    snapshot = Campaign(
        id=c.id, title=c.title, timezone="Nowhere/Land", opens_at=c.opens_at,
        closes_at=c.closes_at, status=c.status, show_counts=c.show_counts, rules=c.rules,
        candidates=c.candidates,
    )
    with pytest.raises(InvalidRequest):
        check_campaign(snapshot)


# --- the selection year (评选年度) --------------------------------------------------------


@pytest.mark.parametrize(("zone", "year"), [("Asia/Shanghai", 2027), ("UTC", 2026)])
def test_a_campaign_without_a_year_takes_the_year_it_opens_in_locally(zone: str,
                                                                      year: int) -> None:
    # 17:00 UTC on 31 December is already 1 January in Beijing
    body = campaign(timezone=zone, opens_at="2026-12-31T17:00:00Z",
                    closes_at="2027-02-01T00:00:00+08:00")
    assert decode(as_bytes(body), CampaignIn).year == year
    assert decode(as_bytes(body | {"year": None}), CampaignIn).year == year


def test_a_named_year_is_kept_and_checked() -> None:
    c = decode(as_bytes(campaign(year=2025)), CampaignIn)
    check_campaign(c)
    assert c.year == 2025  # the selection of 2025, voted on in 2026
    for bad in (1999, 2101, 0, -2026, "2026", 2026.5, True):
        with pytest.raises(InvalidRequest, match="year"):
            decode(as_bytes(campaign(year=bad)), CampaignIn)
    assert decode(b'{"year": 2030}', CampaignPatch).year == 2030
    assert decode(b'{"title": "x"}', CampaignPatch).year is None
    with pytest.raises(InvalidRequest, match="year"):
        decode(b'{"year": 1999}', CampaignPatch)


def test_a_derived_year_outside_the_range_is_refused_by_check_campaign() -> None:
    with pytest.raises(InvalidRequest, match="year must lie between 2000 and 2100"):
        checked(opens_at="1999-07-01T00:00:00+08:00")


def test_a_snapshot_written_before_campaigns_had_a_year_still_loads() -> None:
    c = decode(as_bytes(campaign(year=2031)), CampaignIn)
    stored = msgspec.json.encode(Campaign(
        id=c.id, title=c.title, timezone=c.timezone, opens_at=c.opens_at,
        closes_at=c.closes_at, status=c.status, show_counts=c.show_counts, rules=c.rules,
        candidates=c.candidates, year=2031))
    assert msgspec.json.decode(stored, type=Campaign).year == 2031
    old = msgspec.json.decode(stored)
    del old["year"]
    assert msgspec.json.decode(msgspec.json.encode(old), type=Campaign).year == 2026


def test_the_demo_campaign_names_its_year() -> None:
    from voting_service.demo import demo_campaign

    c = decode(as_bytes(demo_campaign(year=2031)), CampaignIn)
    assert c.year == 2031 and c.title.startswith("2031年")


def test_a_snapshot_of_a_newer_release_loads_without_the_fields_this_one_lacks() -> None:
    c = decode(as_bytes(campaign()), CampaignIn)
    stored = Campaign(
        id=c.id, title=c.title, timezone=c.timezone, opens_at=c.opens_at,
        closes_at=c.closes_at, status=c.status, show_counts=c.show_counts, rules=c.rules,
        candidates=c.candidates, year=2026)
    newer = json.loads(msgspec.json.encode(stored))
    newer["later"] = [1]
    newer["rules"]["later_rule"] = {"a": 1}
    newer["candidates"][1]["later_detail"] = "x"
    newer["notice"]["later_line"] = "y"
    raw = json.dumps(newer).encode()
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(raw, type=Campaign)  # what the strict decode alone would do
    assert decode_snapshot(raw) == stored
    broken = dict(newer, status="nonsense")
    with pytest.raises(msgspec.ValidationError):  # a wrong value is still refused
        decode_snapshot(json.dumps(broken).encode())
