"""The 公示 period: a number of working days after publication, holidays by a list.

Working days are Monday to Friday, less the listed holidays, plus the listed make-up
working days (调休: a Saturday or Sunday worked in exchange for a holiday). The period
starts on the first working day after the day of publication and ends at midnight after
its last working day, in the campaign's time zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from zoneinfo import ZoneInfo


def is_working_day(day: dt.date, holidays: Collection[dt.date] = (),
                   workdays: Collection[dt.date] = ()) -> bool:
    if day in workdays:
        return True
    return day.weekday() < 5 and day not in holidays


def ends_at(published_at: dt.datetime, timezone: str, working_days: int,
            holidays: Collection[dt.date] = (), workdays: Collection[dt.date] = ()
            ) -> dt.datetime:
    """When a 公示 of ``working_days`` that starts after ``published_at`` ends (UTC)."""
    zone = ZoneInfo(timezone)
    day = published_at.astimezone(zone).date()
    counted = 0
    while counted < max(working_days, 0):
        day += dt.timedelta(days=1)
        if is_working_day(day, holidays, workdays):
            counted += 1
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return midnight.astimezone(dt.UTC)
