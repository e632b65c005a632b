"""The Lua scripts' status codes and the enums that name them in Python stay in step: each
script's header lists ``<code> <NAME>`` for every status it returns, and each ``return``
of a status carries its name."""

from __future__ import annotations

import enum
import re

import pytest

from voting_service.redis.scripts import CastStatus, SmsStatus, lua_dir

_LISTED = re.compile(r"^--\s+(\d+) ([A-Z_]+)\s", re.M)
_RETURNED = re.compile(r"^\s*return [{'](\d+)\b.*?-- ([A-Z_]+)$", re.M)
"""A status heads a table (``return {0, 0}  -- RIGHT``) or a one-string reply
(``return '0|' .. answer  -- ACCEPTED``)."""


@pytest.mark.parametrize(("script", "names", "statuses"), [
    ("cast_vote", CastStatus, set(CastStatus) - {CastStatus.LIMITED}),
    ("limit_and_cast", CastStatus, {CastStatus.LIMITED}),
    ("sms_verify", SmsStatus, set(SmsStatus)),
])
def test_a_script_returns_the_statuses_its_enum_names(
    script: str, names: type[enum.IntEnum], statuses: set[enum.IntEnum],
) -> None:
    source = (lua_dir() / f"{script}.lua").read_text()
    listed = {(int(code), name) for code, name in _LISTED.findall(source)}
    assert listed == {(int(s), s.name) for s in statuses}, "the header's list"
    returned = {(int(code), name) for code, name in _RETURNED.findall(source)}
    assert returned == listed, "every status returned, by the name its header gives"
    assert {names(code).name for code, _ in returned} == {name for _, name in returned}
    bare = re.findall(r"^\s*return [{']\d+\b[^\n]*$", source, re.M)
    bare = [line for line in bare if "-- " not in line]
    assert bare == [], "a status returned without its name"
