"""What the campaign page in the Airflow UI shows, from the project's store (and the day's snapshot registry).

Plain functions returning plain data (no Airflow, no HTTP): the plugin's FastAPI app
(``admission.adapter.web``) renders them; tests call them to compare the page's numbers with the store's.
Every figure is of one plan and one day whose results are stored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from markupsafe import escape
from sqlalchemy import select

from admission.inputs.submissions import version_diff
from admission.labels import INTAKE_OUTCOME_RU, MAIL_KIND_RU, MAIL_STATUS_RU, STATUS_RU
from admission.mail.intake import day_rows, described
from admission.plan import Plan
from admission.report.daily import approval_queue
from admission.report.ranking import ranking
from admission.report.timeliness import timeliness
from admission.schema import DATASETS
from admission.store import (
    engine_for,
    finding,
    intake,
    load_history,
    load_results,
    outbox,
    previous_date,
    reviews,
    stage_result,
)
from admission.vocabulary import Status
from admission.wording import ROWS, plural

SHOWN_ORGS = 50  # search hits listed; a code, a name or an ИНН narrows it


def result_days(url: str, plan_id: str) -> list[dt.date]:
    """The days whose stage results are stored, oldest first."""
    t = stage_result
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(t.c.as_of).distinct().where(t.c.plan_id == plan_id).order_by(t.c.as_of)).all()
    return [r[0] if isinstance(r[0], dt.date) else dt.date.fromisoformat(str(r[0])[:10]) for r in rows]


@dataclass
class Day:
    """One plan's stored results for one day, loaded once per page."""

    plan: Plan
    as_of: dt.date
    results: pd.DataFrame

    @classmethod
    def load(cls, url: str, plan: Plan, as_of: dt.date) -> Day:
        return cls(plan, as_of, load_results(url, plan.id, as_of))


def _counts(rows: pd.DataFrame) -> dict:
    counts = rows["status"].value_counts()
    total = len(rows)
    out = {str(s): int(counts.get(str(s), 0)) for s in Status} | {"total": total}
    out["pct"] = round(100.0 * out["complete"] / total, 1) if total else None
    return out


def stages(day: Day) -> list[dict]:
    """Every stage of the plan: deadline, days left, complete / lagging / overdue and % complete."""
    out = []
    for stage in day.plan.ordered_stages:
        rows = day.results[day.results["stage"] == stage.number]
        days_left = (stage.deadline - day.as_of).days if stage.deadline else None
        out.append({"number": stage.number, "title": stage.title, "deadline": stage.deadline,
                    "days_left": days_left, "judged": not rows.empty, **_counts(rows)})
    return out


def municipalities(day: Day) -> list[dict]:
    """Per МООУСО: its own rows and its schools' and preschools', per stage (complete of total, overdue)."""
    res = day.results
    if res.empty:
        return []
    mooyso = res[res["kind"] == "МООУСО"].drop_duplicates("org_id")[["org_id", "name"]]
    owner = res["parent_id"].where(res["kind"] != "МООУСО", res["org_id"])
    # One count of every (МООУСО, stage, status): a mask per МООУСО took 0.4 s on a region of 3,000 organizations.
    counts = pd.crosstab([owner, res["stage"]], res["status"]).reindex(columns=[str(s) for s in Status], fill_value=0)
    orgs = res.groupby(owner)["org_id"].nunique()
    numbers = [s.number for s in day.plan.ordered_stages]
    out = []
    for org_id, name in sorted(zip(mooyso["org_id"], mooyso["name"], strict=True), key=lambda x: str(x[1])):
        per_stage, whole = {}, dict.fromkeys((str(s) for s in Status), 0)
        for n in numbers:
            if (org_id, n) not in counts.index:
                per_stage[n] = None
                continue
            row = {k: int(v) for k, v in counts.loc[(org_id, n)].items()}
            total = sum(row.values())
            per_stage[n] = row | {"total": total, "pct": round(100.0 * row["complete"] / total, 1) if total else None}
            for k, v in row.items():
                whole[k] += v
        total = sum(whole.values())
        out.append({"org_id": org_id, "name": name, "organizations": int(orgs.get(org_id, 0)), "stages": per_stage,
                    **whole, "total": total, "pct": round(100.0 * whole["complete"] / total, 1) if total else None})
    return out


def _by_organization(mine: pd.DataFrame) -> list[dict]:
    """Each organization with its status on every stage, МООУСО first, then the most open stages."""
    out = []
    for org_id, rows in mine.groupby("org_id", sort=True):
        first = rows.iloc[0]
        out.append({"org_id": org_id, "name": first["name"], "kind": first["kind"],
                    "stages": {int(r.stage): r.status for r in rows.itertuples()},
                    "open": int((rows["status"] != "complete").sum())})
    return sorted(out, key=lambda o: (o["kind"] != "МООУСО", -o["open"], str(o["org_id"])))


def members(day: Day, mooyso_id: str) -> list[dict]:
    """The drill-down of one МООУСО: it and each of its organizations with its status on every stage."""
    res = day.results
    mine = res[((res["parent_id"] == mooyso_id) | (res["org_id"] == mooyso_id)).to_numpy()]
    return _by_organization(mine)


def mooyso_ranking(url: str, day: Day) -> list[dict]:
    """The МООУСО ranked (admission.report.ranking) for the page: completeness, timeliness, change, trend."""
    if day.results.empty:
        return []
    names = day.results.drop_duplicates("org_id").set_index("org_id")["name"].to_dict()
    return ranking(url, day.plan, day.as_of, day.results, timeliness(url, day.plan, day.as_of, day.results),
                   names).to_dict("records")


def approvals(day: Day) -> list[dict]:
    """The approvals queue per МООУСО (admission.report.daily.approval_queue) for the page."""
    names = day.results.drop_duplicates("org_id").set_index("org_id")["name"].to_dict() if not day.results.empty \
        else {}
    return approval_queue(day.plan, day.results, names)


def scoped_members(day: Day, scope: tuple[str, ...]) -> list[dict]:
    """The organizations a page link may show (admission.report.links): those it names, and the schools and
    preschools of a МООУСО it names, each with its status on every stage."""
    res = day.results
    named = set(scope)
    mine = res[(res["org_id"].isin(named) | res["parent_id"].isin(named)).to_numpy()]
    return _by_organization(mine)


def search(day: Day, registry: pd.DataFrame | None, query: str) -> list[dict]:
    """Organizations whose code, name or ИНН contains the query (case-insensitive, ё = е)."""
    q = _fold(query)
    if not q:
        return []
    orgs = day.results.drop_duplicates("org_id")[["org_id", "name", "kind", "parent_id"]]
    inn = pd.Series(dtype="object")
    if registry is not None and "inn" in registry:
        inn = registry.set_index("org_id")["inn"]
    hay = (orgs["org_id"].astype(str).map(_fold) + " " + orgs["name"].astype(str).map(_fold) + " "
           + orgs["org_id"].map(inn).fillna("").astype(str))
    hits = orgs[hay.str.contains(q, regex=False).to_numpy()]
    exact = hits["org_id"].astype(str).map(_fold) == q
    hits = pd.concat([hits[exact.to_numpy()], hits[~exact.to_numpy()]])
    return [{"org_id": r.org_id, "name": r.name, "kind": r.kind, "inn": inn.get(r.org_id)}
            for r in hits.head(SHOWN_ORGS).itertuples()]


def _fold(text: str) -> str:
    return " ".join(str(text).replace("ё", "е").replace("Ё", "Е").casefold().split())


def organization(url: str, day: Day, org_id: str) -> dict | None:
    """One organization: its status and what is missing on every stage, its data problems (file, row,
    column) and the mail about it (to it or to its supervisor) from the outbox: kind, date, outcome."""
    rows = day.results[day.results["org_id"] == org_id]
    if rows.empty:
        return None
    first = rows.iloc[0]
    titles = {s.number: s.title for s in day.plan.stages}
    stages_ = [{"number": int(r.stage), "title": titles.get(int(r.stage), ""), "status": r.status,
                "status_ru": STATUS_RU.get(r.status, r.status), "missing": list(r.missing), "deadline": r.deadline,
                "days_overdue": None if pd.isna(r.days_overdue) else int(r.days_overdue),
                "evidence": getattr(r, "evidence", None) if isinstance(getattr(r, "evidence", None), str) else None}
               for r in rows.sort_values("stage").itertuples()]
    with engine_for(url).connect() as conn:
        problems = conn.execute(
            select(finding.c.file, finding.c.row, finding.c.column, finding.c.message).distinct()
            .where(finding.c.plan_id == day.plan.id, finding.c.as_of == day.as_of, finding.c.org_id == org_id)
            .order_by(finding.c.file, finding.c.row)).mappings().all()
        # The outbox's `orgs` lists every organization a message is about; LIKE narrows, the split decides.
        mail = conn.execute(
            select(outbox.c.as_of, outbox.c.kind, outbox.c.recipient, outbox.c.status, outbox.c.stages,
                   outbox.c.orgs, outbox.c.sent_at, outbox.c.updated_at)
            .where(outbox.c.plan_id == day.plan.id, outbox.c.orgs.contains(org_id), outbox.c.as_of <= day.as_of)
            .order_by(outbox.c.as_of.desc(), outbox.c.id)).mappings().all()
    received = [{"as_of": m["as_of"], "kind": m["kind"], "kind_ru": MAIL_KIND_RU.get(m["kind"], m["kind"]),
                 "recipient": m["recipient"], "status": m["status"],
                 "status_ru": MAIL_STATUS_RU.get(m["status"], m["status"]), "stages": m["stages"],
                 "at": m["sent_at"] or m["updated_at"]}
                for m in mail if org_id in m["orgs"].split(",")]
    return {"org_id": org_id, "name": first["name"], "kind": first["kind"], "parent_id": first["parent_id"],
            "stages": stages_, "problems": [dict(p) for p in problems], "mail": received,
            "answers": answers(url, day, org_id)}


def answers(url: str, day: Day, org_id: str) -> list[dict]:
    """The organization's answers by mail up to the day (admission.mail.intake): when, outcome, what became its data."""

    with engine_for(url).connect() as conn:
        rows = conn.execute(
            select(intake.c.received_at, intake.c.outcome, intake.c.result, intake.c.message_id)
            .where(intake.c.plan_id == day.plan.id, intake.c.org_id == org_id, intake.c.as_of <= day.as_of)
            .order_by(intake.c.received_at.desc())).mappings().all()
    done = reviews(url, day.plan.id, org_id)
    history: dict[str, list[dict]] = {}
    for r in done.to_dict("records"):
        history.setdefault(r["message_id"], []).append(r)
    return [{"at": r["received_at"], "outcome_ru": INTAKE_OUTCOME_RU.get(r["outcome"], r["outcome"] or "в обработке"),
             "message_id": r["message_id"], "reviewable": r["outcome"] in ("accepted", "partial"),
             "reviews": history.get(r["message_id"], []),
             "changes": _changes(r["result"]),
             "accepted": "; ".join(f"{DATASETS[f['dataset']].ru}: {plural(int(f['rows']), ROWS)}"
                                   for f in (r["result"] or {}).get("files", []) if f.get("dataset") in DATASETS)}
            for r in rows]


def _changes(result: dict | None) -> list[str]:
    """Per accepted file of an answer, what it changed against the previous version by mail (submissions)."""
    out = []
    for f in (result or {}).get("files", []):
        if f.get("status", "accepted") != "accepted" or not f.get("path") or f.get("dataset") not in DATASETS:
            continue
        diff = version_diff(Path(f["path"]))
        label = DATASETS[f["dataset"]].ru
        if diff["previous"] is None:
            out.append(f"{label}: первая версия по почте, {plural(diff['added'], ROWS)}")
            continue
        parts = [f"{label}: добавлено {plural(diff['added'], ROWS)}, удалено {plural(diff['removed'], ROWS)}"]
        parts += ["+ " + "; ".join(v for v in row if v) for row in diff["added_rows"]]
        parts += ["− " + "; ".join(v for v in row if v) for row in diff["removed_rows"]]
        out.append(" | ".join(parts))
    return out


PROBLEM_STATES = ("refused", "failed", "pending", "sending")


def day_mail(url: str, day: Day) -> dict:
    """The day's outbox as the admin follows it: counts by kind and state, and every message that did not go out
    (refused, failing, still waiting) with its reason and the organizations it is about (links to their cards)."""
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            select(outbox.c.kind, outbox.c.status, outbox.c.recipient, outbox.c.orgs, outbox.c.last_error,
                   outbox.c.attempts)
            .where(outbox.c.plan_id == day.plan.id, outbox.c.as_of == day.as_of)
            .order_by(outbox.c.kind, outbox.c.id)).mappings().all()
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["kind"], {}).setdefault(r["status"], 0)
        counts[r["kind"]][r["status"]] += 1
    table = [{"kind": kind, "kind_ru": MAIL_KIND_RU.get(kind, kind), "total": sum(by.values()),
              "states": [(MAIL_STATUS_RU.get(st, st), n) for st, n in sorted(by.items())]}
             for kind, by in sorted(counts.items())]
    problems = [{"kind_ru": MAIL_KIND_RU.get(r["kind"], r["kind"]), "recipient": r["recipient"],
                 "status_ru": MAIL_STATUS_RU.get(r["status"], r["status"]), "attempts": r["attempts"],
                 "reason": (r["last_error"] or "")[:300], "orgs": [o for o in (r["orgs"] or "").split(",") if o][:10]}
                for r in rows if r["status"] in PROBLEM_STATES][:200]
    return {"kinds": table, "total": len(rows), "problems": problems}


def mailbox(url: str, day: Day) -> dict:
    """The mailbox since the previous report (admission.mail.intake): every message read, from whom, what became
    of it — a message from an unknown sender or without a valid form is shown here, since nobody else hears of
    it."""
    since = previous_date(url, day.plan.id, day.as_of) or day.as_of
    rows = described(day_rows(url, day.plan.id, day.as_of, since=since), day.plan)
    attention = [r for r in rows if r["outcome"] in ("unknown", "no_form", "quarantined", "rejected")]
    return {"since": since, "messages": rows, "attention": len(attention)}


def progress(url: str, plan: Plan, as_of: dt.date) -> dict:
    """The chart's data: % complete per stage per stored day, and each deadline (for the straight line)."""
    history = load_history(url, plan.id, as_of)
    series = {}
    for stage in plan.ordered_stages:
        rows = history[history["stage"] == stage.number].sort_values("as_of")
        series[stage.number] = [(_date(d), float(p)) for d, p in zip(rows["as_of"], rows["pct"], strict=True)]
    return {"start": plan.campaign.start, "as_of": as_of,
            "deadlines": {s.number: s.deadline for s in plan.stages if s.deadline}, "series": series}


def _date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def progress_svg(data: dict, width: int = 760, height: int = 300) -> str:
    """The progress chart as inline SVG (no script, no external asset): a solid line per stage of % complete
    by day, and a dashed straight line from the campaign start to 100 % on its deadline."""

    left, right, top, bottom = 40, 150, 10, 30
    start = data["start"]
    end = max([data["as_of"], *data["deadlines"].values()]) + dt.timedelta(days=3)
    span = max((end - start).days, 1)

    def x(day: dt.date) -> float:
        return left + (width - left - right) * (day - start).days / span

    def y(pct: float) -> float:
        return top + (height - top - bottom) * (1 - pct / 100)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="Ход выполнения этапов">']
    for pct in (0, 25, 50, 75, 100):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(pct):.1f}" y2="{y(pct):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y(pct) + 4:.1f}" font-size="10" text-anchor="end">{pct}%</text>')
    parts.append(f'<text x="{left}" y="{height - 8}" font-size="10">{start:%d.%m.%Y}</text>'
                 f'<text x="{width - right}" y="{height - 8}" font-size="10" text-anchor="end">{end:%d.%m.%Y}</text>'
                 f'<line x1="{x(data["as_of"]):.1f}" x2="{x(data["as_of"]):.1f}" y1="{top}" y2="{height - bottom}" '
                 f'stroke="#999" stroke-dasharray="2,2"/>')
    for i, (number, points) in enumerate(sorted(data["series"].items())):
        color = COLORS[i % len(COLORS)]
        deadline = data["deadlines"].get(number)
        if deadline:
            parts.append(f'<line x1="{x(start):.1f}" y1="{y(0):.1f}" x2="{x(deadline):.1f}" y2="{y(100):.1f}" '
                         f'stroke="{color}" stroke-dasharray="5,4" stroke-opacity="0.6"/>')
        if points:
            coords = " ".join(f"{x(d):.1f},{y(p):.1f}" for d, p in points)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>'
                         + "".join(f'<circle cx="{x(d):.1f}" cy="{y(p):.1f}" r="2.5" fill="{color}"/>'
                                   for d, p in points[-1:]))
        parts.append(f'<text x="{width - right + 8}" y="{top + 14 * (i + 1)}" font-size="11" fill="{color}">'
                     f'{escape(f"этап {number}")}{": " + format(points[-1][1], ".0f") + "%" if points else ""}</text>')
    parts.append("</svg>")
    return "".join(parts)
