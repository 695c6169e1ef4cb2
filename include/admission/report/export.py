"""A stable export of a day's statuses per organization × stage, for the region's BI and Excel Power Query.

The columns (README «The export») are a contract: names and order do not change; a new column is added at the
end. CSV is UTF-8 with a byte-order mark (Excel opens it as UTF-8), comma-separated, one header row, dates
ISO 8601 (YYYY-MM-DD), empty for none; JSON is a list of objects with the same keys.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pandas as pd

from admission.plan import Plan
from admission.report.timeliness import timeliness
from admission.store import load_results

COLUMNS = ["plan_id", "as_of", "org_id", "name", "kind", "mooyso_id", "mooyso_name", "stage", "stage_title",
           "deadline", "status", "days_overdue", "timeliness", "first_complete", "complete_since", "slipped_on",
           "days_late", "missing"]


def _plain(value: object) -> object:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def rows(url: str, plan: Plan, as_of: dt.date) -> list[dict]:
    """The day's statuses, one dict per organization × stage (keys :data:`COLUMNS`)."""
    today = load_results(url, plan.id, as_of)
    if today.empty:
        return []
    timely = timeliness(url, plan, as_of, today).set_index(["org_id", "stage"])
    names = today.drop_duplicates("org_id").set_index("org_id")["name"].to_dict()
    titles = {s.number: s.title for s in plan.stages}
    out = []
    for r in today.sort_values(["stage", "org_id"]).itertuples(index=False):
        mooyso = r.org_id if r.kind == "МООУСО" else (r.parent_id if isinstance(r.parent_id, str) else None)
        t = timely.loc[(r.org_id, r.stage)] if (r.org_id, r.stage) in timely.index else None
        out.append({k: _plain(v) for k, v in {
            "plan_id": plan.id, "as_of": as_of, "org_id": r.org_id, "name": r.name, "kind": r.kind,
            "mooyso_id": mooyso, "mooyso_name": names.get(mooyso) if mooyso else None, "stage": int(r.stage),
            "stage_title": titles.get(int(r.stage)), "deadline": r.deadline, "status": r.status,
            "days_overdue": r.days_overdue, "timeliness": t["timeliness"] if t is not None else None,
            "first_complete": t["first_complete"] if t is not None else None,
            "complete_since": t["complete_since"] if t is not None else None,
            "slipped_on": t["slipped_on"] if t is not None else None,
            "days_late": t["days_late"] if t is not None else None,
            "missing": "; ".join(r.missing) if isinstance(r.missing, list) else None,
        }.items()})
    return out


def to_csv(records: list[dict]) -> str:
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None else record[k] for k in COLUMNS})
    return buffer.getvalue()
