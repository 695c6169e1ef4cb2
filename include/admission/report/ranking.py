"""The МООУСО over time, ranked: what a ministry managing fifty municipal authorities looks at first.

Per МООУСО (its own rows and those of its schools and preschools), over every stage judged that day and per stage
(``stages``: stage -> % complete and % on time):
completeness (% of organization × stage complete), timeliness (% complete on time, admission.report.timeliness),
the change in completeness since the previous judged day and since a week before, the trend of the last seven
judged days, its place (1 = the most complete) and a traffic light by the plan's ``ranking`` thresholds.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import case, func, select

from admission.plan import Plan
from admission.report.timeliness import ON_TIME
from admission.store import engine_for, stage_result

LIGHTS = {"green": "зеленый", "yellow": "желтый", "red": "красный"}
COLUMNS = ["place", "mooyso", "name", "light", "pct", "on_time_pct", "overdue", "change_day", "change_week", "trend",
           "stages"]


def _history(url: str, plan: Plan, as_of: dt.date, days: int = 8) -> pd.DataFrame:
    """Per judged day (the last ``days`` up to ``as_of``) and МООУСО: complete and total organization × stage."""
    t = stage_result
    owner = case((t.c.kind == "МООУСО", t.c.org_id), else_=t.c.parent_id).label("mooyso")
    with engine_for(url).connect() as conn:
        recent = [r[0] for r in conn.execute(select(t.c.as_of).distinct().where(
            t.c.plan_id == plan.id, t.c.as_of <= as_of).order_by(t.c.as_of.desc()).limit(days))]
        if not recent:
            return pd.DataFrame(columns=["as_of", "mooyso", "complete", "total"])
        rows = conn.execute(
            select(t.c.as_of, owner, func.sum(case((t.c.status == "complete", 1), else_=0)).label("complete"),
                   func.count().label("total"))
            .where(t.c.plan_id == plan.id, t.c.as_of.in_(recent), t.c.kind.in_(["МООУСО", "ОО", "ДОУ", "ДОО"]))
            .group_by(t.c.as_of, owner)).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=["as_of", "mooyso", "complete", "total"])
    frame["as_of"] = [d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)[:10]) for d in frame["as_of"]]
    return frame[frame["mooyso"].notna()]


def light(pct: float | None, plan: Plan) -> str:
    if pct is None or pct != pct:
        return LIGHTS["red"]
    if pct >= plan.ranking.green_pct:
        return LIGHTS["green"]
    return LIGHTS["yellow"] if pct >= plan.ranking.yellow_pct else LIGHTS["red"]


def ranking(url: str, plan: Plan, as_of: dt.date, today: pd.DataFrame, timely: pd.DataFrame,
            names: dict[str, str]) -> pd.DataFrame:
    """One row per МООУСО, the most complete first (columns :data:`COLUMNS`)."""
    history = _history(url, plan, as_of)
    if history.empty:
        return pd.DataFrame(columns=COLUMNS)
    history["pct"] = (100.0 * history["complete"] / history["total"]).round(1)
    days = sorted(history["as_of"].unique())
    previous = days[-2] if len(days) > 1 else None
    week = max((d for d in days if d <= as_of - dt.timedelta(days=7)), default=None)
    by_day = history.pivot_table(index="mooyso", columns="as_of", values="pct", aggfunc="first")
    mine = today[today["kind"].isin(["МООУСО", "ОО", "ДОУ", "ДОО"])]
    owner = mine["parent_id"].where(mine["kind"] != "МООУСО", mine["org_id"])
    timely = timely.set_index(["org_id", "stage"])["timeliness"]
    on_time = [timely.get((o, s)) == ON_TIME for o, s in zip(mine["org_id"], mine["stage"], strict=True)]
    frame = pd.DataFrame({"mooyso": owner.to_numpy(), "stage": mine["stage"].astype(int).to_numpy(), "on_time": on_time,
                          "complete": (mine["status"] == "complete").to_numpy(),
                          "overdue": (mine["status"] == "overdue").to_numpy()})
    agg = frame.groupby("mooyso").agg(on_time=("on_time", "sum"), overdue=("overdue", "sum"),
                                      total=("on_time", "size"))
    per_stage = frame.groupby(["mooyso", "stage"]).agg(complete=("complete", "sum"), on_time=("on_time", "sum"),
                                                        total=("on_time", "size"))
    stages_of: dict[str, dict[int, dict]] = {}
    for (mooyso, stage), row in per_stage.iterrows():
        stages_of.setdefault(mooyso, {})[int(stage)] = {
            "pct": round(100.0 * row["complete"] / row["total"], 1) if row["total"] else None,
            "on_time_pct": round(100.0 * row["on_time"] / row["total"], 1) if row["total"] else None}
    rows = []
    for mooyso, counts in agg.iterrows():
        series = by_day.loc[mooyso] if mooyso in by_day.index else pd.Series(dtype=float)
        pct = series.get(as_of)
        rows.append({
            "mooyso": mooyso, "name": names.get(mooyso, mooyso), "pct": pct,
            "on_time_pct": round(100.0 * counts["on_time"] / counts["total"], 1) if counts["total"] else None,
            "overdue": int(counts["overdue"]),
            "change_day": round(pct - series.get(previous), 1) if previous and pd.notna(series.get(previous))
            and pct is not None else None,
            "change_week": round(pct - series.get(week), 1) if week and pd.notna(series.get(week))
            and pct is not None else None,
            "trend": [series.get(d) for d in days if pd.notna(series.get(d))],
            "light": light(pct, plan), "stages": stages_of.get(mooyso, {}),
        })
    out = pd.DataFrame(rows).sort_values(["pct", "on_time_pct", "name"], ascending=[False, False, True])
    out.insert(0, "place", range(1, len(out) + 1))
    return out[COLUMNS].astype(object).where(out[COLUMNS].notna(), None).reset_index(drop=True)


def trend_text(values: list[float]) -> str:
    """«58 → 62 → 75» — the last judged days' completeness, for a cell or a line of the mail."""
    return " → ".join(f"{v:.0f}" for v in values)
