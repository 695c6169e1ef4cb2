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
    assert "сведения приняты" in text and "Операторы ОО, 1 строка" in text and "по подписи формы" in text, text
    assert f"Этап {stage5}." in text and "выполнено" in text
    assert _folder(imap, "Обработано") and not _folder(imap, "INBOX")
    from admission.report import dashboard  # the campaign page's card says where the school's data came from

    card = dashboard.organization(day.store_url, dashboard.Day.load(day.store_url, plan, DAY), SCHOOL)
    assert [(a["outcome_ru"], a["accepted"]) for a in card["answers"]] == [("принято", "Операторы ОО: 1 строка")]
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
    assert "сведения приняты частично" in text and "1 строка" in text
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
    receipts = _outbox(day, "receipt", HEAD)
    texts = [m.get_body(("plain",)).get_content() for m in receipts]
    assert len(texts) == 4  # the sender is the school's head: each gets a receipt saying why
    joined = "\n".join(texts)
    assert "подпись формы не совпадает" in joined and "книга с макросами не принимается" in joined
    assert "принимаются только формы мониторинга" in joined and "письмо больше 25 МБ" in joined
    assert not (day.output_dir / "intake" / "operators").exists()
    # Nothing changed without a valid form; the school's own address is answered with a fresh form.
    assert sum(1 for m in receipts for a in m.iter_attachments() if a.get_filename().startswith("forma_S105_")) == 3


def test_a_form_of_another_school_writes_for_that_school_only(day, imap, client, plan):
    """A forwarded form counts for the organization it was made for; a row naming another one is refused."""
    _, form = _form_of(day)
    other_row = ["S106"] + CHIEF[1:]
    imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF, other_row]), XLSX)],
                                sender="someone@elsewhere.example"))
    _run(day, plan, client)
    assert list((day.output_dir / "intake" / "operators").iterdir()) == [day.output_dir / "intake" / "operators" / SCHOOL]
    receipts = _outbox(day, "receipt")
    # The sender is nobody's address: the receipt goes to the school's head (its data changed), not to the sender.
    assert [str(m["To"]) for m in receipts] == [HEAD]
    text = receipts[0].get_body(("plain",)).get_content()
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
    assert rows[1][1] == "spam@nowhere.example" and rows[1][4] == "неизвестный отправитель или нет формы, без ответа"
    # The report goes out at 07:00, before the day's intake: the next day's report lists the message too.
    nxt = D(2020, 1, 16)
    jobs.ingest(day, plan, nxt)
    jobs.check_stages(day, plan, nxt)
    built = jobs.build_report(day, plan, nxt, dry_run=True)
    sheet = load_workbook(Path(built["folder"]) / f"report_{plan.id}_{nxt}.xlsx", read_only=True)["Почта"]
    assert [r[1] for r in sheet.iter_rows(min_row=2, values_only=True)] == ["spam@nowhere.example"]
    from admission.report import dashboard  # and so does the campaign page

    box = dashboard.mailbox(day.store_url, dashboard.Day.load(day.store_url, plan, nxt))
    assert [m["sender"] for m in box["messages"]] == ["spam@nowhere.example"] and box["attention"] == 1


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


def _reply_in_airflows_day(monkeypatch, demo_dir, tmp_path, smtp_sink, imap, plan) -> None:
    """The demo day judged and mailed in the folders Airflow's tasks use (set_airflow_env), and the school's
    filled form in the INBOX."""
    from admission import jobs

    from tests.helpers import set_airflow_env

    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink)
    settings = jobs.Settings(data_dir=demo_dir, output_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'admission.db'}",
                             from_email="monitor@minobr.example")
    jobs.ingest(settings, plan, DAY)
    jobs.check_stages(settings, plan, DAY)
    jobs.compose_digests(settings, plan, DAY, dry_run=False)
    notice, form = _form_of(settings)
    imap.append(imap.ca, _reply(notice, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)]))


@pytest.mark.airflow
def test_the_intake_dag_reads_the_mailbox_with_tls_verified_whatever_airflows_global_ssl_context_says(
        airflow_db, demo_dir, tmp_path, monkeypatch, smtp_sink, imap, client, plan):
    from airflow.dag_processing.dagbag import DagBag


    _reply_in_airflows_day(monkeypatch, demo_dir, tmp_path, smtp_sink, imap, plan)
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["intake_2020_2021"]
    for task in dag.tasks:
        task.retries = 0
    # Airflow's own IMAP hook would verify nothing with this global setting; the server's CA is unknown, so the
    # TLS handshake must fail and nothing is read.
    monkeypatch.setenv("AIRFLOW__EMAIL__SSL_CONTEXT", "none")
    monkeypatch.setenv("AIRFLOW__IMAP__SSL_CONTEXT", "none")
    monkeypatch.setenv("AIRFLOW_CONN_ADMISSION_IMAP", imap.conn_json())
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": DAY.isoformat(), "dry_run": False})
    assert "failed" in str(run.get_task_instance("read_mailbox").state)
    assert not smtp_sink.messages()
    # With the CA given to this connection only (its ca_bundle extra): read, answered, filed.
    monkeypatch.setenv("AIRFLOW_CONN_ADMISSION_IMAP", imap.conn_json(ca_bundle=str(imap.ca)))
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": DAY.isoformat(), "dry_run": False})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert all("success" in s for s in states.values()), states
    receipts = [m for m in smtp_sink.messages() if m["X-Admission-Kind"] == "receipt"]
    assert [m["To"] for m in receipts] == [HEAD] and receipts[0]["In-Reply-To"]
    assert _folder(imap, "Обработано") and not _folder(imap, "INBOX")
    # A connection that asks for no verification is refused outright.
    monkeypatch.setenv("AIRFLOW_CONN_ADMISSION_IMAP", imap.conn_json(ssl_context="none"))
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": DAY.isoformat(), "dry_run": False})
    assert "failed" in str(run.get_task_instance("read_mailbox").state)


@pytest.mark.airflow
def test_admission_intake_reads_the_mailbox_once_by_hand_and_says_what_became_of_the_messages(
        airflow_db, demo_dir, tmp_path, monkeypatch, smtp_sink, imap, client, plan, capsys):
    """The README's `make intake`: without the connection it says what to set; with it, one run of the DAG."""
    from admission.cli import main


    _reply_in_airflows_day(monkeypatch, demo_dir, tmp_path, smtp_sink, imap, plan)
    imap.append(imap.ca, _reply(None, [], sender="stranger@nowhere.example"))
    monkeypatch.delenv("AIRFLOW_CONN_ADMISSION_IMAP", raising=False)
    assert main(["intake", DAY.isoformat()]) == 2
    assert "admission_imap не задано" in capsys.readouterr().out
    monkeypatch.setenv("AIRFLOW_CONN_ADMISSION_IMAP", imap.conn_json(ca_bundle=str(imap.ca)))
    assert main(["intake", DAY.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "писем прочитано за 2020-01-15 — 2" in out and "принято: 1" in out
    assert "неизвестный отправитель или нет формы, без ответа: 1" in out
    assert [m["To"] for m in smtp_sink.messages() if m["X-Admission-Kind"] == "receipt"] == [HEAD]


@pytest.mark.airflow
def test_the_form_secret_is_masked_and_signs_the_forms(airflow_db, monkeypatch):
    """A Variable named *_secret is one Airflow hides in its UI and API and masks in logs."""
    from admission.adapter import config
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    assert should_hide_value_for_key("admission_form_secret") and not should_hide_value_for_key("admission_form_key")
    rotation = '{"current": "k-2027", "previous": "k-2026", "previous_until": "2027-01-31"}'
    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_FORM_SECRET", rotation)
    assert config.form_secret() == rotation
    from admission.mail.forms import form_keys

    keys = form_keys(Path("/nonexistent/form.key"), rotation)
    assert keys.current == b"k-2027" and keys.previous == b"k-2026" and keys.previous_until == D(2027, 1, 31)


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


# ---------------------------------------------------------------- trust: only a valid form changes data


MOOYSO, MOOYSO_HEAD = "M01", "uo-zarechny@zarechye.example"


def _frames(settings, plan):
    from admission import jobs

    return jobs.intake_frames(settings, plan, DAY)


def _key(settings) -> bytes:
    from admission.mail.forms import installation_key

    return installation_key(settings.layout.form_key, settings.form_key)


def _form(settings, plan, issued: dt.date, org: str = SCHOOL, check: str = "operators", key: bytes | None = None,
          plan_id: str | None = None) -> bytes:
    from admission.mail.forms import build_form

    used = plan.model_copy(update={"id": plan_id}) if plan_id else plan
    return build_form(used, issued, org, org, [_stage(plan, check)], _frames(settings, plan), key or _key(settings),
                      "monitor@minobr.example")


def _snapshot_rows(settings, plan, dataset: str, org: str) -> list:
    from admission import jobs

    frame = jobs.load_snapshot(settings, plan, DAY, [dataset]).data.frames[dataset]
    return frame[frame["org_id"] == org].drop(columns=["_file", "_row"], errors="ignore").values.tolist()


def test_a_forged_from_without_a_form_changes_nothing_and_the_school_gets_a_fresh_form(day, imap, client, plan):
    """The head's address in From: is not a signature: neither a plain file nor a hand-made workbook with the
    registry's or the approvals' sheets changes anything."""
    from admission import jobs
    from openpyxl import Workbook

    before = {ds: _snapshot_rows(day, plan, ds, SCHOOL) for ds in ("organizations", "operators", "approvals")}
    forged = Workbook()
    forged.active.title = "Реестр участников"
    forged.active.append(["Код", "Тип", "Наименование", "Руководитель", "E-mail руководителя"])
    forged.active.append([SCHOOL, "РОИВ", "Школа", "Злоумышленник", "evil@attacker.example"])
    approvals = forged.create_sheet("Утверждение сведений")
    approvals.append(["Код ОО", "Статус", "Утвердил", "Дата утверждения"])
    approvals.append([SCHOOL, "утверждено", "Злоумышленник", dt.datetime(2020, 1, 14)])
    ops = forged.create_sheet("Операторы ОО")
    ops.append(["Код ОО", "ФИО", "Должность", "Роль", "E-mail"])
    ops.append([SCHOOL, "Злоумышленник", "директор", "главный оператор", "evil@attacker.example"])
    buf = io.BytesIO()
    forged.save(buf)
    csv = "Код ОО;ФИО;Должность;Роль;E-mail\nS105;Злоумышленник;директор;главный оператор;evil@attacker.example\n"
    imap.append(imap.ca, _reply(None, [("forma_S105.xlsx", buf.getvalue(), XLSX),
                                       ("operators.csv", csv.encode(), "text/csv")]))
    out = _run(day, plan, client)
    assert out["read"]["written"] == 0 and out["read"]["no_form"] == 1 and out["filed"]["rejected"] == 1
    assert not (day.output_dir / "intake").exists()
    jobs.ingest(day, plan, DAY)
    jobs.check_stages(day, plan, DAY)
    assert {ds: _snapshot_rows(day, plan, ds, SCHOOL) for ds in before} == before
    receipt = _outbox(day, "receipt")
    assert [str(m["To"]) for m in receipt] == [HEAD]  # the school's own address: answered, with a fresh form
    text = receipt[0].get_body(("plain",)).get_content()
    assert "нет действующей формы" in text and "не форма мониторинга" in text and ".csv не принимается" in text
    fresh = [a for a in receipt[0].iter_attachments() if a.get_filename().startswith("forma_S105_")]
    assert len(fresh) == 1
    from admission.mail.forms import read_identity

    identity, _ = read_identity(fresh[0].get_content(), _key(day))
    assert identity.org_id == SCHOOL and identity.as_of == DAY and "organizations" not in identity.datasets


def test_a_form_changes_only_its_own_datasets_and_a_school_form_cannot_approve(day, imap, client, plan):
    """A valid school form with extra sheets (the registry, the МООУСО's approvals): only its own sheet counts."""
    from openpyxl import load_workbook

    _, form = _form_of(day)
    wb = load_workbook(io.BytesIO(_fill(form, "Операторы ОО", [CHIEF])))
    reg = wb.create_sheet("Реестр участников")
    reg.append(["Код", "Тип", "Наименование", "Руководитель", "E-mail руководителя"])
    reg.append([SCHOOL, "РОИВ", "Школа", "Злоумышленник", "evil@attacker.example"])
    appr = wb.create_sheet("Утверждение сведений")
    appr.append(["Код ОО", "Статус", "Утвердил", "Дата утверждения"])
    appr.append([SCHOOL, "утверждено", "Директор", dt.datetime(2020, 1, 14)])
    buf = io.BytesIO()
    wb.save(buf)  # openpyxl keeps the custom property: the signature still verifies
    imap.append(imap.ca, _reply(None, [("form.xlsx", buf.getvalue(), XLSX)]))
    out = _run(day, plan, client)
    assert out["read"]["written"] == 1
    assert sorted(p.name for p in (day.output_dir / "intake").iterdir()) == ["operators"]
    text = _outbox(day, "receipt", HEAD)[0].get_body(("plain",)).get_content()
    assert "лист «Реестр участников»: эти сведения нельзя изменить этой формой" in text
    assert "лист «Утверждение сведений»: эти сведения нельзя изменить этой формой" in text


def test_the_mooyso_approves_its_own_schools_with_its_own_form_only(day, imap, client, plan):
    from admission import jobs

    other = _snapshot_rows(day, plan, "approvals", "S201")
    form = _form(day, plan, DAY, org=MOOYSO, check="approvals")
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(form))["Утверждение сведений"]
    schools = {row[0] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert SCHOOL in schools and "S201" not in schools  # prefilled with its own schools
    rows = [[SCHOOL, "утверждено", "Орлова Дарья Сергеевна", dt.datetime(2020, 1, 15)],
            ["S201", "утверждено", "Орлова Дарья Сергеевна", dt.datetime(2020, 1, 15)]]
    imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Утверждение сведений", rows), XLSX)],
                                sender=MOOYSO_HEAD))
    out = _run(day, plan, client)
    assert out["read"]["written"] == 1
    assert [p.name for p in (day.output_dir / "intake" / "approvals").iterdir()] == [SCHOOL]
    receipts = _outbox(day, "receipt")
    assert [str(m["To"]) for m in receipts] == [MOOYSO_HEAD]  # the МООУСО's data: its head, no school's
    text = receipts[0].get_body(("plain",)).get_content()
    assert "строка 3" in text and "не относится к вашему МООУСО" in text
    jobs.ingest(day, plan, DAY)
    assert [r[1] for r in _snapshot_rows(day, plan, "approvals", SCHOOL)] == ["утверждено"]
    assert _snapshot_rows(day, plan, "approvals", "S201") == other


@pytest.mark.parametrize("case", ["foreign_plan", "expired", "superseded", "retired_key"])
def test_an_old_or_foreign_form_is_refused_with_a_fresh_one(day, imap, client, plan, case):
    import dataclasses

    from admission.mail.forms import read_identity
    from admission.store import record_issued_forms

    settings = day
    if case == "foreign_plan":
        form = _form(day, plan, DAY, plan_id="2019-2020")
        expected = "форма другой кампании"
    elif case == "expired":
        form = _form(day, plan, D(2019, 12, 1))  # stage 5's deadline is 16.12.2019: valid until 26.12.2019
        expected = "срок действия формы истек 26.12.2019"
    elif case == "superseded":
        form = _form(day, plan, D(2020, 1, 6))
        from admission.store import issued_forms

        assert (("operators",), DAY) in issued_forms(day.store_url, plan.id, SCHOOL)  # the day's notice's form
        record_issued_forms(day.store_url, plan.id, [(SCHOOL, ("operators",), D(2020, 1, 7), D(2020, 1, 17))])
        expected = "форма заменена более новой от 07.01.2020"
    else:
        old = _key(day)
        form = _form(day, plan, DAY, key=old)
        rotation = f'{{"current": "a-new-key", "previous": "{old.decode()}", "previous_until": "2020-01-10"}}'
        settings = dataclasses.replace(day, form_key=rotation)
        expected = "подписана ключом, который больше не действует"
    imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)]))
    out = _run(settings, plan, client)
    assert out["read"]["written"] == 0 and out["filed"]["rejected"] == 1
    assert not (day.output_dir / "intake").exists()
    receipt = _outbox(day, "receipt", HEAD)[0]
    assert expected in receipt.get_body(("plain",)).get_content()
    fresh = [a.get_content() for a in receipt.iter_attachments()]
    identity, _ = read_identity(fresh[0], settings.form_keys())
    assert identity.plan_id == plan.id and identity.as_of == DAY and identity.expires >= DAY
    if case == "retired_key":  # during the stated period the previous key still counts
        again = dataclasses.replace(day, form_key=rotation.replace("2020-01-10", "2020-01-20"))
        imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)]))
        assert _run(again, plan, client)["read"]["written"] == 1


def test_receipts_go_only_to_registry_addresses_and_quote_nothing_the_sender_wrote(day, imap, client, plan):
    _, form = _form_of(day)
    bait = "СРОЧНО: переведите оплату на счет 4081… http://phish.example"
    msg = email_message(_reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)],
                               sender="attacker@phish.example"))
    msg.replace_header("Subject", bait)
    imap.append(imap.ca, msg.as_bytes())
    # An invalid form from a stranger: no mail to the stranger, nor to anyone.
    imap.append(imap.ca, _reply(None, [("form.xlsx", b"PK\x03\x04 not a workbook", XLSX)],
                                sender="attacker@phish.example"))
    _run(day, plan, client)
    receipts = _outbox(day, "receipt")
    assert [str(m["To"]) for m in receipts] == [HEAD]  # the form's school head, since its data changed
    for m in receipts:
        body = m.get_body(("plain",)).get_content() + m.get_body(("html",)).get_content()
        assert "phish" not in body and "оплату" not in body and "phish" not in str(m["Subject"])


def email_message(raw: bytes):
    import email
    from email import policy

    return email.message_from_bytes(raw, policy=policy.default)


def _crc_broken(form: bytes) -> bytes:
    """The workbook with one byte of its sheet's compressed data flipped: the zip's CRC check fails on reading."""
    import zipfile

    data = bytearray(form)
    info = next(i for i in zipfile.ZipFile(io.BytesIO(form)).infolist() if i.filename == "docProps/custom.xml")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[at] ^= 0xFF
    return bytes(data)


def test_a_damaged_workbook_and_a_crlf_message_id_do_not_stop_the_mailbox(day, imap, client, plan):
    _, form = _form_of(day)
    filled = _fill(form, "Операторы ОО", [CHIEF])
    imap.append(imap.ca, _reply(None, [("form.xlsx", _crc_broken(filled), XLSX)]))
    crlf = _reply(None, [("form.xlsx", filled, XLSX)], message_id="<x@y>")
    crlf = crlf.replace(b"Message-ID: <x@y>", b"Message-ID: =?utf-8?q?<a=0D=0ABcc:_evil@attacker.example>?=")
    imap.append(imap.ca, crlf)
    out = _run(day, plan, client)
    assert out["read"]["failed"] == 0 and out["read"]["written"] == 1
    assert out["filed"] == {"done": 1, "rejected": 1}
    receipts = _outbox(day, "receipt", HEAD)
    texts = [m.get_body(("plain",)).get_content() for m in receipts]
    assert any("файл поврежден" in t for t in texts)
    for m in receipts:
        assert m["Bcc"] is None and "evil" not in str(m["In-Reply-To"] or "") and "evil" not in m.as_string()


def test_a_poison_message_is_quarantined_after_bounded_attempts_while_the_next_is_processed(day, imap, client, plan,
                                                                                          monkeypatch):
    from admission.mail import intake

    _, form = _form_of(day)
    imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)],
                                message_id="<poison@school>"))
    real = intake.process_message

    def poisoned(msg, ctx, sent_at, message_id, *args, **kwargs):
        if message_id == "<poison@school>":
            raise MemoryError("a message that always breaks the reader")
        return real(msg, ctx, sent_at, message_id, *args, **kwargs)

    monkeypatch.setattr(intake, "process_message", poisoned)
    for attempt in range(intake.MAX_ATTEMPTS):
        out = _run(day, plan, client)
        assert out["read"]["failed"] == 1 and not _folder(imap, "Отклонено")
        if attempt == 0:  # the next message is processed in the same run
            imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)]))
    out = _run(day, plan, client)
    assert out["read"]["quarantined"] == 1 and out["filed"]["rejected"] == 1
    assert len(_folder(imap, "Обработано")) == 1 and len(_folder(imap, "Отклонено")) == 1
    rows = {r["message_id"]: r for r in intake.day_rows(day.store_url, plan.id, DAY)}
    assert rows["<poison@school>"]["outcome"] == "quarantined"
    assert "MemoryError" in rows["<poison@school>"]["result"]["reason"]
    assert len(_outbox(day, "receipt", HEAD)) == 1  # the quarantined message gets no receipt


def test_a_forwarded_reminder_with_the_original_and_the_filled_form_counts_the_filled_one(day, imap, client, plan):
    """S101 has an operator list: its original form is prefilled with it (unchanged), the filled one adds a row."""
    from admission import jobs

    school, head = "S101", "school1-zarechny@zarechye.example"
    original = _form(day, plan, DAY, org=school)
    current = _snapshot_rows(day, plan, "operators", school)
    added = [school, "Петров Петр Петрович", "учитель", "оператор", "petrov.s101@zarechye.example", "", "", None]
    rows = [[c if c == c else None for c in r] for r in current] + [added]
    filled = _fill(original, "Операторы ОО", rows)
    for order in ([filled, original], [original, filled]):
        imap.append(imap.ca, _reply(None, [(f"{i}.xlsx", f, XLSX) for i, f in enumerate(order)], sender=head))
        out = _run(day, plan, client)
        assert out["read"]["written"] == 1
        jobs.ingest(day, plan, DAY)
        names = [r[1] for r in _snapshot_rows(day, plan, "operators", school)]
        assert "Петров Петр Петрович" in names and len(names) == len(current) + 1
    text = _outbox(day, "receipt", head)[0].get_body(("plain",)).get_content()
    assert "не применено: в письме есть" in text


def test_of_two_replies_read_in_one_run_the_one_sent_later_counts(day, imap, client, plan):
    from email.utils import format_datetime

    from admission import jobs

    _, form = _form_of(day)
    corrected = [SCHOOL, "Новикова Анна Сергеевна (исправлено)"] + CHIEF[2:]
    first = _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [CHIEF]), XLSX)])
    second = _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [corrected]), XLSX)])
    now = dt.datetime.now(dt.UTC)

    def dated(raw: bytes, moment: dt.datetime) -> bytes:
        msg = email_message(raw)
        del msg["Date"]
        msg["Date"] = format_datetime(moment)
        return msg.as_bytes()

    imap.append(imap.ca, dated(second, now - dt.timedelta(minutes=5)))  # the correction arrives first (UID order)
    imap.append(imap.ca, dated(first, now - dt.timedelta(minutes=30)))
    out = _run(day, plan, client)
    assert out["read"]["written"] == 2 and out["filed"]["done"] == 2
    jobs.ingest(day, plan, DAY)
    assert [r[1] for r in _snapshot_rows(day, plan, "operators", SCHOOL)] == [corrected[1]]
    texts = [m.get_body(("plain",)).get_content() for m in _outbox(day, "receipt", HEAD)]
    assert sum("позже отправлен другой ответ" in t for t in texts) == 1


def test_a_code_typed_with_cyrillic_letters_or_the_russian_layout_is_the_schools_own(day, imap, client, plan):
    from admission import jobs

    _, form = _form_of(day)
    second = [SCHOOL, "Соколов Иван Иванович", "учитель", "оператор", "sokolov.s105@zarechye.example", "", "", None]
    third = [SCHOOL, "Лисин Олег Петрович", "учитель", "оператор", "lisin.s105@zarechye.example", "", "", None]
    # «Ѕ» (Cyrillic dze) looks like S; «Ы» is S on the Russian layout; «С» (Cyrillic es) looks like C, not S.
    rows = [["Ѕ105"] + CHIEF[1:], ["Ы105"] + second[1:], ["С105"] + third[1:]]
    imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", rows), XLSX)]))
    out = _run(day, plan, client)
    assert out["read"]["written"] == 1
    jobs.ingest(day, plan, DAY)
    assert sorted(r[1] for r in _snapshot_rows(day, plan, "operators", SCHOOL)) == [CHIEF[1], second[1]]
    text = _outbox(day, "receipt", HEAD)[0].get_body(("plain",)).get_content()
    assert "строка 2: код «Ѕ105» (1-я буква — кириллическая «Ѕ») принят как «S105»" in text
    assert "строка 3: код «Ы105» (1-я буква — кириллическая «Ы») принят как «S105»" in text
    assert "строка 4: код «С105» (1-я буква — кириллическая «С») не совпадает ни с одним кодом" in text


def test_a_receipt_names_the_forms_sheet_and_row_in_the_plans_time_zone(day, imap, client, plan):
    """The stage lines of a receipt cite the answer's sheet and row, never the intake folder's files."""
    _, form = _form_of(day)
    no_order = [SCHOOL, "Новикова Анна Сергеевна", "учитель", "главный оператор", "novikova.s105@zarechye.example",
                "", "", None]  # a chief operator below deputy director: stage 5 still lags, with a reason
    imap.append(imap.ca, _reply(None, [("form.xlsx", _fill(form, "Операторы ОО", [no_order]), XLSX)]))
    _run(day, plan, client)
    text = _outbox(day, "receipt", HEAD)[0].get_body(("plain",)).get_content()
    assert "почта/" not in text and ".csv" not in text, text
    assert "(время — московское" in text
