"""The administrator hears about a failed task: Airflow's own SmtpNotifier, to ``admission_admin_email``.

Runs as the tasks' ``on_failure_callback``, in the failed task's process, so Variables and
Connections are read at failure time, never at parse time. The notifier uses the ``admission_smtp``
connection with the extras of Airflow's own ``smtp`` connection type (``disable_ssl``,
``disable_tls``...). Without that connection (the embedded default) the alert is written as an
``.eml`` file under ``admission_output_dir/mail/alerts/``. An alert that cannot be delivered is
logged; it never hides the task's own failure.
"""

from __future__ import annotations

import datetime as dt
import logging
from email.message import EmailMessage
from html import escape

log = logging.getLogger(__name__)


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
            "Письма и отчет по остальным этапам отправляются; в отчете этот этап отмечен как непроверенный. "
            "Подробности — в журнале задачи в интерфейсе Airflow.")
    return subject, body


def alert_admin(context) -> None:
    from admission.adapter.config import get_connection, output_dir

    try:
        from airflow.sdk import Variable

        to = Variable.get("admission_admin_email", default=None)
        subject, body = _text(context)
        if not to:
            log.warning("task failed; set the Variable admission_admin_email to be told by mail")
            return
        if get_connection("admission_smtp") is None:
            msg = EmailMessage()
            msg["To"], msg["Subject"], msg["X-Admission-Kind"] = to, subject, "alert"
            msg.set_content(body)
            folder = output_dir() / "mail" / "alerts" / dt.date.today().isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            ti = context.get("ti")
            name = f"{getattr(ti, 'dag_id', 'dag')}.{getattr(ti, 'task_id', 'task')}.eml"
            (folder / name).write_bytes(msg.as_bytes())
            return
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(to=to, subject=subject, html_content=f"<pre>{escape(body)}</pre>",
                     smtp_conn_id="admission_smtp").notify(context)
    except Exception as exc:  # the alert must never mask the failure it reports
        log.warning("admin alert not delivered: %s", type(exc).__name__)
