"""The hand-written workbook writer, read back by three independent readers."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from admission.xlsx import column_letter, new_workbook, write_sheet
from openpyxl import load_workbook
from python_calamine import CalamineWorkbook

ROWS = [
    ["ООО «Ромашка» & <Лютик>", dt.date(2020, 1, 15), 5, "строка\x01с управляющим символом"],
    [None, dt.datetime(2020, 1, 15, 10, 30), np.int64(7), pd.NA],
    [True, pd.Timestamp("2020-02-01"), 2.5, ""],
    ["x" * 40_000, None, float("nan"), "последняя"],
]


@pytest.fixture
def book(tmp_path: Path) -> Path:
    wb = new_workbook(tmp_path / "book.xlsx")
    write_sheet(wb, "Этап: [1]/2", ["Код", "Дата", "Число", "Текст"], ROWS, [10, 12, 8, 40])
    write_sheet(wb, "этап: [1]/2", ["Пусто"], [], [5])
    wb.close()
    return tmp_path / "book.xlsx"


def test_column_letters() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 51, 52, 701, 702)] == ["A", "Z", "AA", "AZ", "BA", "ZZ", "AAA"]


def test_openpyxl_reads_values_styles_and_layout(book: Path) -> None:
    wb = load_workbook(book)
    # Excel forbids []:*?/\ in sheet names and repeated names (ignoring case).
    assert wb.sheetnames == ["Этап 1 2", "этап 1 2 (2)"]
    ws = wb["Этап 1 2"]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:D5"
    assert [ws.column_dimensions[c].width for c in "ABCD"] == [10, 12, 8, 40]
    assert all(cell.font.b for cell in ws[1])
    values = list(ws.iter_rows(values_only=True))
    assert values[0] == ("Код", "Дата", "Число", "Текст")
    assert values[1][0] == "ООО «Ромашка» & <Лютик>" and values[1][2] == 5
    assert values[1][1] == dt.datetime(2020, 1, 15) and ws["B2"].number_format == r"dd\.mm\.yyyy"
    assert values[2][1] == dt.datetime(2020, 1, 15, 10, 30) and values[2][2] == 7 and values[2][3] is None
    assert values[3][0] is True and values[3][2] == 2.5 and values[3][3] is None
    assert len(values[4][0]) == 32_767 and values[4][0].endswith("…")  # Excel's cell limit
    assert values[4][2] is None and values[4][3] == "последняя"
    assert list(wb["этап 1 2 (2)"].iter_rows(values_only=True)) == [("Пусто",)]


def test_calamine_reads_what_the_reader_would(book: Path) -> None:
    sheet = CalamineWorkbook.from_path(str(book)).get_sheet_by_index(0).to_python()
    assert sheet[1][0] == "ООО «Ромашка» & <Лютик>"
    assert sheet[1][1] == dt.date(2020, 1, 15)
    assert sheet[1][3] == "строка\x01с управляющим символом"  # control characters survive as _x0001_


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed here")
def test_libreoffice_opens_it(book: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    subprocess.run(["soffice", "--headless", "--convert-to",
                    'csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1',
                    str(book), "--outdir", str(out)], check=True, capture_output=True, timeout=120)
    files = sorted(out.glob("*.csv"))
    assert [f.stem.split("-", 1)[1] for f in files] == ["Этап 1 2", "этап 1 2 (2)"]
    rows = list(csv.reader(files[0].open(encoding="utf-8")))
    assert rows[0] == ["Код", "Дата", "Число", "Текст"] and rows[1][0] == "ООО «Ромашка» & <Лютик>"
