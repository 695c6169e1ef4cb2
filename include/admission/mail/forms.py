"""The organization's own form: one workbook attached to its reminders and overdue notices, returned by mail.

A sheet per dataset its open stages need (the check registry's ``form`` datasets), the contract's Russian
headers, prefilled with the rows the product already has for the organization, drop-down lists for
enumerations, date columns formatted as dates, and an instruction sheet. The form carries its identity —
plan, organization, stages, date, datasets — signed with HMAC-SHA256 in a custom document property
(``admission_form``). The key is the installation's (Variable ``admission_form_key``, else a key file in the
output folder), never in the workbook: a returned form proves which organization it was made for, so a form
forwarded by someone else still counts for its own organization and for no other (admission.mail.intake).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import os
import re
import secrets
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

from admission.registry import CHECKS, informing_stages
from admission.schema import CHANNELS, DATASETS, OPERATOR_ROLES, cell_value
from admission.xlsx import Workbook

FORM_PROPERTY = "admission_form"
# Rows prefilled per sheet: an organization has a few; a data folder that gives one thousands (several files
# naming it) must not make a form too large to mail, or a sheet larger than Excel holds, which failed the
# whole day's mail.
FORM_MAX_ROWS = 1000
YES_NO = ("да", "нет")
# Typical positions offered in the list (any other may be typed: the list does not refuse it).
POSITIONS = ("директор", "и.о. директора", "заместитель директора", "учитель", "секретарь", "главный специалист",
             "ведущий специалист")


@dataclass(frozen=True)
class FormIdentity:
    plan_id: str
    org_id: str
    stages: tuple[int, ...]
    as_of: dt.date
    datasets: tuple[str, ...]

    def payload(self) -> str:
        return "|".join([self.plan_id, self.org_id, ",".join(map(str, self.stages)), self.as_of.isoformat(),
                         ",".join(self.datasets)])


def sign(identity: FormIdentity, key: bytes) -> str:
    payload = identity.payload()
    return payload + "|" + hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


def verify(value: str, key: bytes) -> FormIdentity | None:
    """The identity a signed value names, or None when the signature does not match (tampered, another key)."""
    payload, _, signature = value.rpartition("|")
    expected = hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()
    if not payload or not hmac.compare_digest(signature, expected):
        return None
    try:
        plan_id, org_id, stages, day, datasets = payload.split("|")
        return FormIdentity(plan_id, org_id, tuple(int(s) for s in stages.split(",") if s), dt.date.fromisoformat(day),
                            tuple(d for d in datasets.split(",") if d in DATASETS))
    except ValueError:
        return None


def installation_key(key_file: Path, configured: str | None = None) -> bytes:
    """The HMAC key: the configured one (Variable ``admission_form_key``), else a random key made once in the
    output folder (``key_file``: ``form.key``, readable by the owner only), so that the demo and a small installation work."""

    if configured:
        return configured.encode("utf-8")
    path = Path(key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        os.replace(path.with_suffix(".tmp"), path)
    return path.read_text().strip().encode("utf-8")


def attachments_for(plan, as_of: dt.date, frames: dict, key: bytes, reply_to: str, max_orgs: int = 20):
    """``attach(digest)`` for mail.render_all: a form per organization of a reminder or overdue notice (an
    escalation carries none: its reader supervises, the organization fills in). Forms are built once per
    (organization, stages) for the day and shared by every recipient of that organization."""
    names = {}
    orgs = frames.get("organizations")
    if orgs is not None and not orgs.empty:
        names = dict(zip(orgs["org_id"].tolist(), orgs["name"].tolist(), strict=True))
    built: dict[tuple[str, tuple[int, ...]], bytes | None] = {}
    grouped: dict = {}

    def attach(digest) -> list[tuple[str, bytes]] | None:
        if digest.kind not in ("reminder", "overdue"):
            return None
        stages: dict[str, set[int]] = {}
        for item in digest.items:
            stages.setdefault(item.org_id, set()).add(item.stage)
        if len(stages) > max_orgs:
            return None
        out = []
        for org_id, numbers in sorted(stages.items()):
            key_ = (org_id, tuple(sorted(numbers)))
            if key_ not in built:
                built[key_] = build_form(plan, as_of, org_id, str(names.get(org_id, org_id)), sorted(numbers), frames,
                                         key, reply_to, grouped)
            if built[key_] is not None:
                out.append((file_name(org_id, as_of), built[key_]))
        return out or None

    return attach


def form_datasets(plan, stages: list[int]) -> list[str]:
    """Datasets an organization fills in for these stages of the plan (admission.registry: ``form``)."""

    out: list[str] = []
    for number in sorted(stages):
        for name in CHECKS[plan.stage(number).check].form:
            if name not in out:
                out.append(name)
    return out


def sheet_dataset(title: str) -> str | None:
    """The dataset whose Russian title a form sheet bears."""
    folded = " ".join(title.split()).casefold()
    return next((d.name for d in DATASETS.values() if d.ru.casefold() == folded), None)


def _choices(plan, name: str) -> dict[str, tuple[str, ...]]:
    if name == "operators":
        return {"role": OPERATOR_ROLES, "position": POSITIONS}
    if name == "informing":
        return {"channel": CHANNELS, "stage": tuple(str(n) for n in informing_stages(plan))}
    if name == "module_staff":
        return {"replaced": YES_NO, "position": POSITIONS}
    return {}


def file_name(org_id: str, as_of: dt.date) -> str:
    """An ASCII attachment name (mail clients show it as is)."""
    return f"forma_{re.sub(r'[^0-9A-Za-z_-]+', '_', org_id)[:40]}_{as_of.isoformat()}.xlsx"


def build_form(plan, as_of: dt.date, org_id: str, org_name: str, stages: list[int], frames: dict, key: bytes,
               reply_to: str, grouped: dict | None = None) -> bytes | None:
    """The organization's workbook for these stages, or None when they need no form (e.g. accounts, approvals).
    ``grouped``: a dict kept across the day's forms (rows grouped by organization once)."""

    datasets = form_datasets(plan, stages)
    if not datasets:
        return None
    identity = FormIdentity(plan.id, org_id, tuple(sorted(stages)), as_of, tuple(datasets))
    with tempfile.TemporaryDirectory(prefix="admission-form-") as tmp:
        path = Path(tmp) / "form.xlsx"
        wb = Workbook(path)
        wb.properties[FORM_PROPERTY] = sign(identity, key)
        lines = [
            f"Форма организации: {org_name} (код {org_id}).",
            f"Этапы плана: {', '.join(map(str, sorted(stages)))}; форма подготовлена {as_of.strftime('%d.%m.%Y')}.",
            "На листах ниже — сведения, которые уже есть в мониторинге. Исправьте и дополните их: "
            "каждая строка — одна запись; даты — в формате ДД.ММ.ГГГГ; значения из списков выбирайте в ячейке.",
            "Не переименовывайте листы и столбцы, не удаляйте строку заголовков.",
            f"Сохраните книгу (формат .xlsx, без макросов) и отправьте ответом на это письмо или на адрес {reply_to}.",
            "Строки листа заменяют прежние сведения организации по этому набору данных; пустой лист ничего не меняет.",
            "В ответ придет квитанция: что принято, что нужно исправить (лист, строка, столбец), состояние этапов.",
        ]
        sheets = []
        for name in datasets:
            ds = DATASETS[name]
            mine = _rows_by_org(frames, name, grouped).get(org_id, [])
            rows = [[cell_value(v) for v in rec] for rec in mine[:FORM_MAX_ROWS]]
            if len(mine) > FORM_MAX_ROWS:
                lines.append(f"Лист «{ds.ru}»: в мониторинге {len(mine)} строк организации, в форму включены первые "
                             f"{FORM_MAX_ROWS}; отправленный лист заменит их все.")
            sheets.append((name, ds, rows or [[org_id] + [None] * (len(ds.keys) - 1)]))
        wb.add_sheet("Инструкция", ["Как заполнить форму"], [[line] for line in lines], [120])
        for name, ds, rows in sheets:
            keys = ds.keys
            choices = {keys.index(k): v for k, v in _choices(plan, name).items() if k in keys}
            dates = [i for i, c in enumerate(ds.columns) if c.type == "date"]
            wb.add_sheet(ds.ru, [c.ru for c in ds.columns], rows, [max(12, len(c.ru) + 4) for c in ds.columns],
                         choices=choices, date_columns=dates, form_rows=200)
        wb.close()
        return path.read_bytes()


def _rows_by_org(frames: dict, name: str, grouped: dict | None) -> dict[str, list[tuple]]:
    """org_id -> its rows (the dataset's columns), grouped once per day into ``grouped``: a national day attaches
    48,000 forms, and filtering the whole frame for each one cost more than writing the workbooks (7.7 ms a
    form on the demo region, 2.5 ms grouped)."""
    if grouped is not None and name in grouped:
        return grouped[name]
    frame = frames.get(name)
    out: dict[str, list[tuple]] = {}
    if frame is not None and not frame.empty:
        keys = DATASETS[name].keys
        for org, rec in zip(frame["org_id"].tolist(), frame[keys].itertuples(index=False, name=None), strict=True):
            out.setdefault(org, []).append(rec)
    if grouped is not None:
        grouped[name] = out
    return out


def read_identity(data: bytes, key: bytes) -> tuple[FormIdentity | None, bool]:
    """(identity, carried): the signed identity of a workbook, and whether it carried one at all (a value that
    does not verify is ``(None, True)``: a tampered form). Reads only the small custom-properties part."""

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        info = zf.getinfo("docProps/custom.xml")
    except (KeyError, zipfile.BadZipFile, ValueError, OSError):
        return None, False
    if info.file_size > 65_536:
        return None, True

    raw = zf.read(info)
    if b"<!DOCTYPE" in raw:  # no entity tricks in a part we parse
        return None, True
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return None, True
    for prop in root:
        if prop.get("name") == FORM_PROPERTY:
            value = next((child.text for child in prop), None) or ""
            return verify(value, key), True
    return None, False
