"""The packed ledger entry: what cast_vote.lua writes and every stream reader decodes."""

from __future__ import annotations

import pytest

from voting_service.vote import entry
from voting_service.vote.entry import BadEntry, Entry


def test_pack_and_decode_round_trip() -> None:
    e = Entry("0123abcd", "f" * 32, "c001", "xinhua", "2001:db8::1", "2026-07-01", True)
    packed = entry.pack(e)
    assert packed == "0123abcd\t" + "f" * 32 + "\tc001\txinhua\t2001:db8::1\t2026-07-01\t1"
    assert entry.decode({entry.FIELD: packed}) == e
    direct = Entry("0123abcd", "f" * 32, "c001", "", "", "2026-07-01", False)
    assert entry.decode({entry.FIELD: entry.pack(direct)}) == direct
    assert entry.is_copy_safe(packed)


def test_entries_of_the_older_format_are_still_read() -> None:
    old = {"vid": "v1234567", "voter": "ab" * 16, "cand": "c002", "ch": "xinhua",
           "ip": "198.51.100.7", "day": "2026-07-02"}
    assert entry.decode(old) == Entry("v1234567", "ab" * 16, "c002", "xinhua",
                                      "198.51.100.7", "2026-07-02", False)


def test_malformed_entries_are_refused() -> None:
    with pytest.raises(BadEntry):
        entry.decode({entry.FIELD: "only\tthree\tparts"})
    with pytest.raises(BadEntry):
        entry.decode({"vid": "v1234567"})
    with pytest.raises(BadEntry):
        entry.pack(Entry("a\tb", "v", "c", "", "", "2026-07-01", False))
    assert not entry.is_copy_safe("a\\b\tc")
