"""The organization's own form: one workbook attached to its reminders and overdue notices, returned by mail.

A sheet per dataset its open stages need and its kind may submit by mail (admission.registry: a check's ``form``
datasets, ``MAIL_RIGHTS``), the contract's Russian headers, prefilled with the rows the product already has for
the organization (for a МООУСО's approvals: its schools' rows), drop-down lists for enumerations (positions are
suggestions only), date columns formatted as dates, and an instruction sheet.

The form is the authorization of a change by mail (contract section 6), so it carries its identity — plan,
organization, stages, issue date, expiry, datasets and which key signed it — signed with HMAC-SHA256 in a custom
document property (``admission_form``). The key is the installation's (Airflow Variable
``admission_form_secret``, masked in the UI and logs; else a key file in the output folder), never in the
workbook. A form expires ``intake.form_grace_days`` (plan) after the latest deadline of its stages or after its
issue day, whichever is later; a
newer form for the same organization and data supersedes it after ``intake.superseded_after_days``
(admission.mail.intake checks both). Key rotation: the Variable holds ``{"current": …, "previous": …,
"previous_until": "YYYY-MM-DD"}`` and forms signed with the previous key count until that day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from admission.registry import CHECKS, MAIL_RIGHTS, informing_stages
from admission.schema import APPROVAL_STATUSES, CHANNELS, DATASETS, KIND_ALIASES, OPERATOR_ROLES, cell_value
from admission.xlsx import Workbook

FORM_PROPERTY = "admission_form"
# What each sheet held when the form was sent (a digest per dataset, unsigned: altering it can only make a sheet
# count as returned unchanged): a form sent back as it came — a forwarded reminder carries its original form
# beside the filled one — changes nothing, whatever the data is by then.
PREFILL_PROPERTY = "admission_form_prefill"
# Rows prefilled per sheet: an organization has a few; a data folder that gives one thousands (several files
# naming it) must not make a form too large to mail, or a sheet larger than Excel holds, which failed the
# whole day's mail.
FORM_MAX_ROWS = 1000
YES_NO = ("да", "нет")
# Typical positions offered in the list. The list only suggests (error style «warning»): any other position
# may be typed, and the contract's rule (deputy director or higher) is checked on the answer, not in Excel.
POSITIONS = ("директор", "и.о. директора", "заместитель директора", "заместитель директора по УВР",
             "зам. директора по УВР", "учитель", "секретарь", "главный специалист", "ведущий специалист")
_V2 = "v2"


@dataclass(frozen=True)
class FormIdentity:
    plan_id: str
    org_id: str
    stages: tuple[int, ...]
    as_of: dt.date  # the day the form was issued
    datasets: tuple[str, ...]
    expires: dt.date | None = None  # the last day it is accepted; None only on forms of the first version
    key_id: str = ""  # which installation key signed it (:func:`key_id`)

    def payload(self) -> str:
        if self.expires is None:  # the first version's layout, still verifiable
            return "|".join([self.plan_id, self.org_id, ",".join(map(str, self.stages)), self.as_of.isoformat(),
                             ",".join(self.datasets)])
        return "|".join([_V2, self.plan_id, self.org_id, ",".join(map(str, self.stages)), self.as_of.isoformat(),
                         self.expires.isoformat(), ",".join(self.datasets), self.key_id])


@dataclass(frozen=True)
class FormKeys:
    """The key new forms are signed with, and the previous one during a rotation (accepted until a day)."""

    current: bytes
    previous: bytes | None = None
    previous_until: dt.date | None = None

    def accepts_previous(self, day: dt.date) -> bool:
        return self.previous is not None and self.previous_until is not None and day <= self.previous_until


def key_id(key: bytes) -> str:
    """A short public name of a key (a hash; it reveals nothing of the key), so a form says which key signed it."""
    return hashlib.sha256(b"admission-form-key|" + key).hexdigest()[:8]


def sign(identity: FormIdentity, key: bytes) -> str:
    if identity.expires is not None:
        identity = replace(identity, key_id=key_id(key))
    payload = identity.payload()
    return payload + "|" + hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


def _keys(keys: FormKeys | bytes) -> list[bytes]:
    if isinstance(keys, bytes):
        return [keys]
    return [k for k in (keys.current, keys.previous) if k]


def verify(value: str, keys: FormKeys | bytes) -> FormIdentity | None:
    """The identity a signed value names, or None when the signature does not match (tampered, another key).
    Whether the identity is still *valid* (plan, expiry, a retired key) is the intake's question."""
    payload, _, signature = value.rpartition("|")
    if not payload:
        return None
    key = next((k for k in _keys(keys)
                if hmac.compare_digest(signature, hmac.new(k, payload.encode("utf-8"), hashlib.sha256).hexdigest())),
               None)
    if key is None:
        return None
    try:
        parts = payload.split("|")
        if parts[0] == _V2:
            _, plan_id, org_id, stages, day, expires, datasets, kid = parts
            return FormIdentity(plan_id, org_id, tuple(int(s) for s in stages.split(",") if s),
                                dt.date.fromisoformat(day), tuple(d for d in datasets.split(",") if d in DATASETS),
                                dt.date.fromisoformat(expires), kid)
        plan_id, org_id, stages, day, datasets = parts
        return FormIdentity(plan_id, org_id, tuple(int(s) for s in stages.split(",") if s), dt.date.fromisoformat(day),
                            tuple(d for d in datasets.split(",") if d in DATASETS), None, key_id(key))
    except ValueError:
        return None


def form_keys(key_file: Path, configured: str | None = None) -> FormKeys:
    """The installation's keys: the configured value (Variable ``admission_form_secret``: a key, or JSON
    ``{"current": …, "previous": …, "previous_until": "YYYY-MM-DD"}`` during a rotation), else a random key made
    once in the output folder (``key_file``: ``form.key``, readable by the owner only), so that the demo and a
    small installation work."""

    if configured:
        text = configured.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
                current = str(value["current"]).encode("utf-8")
                previous = str(value["previous"]).encode("utf-8") if value.get("previous") else None
                until = dt.date.fromisoformat(str(value["previous_until"])) if previous else None
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError('the form secret must be a key or JSON {"current": "...", "previous": "...", '
                                 f'"previous_until": "YYYY-MM-DD"}} (previous_until is required with previous): {exc}'
                                 ) from None
            if not current:
                raise ValueError("the form secret's current key is empty")
            return FormKeys(current, previous, until)
        return FormKeys(text.encode("utf-8"))
    path = Path(key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        os.replace(path.with_suffix(".tmp"), path)
    return FormKeys(path.read_text().strip().encode("utf-8"))


def installation_key(key_file: Path, configured: str | None = None) -> bytes:
    """The key new forms are signed with (:func:`form_keys`)."""
    return form_keys(key_file, configured).current


def form_expiry(plan, stages, issued: dt.date) -> dt.date:
    """The last day a form for these stages is accepted: the plan's ``intake.form_grace_days`` after their latest
    deadline (the campaign's end for a stage without one), or after the day it was issued when that is later —
    a form sent with an overdue notice must still be usable by the organization that lags."""
    last = max((plan.stage(n).deadline or plan.campaign.end for n in stages), default=plan.campaign.end)
    return max(last, issued) + dt.timedelta(days=plan.intake.form_grace_days)


def _kinds(frames: dict) -> tuple[dict, dict, dict]:
    """org_id -> name, kind, parent_id, from the registry frame (empty dicts without one)."""
    orgs = frames.get("organizations")
    if orgs is None or orgs.empty:
        return {}, {}, {}
    ids = orgs["org_id"].tolist()
    kinds = [KIND_ALIASES.get(k, k) for k in orgs["kind"].tolist()]
    parents = orgs["parent_id"].tolist() if "parent_id" in orgs else [None] * len(ids)
    return (dict(zip(ids, orgs["name"].tolist(), strict=True)), dict(zip(ids, kinds, strict=True)),
            dict(zip(ids, parents, strict=True)))


def attachments_for(plan, as_of: dt.date, frames: dict, keys: FormKeys | bytes, reply_to: str, max_orgs: int = 20):
    """``attach(digest)`` for mail.render_all: a form per organization of a reminder or overdue notice (an
    escalation carries none: its reader supervises, the organization fills in). A stage whose data a МООУСО
    submits for its schools (approvals) brings the МООУСО's form, not the school's. Forms are built once per
    (organization, stages) for the day and shared by every recipient of that organization; ``attach.issued``
    lists them — (org_id, datasets, issued, expires) — for the store (:func:`admission.store.record_issued_forms`)."""
    key = keys.current if isinstance(keys, FormKeys) else keys
    names, kinds, parents = _kinds(frames)
    built: dict[tuple[str, tuple[int, ...]], bytes | None] = {}
    grouped: dict = {}
    issued: list[tuple[str, tuple[str, ...], dt.date, dt.date]] = []

    def attach(digest) -> list[tuple[str, bytes]] | None:
        if digest.kind not in ("reminder", "overdue"):
            return None
        stages: dict[str, set[int]] = {}
        for item in digest.items:
            for owner in form_owners(plan, item.stage, item.org_id, parents):
                stages.setdefault(owner, set()).add(item.stage)
        if len(stages) > max_orgs:
            return None
        out = []
        for org_id, numbers in sorted(stages.items()):
            key_ = (org_id, tuple(sorted(numbers)))
            if key_ not in built:
                built[key_] = build_form(plan, as_of, org_id, str(names.get(org_id, org_id)), sorted(numbers), frames,
                                         key, reply_to, grouped, kind=kinds.get(org_id))
                datasets = form_datasets(plan, sorted(numbers), kinds.get(org_id))
                if built[key_] is not None:
                    issued.append((org_id, tuple(datasets), as_of, form_expiry(plan, numbers, as_of)))
            if built[key_] is not None:
                out.append((file_name(org_id, as_of), built[key_]))
        return out or None

    attach.issued = issued  # type: ignore[attr-defined]
    return attach


def form_owners(plan, stage: int, org_id: str, parents: dict) -> list[str]:
    """Whose form carries an organization's data for a stage: its own, and its МООУСО's for the datasets a
    МООУСО submits for its schools (``MAIL_RIGHTS`` scope «schools»)."""
    owners = [org_id]
    form = CHECKS[plan.stage(stage).check].form
    parent = parents.get(org_id)
    if isinstance(parent, str) and parent and any(MAIL_RIGHTS[d].scope == "schools" for d in form if d in MAIL_RIGHTS):
        owners.append(parent)
    return owners


def form_datasets(plan, stages: list[int], kind: str | None = None) -> list[str]:
    """Datasets an organization fills in for these stages of the plan (admission.registry: a check's ``form``),
    those its kind may submit by mail (``MAIL_RIGHTS``; every mail dataset when the kind is not known)."""

    out: list[str] = []
    for number in sorted(stages):
        for name in CHECKS[plan.stage(number).check].form:
            right = MAIL_RIGHTS.get(name)
            if right is None or (kind is not None and kind not in right.kinds):
                continue
            if name not in out:
                out.append(name)
    return out


def sheet_dataset(title: str) -> str | None:
    """The dataset whose Russian title a form sheet bears."""
    folded = " ".join(title.split()).casefold()
    return next((d.name for d in DATASETS.values() if d.ru.casefold() == folded), None)


def _choices(plan, name: str) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """The drop-down lists of a dataset's sheet, and which of them only suggest (the contract fixes roles,
    channels, stages, yes/no and approval statuses; a position may be any)."""
    if name == "operators":
        return {"role": OPERATOR_ROLES, "position": POSITIONS}, {"position"}
    if name == "informing":
        return {"channel": CHANNELS, "stage": tuple(str(n) for n in informing_stages(plan))}, set()
    if name == "module_staff":
        return {"replaced": YES_NO, "position": POSITIONS}, {"position"}
    if name == "approvals":
        return {"status": APPROVAL_STATUSES}, set()
    return {}, set()


def file_name(org_id: str, as_of: dt.date) -> str:
    """An ASCII attachment name (mail clients show it as is)."""
    return f"forma_{re.sub(r'[^0-9A-Za-z_-]+', '_', org_id)[:40]}_{as_of.isoformat()}.xlsx"


def build_form(plan, as_of: dt.date, org_id: str, org_name: str, stages: list[int], frames: dict, key: bytes,
               reply_to: str, grouped: dict | None = None, kind: str | None = None) -> bytes | None:
    """The organization's workbook for these stages, or None when they need no form from it (e.g. accounts, or a
    school for approvals). ``kind``: the organization's kind (which datasets it may submit; looked up in the
    registry frame when not given); ``grouped``: a dict kept across the day's forms (rows grouped once)."""

    _, kinds, parents = _kinds(frames)
    kind = kind or kinds.get(org_id)
    datasets = form_datasets(plan, stages, kind)
    if not datasets:
        return None
    expires = form_expiry(plan, stages, as_of)
    identity = FormIdentity(plan.id, org_id, tuple(sorted(stages)), as_of, tuple(datasets), expires)
    with tempfile.TemporaryDirectory(prefix="admission-form-") as tmp:
        path = Path(tmp) / "form.xlsx"
        wb = Workbook(path)
        wb.properties[FORM_PROPERTY] = sign(identity, key)
        lines = [
            f"Форма организации: {org_name} (код {org_id}).",
            f"Этапы плана: {', '.join(map(str, sorted(stages)))}; форма подготовлена {as_of.strftime('%d.%m.%Y')}, "
            f"действует до {expires.strftime('%d.%m.%Y')} включительно.",
            "На листах ниже — сведения, которые уже есть в мониторинге. Исправьте и дополните их: "
            "каждая строка — одна запись; даты — в формате ДД.ММ.ГГГГ; значения из списков выбирайте в ячейке "
            "(должность можно вписать и свою).",
            "Не переименовывайте листы и столбцы, не удаляйте строку заголовков.",
            f"Сохраните книгу (формат .xlsx, без макросов) и отправьте ответом на это письмо или на адрес {reply_to}.",
            "Сведения принимаются только в этой форме: она подтверждает, что их прислала ваша организация. "
            "Файлы, сделанные не по форме, не принимаются.",
            "Строки листа заменяют прежние сведения организации по этому набору данных; пустой лист ничего не меняет.",
            "Если вы получили более новую форму, заполняйте ее: прежняя перестает приниматься через "
            f"{plan.intake.superseded_after_days} дн. после выдачи новой.",
            "В ответ придет квитанция: что принято, что нужно исправить (лист, строка, столбец), состояние этапов.",
        ]
        sheets = []
        prefill = {}
        for name in datasets:
            ds = DATASETS[name]
            if MAIL_RIGHTS[name].scope == "schools":
                schools = sorted(o for o, parent in parents.items() if parent == org_id)
                by_org = _rows_by_org(frames, name, grouped)
                mine = [rec for school in schools for rec in by_org.get(school, [])]
                have = {rec[0] for rec in mine}
                mine += [(school,) + (None,) * (len(ds.keys) - 1) for school in schools if school not in have]
            else:
                mine = _rows_by_org(frames, name, grouped).get(org_id, [])
            rows = [[cell_value(v) for v in rec] for rec in mine[:FORM_MAX_ROWS]]
            prefill[name] = rows_digest([rec for rec in mine[:FORM_MAX_ROWS] if any(_plain(v) for v in rec[1:])])
            if len(mine) > FORM_MAX_ROWS:
                lines.append(f"Лист «{ds.ru}»: в мониторинге {len(mine)} строк организации, в форму включены первые "
                             f"{FORM_MAX_ROWS}; отправленный лист заменит их все.")
            sheets.append((name, ds, rows or [[org_id] + [None] * (len(ds.keys) - 1)]))
        wb.properties[PREFILL_PROPERTY] = json.dumps(prefill, separators=(",", ":"))
        wb.add_sheet("Инструкция", ["Как заполнить форму"], [[line] for line in lines], [120])
        for name, ds, rows in sheets:
            keys = ds.keys
            lists, soft = _choices(plan, name)
            choices = {keys.index(k): v for k, v in lists.items() if k in keys}
            dates = [i for i, c in enumerate(ds.columns) if c.type == "date"]
            wb.add_sheet(ds.ru, [c.ru for c in ds.columns], rows, [max(12, len(c.ru) + 4) for c in ds.columns],
                         choices=choices, date_columns=dates, form_rows=200,
                         suggestions=[keys.index(k) for k in soft if k in keys])
        wb.close()
        return path.read_bytes()


def _plain(value: object) -> str:
    value = cell_value(value)
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def rows_digest(rows) -> str:
    """A digest of a sheet's rows (tuples in the dataset's key order), order aside: what the form was sent with
    and what comes back are compared by it."""
    lines = sorted("\x1f".join(_plain(v) for v in rec) for rec in rows)
    return hashlib.sha256("\x1e".join(lines).encode("utf-8")).hexdigest()[:32]


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


def read_identity(data: bytes, keys: FormKeys | bytes) -> tuple[FormIdentity | None, bool]:
    """(identity, carried): the signed identity of a workbook, and whether it carried one at all (a value that
    does not verify is ``(None, True)``: a tampered form). Reads only the small custom-properties part; a
    damaged archive (bad CRC, truncated) raises ``zipfile.BadZipFile``."""
    identity, carried, _ = read_form(data, keys)
    return identity, carried


def read_form(data: bytes, keys: FormKeys | bytes) -> tuple[FormIdentity | None, bool, dict[str, str]]:
    """:func:`read_identity` plus the digests of what each sheet held when the form was sent."""
    props = _properties(data)
    if props is None:
        return None, True, {}
    prefill = {}
    try:
        value = json.loads(props.get(PREFILL_PROPERTY) or "{}")
        prefill = {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
    except ValueError:
        pass
    if FORM_PROPERTY not in props:
        return None, False, {}
    return verify(props[FORM_PROPERTY], keys), True, prefill


def _properties(data: bytes) -> dict[str, str] | None:
    """The workbook's custom properties ({} without any; None when the part is suspicious: too large, a DOCTYPE,
    not XML)."""

    zf = zipfile.ZipFile(io.BytesIO(data))
    try:
        info = zf.getinfo("docProps/custom.xml")
    except KeyError:
        return {}
    if info.file_size > 65_536:
        return None
    raw = zf.read(info)
    if b"<!DOCTYPE" in raw:  # no entity tricks in a part we parse
        return None
    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return None
    return {str(prop.get("name")): next((child.text for child in prop), None) or "" for prop in root}
