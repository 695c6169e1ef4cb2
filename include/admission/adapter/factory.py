"""One small factory: every plan file becomes its DAGs (the snapshot, one per stage, the follow-ups, the day).

Parse-time cost is the YAML load and the DAG objects; no Variable or
Connection is read and neither pandas nor Great Expectations is imported
here (the task bodies import them when they run).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, Param, dag, get_current_context, task
from airflow.timetables.events import EventsTimetable

from admission.labels import ROLE_RU
from admission.plan import Plan, Stage, load_valid_plans
from admission.registry import REQUEST_CHECKS, stages_with

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
    out = ["admission", f"campaign:{plan.id}"]
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
    return dict(schedule=schedule_, catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS, params=params(),
                tags=tags_)


def after_stages(plan: Plan) -> list[Asset]:
    """Schedule of the follow-up DAGs: every stage of the plan has stored its results."""
    return [stage_asset(plan, s) for s in plan.ordered_stages]


def stage_doc(plan: Plan, stage: Stage) -> str:
    deadline = stage.deadline.isoformat() if stage.deadline else "нет (весь период кампании)"
    resp = "; ".join(f"{k}: {ROLE_RU[v]}" for k, v in stage.responsible.items())
    esc = "; ".join(f"{k}: {ROLE_RU[v]}" for k, v in stage.escalation.items())
    return (
        f"### Этап {stage.number}. {stage.title}\n\n{stage.text}\n\n"
        f"* **Срок:** {stage.deadline_text} (`{deadline}`, {plan.timezone})\n"
        f"* **Ответственные (по плану):** {stage.responsible_text}\n"
        f"* **Получают напоминания:** {resp}\n* **Эскалация:** {esc}\n"
        f"* **Проверка:** `{stage.check}`; организации: {', '.join(stage.concerns)}\n\n"
        f"План `{plan.id}` ({plan.title}). Ежедневно в {plan.run_at} с {plan.campaign.start} по "
        f"{plan.campaign.end}: запускается, когда `{ingest_dag_id(plan)}` сохранил снимок данных дня (Asset "
        f"`{snapshot_asset(plan).uri}`); папку данных не читает. Ручной запуск: `as_of` — проверить другую дату "
        f"кампании (по снимку этой даты или последнему), `dry_run` — ничего не отправлять.{example_note(plan)}"
    )


def example_note(plan: Plan) -> str:
    """What the DAG docs say about a plan whose dates the region has not confirmed."""
    if plan.status != "example":
        return ""
    return ("\n\n> **Пример плана (status: example): письма не отправляются.** Проверки выполняются и результаты "
            "сохраняются, но ни напоминаний, ни отчета никто не получит, пока регион не подтвердит даты и не "
            "укажет в файле плана `status: approved`.")


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
            from admission.adapter.tasks import check_stage

            return check_stage(plan, stage.number, day["as_of"])

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


def build_ingest_dag(plan: Plan) -> DAG:
    asset = snapshot_asset(plan)

    @dag(
        dag_id=ingest_dag_id(plan),
        description=f"{plan.id}: снимок папки данных за день (чтение файлов и проверка строк)",
        doc_md=(
            f"### Снимок данных дня, кампания {plan.id}\n\n"
            f"Ежедневно в {plan.run_at} ({plan.timezone}) с {plan.campaign.start} по {plan.campaign.end} и вручную. "
            "Один раз читает папку данных (`admission_data_dir`) с ограничениями на каждый файл, на всех ядрах; "
            "файл, у которого не изменились размер и время изменения, повторно не читается. Один раз проверяет "
            "строки (Great Expectations) и сохраняет снимок (таблицы и найденные проблемы) в "
            f"`admission_output_dir/snapshots/{plan.id}/<дата>/`, вместе со списком файлов, добавленных, "
            "измененных и удаленных с прошлого дня. Задача `check_websites` проверяет официальные сайты МООУСО "
            "и ОО из реестра (этап 2: опубликован ли порядок записи в 1 класс в электронной форме; фразы и "
            "ограничения — в разделе `site_check` файла плана, выключение и сертификаты — переменная "
            "`admission_site_check`); сайт, где информация найдена, повторно проверяется раз в "
            f"{plan.site_check.recheck_days} дн. Затем публикует Asset `{asset.uri}`: по нему запускаются "
            "проверки этапов и списки операторов, которые читают только снимок. Параметры: `as_of`, `dry_run` "
            f"(передается дальше).{example_note(plan)}"
        ),
        **plan_dag_args(plan, schedule(plan), tags(plan)),
    )
    def ingest_dag() -> None:
        @task(task_id="read_data_folder")
        def read_data_folder(day: dict) -> dict:
            from admission.adapter.tasks import ingest_data

            return ingest_data(plan, day["as_of"])

        @task(task_id="publish_snapshot", outlets=[asset], trigger_rule="all_done")
        def publish_snapshot(day: dict) -> dict:
            """Published after the website check even when that check failed: stage 2 then counts informing rows
            only and says the sites were not checked; the other stages are not held back. No snapshot, no event."""
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
        sites = websites_task(plan)(day)
        read_data_folder(day) >> sites >> publish_snapshot(day)
        sites >> websites_checked()

    return ingest_dag()


def websites_task(plan: Plan):
    """`check_websites`: stage 2's website check of the day, after the snapshot (it reads the registry)."""

    @task(task_id="check_websites")
    def check_websites(day: dict) -> dict:
        from admission.adapter.tasks import check_websites

        return check_websites(plan, day["as_of"])

    return check_websites


def websites_checked() -> EmptyOperator:
    """A leaf that fails with the website check: the run is red although the stages were still judged."""
    return EmptyOperator(task_id="websites_checked")


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


def build_followup_dag(plan: Plan, dag_id: str, description: str, doc_md: str, schedule_, produce: str,
                       send_task_id: str, kinds: tuple[str, ...], from_assets: bool = True) -> DAG:
    """A plan-level DAG of two tasks: ``produce`` (a function of adapter.tasks, also the task id) records the
    day's mail in the outbox; ``send_task_id`` delivers the given kinds of it (nothing on a day off)."""

    @dag(dag_id=dag_id, description=description, doc_md=doc_md + example_note(plan),
         **plan_dag_args(plan, schedule_, tags(plan)))
    def followup_dag() -> None:
        day = resolve_day_task(plan, from_assets=from_assets)()
        mail_tasks(plan, day, produce, send_task_id, kinds)

    return followup_dag()


def mail_tasks(plan: Plan, day, produce: str, send_task_id: str, kinds: tuple[str, ...], upstream=None):
    """``produce`` (a function of adapter.tasks, also the task id) records the day's mail in the outbox, after
    ``upstream`` when given; ``send_task_id`` then delivers the given kinds of it (nothing on a day off)."""

    @task(task_id=produce)
    def produce_mail(day: dict) -> dict:
        from admission.adapter import tasks

        return getattr(tasks, produce)(plan, day["as_of"], day["dry_run"])

    @task(task_id=send_task_id)
    def send_mail(day: dict, produced: dict) -> dict:
        from admission.adapter.tasks import send_digests

        if produced.get("day_off"):
            return {"as_of": day["as_of"], "day_off": True}
        return send_digests(plan, day["as_of"], day["dry_run"], kinds=kinds)

    produced = produce_mail(day)
    if upstream is not None:
        upstream >> produced
    return send_mail(day, produced)


def run_day_dag_id(plan: Plan) -> str:
    return f"run_day_{plan.slug}"


def build_run_day_dag(plan: Plan) -> DAG:
    """The whole day in one run, by hand: snapshot, every stage, mail, report, operator lists.

    The same jobs as the scheduled chain (ingest → stage DAGs → follow-ups, joined by Assets), but one DAG run
    instead of twelve, and no Asset is emitted, so the scheduled DAGs are not triggered a second time.
    ``admission day`` runs this DAG.
    """
    @dag(
        dag_id=run_day_dag_id(plan),
        description=f"{plan.id}: весь день кампании одним запуском (снимок, все этапы, письма, отчет, операторы)",
        doc_md=(
            f"### Запуск дня кампании {plan.id} вручную\n\n"
            "Один запуск вместо двенадцати: читает папку данных (`admission_data_dir`) и сохраняет снимок дня, "
            "проверяет официальные сайты (этап 2, задача `check_websites`), проверяет все этапы плана, затем готовит и отправляет напоминания, уведомления о просрочке и эскалации, "
            "ежедневный отчет для министерства и заявку в РЦОКО (снимок, отчет, письма `.eml` — в "
            "`admission_output_dir`, результаты — в хранилище проекта) — то же, что делают по расписанию "
            f"`{ingest_dag_id(plan)}`, DAG этапов и DAG рассылки, отчета и операторов. Повторный запуск того же дня "
            "не отправляет писем повторно.\n\n"
            "**Как запустить:** кнопка «Trigger», параметр `as_of` — дата кампании, на которую проверять "
            f"({plan.campaign.start}..{plan.campaign.end}; без него — дата запуска, и вне кампании запуск "
            "завершится ошибкой с объяснением, а не пустым «успехом»); `dry_run` — все проверить и сохранить, но "
            "ничего не отправлять. Итог по этапам — в задаче `summarize_day` (журнал и XCom); если проверка "
            "какого-то этапа не удалась, письма и отчет по остальным все равно уходят, а запуск помечается "
            f"ошибкой.{example_note(plan)}"
        ),
        **plan_dag_args(plan, None, tags(plan)),
    )
    def run_day_dag() -> None:
        @task(task_id="read_data_folder")
        def read_data_folder(day: dict) -> dict:
            from admission.adapter.tasks import ingest_data

            return ingest_data(plan, day["as_of"])

        @task(task_id="check_stages", trigger_rule="all_done")
        def check_stages(day: dict) -> dict:
            """Runs after the website check even when it failed (stage 2 then counts informing rows only)."""
            from airflow.sdk.exceptions import AirflowFailException

            from admission.adapter.tasks import check_stages

            if not get_current_context()["ti"].xcom_pull(task_ids="read_data_folder"):
                raise AirflowFailException("снимок данных не сохранен: см. журнал задачи read_data_folder")
            return check_stages(plan, day["as_of"])

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
        snapshot = read_data_folder(day)
        checked = check_stages(day)
        sites = websites_task(plan)(day)
        snapshot >> sites >> checked
        sites >> websites_checked()
        sent = [mail_tasks(plan, day, "compose_digests", "send_digests", ("reminder", "overdue", "escalation"),
                           upstream=checked),
                mail_tasks(plan, day, "build_report", "send_report", ("report",), upstream=checked),
                mail_tasks(plan, day, "collect_operators", "send_request", ("request",), upstream=snapshot)]
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
        doc_md=(
            f"### Прием ответов по почте, кампания {plan.id}\n\n"
            "Каждые 15 минут в рабочее время (8:00–18:00, по рабочим дням производственного календаря, в период "
            "кампании) и вручную. Читает почтовый ящик подключения `admission_imap` (IMAP через TLS с проверкой "
            "сертификата): письма с формой организации (вложение к напоминанию) или с файлами `.xlsx`/`.csv` от "
            "адресов руководителей и операторов из реестра. Организацию определяет подпись формы, иначе адрес "
            "отправителя. Вложения проверяются так же, как файлы папки данных; принятые строки сохраняются в "
            "`admission_output_dir/intake/<набор>/<код>/` (каждая версия отдельно, папка данных администратора не "
            "изменяется) и заменяют сведения организации, если они новее файла в папке данных. Затем снимок дня "
            "и этапы пересчитываются, отправителю уходит квитанция (вид `receipt`: что принято, что исправить — "
            "лист, строка, столбец, — состояние этапов), письмо перемещается в папку «Обработано» или "
            "«Отклонено». Письмо без формы от неизвестного адреса остается без ответа и попадает в отчет. "
            "Каждое письмо обрабатывается один раз, даже при повторном запуске. `dry_run` — квитанции не "
            f"отправлять.{example_note(plan)}"
        ),
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
            from admission.adapter.tasks import read_mailbox

            return read_mailbox(plan, day["as_of"])

        @task(task_id="check_submissions")
        def check_submissions(day: dict, read: dict) -> dict:
            from admission.adapter.tasks import check_submissions

            return check_submissions(plan, day["as_of"], read.get("written", 0))

        @task(task_id="compose_receipts")
        def compose_receipts(day: dict, checked: dict) -> dict:
            from admission.adapter.tasks import compose_receipts

            return compose_receipts(plan, day["as_of"], day["dry_run"])

        @task(task_id="send_receipts")
        def send_receipts(day: dict, composed: dict) -> dict:
            from admission.adapter.tasks import send_digests

            return send_digests(plan, day["as_of"], day["dry_run"], kinds=("receipt",))

        @task(task_id="file_messages")
        def file_messages(day: dict, composed: dict) -> dict:
            from admission.adapter.tasks import file_messages

            return file_messages(plan, day["as_of"])

        day = resolve_as_of()
        composed = compose_receipts(day, check_submissions(day, read_mailbox(day)))
        send_receipts(day, composed)
        file_messages(day, composed)

    return intake_dag()


def notify_dag_id(plan: Plan) -> str:
    return f"notify_{plan.slug}"


def report_dag_id(plan: Plan) -> str:
    return f"report_{plan.slug}"


def operators_dag_id(plan: Plan) -> str:
    return f"collect_operators_{plan.slug}"


def day_dag_ids(plan: Plan) -> list[str]:
    """Every DAG of a plan in the order of a campaign day: the snapshot, the stages, then mail, report, operator
    lists."""
    stages = [stage_dag_id(plan, s) for s in plan.ordered_stages]
    return [ingest_dag_id(plan), *stages, notify_dag_id(plan), report_dag_id(plan), operators_dag_id(plan)]


def build_notify_dag(plan: Plan) -> DAG:
    return build_followup_dag(
        plan, notify_dag_id(plan), f"{plan.id}: напоминания, уведомления о просрочке, эскалация",
        f"### Рассылка по кампании {plan.id}\n\n"
        "Запускается, когда все DAG этапов плана сохранили результаты дня (Assets). Решает, кто получает "
        f"напоминание (в последние {plan.reminder_working_days} рабочих дней до срока), уведомление о просрочке "
        "и эскалацию; готовит одно письмо каждому получателю каждого вида; записывает каждое в очередь "
        "(outbox) до отправки; отправляет через подключение `admission_smtp`, а без него пишет файлы `.eml` в "
        "`admission_output_dir/mail`. В выходной день писем нет. Повторный запуск дня ничего не отправляет "
        "дважды. Параметры: `as_of`, `dry_run`.",
        after_stages(plan), "compose_digests", "send_digests", ("reminder", "overdue", "escalation"))


def build_report_dag(plan: Plan) -> DAG:
    return build_followup_dag(
        plan, report_dag_id(plan), f"{plan.id}: ежедневный отчет для министерства",
        f"### Ежедневный отчет по кампании {plan.id}\n\n"
        "Запускается, когда все DAG этапов плана сохранили результаты дня (Assets), в рабочие дни. "
        "Пишет в `admission_output_dir/reports/<план>/<дата>/`: график хода (PNG), книгу Excel (лист на "
        "каждый этап, лист проблем данных, лист изменений файлов) и GX Data Docs; отправляет отчет в HTML "
        "(вид `report`, график в тексте, книга во вложении) на адреса руководителя РОИВ (министерства) "
        "через ту же очередь, что и остальные письма. Параметры: `as_of`, `dry_run`.",
        after_stages(plan), "build_report", "send_report", ("report",))


def build_operators_dag(plan: Plan) -> DAG:
    return build_followup_dag(
        plan, operators_dag_id(plan), f"{plan.id}: списки операторов ОО и заявка в РЦОКО ({request_stages(plan)})",
        f"### Списки операторов и заявка в РЦОКО, кампания {plan.id}\n\n"
        "Запускается по снимку данных дня (и вручную): собирает формы операторов школ (файлы по школам в "
        "`operators/` или один файл `operators`), проверяет каждую строку и школу (главный оператор не ниже "
        "заместителя директора, e-mail, повторы, один главный оператор на человека, форма ФИО), сохраняет "
        "сводный список дня в хранилище и в XLSX в `admission_output_dir/operators/`, сравнивает его с "
        "набором `accounts` и, если есть еще не заявленные изменения, готовит XLSX-заявку и отправляет ее "
        "в региональный центр (вид `request`). Один и тот же набор изменений не заявляется дважды. "
        "Параметры: `as_of`, `dry_run`.",
        [snapshot_asset(plan)], "collect_operators", "send_request", ("request",))


def request_stages(plan: Plan) -> str:
    """«этапы 5, 6»: the plan's stages the operator request concerns (admission.registry.REQUEST_CHECKS)."""
    numbers = [str(s.number) for s in stages_with(plan, REQUEST_CHECKS)]
    return ("этап " if len(numbers) == 1 else "этапы ") + ", ".join(numbers) if numbers else "вне этапов плана"


def build_all(plans_dir: str | Path | None = None) -> dict[str, DAG]:
    """The DAGs of every valid plan; an invalid plan is left out here and reported by
    ``dags/admission_plan_errors.py`` as an import error, so it cannot take the other campaigns down."""
    dags: dict[str, DAG] = {}
    for plan in load_valid_plans(plans_dir)[0]:
        built = build_ingest_dag(plan)
        dags[built.dag_id] = built
        for stage in plan.ordered_stages:
            built = build_stage_dag(plan, stage)
            dags[built.dag_id] = built
        for built in (build_notify_dag(plan), build_report_dag(plan), build_operators_dag(plan),
                      build_run_day_dag(plan), build_intake_dag(plan)):
            dags[built.dag_id] = built
    return dags
