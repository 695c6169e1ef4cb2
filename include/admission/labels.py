"""Russian labels of the product's codes, in one place: what an official or an admin reads.

Keys are the enums of :mod:`admission.vocabulary` (equal to their code strings, so a label is found
for a stored code as well).
"""

from __future__ import annotations

from admission.vocabulary import Delivery, EscalationRole, IntakeOutcome, MailKind, ResponsibleRole, Status

STATUS_RU = {Status.COMPLETE: "выполнено", Status.LAGGING: "отстает", Status.OVERDUE: "просрочено"}

# One message of a kind (tables of the report) and many (day summaries).
MAIL_KIND_RU = {MailKind.REMINDER: "напоминание", MailKind.OVERDUE: "уведомление о просрочке",
                MailKind.ESCALATION: "эскалация", MailKind.REPORT: "отчет", MailKind.REQUEST: "заявка в РЦОКО",
                MailKind.RECEIPT: "квитанция"}
MAIL_KINDS_RU = {MailKind.REMINDER: "напоминания", MailKind.OVERDUE: "уведомления о просрочке",
                 MailKind.ESCALATION: "эскалации", MailKind.REPORT: "отчеты", MailKind.REQUEST: "заявки",
                 MailKind.RECEIPT: "квитанции"}

MAIL_STATUS_RU = {
    Delivery.PENDING: "ожидает отправки", Delivery.DRY_RUN: "пробный запуск (не отправляется)",
    Delivery.SENDING: "отправляется", Delivery.WRITTEN: "записано в файл .eml", Delivery.SENT: "отправлено",
    Delivery.REFUSED: "отклонено сервером", Delivery.FAILED: "временная ошибка (будет повторено)",
    Delivery.SUPERSEDED: "не доставлено, заменено более новым письмом",
}

ROLE_RU = {
    ResponsibleRole.HEAD: "руководитель организации",
    ResponsibleRole.CHIEF_OPERATORS: "главные операторы ОО (руководитель, если их нет)",
    ResponsibleRole.CURATOR: "куратор ОО в МООУСО (руководитель МООУСО, если куратор не указан)",
    ResponsibleRole.RCOKO_HEAD: "руководитель РЦОКО",
    EscalationRole.MOOYSO_HEAD: "руководитель МООУСО",
    EscalationRole.ROIV_HEAD: "руководитель РОИВ (министерство)",
}

# The snapshot's file changes since the previous day (report, workbook sheet «Изменения файлов»).
FILE_CHANGE_RU = {"added": "добавлено", "changed": "изменено", "removed": "удалено"}

# What became of a message read from the mailbox (the report's «Почта» sheet, the campaign page's card).
INTAKE_OUTCOME_RU = {IntakeOutcome.ACCEPTED: "принято", IntakeOutcome.PARTIAL: "принято частично",
                     IntakeOutcome.REJECTED: "не принято",
                     IntakeOutcome.UNKNOWN: "неизвестный отправитель или нет формы, без ответа",
                     IntakeOutcome.NO_FORM: "без формы: сведения не изменены, отправлена форма",
                     IntakeOutcome.DUPLICATE: "повторное письмо",
                     IntakeOutcome.QUARANTINED: "отложено: не удалось обработать"}
