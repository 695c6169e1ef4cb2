"""Timeliness, not only completeness: when each organization completed each stage, and how late.

DHIS2 reports a "reporting rate on time" beside the reporting rate; a ministry needs the same here: a school that
completed a stage two weeks after its deadline is not the same as one that was on time. From the daily results
the store already keeps (``admission_stage_result``), per organization × stage:

- ``first_complete``: the first judged day it was complete;
- ``slipped_on``: the first day after that it was no longer complete (its data changed or broke), if it did;
- ``complete_since``: the start of its current run of complete days (None while it is not complete);
- ``days_late``: working days from the deadline to ``complete_since`` (0 when on time); for one not complete
  after its deadline, working days from the deadline to the day judged;
- ``timeliness``: «в срок» (complete, its current completion on or before the deadline — or a stage without
  one), «с опозданием» (complete after the deadline: it stays late after completing), «не выполнено».

A completion seen on the first day the monitor judged the plan happened on that day or earlier, nobody knows
when: it is not called late (a monitor started mid-campaign does not brand every school late).

Aggregated in SQL (a national campaign keeps 380,000 results a day): three grouped queries, no per-row Python.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import and_, case, func, select

from admission.plan import Plan
from admission.store import engine_for, stage_result
from admission.workdays import WorkCalendar

ON_TIME, LATE, NOT_DONE = "в срок", "с опозданием", "не выполнено"
COLUMNS = ["org_id", "stage", "first_complete", "slipped_on", "complete_since", "days_late", "timeliness"]


def _date(value) -> dt.date | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def timeliness(url: str, plan: Plan, as_of: dt.date, today: pd.DataFrame) -> pd.DataFrame:
    """Per organization × stage of ``today`` (the day's results): the columns of :data:`COLUMNS`."""
    t = stage_result
    done = t.c.status == "complete"
    until = and_(t.c.plan_id == plan.id, t.c.as_of <= as_of)
    first = (select(t.c.org_id, t.c.stage, func.min(case((done, t.c.as_of))).label("first_complete"),
                    func.max(case((~done, t.c.as_of))).label("last_open"))
             .where(until).group_by(t.c.org_id, t.c.stage).subquery())
    r = stage_result.alias("r")
    later = and_(r.c.plan_id == plan.id, r.c.as_of <= as_of, r.c.org_id == first.c.org_id,
                 r.c.stage == first.c.stage)
    since = (select(first.c.org_id, first.c.stage, func.min(r.c.as_of).label("complete_since"))
             .join(r, and_(later, r.c.status == "complete",
                           (first.c.last_open.is_(None)) | (r.c.as_of > first.c.last_open)))
             .group_by(first.c.org_id, first.c.stage))
    slipped = (select(first.c.org_id, first.c.stage, func.min(r.c.as_of).label("slipped_on"))
               .join(r, and_(later, r.c.status != "complete", r.c.as_of > first.c.first_complete))
               .group_by(first.c.org_id, first.c.stage))
    with engine_for(url).connect() as conn:
        opened = _date(conn.execute(select(func.min(t.c.as_of)).where(until)).scalar())
        base = pd.DataFrame(conn.execute(select(first.c.org_id, first.c.stage, first.c.first_complete))
                            .mappings().all(), columns=["org_id", "stage", "first_complete"])
        streak = pd.DataFrame(conn.execute(since).mappings().all(), columns=["org_id", "stage", "complete_since"])
        slips = pd.DataFrame(conn.execute(slipped).mappings().all(), columns=["org_id", "stage", "slipped_on"])
    frame = today[["org_id", "stage", "status"]].merge(base, on=["org_id", "stage"], how="left")
    frame = frame.merge(streak, on=["org_id", "stage"], how="left").merge(slips, on=["org_id", "stage"], how="left")
    calendar = WorkCalendar.for_plan(plan)
    deadlines = {s.number: s.deadline for s in plan.stages}
    late_days, labels = [], []
    for stage, status, since_day in zip(frame["stage"].tolist(), frame["status"].tolist(),
                                        frame["complete_since"].tolist(), strict=True):
        deadline = deadlines.get(int(stage))
        since_day = _date(since_day)
        if status == "complete":
            # Complete on the first day the monitor judged: when it happened is unknown, so it is not called late.
            known = deadline and since_day and since_day != opened
            late = calendar.working_days_between(deadline, since_day) if known else 0
            late_days.append(late)
            labels.append(LATE if late > 0 else ON_TIME)
        else:
            late_days.append(calendar.working_days_between(deadline, as_of) if deadline else 0)
            labels.append(NOT_DONE)
    for column in ("first_complete", "complete_since", "slipped_on"):
        frame[column] = [_date(v) for v in frame[column].tolist()]
    frame["days_late"] = late_days
    frame["timeliness"] = labels
    return frame[COLUMNS]


def rates(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """On time / late / not done counts and the on-time rate (% of all) grouped by ``by``."""
    counts = pd.crosstab([frame[c] for c in by], frame["timeliness"]).reindex(columns=[ON_TIME, LATE, NOT_DONE],
                                                                               fill_value=0)
    counts.columns = ["on_time", "late", "not_done"]
    counts["total"] = counts.sum(axis=1)
    counts["on_time_pct"] = (100.0 * counts["on_time"] / counts["total"]).round(1)
    return counts.reset_index()
