"""Workbooks officials open: bold Russian headers, frozen header row, filters, column widths.

Written with XlsxWriter in constant-memory mode: a national report has ~400,000 rows, which
openpyxl needed a minute and gigabytes for; XlsxWriter streams them. (openpyxl still reads them.)
"""

from __future__ import annotations

from pathlib import Path


def new_workbook(path: Path):
    import xlsxwriter

    path.parent.mkdir(parents=True, exist_ok=True)
    return xlsxwriter.Workbook(str(path), {"constant_memory": True, "default_date_format": "dd.mm.yyyy",
                                           "strings_to_numbers": False, "strings_to_formulas": False,
                                           "strings_to_urls": False})


def write_sheet(wb, title: str, header: list[str], rows, widths: list[int]) -> None:
    rows = list(rows)
    ws = wb.add_worksheet(title[:31])
    for i, width in enumerate(widths):
        ws.set_column(i, i, width)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(1, len(rows)), len(header) - 1)
    ws.write_row(0, 0, header, wb.add_format({"bold": True}))
    for r, row in enumerate(rows, start=1):
        ws.write_row(r, 0, [None if v is None or type(v).__name__ == "NAType" or v != v else v for v in row])
