"""DagBag import and policy tests, and real Airflow runs (dag.test) on the demo region."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock  # noqa: F401
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import airflow_env, set_airflow_env, take_snapshot

REPO = Path(__file__).resolve().parents[2]
PLANS = ("2020_2021", "2027_2028")
PLAN_DAG_KINDS = ("ingest", "notify", "report", "collect_operators", "run_day", "intake")
STAGE_DAG_IDS = sorted(f"check_{plan}_stage_{n}" for plan in PLANS for n in range(1, 9))
PLAN_DAG_IDS = sorted(f"{kind}_{p}" for p in PLANS for kind in PLAN_DAG_KINDS)
SITE_DAG_IDS = sorted(f"check_websites_{p}" for p in PLANS)  # stage 2's website check, off the day's path


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dagbag_imports_without_errors_and_yields_exactly_the_expected_dags(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {*STAGE_DAG_IDS, *PLAN_DAG_IDS, *SITE_DAG_IDS}


@pytest.mark.parametrize("dag_id", SITE_DAG_IDS)
def test_the_website_check_is_its_own_dag_and_no_day_waits_for_it(dagbag, dag_id):
    slug = dag_id.removeprefix("check_websites_")
    dag = dagbag.dags[dag_id]
    assert set(dag.tags) >= {"admission", f"campaign:{slug.replace('_', '-')}", "stage:2"}
    assert "не ждут" in dag.doc_md and "admission_site_check" in dag.doc_md
    _common_policy(dag)
    for other in (f"run_day_{slug}", f"ingest_{slug}", f"check_{slug}_stage_2", f"notify_{slug}"):
        assert not [t for t in dagbag.dags[other].tasks if "website" in t.task_id], other


def _common_policy(dag) -> None:
    assert dag.default_args["owner"] == "admission"
    assert dag.default_args["retries"] >= 1
    assert dag.default_args["retry_delay"] > dt.timedelta(0)
    assert dag.default_args["execution_timeout"] <= dt.timedelta(hours=1)
    assert {"as_of", "dry_run"} <= set(dag.params.keys())
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.retries == dag.default_args["retries"], task.task_id


@pytest.mark.parametrize("dag_id", PLAN_DAG_IDS)
def test_a_plan_dag_follows_the_policy(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    plan_id = dag_id.rsplit("_", 2)[-2] + "-" + dag_id.rsplit("_", 1)[-1]
    example = {"example"} if plan_id == "2027-2028" else set()  # include/plans/2027-2028.yaml: status example
    assert set(dag.tags) == {"admission", f"campaign:{plan_id}"} | example
    assert dag.is_paused_upon_creation is (True if example else None)
    assert f"/admission/?plan={plan_id}" in dag.doc_md
    assert dag.doc_md and ("admission_output_dir" in dag.doc_md or "admission_smtp" in dag.doc_md)
    _common_policy(dag)


@pytest.mark.parametrize("dag_id", STAGE_DAG_IDS)
def test_a_stage_dag_follows_the_policy(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    plan_slug, stage = dag_id.removeprefix("check_").rsplit("_stage_", 1)
    example = {"example"} if plan_slug == "2027_2028" else set()
    assert set(dag.tags) == {"admission", f"campaign:{plan_slug.replace('_', '-')}", f"stage:{stage}"} | example
    assert dag.doc_md and f"Этап {stage}." in dag.doc_md
    _common_policy(dag)


def test_schedule_is_daily_inside_the_campaign_window_and_manual_runs_are_not_bounded(dagbag):
    dag = dagbag.dags["ingest_2020_2021"]
    msk = ZoneInfo("Europe/Moscow")
    events = [e.astimezone(msk) for e in dag.timetable.event_dates]
    assert events[0] == dt.datetime(2019, 12, 1, 7, 0, tzinfo=msk)
    assert events[-1] == dt.datetime(2020, 9, 5, 7, 0, tzinfo=msk)
    assert len(events) == (dt.date(2020, 9, 5) - dt.date(2019, 12, 1)).days + 1
    # No start/end date: Airflow would create no task for a manual run outside them (and show «Success»).
    assert dag.start_date is None and dag.end_date is None


def test_stage_checks_and_operator_lists_run_on_the_days_snapshot(dagbag):
    for dag_id in ("check_2020_2021_stage_1", "check_2020_2021_stage_8", "collect_operators_2020_2021"):
        condition = dagbag.dags[dag_id].timetable.asset_condition
        assert {a.name for a in condition.objects} == {"admission_2020_2021_snapshot"}, dag_id
    ingest = dagbag.dags["ingest_2020_2021"]
    publish = ingest.get_task("publish_snapshot")
    assert [o.name for o in publish.outlets] == ["admission_2020_2021_snapshot"]


def test_stage_doc_quotes_the_plan(dagbag):
    doc = dagbag.dags["check_2020_2021_stage_8"].doc_md
    assert "До 20.01.2020" in doc and "2020-01-20" in doc and "Сотрудники МООУСО, курирующие ОО" in doc


_PARSE_PROBE = r"""
import json, sys
from unittest import mock  # noqa: F401
from zoneinfo import ZoneInfo
calls = []
def spy(name):
    def _f(*a, **k):
        calls.append(name)
        raise AssertionError(f"{name} read at parse time")
    return _f
import airflow.sdk.execution_time.context as ctx
from airflow.sdk.bases.hook import BaseHook
from airflow.sdk import Variable, Connection
with mock.patch.object(ctx, "_get_variable", spy("variable")), \
     mock.patch.object(ctx, "_get_connection", spy("connection")), \
     mock.patch.object(Variable, "get", spy("Variable.get")), \
     mock.patch.object(Connection, "get", spy("Connection.get")), \
     mock.patch.object(BaseHook, "get_connection", spy("BaseHook.get_connection")):
    if sys.argv[1] == "selftest":
        try:
            Variable.get("admission_data_dir")
        except AssertionError:
            pass
    else:
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=sys.argv[1])
        assert not bag.import_errors, bag.import_errors
heavy = sorted(m for m in ("pandas", "great_expectations", "openpyxl", "sqlalchemy.orm.session") if m in sys.modules)
print(json.dumps({"calls": calls, "heavy": heavy}))
"""


def _probe(arg: str) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", _PARSE_PROBE, arg], capture_output=True, text=True,
                         env=os.environ.copy(), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_parsing_reads_no_variable_or_connection_and_imports_no_pandas_or_gx():
    result = _probe(str(REPO / "dags"))
    assert result["calls"] == []
    assert "pandas" not in result["heavy"] and "great_expectations" not in result["heavy"]


def test_the_parse_probe_does_catch_a_variable_read():
    assert _probe("selftest")["calls"] == ["Variable.get"]


@pytest.mark.airflow
def test_dag_test_run_of_stage_5_on_the_demo_region(airflow_db, demo_dir, tmp_path, monkeypatch, dagbag):
    from admission.store import load_results

    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_DATA_DIR", str(demo_dir))
    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_OUTPUT_DIR", str(tmp_path))
    take_snapshot(demo_dir, tmp_path, "2019-12-18")
    dag = dagbag.dags["check_2020_2021_stage_5"]
    logical = dt.datetime(2019, 12, 18, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    run = dag.test(logical_date=logical)
    assert "success" in str(run.state)
    results = load_results(f"sqlite:///{tmp_path / 'admission.db'}", "2020-2021", dt.date(2019, 12, 18))
    assert set(results["stage"]) == {5}
    counts = results["status"].value_counts().to_dict()
    assert counts == {"complete": 24, "overdue": 12}
    s103 = results.set_index("org_id").loc["S103"]
    assert s103["days_overdue"] == 2 and "заместителя директора" in s103["missing"][0]
    # A second run of the same day replaces, never duplicates.
    run = dag.test(logical_date=logical, run_conf={"as_of": "2019-12-18"})
    assert "success" in str(run.state)
    again = load_results(f"sqlite:///{tmp_path / 'admission.db'}", "2020-2021", dt.date(2019, 12, 18))
    assert len(again) == len(results) == 36


@pytest.mark.airflow
def test_manual_run_for_a_date_outside_the_campaign_is_refused_not_silently_green(airflow_db, demo_dir, tmp_path,
                                                                                 monkeypatch, dagbag):
    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_DATA_DIR", str(demo_dir))
    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_OUTPUT_DIR", str(tmp_path))
    take_snapshot(demo_dir, tmp_path, "2019-12-18")
    dag = dagbag.dags["check_2020_2021_stage_2"]
    # Logical date today (years after the campaign), as the trigger form proposes: the run does its work...
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": "2019-12-18"})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert "success" in str(run.state) and "success" in states["check_organizations"], states
    # ... and a judged date outside the campaign fails the run instead of showing «Success» with nothing done.
    run = dag.test(logical_date=dt.datetime(2020, 3, 1, 4, tzinfo=dt.UTC), run_conf={"as_of": "2021-01-10"})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert "failed" in states["resolve_as_of"] and "success" not in str(run.state), states
    from admission.store import load_results

    url = f"sqlite:///{tmp_path / 'admission.db'}"
    assert load_results(url, "2020-2021", dt.date(2021, 1, 10)).empty


@pytest.mark.airflow
def test_make_day_on_2019_12_18_reports_overdue_stages_and_mails_once(airflow_db, demo_dir, tmp_path, smtp_sink):

    env = os.environ.copy() | airflow_env(demo_dir, tmp_path, smtp_sink)
    cmd = [str(Path(sys.executable).parent / "admission"), "day", "2019-12-18"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    table = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit() and len(parts) > 5:
            nums = [int(p) for p in parts[1:] if p.isdigit()]
            table[int(parts[0])] = dict(zip(("complete", "lagging", "overdue"), nums[:3], strict=True))
    assert set(table) == set(range(1, 9)), out.stdout
    assert table[4]["overdue"] > 0 and table[5]["overdue"] > 0
    assert table[6]["overdue"] == 0 and table[7]["overdue"] == 0  # deadlines not reached yet
    delivered = len(smtp_sink.received)
    assert delivered > 0 and "escalation" in out.stdout
    kinds = {m["X-Admission-Kind"] for m in smtp_sink.messages()}
    assert kinds == {"overdue", "escalation", "reminder", "report", "request"}
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(smtp_sink.received) == delivered  # the same day again delivers nothing


def test_notify_dag_waits_for_every_stage_of_its_plan(dagbag):
    dag = dagbag.dags["notify_2020_2021"]
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAll"  # all eight, not any one of them
    names = {a.name for a in condition.objects}
    assert names == {f"admission_2020_2021_stage_{n}_results" for n in range(1, 9)}
    assert [t.task_id for t in dag.tasks] == ["resolve_as_of", "compose_digests", "send_digests"]


@pytest.mark.airflow
def test_notify_dag_delivers_to_smtp_once_across_reruns(airflow_db, demo_data, demo_dir, tmp_path, monkeypatch,
                                                        dagbag, plan, smtp_sink):

    from admission.checks.stages import evaluate_stage
    from admission.store import save_stage

    day = dt.date(2019, 12, 17)
    url = f"sqlite:///{tmp_path / 'admission.db'}"
    for stage in plan.stages:
        out = evaluate_stage(plan, stage, demo_data, day)
        save_stage(url, plan.id, stage.number, day, out.results, out.findings)
    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink, from_name="Мониторинг")
    take_snapshot(demo_dir, tmp_path, day.isoformat())
    dag = dagbag.dags["notify_2020_2021"]
    run = dag.test(logical_date=dt.datetime(2019, 12, 17, 4, tzinfo=dt.UTC), run_conf={"as_of": day.isoformat()})
    assert "success" in str(run.state)
    first = len(smtp_sink.received)
    kinds = {m["X-Admission-Kind"] for m in smtp_sink.messages()}
    assert first > 0 and kinds == {"reminder", "overdue", "escalation"}
    assert all(m["X-Admission-Date"] == "2019-12-17" for m in smtp_sink.messages())
    assert all(m["From"].addresses[0].addr_spec == "monitor@region.example" for m in smtp_sink.messages())
    per_person_and_kind = {(m["To"].addresses[0].addr_spec, m["X-Admission-Kind"]) for m in smtp_sink.messages()}
    assert len(per_person_and_kind) == first  # one digest per person per kind
    run = dag.test(logical_date=dt.datetime(2019, 12, 17, 4, tzinfo=dt.UTC), run_conf={"as_of": day.isoformat()})
    assert "success" in str(run.state)
    assert len(smtp_sink.received) == first
