"""Task bodies: the domain's jobs (admission.jobs) with the settings Airflow's Variables and Connections give.

Thin on purpose: what a task does is in ``admission.jobs``, which ``admission bench`` calls too. Heavy
imports happen at run time.
"""

from __future__ import annotations

import datetime as dt
import logging

from admission.adapter import config
from admission.plan import Plan

log = logging.getLogger(__name__)


def ingest_data(plan: Plan, as_of_iso: str) -> dict:
    """The day's snapshot of the data folder (admission.inputs.snapshot): read once, row rules once."""
    from admission import jobs

    return jobs.ingest(config.settings(need_data=True), plan, dt.date.fromisoformat(as_of_iso))


def check_websites(plan: Plan, as_of_iso: str) -> dict:
    """Stage 2's website check of the day (admission.checks.sites), before the stages are judged."""
    from admission import jobs

    return jobs.check_websites(config.settings(), plan, dt.date.fromisoformat(as_of_iso), config.site_check())


def check_stage(plan: Plan, stage_no: int, as_of_iso: str) -> dict:
    from admission import jobs

    return jobs.check_stage(config.settings(), plan, stage_no, dt.date.fromisoformat(as_of_iso))


def check_stages(plan: Plan, as_of_iso: str) -> dict:
    from admission import jobs

    return jobs.check_stages(config.settings(), plan, dt.date.fromisoformat(as_of_iso))


def compose_digests(plan: Plan, as_of_iso: str, dry_run: bool) -> dict:
    from admission import jobs

    return jobs.compose_digests(config.settings(), plan, dt.date.fromisoformat(as_of_iso), dry_run)


def build_report(plan: Plan, as_of_iso: str, dry_run: bool) -> dict:
    from admission import jobs

    return jobs.build_report(config.settings(), plan, dt.date.fromisoformat(as_of_iso), dry_run,
                             config.preview_reason(plan))


def collect_operators(plan: Plan, as_of_iso: str, dry_run: bool) -> dict:
    from admission import jobs

    return jobs.collect_operators(config.settings(), plan, dt.date.fromisoformat(as_of_iso), dry_run)


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
    from admission import jobs
    from admission.mail.outbox import EmlTransport, SmtpTransport, TransientError

    if dry_run:
        log.info("dry run: nothing is sent")
        return {"as_of": as_of_iso, "dry_run": True}
    conn, smtp = config.smtp_or_defaults()
    if conn is None:
        transport = EmlTransport(config.layout().mail)
        where = str(transport.folder)
    else:
        transport = SmtpTransport(smtp)
        where = f"smtp {conn.host}:{conn.port}"
    try:
        counts = jobs.deliver(config.settings(sender=smtp), plan, dt.date.fromisoformat(as_of_iso), transport, kinds,
                              _task_owner())
    except TransientError as exc:
        raise RuntimeError(f"delivery interrupted, the rest stays in the outbox for the retry: {exc}") from exc
    log.info("plan %s on %s via %s: %s", plan.id, as_of_iso, where, counts)
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} messages failed transiently; the task retry will send them")
    return {"as_of": as_of_iso, "via": where, **counts}


def _mailbox(plan: Plan, as_of_iso: str, work) -> dict:
    """``work(settings, day, client)`` on the mailbox of ``admission_imap``; skipped when it is not configured."""
    from airflow.sdk.exceptions import AirflowSkipException

    hook = config.imap_hook()
    if hook is None:
        raise AirflowSkipException("подключение admission_imap не задано: почтовый ящик для ответов не читается "
                                   "(см. README, «Mailbox intake»)")
    with hook as connected:
        return work(config.settings(), dt.date.fromisoformat(as_of_iso), connected.mail_client)


def read_mailbox(plan: Plan, as_of_iso: str) -> dict:
    """New messages of the mailbox: claimed, read, checked; accepted rows written to the intake folder."""
    from admission import jobs

    return _mailbox(plan, as_of_iso, lambda s, day, client: jobs.read_mailbox(s, plan, day, client))


def check_submissions(plan: Plan, as_of_iso: str, written: int) -> dict:
    from admission import jobs

    return jobs.check_submissions(config.settings(need_data=bool(written)), plan, dt.date.fromisoformat(as_of_iso),
                                  written)


def compose_receipts(plan: Plan, as_of_iso: str, dry_run: bool) -> dict:
    from admission import jobs

    return jobs.compose_receipts(config.settings(), plan, dt.date.fromisoformat(as_of_iso), dry_run)


def file_messages(plan: Plan, as_of_iso: str) -> dict:
    from admission import jobs

    return _mailbox(plan, as_of_iso, lambda s, _day, client: jobs.file_messages(s, plan, client))
