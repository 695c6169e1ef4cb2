"""Russian labels of the product's codes, in one place: what an official or an admin reads."""

from __future__ import annotations

STATUS_RU = {"complete": "выполнено", "lagging": "отстает", "overdue": "просрочено"}

# One message of a kind (tables of the report) and many (day summaries).
MAIL_KIND_RU = {"reminder": "напоминание", "overdue": "уведомление о просрочке", "escalation": "эскалация",
                "report": "отчет", "request": "заявка в РЦОКО", "receipt": "квитанция"}
MAIL_KINDS_RU = {"reminder": "напоминания", "overdue": "уведомления о просрочке", "escalation": "эскалации",
                 "report": "отчеты", "request": "заявки", "receipt": "квитанции"}

MAIL_STATUS_RU = {
    "pending": "ожидает отправки", "dry_run": "пробный запуск (не отправляется)", "sending": "отправляется",
    "written": "записано в файл .eml", "sent": "отправлено", "refused": "отклонено сервером",
    "failed": "временная ошибка (будет повторено)", "superseded": "не доставлено, заменено более новым письмом",
}
