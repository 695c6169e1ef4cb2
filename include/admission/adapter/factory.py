"""One small factory: every plan file becomes its DAGs (the snapshot, one per stage, the follow-ups, the day).

Parse-time cost is the YAML load and the DAG objects; no Variable or
Connection is read and neither pandas nor Great Expectations is imported
here (the task bodies import them when they run).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, Param, dag, get_current_context, task
from airflow.timetables.events import EventsTimetable

from admission.adapter import tasks
from admission.labels import ROLE_RU
from admission.plan import Plan, Stage, load_valid_plans
from admission.registry import REQUEST_CHECKS, SITE_CHECKS, stages_with
from admission.templating import render
from admission.vocabulary import DIGEST_KINDS, MailKind

log = logging.getLogger(__name__)


def _alert_admin(context) -> None:
    """A task failed: tell the administrator (runs in the task's process, at failure time)."""
    from admission.adapter.alerts import alert_admin

    alert_admin(context)


DEFAULT_ARGS = {
    "owner": "admission",
    "retries": 2,
    # An environment setting, not a Variable (no metadata access at parse time); tests shorten it.
    "retry_delay": dt.timedelta(seconds=int(os.environ.get("ADMISSION_RETRY_DELAY_SECONDS", "300"))),
    "execution_timeout": dt.timedelta(minutes=30),
    "on_failure_callback": _alert_admin,
}



def stage_dag_id(plan: Plan, stage: Stage | int) -> str:
    number = stage if isinstance(stage, int) else stage.number
    return f"check_{plan.slug}_stage_{number}"


def stage_asset(plan: Plan, stage: Stage | int) -> Asset:
    number = stage if isinstance(stage, int) else stage.number
    return Asset(name=f"admission_{plan.slug}_stage_{number}_results", uri=f"admission://{plan.id}/stage/{number}",
                 group="admission")


def snapshot_asset(plan: Plan) -> Asset:
    """The day's snapshot of the data folder (written by ``ingest_<plan>``); the stage checks run on it."""
    return Asset(name=f"admission_{plan.slug}_snapshot", uri=f"admission://{plan.id}/snapshot", group="admission")


def ingest_dag_id(plan: Plan) -> str:
    return f"ingest_{plan.slug}"


def tags(plan: Plan, stage: Stage | None = None) -> list[str]:
    """``admission``, ``campaign:<id>``, ``stage:<N>``; an example plan's DAGs also ``example`` (the UI's tag
    filter hides them from the admin's list of the real campaign)."""
    out = ["admission", f"campaign:{plan.id}"] + (["example"] if plan.status == "example" else [])
    return out + [f"stage:{stage.number}"] if stage else out


def params() -> dict[str, Param]:
    return {
        "as_of": Param(None, type=["null", "string"], format="date", title="Дата проверки",
                       description="Дата кампании, на которую проверять (ГГГГ-ММ-ДД); по умолчанию — дата запуска"),
        "dry_run": Param(False, type="boolean", title="Пробный запуск",
                         description="Проверить и сохранить результаты, но не отправлять писем (и не отправить их "
                                     "позже)"),
    }


def schedule(plan: Plan) -> EventsTimetable:
    """One run a day at the plan's ``run_at``, on the campaign's days only.

    The campaign window lives in the timetable, not in ``start_date``/``end_date``: Airflow creates no
    task at all for a manual run whose logical date lies outside those (the run shows «Success» and
    did nothing), and an admin must be able to judge any campaign date at any time.
    """
    days = (plan.campaign.end - plan.campaign.start).days + 1
    events = [dt.datetime.combine(plan.campaign.start + dt.timedelta(days=i), plan.run_time, plan.tz)
              for i in range(days)]
    return EventsTimetable(event_dates=events, restrict_to_events=False, presorted=True,
                           description=f"ежедневно в {plan.run_at} ({plan.timezone}), "
                                       f"{plan.campaign.start}..{plan.campaign.end}")


def plan_dag_args(plan: Plan, schedule_, tags_: list[str]) -> dict:
    """What every DAG of a plan shares: schedule, default_args, params, no catch-up, one run at a time."""
    # An example plan's DAGs start paused: they mail nothing, and run only when an admin switches one on.
    return dict(schedule=schedule_, catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS, params=params(),
                tags=tags_, is_paused_upon_creation=True if plan.status == "example" else None)


def after_stages(plan: Plan) -> list[Asset]:
    """Schedule of the follow-up DAGs: every stage of the plan has stored its results."""
    return [stage_asset(plan, s) for s in plan.ordered_stages]


def doc(name: str, plan: Plan, **context) -> str:
    """A DAG's Russian docs from ``templates/dags/<name>.md.j2`` (the example-plan note included there)."""
    return render(f"dags/{name}.md.j2", {"plan": plan, "ingest_dag_id": ingest_dag_id(plan),
                                         "snapshot_uri": snapshot_asset(plan).uri, **context}).strip()


def stage_doc(plan: Plan, stage: Stage) -> str:
    return doc("stage", plan, stage=stage,
               responsible="; ".join(f"{k}: {ROLE_RU[v]}" for k, v in stage.responsible.items()),
               escalation="; ".join(f"{k}: {ROLE_RU[v]}" for k, v in stage.escalation.items()))


def build_stage_dag(plan: Plan, stage: Stage) -> DAG:
    @dag(
        dag_id=stage_dag_id(plan, stage),
        description=f"{plan.id}: этап {stage.number} — {stage.title}",
        doc_md=stage_doc(plan, stage),
        **plan_dag_args(plan, [snapshot_asset(plan)], tags(plan, stage)),
    )
    def stage_dag() -> None:
        asset = stage_asset(plan, stage)

        @task(task_id="check_organizations")
        def check_organizations(day: dict) -> dict:
            return tasks.check_stage(plan, stage.number, tasks.judged_date(day))

        @task(task_id="publish_results", outlets=[asset], trigger_rule="all_done_min_one_success")
        def publish_results(day: dict) -> dict:
            """Emit the stage's Asset even when the check failed, so that the day's mail and report for the
            other stages still go out; they see that this stage has no results for the day."""
            ctx = get_current_context()
            summary = ctx["ti"].xcom_pull(task_ids="check_organizations")
            event = {"as_of": day["as_of"], "plan_id": plan.id, "dry_run": day["dry_run"], "judged": bool(summary)}
            ctx["outlet_events"][asset].extra = event
            return event

        day = resolve_day_task(plan)()
        summary = check_organizations(day)
        summary >> publish_results(day)
        # A leaf that fails with the check: the run stays red although publish_results succeeded.
        summary >> EmptyOperator(task_id="stage_judged")

    return stage_dag()


def snapshot_task(plan: Plan, day):
    """The start of every day, scheduled (``ingest_<plan>``) or by hand (``run_day_<plan>``): the snapshot of the
    data folder. The website check is not here: it is its own DAG (``check_websites_<plan>``), so the day never
    waits for a crawl."""

    @task(task_id="read_data_folder")
    def read_data_folder(day: dict) -> dict:
        return tasks.ingest_data(plan, tasks.judged_date(day))

    return read_data_folder(day)


def site_check_dag_id(plan: Plan) -> str:
    return f"check_websites_{plan.slug}"


def site_schedule(plan: Plan) -> EventsTimetable:
    """Every campaign day at the plan's ``site_check.run_at`` (at night: school sites are idle, and the check is
    finished before the day's run judges stage 2 on it)."""
    days = (plan.campaign.end - plan.campaign.start).days + 1
    at = dt.time.fromisoformat(plan.site_check.run_at)
    events = [dt.datetime.combine(plan.campaign.start + dt.timedelta(days=i), at, plan.tz) for i in range(days)]
    return EventsTimetable(event_dates=events, restrict_to_events=False, presorted=True,
                           description=f"ежедневно в {plan.site_check.run_at} ({plan.timezone})")


def build_site_check_dag(plan: Plan) -> DAG | None:
    """Stage 2's website check on its own, off the day's critical path: stage 2 is judged on the newest finished
    check (its date in the evidence), and nothing of the day waits for this DAG. None when no stage reads sites."""
    site_stages = stages_with(plan, SITE_CHECKS)
    if not site_stages:
        return None

    @dag(dag_id=site_check_dag_id(plan), description=f"{plan.id}: проверка официальных сайтов (этап "
                                                     f"{', '.join(str(s.number) for s in site_stages)})",
         doc_md=doc("websites", plan, stages=site_stages),
         **plan_dag_args(plan, site_schedule(plan), tags(plan, site_stages[0])))
    def site_check_dag() -> None:
        @task(task_id="check_websites")
        def check_websites(day: dict) -> dict:
            return tasks.check_websites(plan, tasks.judged_date(day))

        check_websites(resolve_day_task(plan, from_assets=False)())

    return site_check_dag()


def build_ingest_dag(plan: Plan) -> DAG:
    asset = snapshot_asset(plan)

    @dag(
        dag_id=ingest_dag_id(plan),
        description=f"{plan.id}: снимок папки данных за день (чтение файлов и проверка строк)",
        doc_md=doc("ingest", plan),
        **plan_dag_args(plan, schedule(plan), tags(plan)),
    )
    def ingest_dag() -> None:
        @task(task_id="publish_snapshot", outlets=[asset], trigger_rule="all_done")
        def publish_snapshot(day: dict) -> dict:
            """Published once the snapshot is written (no snapshot, no event: the run is red)."""
            from airflow.sdk.exceptions import AirflowFailException

            summary = get_current_context()["ti"].xcom_pull(task_ids="read_data_folder")
            if not summary:
                raise AirflowFailException("снимок данных не сохранен: см. журнал задачи read_data_folder")
            event = {"as_of": day["as_of"], "plan_id": plan.id, "dry_run": day["dry_run"],
                     "files": summary.get("files"), "changed": summary.get("changed"), "added": summary.get("added"),
                     "removed": summary.get("removed")}
            get_current_context()["outlet_events"][asset].extra = event
            return event

        day = resolve_day_task(plan, from_assets=False)()
        snapshot_task(plan, day) >> publish_snapshot(day)

    return ingest_dag()


def resolve_day_task(plan: Plan, from_assets: bool = True):
    """`resolve_as_of`: the day a run judges and whether it may send mail ({"as_of", "dry_run"})."""

    @task(task_id="resolve_as_of")
    def resolve_as_of() -> dict:
        from admission.adapter.config import resolve_day

        ctx = get_current_context()
        return resolve_day(plan, ctx["params"], ctx.get("logical_date"), getattr(ctx["dag_run"], "run_after", None),
                           getattr(ctx["dag_run"], "run_type", None),
                           ctx.get("triggering_asset_events") if from_assets else None)

    return resolve_as_of


@dataclass(frozen=True)
class Followup:
    """A step of the day after the stages (or the snapshot): it records the day's mail in the outbox, then a send
    task delivers its kinds. The scheduled chain gives each its own DAG; ``run_day_<plan>`` runs them all."""

    dag_id: Callable[[Plan], str]
    description: str  # Russian, «{plan}» replaced by the plan id
    doc: str  # templates/dags/<doc>.md.j2
    produce: Callable[[Plan, dt.date, bool], dict]  # a function of admission.adapter.tasks; its name is the task id
    send_task_id: str
    kinds: tuple[MailKind, ...]
    after_stages: bool = True  # else after the snapshot

    def schedule(self, plan: Plan) -> list[Asset]:
        return after_stages(plan) if self.after_stages else [snapshot_asset(plan)]


def notify_dag_id(plan: Plan) -> str:
    return f"notify_{plan.slug}"


def report_dag_id(plan: Plan) -> str:
    return f"report_{plan.slug}"


def operators_dag_id(plan: Plan) -> str:
    return f"collect_operators_{plan.slug}"


FOLLOWUPS = (
    Followup(notify_dag_id, "{plan}: напоминания, уведомления о просрочке, эскалация", "notify", tasks.compose_digests,
             "send_digests", DIGEST_KINDS),
    Followup(report_dag_id, "{plan}: ежедневный отчет для министерства", "report", tasks.build_report, "send_report",
             (MailKind.REPORT,)),
    Followup(operators_dag_id, "{plan}: списки операторов ОО и заявка в РЦОКО ({stages})", "operators",
             tasks.collect_operators, "send_request", (MailKind.REQUEST,), after_stages=False),
)


def build_followup_dag(plan: Plan, step: Followup) -> DAG:
    """A plan-level DAG of the step's two tasks, scheduled by its Assets."""

    @dag(dag_id=step.dag_id(plan), description=step.description.format(plan=plan.id, stages=request_stages(plan)),
         doc_md=doc(step.doc, plan), **plan_dag_args(plan, step.schedule(plan), tags(plan)))
    def followup_dag() -> None:
        day = resolve_day_task(plan)()
        mail_tasks(plan, day, step)

    return followup_dag()


def mail_tasks(plan: Plan, day, step: Followup, upstream=None):
    """The step's producing task (after ``upstream`` when given), then its send task (nothing on a day off)."""

    @task(task_id=step.produce.__name__)
    def produce_mail(day: dict) -> dict:
        return step.produce(plan, tasks.judged_date(day), day["dry_run"])

    @task(task_id=step.send_task_id)
    def send_mail(day: dict, produced: dict) -> dict:
        if produced.get("day_off"):
            return {"as_of": day["as_of"], "day_off": True}
        return tasks.send_digests(plan, tasks.judged_date(day), day["dry_run"], kinds=step.kinds)

    produced = produce_mail(day)
    if upstream is not None:
        upstream >> produced
    return send_mail(day, produced)


def run_day_dag_id(plan: Plan) -> str:
    return f"run_day_{plan.slug}"


def build_run_day_dag(plan: Plan) -> DAG:
    """The whole day in one run, by hand: snapshot, every stage, mail, report, operator lists.

    The same tasks as the scheduled chain (ingest → stage DAGs → follow-ups, joined by Assets), but one DAG run
    instead of twelve, and no Asset is emitted, so the scheduled DAGs are not triggered a second time.
    ``admission day`` runs this DAG.
    """
    @dag(
        dag_id=run_day_dag_id(plan),
        description=f"{plan.id}: весь день кампании одним запуском (снимок, все этапы, письма, отчет, операторы)",
        doc_md=doc("run_day", plan),
        **plan_dag_args(plan, None, tags(plan)),
    )
    def run_day_dag() -> None:
        @task(task_id="check_stages")
        def check_stages(day: dict, snapshot: dict) -> dict:
            """Every stage on the snapshot; stage 2 on the newest finished website check (``check_websites_<plan>``)."""
            return tasks.check_stages(plan, tasks.judged_date(day))

        @task(task_id="summarize_day", trigger_rule="all_done")
        def summarize_day(checked: dict | None) -> dict:
            """The per-stage table in the run's log and XCom; red when a stage could not be judged."""
            from airflow.sdk.exceptions import AirflowFailException

            from admission.report.console import stage_table

            if not checked:
                raise AirflowFailException("этапы не проверены: см. журналы задач read_data_folder и check_stages")
            log.info("итог дня %s:\n%s", checked["as_of"], stage_table(plan, checked))
            unjudged = [n for n, s in checked["stages"].items() if not s.get("judged")]
            if unjudged:
                raise AirflowFailException(f"не удалось проверить этапы {', '.join(unjudged)}: см. журнал задачи "
                                           "check_stages; письма и отчет по остальным этапам отправлены")
            return checked

        day = resolve_day_task(plan, from_assets=False)()
        snapshot = snapshot_task(plan, day)
        checked = check_stages(day, snapshot)
        sent = [mail_tasks(plan, day, step, upstream=checked if step.after_stages else snapshot) for step in FOLLOWUPS]
        sent >> summarize_day(checked)

    return run_day_dag()


def intake_dag_id(plan: Plan) -> str:
    return f"intake_{plan.slug}"


def intake_schedule(plan: Plan):
    """Every 15 minutes of working hours (08:00–17:45, Monday to Friday, the plan's time zone); the campaign window
    and the production calendar's days off are checked by the run itself (``resolve_as_of`` skips them)."""
    from airflow.timetables.trigger import CronTriggerTimetable

    return CronTriggerTimetable("*/15 8-17 * * 1-5", timezone=plan.timezone)


def build_intake_dag(plan: Plan) -> DAG:
    """Answers by mail: the mailbox of ``admission_imap`` read, the submissions written, receipts sent."""

    @dag(
        dag_id=intake_dag_id(plan),
        description=f"{plan.id}: ответы организаций по почте (формы из напоминаний) и квитанции",
        doc_md=doc("intake", plan),
        **plan_dag_args(plan, intake_schedule(plan), tags(plan)),
    )
    def intake_dag() -> None:
        @task(task_id="resolve_as_of")
        def resolve_as_of() -> dict:
            """The day as the other DAGs resolve it; a scheduled run on a day off is skipped."""
            from airflow.sdk.exceptions import AirflowSkipException

            from admission.adapter.config import resolve_day
            from admission.workdays import WorkCalendar

            ctx = get_current_context()
            run_type = getattr(ctx["dag_run"], "run_type", None)
            day = resolve_day(plan, ctx["params"], ctx.get("logical_date"), getattr(ctx["dag_run"], "run_after", None),
                              run_type)
            if "scheduled" in str(run_type or "").lower() and not WorkCalendar.for_plan(plan).is_working_day(
                    dt.date.fromisoformat(day["as_of"])):
                raise AirflowSkipException(f"{day['as_of']} — нерабочий день: почта не читается")
            if day.get("preview"):  # an example plan sends no forms: it must not take the real plan's answers
                raise AirflowSkipException(f"{day['preview']}; почтовый ящик не читается")
            return day

        @task(task_id="read_mailbox")
        def read_mailbox(day: dict) -> dict:
            return tasks.read_mailbox(plan, tasks.judged_date(day))

        @task(task_id="check_submissions")
        def check_submissions(day: dict, read: dict) -> dict:
            return tasks.check_submissions(plan, tasks.judged_date(day), read.get("written", 0))

        @task(task_id="compose_receipts")
        def compose_receipts(day: dict, checked: dict) -> dict:
            return tasks.compose_receipts(plan, tasks.judged_date(day), day["dry_run"])

        @task(task_id="send_receipts")
        def send_receipts(day: dict, composed: dict) -> dict:
            return tasks.send_digests(plan, tasks.judged_date(day), day["dry_run"], kinds=(MailKind.RECEIPT,))

        @task(task_id="file_messages")
        def file_messages(day: dict, composed: dict) -> dict:
            return tasks.file_messages(plan, tasks.judged_date(day))

        day = resolve_as_of()
        composed = compose_receipts(day, check_submissions(day, read_mailbox(day)))
        send_receipts(day, composed)
        file_messages(day, composed)

    return intake_dag()


def day_dag_ids(plan: Plan) -> list[str]:
    """Every DAG of a plan in the order of a campaign day: the snapshot, the stages, then mail, report, operator
    lists."""
    stages = [stage_dag_id(plan, s) for s in plan.ordered_stages]
    return [ingest_dag_id(plan), *stages, *(step.dag_id(plan) for step in FOLLOWUPS)]


def request_stages(plan: Plan) -> str:
    """«этапы 5, 6»: the plan's stages the operator request concerns (admission.registry.REQUEST_CHECKS)."""
    numbers = [str(s.number) for s in stages_with(plan, REQUEST_CHECKS)]
    return ("этап " if len(numbers) == 1 else "этапы ") + ", ".join(numbers) if numbers else "вне этапов плана"


def build_all(plans_dir: str | Path | None = None) -> dict[str, DAG]:
    """The DAGs of every valid plan; an invalid plan is left out here and reported by
    ``dags/admission_plan_errors.py`` as an import error, so it cannot take the other campaigns down."""
    dags: dict[str, DAG] = {}
    for plan in load_valid_plans(plans_dir)[0]:
        built = [build_ingest_dag(plan), *(build_stage_dag(plan, s) for s in plan.ordered_stages),
                 *(build_followup_dag(plan, step) for step in FOLLOWUPS), build_run_day_dag(plan),
                 build_intake_dag(plan), build_site_check_dag(plan)]
        dags.update((d.dag_id, d) for d in built if d is not None)
    return dags
