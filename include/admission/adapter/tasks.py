"""Task bodies: domain calls wrapped with Airflow configuration. Heavy imports happen here, at run time."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable

from admission.plan import Plan

from . import config

log = logging.getLogger(__name__)


def _thaws_heap(fn: Callable) -> Callable:
    """A task body that freezes the heap after reading its data gives the objects back to the GC when it ends."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from admission.reader import thaw_heap

        try:
            return fn(*args, **kwargs)
        finally:
            thaw_heap()

    return wrapper


@_thaws_heap
def check_stage(plan: Plan, stage_no: int, as_of_iso: str) -> dict:
    """Read the data folder, run the GX and pandas rules, store the stage results; return counts."""
    from admission.reader import freeze_heap, read_data_folder
    from admission.stages import CHECK_DATASETS, evaluate_stage, summarize
    from admission.store import save_stage

    stage = plan.stage(stage_no)
    as_of = dt.date.fromisoformat(as_of_iso)
    data = read_data_folder(config.data_dir(), CHECK_DATASETS[stage.check], cache=config.parse_cache())
    freeze_heap()
    outcome = evaluate_stage(plan, stage, data, as_of)
    save_stage(config.store_url(), plan.id, stage.number, as_of, outcome.results, outcome.findings)
    counts = summarize(outcome.results)
    # Counts and file positions only: the log never carries names or e-mails.
    log.info("plan %s stage %s as of %s: %s", plan.id, stage.number, as_of, counts)
    for f in outcome.findings[:50]:
        log.info("data problem: %s, row %s, column %s", f.file, f.row, f.column)
    if len(outcome.findings) > 50:
        log.warning("... and %d more data problems (see the store)", len(outcome.findings) - 50)
    return {"plan_id": plan.id, "stage": stage.number, "as_of": as_of_iso, **counts,
            "findings": len(outcome.findings)}


@_thaws_heap
def compose_digests(plan: Plan, as_of_iso: str, dry_run: bool) -> dict:
    """Decide who gets what today, render every digest and record it in the outbox."""
    from admission.mail import render_all
    from admission.notify import KINDS, plan_digests
    from admission.outbox import enqueue
    from admission.reader import freeze_heap, read_data_folder
    from admission.store import load_results
    from admission.workdays import WorkCalendar

    as_of = dt.date.fromisoformat(as_of_iso)
    if not WorkCalendar.for_plan(plan).is_working_day(as_of):
        log.info("%s is a day off: no mail", as_of)
        return {"as_of": as_of_iso, "day_off": True, "digests": 0}
    url = config.store_url()
    results = load_results(url, plan.id, as_of)
    if results.empty:
        log.warning("no stage results stored for plan %s on %s: run the stage DAGs first", plan.id, as_of)
        return {"as_of": as_of_iso, "digests": 0}
    data = read_data_folder(config.data_dir(), ["operators"], cache=config.parse_cache())
    freeze_heap()
    digests = plan_digests(plan, as_of, results, data)
    _, sender = config.smtp_or_defaults()
    messages = render_all(digests, plan, sender.from_email, sender.from_name)
    counts = enqueue(url, plan.id, as_of, messages, dry_run=dry_run, supersedes=KINDS)
    by_kind: dict[str, int] = {}
    for d in digests:
        by_kind[d.kind] = by_kind.get(d.kind, 0) + 1
    log.info("plan %s on %s: %d digests %s (%s)", plan.id, as_of, len(digests), by_kind, counts)
    return {"as_of": as_of_iso, "digests": len(digests), **by_kind, **counts}


def _task_owner() -> str | None:
    """The sending task instance across its tries: its retry resumes what a killed try had claimed."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # not inside a task (a plain call)
        return None
    return f"{ti.dag_id}.{ti.task_id}.{ti.run_id}"


def send_digests(plan: Plan, as_of_iso: str, dry_run: bool,
                 kinds: tuple[str, ...] = ("reminder", "overdue", "escalation")) -> dict:
    """Deliver what the outbox holds for the day: SMTP when configured, else .eml files."""
    from admission.outbox import EmlTransport, SmtpTransport, TransientError, deliver

    as_of = dt.date.fromisoformat(as_of_iso)
    if dry_run:
        log.info("dry run: nothing is sent")
        return {"as_of": as_of_iso, "dry_run": True}
    conn, settings = config.smtp_or_defaults()
    if conn is None:
        transport = EmlTransport(config.output_dir() / "mail")
        where = str(transport.folder)
    else:
        transport = SmtpTransport(settings)
        where = f"smtp {conn.host}:{conn.port}"
    try:
        counts = deliver(config.store_url(), plan.id, as_of, transport, kinds=kinds, owner=_task_owner())
    except TransientError as exc:
        raise RuntimeError(f"delivery interrupted, the rest stays in the outbox for the retry: {exc}") from exc
    log.info("plan %s on %s via %s: %s", plan.id, as_of, where, counts)
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} messages failed transiently; the task retry will send them")
    return {"as_of": as_of_iso, "via": where, **counts}


def build_report(plan: Plan, as_of_iso: str, dry_run: bool) -> dict:
    """Tables, chart, workbook and Data Docs for the day; the mail goes to the outbox (kind `report`)."""
    from admission import report as rep
    from admission.adapter.config import preview_reason
    from admission.notify import Directory, digest_key
    from admission.outbox import enqueue, undelivered
    from admission.reader import read_data_folder
    from admission.store import load_findings, load_history, load_results, previous_date
    from admission.workdays import WorkCalendar

    as_of = dt.date.fromisoformat(as_of_iso)
    if not WorkCalendar.for_plan(plan).is_working_day(as_of):
        log.info("%s is a day off: no report", as_of)
        return {"as_of": as_of_iso, "day_off": True}
    url = config.store_url()
    today = load_results(url, plan.id, as_of)
    if today.empty:
        raise RuntimeError(f"no stage results stored for plan {plan.id} on {as_of}: run the stage DAGs first")
    prev = previous_date(url, plan.id, as_of)
    previous = load_results(url, plan.id, prev) if prev else today.iloc[0:0]
    data = read_data_folder(config.data_dir(), cache=config.parse_cache())  # every dataset: the Data Docs validate them all
    folder = config.output_dir() / "reports" / plan.id / as_of.isoformat()
    preview = preview_reason(plan)
    report = rep.build(plan, as_of, today, previous, prev, data.frames["organizations"],
                       load_findings(url, plan.id, as_of), preview, undelivered(url, plan.id, as_of, since=prev))
    if report.unjudged:
        log.warning("stages %s have no results for %s (their check failed): the report says so", report.unjudged, as_of)
    png = rep.chart(plan, load_history(url, plan.id, as_of), as_of, folder / f"progress_{as_of.isoformat()}.png")
    xlsx = rep.workbook(report, today, folder / f"report_{plan.id}_{as_of.isoformat()}.xlsx")
    docs = None
    try:
        docs = rep.data_docs(data.frames, folder / "data_docs")
    except Exception as exc:  # the report must not be lost for the sake of the docs
        log.warning("GX Data Docs not built: %s", exc)
    _, sender = config.smtp_or_defaults()
    recipients = Directory(data).roiv
    link = docs.as_uri() if docs else None
    messages = []
    for person in recipients:
        msg = rep.render_email(report, person, sender.from_email, sender.from_name, png, xlsx, link)
        messages.append((digest_key(plan.id, as_of, "report", person.email), "report", msg))
    counts = enqueue(url, plan.id, as_of, messages, dry_run=dry_run, supersedes=("report",))
    log.info("report for %s on %s: %s, %d recipients", plan.id, as_of, folder, len(recipients))
    return {"as_of": as_of_iso, "folder": str(folder), "recipients": len(recipients), **counts}


def collect_operators(plan: Plan, as_of_iso: str, dry_run: bool) -> dict:
    """Consolidate and check the operator lists, keep the day's snapshot, prepare the request to РЦОКО.

    A set of changes counts as requested once its mail was delivered (the outbox says so), not when it
    was prepared: a request whose sending failed is sent by the next run of any date, and a different
    set of changes replaces an unsent older one (``enqueue(..., supersedes=("request",))``).
    """
    from admission import operators as opmod
    from admission.mail import render_request, request_key
    from admission.notify import Directory
    from admission.outbox import delivered_request, enqueue
    from admission.reader import read_data_folder
    from admission.store import save_operator_snapshot

    as_of = dt.date.fromisoformat(as_of_iso)
    url = config.store_url()
    data = read_data_folder(config.data_dir(), ["operators", "accounts"], cache=config.parse_cache())
    ops = opmod.consolidated(data)
    findings = [f for f in data.findings if f.dataset in ("operators", "accounts")] + opmod.validate(data)
    save_operator_snapshot(url, plan.id, as_of, ops)
    folder = config.output_dir() / "operators" / plan.id / as_of.isoformat()
    opmod.consolidated_workbook(ops, findings, folder / f"operators_{as_of.isoformat()}.xlsx")
    diff = opmod.diff_accounts(data, findings)
    changes = opmod.changes_of(diff)
    summary = {"as_of": as_of_iso, "operators": len(ops), "problems": len(findings),
               **{k: int(v) for k, v in diff["action"].value_counts().items()}, "folder": str(folder)}
    if changes.empty:
        if not dry_run:  # an unsent request for changes nobody needs any more is not sent late
            enqueue(url, plan.id, as_of, [], supersedes=("request",))
        log.info("operator lists: no changes to request (%s)", summary)
        return summary | {"request": None}
    digest = opmod.change_hash(changes)
    known = delivered_request(url, plan.id, request_key(plan.id, digest, ""))
    if known:
        log.info("the same set of changes was delivered to РЦОКО on %s: no new request", known["sent_on"])
        return summary | {"request": known["path"], "already_requested_on": str(known["as_of"])}
    xlsx = opmod.request_workbook(changes, data, as_of, folder / f"request_{as_of.isoformat()}.xlsx")
    _, sender = config.smtp_or_defaults()
    records = changes.astype(object).where(changes.notna(), None).to_dict("records")
    messages = [
        (request_key(plan.id, digest, p.email), "request",
         render_request(plan, as_of, p, records, list(changes["org_id"]), xlsx, digest, sender.from_email,
                        sender.from_name))
        for p in Directory(data).rcoko
    ]
    counts = enqueue(url, plan.id, as_of, messages, dry_run=dry_run, supersedes=("request",))
    log.info("request to РЦОКО: %d changes, %d recipients (%s)", len(changes), len(messages), counts)
    return summary | {"request": str(xlsx), "changes": len(changes)}
