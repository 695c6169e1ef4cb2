"""The jobs of a campaign day, as plain functions of one :class:`Settings` object.

The Airflow tasks (``admission.adapter.tasks``), ``admission day`` (through them) and ``admission
bench`` call these; nothing here imports Airflow. Order of a day: :func:`ingest` (the snapshot),
:func:`check_stage` per stage, then :func:`compose_digests` + :func:`deliver`, :func:`build_report`,
:func:`collect_operators`. Everything after ``ingest`` reads the snapshot, never the data folder.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from admission.checks import operators as opmod
from admission.checks import sites as websites
from admission.checks.crawler import Crawler, SiteCheckSettings
from admission.checks.stages import evaluate_stage, summarize
from admission.inputs import data_docs, snapshot
from admission.inputs.files import Limits
from admission.inputs.parse_cache import ParseCache
from admission.inputs.reader import freeze_heap, thaw_heap
from admission.inputs.rules import normalize_text
from admission.layout import Layout
from admission.mail import intake, outbox
from admission.mail.forms import FormKeys, attachments_for, form_keys
from admission.mail.keys import digest_key, request_key
from admission.mail.outbox import delivered_request, enqueue, undelivered
from admission.mail.recipients import KINDS, Directory, plan_digests
from admission.mail.render import render_all, render_request
from admission.mail.terms import in_officials_terms
from admission.plan import Plan
from admission.registry import CHECKS, MAIL_RIGHTS, datasets_of, informing_stages
from admission.report import daily as rep
from admission.report import links
from admission.report.ranking import ranking
from admission.report.timeliness import timeliness
from admission.store import (
    answers_for_review,
    latest_site_checks,
    load_findings,
    load_history,
    load_results,
    previous_date,
    record_issued_forms,
    record_requested_changes,
    requested_changes,
    reviews,
    save_operator_snapshot,
    save_site_checks,
    save_stage,
    stage_statuses,
)
from admission.workdays import WorkCalendar

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# How long a sent message's large parts (the report's workbook) stay in the outbox: the messages themselves are
# kept as the record of what officials were sent; each day's workbook also stays in its report folder.
OUTBOX_PART_DAYS = 90


@dataclass(frozen=True)
class Settings:
    """Where a day reads and writes: what the Airflow Variables and Connections say (adapter.config)."""

    data_dir: Path | None  # only ingest reads it
    output_dir: Path
    store_url: str
    from_email: str = "admission@localhost"
    from_name: str = "Мониторинг приема в 1-й класс"
    limits: Limits = field(default_factory=Limits.from_env)
    form_key: str | None = None  # Variable admission_form_secret (a key or rotation JSON); None: the key file
    page_url: str | None = None  # Variable admission_page_url: where officials open the campaign page (links)

    def form_keys(self) -> FormKeys:
        """The forms' signing keys (admission.mail.forms.form_keys)."""
        return form_keys(self.layout.form_key, self.form_key)

    @property
    def layout(self) -> Layout:
        return Layout(self.output_dir)

    def parse_cache(self):
        """The shared cache of parsed files under the output folder (see admission.inputs.parse_cache), pruned."""

        cache = ParseCache(self.layout.parse_cache)
        cache.prune()
        return cache


def thaws_heap(fn: Callable) -> Callable:
    """A job that freezes the heap after loading its data gives the objects back to the GC when it ends."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            thaw_heap()

    return wrapper


def ingest(settings: Settings, plan: Plan, as_of: dt.date) -> dict:
    """Read the data folder once (unchanged files reused), run the row rules once, write the snapshot."""

    if settings.data_dir is None:
        raise ValueError("no data folder configured")
    cache = settings.parse_cache()
    snap = snapshot.take(settings.data_dir, settings.output_dir, plan.id, as_of, informing_stages(plan),
                         settings.limits, cache, intake=settings.layout.intake)
    summary = snap.summary() | {"parsed": cache.misses, "reused": cache.hits}
    log.info("snapshot of plan %s for %s: %s", plan.id, as_of, summary)
    for kind in ("added", "changed", "removed"):
        for path in snap.changes.get(kind, [])[:20]:
            log.info("file %s: %s", kind, path)
    return summary


def load_snapshot(settings: Settings, plan: Plan, as_of: dt.date, datasets: list[str] | None = None):
    return snapshot.load(settings.output_dir, plan.id, as_of, datasets)


@thaws_heap
def check_stage(settings: Settings, plan: Plan, stage_no: int, as_of: dt.date) -> dict:
    """One stage's status for every concerned organization, from the snapshot; stored; returns counts."""

    stage = plan.stage(stage_no)
    snap = load_snapshot(settings, plan, as_of, datasets_of(stage.check))
    freeze_heap()
    return _judge(settings, plan, stage, snap, as_of)


@thaws_heap
def check_stages(settings: Settings, plan: Plan, as_of: dt.date) -> dict:
    """Every stage of the plan on one load of the snapshot (the one-run day, ``run_day_<plan>``).

    A stage whose check raises is logged with its traceback and marked ``judged: False``; the other
    stages are still judged and stored, so the day's mail and report go out and name it.
    """

    needed = sorted({d for s in plan.stages for d in datasets_of(s.check)})
    snap = load_snapshot(settings, plan, as_of, needed)
    freeze_heap()
    out: dict[str, dict] = {}
    for stage in plan.ordered_stages:
        try:
            judged = _judge(settings, plan, stage, snap.restricted(datasets_of(stage.check)), as_of)
            out[str(stage.number)] = judged | {"judged": True}
        except Exception as exc:  # one stage's failure must not silence the others
            log.exception("plan %s stage %s as of %s: the check failed", plan.id, stage.number, as_of)
            out[str(stage.number)] = {"stage": stage.number, "judged": False, "error": type(exc).__name__}
    return {"plan_id": plan.id, "as_of": as_of.isoformat(), "stages": out}


def _judge(settings: Settings, plan: Plan, stage, snap, as_of: dt.date) -> dict:
    sites = None
    if CHECKS[stage.check].sites:
        checks = websites.recent(latest_site_checks(settings.store_url, plan.id, as_of), as_of,
                                 plan.site_check.max_age_days)
        sites = websites.organization_evidence(checks, snap.data.frames["organizations"]) if not checks.empty else None
    requests = request_history(settings, plan, as_of) if CHECKS[stage.check].requests else None
    depends = (stage_statuses(settings.store_url, plan.id, stage.depends_on, as_of)
               if CHECKS[stage.check].depends and stage.depends_on else None)
    reviewed = ((answers_for_review(settings.store_url, plan.id, as_of), reviews(settings.store_url, plan.id))
                if stage.review else None)
    outcome = evaluate_stage(plan, stage, snap.data, as_of, snap.validation, sites, requests, depends, reviewed)
    save_stage(settings.store_url, plan.id, stage.number, as_of, outcome.results, outcome.findings)
    counts = summarize(outcome.results)
    # Counts and file positions only: the log never carries names or e-mails.
    log.info("plan %s stage %s as of %s: %s", plan.id, stage.number, as_of, counts)
    for f in outcome.findings[:50]:
        log.info("data problem: %s, row %s, column %s", f.file, f.row, f.column)
    if len(outcome.findings) > 50:
        log.warning("... and %d more data problems (see the store)", len(outcome.findings) - 50)
    return {"plan_id": plan.id, "stage": stage.number, "as_of": as_of.isoformat(), **counts,
            "findings": len(outcome.findings)}


def request_history(settings: Settings, plan: Plan, as_of: dt.date) -> pd.DataFrame:
    """What the requests to РЦОКО delivered by ``as_of`` named: org_id, person, action, delivered_on (the day the
    outbox delivered the request that first named it)."""
    named = requested_changes(settings.store_url, plan.id)
    delivered: dict[str, dt.date] = {}
    for change in named["change_hash"].unique().tolist():
        found = delivered_request(settings.store_url, plan.id, request_key(plan.id, change, ""))
        if found and found["sent_on"] <= as_of:
            delivered[change] = found["sent_on"]
    named = named.assign(delivered_on=named["change_hash"].map(delivered))
    named = named[named["delivered_on"].notna()]
    return (named.sort_values("delivered_on").drop_duplicates(["org_id", "person", "action"])
            [["org_id", "person", "action", "delivered_on"]].reset_index(drop=True))


def check_websites(settings: Settings, plan: Plan, as_of: dt.date, deployment: dict | None = None) -> dict:
    """Stage 2's website check for the day (admission.checks.sites): every official site of the registry, earlier
    answers reused where they still stand; one stored row per site. ``deployment``: the Variable
    ``admission_site_check`` (``enabled``, ``ca_bundle``, timeouts; ``allow_hosts`` for tests and the demo)."""

    deployment = deployment or {}
    if not any(CHECKS[s.check].sites for s in plan.stages):
        return {"as_of": as_of.isoformat(), "skipped": "no stage of the plan reads websites"}
    if not plan.site_check.enabled or not deployment.get("enabled", True):
        where = "the plan's site_check.enabled" if not plan.site_check.enabled else "Variable admission_site_check"
        log.warning("the website check is switched off (%s): stage 2 counts informing rows only", where)
        return {"as_of": as_of.isoformat(), "skipped": f"switched off by {where}"}
    # The registry of the newest snapshot on or before the day: at night the day's own is not taken yet, and
    # that is expected (no warning).
    taken = [d for d, _ in settings.layout.snapshot_days(plan.id) if d <= as_of]
    try:
        orgs = load_snapshot(settings, plan, taken[-1] if taken else as_of, []).data.frames["organizations"]
    except snapshot.NoSnapshot:
        if settings.data_dir is None:
            raise
        # The campaign's first night: no snapshot yet, so this check takes the day's (the morning's ingest then
        # reads only the files changed since).
        log.info("no snapshot of plan %s yet: taking the one of %s for the website check", plan.id, as_of)
        ingest(settings, plan, as_of)
        orgs = load_snapshot(settings, plan, as_of, []).data.frames["organizations"]
    sites = websites.sites_of(plan, orgs)
    crawler = Crawler(SiteCheckSettings.for_plan(plan.site_check, deployment))
    previous = latest_site_checks(settings.store_url, plan.id, as_of)
    started = dt.datetime.now()
    rows = websites.check_sites(crawler, list(sites), previous, as_of, plan.site_check.recheck_days)
    save_site_checks(settings.store_url, plan.id, as_of, rows)
    found = sum(1 for r in rows if r["found"])
    reused = sum(1 for r in rows if r["found"] and not r["requests"])
    summary = {"as_of": as_of.isoformat(), "sites": len(rows), "found": found, "not_found": len(rows) - found,
               "reused": reused, "requests": crawler.requests,
               "seconds": round((dt.datetime.now() - started).total_seconds(), 1)}
    # Counts only: a site address is public, but the log stays free of the registry's contents.
    log.info("website check of plan %s for %s: %s", plan.id, as_of, summary)
    return summary


@thaws_heap
def compose_digests(settings: Settings, plan: Plan, as_of: dt.date, dry_run: bool) -> dict:
    """Decide who gets what today, render every digest and record it in the outbox."""

    if not WorkCalendar.for_plan(plan).is_working_day(as_of):
        log.info("%s is a day off: no mail", as_of)
        return {"as_of": as_of.isoformat(), "day_off": True, "digests": 0}
    results = load_results(settings.store_url, plan.id, as_of)
    if results.empty:
        log.warning("no stage results stored for plan %s on %s: run the stage DAGs first", plan.id, as_of)
        return {"as_of": as_of.isoformat(), "digests": 0}

    form_sets = sorted({d for s in plan.stages for d in CHECKS[s.check].form})
    data = load_snapshot(settings, plan, as_of, sorted({"operators", *form_sets})).data
    freeze_heap()
    digests = plan_digests(plan, as_of, results, data)
    in_officials_terms(digests, data.frames)  # «лист «Первые классы», строка 3», not the admin's file and row
    attach = attachments_for(plan, as_of, data.frames, settings.form_keys(), settings.from_email)
    keys = settings.form_keys()

    def page_link(digest):
        return links.link_for(plan, as_of, digest.org_ids, keys, settings.page_url)

    messages = render_all(digests, plan, settings.from_email, settings.from_name, attach, page_link)
    counts = enqueue(settings.store_url, plan.id, as_of, messages, dry_run=dry_run, supersedes=KINDS)
    if not dry_run:  # the forms mailed: a newer one supersedes an older one (admission.mail.intake)
        record_issued_forms(settings.store_url, plan.id, attach.issued)
    by_kind: dict[str, int] = {}
    for d in digests:
        by_kind[d.kind] = by_kind.get(d.kind, 0) + 1
    log.info("plan %s on %s: %d digests %s (%s)", plan.id, as_of, len(digests), by_kind, counts)
    return {"as_of": as_of.isoformat(), "digests": len(digests), **by_kind, **counts}


def deliver(settings: Settings, plan: Plan, as_of: dt.date, transport, kinds: tuple[str, ...],
            owner: str | None = None) -> dict:
    """Send what the outbox holds for the day through ``transport`` (SMTP or .eml files)."""

    return outbox.deliver(settings.store_url, plan.id, as_of, transport, kinds=kinds, owner=owner)


def build_report(settings: Settings, plan: Plan, as_of: dt.date, dry_run: bool, preview: str | None = None) -> dict:
    """Tables, chart, workbook and a copy of the newest Data Docs (built by the ingest); the mail goes to the outbox
    (kind `report`)."""

    if not WorkCalendar.for_plan(plan).is_working_day(as_of):
        log.info("%s is a day off: no report", as_of)
        return {"as_of": as_of.isoformat(), "day_off": True}
    url = settings.store_url
    today = load_results(url, plan.id, as_of)
    if today.empty:
        raise RuntimeError(f"no stage results stored for plan {plan.id} on {as_of}: run the stage DAGs first")
    prev = previous_date(url, plan.id, as_of)
    previous = load_results(url, plan.id, prev) if prev else today.iloc[0:0]
    # The registry and the extensions/exemptions: the report's figures come from the store.
    snap = load_snapshot(settings, plan, as_of, ["exemptions"])
    folder = settings.layout.report(plan.id, as_of)
    report = rep.build(plan, as_of, today, previous, prev, snap.data.frames["organizations"],
                       load_findings(url, plan.id, as_of), preview, undelivered(url, plan.id, as_of, since=prev),
                       files_changed=snap.changes)

    # Every message since the previous report: the report goes out before the day's first intake run, so the
    # messages of the previous report's day read after it are listed here (those read before it, again).
    report.intake = intake.day_rows(url, plan.id, as_of, since=prev or as_of)
    report.exemptions = rep.exemption_rows(plan, snap.data.frames.get("exemptions"),
                                           snap.data.frames["organizations"])
    report.approvals = rep.approval_queue(plan, today, snap.data.frames["organizations"].set_index("org_id")["name"]
                                          .to_dict())
    report.timely = timeliness(url, plan, as_of, today)
    report.ranking = ranking(url, plan, as_of, today, report.timely,
                             snap.data.frames["organizations"].set_index("org_id")["name"].to_dict())
    if report.unjudged:
        log.warning("stages %s have no results for %s (their check failed): the report says so", report.unjudged, as_of)
    png = rep.chart(plan, load_history(url, plan.id, as_of), as_of, folder / f"progress_{as_of.isoformat()}.png")
    xlsx = rep.workbook(report, today, folder / f"report_{plan.id}_{as_of.isoformat()}.xlsx")
    docs = data_docs.copy_to(settings.output_dir, plan.id, as_of, folder)
    recipients = Directory(snap.data).roiv
    # The Data Docs through the campaign page (behind its login), never a file:// path of the server.
    docs_date, link = (docs[0], _docs_url(settings.page_url, plan.id, as_of, folder, docs[1])) if docs else (None, None)
    rendered = rep.render_emails(report, recipients, settings.from_email, settings.from_name, png, xlsx, link,
                                 docs_date)
    messages = [(digest_key(plan.id, as_of, "report", person.email), "report", msg)
                for person, msg in zip(recipients, rendered, strict=True)]
    counts = enqueue(url, plan.id, as_of, messages, dry_run=dry_run, supersedes=("report",))
    pruned = outbox.prune_parts(url, as_of, OUTBOX_PART_DAYS)  # the daily report's run keeps the outbox small
    if pruned["parts"]:
        log.info("outbox: %d large parts of messages older than %d days pruned (%d bytes)", pruned["parts"],
                 OUTBOX_PART_DAYS, pruned["bytes"])
    log.info("report for %s on %s: %s, %d recipients", plan.id, as_of, folder, len(recipients))
    return {"as_of": as_of.isoformat(), "folder": str(folder), "recipients": len(recipients), **counts}


def _docs_url(page_url: str | None, plan_id: str, as_of: dt.date, folder, index) -> str | None:
    """The report's copy of the Data Docs as the campaign page serves it (admission.adapter.web ``/docs/``); None
    without the page's address (Variable ``admission_page_url``)."""
    if not page_url:
        return None
    rel = index.relative_to(folder / data_docs.DATA_DOCS).as_posix()
    return f"{page_url.rstrip('/')}/admission/docs/{plan_id}/{as_of.isoformat()}/{rel}"


def collect_operators(settings: Settings, plan: Plan, as_of: dt.date, dry_run: bool) -> dict:
    """Consolidate and check the operator lists, keep the day's list, prepare the request to РЦОКО.

    A set of changes counts as requested once its mail was delivered (the outbox says so), not when it
    was prepared: a request whose sending failed is sent by the next run of any date, and a different
    set of changes replaces an unsent older one (``enqueue(..., supersedes=("request",))``).
    """

    url = settings.store_url
    snap = load_snapshot(settings, plan, as_of, ["operators", "accounts"])
    data = snap.data
    ops = opmod.consolidated(data)
    findings = [f for f in data.findings if f.dataset in ("operators", "accounts")] + opmod.validate(data,
                                                                                                   snap.validation)
    save_operator_snapshot(url, plan.id, as_of, ops)
    folder = settings.layout.operators(plan.id, as_of)
    opmod.consolidated_workbook(ops, findings, folder / f"operators_{as_of.isoformat()}.xlsx")
    diff = opmod.diff_accounts(data, findings)
    changes = opmod.changes_of(diff)
    summary = {"as_of": as_of.isoformat(), "operators": len(ops), "problems": len(findings),
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
    records = changes.astype(object).where(changes.notna(), None).to_dict("records")
    messages = [
        (request_key(plan.id, digest, p.email), "request",
         render_request(plan, as_of, p, records, list(changes["org_id"]), xlsx, digest, settings.from_email,
                        settings.from_name))
        for p in Directory(data).rcoko
    ]
    counts = enqueue(url, plan.id, as_of, messages, dry_run=dry_run, supersedes=("request",))
    if not dry_run:  # what it names: an account becomes РЦОКО's item once this request is delivered (and a while)
        names = normalize_text(changes["full_name"]).fillna("").tolist()
        record_requested_changes(url, plan.id, digest, list(zip(changes["org_id"].tolist(), names,
                                                                changes["action"].tolist(), strict=True)), as_of)
    log.info("request to РЦОКО: %d changes, %d recipients (%s)", len(changes), len(messages), counts)
    return summary | {"request": str(xlsx), "changes": len(changes)}


def intake_frames(settings: Settings, plan: Plan, as_of: dt.date) -> dict:
    """The registry, the operator lists and every dataset a form may change, from the newest snapshot."""
    return load_snapshot(settings, plan, as_of, sorted({"operators", *MAIL_RIGHTS})).data.frames


def intake_context(settings: Settings, plan: Plan, as_of: dt.date):
    """What reading the mailbox needs: the snapshot's frames (who is who, what each organization has now), the
    forms' keys."""

    return intake.Context(plan, as_of, settings.store_url, settings.layout.intake, settings.form_keys(),
                          intake_frames(settings, plan, as_of), settings.limits)


def read_mailbox(settings: Settings, plan: Plan, as_of: dt.date, client) -> dict:
    """Claim, read and check the new messages of the mailbox (``client``: an imaplib client on it); write what is
    accepted into the intake folder (admission.mail.intake)."""

    return intake.read_mailbox(client, intake_context(settings, plan, as_of))


def check_submissions(settings: Settings, plan: Plan, as_of: dt.date, written: int) -> dict:
    """After submissions were written: the day's snapshot and every stage again, so receipts tell the status."""
    if not written:
        return {"as_of": as_of.isoformat(), "refreshed": False}
    ingest(settings, plan, as_of)
    return check_stages(settings, plan, as_of) | {"refreshed": True}


def compose_receipts(settings: Settings, plan: Plan, as_of: dt.date, dry_run: bool = False) -> dict:
    """The receipts of the messages read (kind ``receipt``), into the outbox once each."""

    results = load_results(settings.store_url, plan.id, as_of)
    frames = intake_frames(settings, plan, as_of)
    counts = intake.compose_receipts(plan, as_of, settings.store_url, results, frames, settings.form_keys(),
                                     settings.from_email, settings.from_name, dry_run)
    # The campaign page's reviews of answers go out the same way, on the same 15-minute cycle.
    counts |= intake.compose_reviews(plan, as_of, settings.store_url, results, frames, settings.form_keys(),
                                     settings.from_email, settings.from_name, dry_run)
    log.info("receipts for plan %s on %s: %s", plan.id, as_of, counts)
    return {"as_of": as_of.isoformat(), **counts}


def file_messages(settings: Settings, plan: Plan, client) -> dict:
    """Move the answered messages to «Обработано» / «Отклонено»."""

    return intake.file_messages(client, settings.store_url, plan.id)
