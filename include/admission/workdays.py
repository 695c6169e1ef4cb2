"""Working days of the Russian production calendar.

The `holidays` package (RU) knows the federal days off, the New Year
holidays 1–8 January and the days off moved by government decree. It does
not know the rare working Saturdays, nor a region's own days off: a plan
adds those in ``calendar.extra_working_days`` / ``calendar.extra_days_off``.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import holidays

from admission.plan import Plan


@lru_cache(maxsize=64)
def _federal(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays("RU", years=[year]).keys())


class WorkCalendar:
    def __init__(self, extra_days_off: list[dt.date] | tuple = (), extra_working_days: list[dt.date] | tuple = ()):
        self.extra_off = frozenset(extra_days_off)
        self.extra_work = frozenset(extra_working_days)

    @classmethod
    def for_plan(cls, plan: Plan) -> WorkCalendar:
        return cls(plan.calendar.extra_days_off, plan.calendar.extra_working_days)

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.extra_work:
            return True
        if day in self.extra_off or day in _federal(day.year):
            return False
        return day.weekday() < 5

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """Working days after ``start`` up to and including ``end`` (0 when ``end`` is not after ``start``)."""
        days, day = 0, start
        while day < end:
            day += dt.timedelta(days=1)
            days += self.is_working_day(day)
        return days

    def window_start(self, deadline: dt.date, working_days: int) -> dt.date:
        """First day of the reminder window: the N-th working day counting back from the deadline (included)."""
        day, counted = deadline, 0
        while True:
            if self.is_working_day(day):
                counted += 1
                if counted >= working_days:
                    return day
            day -= dt.timedelta(days=1)

    def in_reminder_window(self, day: dt.date, deadline: dt.date, working_days: int) -> bool:
        if working_days <= 0 or day > deadline:
            return False
        return day >= self.window_start(deadline, working_days)
