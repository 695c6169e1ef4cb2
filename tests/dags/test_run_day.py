"""`run_day_<plan>`: the whole campaign day in one DAG run, the admin's one control (and `admission day`)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers import REPO, set_airflow_env

D = dt.date


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_run_day_is_manual_and_runs_snapshot_stages_then_every_follow_up(dagbag):
    dag = dagbag.dags["run_day_2020_2021"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # by hand only: no second daily run
    assert not dag.task_dict["read_data_folder"].outlets  # no Asset: the scheduled DAGs are not set off again
    order = {task_id: i for i, task_id in enumerate(t.task_id for t in dag.topological_sort())}
    assert order["resolve_as_of"] < order["read_data_folder"] < order["check_stages"]
    for produce, send in (("compose_digests", "send_digests"), ("build_report", "send_report"),
                          ("collect_operators", "send_request")):
        assert order["read_data_folder"] < order[produce] < order[send] < order["summarize_day"]
    assert order["check_stages"] < order["compose_digests"] and order["check_stages"] < order["build_report"]
    assert "as_of" in dag.doc_md and "dry_run" in dag.doc_md and "summarize_day" in dag.doc_md


@pytest.mark.airflow
def test_a_dry_day_run_today_for_a_campaign_date_judges_every_stage_and_sends_nothing(
        airflow_db, demo_dir, tmp_path, monkeypatch, smtp_sink, dagbag, plan):
    from admission.mail.outbox import outbox_counts
    from admission.store import load_results

    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink)
    dag = dagbag.dags["run_day_2020_2021"]
    url = f"sqlite:///{tmp_path / 'admission.db'}"
    # Triggered today (years after the campaign), as the form proposes, for a campaign date; twice.
    for _ in range(2):
        run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": "2020-01-15", "dry_run": True})
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert "success" in str(run.state) and all("success" in s for s in states.values()), states
    results = load_results(url, plan.id, D(2020, 1, 15))
    assert set(results["stage"]) == {s.number for s in plan.stages}
    summary = run.get_task_instance("summarize_day").xcom_pull(task_ids="summarize_day")
    assert summary["stages"]["5"]["overdue"] == int(((results["stage"] == 5) & (results["status"] == "overdue")).sum())
    assert smtp_sink.received == []  # dry: nothing sent, then or later
    counts = outbox_counts(url, plan.id, D(2020, 1, 15))
    assert counts and all(set(by_status) == {"dry_run"} for by_status in counts.values()), counts
    assert (tmp_path / "reports" / plan.id / "2020-01-15" / "report_2020-2021_2020-01-15.xlsx").exists()


@pytest.mark.airflow
def test_one_failing_stage_turns_the_run_red_but_the_others_mail_and_report_go_out(
        airflow_db, demo_dir, tmp_path, monkeypatch, smtp_sink, dagbag, plan):
    from admission.checks import stages
    from admission.store import load_results

    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink)

    def broken(*_a, **_k):
        raise RuntimeError("simulated failure of the approvals check")

    monkeypatch.setattr(stages, "check_approvals", broken)
    dag = dagbag.dags["run_day_2020_2021"]
    for task in dag.tasks:
        task.retries = 0
    # dry_run given explicitly: dag.test keeps the params of an earlier run of the same DAG object.
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": "2020-01-15", "dry_run": False})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert "failed" in states["summarize_day"] and "success" not in str(run.state), states
    assert all("success" in states[t] for t in ("check_stages", "send_digests", "send_report", "send_request"))
    judged = set(load_results(f"sqlite:///{tmp_path / 'admission.db'}", plan.id, D(2020, 1, 15))["stage"])
    approvals = next(s.number for s in plan.stages if s.check == "approvals")
    assert judged == {s.number for s in plan.stages} - {approvals}
    kinds = {m["X-Admission-Kind"] for m in smtp_sink.messages()}
    assert {"report", "overdue", "escalation"} <= kinds
    report = next(m for m in smtp_sink.messages() if m["X-Admission-Kind"] == "report")
    assert f"{approvals}" in report.get_body(("plain",)).get_content()


@pytest.mark.airflow
def test_a_day_run_without_a_campaign_date_fails_saying_why_instead_of_a_silent_success(
        airflow_db, demo_dir, tmp_path, monkeypatch, dagbag):
    set_airflow_env(monkeypatch, demo_dir, tmp_path)
    dag = dagbag.dags["run_day_2020_2021"]
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": None, "dry_run": False})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert "failed" in states["resolve_as_of"] and "success" not in str(run.state), states
    assert not (tmp_path / "snapshots").exists()  # nothing was read or judged
