"""Who gets what and when, the digests, and delivery to a real SMTP server on loopback."""

from __future__ import annotations

import datetime as dt
import smtplib
from email import message_from_string, policy

import pandas as pd
import pytest
from admission.checks.stages import evaluate_stage
from admission.layout import Layout
from admission.mail.outbox import (
    EmlTransport,
    SmtpTransport,
    TransientError,
    deliver,
    enqueue,
    outbox_counts,
    smtp_settings,
)
from admission.mail.recipients import Digest, Item, Person, plan_digests
from admission.mail.render import render, to_wire
from admission.workdays import WorkCalendar

D = dt.date


@pytest.fixture(scope="module")
def day_results(plan, demo_data):
    cache: dict[dt.date, pd.DataFrame] = {}

    def results(day: dt.date) -> pd.DataFrame:
        if day not in cache:
            cache[day] = pd.concat([evaluate_stage(plan, s, demo_data, day).results for s in plan.stages],
                                   ignore_index=True)
        return cache[day]

    return results


def _digests(plan, demo_data, day_results, day):
    return plan_digests(plan, day, day_results(day), demo_data)


def _stages_by_kind(digests):
    out: dict[str, set[int]] = {}
    for d in digests:
        out.setdefault(d.kind, set()).update(d.stages)
    return out


def test_production_calendar_knows_weekends_new_year_and_moved_days():
    cal = WorkCalendar()
    assert not cal.is_working_day(D(2019, 12, 14))  # Saturday
    assert not cal.is_working_day(D(2020, 1, 3)) and not cal.is_working_day(D(2020, 1, 8))
    assert cal.is_working_day(D(2020, 1, 9)) and cal.is_working_day(D(2019, 12, 31))
    assert not cal.is_working_day(D(2020, 5, 4))  # moved day off
    regional = WorkCalendar(extra_days_off=[D(2019, 12, 31)], extra_working_days=[D(2019, 12, 14)])
    assert not regional.is_working_day(D(2019, 12, 31)) and regional.is_working_day(D(2019, 12, 14))


def test_reminder_window_counts_working_days_back_from_the_deadline():
    cal = WorkCalendar()
    assert cal.window_start(D(2019, 12, 16), 5) == D(2019, 12, 10)
    # Stage 6 (10.01.2020): the New Year holidays stretch the window back to 27.12.2019.
    assert cal.window_start(D(2020, 1, 10), 5) == D(2019, 12, 27)
    assert cal.in_reminder_window(D(2019, 12, 30), D(2020, 1, 10), 5)
    assert not cal.in_reminder_window(D(2019, 12, 26), D(2020, 1, 10), 5)


def test_before_the_window_no_mail_for_stages_4_and_5(plan, demo_data, day_results):
    kinds = _stages_by_kind(_digests(plan, demo_data, day_results, D(2019, 12, 6)))
    assert not {4, 5} & set().union(*kinds.values())
    assert kinds.get("overdue", set()) == set() and "escalation" not in kinds


def test_inside_the_window_and_on_deadline_day_a_reminder(plan, demo_data, day_results):
    for day in (D(2019, 12, 10), D(2019, 12, 16)):
        kinds = _stages_by_kind(_digests(plan, demo_data, day_results, day))
        assert {4, 5} <= kinds["reminder"], day
        assert "escalation" not in kinds


def test_after_the_deadline_overdue_notice_and_escalation(plan, demo_data, day_results):
    digests = _digests(plan, demo_data, day_results, D(2019, 12, 17))
    kinds = _stages_by_kind(digests)
    assert {4, 5} <= kinds["overdue"] and {4, 5} <= kinds["escalation"]
    esc = {d.recipient.email: d for d in digests if d.kind == "escalation"}
    # Stage 4 lag of a МООУСО goes to the ministry (both of its addresses); stage 5 of a school to its МООУСО.
    assert {"minobr@zarechye.example", "monitoring@zarechye.example"} <= set(esc)
    assert esc["minobr@zarechye.example"].stages == [4]
    assert esc["uo-zarechny@zarechye.example"].stages == [5]
    assert set(esc["uo-zarechny@zarechye.example"].org_ids) == {"S103", "S105", "S108", "S111"}


@pytest.mark.parametrize("day", [D(2019, 12, 14), D(2020, 1, 3)], ids=["saturday", "3-january"])
def test_no_mail_on_a_day_off(plan, demo_data, day_results, day):
    assert _digests(plan, demo_data, day_results, day) == []


def test_one_digest_per_recipient_and_kind_covering_all_their_stages(plan, demo_data, day_results):
    digests = _digests(plan, demo_data, day_results, D(2020, 1, 15))
    keys = [(d.kind, d.recipient.email) for d in digests]
    assert len(keys) == len(set(keys))
    curator = [d for d in digests if d.recipient.email == "curator-zarechny@zarechye.example"]
    assert [d.kind for d in curator] == ["reminder"]
    assert len(curator[0].org_ids) >= 2  # several schools, one message


def test_recipients_fall_back_as_the_contract_says(plan, demo_data, day_results):
    digests = _digests(plan, demo_data, day_results, D(2020, 1, 15))
    reminder_to = {d.recipient.email: d for d in digests if d.kind == "reminder"}
    # Stage 7 goes to chief operators (S110 has an extension: S210); stage 8 of school 7 (no curator) goes to its МООУСО head.
    assert 7 in reminder_to["chief.s10.ozerny@zarechye.example"].stages
    s107 = [d for d in digests if d.kind == "reminder" and "S107" in d.org_ids and 8 in d.stages]
    assert [d.recipient.email for d in s107] == ["uo-zarechny@zarechye.example"]
    # Stage 6 is the regional center's: the overdue notice goes to its head.
    rc = [d for d in digests if d.recipient.email == "rcoko@zarechye.example"]
    assert [d.kind for d in rc] == ["overdue"] and rc[0].stages == [6]


HEAD = Person("head@school.example", "Иванова Анна Петровна")


def _digest(name="Школа № 1", recipient=HEAD):
    item = Item(stage=5, org_id="S1", org_name=name, kind_of_org="ОО", status="overdue", deadline=D(2019, 12, 16),
                days_overdue=2, days_left=0, missing=["нет главного оператора <b>"], contact="УО: uo@x.example")
    return Digest("2020-2021", D(2019, 12, 18), "overdue", recipient, [item])


def test_rendered_message_has_contract_headers_and_a_real_plain_part(plan):
    msg = message_from_string(to_wire(render(_digest(), plan, "monitor@region.example", "Мониторинг")),
                              policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "head@school.example"
    assert str(msg["To"]) == "Иванова Анна Петровна <head@school.example>"
    assert msg["X-Admission-Campaign"] == "2020-2021" and msg["X-Admission-Kind"] == "overdue"
    assert msg["X-Admission-Stages"] == "5" and msg["X-Admission-Orgs"] == "S1"
    assert msg["X-Admission-Date"] == "2019-12-18"
    assert "Срок пропущен" in msg["Subject"]
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "<" not in plain.replace("<b>", "").replace("<uo@x.example>", "") and "просрочено на 2 дня" in plain
    assert "&lt;b&gt;" in html and "до 16.12.2019" in html
    assert "Срок по плану: до 16.12.2019." in plain  # the date the plan's wording already gives is not repeated


def test_message_id_is_stable_for_the_same_digest(plan):
    a = render(_digest(), plan, "monitor@region.example")
    b = render(_digest(), plan, "monitor@region.example")
    other = render(_digest(recipient=Person("other@school.example", "")), plan, "monitor@region.example")
    assert a["Message-ID"] == b["Message-ID"] != other["Message-ID"]


def test_org_and_person_names_cannot_inject_html_or_headers(plan):
    evil = "<script>alert(1)</script>\r\nBcc: victim@evil.example"
    wire = to_wire(render(_digest(name=evil, recipient=Person("head@school.example", "Иванова\r\nBcc: x@evil.example")),
                          plan, "monitor@region.example"))
    msg = message_from_string(wire, policy=policy.default)
    assert msg["Bcc"] is None and "Bcc" not in [k for k in msg.keys()]
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert msg["To"].addresses[0].addr_spec == "head@school.example"


def _queue(tmp_path, plan, recipients):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    messages = []
    for addr in recipients:
        d = _digest(recipient=Person(addr, "Получатель"))
        messages.append((d.key, d.kind, render(d, plan, "monitor@region.example")))
    enqueue(url, "2020-2021", D(2019, 12, 18), messages)
    return url


def _smtp(sink):
    return SmtpTransport(smtp_settings("127.0.0.1", sink.port, None, None,
                                       {"ssl": "false", "starttls": "false", "from_email": "monitor@region.example"}))


def test_smtp_delivery_once_and_a_rerun_sends_nothing(tmp_path, plan, smtp_sink):
    url = _queue(tmp_path, plan, ["a@x.example", "b@x.example", "c@x.example"])
    assert deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))["delivered"] == 3
    assert smtp_sink.connections == 1  # one connection for the batch
    got = smtp_sink.messages()
    assert sorted(m["To"].addresses[0].addr_spec for m in got) == ["a@x.example", "b@x.example", "c@x.example"]
    assert all(m["X-Admission-Kind"] == "overdue" and m.get_body(("plain",)) is not None for m in got)
    assert "Срок пропущен" in got[0]["Subject"]
    # Re-running the day: compose again (same keys) and deliver again.
    _queue(tmp_path, plan, ["a@x.example", "b@x.example", "c@x.example"])
    assert deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))["delivered"] == 0
    assert len(smtp_sink.received) == 3


def test_permanent_refusal_is_recorded_and_does_not_stop_the_others(tmp_path, plan, smtp_sink):
    smtp_sink.refuse.add("b@x.example")
    url = _queue(tmp_path, plan, ["a@x.example", "b@x.example", "c@x.example"])
    counts = deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))
    assert counts["delivered"] == 2 and counts["refused"] == 1
    assert outbox_counts(url, "2020-2021", D(2019, 12, 18)) == {"overdue": {"sent": 2, "refused": 1}}
    assert deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))["delivered"] == 0  # not retried


def test_transient_refusal_is_retried_later(tmp_path, plan, smtp_sink):
    smtp_sink.defer.add("b@x.example")
    url = _queue(tmp_path, plan, ["a@x.example", "b@x.example"])
    assert deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))["failed"] == 1
    smtp_sink.defer.clear()
    assert deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))["delivered"] == 1
    assert sorted(r[1][0] for r in smtp_sink.received) == ["a@x.example", "b@x.example"]


def test_dropped_connection_mid_batch_loses_nothing_and_duplicates_nothing(tmp_path, plan, smtp_sink):
    smtp_sink.drop_on_rcpt.add("c@x.example")
    url = _queue(tmp_path, plan, ["a@x.example", "b@x.example", "c@x.example", "d@x.example"])
    counts = deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))
    assert counts["delivered"] == 4
    assert sorted(r[1][0] for r in smtp_sink.received) == ["a@x.example", "b@x.example", "c@x.example", "d@x.example"]
    assert smtp_sink.connections == 2


def test_smtp_down_keeps_everything_for_the_retry(tmp_path, plan, smtp_sink):
    url = _queue(tmp_path, plan, ["a@x.example", "b@x.example"])
    port = smtp_sink.port
    smtp_sink.stop()
    down = SmtpTransport(smtp_settings("127.0.0.1", port, None, None, {"ssl": False, "timeout": "3"}))
    with pytest.raises(TransientError):
        deliver(url, "2020-2021", D(2019, 12, 18), down)
    assert outbox_counts(url, "2020-2021", D(2019, 12, 18)) == {"overdue": {"pending": 2}}
    smtp_sink.__init__()  # the server is back (on a new port)
    assert deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))["delivered"] == 2


def test_eml_files_when_no_smtp_connection_and_then_smtp_still_delivers(tmp_path, plan, smtp_sink):
    url = _queue(tmp_path, plan, ["a@x.example"])
    assert deliver(url, "2020-2021", D(2019, 12, 18), EmlTransport(Layout(tmp_path)))["delivered"] == 1
    [eml] = list((tmp_path / "mail").rglob("*.eml"))
    assert eml.parent.name == "overdue" and "a@x.example" in eml.name
    assert message_from_string(eml.read_text(), policy=policy.default)["X-Admission-Kind"] == "overdue"
    assert deliver(url, "2020-2021", D(2019, 12, 18), EmlTransport(Layout(tmp_path)))["delivered"] == 0
    assert deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))["delivered"] == 1


def test_dry_run_renders_and_stores_but_a_real_run_takes_over(tmp_path, plan, smtp_sink):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    d = _digest()
    enqueue(url, "2020-2021", D(2019, 12, 18), [(d.key, d.kind, render(d, plan, "m@r.example"))], dry_run=True)
    assert outbox_counts(url, "2020-2021", D(2019, 12, 18)) == {"overdue": {"dry_run": 1}}
    enqueue(url, "2020-2021", D(2019, 12, 18), [(d.key, d.kind, render(d, plan, "m@r.example"))])
    assert deliver(url, "2020-2021", D(2019, 12, 18), _smtp(smtp_sink))["delivered"] == 1


def test_connection_extras_are_parsed_from_strings():
    s = smtp_settings("mail.region.example", "587", "robot@region.example", "pw",
                      {"ssl": "false", "starttls": "true", "from_name": "Минобр"})
    assert (s.ssl, s.starttls, s.port, s.from_email, s.from_name) == (False, True, 587, "robot@region.example", "Минобр")
    s = smtp_settings("mail.region.example", None, None, None, {"ssl": "True", "from_email": "noreply@region.example"})
    assert (s.ssl, s.starttls, s.port, s.from_email) == (True, False, 465, "noreply@region.example")


def test_smtp_refusal_of_sender_stops_the_batch(tmp_path, plan):
    from admission.mail.outbox import _classify

    assert _classify(smtplib.SMTPRecipientsRefused({"a@x": (550, b"no")}))[0] == "refused"
    assert _classify(smtplib.SMTPRecipientsRefused({"a@x": (451, b"later")}))[0] == "failed"
    assert _classify(smtplib.SMTPServerDisconnected("gone"))[0] == "connection"


def test_a_retry_resumes_what_its_killed_try_had_claimed_and_nobody_else_steals_it(tmp_path, plan, smtp_sink):
    from admission.mail.outbox import _claim
    from admission.store import engine_for, outbox
    from sqlalchemy import select

    url = _queue(tmp_path, plan, ["a@x.example", "b@x.example", "c@x.example"])
    engine = engine_for(url)
    with engine.connect() as conn:
        ids = list(conn.execute(select(outbox.c.id)).scalars())
    owner = "notify_2020_2021.send_digests.scheduled__2019-12-18"
    # The first try claimed everything and was killed (SIGKILL: no release, rows stay 'sending').
    assert _claim(engine, ids, ("pending",), f"claim:{owner}") == set(ids)
    transport = _smtp(smtp_sink)
    other = deliver(url, "2020-2021", D(2019, 12, 18), transport, owner="report_2020_2021.send_report.x")
    assert other["delivered"] == 0 and smtp_sink.received == []  # a fresh claim of another sender is respected
    retry = deliver(url, "2020-2021", D(2019, 12, 18), transport, owner=owner)
    assert retry["delivered"] == len(ids) and len(smtp_sink.received) == len(ids)
    with engine.connect() as conn:
        assert set(conn.execute(select(outbox.c.status)).scalars()) == {"sent"}
