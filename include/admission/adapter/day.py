"""`make day DATE=...`: run a campaign day through Airflow, in one process.

The ``run_day_<plan>`` DAG of every plan whose campaign covers the date
runs with ``dag.test()`` (real task instances, real XCom, the Airflow
metadata DB): the snapshot, every stage, mail, report and operator lists in
one DAG run; then a per-stage summary is printed from the project's store.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path

from admission.report.console import TABLE_HEADER

REPO = Path(__file__).resolve().parents[3]


def _dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or str(REPO / "dags")
    bag = DagBag(dag_folder=folder)
    for path, err in bag.import_errors.items():  # a broken plan: the valid ones still run
        print(f"DAG import error in {path}:\n{err}", file=sys.stderr)
    return bag


def day_runs(day: dt.date) -> list[tuple[object, object]]:
    """(plan, dag) pairs to run for the date, for every plan covering it: its website check
    (``check_websites_<plan>``, within its own time budget), then ``run_day_<plan>``. Scheduled, the check runs
    at night and the day never waits for it; by hand, one command does what the night and the morning do."""
    from admission.adapter.factory import run_day_dag_id, site_check_dag_id
    from admission.plan import load_valid_plans

    bag = _dag_bag()
    runs = []
    for plan in load_valid_plans()[0]:
        if plan.covers(day):
            runs += [(plan, d) for d in (bag.get_dag(site_check_dag_id(plan)), bag.get_dag(run_day_dag_id(plan)))
                     if d is not None]
    return runs


def print_mail_summary(day: dt.date, plan, url: str) -> None:
    from admission.adapter.config import get_connection, layout
    from admission.labels import MAIL_KINDS_RU, MAIL_STATUS_RU
    from admission.mail.outbox import outbox_counts

    counts = outbox_counts(url, plan.id, day)
    if not counts:
        print("Писем на этот день нет (выходной день или нечего сообщать).")
        return
    print("Письма за день:")
    for kind, by_status in sorted(counts.items()):
        detail = ", ".join(f"{MAIL_STATUS_RU.get(status, status)} {n}" for status, n in sorted(by_status.items()))
        print(f"  {MAIL_KINDS_RU.get(kind, kind)} ({kind}): {sum(by_status.values())} — {detail}")
    forms = _with_forms(url, plan.id, day)
    if forms:
        print(f"  из них с формой организации во вложении (forma_<код>_<дата>.xlsx, ответ — в почтовый ящик "
              f"admission_imap): {forms}")
    if get_connection("admission_smtp") is None:
        print(f"  файлы .eml: {layout().mail_of(plan.id, day)}")
    reports = layout().report(plan.id, day)
    if reports.is_dir():
        print(f"Отчет для министерства (график, Excel, Data Docs): {reports}")


def _with_forms(url: str, plan_id: str, day: dt.date) -> int:
    """Reminders and overdue notices of the day that carry an organization's form (admission.mail.forms)."""
    from sqlalchemy import func, select

    from admission.store import engine_for, outbox

    query = select(func.count()).where(outbox.c.plan_id == plan_id, outbox.c.as_of == day,
                                       outbox.c.kind.in_(["reminder", "overdue"]),
                                       outbox.c.message.contains('attachment; filename="forma_'))
    with engine_for(url).connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def print_snapshot_summary(day: dt.date, plan) -> None:
    from admission.adapter.config import output_dir
    from admission.inputs import snapshot
    from admission.labels import FILE_CHANGE_RU

    try:
        snap = snapshot.load(output_dir(), plan.id, day, datasets=[])
    except snapshot.NoSnapshot as exc:
        print(f"Снимок данных: {exc}")
        return
    changes = ", ".join(f"{label} {len(snap.changes.get(kind, []))}" for kind, label in FILE_CHANGE_RU.items())
    print(f"Снимок данных на {snap.as_of.isoformat()}: файлов {len(snap.files)}; с прошлого дня: {changes}")


def print_site_summary(day: dt.date, plan, url: str) -> None:
    """The day's website check (stage 2) in two lines: how many sites, where the information was found."""
    from admission.store import load_site_checks

    checks = load_site_checks(url, plan.id, day)
    if checks.empty:
        print("Проверка сайтов (этап 2): не выполнялась (выключена или сайтов в реестре нет)")
        return
    found = int(checks["found"].sum())
    print(f"Проверка сайтов (этап 2): сайтов {len(checks)}, информация найдена на {found}, не найдена на "
          f"{len(checks) - found}; запросов {int(checks['requests'].sum())}")
    for row in checks[~checks["found"].astype(bool)].head(3).itertuples(index=False):
        print(f"  {row.reason}")


SHOWN_PROBLEMS = 30


def print_summary(day: dt.date, plans: list) -> None:
    from admission.adapter.config import preview_reason, store_url
    from admission.store import load_findings, load_results

    url = store_url()
    for plan in plans:
        results = load_results(url, plan.id, day)
        print(f"\nКампания {plan.id}, состояние на {day.isoformat()}:")
        print(TABLE_HEADER)
        if preview_reason(plan):
            print(f"ВНИМАНИЕ: {preview_reason(plan)}.")
        for stage in plan.ordered_stages:
            rows = results[results["stage"] == stage.number]
            counts = rows["status"].value_counts()
            deadline = stage.deadline.isoformat() if stage.deadline else "весь период"
            if rows.empty:
                print(f"{stage.number:>4}  {deadline:10}  нет результатов: проверка не выполнена (см. журнал DAG) или "
                      f"этап не касается ни одной организации реестра  {stage.title}")
                continue
            print(f"{stage.number:>4}  {deadline:10}  {counts.get('complete', 0):>9}  {counts.get('lagging', 0):>7}  "
                  f"{counts.get('overdue', 0):>10}  {stage.title}")
        print_snapshot_summary(day, plan)
        print_site_summary(day, plan, url)
        problems = load_findings(url, plan.id, day)
        if len(problems):
            print(f"Проблемы данных: {len(problems)} в {problems['file'].nunique()} файлах")
            ordered = problems.assign(_r=problems["row"].fillna(0)).sort_values(["file", "_r"], kind="stable")
            for p in ordered.head(SHOWN_PROBLEMS).itertuples(index=False):
                where = p.file + (f", строка {int(p.row)}" if p.row == p.row and p.row is not None else "") + (
                    f", «{p.column}»" if isinstance(p.column, str) and p.column else "")
                print(f"  {where}: {p.message}")
            if len(problems) > SHOWN_PROBLEMS:
                print(f"  ... и еще {len(problems) - SHOWN_PROBLEMS} (все — в отчете, лист «Проблемы данных»)")
        print_mail_summary(day, plan, url)


def run_day(date_text: str, dry_run: bool = False, summary: bool = True) -> int:
    day = dt.date.fromisoformat(date_text)
    logging.getLogger("airflow").setLevel(logging.WARNING)
    runs = day_runs(day)
    if not runs:
        print(f"no plan's campaign covers {day}; nothing to run")
        return 0
    from admission.tools.demo_sites import serving_from_env

    failed: list[str] = []
    with serving_from_env():  # the demo region's websites, when the Makefile asks for them
        failed = _run_all(runs, day, dry_run)
    if summary:
        print_summary(day, sorted({p.id: p for p, _ in runs}.values(), key=lambda p: p.id))
    if failed:
        print("\nFAILED DAG runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def _run_all(runs: list, day: dt.date, dry_run: bool) -> list[str]:
    failed: list[str] = []
    for _plan, dag in runs:
        # The run happens now and judges `day` (as_of): a logical date years back made the UI show the run as
        # lasting years («2510d 5h»).
        logical = dt.datetime.now(dt.UTC)
        print(f"running {dag.dag_id} for {day} ...", flush=True)
        dag_run = dag.test(logical_date=logical, run_conf={"as_of": day.isoformat(), "dry_run": dry_run})
        state = str(getattr(dag_run, "state", "unknown"))
        if "success" not in state:
            failed.append(f"{dag.dag_id}: {state}")
    return failed


def run_intake(date_text: str | None, dry_run: bool = False) -> int:
    """`make intake`: the ``intake_<plan>`` DAG of every plan covering the date (today in the plan's time zone by
    default) through Airflow, once — what the schedule does every 15 minutes of working hours — then what became
    of the messages."""
    from admission.adapter.config import get_connection, store_url
    from admission.adapter.factory import intake_dag_id
    from admission.mail.intake import day_rows, described
    from admission.plan import load_valid_plans

    logging.getLogger("airflow").setLevel(logging.WARNING)
    plans = load_valid_plans()[0]
    if get_connection("admission_imap") is None:
        print("Подключение admission_imap не задано: почтовый ящик не читается. Как его задать — README, "
              "«Forms and the mailbox intake».")
        return 2
    bag = _dag_bag()
    failed = []
    for plan in plans:
        day = dt.date.fromisoformat(date_text) if date_text else dt.datetime.now(plan.tz).date()
        if not plan.covers(day) or plan.status == "example":
            continue
        dag = bag.get_dag(intake_dag_id(plan))
        print(f"running {dag.dag_id} for {day} ...", flush=True)
        run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": day.isoformat(), "dry_run": dry_run})
        if "success" not in str(getattr(run, "state", "")):
            failed.append(dag.dag_id)
        rows = described(day_rows(store_url(), plan.id, day), plan)
        print(f"\nКампания {plan.id}: писем прочитано за {day.isoformat()} — {len(rows)}")
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["outcome_ru"]] = counts.get(r["outcome_ru"], 0) + 1
        for label, n in sorted(counts.items()):
            print(f"  {label}: {n}")
        if rows:
            print("  подробно (от кого, что принято и почему не принято) — на странице кампании и в отчете, "
                  "лист «Почта»")
    if failed:
        print("\nFAILED DAG runs: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0
