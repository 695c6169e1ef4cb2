"""The plan as data: the shipped plans, the validation rules, and `admission plan check`."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from admission.plan import PlanError, load_plan, load_plans, parse_plan

REPO = Path(__file__).resolve().parents[1]
PLAN_2020 = REPO / "include" / "plans" / "2020-2021.yaml"
ADMISSION = str(Path(sys.executable).parent / "admission")


def _raw() -> dict:
    return yaml.safe_load(PLAN_2020.read_text(encoding="utf-8"))


def _dump(raw: dict) -> str:
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)


def test_seed_plan_transcribes_all_eight_stages(plan):
    assert [s.number for s in plan.stages] == list(range(1, 9))
    deadlines = {s.number: s.deadline for s in plan.stages}
    assert deadlines == {
        1: None, 2: dt.date(2019, 12, 27), 3: dt.date(2019, 12, 27), 4: dt.date(2019, 12, 16),
        5: dt.date(2019, 12, 16), 6: dt.date(2020, 1, 10), 7: dt.date(2020, 1, 17), 8: dt.date(2020, 1, 20),
    }
    assert plan.campaign.start == dt.date(2019, 12, 1) and plan.campaign.end == dt.date(2020, 9, 5)
    assert plan.timezone == "Europe/Moscow"
    assert "не ниже уровня заместителя директора" in plan.stage(5).text


def test_responsible_and_escalation_follow_the_contract_table(plan):
    assert plan.stage(2).escalation == {"МООУСО": "roiv_head", "ОО": "mooyso_head", "ДОУ": "mooyso_head"}
    assert plan.stage(6).responsible == {"ОО": "rcoko_head"}
    assert plan.stage(7).responsible == {"ОО": "chief_operators"}
    assert plan.stage(8).responsible == {"ОО": "curator"} and plan.stage(8).escalation == {"ОО": "roiv_head"}
    assert plan.stage(4).escalation == {"МООУСО": "roiv_head"}


def test_coming_campaign_is_marked_as_an_example():
    plans = {p.id: p for p in load_plans()}
    assert set(plans) == {"2020-2021", "2027-2028"}
    coming = plans["2027-2028"]
    assert coming.status == "example"
    assert coming.campaign.start == dt.date(2026, 12, 1)
    assert all(s.deadline is None or s.deadline.year in (2026, 2027) for s in coming.stages)


def test_seed_typo_for_stage_8_is_rejected_naming_stages_8_and_7():
    raw = _raw()
    raw["stages"][7]["deadline"] = "2019-01-20"
    with pytest.raises(PlanError) as exc:
        parse_plan(_dump(raw), "copy.yaml")
    assert exc.value.stages == [7, 8]
    text = str(exc.value)
    assert "stage 8" in text and "stage 7" in text and "copy.yaml" in text


def test_deadline_before_a_dependency_is_rejected_even_inside_the_campaign():
    raw = _raw()
    raw["stages"][5]["deadline"] = "2019-12-10"  # stage 6 before stage 5 (2019-12-16)
    with pytest.raises(PlanError) as exc:
        parse_plan(_dump(raw))
    assert exc.value.stages == [5, 6]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.update(timezone="Europe/Nowhere"), "unknown time zone"),
        (lambda r: r["stages"][2].update(deadline="27.12.2019"), "stage 3"),
        (lambda r: r["stages"][3]["responsible"].clear(), "stage 4"),
        (lambda r: r["stages"].append(dict(r["stages"][0])), "stage 1 appears more than once"),
        (lambda r: r["campaign"].update(end="2019-11-01"), "before its start"),
        (lambda r: r["stages"][0].update(check="guess"), "stage 1"),
        (lambda r: r.update(run_at="25:00"), "run_at"),
    ],
)
def test_invalid_plans_name_what_is_wrong(mutate, expected):
    raw = _raw()
    mutate(raw)
    with pytest.raises(PlanError, match=expected):
        parse_plan(_dump(raw))


def test_cli_plan_check_ok_prints_one_line_summary():
    out = subprocess.run([ADMISSION, "plan", "check", str(PLAN_2020)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and "2020-2021" in lines[0] and "8 stages" in lines[0]


def test_cli_plan_check_fails_on_the_typo(tmp_path):
    bad = tmp_path / "plan.yaml"
    bad.write_text(PLAN_2020.read_text(encoding="utf-8").replace("deadline: 2020-01-20", "deadline: 2019-01-20"),
                   encoding="utf-8")
    out = subprocess.run([ADMISSION, "plan", "check", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "stage 8" in out.stderr and "stage 7" in out.stderr and str(bad) in out.stderr


def test_load_plan_reports_unreadable_file(tmp_path):
    broken = tmp_path / "x.yaml"
    broken.write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(broken)
