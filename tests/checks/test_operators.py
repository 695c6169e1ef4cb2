"""Operator lists (stages 5–6): consolidation, checks, the diff with accounts, the request to РЦОКО."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from admission.checks import operators as opmod
from admission.inputs.reader import read_data_folder
from openpyxl import load_workbook

from tests.helpers import registry, set_airflow_env, take_snapshot, write_csv, write_xlsx

OPS = ["ФИО", "Должность", "Роль", "E-mail"]
ACC = ["Код ОО", "ФИО", "Логин", "Статус"]


def test_per_school_forms_in_every_format_are_consolidated(tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "operators" / "S1.csv", OPS, [["Иванова Анна Петровна", "директор", "главный оператор",
                                                        "a@t.example"]], encoding="cp1251")
    write_csv(tmp_path / "operators" / "S2.csv", ["org_id", "full_name", "position", "role", "email"],
              [["S2", "Петров П.П.", "зам. директора по УВР", "главный оператор", "p@t.example"]], sep=",",
              encoding="utf-8-sig")
    write_xlsx(tmp_path / "operators" / "S2.xlsx", OPS, [["Сидорова Мария Ивановна", "учитель", "оператор",
                                                         "s@t.example"]])
    ops = opmod.consolidated(read_data_folder(tmp_path))
    assert list(ops["org_id"]) == ["S1", "S2", "S2"]
    assert set(ops["school"]) == {"Школа № 1", "Школа № 2"} and set(ops["mooyso"]) == {"Управление образования"}


def test_row_and_school_rules_name_school_file_row_and_column(tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "operators.csv", ["Код ОО", *OPS], [
        ["S1", "Иванова Анна Петровна", "секретарь", "главный оператор", "a@t.example"],  # row 2: position
        ["S1", "петров", "учитель", "оператор", "p@t.example"],  # row 3: name form
        ["S1", "Сидорова М.И.", "учитель", "оператор", "s@t.example"],
        ["S1", "Сидорова  М.И.", "учитель", "оператор", "s2@t.example"],  # row 5: twice in the school
        ["S2", "Кузнецов Олег Игоревич", "заместитель директора", "главный оператор", "k@t.example"],
        ["S1", "Кузнецов Олег Игоревич", "Зам. директора", "главный оператор", "k@t.example"],  # two schools
    ])
    found = {(f.org_id, f.row, f.column) for f in opmod.validate(read_data_folder(tmp_path))}
    assert {("S1", 2, "Должность"), ("S1", 3, "ФИО"), ("S1", 5, "ФИО"), ("S2", 6, "ФИО"),
            ("S1", 7, "ФИО")} <= found
    assert not any(org == "S1" and row == 4 for org, row, _ in found)


def _diff(tmp_path, ops_rows, acc_rows):
    registry(tmp_path)
    write_csv(tmp_path / "operators.csv", ["Код ОО", *OPS], ops_rows)
    write_csv(tmp_path / "accounts.csv", ACC, acc_rows)
    data = read_data_folder(tmp_path)
    return opmod.diff_accounts(data, opmod.validate(data)), data


def test_diff_added_removed_renamed_served_and_waiting(tmp_path):
    diff, _ = _diff(tmp_path, [
        ["S1", "Иванова Анна Петровна", "директор", "главный оператор", "a@t.example"],  # served
        ["S1", "Новикова Ольга Игоревна", "учитель", "оператор", "n@t.example"],  # added
        ["S1", "Смирнова Елена Павловна", "учитель", "оператор", "e@t.example"],  # renamed (was Орлова)
        ["S2", "Петров Петр Петрович", "директор", "главный оператор", "p@t.example"],  # waiting
        ["S2", "Федоров Федор Федорович", "учитель", "оператор", "f@t.example"],  # blocked earlier: anew
    ], [
        ["S1", "Иванова Анна Петровна", "s1_1", "выдана"],
        ["S1", "Орлова Елена Павловна", "s1_2", "выдана"],
        ["S1", "Уволенный Иван Иванович", "s1_3", "выдана"],  # removed
        ["S1", "Давно Заблокирован Иванович", "s1_4", "заблокирована"],  # not on the list, already blocked
        ["S2", "Петров Петр Петрович", "s2_1", "запрошена"],
        ["S2", "Федоров Федор Федорович", "s2_2", "заблокирована"],
    ])
    got = {(a, o, n) for a, o, n in zip(diff["action"], diff["org_id"], diff["full_name"], strict=True)}
    assert got == {
        ("served", "S1", "Иванова Анна Петровна"), ("create", "S1", "Новикова Ольга Игоревна"),
        ("create", "S1", "Смирнова Елена Павловна"), ("block", "S1", "Орлова Елена Павловна"),
        ("block", "S1", "Уволенный Иван Иванович"), ("waiting", "S2", "Петров Петр Петрович"),
        ("create", "S2", "Федоров Федор Федорович"),
    }
    notes = dict(zip(diff["full_name"], diff["note"], strict=True))
    assert "смена ФИО" in notes["Орлова Елена Павловна"] and "смена ФИО" not in notes["Уволенный Иван Иванович"]
    assert "заблокирована" in notes["Федоров Федор Федорович"]


def test_a_row_with_a_problem_is_neither_requested_nor_blocked(tmp_path):
    diff, _ = _diff(tmp_path, [
        ["S1", "Иванова Анна Петровна", "директор", "главный оператор", "a@@t"],
        ["S1", "Новикова Ольга Игоревна", "учитель", "оператор", "bad-mail"],
    ], [["S1", "Иванова Анна Петровна", "s1_1", "выдана"]])
    assert opmod.changes_of(diff).empty


def test_request_workbook_rows_grouped_by_mooyso_and_school(tmp_path):
    diff, data = _diff(tmp_path, [
        ["S2", "Петров Петр Петрович", "директор", "главный оператор", "p@t.example"],
        ["S1", "Новикова Ольга Игоревна", "директор", "главный оператор", "n@t.example"],
    ], [["S1", "Уволенный Иван Иванович", "s1_3", "выдана"]])
    path = opmod.request_workbook(opmod.changes_of(diff), data, dt.date(2019, 12, 17), tmp_path / "r.xlsx")
    ws = load_workbook(path).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == tuple(opmod.REQUEST_HEADER)
    assert [(r[1], r[3], r[4]) for r in rows[1:]] == [
        ("S1", "создать учетную запись", "Новикова Ольга Игоревна"),
        ("S1", "заблокировать учетную запись", "Уволенный Иван Иванович"),
        ("S2", "создать учетную запись", "Петров Петр Петрович"),
    ]
    assert rows[1][0] == "Управление образования" and rows[1][7] == "n@t.example"


@pytest.mark.airflow
def test_collect_operators_dag_sends_the_request_once_per_set_of_changes(airflow_db, tmp_path, monkeypatch,
                                                                           smtp_sink):
    from airflow.dag_processing.dagbag import DagBag

    data_dir = tmp_path / "data"
    registry(data_dir)
    write_csv(data_dir / "operators" / "S1.csv", OPS, [
        ["Иванова Анна Петровна", "зам. директора по УВР", "главный оператор", "a@t.example"],
        ["Новикова Ольга Игоревна", "учитель", "оператор", "n@t.example"]], encoding="cp1251")
    write_csv(data_dir / "accounts.csv", ACC, [["S1", "Иванова Анна Петровна", "s1_1", "выдана"],
                                               ["S1", "Уволенный Иван Иванович", "s1_2", "выдана"]])
    set_airflow_env(monkeypatch, data_dir, tmp_path / "out", smtp_sink)
    dag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags")).dags["collect_operators_2020_2021"]

    def run(day: str):
        take_snapshot(data_dir, tmp_path / "out", day)
        r = dag.test(logical_date=dt.datetime.fromisoformat(day + "T04:00:00+00:00"), run_conf={"as_of": day})
        assert "success" in str(r.state)

    run("2019-12-17")
    [msg] = smtp_sink.messages()
    assert msg["X-Admission-Kind"] == "request" and msg["To"].addresses[0].addr_spec == "rc@test.example"
    [att] = list(msg.iter_attachments())
    rows = list(load_workbook(io.BytesIO(att.get_content())).active.iter_rows(values_only=True))[1:]
    assert sorted((r[1], r[3], r[4]) for r in rows) == [
        ("S1", "заблокировать учетную запись", "Уволенный Иван Иванович"),
        ("S1", "создать учетную запись", "Новикова Ольга Игоревна"),
    ]
    assert (tmp_path / "out" / "operators" / "2020-2021" / "2019-12-17" / "operators_2019-12-17.xlsx").exists()
    run("2019-12-18")  # unchanged lists: no second request
    assert len(smtp_sink.received) == 1
    write_csv(data_dir / "operators" / "S2.csv", OPS, [["Петров Петр Петрович", "директор", "главный оператор",
                                                        "p@t.example"]])
    run("2019-12-19")  # a new school's list: a new request
    assert len(smtp_sink.received) == 2
    assert "S2" in smtp_sink.messages()[1]["X-Admission-Orgs"]
