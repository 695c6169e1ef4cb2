"""Test setup: an isolated AIRFLOW_HOME per session, the demo region, small-file helpers."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="admission-test-airflow-"))

# Before anything imports Airflow: an isolated home, our DAGs, no examples, no analytics.
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
for key in [k for k in os.environ if k.startswith(("AIRFLOW_VAR_ADMISSION", "AIRFLOW_CONN_ADMISSION"))]:
    del os.environ[key]
os.environ.pop("ADMISSION_DEMO_SITES", None)
# The website check is off unless a test serves the sites itself (tests/test_websites.py): registries of other
# tests name sites that must not be fetched.
os.environ["AIRFLOW_VAR_ADMISSION_SITE_CHECK"] = '{"enabled": false}'

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB for real Airflow runs."""
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _HOME


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    from admission.tools.demo import generate

    out = tmp_path_factory.mktemp("demo")
    generate(out)
    return out


@pytest.fixture(scope="session")
def demo_data(demo_dir):
    from admission.inputs.reader import read_data_folder

    return read_data_folder(demo_dir)


@pytest.fixture(scope="session")
def plan():
    from admission.plan import load_plan

    return load_plan(REPO / "include" / "plans" / "2020-2021.yaml")


def write_csv(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8",
              sep: str = ";") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    from openpyxl import Workbook

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


ORG_HEADER = ["Код", "Тип", "Наименование", "Код МООУСО", "Руководитель", "E-mail руководителя", "Официальный сайт",
              "ИНН", "Куратор МООУСО", "E-mail куратора"]


def registry(folder: Path, extra: list[list[object]] | None = None) -> Path:
    """A small registry: ministry, regional center, one МООУСО with two schools and one preschool."""
    rows = [
        ["MIN", "РОИВ", "Министерство", "", "Тестов Т.Т.", "min@test.example", "", "", "", ""],
        ["RC", "РЦОКО", "РЦОКО", "", "Центров Ц.Ц.", "rc@test.example", "", "", "", ""],
        ["M1", "МООУСО", "Управление образования", "", "Главнов Г.Г.", "uo@test.example", "https://uo.test.example",
         "", "", ""],
        ["S1", "ОО", "Школа № 1", "M1", "Первова П.П.", "s1@test.example", "https://s1.test.example", "1234567894",
         "Куратова К.К.", "cur@test.example"],
        ["S2", "ОО", "Школа № 2", "M1", "Второв В.В.", "s2@test.example", "https://s2.test.example", "1234567894",
         "", ""],
        ["D1", "ДОУ", "Детский сад № 1", "M1", "Садова С.С.", "d1@test.example", "", "", "", ""],
        *(extra or []),
    ]
    return write_csv(folder / "organizations.csv", ORG_HEADER, rows)


class SmtpSink:
    """A real SMTP server on loopback (aiosmtpd) that records what reaches it and can misbehave."""

    def __init__(self):
        import asyncio
        import socket
        import threading

        from aiosmtpd.controller import Controller

        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()  # recipients answered with 550
        self.defer: set[str] = set()  # recipients answered with 451
        self.drop_on_rcpt: set[str] = set()  # close the connection when these are named (once each)
        self.stall_on_rcpt: dict[str, float] = {}  # answer these only after so many seconds (once each)
        # Take the message, then hold the reply until `release` is set (once each): the sender cannot know.
        self.hold_after_data: set[str] = set()
        self.release = threading.Event()
        self.connections = 0
        sink = self

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                sink.connections += 1
                session.host_name = hostname
                return responses

            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                if address in sink.drop_on_rcpt:
                    sink.drop_on_rcpt.discard(address)
                    server.transport.close()
                    return "421 closing"
                if address in sink.stall_on_rcpt:
                    await asyncio.sleep(sink.stall_on_rcpt.pop(address))
                if address in sink.refuse:
                    return "550 5.1.1 mailbox unavailable"
                if address in sink.defer:
                    return "451 4.3.0 try again later"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                sink.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
                                      or envelope.content))
                held = sink.hold_after_data & set(envelope.rcpt_tos)
                if held:
                    sink.hold_after_data -= held
                    for _ in range(600):  # at most 30 s
                        if sink.release.is_set():
                            break
                        await asyncio.sleep(0.05)
                return "250 Message accepted"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, decode_data=False)
        self.controller.start()

    def conn_json(self, **extra: str) -> str:
        """The `admission_smtp` connection (environment form) pointing at this sink."""
        import json

        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"ssl": "false", "starttls": "false", "from_email": "monitor@region.example",
                                     **extra}})

    def messages(self):
        from email import message_from_bytes, policy

        return [message_from_bytes(raw, policy=policy.default) for _, _, raw in self.received]

    def recipients(self) -> list[str]:
        return sorted(r for _, rcpts, _ in self.received for r in rcpts)

    def stop(self):
        self.release.set()
        self.controller.stop()


@pytest.fixture
def smtp_sink():
    sink = SmtpSink()
    yield sink
    sink.stop()


def airflow_env(data_dir: Path, output_dir: Path, sink: SmtpSink | None = None, **smtp_extra: str) -> dict[str, str]:
    """The Variables (and SMTP connection) a task reads, as environment variables."""
    env = {"AIRFLOW_VAR_ADMISSION_DATA_DIR": str(data_dir), "AIRFLOW_VAR_ADMISSION_OUTPUT_DIR": str(output_dir)}
    if sink is not None:
        env["AIRFLOW_CONN_ADMISSION_SMTP"] = sink.conn_json(**smtp_extra)
    return env


def set_airflow_env(monkeypatch, *args, **kwargs) -> None:
    for key, value in airflow_env(*args, **kwargs).items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for the project's store (127.0.0.1:5432, trust); dropped afterwards.

    Skipped when PostgreSQL is not reachable, except under CI=true, where that is a failure.
    """
    import secrets

    import psycopg2

    try:
        admin = psycopg2.connect(dbname="postgres", host="127.0.0.1", port=5432, user="postgres", connect_timeout=3)
    except Exception as exc:  # not reachable here
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL at 127.0.0.1:5432 is not reachable ({type(exc).__name__})")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 not reachable ({type(exc).__name__})")
    name = f"admission_store_{secrets.token_hex(4)}"
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def take_snapshot(data_dir: Path, output_dir: Path, as_of: str, plan_file: str = "2020-2021.yaml") -> dict:
    """What the day's ``ingest_<plan>`` DAG does before the checks: the snapshot the stage, mail, report and
    operator DAGs read (they never read the data folder)."""
    import datetime as dt

    from admission import jobs
    from admission.plan import load_plan

    settings = jobs.Settings(data_dir=Path(data_dir), output_dir=Path(output_dir), store_url="sqlite://")
    return jobs.ingest(settings, load_plan(REPO / "include" / "plans" / plan_file), dt.date.fromisoformat(as_of))
