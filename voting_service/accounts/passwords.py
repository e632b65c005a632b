"""Staff passwords: argon2id hashes (argon2-cffi's RFC 9106 low-memory profile).

A check costs tens of milliseconds of CPU and 64 MiB, on purpose: callers run it in a
thread, and only after the sign-in throttle has let the attempt through.
"""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 256
_hasher = PasswordHasher()


def check_new(password: str) -> None:
    """A new password is long enough to resist guessing and short enough to hash cheaply."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters")


def generate() -> str:
    """A password for a new account or a first local admin, shown once."""
    return secrets.token_urlsafe(15)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_or_dummy(hashed: str | None, password: str) -> bool:
    """Check against the account's hash, or, for a name that has none, against a throwaway
    one: an unknown name costs what a known one costs, so timing does not list accounts."""
    if hashed is None:
        verify(_dummy(), password)
        return False
    return verify(hashed, password)


async def averify(hashed: str | None, password: str) -> bool:
    """``verify_or_dummy`` off the event loop (votes keep flowing meanwhile)."""
    return await asyncio.to_thread(verify_or_dummy, hashed, password)


async def ahash(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)
