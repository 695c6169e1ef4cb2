"""Answers by mail (admission.mail.forms, admission.mail.intake) against a real IMAP server (Debian's dovecot on loopback):
a school returns its form, the data changes, the receipt goes out, the message is filed; and every way a
message can be wrong, twice delivered or interrupted."""

from __future__ import annotations

import datetime as dt
import io
import os
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests.helpers import REPO, ca_and_cert
from tests.mail.imap_server import Dovecot, available

pytestmark = pytest.mark.services  # a real IMAP server (dovecot): left out of make test-fast

D = dt.date
DAY = D(2020, 1, 15)
SCHOOL = "S105"  # ОО 5 of МООУСО 1 sent no operator list (admission.tools.demo): stage 5 is overdue
HEAD = "school5-zarechny@zarechye.example"


@pytest.fixture(scope="module")
def imap(tmp_path_factory):
    if not available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but dovecot is not installed (apt-get install dovecot-imapd)")
        pytest.skip("dovecot is not installed here")
    folder = tmp_path_factory.mktemp("imap-tls")
    ca, cert, key = ca_and_cert(folder, ["127.0.0.1", "localhost"])
    server = Dovecot(cert, key)
    server.ca = ca
    yield server
    server.stop()


@pytest.fixture
def client(imap):
    c = imap.client(imap.ca)
    c.select("INBOX")
    typ, data = c.uid("SEARCH", None, "ALL")
    for uid in (data[0] or b"").split():  # each test starts with an empty INBOX
        c.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
    c.expunge()
    from admission.mail.intake import FOLDER_DONE, FOLDER_REJECTED, imap_utf7

    for name in (FOLDER_DONE, FOLDER_REJECTED):  # and no folder left by an earlier test
        c.delete('"' + imap_utf7(name) + '"')
    yield c
    c.logout()


@pytest.fixture
def day(tmp_path, demo_dir, plan):
    """The demo day judged and its digests composed (forms attached), in a fresh output folder."""
    from admission import jobs

    settings = jobs.Settings(data_dir=demo_dir, output_dir=tmp_path / "out",
                             store_url=f"sqlite:///{tmp_path / 'store.db'}", from_email="monitor@minobr.example")
    jobs.ingest(settings, plan, DAY)
    jobs.check_stages(settings, plan, DAY)
    jobs.compose_digests(settings, plan, DAY, dry_run=False)
    return settings


def _outbox(settings, kind: str, recipient: str | None = None) -> list:
    import email
    import sqlite3
    from email import policy

    db = settings.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT recipient, message FROM admission_outbox WHERE kind = ?", (kind,)).fetchall()
    return [email.message_from_string(m, policy=policy.default) for r, m in rows if recipient in (None, r)]


def _form_of(settings, recipient: str = HEAD) -> tuple[EmailMessage, bytes]:
    notice = next(m for m in _outbox(settings, "overdue", recipient))
    form = next(p for p in notice.iter_attachments() if p.get_filename() == f"forma_{SCHOOL}_{DAY}.xlsx")
    return notice, form.get_content()


def _fill(form: bytes, sheet: str, rows: list[list]) -> bytes:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(form))
    ws = wb[sheet]
    ws.delete_rows(2, ws.max_row)
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


CHIEF = [SCHOOL, "Новикова Анна Сергеевна", "заместитель директора", "главный оператор",
         "novikova.s105@zarechye.example", "+7 900 000-00-05", "15-од", dt.datetime(2020, 1, 14)]


def _reply(notice: EmailMessage | None, files: list[tuple[str, bytes, str]], sender: str = HEAD,
           message_id: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "monitor@minobr.example"
    msg["Subject"] = "Re: " + (str(notice["Subject"]) if notice else "сведения")
    msg["Message-ID"] = message_id or make_msgid(domain="zarechye.example")
    if notice is not None:
        msg["In-Reply-To"] = notice["Message-ID"]
    msg.set_content("Направляем заполненную форму.")
    for name, data, mime in files:
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _run(settings, plan, client) -> dict:
    from admission import jobs

    read = jobs.read_mailbox(settings, plan, DAY, client)
    jobs.check_submissions(settings, plan, DAY, read["written"])
    receipts = jobs.compose_receipts(settings, plan, DAY)
    filed = jobs.file_messages(settings, plan, client)
    return {"read": read, "receipts": receipts, "filed": filed}


def _folder(imap, name: str) -> list[bytes]:
    from admission.mail.intake import imap_utf7

    c = imap.client(imap.ca)
    try:
        typ, _ = c.select('"' + imap_utf7(name) + '"')
        if typ != "OK":
            return []
        typ, data = c.uid("SEARCH", None, "ALL")
        return (data[0] or b"").split()
    finally:
        c.logout()


def _stage(plan, check: str) -> int:
    return next(s.number for s in plan.stages if s.check == check)


def test_a_school_returns_its_form_and_the_next_day_it_is_complete_with_no_reminder(day, imap, client, plan):
    from admission import jobs
    from admission.store import load_results

    notice, form = _form_of(day)
    assert "Во вложении — форма вашей организации" in notice.get_body(("plain",)).get_content()
    imap.append(imap.ca, _reply(notice, [(f"forma_{SCHOOL}_{DAY}.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)]))
    out = _run(day, plan, client)
    assert out["read"]["written"] == 1 and out["receipts"]["receipts"] == 1 and out["filed"]["done"] == 1
    stage5 = _stage(plan, "operators")
    after = load_results(day.store_url, plan.id, DAY, [stage5]).set_index("org_id")
    assert after.loc[SCHOOL, "status"] == "complete"
    # The submission is a new version in the intake folder; the admin's data folder is not written.
    versions = list((day.output_dir / "intake" / "operators" / SCHOOL).glob("*.csv"))
    assert len(versions) == 1 and not (Path(day.data_dir) / "operators" / f"{SCHOOL}.csv").exists()
    receipt = _outbox(day, "receipt", HEAD)[0]
    assert receipt["In-Reply-To"] and receipt["X-Admission-Kind"] == "receipt"
    assert receipt["X-Admission-Orgs"] == SCHOOL
    text = receipt.get_body(("plain",)).get_content()
    assert "сведения приняты" in text and "Операторы ОО, строк 1" in text and "по подписи формы" in text, text
    assert f"Этап {stage5}." in text and "выполнено" in text
    assert _folder(imap, "Обработано") and not _folder(imap, "INBOX")
    from admission.report import dashboard  # the campaign page's card says where the school's data came from

    card = dashboard.organization(day.store_url, dashboard.Day.load(day.store_url, plan, DAY), SCHOOL)
    assert [(a["outcome_ru"], a["accepted"]) for a in card["answers"]] == [("принято", "Операторы ОО: строк 1")]
    # The next day's check counts it: no stage-5 notice for the school.
    nxt = DAY + dt.timedelta(days=1)
    jobs.ingest(day, plan, nxt)
    jobs.check_stages(day, plan, nxt)
    assert load_results(day.store_url, plan.id, nxt, [stage5]).set_index("org_id").loc[SCHOOL, "status"] == "complete"
    jobs.compose_digests(day, plan, nxt, dry_run=False)
    import sqlite3

    with sqlite3.connect(day.store_url.removeprefix("sqlite:///")) as conn:
        to_head = conn.execute("SELECT kind, stages FROM admission_outbox WHERE as_of = ? AND recipient = ?",
                               (nxt.isoformat(), HEAD)).fetchall()
    assert all(str(stage5) not in stages.split(",") for _, stages in to_head), to_head


def test_bad_rows_are_partly_accepted_and_the_receipt_names_sheet_row_and_column(day, imap, client, plan):
    _, form = _form_of(day)
    bad = [SCHOOL, "Орлов Олег Олегович", "учитель", "оператор", "orlov@@zarechye", "", "", None]
    imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF, bad]), XLSX)]))
    out = _run(day, plan, client)
    assert out["read"]["written"] == 1
    text = _outbox(day, "receipt", HEAD)[0].get_body(("plain",)).get_content()
    assert "сведения приняты частично" in text and "строк 1" in text
    assert "лист «Операторы ОО», строка 3, столбец «E-mail»" in text


def test_a_tampered_form_a_macro_workbook_and_a_huge_file_are_refused(day, imap, client, plan):
    _, form = _form_of(day)
    filled = _fill(form, "Операторы ОО", [CHIEF])
    tampered = filled.replace(b"admission_form", b"admission_form")  # same bytes: edit the identity below
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(filled))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "docProps/custom.xml":
                data = data.replace(SCHOOL.encode(), b"S106")  # claim another school, keep the signature
            dst.writestr(info, data)
    tampered = buf.getvalue()
    macro = io.BytesIO()
    with zipfile.ZipFile(macro, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/vbaProject.bin", b"\x00" * 10)
    imap.append(imap.ca, _reply(None, [("form.xlsx", tampered, XLSX)]))
    imap.append(imap.ca, _reply(None, [("operators.xlsm", macro.getvalue(), XLSX)]))
    imap.append(imap.ca, _reply(None, [("operators.xlsx", macro.getvalue(), XLSX)]))
    imap.append(imap.ca, _reply(None, [("big.csv", b"x" * (50 * 1024 * 1024), "text/csv")]))
    out = _run(day, plan, client)
    assert out["read"]["written"] == 0 and out["filed"]["rejected"] == 4
    texts = [m.get_body(("plain",)).get_content() for m in _outbox(day, "receipt", HEAD)]
    assert len(texts) == 4  # the sender is the school's head: each gets a receipt saying why
    joined = "\n".join(texts)
    assert "подпись формы не совпадает" in joined and "книга с макросами не принимается" in joined
    assert "принимаются только файлы .xlsx" in joined and "письмо больше 25 МБ" in joined
    assert not (day.output_dir / "intake" / "operators").exists()


def test_a_form_of_another_school_writes_for_that_school_only(day, imap, client, plan):
    """A forwarded form counts for the organization it was made for; a row naming another one is refused."""
    _, form = _form_of(day)
    other_row = ["S106"] + CHIEF[1:]
    imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF, other_row]), XLSX)],
                                sender="someone@elsewhere.example"))
    _run(day, plan, client)
    assert list((day.output_dir / "intake" / "operators").iterdir()) == [day.output_dir / "intake" / "operators" / SCHOOL]
    text = _outbox(day, "receipt")[0].get_body(("plain",)).get_content()
    assert "строка 3" in text and "S106" in text


def test_an_unknown_sender_without_a_form_gets_no_reply_and_the_message_is_set_aside(day, imap, client, plan):
    from admission.mail.intake import day_rows

    imap.append(imap.ca, _reply(None, [("operators.csv", "Код ОО;ФИО\nS105;Кто-то\n".encode(), "text/csv")],
                                sender="spam@nowhere.example"))
    out = _run(day, plan, client)
    assert out["receipts"]["receipts"] == 0 and out["receipts"]["no_reply"] == 1 and _outbox(day, "receipt") == []
    assert out["filed"]["rejected"] == 1 and _folder(imap, "Отклонено")
    assert [r["outcome"] for r in day_rows(day.store_url, plan.id, DAY)] == ["unknown"]
    # The ministry's report lists it for the administrator.
    from admission import jobs
    from openpyxl import load_workbook

    built = jobs.build_report(day, plan, DAY, dry_run=True)
    sheet = load_workbook(Path(built["folder"]) / f"report_{plan.id}_{DAY}.xlsx", read_only=True)["Почта"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][1] == "spam@nowhere.example" and rows[1][4] == "неизвестный отправитель, без ответа"


def _killed_after_writing(settings, plan, imap) -> int:
    """``read_mailbox`` in a forked process that SIGKILLs itself right after writing a submission (before the
    store says so); returns the child's exit code."""
    import multiprocessing
    import signal

    def child() -> None:
        from admission import jobs
        from admission.mail import intake

        real = intake.write_submission

        def write_then_die(*args, **kwargs):
            real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        intake.write_submission = write_then_die
        jobs.read_mailbox(settings, plan, DAY, imap.client(imap.ca))

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(120)
    return proc.exitcode


def test_the_same_message_twice_and_a_process_killed_after_writing_are_processed_once(day, imap, client, plan,
                                                                                      monkeypatch):
    from admission.mail import intake

    notice, form = _form_of(day)
    raw = _reply(notice, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)], message_id="<same@school>")
    imap.append(imap.ca, raw)
    imap.append(imap.ca, raw)  # delivered twice
    assert _killed_after_writing(day, plan, imap) == -9  # SIGKILL: the file is written, the store still says «read»
    versions = lambda: list((day.output_dir / "intake" / "operators" / SCHOOL).glob("*.csv"))  # noqa: E731
    assert len(versions()) == 1

    def killed(*_a, **_k):
        raise SystemExit("killed before the receipt")

    monkeypatch.setattr(intake, "compose_receipts", killed)
    with pytest.raises(SystemExit):
        _run(day, plan, client)  # the retry finishes the reading, then dies again
    monkeypatch.undo()
    out = _run(day, plan, client)  # and the next retry
    assert out["read"]["new"] == 0  # nothing read a third time
    assert len(versions()) == 1  # one version of the data
    assert len(_outbox(day, "receipt", HEAD)) == 1  # one receipt
    assert len(_folder(imap, "Обработано")) == 2 and not _folder(imap, "INBOX")
    _run(day, plan, client)  # a run with nothing new does nothing
    assert len(_outbox(day, "receipt", HEAD)) == 1


def test_imap_folder_names_are_modified_utf7():
    from admission.mail.intake import imap_utf7

    assert imap_utf7("Обработано") == "&BB4EMQRABDAEMQQ+BEIEMAQ9BD4-"  # RFC 3501: UTF-16, base64 with «,»
    assert imap_utf7("Отклонено/2020") == "&BB4EQgQ6BDsEPgQ9BDUEPQQ+-/2020"
    assert imap_utf7("A&B") == "A&-B"


def test_the_form_carries_a_verifiable_identity_and_lists(day, plan):
    from admission.layout import Layout
    from admission.mail.forms import installation_key, read_identity
    from openpyxl import load_workbook

    _, form = _form_of(day)
    identity, carried = read_identity(form, installation_key(Layout(day.output_dir).form_key))
    assert carried and identity.org_id == SCHOOL and "operators" in identity.datasets
    assert read_identity(form, b"another key") == (None, True)
    wb = load_workbook(io.BytesIO(form))
    assert wb.sheetnames[0] == "Инструкция" and "Операторы ОО" in wb.sheetnames
    ops = wb["Операторы ОО"]
    assert [c.value for c in ops[1]] == ["Код ОО", "ФИО", "Должность", "Роль", "E-mail", "Телефон", "№ приказа",
                                         "Дата приказа"]
    lists = {str(v.sqref): v.formula1 for v in ops.data_validations.dataValidation}
    assert lists["D2:D201"] == '"главный оператор,оператор"'
    assert ops.column_dimensions["H"].number_format == "dd\\.mm\\.yyyy" or ops["H2"].number_format.startswith("dd")
    assert str(REPO)  # the repository is where the plans come from


@pytest.mark.airflow
def test_the_intake_dag_reads_the_mailbox_through_airflows_imap_provider_with_tls_verified(
        airflow_db, demo_dir, tmp_path, monkeypatch, smtp_sink, imap, client, plan):
    from admission import jobs
    from airflow.dag_processing.dagbag import DagBag

    from tests.helpers import set_airflow_env

    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink)
    settings = jobs.Settings(data_dir=demo_dir, output_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'admission.db'}",
                             from_email="monitor@minobr.example")
    jobs.ingest(settings, plan, DAY)
    jobs.check_stages(settings, plan, DAY)
    jobs.compose_digests(settings, plan, DAY, dry_run=False)
    notice, form = _form_of(settings)
    imap.append(imap.ca, _reply(notice, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)]))
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["intake_2020_2021"]
    for task in dag.tasks:
        task.retries = 0
    # Not trusted yet: the server's CA is unknown, so the TLS handshake fails and nothing is read.
    monkeypatch.setenv("AIRFLOW_CONN_ADMISSION_IMAP", imap.conn_json())
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": DAY.isoformat(), "dry_run": False})
    assert "failed" in str(run.get_task_instance("read_mailbox").state)
    # With the CA in the trust store (as an admin installs the national CA): read, answered, filed.
    monkeypatch.setenv("SSL_CERT_FILE", str(imap.ca))
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": DAY.isoformat(), "dry_run": False})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert all("success" in s for s in states.values()), states
    receipts = [m for m in smtp_sink.messages() if m["X-Admission-Kind"] == "receipt"]
    assert [m["To"] for m in receipts] == [HEAD] and receipts[0]["In-Reply-To"]
    assert _folder(imap, "Обработано") and not _folder(imap, "INBOX")


def test_an_organization_with_too_many_rows_still_gets_a_form_of_bounded_size(plan):
    """Several files naming one school can give it more rows than a sheet holds; the day's mail must not fail."""
    import pandas as pd
    from admission.mail.forms import FORM_MAX_ROWS, build_form
    from admission.schema import DATASETS
    from openpyxl import load_workbook

    keys = DATASETS["operators"].keys
    many = pd.DataFrame([[SCHOOL, f"Оператор {i}", "учитель", "оператор", f"op{i}@x.example", None, None, None]
                         for i in range(1_100_000)], columns=keys)
    form = build_form(plan, DAY, SCHOOL, "Школа", [_stage(plan, "operators")], {"operators": many}, b"k", "m@x")
    wb = load_workbook(io.BytesIO(form), read_only=True)
    assert sum(1 for _ in wb["Операторы ОО"].iter_rows()) == FORM_MAX_ROWS + 1
    assert any("включены первые" in str(r[0]) for r in wb["Инструкция"].iter_rows(values_only=True))
