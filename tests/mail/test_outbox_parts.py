"""Output stored once (admission.mail.outbox.Parts): the report's workbook goes to every ministry address, and is
stored once; what goes out is byte for byte what was rendered; old large parts are pruned, the messages kept."""

from __future__ import annotations

import datetime as dt
import email
import os
from email import policy
from email.message import EmailMessage

DAY = dt.date(2020, 1, 15)


def _report_to(recipient: str, workbook: bytes) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "monitor@region.example"
    msg["To"] = recipient
    msg["Subject"] = "Ежедневный отчет"
    msg["Message-ID"] = f"<report.{recipient}@region.example>"
    for name, value in (("X-Admission-Stages", "1,2"), ("X-Admission-Orgs", "S101")):
        msg[name] = value
    msg.set_content("Уважаемый коллега!\n\nОтчет во вложении.\n")
    msg.add_attachment(workbook, maintype="application", subtype="octet-stream", filename="report.xlsx")
    return msg


def test_a_workbook_sent_to_85_addresses_is_stored_once_and_goes_out_whole(tmp_path):
    from admission.layout import Layout
    from admission.mail.outbox import EmlTransport, deliver, enqueue, outbox_bytes
    from admission.store import engine_for, outbox_part
    from sqlalchemy import func, select

    url = f"sqlite:///{tmp_path / 'store.db'}"
    workbook = os.urandom(2_000_000)  # 2.7 MB of base64
    messages = [(f"2020-2021|{DAY}|report|m{i}@minobr.example", "report", _report_to(f"m{i}@minobr.example", workbook))
                for i in range(85)]
    enqueue(url, "2020-2021", DAY, messages)
    stored = outbox_bytes(url, "2020-2021", DAY)
    print(f"outbox bytes for 85 copies of a 2 MB workbook: messages {stored['messages']:,}, parts {stored['parts']:,}")
    assert stored["parts"] < 3_000_000 and stored["messages"] < 85 * 5_000  # once, not 85 × 2.7 MB
    with engine_for(url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox_part)).scalar_one() == 1
    assert deliver(url, "2020-2021", DAY, EmlTransport(Layout(tmp_path)))["delivered"] == 85
    files = sorted(Layout(tmp_path).mail_of("2020-2021", DAY).rglob("*.eml"))
    assert len(files) == 85
    for path in files[:3]:
        sent = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        (attachment,) = list(sent.iter_attachments())
        assert attachment.get_content() == workbook


def test_past_days_lose_their_large_parts_after_the_retention_and_keep_their_text(tmp_path):
    from admission.mail.outbox import PART_PRUNED, enqueue, prune_parts, stored_message
    from admission.store import engine_for, outbox
    from sqlalchemy import select

    url = f"sqlite:///{tmp_path / 'store.db'}"
    old, new = os.urandom(300_000), os.urandom(300_000)
    enqueue(url, "2020-2021", DAY, [("k-old", "report", _report_to("a@minobr.example", old))])
    later = DAY + dt.timedelta(days=100)
    enqueue(url, "2020-2021", later, [("k-new", "report", _report_to("a@minobr.example", new))])
    assert prune_parts(url, later, keep_days=90)["parts"] == 1
    with engine_for(url).connect() as conn:
        ids = dict(conn.execute(select(outbox.c.digest_key, outbox.c.id)).tuples().all())
    kept = stored_message(url, ids["k-old"])
    assert "Отчет во вложении" in email.message_from_string(kept, policy=policy.default).get_body(
        ("plain",)).get_content()
    assert PART_PRUNED.strip() in kept
    fresh = email.message_from_string(stored_message(url, ids["k-new"]), policy=policy.default)
    assert next(fresh.iter_attachments()).get_content() == new
