"""The administrator hears about a failed task: Airflow's own SmtpNotifier, to ``admission_admin_email``.

Runs as the tasks' ``on_failure_callback``, in the failed task's process, so Variables and
Connections are read at failure time, never at parse time. The notifier uses the ``admission_smtp``
connection with the extras of Airflow's own ``smtp`` connection type (``disable_ssl``,
``disable_tls``...). Without that connection (the embedded default) the alert is written as an
``.eml`` file under ``admission_output_dir/mail/alerts/``, and so is an alert the SMTP server does
not take (a failed send task often means that server is down). An alert that cannot be written either
is logged; it never hides the task's own failure.
"""

from __future__ import annotations

import datetime as dt
import logging
from email.message import EmailMessage
from html import escape

log = logging.getLogger(__name__)


def _consequence(task_id: str) -> str:
    """What the failure means for the officials, by the kind of task that failed."""
    if task_id.startswith("send_"):
        return ("Часть писем не отправлена (например, почтовый сервер недоступен): они остаются в очереди. "
                "Письма, которые еще нужны, уйдут при следующем запуске этого DAG (или очистите задачу (Clear), "
                "когда сервер заработает); дайджесты и отчет за этот день, замененные письмами следующего "
                "рабочего дня, будут перечислены в отчете как недоставленные. Заявка в РЦОКО остается в очереди "
                "до отправки.")
    if task_id == "check_organizations":
        return ("Письма и отчет по остальным этапам отправляются; в отчете этот этап отмечен как "
                "непроверенный.")
    return "Письма этого DAG за день не подготовлены; запустите его снова, когда причина будет устранена."


def _text(context) -> tuple[str, str]:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", "?")
    error = context.get("exception")
    subject = f"Мониторинг приема в 1-й класс: сбой задачи {dag_id}.{task_id}"
    body = (f"Задача {task_id} DAG {dag_id} (запуск {run_id}) завершилась с ошибкой"
            f"{' после всех повторов' if error is not None else ''}.\n\n"
            f"Ошибка: {type(error).__name__ if error is not None else 'неизвестна'}: {str(error)[:500]}\n\n"
            f"{_consequence(str(task_id))}\n\nПодробности — в журнале задачи в интерфейсе Airflow.")
    return subject, body


def _write_eml(context, to: str, subject: str, body: str) -> None:
    from admission.adapter.config import layout

    msg = EmailMessage()
    msg["To"], msg["Subject"], msg["X-Admission-Kind"] = to, subject, "alert"
    msg.set_content(body)
    folder = layout().alerts(dt.date.today())
    folder.mkdir(parents=True, exist_ok=True)
    ti = context.get("ti")
    name = f"{getattr(ti, 'dag_id', 'dag')}.{getattr(ti, 'task_id', 'task')}.{getattr(ti, 'run_id', 'run')}"
    (folder / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)}.eml").write_bytes(msg.as_bytes())


def alert_admin(context) -> None:
    from admission.adapter.config import get_connection

    try:
        from airflow.sdk import Variable

        to = Variable.get("admission_admin_email", default=None)
        subject, body = _text(context)
        if not to:
            log.warning("task failed; set the Variable admission_admin_email to be told by mail")
            return
        if get_connection("admission_smtp") is not None:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            try:
                SmtpNotifier(to=to, subject=subject, html_content=f"<pre>{escape(body)}</pre>",
                             smtp_conn_id="admission_smtp").notify(context)
                return
            except Exception as exc:  # the server that failed the task may be the one that is down
                log.warning("admin alert not sent over SMTP (%s): written as an .eml file instead",
                            type(exc).__name__)
        _write_eml(context, to, subject, body)
    except Exception as exc:  # the alert must never mask the failure it reports
        log.warning("admin alert not delivered: %s", type(exc).__name__)
