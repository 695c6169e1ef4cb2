"""Delivery under faults, against a real SMTP server on loopback: what arrives, what twice, what is owed later."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from admission.labels import MAIL_STATUS_RU
from admission.mail.outbox import (
    SmtpTransport,
    TransientError,
    deliver,
    enqueue,
    outbox_counts,
    smtp_settings,
    undelivered,
)
from admission.mail.recipients import KINDS, Digest, Item, Person
from admission.mail.render import render

from tests.helpers import registry, set_airflow_env, take_snapshot, write_csv

D1, D2 = dt.date(2019, 12, 18), dt.date(2019, 12, 19)
OWNER = "notify_2020_2021.send_digests.scheduled__2019-12-18T04:00:00+00:00"


def _digest(day: dt.date, addr: str) -> Digest:
    d = Digest("2020-2021", day, "overdue", Person(addr, "Получатель"))
    d.items.append(Item(5, "S1", "Школа № 1", "ОО", "overdue", dt.date(2019, 12, 16), 2, None,
                        ["нет главного оператора"], "m1@test.example"))
    return d


def _queue(url: str, plan, day: dt.date, addrs: list[str], **kw) -> dict:
    return enqueue(url, "2020-2021", day, [(d.key, d.kind, render(d, plan, "monitor@region.example"))
                                           for d in (_digest(day, a) for a in addrs)], **kw)


def _transport(port: int, timeout: float = 30) -> SmtpTransport:
    return SmtpTransport(smtp_settings("127.0.0.1", port, None, None, {
        "ssl": "false", "starttls": "false", "from_email": "monitor@region.example", "timeout": str(timeout)}))


ADDRS = [f"{c}@x.example" for c in "abcde"]


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


class BusyServer:
    """A server that greets every connection with 421 (too busy) and hangs up, as a loaded relay does."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"421 4.3.2 Service not available, try later\r\n")
            conn.close()

    def close(self):
        self.sock.close()


def test_a_busy_server_421_keeps_everything_for_the_retry(url, plan, smtp_sink):
    _queue(url, plan, D1, ADDRS)
    busy = BusyServer()
    try:
        with pytest.raises(TransientError):
            deliver(url, "2020-2021", D1, _transport(busy.port))
    finally:
        busy.close()
    assert outbox_counts(url, "2020-2021", D1) == {"overdue": {"pending": 5}}
    assert deliver(url, "2020-2021", D1, _transport(smtp_sink.port))["delivered"] == 5
    assert smtp_sink.recipients() == ADDRS


def test_a_stall_past_the_timeout_is_retried_and_nothing_else_is_lost(url, plan, smtp_sink):
    _queue(url, plan, D1, ADDRS)
    smtp_sink.stall_on_rcpt["c@x.example"] = 3
    first = deliver(url, "2020-2021", D1, _transport(smtp_sink.port, timeout=1))
    # The stalled message was tried again on a new connection; the server never took it twice.
    assert first["delivered"] == 5 and smtp_sink.recipients() == ADDRS


def test_a_reply_lost_after_the_server_took_the_message_gives_at_most_one_duplicate(url, plan, smtp_sink):
    _queue(url, plan, D1, ADDRS)
    smtp_sink.hold_after_data.add("c@x.example")
    threading.Timer(4, smtp_sink.release.set).start()
    deliver(url, "2020-2021", D1, _transport(smtp_sink.port, timeout=1))
    got = Counter(smtp_sink.recipients())
    assert set(got) == set(ADDRS) and got["c@x.example"] == 2 and sum(got.values()) == 6
    assert deliver(url, "2020-2021", D1, _transport(smtp_sink.port))["to_deliver"] == 0


SENDER = """
import datetime as dt, sys
from admission.mail.outbox import SmtpTransport, deliver, smtp_settings
url, port, owner = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = SmtpTransport(smtp_settings("127.0.0.1", port, None, None, {"ssl": "false", "starttls": "false"}))
deliver(url, "2020-2021", dt.date(2019, 12, 18), t, owner=owner)
"""


def test_a_sender_killed_mid_batch_and_retried_delivers_every_message_at_most_one_twice(url, plan, smtp_sink):
    _queue(url, plan, D1, ADDRS)
    smtp_sink.hold_after_data.add("c@x.example")  # the third message is taken, its reply held: kill then
    proc = subprocess.Popen([sys.executable, "-c", SENDER, url, str(smtp_sink.port), OWNER])
    try:
        deadline = time.monotonic() + 60
        while "c@x.example" not in smtp_sink.recipients():
            assert proc.poll() is None and time.monotonic() < deadline, "the sender never reached the 3rd message"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    smtp_sink.release.set()
    assert outbox_counts(url, "2020-2021", D1)["overdue"] == {"sent": 2, "sending": 3}  # no release after SIGKILL
    # Airflow's retry of the same task instance: same owner, so the claims are taken back at once.
    retry = deliver(url, "2020-2021", D1, _transport(smtp_sink.port), owner=OWNER)
    assert retry["delivered"] == 3
    got = Counter(smtp_sink.recipients())
    assert set(got) == set(ADDRS) and sum(got.values()) <= len(ADDRS) + 1 and max(got.values()) <= 2
    assert outbox_counts(url, "2020-2021", D1) == {"overdue": {"sent": 5}}


def test_mail_a_day_could_not_send_is_replaced_by_the_next_days_and_reported_undelivered(url, plan, smtp_sink):
    _queue(url, plan, D1, ["a@x.example", "b@x.example"], supersedes=KINDS)
    port = smtp_sink.port
    smtp_sink.stop()
    with pytest.raises(TransientError):  # the server is down all day: every retry spent
        deliver(url, "2020-2021", D1, _transport(port, timeout=2))
    # A dry run of the next day retires nothing; the real run does.
    assert _queue(url, plan, D2, ["a@x.example"], dry_run=True, supersedes=KINDS)["superseded"] == 0
    assert _queue(url, plan, D2, ["a@x.example"], supersedes=KINDS)["superseded"] == 2
    smtp_sink.__init__()
    assert deliver(url, "2020-2021", D1, _transport(smtp_sink.port))["to_deliver"] == 0  # not sent stale
    assert deliver(url, "2020-2021", D2, _transport(smtp_sink.port))["delivered"] == 1
    assert smtp_sink.recipients() == ["a@x.example"]
    [msg] = smtp_sink.messages()
    assert msg["X-Admission-Date"] == D2.isoformat()
    listed = undelivered(url, "2020-2021", D2, since=D1)
    assert sorted(u["recipient"] for u in listed) == ["a@x.example", "b@x.example"]
    assert {u["status"] for u in listed} == {"superseded"} and all(u["as_of"] == D1 for u in listed)
    assert "2019-12-19" in listed[0]["error"]
    assert undelivered(url, "2020-2021", dt.date(2019, 12, 20), since=D2) == []  # listed by one report only
    assert MAIL_STATUS_RU["superseded"].startswith("не доставлено")


OPS = ["ФИО", "Должность", "Роль", "E-mail"]
ACC = ["Код ОО", "ФИО", "Логин", "Статус"]


@pytest.mark.airflow
def test_a_request_recorded_while_smtp_is_down_is_sent_on_the_next_date_and_the_run_goes_red(
        airflow_db, tmp_path, monkeypatch, smtp_sink):
    from airflow.dag_processing.dagbag import DagBag

    data_dir = tmp_path / "data"
    registry(data_dir)
    write_csv(data_dir / "operators" / "S1.csv", OPS, [
        ["Иванова Анна Петровна", "зам. директора по УВР", "главный оператор", "a@t.example"]])
    write_csv(data_dir / "accounts.csv", ACC, [["S1", "Уволенный Иван Иванович", "s1_2", "выдана"]])
    dag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags")).dags["collect_operators_2020_2021"]
    for task in dag.tasks:
        task.retries = 0

    def run(day: str) -> dict[str, str]:
        take_snapshot(data_dir, tmp_path / "out", day)
        r = dag.test(logical_date=dt.datetime.fromisoformat(day + "T04:00:00+00:00"),
                     run_conf={"as_of": day, "dry_run": False})
        return {"run": str(r.state), **{ti.task_id: str(ti.state) for ti in r.get_task_instances()}}

    down = smtp_sink.port
    smtp_sink.stop()
    set_airflow_env(monkeypatch, data_dir, tmp_path / "out", smtp_sink, disable_ssl="true", disable_tls="true",
                    timeout="3")
    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_ADMIN_EMAIL", "admin@region.example")
    assert smtp_sink.port == down
    states = run("2019-12-17")
    assert "failed" in states["send_request"] and "success" not in states["run"], states
    # The admin is told although the mail server is the thing that is down.
    [alert] = list((tmp_path / "out" / "mail" / "alerts").rglob("*.eml"))
    assert b"send_request" in alert.read_bytes()

    smtp_sink.__init__()  # the server is back, on a new port
    set_airflow_env(monkeypatch, data_dir, tmp_path / "out", smtp_sink, disable_ssl="true", disable_tls="true")
    states = run("2019-12-18")
    assert "success" in states["run"], states
    [msg] = smtp_sink.messages()
    assert msg["X-Admission-Kind"] == "request" and msg["X-Admission-Date"] == "2019-12-17"
    assert run("2019-12-19")["run"].endswith("success")  # requested now: nothing again
    assert len(smtp_sink.received) == 1


def test_a_dry_run_then_a_real_run_with_changed_data_delivers_only_the_real_content(url, plan, smtp_sink):
    preview = _digest(D1, "a@x.example")
    preview.items[0].missing = ["старое содержание: нет главного оператора"]
    enqueue(url, "2020-2021", D1, [(preview.key, preview.kind, render(preview, plan, "m@r.example"))],
            dry_run=True)
    assert deliver(url, "2020-2021", D1, _transport(smtp_sink.port))["to_deliver"] == 0  # a preview is not mail
    real = _digest(D1, "a@x.example")
    real.items[0].missing = ["новое содержание: не указан e-mail оператора"]
    enqueue(url, "2020-2021", D1, [(real.key, real.kind, render(real, plan, "m@r.example"))])
    assert deliver(url, "2020-2021", D1, _transport(smtp_sink.port))["delivered"] == 1
    [msg] = smtp_sink.messages()
    text = msg.get_body(("plain",)).get_content()
    assert "новое содержание" in text and "старое содержание" not in text


def test_an_unsent_request_is_retired_when_a_new_set_of_changes_or_none_replaces_it(url, plan):
    from email.message import EmailMessage

    from admission.mail.keys import request_key

    def request(digest: str) -> tuple:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "m@r.example", "rc@test.example", "Заявка"
        msg["Message-ID"] = f"<{digest}@r.example>"
        msg["X-Admission-Stages"], msg["X-Admission-Orgs"] = "6", "S1"
        msg.set_content("заявка")
        return request_key("2020-2021", digest, "rc@test.example"), "request", msg

    enqueue(url, "2020-2021", D1, [request("aaa")], supersedes=("request",))
    assert enqueue(url, "2020-2021", D2, [request("aaa")], supersedes=("request",))["superseded"] == 0  # still owed
    assert enqueue(url, "2020-2021", D2, [request("bbb")], supersedes=("request",))["superseded"] == 1
    assert enqueue(url, "2020-2021", D2, [], supersedes=("request",))["superseded"] == 1  # no changes left
    assert outbox_counts(url, "2020-2021", D1) == {"request": {"superseded": 1}}
