"""Numbers from the outside: ASCII digits only, in one canonical form.

Python's ``\\d``, ``str.isdigit()`` and ``int()`` take the digits of every script — full-width
``１３８``, Arabic-Indic ``١٣٨``, superscript ``²`` (which ``isdigit()`` accepts and ``int()``
then refuses with a ``ValueError``). One phone number written four ways must not be four
identities, and a digit ``int()`` chokes on must not be a 500. So every number a client or a
citizen types is read here: ``fold`` turns compatibility forms (full-width, circled,
superscript) into ASCII, and whatever is still not ``[0-9]`` is refused.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidRequest

ASCII_NUMBER = re.compile(r"[0-9]+")
"""Explicit ``[0-9]``: never ``\\d``, which matches any script's digits."""


def fold(text: str) -> str:
    """NFKC: ``１３８`` → ``138``, ``＋８６`` → ``+86``; other scripts' digits stay as they are."""
    return unicodedata.normalize("NFKC", text)


def is_number(text: str) -> bool:
    """Whether ``text`` is a whole number written in ASCII digits (and nothing else)."""
    return ASCII_NUMBER.fullmatch(text) is not None


def foreign_digits(text: str) -> bool:
    """Whether ``text`` holds a digit that is not ASCII ``0-9`` (``１``, ``١``, ``²``)."""
    return not text.isascii() and any(ch.isdigit() for ch in text)


def whole_number(text: str) -> int | None:
    """``text`` as an int when it is ASCII digits; ``None`` when it is no number at all;
    ``InvalidRequest`` when it is written with other digits (no second spelling of a number)."""
    if is_number(text):
        return int(text)
    if foreign_digits(text):
        raise InvalidRequest("numbers are written with the ASCII digits 0-9")
    return None
