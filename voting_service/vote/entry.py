"""The ledger stream entry that ``cast_vote.lua`` appends: one packed field per vote.

One field ``e`` = ``vote_id TAB voter_id TAB candidate_id TAB channel TAB ip TAB day TAB
signed`` costs Valkey one field instead of six and lets the flusher hand the text almost as
it is to PostgreSQL's ``COPY``. Every part is validated on the way in (ids match
``[A-Za-z0-9_-]``, the voter id is hex, the address is parsed, the day is ISO), so none holds
a tab, a newline or a backslash. ``signed`` is ``1`` when the channel comes from a partner's
signed token and ``0`` when it is only claimed by the request (or there is none).

Entries written before this format (one field per part) are still read, so a stream that
was not drained before an upgrade is flushed like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FIELD = "e"
SEP = "\t"
PARTS = 7
_UNSAFE = ("\\", "\n", "\r")


class BadEntry(ValueError):
    """A stream entry that is neither the packed format nor the older one."""


@dataclass(frozen=True, slots=True)
class Entry:
    vote_id: str
    voter_id: str
    candidate_id: str
    channel: str
    ip: str
    """The client address; ``""`` when the server had none (a Unix socket)."""
    day: str
    """The voter's local day, ``YYYY-MM-DD``."""
    channel_signed: bool


def pack(e: Entry) -> str:
    """What ``cast_vote.lua`` writes for ``e`` (tests, benchmarks and tools use it)."""
    parts = (e.vote_id, e.voter_id, e.candidate_id, e.channel, e.ip, e.day)
    if any(SEP in p or any(u in p for u in _UNSAFE) for p in parts):
        raise BadEntry(f"a part of the entry holds a tab, newline or backslash: {parts!r}")
    return SEP.join((*parts, "1" if e.channel_signed else "0"))


def decode(fields: Mapping[str, str]) -> Entry:
    """The entry of one stream record (its field → value mapping), either format."""
    packed = fields.get(FIELD)
    if packed is not None:
        parts = packed.split(SEP)
        if len(parts) != PARTS:
            raise BadEntry(f"a packed ledger entry has {PARTS} parts, not {len(parts)}")
        vid, voter, cand, ch, ip, day, signed = parts
        return Entry(vid, voter, cand, ch, ip, day, signed == "1")
    try:
        return Entry(fields["vid"], fields["voter"], fields["cand"], fields.get("ch", ""),
                     fields.get("ip", ""), fields["day"], False)
    except KeyError as exc:
        raise BadEntry(f"a ledger entry lacks {exc}") from exc


def is_copy_safe(packed: str) -> bool:
    """The packed text can go into a text-format ``COPY`` line as it is."""
    return not any(u in packed for u in _UNSAFE)
