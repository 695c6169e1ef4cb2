"""The DAG factory on a plan nobody ships: two stages, numbered 3 and 7, listed out of order, with other checks.

Nothing in the factory knows the shipped plans: a region adding a campaign file gets its DAGs from it alone.
"""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import REPO


@pytest.fixture(scope="module")
def made_up(tmp_path_factory):
    from admission.adapter.factory import build_all

    plan = yaml.safe_load((REPO / "include" / "plans" / "2020-2021.yaml").read_text(encoding="utf-8"))
    by_check = {s["check"]: s for s in plan["stages"]}
    operators, approvals = dict(by_check["operators"], number=7), dict(by_check["approvals"], number=3)
    plan |= {"id": "test-2", "title": "Придуманный план из двух этапов", "status": "example",
             "stages": [operators, approvals]}
    folder = tmp_path_factory.mktemp("plans")
    (folder / "test-2.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    return build_all(folder)


def test_a_two_stage_plan_gets_a_dag_per_stage_and_the_days_dags(made_up):
    assert sorted(made_up) == ["check_test_2_stage_3", "check_test_2_stage_7", "collect_operators_test_2",
                               "ingest_test_2", "intake_test_2", "notify_test_2", "report_test_2", "run_day_test_2"]


def test_its_stage_dags_are_tagged_and_documented_from_the_plan(made_up):
    dag = made_up["check_test_2_stage_7"]
    assert set(dag.tags) == {"admission", "campaign:test-2", "stage:7", "example"}  # the made-up plan is an example
    assert dag.is_paused_upon_creation is True
    assert dag.doc_md.startswith("### Этап 7. ") and "`operators`" in dag.doc_md
    assert "Пример плана (status: example)" in dag.doc_md  # the example note comes with every DAG of such a plan


def test_the_mail_waits_for_exactly_its_two_stages_and_the_operator_request_names_them(made_up):
    assets = {a.name for a in made_up["notify_test_2"].timetable.asset_condition.objects}
    assert assets == {"admission_test_2_stage_3_results", "admission_test_2_stage_7_results"}
    assert "(этап 7)" in made_up["collect_operators_test_2"].description


def test_its_run_day_holds_the_same_steps_as_the_scheduled_chain(made_up):
    run_day = {t.task_id for t in made_up["run_day_test_2"].tasks}
    chain = set()
    for dag_id in ("ingest_test_2", "notify_test_2", "report_test_2", "collect_operators_test_2"):
        chain |= {t.task_id for t in made_up[dag_id].tasks}
    assert chain - {"publish_snapshot"} <= run_day
    assert {"check_stages", "summarize_day"} <= run_day
