"""Numbers from the outside are ASCII digits, in one form (no I/O)."""

from __future__ import annotations

import pytest

from voting_service import digits
from voting_service.errors import InvalidRequest
from voting_service.fraud.sms import normalize_phone
from voting_service.web.i18n import pick

ONE_NUMBER_FOUR_WAYS = [
    "13800138000", "１３８００１３８０００", "+86 １３８-0013-8000", "＋８６１３８００１３８０００",
]


@pytest.mark.parametrize("raw", ONE_NUMBER_FOUR_WAYS)
def test_a_phone_written_in_full_width_is_the_same_number(raw: str) -> None:
    assert normalize_phone(raw) == "13800138000"


@pytest.mark.parametrize("raw", ["١٣٨٠٠١٣٨٠٠٠", "१३८००१३८०००", "1380013800٠", "13800138000²"])
def test_other_scripts_digits_are_no_phone_number(raw: str) -> None:
    with pytest.raises(InvalidRequest):
        normalize_phone(raw)


def test_whole_numbers_are_ascii_or_refused() -> None:
    assert digits.whole_number("0042") == 42
    assert digits.whole_number("abc") is None
    assert digits.whole_number("") is None
    assert digits.whole_number("-1") is None
    for foreign in ("１２", "١٢", "²", "1²", "१"):
        with pytest.raises(InvalidRequest):
            digits.whole_number(foreign)
    assert not digits.is_number("²") and not digits.is_number("١") and digits.is_number("7")


def test_accept_language_weights_are_ascii_qvalues() -> None:
    assert pick(None, "en;q=0.9, zh;q=0.8") == "en"
    assert pick(None, "en;q=١, zh;q=0.5") == "zh"  # not a qvalue: the item is skipped
    assert pick(None, "en;q=1_0, zh;q=0.5") == "zh"
    assert pick(None, "en;q=inf, zh;q=0.1") == "zh"
