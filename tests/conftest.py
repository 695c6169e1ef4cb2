"""Test setup: an isolated AIRFLOW_HOME per session and the shared fixtures (helpers are in tests/helpers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO, SmtpSink

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
# The website check is off unless a test serves the sites itself (tests/checks/test_sites.py): registries of other
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


@pytest.fixture
def smtp_sink():
    sink = SmtpSink()
    yield sink
    sink.stop()


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


