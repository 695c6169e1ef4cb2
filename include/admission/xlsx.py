"""Workbooks officials open: bold Russian headers, frozen header row, filters, column widths.

Write-only (streaming) workbooks: a national report has ~400,000 rows, which the normal openpyxl
model holds as cell objects (gigabytes); streaming keeps memory flat.
"""

from __future__ import annotations


def new_workbook():
    from openpyxl import Workbook

    return Workbook(write_only=True)


def write_sheet(wb, title: str, header: list[str], rows, widths: list[int]) -> None:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    rows = list(rows)
    ws = wb.create_sheet(title[:31])
    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{max(1, len(rows) + 1)}"
    bold = Font(bold=True)
    cells = []
    for value in header:
        cell = WriteOnlyCell(ws, value=value)
        cell.font = bold
        cells.append(cell)
    ws.append(cells)
    for row in rows:
        ws.append(row)
