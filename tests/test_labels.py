"""Every code the product stores or sends has the Russian label an official or an admin reads."""

from __future__ import annotations

import pytest
from admission import labels
from admission.vocabulary import Delivery, EscalationRole, IntakeOutcome, MailKind, ResponsibleRole, Status


@pytest.mark.parametrize(("codes", "table"), [
    (Status, labels.STATUS_RU),
    (MailKind, labels.MAIL_KIND_RU),
    (MailKind, labels.MAIL_KINDS_RU),
    (Delivery, labels.MAIL_STATUS_RU),
    (IntakeOutcome, labels.INTAKE_OUTCOME_RU),
    (ResponsibleRole, labels.ROLE_RU),
    (EscalationRole, labels.ROLE_RU),
], ids=["status", "mail kind", "mail kinds", "outbox state", "intake outcome", "responsible", "escalation"])
def test_every_code_has_a_russian_label(codes, table):
    missing = [c.value for c in codes if not table.get(c)]
    assert missing == []
    assert all(any("а" <= ch <= "я" for ch in table[c].lower()) for c in codes)


def test_a_stored_code_string_finds_its_label():
    """The store holds plain strings: they find the enum-keyed label."""
    assert labels.MAIL_STATUS_RU["sent"] == "отправлено"
    assert labels.INTAKE_OUTCOME_RU["duplicate"] == "повторное письмо"
