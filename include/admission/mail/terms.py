"""An official's terms: a data problem said where they can fix it.

The checks word a row problem as the admin's data folder has it — «first_grade_classes.csv, строка 30,
«Вакантные места»: …» — which is right for the admin's card and report, and useless to a school that never saw
that file: its letter carries a form whose sheet «Первые классы» holds the same row as row 3. Before the day's
letters are rendered, :func:`in_officials_terms` rewrites each such item as «в форме организации: лист «Первые
классы», строка 3, «Вакантные места»: …» (the form's sheets list an organization's rows in the order the
snapshot holds them, after one header row: :func:`admission.mail.forms.build_form`); a dataset that no form
carries is named in Russian with the organization's own record number. The stored results are not touched.
"""

from __future__ import annotations

import re

from admission.registry import MAIL_RIGHTS
from admission.schema import DATASETS

_ROW_PROBLEM = re.compile(r"^(?P<file>[^«»:]+?), строка (?P<row>\d+)(?:, «(?P<column>[^»]*)»)?: (?P<message>.*)$",
                          re.DOTALL)
FORM_HEADER_ROWS = 1


class Positions:
    """(file, row) of the data folder -> (dataset, the organization's own record number), from the frames."""

    def __init__(self, frames: dict) -> None:
        self.where: dict[tuple[str, int], tuple[str, int]] = {}
        for name, frame in frames.items():
            if name == "organizations" or frame is None or frame.empty or "_file" not in frame:
                continue
            if MAIL_RIGHTS.get(name) is not None and MAIL_RIGHTS[name].scope == "schools":
                continue  # a МООУСО's sheet of its schools: the order differs; said by dataset below
            seen: dict[object, int] = {}
            for org, file, row in zip(frame["org_id"].tolist(), frame["_file"].tolist(), frame["_row"].tolist(),
                                      strict=True):
                seen[org] = seen.get(org, 0) + 1
                self.where[(str(file), int(row))] = (name, seen[org])
        self.datasets_by_file = {file: name for (file, _), (name, _) in self.where.items()}

    def official(self, text: str) -> str:
        """The problem as the organization can find it, or the text unchanged when it names no row."""
        found = _ROW_PROBLEM.match(text)
        if not found:
            return text
        place = self.where.get((found["file"], int(found["row"])))
        if place is None:
            return text
        name, number = place
        ds = DATASETS[name]
        column = f", «{found['column']}»" if found["column"] else ""
        if name in MAIL_RIGHTS:
            where = f"в форме организации: лист «{ds.ru}», строка {number + FORM_HEADER_ROWS}{column}"
        else:
            where = f"в сведениях «{ds.ru}»: запись {number} организации{column}"
        return f"{where}: {found['message']}"


def in_officials_terms(digests: list, frames: dict) -> None:
    """Rewrite every digest item's problems in the official's terms (in place; an item shared by several
    digests is rewritten once)."""
    positions = Positions(frames)
    done: set[int] = set()
    for digest in digests:
        for item in digest.items:
            if id(item) in done:
                continue
            done.add(id(item))
            item.missing = [positions.official(m) for m in item.missing]
