"""The 公示 period in working days (issue 24 §2), and its settings."""

from __future__ import annotations

import datetime as dt

import pytest

from voting_service.ledger import gongshi
from voting_service.settings import ConfigurationError, Settings

BEIJING = dt.timezone(dt.timedelta(hours=8))
BASE = {"VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20}


def test_five_working_days_skip_the_weekend() -> None:
    friday = dt.datetime(2026, 9, 4, 15, 0, tzinfo=BEIJING)
    end = gongshi.ends_at(friday, "Asia/Shanghai", 5)
    # Mon 7 .. Fri 11 September; the period ends at midnight after Friday
    assert end.astimezone(BEIJING) == dt.datetime(2026, 9, 12, tzinfo=BEIJING)


def test_holidays_and_make_up_days() -> None:
    published = dt.datetime(2026, 9, 29, 10, 0, tzinfo=BEIJING)  # a Tuesday
    national = [dt.date(2026, 10, d) for d in range(1, 9)]
    make_up = [dt.date(2026, 10, 10)]  # a Saturday worked
    end = gongshi.ends_at(published, "Asia/Shanghai", 5, national, make_up)
    # 30 Sep, then 9 Oct (Fri), 10 Oct (Sat, worked), 12 and 13 Oct
    assert end.astimezone(BEIJING) == dt.datetime(2026, 10, 14, tzinfo=BEIJING)
    assert gongshi.is_working_day(dt.date(2026, 10, 10), national, make_up)
    assert not gongshi.is_working_day(dt.date(2026, 10, 5), national, make_up)


def test_settings_read_the_period_the_holidays_and_the_contact() -> None:
    s = Settings.from_env(BASE | {"VOTING_GONGSHI_WORKING_DAYS": "7",
                                  "VOTING_HOLIDAYS": "2026-10-02, 2026-10-01",
                                  "VOTING_ORGANISER_PHONE": " 025-1234 "})
    assert s.gongshi_working_days == 7 and s.organiser_phone == "025-1234"
    assert s.holidays == (dt.date(2026, 10, 1), dt.date(2026, 10, 2))
    assert Settings.from_env(BASE).gongshi_working_days == 5
    with pytest.raises(ConfigurationError, match="VOTING_HOLIDAYS"):
        Settings.from_env(BASE | {"VOTING_HOLIDAYS": "1 October"})
    with pytest.raises(ConfigurationError, match="VOTING_GONGSHI_WORKING_DAYS"):
        Settings.from_env(BASE | {"VOTING_GONGSHI_WORKING_DAYS": "0"})
