"""The production path without Docker: Airflow components as separate processes.

API server, scheduler, DAG processor and two Celery workers run against
PostgreSQL and Redis on loopback (fresh databases of their own), with an SMTP
server on loopback. A campaign day is triggered, all runs must succeed and
the mail must be exactly what the domain logic decides; then a second day is
triggered and one worker is killed with SIGKILL mid-run: the runs must still
succeed with no message lost or sent twice.

Needs PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379). Skipped with a
message when they are absent, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG = dict(host="127.0.0.1", port=5432, user="postgres")
REDIS_DB = 11

pytestmark = [pytest.mark.services]


def _services_up() -> str | None:
    """None when PostgreSQL and Redis answer, else what is missing."""
    problems = []
    try:
        import psycopg2

        psycopg2.connect(dbname="postgres", connect_timeout=3, **PG).close()
    except Exception as exc:  # any failure means "not usable here"
        problems.append(f"PostgreSQL at 127.0.0.1:5432 ({type(exc).__name__})")
    try:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=3).ping()
    except Exception as exc:
        problems.append(f"Redis at 127.0.0.1:6379 ({type(exc).__name__})")
    return ", ".join(problems) or None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_exec(sql: str, dbname: str = "postgres") -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(dbname=dbname, **PG)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


class Cluster:
    """Airflow processes started for the test, stopped whatever happens."""

    def __init__(self, tmp: Path, data_dir: Path, smtp_port: int):
        tag = secrets.token_hex(4)
        self.meta_db = f"admission_it_airflow_{tag}"
        self.store_db = f"admission_it_store_{tag}"
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.killed: set[str] = set()
        self.api_port = _free_port()
        for db in (self.meta_db, self.store_db):
            _pg_exec(f'CREATE DATABASE "{db}"')
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
        meta_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.meta_db}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ADMISSION"))} | {
            "AIRFLOW_HOME": str(tmp / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # As docker-compose.yaml: the admin's password is the one given to deploy/check_secrets.py.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp / "auth" / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:5432/{self.meta_db}",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "ADMISSION_RETRY_DELAY_SECONDS": "5",
            "GX_ANALYTICS_ENABLED": "false",
            "AIRFLOW_VAR_ADMISSION_DATA_DIR": str(data_dir),
            "AIRFLOW_VAR_ADMISSION_OUTPUT_DIR": str(tmp / "output"),
            "AIRFLOW_CONN_ADMISSION_DB": f"postgresql://postgres@127.0.0.1:5432/{self.store_db}",
            "AIRFLOW_CONN_ADMISSION_SMTP": json.dumps({
                "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
                "extra": {"ssl": "false", "starttls": "false", "from_email": "monitor@region.example"}}),
        }

        self.admin_password = secrets.token_urlsafe(16)
        written = subprocess.run([sys.executable, str(REPO / "deploy" / "check_secrets.py"), "write-passwords",
                                  self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]],
                                 env={"AIRFLOW_ADMIN_USER": "admin", "AIRFLOW_ADMIN_PASSWORD": self.admin_password},
                                 capture_output=True, text=True)
        assert written.returncode == 0, written.stderr

    def airflow(self, *args: str, timeout: int = 300) -> str:
        out = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"airflow {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def start(self, name: str, *args: str) -> None:
        log = (self.tmp / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen([str(BIN / "airflow"), *args], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.killed.add(name)
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)
        deadline = time.time() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for name in list(self.procs):
            self.kill(name, signal.SIGKILL)
        for db in (self.meta_db, self.store_db):
            try:
                _pg_exec(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            except Exception:  # best effort: never mask the test's own failure
                pass

    def query(self, sql: str) -> list[tuple]:
        return _pg_exec(sql, self.meta_db)

    def log_tail(self) -> str:
        out = []
        for name in self.procs:
            text = (self.tmp / f"{name}.log").read_text(errors="replace")
            out.append(f"--- {name} ---\n{text[-1500:]}")
        return "\n".join(out)


def _wait(what: str, predicate, timeout: float, cluster: Cluster, every: float = 2.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        dead = [n for n, p in cluster.procs.items() if p.poll() is not None and n not in cluster.killed]
        if dead:
            pytest.fail(f"{', '.join(dead)} exited while waiting for {what}\n{cluster.log_tail()}")
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}\n{cluster.log_tail()}")


TRIGGER = r"""
import json, sys
from airflow.api.common.trigger_dag import trigger_dag
from airflow.utils.types import DagRunTriggeredByType
day, prefix = sys.argv[1], sys.argv[2]
# The day starts with the snapshot; its Asset starts the eight stage checks and the operator lists.
trigger_dag("ingest_2020_2021", triggered_by=DagRunTriggeredByType.CLI, run_id=f"{prefix}_ingest", conf={"as_of": day})
print("triggered")
"""


def _trigger_day(cluster: Cluster, day: str, prefix: str) -> None:
    out = subprocess.run([sys.executable, "-c", TRIGGER, day, prefix], env=cluster.env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]


def _run_states(cluster: Cluster, prefix: str) -> dict[str, str]:
    """The stage runs the day's ingest run started (through its snapshot Asset), by DAG."""
    rows = cluster.query(
        "SELECT dag_id, state FROM dag_run WHERE dag_id LIKE 'check_2020_2021_stage_%' AND id > "
        f"(SELECT id FROM dag_run WHERE run_id = '{prefix}_ingest') ORDER BY id")
    return dict(rows)


def _notify_runs(cluster: Cluster) -> list[str]:
    return [r[0] for r in cluster.query(
        "SELECT state FROM dag_run WHERE dag_id = 'notify_2020_2021' ORDER BY id")]


def _expected_mail(plan, data, day: dt.date) -> set[tuple[str, str]]:
    import pandas as pd
    from admission.checks.stages import evaluate_stage
    from admission.mail.recipients import plan_digests

    results = pd.concat([evaluate_stage(plan, s, data, day).results for s in plan.stages], ignore_index=True)
    return {(d.recipient.email, d.kind) for d in plan_digests(plan, day, results, data)}


def _received(sink, day: str, report: bool = False) -> list[tuple[str, str]]:
    return [(m["To"].addresses[0].addr_spec, m["X-Admission-Kind"]) for m in sink.messages()
            if m["X-Admission-Date"] == day and (m["X-Admission-Kind"] == "report") == report
            and m["X-Admission-Kind"] != "request"]  # the operator lists run too; their request is tested elsewhere


def _expected_reports(data) -> list[tuple[str, str]]:
    from admission.mail.recipients import Directory

    return sorted((p.email, "report") for p in Directory(data).roiv)


def _login(cluster: Cluster, password: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.api_port}/auth/token", method="POST",
                                     data=json.dumps({"username": "admin", "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _report_runs(cluster: Cluster) -> list[str]:
    return [r[0] for r in cluster.query("SELECT state FROM dag_run WHERE dag_id = 'report_2020_2021' ORDER BY id")]


def test_celery_cluster_runs_a_campaign_day_and_survives_a_killed_worker(tmp_path, demo_dir, demo_data, plan,
                                                                        smtp_sink):
    missing = _services_up()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the production-path services are not reachable: {missing}")
        pytest.skip(f"PostgreSQL/Redis not reachable ({missing}); the distributed test needs both")

    cluster = Cluster(tmp_path, demo_dir, smtp_sink.port)
    try:
        cluster.airflow("db", "migrate", timeout=600)
        cluster.start("api-server", "api-server", "--port", str(cluster.api_port), "--host", "127.0.0.1")
        cluster.start("scheduler", "scheduler")
        cluster.start("dag-processor", "dag-processor")
        cluster.start("worker1", "celery", "worker", "--concurrency", "2", "--celery-hostname", "w1@%h",
                      "--skip-serve-logs", "--without-gossip", "--without-mingle")
        cluster.start("worker2", "celery", "worker", "--concurrency", "2", "--celery-hostname", "w2@%h",
                      "--skip-serve-logs", "--without-gossip", "--without-mingle")

        def api_healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{cluster.api_port}/api/v2/monitor/health",
                                            timeout=3) as resp:
                    return resp.status == 200
            except OSError:
                return False

        _wait("the API server", api_healthy, 180, cluster)
        # The admin logs in with the password from the deployment's .env, and only with it.
        assert _login(cluster, cluster.admin_password) == 201
        assert _login(cluster, cluster.admin_password + "x") == 401
        _wait("the DAG processor to serialize all DAGs", lambda: len(cluster.query(
            "SELECT dag_id FROM serialized_dag")) >= 20, 240, cluster)

        # Day 1: everything healthy.
        _trigger_day(cluster, "2019-12-18", "it_day1")
        states = _wait("day 1 stage runs", lambda: (s := _run_states(cluster, "it_day1")) and len(s) == 8 and all(
            v in ("success", "failed") for v in s.values()) and s, 600, cluster)
        assert set(states.values()) == {"success"}, states
        _wait("day 1 notify run", lambda: "success" in _notify_runs(cluster), 300, cluster)
        _wait("day 1 report run", lambda: "success" in _report_runs(cluster), 300, cluster)
        assert sorted(_received(smtp_sink, "2019-12-18", report=True)) == _expected_reports(demo_data)
        day1 = _received(smtp_sink, "2019-12-18")
        assert sorted(day1) == sorted(_expected_mail(plan, demo_data, dt.date(2019, 12, 18)))
        assert len(day1) == len(set(day1)) > 0

        # Day 2: kill worker 1 (the whole process group: worker, pool, task processes) mid-run.
        notify_before, report_before = len(_notify_runs(cluster)), len(_report_runs(cluster))
        _trigger_day(cluster, "2020-01-15", "it_day2")
        _wait("a task of day 2 to be running", lambda: cluster.query(
            "SELECT count(*) FROM task_instance WHERE dag_id LIKE 'check_%' AND state = 'running'")[0][0] > 0,
            180, cluster, every=0.5)
        cluster.kill("worker1")
        states = _wait("day 2 stage runs", lambda: (s := _run_states(cluster, "it_day2")) and len(s) == 8 and all(
            v in ("success", "failed") for v in s.values()) and s, 900, cluster)
        assert set(states.values()) == {"success"}, states
        _wait("day 2 notify run", lambda: len(_notify_runs(cluster)) > notify_before and _notify_runs(
            cluster)[-1] in ("success", "failed"), 600, cluster)
        assert _notify_runs(cluster)[-1] == "success"
        _wait("day 2 report run", lambda: len(_report_runs(cluster)) > report_before and _report_runs(
            cluster)[-1] in ("success", "failed"), 600, cluster)
        assert _report_runs(cluster)[-1] == "success"
        assert sorted(_received(smtp_sink, "2020-01-15", report=True)) == _expected_reports(demo_data)
        day2 = _received(smtp_sink, "2020-01-15")
        assert sorted(day2) == sorted(_expected_mail(plan, demo_data, dt.date(2020, 1, 15)))
        assert len(day2) == len(set(day2))
        assert cluster.procs["worker2"].poll() is None  # the survivor did the work
    finally:
        cluster.stop()
