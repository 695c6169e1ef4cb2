"""The form as an authorization (admission.mail.forms) and the intake's handling of what people type and what
headers carry (admission.mail.intake), without a mailbox."""

from __future__ import annotations

import datetime as dt
import io

import pytest

D = dt.date


def test_codes_typed_with_look_alike_letters_or_the_russian_layout_match_and_others_do_not():
    from admission.mail.intake import describe_code, same_code

    assert same_code("С21", "C21")  # Cyrillic es for Latin C
    assert same_code("Ы21", "S21") and same_code("ы21", "S21")  # S on the Russian keyboard layout
    assert same_code("М01", "M01") and same_code("s105", "S105")
    assert not same_code("С21", "S21") and not same_code("C211", "C21") and not same_code("D21", "C21")
    assert describe_code("С21") == "«С21» (1-я буква — кириллическая «С»)"
    assert describe_code("C21") == "«C21»"


def test_headers_from_outside_become_one_safe_line():
    from admission.mail.intake import safe_message_id, safe_sender, safe_text

    assert safe_message_id("<abc.1@school.example>") == "<abc.1@school.example>"
    for bad in ("<a\r\nBcc: x@y>", "<a b@c>", "abc@c", "<" + "a" * 300 + "@c>", "<a<b>@c>", ""):
        assert safe_message_id(bad) is None, bad
    assert safe_text("Тема\r\nBcc: evil@x\x00", 100) == "Тема Bcc: evil@x"
    assert len(safe_text("я" * 1000, 50)) == 50
    assert safe_sender("Директор <Head@School.example>") == "head@school.example"
    assert safe_sender("a@b@c") == "" and safe_sender("<>") == ""


def test_a_form_expires_after_its_stages_deadline_or_its_issue_day_and_carries_the_plan(plan):
    from admission.mail.forms import FormIdentity, form_expiry, sign, verify

    stage5 = next(s for s in plan.stages if s.check == "operators")
    grace = dt.timedelta(days=plan.intake.form_grace_days)
    assert form_expiry(plan, [stage5.number], D(2019, 12, 1)) == stage5.deadline + grace
    # A form sent with an overdue notice is usable for the grace period after it was issued.
    assert form_expiry(plan, [stage5.number], D(2020, 1, 15)) == D(2020, 1, 15) + grace
    identity = FormIdentity(plan.id, "S105", (stage5.number,), D(2020, 1, 15), ("operators",), D(2020, 1, 25))
    signed = sign(identity, b"key")
    back = verify(signed, b"key")
    assert back.expires == D(2020, 1, 25) and back.plan_id == plan.id and back.key_id
    assert verify(signed.replace("2020-01-25", "2030-01-25"), b"key") is None  # the expiry is signed
    assert verify(signed, b"another") is None
    # A form of the first version (no expiry in it) still verifies; the intake computes its expiry.
    old = sign(FormIdentity(plan.id, "S105", (stage5.number,), D(2019, 12, 1), ("operators",)), b"key")
    assert verify(old, b"key").expires is None


def test_the_form_secret_may_rotate_with_a_stated_end_for_the_previous_key(tmp_path):
    from admission.mail.forms import FormKeys, form_keys

    assert form_keys(tmp_path / "k", "plain-key") == FormKeys(b"plain-key")
    keys = form_keys(tmp_path / "k", '{"current": "new", "previous": "old", "previous_until": "2020-01-20"}')
    assert keys.accepts_previous(D(2020, 1, 20)) and not keys.accepts_previous(D(2020, 1, 21))
    with pytest.raises(ValueError, match="previous_until"):
        form_keys(tmp_path / "k", '{"current": "new", "previous": "old"}')
    made = form_keys(tmp_path / "form.key")  # no secret configured: a key file, made once, owner-only
    assert made == form_keys(tmp_path / "form.key") and (tmp_path / "form.key").stat().st_mode & 0o077 == 0


def test_only_the_contracts_datasets_may_come_by_mail_and_approvals_only_from_the_mooyso(plan):
    from admission.mail.forms import form_datasets
    from admission.registry import MAIL_RIGHTS, mail_datasets

    assert "organizations" not in MAIL_RIGHTS and "accounts" not in MAIL_RIGHTS
    assert set(mail_datasets("ОО")) == {"informing", "operators", "school_cards", "first_grade_classes"}
    assert set(mail_datasets("ДОУ")) == {"informing"}
    assert set(mail_datasets("МООУСО")) == {"module_staff", "approvals"}
    stage8 = next(s.number for s in plan.stages if s.check == "approvals")
    assert form_datasets(plan, [stage8], "ОО") == [] and form_datasets(plan, [stage8], "МООУСО") == ["approvals"]


def test_positions_are_suggestions_and_roles_a_closed_list(plan):
    """Excel warns about a position not on the list and keeps it; a role must be one of the contract's."""
    import pandas as pd
    from admission.mail.forms import POSITIONS, build_form
    from admission.schema import DATASETS
    from openpyxl import load_workbook

    stage5 = next(s.number for s in plan.stages if s.check == "operators")
    ops = pd.DataFrame([["S1", "Иванова Анна", "зам. директора по УВР", "главный оператор", "a@s1.example", None,
                         None, None]], columns=DATASETS["operators"].keys)
    form = build_form(plan, D(2020, 1, 15), "S1", "Школа", [stage5], {"operators": ops}, b"k", "m@x.example")
    sheet = load_workbook(io.BytesIO(form))["Операторы ОО"]
    styles = {str(v.sqref): (v.errorStyle or "stop") for v in sheet.data_validations.dataValidation}
    assert styles["C2:C201"] == "warning" and styles["D2:D201"] == "stop"
    assert "зам. директора по УВР" in POSITIONS  # the usual prefilled spelling is on the list itself
