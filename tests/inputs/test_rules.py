"""Row rules: check digits, positions of chief operators, GX failures mapped to rows."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from admission.inputs.rules import chief_position_ok, inn_checksum_ok, ogrn_checksum_ok, validate_rows
from stdnum.ru import inn as std_inn
from stdnum.ru import ogrn as std_ogrn


def test_inn_and_ogrn_check_digits_agree_with_python_stdnum():
    rng = random.Random(7)
    inns = ["".join(str(rng.randint(0, 9)) for _ in range(10)) for _ in range(3000)]
    ogrns = ["1" + "".join(str(rng.randint(0, 9)) for _ in range(12)) for _ in range(3000)]
    ours_inn = inn_checksum_ok(pd.Series(inns)).tolist()
    ours_ogrn = ogrn_checksum_ok(pd.Series(ogrns)).tolist()
    assert ours_inn == [std_inn.is_valid(v) for v in inns]
    assert ours_ogrn == [std_ogrn.is_valid(v) for v in ogrns]
    assert any(ours_inn) and not all(ours_inn)


def test_malformed_numbers_are_left_to_the_format_rule():
    result = inn_checksum_ok(pd.Series(["12345", None, "abcdefghij", "1234567894"]))
    assert result.isna().tolist() == [True, True, True, False]
    assert bool(result.iloc[3]) is True


@pytest.mark.parametrize(
    ("position", "ok"),
    [
        ("директор", True),
        ("Директор школы", True),
        ("зам. директора по УВР", True),
        ("Зам.директора по ВР", True),
        ("заместитель директора", True),
        ("Первый заместитель директора", True),
        ("и.о. директора", True),
        ("И. о. директора", True),
        ("врио директора", True),
        ("исполняющий обязанности директора", True),
        ("зам. дир. по УВР", True),
        ("учитель", False),
        ("учитель начальных классов", False),
        ("секретарь", False),
        ("секретарь директора", False),
        ("помощник директора", False),
        ("заместитель главного бухгалтера", False),
        ("заведующий библиотекой", False),
        ("", False),
        (None, False),
    ],
)
def test_chief_operator_position_rule(position, ok):
    assert chief_position_ok(pd.Series([position], dtype="object")).tolist() == [ok]


def _frame(rows: list[dict], file: str = "f.csv") -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["_file"] = file
    frame["_row"] = range(2, len(frame) + 2)
    return frame


def test_gx_failures_map_back_to_file_row_column_and_org():
    classes = _frame([
        {"org_id": "S1", "class_name": "1А", "capacity": 25, "vacancies": 3, "entered_at": None},
        {"org_id": "S2", "class_name": "2Б", "capacity": 25, "vacancies": 30, "entered_at": None},
        {"org_id": "S3", "class_name": "1В", "capacity": 0, "vacancies": None, "entered_at": None},
    ], "first_grade_classes.csv")
    ops = _frame([
        {"org_id": "S1", "full_name": "А", "position": "директор", "role": "Главный оператор",
         "email": "a@t.example", "phone": None, "order_no": None, "order_date": None},
        {"org_id": "S2", "full_name": "Б", "position": "учитель", "role": "стажер",
         "email": "b@@t", "phone": None, "order_no": None, "order_date": None},
    ], "operators.csv")
    failures = validate_rows({"first_grade_classes": classes, "operators": ops}).failures
    got = {(r.file, r.row, r.column, r.org_id) for r in failures.itertuples()}
    assert got == {
        ("first_grade_classes.csv", 3, "Класс", "S2"),
        ("first_grade_classes.csv", 3, "Вакантные места", "S2"),
        ("first_grade_classes.csv", 4, "Количество мест", "S3"),
        ("first_grade_classes.csv", 4, "Вакантные места", "S3"),
        ("operators.csv", 3, "Роль", "S2"),
        ("operators.csv", 3, "E-mail", "S2"),
    }
    msg = failures[(failures["column"] == "E-mail")]["message"].iloc[0]
    assert "b@@t" in msg


def test_school_card_rules_cover_formats_and_check_digits():
    card = {"org_id": "S1", "full_name": "Школа", "short_name": None, "inn": "1234567894", "kpp": "612301001",
            "ogrn": "1026100000002", "address": "ул. 1", "phone": "+7 (800) 555-35-35", "email": "s@t.example",
            "website": "https://s.example", "head_name": "Х", "updated_at": None}
    bad = card | {"org_id": "S2", "inn": "1234567895", "kpp": "6123", "website": "s.example", "phone": None}
    failures = validate_rows({"school_cards": _frame([card, bad])}).failures
    assert set(failures["org_id"]) == {"S2"}
    assert set(failures["column"]) == {"ИНН", "КПП", "Сайт", "Телефон"}


@pytest.mark.slow
def test_great_expectations_noise_stays_out_of_the_info_log(demo_dir):
    """A task log at INFO carries the product's lines, not GX's import chatter (213 of 234 lines before)."""
    import subprocess
    import sys

    code = ("import io, logging; s = io.StringIO(); logging.basicConfig(level=logging.INFO, stream=s)\n"
            "from admission.inputs.reader import read_data_folder; from admission.inputs.rules import validate_rows\n"
            f"validate_rows(read_data_folder({str(demo_dir)!r}).frames, (1, 2, 3))\n"
            "print(s.getvalue())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "GX_ANALYTICS_ENABLED": "false"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "great_expectations" not in out.stdout and "Skipping registering" not in out.stdout, out.stdout[:2000]
