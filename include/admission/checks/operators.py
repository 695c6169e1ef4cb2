"""Operator lists of schools (stages 5–6): consolidate, validate, diff against issued accounts.

Schools send their lists (``operators/`` per-school files or one file); an
official used to copy names between spreadsheets to write the request to the
regional center (РЦОКО). Here the lists are merged per МООУСО and for the
region, checked row by row and school by school, and compared with the
``accounts`` dataset to produce the request: who needs a new account, whose
account must be blocked.

Decisions: an operator whose account is ``запрошена`` is already requested
and is not requested again (listed as waiting); an account ``заблокирована``
for a person on the list is requested anew; a person matched by name only
(accounts have no e-mail), so a changed surname shows as one account to block
and one to create, marked as a probable change of name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd

from admission.inputs.reader import DataFolder
from admission.inputs.rules import (
    Validation,
    chief_position_ok,
    is_chief_operator,
    normalize_text,
    validate_rows,
)
from admission.schema import Finding
from admission.xlsx import new_workbook, write_sheet

NAME_RE = r"^[А-ЯЁ][а-яё]+(?:-[А-ЯЁ][а-яё]+)?(?:\s+[А-ЯЁ](?:[а-яё]+|\.))(?:\s*[А-ЯЁ](?:[а-яё]+|\.))?$"
ACTION_CREATE = "создать учетную запись"
ACTION_BLOCK = "заблокировать учетную запись"


def consolidated(data: DataFolder) -> pd.DataFrame:
    """Every operator row of the region with its school and МООУСО names (the admins' list)."""
    ops = data.frames["operators"]
    orgs = data.frames["organizations"].set_index("org_id")
    out = ops.assign(
        school=ops["org_id"].map(orgs["name"]),
        mooyso_id=ops["org_id"].map(orgs["parent_id"]),
    )
    out["mooyso"] = out["mooyso_id"].map(orgs["name"])
    return out.sort_values(["mooyso_id", "org_id", "_file", "_row"], na_position="last").reset_index(drop=True)


def validate(data: DataFolder, validation: Validation | None = None) -> list[Finding]:
    """Row and school rules for operator lists; each finding names the school, file, row and column.

    ``validation``: the row rules' verdicts the snapshot already holds (run once a day by the ingest); without
    it they are run here."""
    ops = data.frames["operators"]
    if validation is None:
        validation = validate_rows({"operators": ops})
    findings = [f for f in validation.findings() if f.dataset == "operators"]
    if ops.empty:
        return findings
    person = normalize_text(ops["full_name"])
    chief = is_chief_operator(ops["role"])

    # Plain lists: a pandas `.at` per finding cost 8 s for the national list's 40,000 findings.
    files, rows, orgs = ops["_file"].tolist(), ops["_row"].tolist(), ops["org_id"].tolist()
    names, positions = ops["full_name"].tolist(), ops["position"].tolist()

    def add(mask: pd.Series, column: str, message) -> None:
        for i in mask.fillna(False).to_numpy(dtype=bool).nonzero()[0]:
            findings.append(Finding("operators", files[i], message(i), row=int(rows[i]), column=column,
                                    org_id=orgs[i]))

    add(chief & ~chief_position_ok(ops["position"]), "Должность",
        lambda i: f"главный оператор в должности «{positions[i]}»: нужна должность не ниже заместителя директора")
    add(ops["full_name"].notna() & ~ops["full_name"].astype("string").str.strip().str.match(NAME_RE, na=False),
        "ФИО", lambda i: f"ФИО «{names[i]}» не похоже на «Фамилия Имя Отчество» или «Фамилия И.О.»")
    dup = person.notna() & pd.DataFrame({"o": ops["org_id"], "p": person}).duplicated(keep="first")
    add(dup, "ФИО", lambda i: f"«{names[i]}» уже указан(а) в списке этой школы")
    chiefs = pd.DataFrame({"o": ops["org_id"], "p": person})[chief & person.notna()]
    schools_per_chief = chiefs.drop_duplicates().groupby("p")["o"].transform("count")
    twice = pd.Series(False, index=ops.index)
    twice.loc[schools_per_chief[schools_per_chief > 1].index] = True
    add(twice, "ФИО", lambda i: f"«{names[i]}» — главный оператор в нескольких школах")
    return findings


def diff_accounts(data: DataFolder, invalid: list[Finding]) -> pd.DataFrame:
    """One row per change the regional center must make, plus the operators already served or waiting.

    Columns: action (create/block/served/waiting), org_id, full_name, position, role, email, phone, login, note.
    Rows of the operator list with a problem are not requested (they must be fixed first).
    """
    # Only the registry's schools, and only rows that name a person: the request to РЦОКО creates and
    # blocks accounts, and a file in the folder is not thereby entitled to either.
    orgs = data.frames["organizations"]
    schools = set(orgs.loc[orgs["kind"] == "ОО", "org_id"])
    ops = data.frames["operators"]
    ops = ops[ops["org_id"].isin(schools).to_numpy() & ops["full_name"].notna().to_numpy()]
    acc = data.frames["accounts"]
    acc = acc[acc["org_id"].isin(schools).to_numpy() & acc["full_name"].notna().to_numpy()]
    bad = {(f.file, f.row) for f in invalid if f.dataset == "operators"}
    ok = ops[[(f, int(r)) not in bad for f, r in zip(ops["_file"], ops["_row"], strict=True)]] if len(ops) else ops
    ok = ok.assign(person=normalize_text(ok["full_name"])).drop_duplicates(["org_id", "person"])
    acc = acc.assign(person=normalize_text(acc["full_name"]), status=normalize_text(acc["status"]))
    latest = acc.drop_duplicates(["org_id", "person"], keep="last")
    merged = ok.merge(latest[["org_id", "person", "status", "login"]], on=["org_id", "person"], how="left")
    action = pd.Series("create", index=merged.index)
    status = merged["status"].astype("string")
    action[(status == "выдана").fillna(False).to_numpy(dtype=bool)] = "served"
    action[(status == "запрошена").fillna(False).to_numpy(dtype=bool)] = "waiting"
    rows = merged.assign(action=action, note="")
    rows.loc[(status == "заблокирована").fillna(False).to_numpy(dtype=bool), "note"] = \
        "ранее заблокирована, требуется новая"
    # Everyone on a list counts as listed, even on a row with a problem: a typo is no reason to block.
    listed = set(zip(ops["org_id"], normalize_text(ops["full_name"]), strict=True))
    not_listed = pd.Series([(o, p) not in listed for o, p in zip(acc["org_id"], acc["person"], strict=True)],
                           index=acc.index, dtype=bool)
    stale = acc[(acc["status"] == "выдана").fillna(False).astype(bool) & not_listed]
    stale = stale.assign(action="block", note="нет в утвержденном списке операторов", position=None, role=None,
                         email=None, phone=None)
    # A changed surname: same school, same first name and patronymic, one to create and one to block.
    rest = lambda p: " ".join(str(p).split()[1:])  # noqa: E731
    creates = rows[rows["action"] == "create"]
    renamed = {(o, rest(p)) for o, p in zip(creates["org_id"], creates["person"], strict=True)}
    mark = [(o, rest(p)) in renamed and rest(p) != "" for o, p in zip(stale["org_id"], stale["person"], strict=True)]
    stale.loc[mark, "note"] = "вероятно, смена ФИО: " + stale.loc[mark, "note"]
    cols = ["action", "org_id", "full_name", "position", "role", "email", "phone", "login", "note"]
    out = pd.concat([rows[cols], stale[cols]], ignore_index=True)
    order = {"create": 0, "block": 1, "waiting": 2, "served": 3}
    return out.sort_values(["org_id", "action", "full_name"], key=lambda s: s.map(order) if s.name == "action" else s
                           ).reset_index(drop=True)


def changes_of(diff: pd.DataFrame) -> pd.DataFrame:
    return diff[diff["action"].isin(["create", "block"])].reset_index(drop=True)


def change_hash(changes: pd.DataFrame) -> str:
    """The identity of a set of changes: the same set is never requested twice."""
    names = normalize_text(changes["full_name"]).fillna("")
    items = sorted(zip(changes["action"], changes["org_id"], names, strict=True))
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode()).hexdigest()[:16]


REQUEST_HEADER = ["МООУСО", "Код ОО", "Образовательная организация", "Действие", "ФИО", "Должность", "Роль",
                  "E-mail", "Телефон", "Логин", "Примечание"]


def request_workbook(changes: pd.DataFrame, data: DataFolder, as_of: dt.date, path: Path) -> Path:
    """The request to РЦОКО: one row per change, grouped by МООУСО and school, ready to attach in VipNet."""

    orgs = data.frames["organizations"].set_index("org_id")
    frame = changes.assign(
        school=changes["org_id"].map(orgs["name"]),
        mooyso=changes["org_id"].map(orgs["parent_id"]).map(orgs["name"]),
        action_ru=changes["action"].map({"create": ACTION_CREATE, "block": ACTION_BLOCK}),
        _order=changes["action"].map({"create": 0, "block": 1}),
    ).sort_values(["mooyso", "org_id", "_order", "full_name"])
    wb = new_workbook(path)
    cols = ["mooyso", "org_id", "school", "action_ru", "full_name", "position", "role", "email", "phone", "login",
            "note"]
    write_sheet(wb, f"Заявка {as_of.strftime('%d.%m.%Y')}", REQUEST_HEADER,
                frame[cols].itertuples(index=False, name=None), [38, 10, 45, 30, 32, 26, 18, 30, 18, 16, 40])
    wb.close()
    return path


def consolidated_workbook(ops: pd.DataFrame, findings: list[Finding], path: Path) -> Path:
    """The region's operator list: a sheet for the region, one per МООУСО, and one of problems."""

    header = ["МООУСО", "Код ОО", "Образовательная организация", "ФИО", "Должность", "Роль", "E-mail", "Телефон",
              "№ приказа", "Дата приказа", "Файл", "Строка"]
    widths = [38, 10, 45, 32, 26, 18, 30, 18, 12, 13, 28, 8]

    cols = ["mooyso", "org_id", "school", "full_name", "position", "role", "email", "phone", "order_no",
            "order_date", "_file", "_row"]

    def rows(frame: pd.DataFrame):
        return frame[cols].itertuples(index=False, name=None)  # the writer leaves missing values empty

    wb = new_workbook(path)
    write_sheet(wb, "Регион", header, rows(ops), widths)
    for (mid, name), part in ops.groupby(["mooyso_id", "mooyso"], sort=True):
        write_sheet(wb, f"{mid} {name}", header, rows(part), widths)  # the writer keeps Excel's name rules
    write_sheet(wb, "Проблемы", ["Код ОО", "Файл", "Строка", "Столбец", "Проблема"],
           [[f.org_id, f.file, f.row, f.column, f.message] for f in findings if f.dataset == "operators"],
           [10, 30, 8, 16, 100])
    wb.close()
    return path
