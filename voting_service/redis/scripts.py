"""Lua scripts: read once from the package, called by SHA with a NOSCRIPT fallback."""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

AnyRedis = Redis | RedisCluster


class CastStatus(enum.IntEnum):
    """The first value ``cast_vote.lua`` and ``limit_and_cast.lua`` return (their header
    comments use these names; ``tests/unit/test_scripts_status.py`` keeps them in step)."""

    ACCEPTED = 0
    REPLAYED = 1
    ALREADY_VOTED = 2
    QUOTA_USED_UP = 3
    BLOCKED = 4
    CHALLENGE_SPENT = 5
    LIMITED = 6
    """``limit_and_cast.lua`` only: a network limit refused the vote."""


class SmsStatus(enum.IntEnum):
    """The first value ``sms_verify.lua`` returns (named as in its header comment)."""

    RIGHT = 0
    WRONG = 1
    NO_CODE = 2


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str

    async def __call__(self, client: AnyRedis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


def lua_dir() -> Path:
    """``voting_service/lua`` in a built wheel; the top-level ``lua/`` in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "lua", package.parent / "lua"):
        if (candidate / "cast_vote.lua").exists():
            return candidate
    raise FileNotFoundError("Lua scripts not found next to the voting_service package")


_INCLUDE = re.compile(r"^--@([a-z_]+\.lua)$", re.MULTILINE)


@cache
def load(name: str) -> Script:
    """A script by file name; a line ``--@other.lua`` is replaced by that file's source
    (``limit_and_cast.lua`` wraps two scripts as functions, so no rule is written twice)."""
    source = (lua_dir() / f"{name}.lua").read_text("utf-8")
    source = _INCLUDE.sub(lambda m: (lua_dir() / m[1]).read_text("utf-8").rstrip("\n"), source)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def cast_vote() -> Script:
    return load("cast_vote")


def ip_limit() -> Script:
    return load("ip_limit")


class LimitMode(enum.StrEnum):
    """``ip_limit.lua``'s ARGV[2]: what it does and answers (its header comment names them)."""

    COUNT = "0"
    """Count the vote; answer the levels' loads and counts."""
    PEEK = "1"
    """Answer as if one more vote came; write nothing."""
    COUNT_ONLY = "2"
    """Count the vote; answer just 1 when it is allowed (no table for Valkey to convert)."""


def levels_arg(field: str, per_minute: int, per_day: int,
               network: tuple[int, int] | None = None) -> str:
    """``ip_limit.lua``'s levels as its one ARGV string: the first level's field and limits,
    then, for an address's network, the network's limits (whose field is ``""``). One
    argument rather than three a level: each costs Valkey a parse, a Lua string and a free."""
    spec = f"{field}|{per_minute}|{per_day}"
    return spec if network is None else f"{spec}|{network[0]}|{network[1]}"


def limit_and_cast() -> Script:
    """``ip_limit`` then ``cast_vote`` in one call (single node: their keys share no slot)."""
    return load("limit_and_cast")


def read_shard_state() -> Script:
    return load("read_shard_state")
