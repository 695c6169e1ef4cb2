"""Who gets what on a date: reminders, overdue notices, escalations (contract sections 3–4).

From the stored stage results of one plan and date, decide for every
organization that is not complete which kinds of mail it causes and to whom,
then fold everything into digests: one per recipient address per kind per
day. Recipients come from the registry (heads, curators) and the operator
lists (chief operators of stage 7), with the contract's fallbacks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from admission.addresses import delivery_form, split_emails
from admission.inputs.reader import DataFolder
from admission.inputs.rules import is_chief_operator
from admission.mail.keys import digest_key
from admission.plan import Plan
from admission.vocabulary import DIGEST_KINDS, WAITING, EscalationRole, MailKind, ResponsibleRole, Status
from admission.workdays import WorkCalendar

KINDS = DIGEST_KINDS


@dataclass(frozen=True)
class Person:
    email: str
    name: str


@dataclass
class Item:
    """One organization's lag on one stage, as a digest lists it."""

    stage: int
    org_id: str
    org_name: str
    kind_of_org: str
    status: str
    deadline: dt.date | None
    days_overdue: int | None
    days_left: int | None
    missing: list[str]
    contact: str  # whom the reader can turn to (or, in an escalation, whom to press)
    parent_name: str = ""


@dataclass
class Digest:
    plan_id: str
    as_of: dt.date
    kind: str
    recipient: Person
    items: list[Item] = field(default_factory=list)

    @property
    def key(self) -> str:
        return digest_key(self.plan_id, self.as_of, self.kind, self.recipient.email)

    @property
    def stages(self) -> list[int]:
        return sorted({i.stage for i in self.items})

    @property
    def org_ids(self) -> list[str]:
        return sorted({i.org_id for i in self.items})


class Directory:
    """Addresses of every role, resolved from the registry and the operator lists.

    Lookups are plain dicts and each (role, organization) is resolved once: a national run asks
    hundreds of thousands of times for the same few thousand МООУСО heads.
    """

    def __init__(self, data: DataFolder):
        orgs = data.frames["organizations"]
        self.invalid: list[tuple[str, str]] = []  # (org_id, which field) with an unusable address
        ids = orgs["org_id"].tolist()
        self._name = dict(zip(ids, orgs["name"].where(orgs["name"].notna(), orgs["org_id"]).astype(str), strict=True))
        self._kind = dict(zip(ids, orgs["kind"], strict=True))
        self._parent = {o: p for o, p in zip(ids, orgs["parent_id"], strict=True)
                        if isinstance(p, str) and p in self._name}
        self._fields = {
            col: dict(zip(ids, orgs[col], strict=True))
            for col in ("head_email", "head_name", "curator_email", "curator_name") if col in orgs
        }
        self._memo: dict[tuple[str, str], list[Person]] = {}
        # Optional extension for folders with several regions: parent_id of a МООУСО or РЦОКО names its РОИВ.
        self._in_region: dict[str, list[str]] = {}
        for oid, parent in self._parent.items():
            if self._kind.get(parent) == "РОИВ":
                self._in_region.setdefault(parent, []).append(oid)
        self._contact: dict[tuple[str, str], str] = {}
        self.rcoko = [p for oid in ids if self._kind[oid] == "РЦОКО" for p in self._people(oid, "head_email", "head_name")]
        self.roiv = [p for oid in ids if self._kind[oid] == "РОИВ" for p in self._people(oid, "head_email", "head_name")]
        ops = data.frames.get("operators")
        # Raw (email, name) of chief operators; validated when an organization's mail needs them.
        self._chief_rows: dict[str, list[tuple[str, str]]] = {}
        if ops is not None and not ops.empty:
            chief = ops[(is_chief_operator(ops["role"]) & ops["email"].notna()).to_numpy(dtype=bool, na_value=False)]
            for org_id, email, name in zip(chief["org_id"].tolist(), chief["email"].tolist(),
                                           chief["full_name"].tolist(), strict=True):
                self._chief_rows.setdefault(org_id, []).append((str(email), "" if pd.isna(name) else str(name)))

    def chiefs(self, org_id: str) -> list[Person]:
        """Chief operators of an organization with a usable address."""
        return [Person(addr, name) for email, name in self._chief_rows.get(org_id, ())
                if (addr := delivery_form(email))]

    def _people(self, org_id: str, email_col: str, name_col: str) -> list[Person]:
        if org_id not in self._name or email_col not in self._fields:
            return []
        name = self._fields.get(name_col, {}).get(org_id)
        name = "" if name is None or (isinstance(name, float) and pd.isna(name)) else str(name)
        out = []
        for raw in split_emails(self._fields[email_col].get(org_id)):
            addr = delivery_form(raw)
            if addr:
                out.append(Person(addr, name))
            else:
                self.invalid.append((org_id, email_col))
        return out

    def region(self, org_id: str) -> str | None:
        """The РОИВ above an organization when the registry links МООУСО/РЦОКО to one (a national folder)."""
        seen = 0
        while org_id is not None and seen < 5:
            if self._kind.get(org_id) == "РОИВ":
                return org_id
            org_id, seen = self._parent.get(org_id), seen + 1
        return None

    def name(self, org_id: str) -> str:
        return self._name.get(org_id, org_id)

    def parent(self, org_id: str) -> str | None:
        return self._parent.get(org_id)

    def heads(self, org_id: str) -> list[Person]:
        return self.resolve("head", org_id)

    def resolve(self, role: str, org_id: str) -> list[Person]:
        """The people a role means for an organization, with the contract's fallbacks."""
        key = (role, org_id)
        if key not in self._memo:
            self._memo[key] = self._resolve(role, org_id)
        return self._memo[key]

    def _resolve(self, role: str, org_id: str) -> list[Person]:
        if role == ResponsibleRole.HEAD:
            return self._people(org_id, "head_email", "head_name")
        if role == ResponsibleRole.CHIEF_OPERATORS:
            return self.chiefs(org_id) or self.heads(org_id)
        if role == ResponsibleRole.CURATOR:
            return self._people(org_id, "curator_email", "curator_name") or self.resolve(EscalationRole.MOOYSO_HEAD, org_id)
        if role == ResponsibleRole.RCOKO_HEAD:
            region = self.region(org_id)
            return [p for oid in self._in_region.get(region, ()) if self._kind[oid] == "РЦОКО"
                    for p in self.heads(oid)] or self.rcoko
        if role == EscalationRole.MOOYSO_HEAD:
            parent = self.parent(org_id)
            return self.heads(parent) if parent and self._kind[parent] == "МООУСО" else self.resolve(EscalationRole.ROIV_HEAD, org_id)
        if role == EscalationRole.ROIV_HEAD:
            region = self.region(org_id)
            return (self.heads(region) if region else []) or self.roiv
        raise ValueError(f"unknown role {role}")

    def contact(self, role: str, org_id: str) -> str:
        key = (role, org_id)
        if key not in self._contact:
            self._contact[key] = self._describe(role, org_id)
        return self._contact[key]

    def _describe(self, role: str, org_id: str) -> str:
        people = self.resolve(role, org_id)
        if not people:
            return "—"
        if role == EscalationRole.MOOYSO_HEAD and self.parent(org_id):
            where = self.name(self.parent(org_id))
        elif role == EscalationRole.ROIV_HEAD:
            where = "министерство образования (РОИВ)"
        elif role == ResponsibleRole.HEAD:
            where = self.name(org_id)
        else:
            where = ""
        who = ", ".join(f"{p.name} <{p.email}>" if p.name else p.email for p in people)
        return f"{where}: {who}" if where else who


def kinds_for(plan: Plan, calendar: WorkCalendar, stage_no: int, status: str, as_of: dt.date,
              deadline: dt.date | None = None) -> list[str]:
    """Which kinds of mail an incomplete organization causes on this date; ``deadline``: its own, when an
    extension moved it (the results' ``deadline``), else the stage's."""
    stage = plan.stage(stage_no)
    if status == Status.COMPLETE:
        return []
    if stage.deadline is None:  # a whole-campaign stage: lagging -> reminder, overdue -> notice and escalation
        return [MailKind.REMINDER] if status == Status.LAGGING else [MailKind.OVERDUE, MailKind.ESCALATION]
    deadline = deadline or stage.deadline
    if as_of > deadline:
        return [MailKind.OVERDUE, MailKind.ESCALATION]
    if calendar.in_reminder_window(as_of, deadline, plan.reminder_working_days):
        return [MailKind.REMINDER]
    return []


def plan_digests(plan: Plan, as_of: dt.date, results: pd.DataFrame, data: DataFolder) -> list[Digest]:
    """Fold the day's stage results into digests; nothing on a day off."""
    calendar = WorkCalendar.for_plan(plan)
    if not calendar.is_working_day(as_of) or results.empty:
        return []
    directory = Directory(data)
    lagging = results[results["status"] != "complete"]
    digests: dict[tuple[str, str], Digest] = {}
    # One row per lagging organization and stage, not per data row; columns as lists (no per-cell pandas access).
    columns = [lagging[c].tolist() for c in ("stage", "kind", "org_id", "status", "missing", "days_overdue",
                                              "days_left", "deadline")]
    kinds_memo: dict[tuple, list[str]] = {}
    for stage_no, kind_of_org, org_id, status, reasons, days_overdue, days_left, own in zip(*columns, strict=True):
        stage = plan.stage(int(stage_no))
        own = own if isinstance(own, dt.date) else None
        if (stage.number, status, own) not in kinds_memo:
            kinds_memo[stage.number, status, own] = kinds_for(plan, calendar, stage.number, status, as_of, own)
        kinds = kinds_memo[stage.number, status, own]
        if not kinds:
            continue
        responsible = stage.responsible.get(kind_of_org)
        escalation = stage.escalation.get(kind_of_org)
        missing = list(reasons) if isinstance(reasons, list | tuple) else []
        # What waits on someone else (admission.checks.stages.WAITING) is not the responsible party's: a letter
        # that would hold nothing else is not sent (РЦОКО is not told of an account nobody asked it for).
        owed = [m for m in missing if not m.startswith(WAITING)]
        if missing and not owed:
            continue
        missing = owed
        for kind in kinds:
            if kind == "escalation":
                to = directory.resolve(escalation, org_id)
                contact = directory.contact(responsible, org_id)
            else:
                to = directory.resolve(responsible, org_id)
                contact = directory.contact(escalation, org_id)
            parent = directory.parent(org_id)
            item = Item(
                stage=stage.number, org_id=org_id, org_name=directory.name(org_id), kind_of_org=kind_of_org,
                status=status, deadline=own or stage.deadline,
                days_overdue=None if pd.isna(days_overdue) else int(days_overdue),
                days_left=None if pd.isna(days_left) else int(days_left),
                missing=missing, contact=contact, parent_name=directory.name(parent) if parent else "",
            )
            for person in to:
                key = (kind, person.email.lower())
                digest = digests.setdefault(key, Digest(plan.id, as_of, kind, person))
                digest.items.append(item)
    out = list(digests.values())
    for d in out:
        d.items.sort(key=lambda i: (i.stage, i.parent_name, i.org_name))
    return sorted(out, key=lambda d: (KINDS.index(d.kind), d.recipient.email))
