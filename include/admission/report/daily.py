"""The ministry's daily report: tables, a progress chart, an XLSX workbook, the mail.

Everything is computed from the stored stage results (today's and the
history), so the report's numbers are by construction the stage results'
numbers. Files go to ``<output>/reports/<plan>/<date>/``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email.message import EmailMessage, MIMEPart
from email.utils import make_msgid
from pathlib import Path

import pandas as pd

from admission import quiet_libraries
from admission.checks.stages import NOT_COUNTED, REAPPROVAL, SOURCE_ROW, SOURCE_SITE
from admission.labels import FILE_CHANGE_RU, MAIL_KIND_RU, MAIL_STATUS_RU, STATUS_RU
from admission.mail.intake import described, zone_ru
from admission.mail.keys import digest_key
from admission.mail.recipients import Person
from admission.mail.render import envelope
from admission.plan import Plan
from admission.report.ranking import trend_text
from admission.report.timeliness import rates
from admission.templating import render as render_template
from admission.templating import ru_date
from admission.wording import salutation
from admission.xlsx import XLSX_MIME, new_workbook, write_sheet


@dataclass
class Report:
    plan: Plan
    as_of: dt.date
    stages: pd.DataFrame
    municipalities: pd.DataFrame
    longest: pd.DataFrame
    changes: pd.DataFrame
    problems: pd.DataFrame
    previous: dt.date | None
    unjudged: list[int] = field(default_factory=list)  # stages with no results for the day (their check failed)
    preview: str | None = None  # why this report is not mailed (an example plan)
    undelivered: list[dict] = field(default_factory=list)  # as_of, kind, recipient, status, error (outbox.undelivered)
    files_changed: dict[str, list[str]] = field(default_factory=dict)  # added/changed/removed (the snapshot's)
    sources: list[dict] = field(default_factory=list)  # per stage with evidence: what counted (evidence_sources)
    intake: list[dict] = field(default_factory=list)  # the mailbox since the previous report (mail.intake.day_rows)
    timely: pd.DataFrame | None = None  # per organization × stage: when complete, how late (report.timeliness)
    ranking: pd.DataFrame | None = None  # per МООУСО: completeness, timeliness, change, trend (report.ranking)
    exemptions: list[dict] = field(default_factory=list)  # every extension and exemption, counted or not
    approvals: list[dict] = field(default_factory=list)  # per МООУСО: approvals waiting, to redo, not counted


def evidence_sources(plan: Plan, today: pd.DataFrame) -> list[dict]:
    """For each stage whose results say what counted (stage 2's official site): how many organizations by the
    website check only, by an informing row only, by both; and how many sites the check did not confirm."""

    if "evidence" not in today:
        return []
    out = []
    for stage in plan.ordered_stages:
        ev = today.loc[today["stage"] == stage.number, "evidence"]
        ev = ev[ev.notna()].astype(str)
        if ev.empty:
            continue
        site, row = ev.str.startswith(SOURCE_SITE), ev.str.contains(SOURCE_ROW, regex=False)
        out.append({"stage": stage.number, "site_only": int((site & ~row).sum()), "row_only": int((row & ~site).sum()),
                    "both": int((site & row).sum())})
    return out




def intake_summary(rows: list[dict]) -> dict[str, int]:
    """How the day's messages ended, by outcome (the report's «Почта» line)."""
    out: dict[str, int] = {}
    for r in rows:
        out[r.get("outcome") or "pending"] = out.get(r.get("outcome") or "pending", 0) + 1
    return out


def unjudged_stages(plan: Plan, today: pd.DataFrame, orgs: pd.DataFrame) -> list[int]:
    """Stages without a single stored result for the day although the registry has organizations they
    concern: their check could not run (a stage that concerns nobody has nothing to store)."""
    judged = set(today["stage"].astype(int)) if not today.empty else set()
    kinds = set(orgs["kind"].dropna())
    return [s.number for s in plan.ordered_stages
            if s.number not in judged and kinds & set(s.concerns)]


def stage_table(plan: Plan, today: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    rows = []
    for stage in plan.ordered_stages:
        r = today[today["stage"] == stage.number]
        counts = r["status"].value_counts()
        total = len(r)
        complete = int(counts.get("complete", 0))
        rows.append({
            "stage": stage.number, "title": stage.title, "deadline": stage.deadline,
            "days_left": (stage.deadline - as_of).days if stage.deadline else None,
            "complete": complete, "lagging": int(counts.get("lagging", 0)), "overdue": int(counts.get("overdue", 0)),
            "total": total, "pct": round(100.0 * complete / total, 1) if total else None,
        })
    # Object columns: a stage without a deadline (or without organizations) keeps None, which the mail shows as
    # «—» and the workbook as an empty cell; a float column made it «nan» and the other days «2.0».
    return pd.DataFrame(rows, dtype=object)


STATUS_ORDER = {"overdue": 0, "lagging": 1, "complete": 2}


def _stage_cell(values: dict | None) -> str:
    """«75 / 50» — % complete and % on time of a МООУСО on one stage; «—» when it has no organization there."""
    if not values or values.get("pct") is None:
        return "—"
    return f"{values['pct']:.0f} / {values['on_time_pct']:.0f}"


def approval_queue(plan: Plan, today: pd.DataFrame, names: dict[str, str]) -> list[dict]:
    """Per МООУСО, the approvals of the approvals stage (stage 8) that wait on it: not yet decided with the data
    ready (the stages it depends on complete today), to approve again after a change, approvals that did not
    count (given before the data was complete)."""
    stage = next((s for s in plan.ordered_stages if s.check == "approvals"), None)
    if stage is None or today.empty:
        return []
    rows = today[today["stage"] == stage.number]
    ready_orgs = set(rows["org_id"])
    for dep in stage.depends_on:
        dep_rows = today[(today["stage"] == dep) & (today["status"] == "complete")]
        ready_orgs &= set(dep_rows["org_id"])
    out: dict[str, dict] = {}
    for org, parent, status, missing in zip(rows["org_id"], rows["parent_id"], rows["status"], rows["missing"],
                                            strict=True):
        if status == "complete" or not isinstance(parent, str):
            continue
        text = " ".join(missing) if isinstance(missing, list) else ""
        entry = out.setdefault(parent, {"mooyso": parent, "name": names.get(parent, parent), "waiting": 0,
                                        "again": 0, "not_counted": 0})
        if REAPPROVAL in text:
            entry["again"] += 1
        elif NOT_COUNTED in text:
            entry["not_counted"] += 1
        elif org in ready_orgs:
            entry["waiting"] += 1
    return sorted(out.values(), key=lambda e: (-(e["waiting"] + e["again"] + e["not_counted"]), e["name"]))


def exemption_rows(plan: Plan, frame: pd.DataFrame | None, orgs: pd.DataFrame) -> list[dict]:
    """Every row of the extensions and exemptions file, and whether it counts (none is silent)."""
    if frame is None or frame.empty:
        return []
    names = orgs.drop_duplicates("org_id").set_index("org_id")["name"].to_dict()
    stages = {s.number: s for s in plan.stages}
    out = []
    for r in frame.to_dict("records"):
        kind = str(r.get("kind") or "").strip().casefold()
        stage = stages.get(r.get("stage"))
        if stage is None:
            counted = f"нет: этапа «{r.get('stage')}» в плане нет"
        elif r.get("org_id") not in names:
            counted = "нет: организации нет в реестре"
        elif kind == "продление" and not isinstance(r.get("until"), dt.date):
            counted = "нет: не указан срок, до которого продлено"
        elif kind == "продление" and stage.deadline is None:
            counted = "нет: у этапа нет срока"
        elif kind not in ("продление", "не требуется"):
            counted = "нет: вид не «продление» и не «не требуется»"
        else:
            counted = "да"
        out.append({"org_id": r.get("org_id"), "name": names.get(r.get("org_id"), ""), "stage": r.get("stage"),
                    "kind": kind, "until": r.get("until"), "reason": r.get("reason") or "",
                    "granted_by": r.get("granted_by") or "", "counted": counted, "file": r.get("_file"),
                    "row": r.get("_row")})
    return out


def headline(report: Report) -> dict:
    """What the minister reads first: how many organizations are overdue, the МООУСО with most overdue, what
    changed since the previous report, and the nearest deadline."""
    stages = report.stages.to_dict("records")
    overdue = sum(int(s["overdue"]) for s in stages)
    late_stages = [s["stage"] for s in stages if s["overdue"]]
    worst = None
    munis = report.municipalities
    if not munis.empty and "overdue" in munis and int(munis.iloc[0]["overdue"]) > 0:
        first = munis.iloc[0]
        worst = {"name": first["name"], "overdue": int(first["overdue"]), "pct": first["pct"]}
    changes = report.changes
    better = int((changes["after"] == "complete").sum()) if not changes.empty else 0
    worse = int((changes["after"] == "overdue").sum()) if not changes.empty else 0
    upcoming = [s for s in stages if s["deadline"] is not None and s["days_left"] is not None and s["days_left"] >= 0]
    nearest = min(upcoming, key=lambda s: s["days_left"]) if upcoming else None
    ranked = report.ranking.to_dict("records") if report.ranking is not None else []
    red = [r for r in ranked if r["light"] == "красный"]
    return {"overdue": overdue, "late_stages": late_stages, "worst": worst, "better": better, "worse": worse,
            "nearest": nearest, "red": red, "ranked": len(ranked)}


def municipality_table(today: pd.DataFrame, orgs: pd.DataFrame) -> pd.DataFrame:
    """Per МООУСО (its own lags and those of its schools and preschools): organizations not complete, per stage."""
    names = orgs.set_index("org_id")["name"].to_dict()
    school = today["kind"].isin(["ОО", "ДОУ"])
    mooyso = today["parent_id"].where(school, today["org_id"].where(today["kind"] == "МООУСО"))
    frame = today.assign(mooyso=mooyso)[lambda f: f["mooyso"].notna()]
    if frame.empty:
        return pd.DataFrame(columns=["mooyso", "name"])
    frame = frame.assign(bad=frame["status"] != "complete", late=frame["status"] == "overdue")
    pivot = frame.pivot_table(index="mooyso", columns="stage", values="bad", aggfunc="sum", fill_value=0)
    pivot.columns = [f"stage_{c}" for c in pivot.columns]
    totals = frame.groupby("mooyso").agg(overdue=("late", "sum"), total=("org_id", "count"),
                                         complete=("bad", lambda b: int((~b).sum())))
    out = pivot.join(totals).reset_index()
    out["pct"] = (100.0 * out["complete"] / out["total"]).round(1)
    out.insert(1, "name", out["mooyso"].map(names))
    return out.sort_values(["overdue", "pct"], ascending=[False, True]).reset_index(drop=True)


def longest_overdue(today: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    late = today[today["status"] == "overdue"].copy()
    late["days_overdue"] = late["days_overdue"].astype(int)
    return late.sort_values(["days_overdue", "stage", "org_id"], ascending=[False, True, True]).head(n)[
        ["stage", "org_id", "name", "days_overdue", "missing"]].reset_index(drop=True)


def status_changes(today: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    if previous.empty:
        return pd.DataFrame(columns=["stage", "org_id", "name", "before", "after"])
    merged = today.merge(previous[["stage", "org_id", "status"]], on=["stage", "org_id"], how="left",
                         suffixes=("", "_before"))
    changed = merged[merged["status_before"].notna() & (merged["status"] != merged["status_before"])]
    return changed.rename(columns={"status_before": "before", "status": "after"})[
        ["stage", "org_id", "name", "before", "after"]].sort_values(["stage", "org_id"]).reset_index(drop=True)


def build(plan: Plan, as_of: dt.date, today: pd.DataFrame, previous: pd.DataFrame, prev_date: dt.date | None,
          orgs: pd.DataFrame, problems: pd.DataFrame, preview: str | None = None,
          undelivered: list[dict] | None = None, files_changed: dict[str, list[str]] | None = None) -> Report:
    return Report(plan, as_of, stage_table(plan, today, as_of), municipality_table(today, orgs),
                  longest_overdue(today), status_changes(today, previous), problems, prev_date,
                  unjudged_stages(plan, today, orgs), preview, undelivered or [], files_changed or {},
                  evidence_sources(plan, today))


def chart(plan: Plan, history: pd.DataFrame, as_of: dt.date, path: Path) -> Path:
    """% complete per stage over the campaign's days, against the straight line to each deadline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    quiet_libraries()
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=100)
    start = plan.campaign.start
    dated = [s for s in plan.stages if s.deadline]
    end = max([as_of, *[s.deadline for s in dated]]) + dt.timedelta(days=3)
    import matplotlib.dates as mdates

    colors = plt.get_cmap("tab10")
    # Stages often share a value (0 % or 100 %) for days: a marker and a line style of its own keep each visible
    # where the lines lie on each other, and the legend gives each stage's value today.
    markers, styles = "osD^vP*X", ["-", "-", "-.", "-", ":", "-", "-.", "-"]
    for i, stage in enumerate(plan.ordered_stages):
        h = history[history["stage"] == stage.number].sort_values("as_of")
        color = colors(i % 10)
        if not h.empty:
            today = h["pct"].iloc[-1]
            ax.plot(pd.to_datetime(h["as_of"]), h["pct"], marker=markers[i % len(markers)], ms=5 + (i % 3),
                    ls=styles[i % len(styles)], lw=1.6, color=color, alpha=0.9, markerfacecolor="none",
                    label=f"Этап {stage.number}: {today:.0f}%")
        if stage.deadline:
            ax.plot(pd.to_datetime([start, stage.deadline]), [0, 100], ls="--", lw=0.7, color=color, alpha=0.35)
            ax.plot([pd.Timestamp(stage.deadline)], [100], marker="|", ms=10, color=color, alpha=0.7)
    ax.axvline(pd.Timestamp(as_of), color="grey", lw=0.8)
    # The days with results, with two weeks before them for context (a campaign's first week would otherwise be
    # a few pixels at the right of nine months of axis).
    first = min(history["as_of"]) if not history.empty else start
    ax.set_xlim(pd.Timestamp(max(start, first - dt.timedelta(days=14))), pd.Timestamp(end))
    ax.set_ylim(0, 105)
    ax.set_ylabel("% организаций, выполнивших этап")
    ax.set_title(f"Ход подготовки к приему в 1-й класс, кампания {plan.id} (пунктир — равномерный ход до срока)",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d.%m.%Y"))  # as an official writes a date
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def workbook(report: Report, today: pd.DataFrame, path: Path) -> Path:
    """One sheet per stage (every organization, status, what is missing) and one of data problems."""
    wb = new_workbook(path)

    write_sheet(wb, "Сводка", ["Этап", "Название", "Срок", "Дней до срока", "Выполнено", "Отстают", "Просрочено", "Всего",
                     "% выполнения"],
          [[r.stage, r.title, r.deadline or "весь период", r.days_left if r.days_left is not None else "—",
            r.complete, r.lagging, r.overdue, r.total, r.pct if r.pct is not None else "—"]
           for r in report.stages.itertuples()], [6, 50, 12, 14, 11, 10, 12, 8, 13])
    if report.ranking is not None and not report.ranking.empty:
        numbers = [st.number for st in report.plan.ordered_stages]
        write_sheet(wb, "МООУСО", ["Место", "МООУСО", "Светофор", "% выполнения", "% выполнено в срок", "Просрочено",
                                   "Изменение за день, п.п.", "Изменение за неделю, п.п.", "Динамика, %",
                                   *[f"Этап {n}: % / % в срок" for n in numbers]],
                    [(r["place"], r["name"], r["light"], r["pct"], r["on_time_pct"], r["overdue"], r["change_day"],
                      r["change_week"], trend_text(r["trend"]),
                      *[_stage_cell((r["stages"] or {}).get(n)) for n in numbers])
                     for r in report.ranking.to_dict("records")],
                    [7, 50, 11, 13, 18, 12, 22, 24, 30, *[16] * len(numbers)])
    timely = report.timely.set_index(["org_id", "stage"]) if report.timely is not None else None
    if timely is not None:
        per_stage = rates(report.timely, ["stage"]).set_index("stage")
        write_sheet(wb, "Своевременность", ["Этап", "Название", "Срок", "Выполнено в срок", "С опозданием",
                                            "Не выполнено", "Всего", "% в срок"],
                    [(st.number, st.title, st.deadline or "весь период",
                      *(int(per_stage.at[st.number, c]) if st.number in per_stage.index else 0
                        for c in ("on_time", "late", "not_done", "total")),
                      per_stage.at[st.number, "on_time_pct"] if st.number in per_stage.index else None)
                     for st in report.plan.ordered_stages], [6, 50, 12, 18, 14, 14, 8, 10])
    names = today.drop_duplicates("org_id").set_index("org_id")["name"].to_dict()
    for stage in report.plan.ordered_stages:
        r = today[today["stage"] == stage.number]
        # What needs attention first: overdue (longest first), then lagging, then complete.
        order = pd.DataFrame({"s": r["status"].map(STATUS_ORDER).fillna(3),
                              "d": -pd.to_numeric(r["days_overdue"], errors="coerce").fillna(0), "o": r["org_id"]})
        r = r.loc[order.sort_values(["s", "d", "o"]).index]
        # Column by column (tolist), not row by row: the national workbook has 2.6 million cells.
        parent = [names.get(p, p) if isinstance(p, str) else "" for p in r["parent_id"].tolist()]
        status = [STATUS_RU.get(s, s) for s in r["status"].tolist()]
        missing = ["; ".join(m) if m else "" for m in r["missing"].tolist()]
        headers = ["Код", "Организация", "Тип", "МООУСО", "Статус", "Дней просрочки", "Что не сделано"]
        late = [int(d) if pd.notna(d) else None for d in r["days_overdue"].tolist()]
        columns = [r["org_id"].tolist(), r["name"].tolist(), r["kind"].tolist(), parent, status, late, missing]
        widths = [10, 50, 8, 40, 12, 15, 100]
        if timely is not None:  # when it was done, and how late (DHIS2's «reporting rate on time»)
            keys = list(zip(r["org_id"].tolist(), r["stage"].astype(int).tolist(), strict=True))
            found = [timely.loc[k] if k in timely.index else None for k in keys]
            headers += ["Своевременность", "Выполнено впервые", "Выполнено с", "Откат", "Рабочих дней опоздания"]
            columns += [[f["timeliness"] if f is not None else "" for f in found],
                        [f["first_complete"] if f is not None else None for f in found],
                        [f["complete_since"] if f is not None else None for f in found],
                        [f["slipped_on"] if f is not None else None for f in found],
                        [int(f["days_late"]) if f is not None else None for f in found]]
            widths += [16, 16, 14, 12, 14]
        if "evidence" in r and r["evidence"].notna().any():  # what counted (stage 2: the site check or a row)
            headers.append("Что засчитано")
            columns.append([e if isinstance(e, str) else "" for e in r["evidence"].tolist()])
            widths.append(80)
        write_sheet(wb, f"Этап {stage.number}", headers, zip(*columns, strict=True), widths)
    write_sheet(wb, "Утверждение", ["МООУСО", "Ждут утверждения (данные готовы)", "Требуют повторного утверждения",
                                    "Утверждение не учтено"],
                [(a["name"], a["waiting"], a["again"], a["not_counted"]) for a in report.approvals], [50, 30, 30, 24])
    write_sheet(wb, "Продления и освобождения", ["Код", "Организация", "Этап", "Вид", "Срок продлен до",
                                                  "Основание", "Кем предоставлено", "Учтено", "Файл", "Строка"],
                [(e["org_id"], e["name"], e["stage"], e["kind"], e["until"], e["reason"], e["granted_by"],
                  e["counted"], e["file"], e["row"]) for e in report.exemptions],
                [10, 50, 6, 14, 16, 50, 30, 40, 24, 8])
    p = report.problems
    write_sheet(wb, "Проблемы данных", ["Набор данных", "Файл", "Строка", "Столбец", "Код организации", "Проблема"],
          p[["dataset", "file", "row", "column", "org_id", "message"]].itertuples(index=False, name=None),
          [20, 40, 8, 22, 16, 100])
    write_sheet(wb, "Почта", [f"Получено ({zone_ru(report.plan)})", "От", "Тема", "Организации", "Итог", "Принято (набор, код: строк)",
                              "Не принято и почему"],
                [(m["received"], m["sender"], m["subject"], m["orgs"], m["outcome_ru"], m["accepted"], m["refused"])
                 for m in described(report.intake, report.plan)],
                [18, 30, 40, 12, 26, 40, 100])
    write_sheet(wb, "Изменения файлов", ["Изменение", "Файл"],
                [(FILE_CHANGE_RU[kind], path) for kind in FILE_CHANGE_RU for path in report.files_changed.get(kind, [])],
                [14, 80])
    wb.close()
    return path


def render_email(report: Report, recipient: Person, from_email: str, from_name: str, png: Path, xlsx: Path,
                 docs_link: str | None = None, docs_date: dt.date | None = None) -> EmailMessage:
    """HTML report with the chart inline (cid) and the workbook attached, plus a plain-text twin."""
    return render_emails(report, [recipient], from_email, from_name, png, xlsx, docs_link, docs_date)[0]


def render_emails(report: Report, recipients: list[Person], from_email: str, from_name: str, png: Path, xlsx: Path,
                  docs_link: str | None = None, docs_date: dt.date | None = None) -> list[EmailMessage]:
    """One report message per recipient. Only the greeting depends on the reader: the workbook attachment is
    encoded once and the same part goes into every envelope (national data: 85 ministry addresses, a
    2-million-cell workbook; rendering and base64 of everything per recipient took 54 s), and the text is
    rendered once per distinct greeting."""
    domain = from_email.rsplit("@", 1)[-1] or "admission.local"
    cid = make_msgid(idstring="chart", domain=domain)
    context = {
        "plan": report.plan, "as_of": report.as_of, "stages": report.stages.to_dict("records"),
        "municipalities": report.municipalities.to_dict("records"),
        "stage_numbers": [s.number for s in report.plan.ordered_stages],
        "longest": report.longest.to_dict("records"), "changes": report.changes.to_dict("records"),
        "problems": report.problems.head(100).to_dict("records"), "problems_total": len(report.problems),
        "previous": report.previous, "status_ru": STATUS_RU, "cid": cid[1:-1],
        "docs_link": docs_link, "docs_date": docs_date, "unjudged": report.unjudged, "preview": report.preview,
        "undelivered": report.undelivered, "files_changed": report.files_changed, "file_change_ru": FILE_CHANGE_RU,
        "mail_kind_ru": MAIL_KIND_RU, "mail_status_ru": MAIL_STATUS_RU, "sources": report.sources,
        "intake": intake_summary(report.intake), "intake_total": len(report.intake), "head": headline(report),
        "ranking": report.ranking.to_dict("records") if report.ranking is not None else [], "trend_text": trend_text,
        "exemptions": report.exemptions, "approvals": report.approvals,
        "sender": report.plan.sender,
    }
    chart_bytes = png.read_bytes()
    bodies: dict[str, MIMEPart] = {}

    def body_for(greeting: str) -> MIMEPart:
        if greeting not in bodies:
            body = MIMEPart()
            filled = context | {"greeting": greeting}
            body.set_content(render_template("report/report.txt.j2", filled), subtype="plain", charset="utf-8",
                             cte="base64")
            body.add_alternative(render_template("report/report.html.j2", filled), subtype="html", charset="utf-8",
                                 cte="base64")
            body.get_payload()[1].add_related(chart_bytes, maintype="image", subtype="png", cid=cid,
                                              filename=png.name, disposition="inline")
            bodies[greeting] = body
        return bodies[greeting]

    attachment = MIMEPart()
    attachment.set_content(xlsx.read_bytes(), maintype=XLSX_MIME[0], subtype=XLSX_MIME[1], filename=xlsx.name,
                           disposition="attachment")
    subject = f"Ежедневный отчет: подготовка к приему в 1-й класс, кампания {report.plan.id}, на {ru_date(report.as_of)}"
    messages = []
    for recipient in recipients:
        msg = envelope(report.plan.id, "report", context["stage_numbers"], report.longest["org_id"], report.as_of,
                       subject, digest_key(report.plan.id, report.as_of, "report", recipient.email), recipient,
                       from_email, from_name)
        msg.set_type("multipart/mixed")
        msg.attach(body_for(salutation(recipient.name)))
        msg.attach(attachment)
        messages.append(msg)
    return messages
