"""Each stage's organization-level rule on small hand-made data folders."""

from __future__ import annotations

import datetime as dt

import pytest
from admission.checks.stages import evaluate_stage, summarize
from admission.inputs.reader import read_data_folder

from tests.helpers import registry, write_csv

D = dt.date


def _run(plan, folder, stage, as_of):
    out = evaluate_stage(plan, plan.stage(stage), read_data_folder(folder), as_of)
    return out.results.set_index("org_id")


INF = ["Код", "Этап", "Канал", "Дата", "№ протокола", "Темы"]


def test_stage1_esia_informing_lag_and_overdue_windows(plan, tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "informing.csv", INF, [
        ["S1", "1", "сайт", "10.12.2019", "", "ЕСИА"],
        ["S2", "1", "рассылка", "02.12.2019", "", "порядок и сроки"],  # not about ЕСИА
        ["D1", "3", "собрание", "05.12.2019", "1", "ЕСИА; возраст"],  # a meeting that covers ЕСИА counts
    ])
    r = _run(plan, tmp_path, 1, D(2019, 12, 20))
    assert r.loc["S1", "status"] == "complete" and r.loc["D1", "status"] == "complete"
    assert r.loc["S2", "status"] == "lagging"
    assert "ЕСИА" in r.loc["S2", "missing"][0]
    late = _run(plan, tmp_path, 1, D(2020, 2, 15))  # S1: 67 days since its event, S2: 76 since the start
    assert late.loc["S1", "status"] == "overdue" and late.loc["S1", "days_overdue"] == 7
    assert late.loc["S2", "status"] == "overdue" and late.loc["S2", "days_overdue"] == 16
    mid = _run(plan, tmp_path, 1, D(2020, 1, 20))  # 41 days: lagging, not yet overdue
    assert mid.loc["S1", "status"] == "lagging"


def test_stage2_public_information_per_kind(plan, tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "informing.csv", INF, [
        ["M1", "2", "сайт", "09.12.2019", "", ""],
        ["S1", "2", "сайт", "09.12.2019", "", ""],
        ["S1", "2", "стенд", "09.12.2019", "", ""],
        ["S2", "2", "сайт", "09.12.2019", "", ""],
        ["D1", "2", "Стенд", "09.12.2019", "", ""],
    ])
    r = _run(plan, tmp_path, 2, D(2019, 12, 20))
    assert r["status"].to_dict() == {"M1": "complete", "S1": "complete", "S2": "lagging", "D1": "complete"}
    assert any("стенд" in m for m in r.loc["S2", "missing"])
    after = _run(plan, tmp_path, 2, D(2019, 12, 30))
    assert after.loc["S2", "status"] == "overdue" and after.loc["S2", "days_overdue"] == 3


def test_stage2_events_after_the_as_of_date_do_not_count(plan, tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "informing.csv", INF, [["M1", "2", "сайт", "25.12.2019", "", ""]])
    assert _run(plan, tmp_path, 2, D(2019, 12, 20)).loc["M1", "status"] == "lagging"
    assert _run(plan, tmp_path, 2, D(2019, 12, 26)).loc["M1", "status"] == "complete"


@pytest.mark.parametrize(
    ("rows", "status", "says"),
    [
        ([["D1", "3", "собрание", "18.12.2019", "7", "порядок и сроки; возраст; ЕСИА"]], "complete", None),
        ([["D1", "3", "собрание", "18.12.2019", "7", "порядок и сроки, возраст"],
          ["D1", "3", "собрание", "19.12.2019", "8", "есиа"]], "complete", None),
        ([["D1", "3", "собрание", "18.12.2019", "", "порядок и сроки; возраст; ЕСИА"]], "lagging", "протокол"),
        ([["D1", "3", "собрание", "18.12.2019", "7", "порядок и сроки; ЕСИА"]], "lagging", "возраст"),
        ([["D1", "3", "рассылка", "18.12.2019", "7", "порядок и сроки; возраст; ЕСИА"]], "lagging", "собрании"),
    ],
)
def test_stage3_parent_meeting_with_protocol_and_three_topics(plan, tmp_path, rows, status, says):
    registry(tmp_path)
    write_csv(tmp_path / "informing.csv", INF, rows)
    r = _run(plan, tmp_path, 3, D(2019, 12, 20))
    assert list(r.index) == ["D1"]
    assert r.loc["D1", "status"] == status
    if says:
        assert any(says in m for m in r.loc["D1", "missing"])


def test_stage4_replaced_staff_need_an_order_by_the_deadline(plan, tmp_path):
    registry(tmp_path, extra=[["M2", "МООУСО", "УО 2", "", "Х", "m2@t.example", "", "", "", ""],
                              ["M3", "МООУСО", "УО 3", "", "Х", "m3@t.example", "", "", "", ""]])
    header = ["Код МООУСО", "ФИО", "Должность", "E-mail", "Замена", "№ приказа", "Дата приказа"]
    write_csv(tmp_path / "module_staff.csv", header, [
        ["M1", "А", "специалист", "a@t.example", "нет", "", ""],
        ["M2", "Б", "специалист", "b@t.example", "да", "12-о", "10.12.2019"],
        ["M3", "В", "специалист", "c@t.example", "да", "", ""],
    ])
    r = _run(plan, tmp_path, 4, D(2019, 12, 18))
    assert r["status"].to_dict() == {"M1": "complete", "M2": "complete", "M3": "overdue"}
    assert "приказ" in r.loc["M3", "missing"][0]


OPS = ["Код ОО", "ФИО", "Должность", "Роль", "E-mail"]


def test_stage5_operators_chief_position_email_and_duplicates(plan, tmp_path):
    registry(tmp_path, extra=[[f"S{i}", "ОО", f"Школа {i}", "M1", "Х", f"s{i}@t.example", "", "", "", ""]
                              for i in (3, 4)])
    write_csv(tmp_path / "operators.csv", OPS, [
        ["S1", "Аистова А.А.", "Зам. директора по УВР", "главный оператор", "a@t.example"],
        ["S1", "Бобров Б.Б.", "учитель", "оператор", "b@t.example"],
        ["S2", "Волков В.В.", "учитель", "главный оператор", "v@t.example"],
        ["S3", "Гусев Г.Г.", "директор", "главный оператор", "g@t"],
        ["S4", "Дроздова Д.Д.", "директор", "главный оператор", "d@t.example"],
        ["S4", "дроздова  д.д.", "учитель", "оператор", "d2@t.example"],
    ])
    r = _run(plan, tmp_path, 5, D(2019, 12, 16))
    assert r["status"].to_dict() == {"S1": "complete", "S2": "lagging", "S3": "lagging", "S4": "lagging"}
    assert "заместителя директора" in r.loc["S2", "missing"][0]
    assert any("строка 5" in m and "E-mail" in m for m in r.loc["S3", "missing"])
    assert "повторно" in r.loc["S4", "missing"][0]
    after = _run(plan, tmp_path, 5, D(2019, 12, 17))
    assert summarize(after.reset_index()) == {"complete": 1, "lagging": 0, "overdue": 3, "total": 4}


def test_stage6_every_operator_has_an_issued_account_and_no_stale_ones(plan, tmp_path):
    registry(tmp_path, extra=[["S3", "ОО", "Школа 3", "M1", "Х", "s3@t.example", "", "", "", ""]])
    write_csv(tmp_path / "operators.csv", OPS, [
        ["S1", "Аистова А.А.", "директор", "главный оператор", "a@t.example"],
        ["S2", "Бобров Б.Б.", "директор", "главный оператор", "b@t.example"],
        ["S2", "Вишнева В.В.", "учитель", "оператор", "v@t.example"],
    ])
    write_csv(tmp_path / "accounts.csv", ["Код ОО", "ФИО", "Логин", "Статус"], [
        ["S1", "Аистова А.А.", "s1_1", "выдана"],
        ["S2", "Бобров Б.Б.", "s2_1", "выдана"],
        ["S2", "Вишнева В.В.", "s2_2", "запрошена"],
        ["S2", "Уволенный У.У.", "s2_0", "выдана"],
    ])
    r = _run(plan, tmp_path, 6, D(2020, 1, 9))
    assert r["status"].to_dict() == {"S1": "complete", "S2": "lagging", "S3": "lagging"}
    missing = " | ".join(r.loc["S2", "missing"])
    assert "Вишнева" in missing and "Уволенный" in missing
    assert "этап 5" in r.loc["S3", "missing"][0]


def test_stage7_school_card_and_first_classes(plan, tmp_path):
    registry(tmp_path)
    card = ["Школа", "1234567894", "612301001", "1026100000002", "ул. 1", "88005553535", "s@t.example",
            "https://s.example", "Первова"]
    header = ["Код ОО", "Полное наименование", "ИНН", "КПП", "ОГРН", "Адрес", "Телефон", "E-mail", "Сайт",
              "Руководитель"]
    write_csv(tmp_path / "school_cards.csv", header, [["S1", *card], ["S2", *card[:1], "1234567895", *card[2:]]])
    write_csv(tmp_path / "first_grade_classes.csv", ["org_id", "class_name", "capacity", "vacancies"],
              [["S1", "1А", "25", "25"], ["S2", "1А", "25", "20"]], sep=",")
    r = _run(plan, tmp_path, 7, D(2020, 1, 15))
    assert r.loc["S1", "status"] == "complete"
    assert r.loc["S2", "status"] == "lagging" and "контрольное число" in r.loc["S2", "missing"][0]
    (tmp_path / "first_grade_classes.csv").unlink()
    r = _run(plan, tmp_path, 7, D(2020, 1, 15))
    assert "не создан ни один 1-й класс" in r.loc["S1", "missing"]


def test_stage8_latest_decision_counts(plan, tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "approvals.csv", ["Код ОО", "Статус", "Дата утверждения"], [
        ["S1", "на доработке", "10.01.2020"],
        ["S1", "Утверждено", "14.01.2020"],
        ["S2", "утверждено", "10.01.2020"],
        ["S2", "на доработке", "15.01.2020"],
    ])
    r = _run(plan, tmp_path, 8, D(2020, 1, 21))
    assert r["status"].to_dict() == {"S1": "complete", "S2": "overdue"}
    assert "на доработке" in r.loc["S2", "missing"][0]
    assert r.loc["S2", "days_overdue"] == 1


def test_rows_for_unknown_organizations_are_findings_not_results(plan, tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "approvals.csv", ["Код ОО", "Статус"], [["S9", "утверждено"]])
    out = evaluate_stage(plan, plan.stage(8), read_data_folder(tmp_path), D(2020, 1, 15))
    assert "S9" not in set(out.results["org_id"])
    assert any(f.org_id == "S9" and "реестр" in f.message for f in out.findings)


def test_demo_region_has_complete_and_lagging_organizations_in_every_stage(plan, demo_data):
    for stage in plan.stages:
        counts = summarize(evaluate_stage(plan, stage, demo_data, D(2020, 1, 15)).results)
        assert counts["complete"] > 0, stage.number
        assert counts["lagging"] + counts["overdue"] > 0, stage.number


def test_one_read_serves_several_days_and_validations(plan, tmp_path):
    """Derived data is kept on the read data folder: it must follow the date and the row problems."""
    import pandas as pd
    from admission.inputs.rules import Validation, validate_rows

    registry(tmp_path)
    write_csv(tmp_path / "informing.csv", INF, [["M1", "2", "сайт", "25.12.2019", "", ""]])
    write_csv(tmp_path / "operators.csv", OPS, [["S1", "Аистова А.А.", "директор", "главный оператор", "a@t.example"]])
    data = read_data_folder(tmp_path)
    clean = validate_rows(data.frames)
    stage2, stage5 = plan.stage(2), plan.stage(5)

    def status(stage, day, validation, org):
        return evaluate_stage(plan, stage, data, day, validation).results.set_index("org_id").loc[org, "status"]

    assert status(stage2, D(2019, 12, 20), clean, "M1") == "lagging"  # the event is later than the date
    assert status(stage2, D(2019, 12, 26), clean, "M1") == "complete"  # same read, a later date
    assert status(stage5, D(2019, 12, 16), clean, "S1") == "complete"
    ops = data.frames["operators"]
    flagged = pd.concat([clean.failures, pd.DataFrame([{
        "dataset": "operators", "index": ops.index[0], "org_id": "S1", "file": ops.at[ops.index[0], "_file"],
        "row": int(ops.at[ops.index[0], "_row"]), "column": "E-mail", "message": "некорректный e-mail «a@t.example»",
    }])], ignore_index=True)
    # Another validation of the same read: its row problem counts, nothing is served from the first one.
    assert status(stage5, D(2019, 12, 16), Validation(flagged, {}), "S1") == "lagging"
    assert status(stage5, D(2019, 12, 16), clean, "S1") == "complete"


def test_group_lists_and_day_numbers_skip_missing_values():
    import pandas as pd
    from admission.checks.stages import group_lists, ordinals

    keys = pd.Series(["A", None, "B", "A"], dtype="object")
    assert group_lists(keys, pd.Series([1, 2, 3, 4])).to_dict() == {"A": [1, 4], "B": [3]}
    assert group_lists(pd.Series([], dtype="object"), pd.Series([], dtype="object")).empty
    days = ordinals(pd.Series([D(2020, 1, 2), None, D(2020, 1, 1)], index=[5, 6, 7], dtype="object"))
    assert days.index.tolist() == [5, 6, 7] and days[5] - days[7] == 1 and pd.isna(days[6])
