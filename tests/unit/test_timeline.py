"""The ops timeline's counting and its hash layout (no I/O), and console session cookies."""

from __future__ import annotations

import time

from voting_service.redis import keys
from voting_service.vote import timeline
from voting_service.vote.outcomes import Outcome
from voting_service.web.ops.session import Session, Sessions


def outcome(outcome: str, mode: str = "anonymous", channel: str = "", cid: str = "c1") -> Outcome:
    return Outcome(cid, outcome, mode, channel, 0.001)


def test_observe_counts_per_second_and_skips_unknown_campaigns() -> None:
    line = timeline.Timeline(redis=None, known_channel=lambda cid, ch: True)  # type: ignore[arg-type]
    for o in (outcome("accepted"), outcome("accepted"), outcome("rate_limited"),
              outcome("campaign_not_found", cid="")):
        line.observe(o)
    counts = line._counts
    assert sum(counts.values()) == 3
    assert {k[1:] for k in counts} == {("c1", "accepted", "anonymous", ""),
                                       ("c1", "rate_limited", "anonymous", "")}


def test_group_builds_minute_hashes_and_hides_unlisted_channels() -> None:
    second = 1_780_000_007
    minute, offset = divmod(second, 60)
    counts = {
        (second, "c1", "accepted", "sms", "jhnews"): 2,
        (second, "c1", "accepted", "partner", "made-up"): 1,
        (second, "c1", "already_voted", "sms", "jhnews"): 5,
        (second + 60, "c1", "accepted", "", ""): 1,
    }
    grouped = timeline.group(counts, lambda cid, ch: ch == "jhnews")
    assert grouped[("c1", minute)] == {
        f"{offset}|o|accepted": 3, f"{offset}|c|jhnews": 2, f"{offset}|i|sms": 2,
        f"{offset}|c|?": 1, f"{offset}|i|partner": 1, f"{offset}|o|already_voted": 5,
    }
    assert grouped[("c1", minute + 1)] == {
        f"{offset}|o|accepted": 1, f"{offset}|c|direct": 1, f"{offset}|i|unknown": 1}


def test_parse_minute_reads_back_what_group_wrote() -> None:
    fields = {"0|o|accepted": "4", "59|o|blocked": "1", "59|c|direct": "1", "junk": "9"}
    parsed = timeline.parse_minute(100, {k: v for k, v in fields.items()})
    assert parsed == {6000: {"o|accepted": 4}, 6059: {"o|blocked": 1, "c|direct": 1}}


def test_rate_uses_only_complete_seconds() -> None:
    now = 10_000
    seconds = {now - s: {"o|accepted": 10} for s in range(0, 20)}
    # the last SETTLE seconds are still arriving from other workers: left out
    assert timeline.rate(seconds, now, span=10) == 10.0
    assert timeline.rate({now: {"o|accepted": 1000}}, now) == 0.0


def test_since_snapshot_never_goes_negative() -> None:
    then = timeline.Snapshot(5, {"a": 10, "b": 4})
    assert timeline.since_snapshot({"a": 15, "b": 2, "c": 1}, then) == {"a": 5, "b": 0, "c": 1}
    assert timeline.since_snapshot({"a": 1}, None) == {}


def test_timeline_keys_share_one_slot_per_campaign() -> None:
    from redis.crc import key_slot

    names = [keys.timeline_minute("c1", 1), keys.timeline_minute("c1", 2),
             keys.timeline_snapshot("c1", 1)]
    assert len({key_slot(n.encode()) for n in names}) == 1


def test_session_cookies_are_signed_and_name_the_person() -> None:
    sessions = Sessions(["new-key-0123456789", "old-key-0123456789"])
    ends = float(int(time.time()) + 8 * 3600)  # the cookie keeps whole seconds
    issued = Session("sid-0123456789abcdef", "ops", "wang.li", 7, ends)
    value = sessions.sign(issued)
    read = sessions.read(value)
    assert read == issued and read.actor == "ops:wang.li@console" and not read.can_write
    assert read.can_read_console and not read.can_read_audit
    flipped = "A" if value[-2] != "A" else "B"
    assert sessions.read(value[:-2] + flipped + value[-1]) is None
    assert sessions.read("") is None and sessions.read("x" * 1100) is None
    # signed with an older key still reads while that key is listed
    old = Sessions(["old-key-0123456789"]).sign(issued)
    assert sessions.read(old) is not None
    assert Sessions(["other-key-0123456789"]).read(value) is None
    # a claim past its end reads as nothing, whatever the signature
    assert sessions.read(sessions.sign(Session("s", "admin", "a", 1, time.time() - 1))) is None
    auditor = Session("s2", "auditor", "zhao", 9, time.time() + 60)
    assert auditor.can_read_audit and not auditor.can_read_console and not auditor.can_write
