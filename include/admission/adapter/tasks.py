"""Task bodies: the domain's jobs (admission.jobs) with the settings Airflow's Variables and Connections give.

Thin on purpose: what a task does is in ``admission.jobs``, which ``admission bench`` calls too. Heavy
imports happen at run time.
"""

from __future__ import annotations

import datetime as dt
import logging

from admission.adapter import config
from admission.plan import Plan
from admission.vocabulary import DIGEST_KINDS

log = logging.getLogger(__name__)


def judged_date(day: dict) -> dt.date:
    """The day a run judges, from ``resolve_as_of``'s XCom (ISO text, as JSON carries it): a date from here in."""
    return dt.date.fromisoformat(day["as_of"])


def ingest_data(plan: Plan, as_of: dt.date) -> dict:
    """The day's snapshot of the data folder (admission.inputs.snapshot): read once, row rules once."""
    from admission import jobs

    return jobs.ingest(config.settings(need_data=True), plan, as_of)


def check_websites(plan: Plan, as_of: dt.date) -> dict:
    """Stage 2's website check (admission.checks.sites), in its own DAG: the stages take its newest finished result.
    The data folder is configured only for the campaign's first night, when there is no snapshot to read yet."""
    from admission import jobs

    return jobs.check_websites(config.settings(need_data=True), plan, as_of, config.site_check())


def check_stage(plan: Plan, stage_no: int, as_of: dt.date) -> dict:
    from admission import jobs

    return jobs.check_stage(config.settings(), plan, stage_no, as_of)


def check_stages(plan: Plan, as_of: dt.date) -> dict:
    from admission import jobs

    return jobs.check_stages(config.settings(), plan, as_of)


def compose_digests(plan: Plan, as_of: dt.date, dry_run: bool) -> dict:
    from admission import jobs

    return jobs.compose_digests(config.settings(), plan, as_of, dry_run)


def build_report(plan: Plan, as_of: dt.date, dry_run: bool) -> dict:
    from admission import jobs

    return jobs.build_report(config.settings(), plan, as_of, dry_run,
                             config.preview_reason(plan))


def collect_operators(plan: Plan, as_of: dt.date, dry_run: bool) -> dict:
    from admission import jobs

    return jobs.collect_operators(config.settings(), plan, as_of, dry_run)


def _task_owner() -> str | None:
    """The sending task instance across its tries: its retry resumes what a killed try had claimed."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # not inside a task (a plain call)
        return None
    return f"{ti.dag_id}.{ti.task_id}.{ti.run_id}"


def send_digests(plan: Plan, as_of: dt.date, dry_run: bool,
                 kinds: tuple[str, ...] = DIGEST_KINDS) -> dict:
    """Deliver what the outbox holds for the day: SMTP when configured, else .eml files."""
    from admission import jobs
    from admission.mail.outbox import EmlTransport, SmtpTransport, TransientError

    if dry_run:
        log.info("dry run: nothing is sent")
        return {"as_of": as_of.isoformat(), "dry_run": True}
    conn, smtp = config.smtp_or_defaults()
    if conn is None:
        transport = EmlTransport(config.layout())
        where = str(transport.folder)
    else:
        transport = SmtpTransport(smtp)
        where = f"smtp {conn.host}:{conn.port}"
    try:
        counts = jobs.deliver(config.settings(sender=smtp), plan, as_of, transport, kinds,
                              _task_owner())
    except TransientError as exc:
        raise RuntimeError(f"delivery interrupted, the rest stays in the outbox for the retry: {exc}") from exc
    log.info("plan %s on %s via %s: %s", plan.id, as_of, where, counts)
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} messages failed transiently; the task retry will send them")
    return {"as_of": as_of.isoformat(), "via": where, **counts}


def _mailbox(plan: Plan, as_of: dt.date, work) -> dict:
    """``work(settings, day, client)`` on the mailbox of ``admission_imap``; skipped when it is not configured."""
    from airflow.sdk.exceptions import AirflowSkipException

    with config.imap_client() as client:
        if client is None:
            raise AirflowSkipException("подключение admission_imap не задано: почтовый ящик для ответов не читается "
                                       "(см. README, «Forms and the mailbox intake»)")
        return work(config.settings(), as_of, client)


def read_mailbox(plan: Plan, as_of: dt.date) -> dict:
    """New messages of the mailbox: claimed, read, checked; accepted rows written to the intake folder."""
    from admission import jobs

    return _mailbox(plan, as_of, lambda s, day, client: jobs.read_mailbox(s, plan, day, client))


def check_submissions(plan: Plan, as_of: dt.date, written: int) -> dict:
    from admission import jobs

    return jobs.check_submissions(config.settings(need_data=bool(written)), plan, as_of,
                                  written)


def compose_receipts(plan: Plan, as_of: dt.date, dry_run: bool) -> dict:
    from admission import jobs

    return jobs.compose_receipts(config.settings(), plan, as_of, dry_run)


def file_messages(plan: Plan, as_of: dt.date) -> dict:
    from admission import jobs

    return _mailbox(plan, as_of, lambda s, _day, client: jobs.file_messages(s, plan, client))
