"""Answers by mail: forms returned to the monitor's mailbox become the organization's data.

Steps, each recorded in the store (``admission_intake``, keyed by the mailbox's UIDVALIDITY and the message's
UID) before it acts, so that a retry, a second run or a process killed half-way continues instead of repeating:

1. ``read_mailbox``: every message of INBOX not yet recorded is claimed (state ``received``), read and checked;
   accepted rows are written as the organization's submission (state ``written``). A message whose Message-ID
   was already processed (delivered twice) is a ``duplicate``: nothing written, no receipt. A message that
   fails ``MAX_ATTEMPTS`` times (a poison message) is ``quarantined``: filed to «Отклонено» with the reason,
   listed for the admin, and the rest of the mailbox goes on.
2. (the caller refreshes the day's snapshot and stage results, so the receipt tells the status after it)
3. ``compose_receipts``: the receipt (kind ``receipt``, In-Reply-To the message) goes into the outbox under a key
   of the message and the recipient, so it is recorded once (state ``receipted``).
4. ``file_messages``: the message is moved to «Обработано» or «Отклонено» (state ``filed``).

Authorization (contract section 6). ``From:`` proves nothing: data changes only through a valid signed form
(admission.mail.forms) — this plan's, not expired, not superseded, signed with a key still accepted — and only
the datasets that form was issued for and the organization's kind may submit (admission.registry.MAIL_RIGHTS),
for the form's own organization (a МООУСО's approvals: for its own schools). A row naming another organization
is refused, as in a per-organization file of the data folder; a code typed with Cyrillic look-alike letters or
on the Russian keyboard layout («С21», «Ы21» for «S21») is taken as the form's organization and the receipt says
so. Files without a form's signature (a plain ``.csv``, a workbook made by hand) change nothing. A message with
no valid form changes nothing either: it is recorded and shown to the admin (the report's «Почта» sheet, the
campaign page), and when its sender is one of an organization's addresses it is answered with a fresh form.

Receipts go only to an organization's addresses in the registry and its operator lists (its head, its
operators; for a МООУСО also the curators of its schools): to the sender when it is one of them, and to the
head whenever data changed and the head did not send it; an unknown sender gets nothing (no backscatter). A
receipt quotes nothing the sender wrote but the sheet titles and cell values of their own form, names the
attachment by number and the sheet and row of the form, and gives times in the plan's time zone.

Two replies: the one the sender sent later (``Date:``, never later than the server received it) decides; in one
message, a form that changes the data wins over one that repeats it, then the newest form, then the later
attachment. Expiry is judged by the server's arrival day (INTERNALDATE), which the sender cannot set, or by the
run's day when that is earlier (a run for a past day).

What is read: ``.xlsx`` forms, at most ``attachment_bytes`` each and ``message_bytes`` per message (checked from
the server's size before the message is fetched); macro workbooks, damaged archives and other files are refused
with a reason. Each sheet goes through the data folder's reader (forked parse under the same limits) and row
rules (GX); the rows without a problem become the submission, the others are listed in the receipt.

Where it goes: ``<output>/intake/<dataset>/<org_id>/<sent>_<message>.csv`` (admission.inputs.submissions),
every version kept; the admin's data folder is never written.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.errors
import imaplib
import io
import logging
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.utils import parseaddr, parsedate_to_datetime
from html import escape
from pathlib import Path

from sqlalchemy import delete, insert, select

from admission.addresses import delivery_form, split_emails
from admission.inputs.files import Job, Limits, parse_isolated, sheet_titles
from admission.inputs.reader import read_dataset
from admission.inputs.rules import validate_rows
from admission.inputs.submissions import newest_sent, write_submission
from admission.labels import INTAKE_OUTCOME_RU, STATUS_RU
from admission.mail.forms import (
    FormIdentity,
    FormKeys,
    build_form,
    file_name,
    form_datasets,
    form_expiry,
    key_id,
    read_form,
    rows_digest,
    sheet_dataset,
)
from admission.mail.keys import receipt_key
from admission.mail.outbox import enqueue
from admission.mail.recipients import Person
from admission.mail.render import envelope
from admission.registry import MAIL_RIGHTS, informing_stages
from admission.schema import DATASETS, KIND_ALIASES, cell_value, normalize_header
from admission.store import engine_for, intake, issued_forms, outbox, record_issued_forms, reviews
from admission.templating import ru_date
from admission.vocabulary import IntakeOutcome, IntakeState, Status
from admission.wording import PROBLEMS, ROWS, plural, salutation

log = logging.getLogger(__name__)

FOLDER_DONE = "Обработано"
FOLDER_REJECTED = "Отклонено"
MB = 1024 * 1024
# A message whose reading (or receipt) fails this many times is quarantined instead of blocking every run.
MAX_ATTEMPTS = 3
DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, KeyError)


@dataclass(frozen=True)
class IntakeLimits:
    message_bytes: int = 25 * MB  # the server's RFC822.SIZE, before fetching
    attachment_bytes: int = 10 * MB
    attachments: int = 10


@dataclass
class Context:
    """What processing a message needs besides the message."""

    plan: object
    as_of: dt.date
    store_url: str
    intake_root: Path
    keys: FormKeys | bytes  # the forms' HMAC keys (admission.mail.forms.form_keys)
    frames: dict  # the snapshot's frames: the registry, the operator lists, the datasets a form may change
    limits: Limits = field(default_factory=Limits.from_env)
    intake_limits: IntakeLimits = field(default_factory=IntakeLimits)

    def __post_init__(self) -> None:
        if isinstance(self.keys, bytes):
            self.keys = FormKeys(self.keys)
        self.orgs = Organizations(self.frames)


class Organizations:
    """The registry as the intake needs it: kinds, supervisors, and each organization's own addresses."""

    def __init__(self, frames: dict) -> None:
        reg = frames.get("organizations")
        self.name: dict[str, str] = {}
        self.kind: dict[str, str] = {}
        self.parent: dict[str, str] = {}
        self.heads: dict[str, list[str]] = {}
        self.addresses: dict[str, set[str]] = {}
        self.person: dict[str, str] = {}  # address -> the registry's name of its owner (a receipt's salutation)
        if reg is None or reg.empty:
            return
        cols = {c: reg[c].tolist() if c in reg else [None] * len(reg)
                for c in ("org_id", "name", "kind", "parent_id", "head_email", "curator_email", "head_name",
                          "curator_name")}
        for org, name, kind, parent, head, curator, head_name, curator_name in zip(*cols.values(), strict=True):
            self.name[org] = str(name or org)
            for cell, who in ((head, head_name), (curator, curator_name)):
                if isinstance(who, str) and who.strip():
                    for address in split_emails(cell):
                        self.person.setdefault(address.lower(), who.strip())
            self.kind[org] = KIND_ALIASES.get(kind, kind)
            if isinstance(parent, str) and parent:
                self.parent[org] = parent
            heads = [e.lower() for e in split_emails(head)]
            self.heads[org] = heads
            self.addresses.setdefault(org, set()).update(heads)
            if isinstance(parent, str) and parent:  # the curators of a school are the МООУСО's staff
                self.addresses.setdefault(parent, set()).update(e.lower() for e in split_emails(curator))
        ops = frames.get("operators")
        if ops is not None and not ops.empty:
            for org, cell in zip(ops["org_id"].tolist(), ops["email"].tolist(), strict=True):
                if org in self.kind:
                    self.addresses.setdefault(org, set()).update(e.lower() for e in split_emails(cell))

    def __contains__(self, org_id: object) -> bool:
        return org_id in self.kind

    def of_sender(self, sender: str) -> list[str]:
        """The organizations for which this address is one of their own (at most five)."""
        if not sender:
            return []
        return sorted(org for org, found in self.addresses.items() if sender in found and org in self.kind)[:5]

    def schools_of(self, org_id: str) -> set[str]:
        return {o for o, parent in self.parent.items() if parent == org_id}


# ---------------------------------------------------------------- headers from outside

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")
_MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")  # printable ASCII, no spaces, no < >
_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\\\"]{1,64}@[^\s@<>()\[\],;:\\\"]{1,253}$")


def safe_text(value: object, limit: int = 200) -> str:
    """Text from a header or a file name as one line of at most ``limit`` characters (no CR/LF, no controls)."""
    return _CONTROL.sub(" ", str(value or "")).strip()[:limit]


def safe_message_id(value: object) -> str | None:
    """The Message-ID when it is a well-formed one (it goes into In-Reply-To); None for anything else."""
    text = str(value or "").strip()
    return text if _MESSAGE_ID.match(text) else None


def safe_sender(value: object) -> str:
    """The ``From:`` address, lower-cased, when it looks like one; "" for anything else."""
    addr = parseaddr(safe_text(value, 500))[1].strip().lower()
    return addr if _ADDRESS.match(addr) else ""


# ---------------------------------------------------------------- organization codes typed by people

_LOOKALIKE = str.maketrans("АВЕКМНОРСТУХІЈЅаеорсухіјѕ", "ABEKMHOPCTYXIJSaeopcyxijs")
_LAYOUT = dict(zip("йцукенгшщзхъфывапролджэячсмитьбю", "qwertyuiop[]asdfghjkl;'zxcvbnm,.", strict=True))


def same_code(typed: str, code: str) -> bool:
    """Whether ``typed`` is ``code`` written with Cyrillic look-alike letters («С21» for «C21») or on the Russian
    keyboard layout («Ы21» for «S21»), letter by letter, case aside."""
    if len(typed) != len(code):
        return False
    for t, c in zip(typed, code, strict=True):
        options = {t.casefold(), t.translate(_LOOKALIKE).casefold(), _LAYOUT.get(t.casefold(), t).casefold()}
        if c.casefold() not in options:
            return False
    return True


def describe_code(typed: str) -> str:
    """«С21» -> «С21» (1-я буква — кириллическая «С»): what makes a code differ from the one it looks like."""
    odd = [f"{i}-я буква — кириллическая «{ch}»" for i, ch in enumerate(typed, 1) if "\u0400" <= ch <= "\u04ff"]
    return f"«{typed}»" + (f" ({'; '.join(odd)})" if odd else "")


# ---------------------------------------------------------------- the store


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _get(url: str, uidvalidity: int, uid: int) -> dict | None:
    with engine_for(url).connect() as conn:
        row = conn.execute(select(intake).where(intake.c.uidvalidity == uidvalidity, intake.c.uid == uid)
                           ).mappings().first()
    return dict(row) if row else None


def _put(url: str, row: dict) -> None:
    row = dict(row, updated_at=_now())
    with engine_for(url).begin() as conn:
        conn.execute(delete(intake).where(intake.c.uidvalidity == row["uidvalidity"], intake.c.uid == row["uid"]))
        conn.execute(insert(intake).values(**row))


def _processed_elsewhere(url: str, message_id: str, uidvalidity: int, uid: int) -> bool:
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(intake.c.uidvalidity, intake.c.uid, intake.c.state)
                            .where(intake.c.message_id == message_id)).all()
    return any((v, u) != (uidvalidity, uid) and state != IntakeState.RECEIVED for v, u, state in rows)


def rows_in(url: str, plan_id: str, states: tuple[str, ...]) -> list[dict]:
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(intake).where(intake.c.plan_id == plan_id, intake.c.state.in_(states))
                            .order_by(intake.c.received_at, intake.c.uid)).mappings().all()
    return [dict(r) for r in rows]


def day_rows(url: str, plan_id: str, as_of: dt.date, since: dt.date | None = None) -> list[dict]:
    """The messages read on the intake days ``since``..``as_of`` (both included; only ``as_of`` without
    ``since``): the report's «Почта» sheet and the campaign page list every message since the previous report."""

    first = since or as_of
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(intake).where(intake.c.plan_id == plan_id, intake.c.as_of >= first,
                                                 intake.c.as_of <= as_of)
                            .order_by(intake.c.received_at, intake.c.uid)).mappings().all()
    return [dict(r) for r in rows]


def described(rows: list[dict], plan) -> list[dict]:
    """The messages as the admin reads them (the report's «Почта» sheet, the campaign page): received (plan's
    time zone), sender, organizations, outcome, what was accepted, what was refused and why."""
    out = []
    for r in rows:
        result = r.get("result") or {}
        accepted = [f"{DATASETS[f['dataset']].ru} ({f['org_id']}): {f['rows']} — "
                    f"{_FILE_STATUS_RU.get(f.get('status'), 'принято')}"
                    for f in result.get("files", []) if f.get("dataset") in DATASETS]
        refused = [*(result.get("refused") or []),
                   *(f"{p['file']}, строка {p['row']}: {p['message']}" for p in (result.get("problems") or [])[:20])]
        if result.get("reason"):
            refused.insert(0, result["reason"])
        out.append({"received": f"{_local(r['received_at'], plan):%d.%m.%Y %H:%M}", "sender": r.get("sender") or "",
                    "subject": r.get("subject") or "",
                    "orgs": ", ".join(result.get("orgs") or ([r["org_id"]] if r.get("org_id") else [])),
                    "outcome": r.get("outcome") or "",
                    "outcome_ru": INTAKE_OUTCOME_RU.get(r.get("outcome"), r.get("outcome") or "в обработке"),
                    "accepted": "; ".join(accepted), "refused": "; ".join(refused)})
    return out


# ---------------------------------------------------------------- the mailbox


def _uidvalidity(client) -> int:
    typ, data = client.select("INBOX")
    if typ != "OK":
        raise RuntimeError(f"IMAP: INBOX cannot be selected: {data!r}")
    value = client.response("UIDVALIDITY")[1]
    return int(value[0]) if value and value[0] else 0


def read_mailbox(client, ctx: Context) -> dict:
    """Claim, read and check every new message of INBOX; write the accepted rows. Returns counts. A message that
    fails is left for the next run, and quarantined after ``MAX_ATTEMPTS``: it never stops the others."""
    uidvalidity = _uidvalidity(client)
    typ, data = client.uid("SEARCH", None, "ALL")
    uids = [int(u) for u in (data[0] or b"").split()] if typ == "OK" else []
    counts = {"messages": len(uids), "new": 0, "written": 0, "duplicates": 0, "unknown": 0, "no_form": 0,
              "rejected": 0, "quarantined": 0, "failed": 0}
    for uid in uids:
        row = _get(ctx.store_url, uidvalidity, uid)
        if row is not None and row["state"] != IntakeState.RECEIVED:
            continue  # already read; the later steps finish it
        if row is None:  # claimed before anything is read: a rerun finds it, a message that kills us is counted
            row = {"uidvalidity": uidvalidity, "uid": uid, "message_id": f"<uid-{uidvalidity}-{uid}@intake>",
                   "plan_id": ctx.plan.id, "as_of": ctx.as_of, "received_at": _now(), "sender": None, "subject": "",
                   "state": IntakeState.RECEIVED, "outcome": None, "org_id": None, "result": None, "sent_at": None}
        tried = dict(row.get("result") or {})
        attempts = int(tried.get("attempts") or 0) + 1
        counts["new"] += 1
        if attempts > MAX_ATTEMPTS:
            reason = (f"письмо не удалось обработать ({MAX_ATTEMPTS} попытки, последняя ошибка: "
                      f"{tried.get('error') or 'процесс прерван'}); отложено, проверьте его вручную")
            log.error("IMAP: message uid %s quarantined after %d attempts", uid, MAX_ATTEMPTS)
            counts["quarantined"] += 1
            _put(ctx.store_url, row | {"state": IntakeState.WRITTEN, "outcome": IntakeOutcome.QUARANTINED,
                                       "result": {"reason": reason, "attempts": attempts - 1}})
            continue
        row = row | {"result": {"attempts": attempts, "error": tried.get("error")}}
        _put(ctx.store_url, row)
        try:
            row = _read_one(client, ctx, uidvalidity, uid, row)
        except Exception as exc:  # noqa: BLE001 (one message must not stop the mailbox; counted, then quarantined)
            log.error("IMAP: message uid %s failed (attempt %d of %d): %s", uid, attempts, MAX_ATTEMPTS,
                      type(exc).__name__)
            counts["failed"] += 1
            row = _get(ctx.store_url, uidvalidity, uid) or row  # with the sender and subject, when they were read
            _put(ctx.store_url, row | {"result": {"attempts": attempts, "error": type(exc).__name__}})
            continue
        outcome = row["outcome"]
        counts["written" if outcome in (IntakeOutcome.ACCEPTED, IntakeOutcome.PARTIAL) else
               "duplicates" if outcome == IntakeOutcome.DUPLICATE else str(outcome)] += 1
    log.info("mailbox: %s", counts)
    return counts


def _read_one(client, ctx: Context, uidvalidity: int, uid: int, row: dict) -> dict:
    typ, data = client.uid("FETCH", str(uid), "(RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])")
    if typ != "OK" or not data or not isinstance(data[0], tuple):
        raise RuntimeError("the message's header could not be fetched")
    size = int(re.search(rb"RFC822\.SIZE (\d+)", data[0][0]).group(1))
    arrived = imaplib.Internaldate2tuple(data[0][0])
    arrived_at = (dt.datetime(*arrived[:6]).astimezone(dt.UTC).replace(tzinfo=None) if arrived
                  else row["received_at"])  # Internaldate2tuple gives local time
    arrived_at = min(arrived_at, row["received_at"])
    head = email.message_from_bytes(data[0][1], policy=policy.compat32)
    raw_id = str(head.get("Message-ID") or "")
    message_id = safe_message_id(raw_id) or (f"<bad-id-{uidvalidity}-{uid}@intake>" if raw_id.strip() else
                                            f"<no-id-{uidvalidity}-{uid}@intake>")
    row = row | {"message_id": message_id, "sender": safe_sender(head.get("From")) or None,
                 "subject": _subject(head.get("Subject")), "sent_at": _sent_time(head.get("Date"), arrived_at)}
    _put(ctx.store_url, row)  # who sent it is on record before its body is read (a poison message is shown so)
    sender = row["sender"] or ""
    attempts = (row.get("result") or {}).get("attempts")
    if _processed_elsewhere(ctx.store_url, message_id, uidvalidity, uid):
        outcome, org_id = IntakeOutcome.DUPLICATE, None
        result = {"reason": "это письмо уже обработано (получено повторно)"}
    elif size > ctx.intake_limits.message_bytes:
        orgs = ctx.orgs.of_sender(sender)
        outcome = IntakeOutcome.REJECTED if orgs else IntakeOutcome.UNKNOWN
        org_id = orgs[0] if orgs else None
        result = {"reason": f"письмо больше {ctx.intake_limits.message_bytes // MB} МБ: не принято; отправьте "
                            "файлы меньшего размера", "orgs": orgs, "sender_orgs": orgs}
    else:
        typ, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
        if typ != "OK" or not data or not isinstance(data[0], tuple):
            raise RuntimeError("the message could not be fetched")
        msg = email.message_from_bytes(data[0][1], policy=policy.default)
        outcome, org_id, result = process_message(msg, ctx, row["sent_at"], message_id, sender, arrived_at)
    result = dict(result, attempts=attempts, arrived_at=arrived_at.isoformat())
    row = row | {"state": IntakeState.WRITTEN, "outcome": outcome, "org_id": org_id, "result": result}
    _put(ctx.store_url, row)
    return row


def _subject(value: object) -> str:
    """The decoded ``Subject:`` as one short line (the admin reads it in the report; no mail ever quotes it)."""
    try:
        text = str(make_header(decode_header(str(value or ""))))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        text = str(value or "")
    return safe_text(text, 300)


def _sent_time(value: object, arrived_at: dt.datetime) -> dt.datetime:
    """The sender's ``Date:`` in UTC, never later than the server received the message (a date in the future
    would let a reply win over every later one); the arrival time when there is none."""
    try:
        sent = parsedate_to_datetime(safe_text(value, 100))
    except (TypeError, ValueError, IndexError):
        return arrived_at
    if sent is None:
        return arrived_at
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=dt.UTC)
    return min(sent.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0), arrived_at)


def file_messages(client, ctx_url: str, plan_id: str) -> dict:
    """Move every message whose receipt is recorded to «Обработано» or «Отклонено»."""
    uidvalidity = _uidvalidity(client)
    moved = {"done": 0, "rejected": 0}
    for row in rows_in(ctx_url, plan_id, (IntakeState.RECEIPTED,)):
        if row["uidvalidity"] != uidvalidity:  # the mailbox was recreated: that message is not here any more
            _put(ctx_url, row | {"state": IntakeState.FILED})
            continue
        good = row["outcome"] in (IntakeOutcome.ACCEPTED, IntakeOutcome.PARTIAL, IntakeOutcome.DUPLICATE)
        folder = FOLDER_DONE if good else FOLDER_REJECTED
        _move(client, row["uid"], folder)
        _put(ctx_url, row | {"state": IntakeState.FILED})
        moved["done" if good else "rejected"] += 1
    return moved


def _move(client, uid: int, folder: str) -> None:
    name = '"' + imap_utf7(folder) + '"'
    client.create(name)  # an existing folder answers NO: harmless
    typ, data = client.uid("MOVE", str(uid), name)
    if typ != "OK":  # a server without MOVE (RFC 6851)
        typ, data = client.uid("COPY", str(uid), name)
        if typ != "OK":
            raise RuntimeError(f"IMAP: message uid {uid} cannot be copied to {folder}: {data!r}")
        client.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        client.expunge()


def imap_utf7(text: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3): «Обработано» -> «&BB4EMQRABDAEMQQ,BEIEMAQ9BD4-»."""

    out, buf = [], []

    def flush() -> None:
        if buf:
            encoded = base64.b64encode("".join(buf).encode("utf-16-be")).decode("ascii").rstrip("=")
            out.append("&" + encoded.replace("/", ",") + "-")
            buf.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


# ---------------------------------------------------------------- one message


def _is_macro_workbook(data: bytes) -> bool:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except DAMAGED:
        return False
    return any(n.lower().endswith("vbaproject.bin") for n in names)


def _attachments(msg, ctx: Context) -> tuple[list[tuple[int, bytes, FormIdentity, dict]], list[str], bool]:
    """(forms, refused, tampered): the attachments that carry a verified form's signature, as (number, bytes,
    identity, what its sheets held when sent); a line for every other attachment saying why it is not read."""
    lim = ctx.intake_limits
    forms: list[tuple[int, bytes, FormIdentity, dict]] = []
    refused: list[str] = []
    tampered = False
    n = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        try:
            name = part.get_filename()
        except (ValueError, LookupError, email.errors.MessageError):
            name = "?"
        if not name:
            continue
        n += 1
        if n > lim.attachments:
            refused.append(f"в письме больше {lim.attachments} вложений, остальные не читались")
            break
        suffix = Path(safe_text(name, 200)).suffix.casefold()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else ""
        label = f"вложение {n}" + (f" ({suffix})" if suffix else "")
        payload = part.get_payload(decode=True) or b""
        if len(payload) > lim.attachment_bytes:
            refused.append(f"{label}: файл больше {lim.attachment_bytes // MB} МБ, не принят")
        elif suffix == ".csv":
            refused.append(f"{label}: файл .csv не принимается — сведения принимаются только в форме мониторинга "
                           "(книга .xlsx из письма-напоминания), она подтверждает, что их прислала ваша организация")
        elif suffix != ".xlsx":
            refused.append(f"{label}: принимаются только формы мониторинга — файлы .xlsx (без макросов)")
        elif _is_macro_workbook(payload):
            refused.append(f"{label}: книга с макросами не принимается; сохраните ее как «Книга Excel (.xlsx)»")
        else:
            try:
                identity, carried, prefill = read_form(payload, ctx.keys)
            except DAMAGED:
                refused.append(f"{label}: файл поврежден и не читается; сохраните форму заново и пришлите ее")
                continue
            if identity is not None:
                forms.append((n, payload, identity, prefill))
            elif carried:
                tampered = True
                refused.append(f"{label}: подпись формы не совпадает (форма изменена вне Excel или сделана не "
                               "мониторингом); файл не принят, используйте форму из последнего письма")
            else:
                refused.append(f"{label}: это не форма мониторинга (в книге нет подписи формы); сведения "
                               "принимаются только в форме из письма-напоминания")
    return forms, refused, tampered


def form_problem(ctx: Context, identity: FormIdentity, arrived: dt.date) -> str | None:
    """Why a form with a good signature does not authorize a change now (None: it does)."""
    plan = ctx.plan
    if identity.plan_id != plan.id:
        return f"форма другой кампании ({safe_text(identity.plan_id, 40)}); используйте форму из последнего письма"
    if identity.org_id not in ctx.orgs:
        return "организации этой формы нет в реестре участников"
    keys = ctx.keys
    if keys.previous is not None and identity.key_id == key_id(keys.previous) and not keys.accepts_previous(arrived):
        return "форма подписана ключом, который больше не действует; используйте новую форму"
    try:
        expires = identity.expires or form_expiry(plan, identity.stages, identity.as_of)
    except KeyError:  # a stage the plan no longer has
        return "этапов этой формы нет в плане кампании"
    if arrived > expires:
        return f"срок действия формы истек {ru_date(expires)}"
    wait = dt.timedelta(days=plan.intake.superseded_after_days)
    newer = [issued for datasets, issued in issued_forms(ctx.store_url, plan.id, identity.org_id)
             if issued > identity.as_of and set(identity.datasets) <= set(datasets) and arrived > issued + wait]
    if newer:
        return (f"форма заменена более новой от {ru_date(min(newer))} (прежняя принимается "
                f"{plan.intake.superseded_after_days} дн. после выдачи новой)")
    return None


def _allowed(ctx: Context, identity: FormIdentity) -> set[str]:
    """The datasets this form may change: those it was issued for that its organization's kind may submit."""
    kind = ctx.orgs.kind.get(identity.org_id)
    return {d for d in identity.datasets if d in MAIL_RIGHTS and kind in MAIL_RIGHTS[d].kinds}


def _fix_codes(table, targets: set[str], notes: list[str], where: str, drop_bare_codes: bool = False) -> None:
    """Codes typed with look-alike letters or on the Russian layout become the organization's own code (a note
    says so); other codes are left for the reader to refuse. ``drop_bare_codes``: rows holding nothing but a
    code are dropped (a МООУСО's form lists every school; the ones it did not fill in say nothing)."""
    if not table.rows:
        return
    header = [normalize_header(h) for h in table.rows[0]]
    names = {"org_id"} | {normalize_header(ds.column("org_id").ru) for ds in DATASETS.values() if "org_id" in ds.keys}
    col = next((i for i, h in enumerate(header) if h in names), None)
    if col is None:
        return
    if drop_bare_codes:
        keep = [0] + [i for i, row in enumerate(table.rows[1:], 1)
                      if any((v or "").strip() for j, v in enumerate(row) if j != col)]
        table.rows[:] = [table.rows[i] for i in keep]
        table.numbers[:] = [table.numbers[i] for i in keep]
    for row, number in zip(table.rows[1:], table.numbers[1:], strict=False):
        if col >= len(row):
            continue
        typed = (row[col] or "").strip()
        if not typed or typed in targets:
            continue
        match = [t for t in targets if same_code(typed, t)]
        if len(match) == 1:
            row[col] = match[0]
            notes.append(f"{where}, строка {number}: код {describe_code(safe_text(typed, 40))} принят как "
                         f"«{match[0]}»")
        elif any("\u0400" <= ch <= "\u04ff" for ch in typed):
            notes.append(f"{where}, строка {number}: код {describe_code(safe_text(typed, 40))} не совпадает ни с одним "
                         "кодом вашей организации; наберите код латиницей")


def _rows_key(frame, dataset: str) -> list[tuple]:
    keys = DATASETS[dataset].keys
    return sorted(tuple("" if v is None else str(cell_value(v)) for v in rec)
                  for rec in frame[keys].itertuples(index=False, name=None))


def _unchanged(ctx: Context, dataset: str, org_id: str, rows) -> bool:
    """Whether the rows are exactly what the monitor already has for the organization (a form sent back as is)."""
    frame = ctx.frames.get(dataset)
    if frame is None or frame.empty:
        return False
    mine = frame[frame["org_id"] == org_id]
    return len(mine) == len(rows) and _rows_key(mine, dataset) == _rows_key(rows, dataset)


def process_message(msg, ctx: Context, sent_at: dt.datetime, message_id: str, sender: str = "",
                    arrived_at: dt.datetime | None = None) -> tuple[str, str | None, dict]:
    """(outcome, org_id, result) of one message; writes the accepted rows."""

    arrived_at = arrived_at or sent_at
    # The day a form is judged on: the server's arrival day, or the run's day when that is earlier (an admin's
    # run for a past day judges the messages as of that day, as it judges the stages).
    arrived = min(arrived_at.replace(tzinfo=dt.UTC).astimezone(ctx.plan.tz).date(), ctx.as_of)
    forms, refused, tampered = _attachments(msg, ctx)
    sender_orgs = ctx.orgs.of_sender(sender)
    base = {"sender_orgs": sender_orgs, "sent_at": sent_at.isoformat()}
    checked = []
    for n, _payload, identity, _prefill in forms:
        problem = form_problem(ctx, identity, arrived)
        checked.append({"n": n, "org_id": identity.org_id if identity.org_id in ctx.orgs else None,
                        "issued": identity.as_of.isoformat(),
                        "expires": identity.expires.isoformat() if identity.expires else None,
                        "problem": problem})
    valid = [form for form, c in zip(forms, checked, strict=True) if c["problem"] is None]
    known_forms = [c for c in checked if c["org_id"]]
    if not known_forms:  # nothing here authorizes anything
        reason = ("подпись формы не совпадает" if tampered else
                  "в письме нет действующей формы мониторинга: сведения не изменены")
        if sender_orgs:
            reason += "; новая форма организации — во вложении к этому ответу"
            return IntakeOutcome.NO_FORM, sender_orgs[0], base | {
                "reason": reason, "refused": refused, "files": [], "forms": checked, "orgs": sender_orgs,
                "fresh": sender_orgs, "changed": []}
        return IntakeOutcome.UNKNOWN, None, base | {"reason": reason, "refused": refused, "files": [],
                                                    "forms": checked, "orgs": [], "fresh": [], "changed": []}
    orgs = list(dict.fromkeys(c["org_id"] for c in known_forms))
    fresh = list(dict.fromkeys(c["org_id"] for c in known_forms if c["problem"]))
    for c in known_forms:
        if c["problem"]:
            refused.append(f"вложение {c['n']} (форма от {ru_date(dt.date.fromisoformat(c['issued']))}): "
                           f"{c['problem']}; сведения из нее не приняты, новая форма — во вложении к этому ответу")

    # Which sheet of which form holds which dataset.
    jobs: list[tuple[str, str, FormIdentity, int, str | None, Job]] = []  # (where, dataset, form, attachment, as sent)
    for n, payload, identity, prefill in valid:
        allowed = _allowed(ctx, identity)
        titles = sheet_titles(payload)
        if not titles:
            refused.append(f"вложение {n}: книга повреждена и не читается; сохраните форму заново и пришлите ее")
            continue
        for i, title in enumerate(titles):
            ds = sheet_dataset(title)
            shown = safe_text(title, 31)
            if ds is None:
                if shown != "Инструкция":
                    refused.append(f"вложение {n}, лист «{shown}»: такого листа нет в форме; не принят")
            elif ds not in allowed:
                refused.append(f"вложение {n}, лист «{shown}»: эти сведения нельзя изменить этой формой; не принят")
            else:
                jobs.append((f"вложение {n}, лист «{DATASETS[ds].ru}»", ds, identity, n, prefill.get(ds),
                             Job(payload, ".xlsx", set(DATASETS[ds].header_map()), normalize_header, sheet=i)))
    tables = parse_isolated([j for *_, j in jobs], ctx.limits) if jobs else []
    problems: list[dict] = []
    notes: list[str] = []
    candidates: dict[tuple[str, str], list[dict]] = {}
    for (where, ds, identity, n, sent_as, _), table in zip(jobs, tables, strict=True):
        schools = MAIL_RIGHTS[ds].scope == "schools"
        targets = ctx.orgs.schools_of(identity.org_id) if schools else {identity.org_id}
        _fix_codes(table, targets, notes, where, drop_bare_codes=schools)
        frame, found = _read_rows(ctx, ds, where, None if schools else identity.org_id, table)
        as_sent = sent_as is not None and len(frame) > 0 and rows_digest(
            frame[DATASETS[ds].keys].itertuples(index=False, name=None)) == sent_as
        bad_rows = {f.row for f in found if f.row is not None}
        if schools and len(frame):
            for number, code in zip(frame["_row"].tolist(), frame["org_id"].tolist(), strict=True):
                if code not in targets:
                    bad_rows.add(number)
                    problems.append({"file": where, "row": number, "column": DATASETS[ds].column("org_id").ru,
                                     "message": f"школа {describe_code(safe_text(code, 40))} не относится к вашему "
                                                "МООУСО; строка не учтена"})
        problems.extend({"file": f.file, "row": f.row, "column": f.column, "message": f.message} for f in found)
        good = frame[~frame["_row"].isin(bad_rows)] if len(frame) else frame
        for org in sorted(set(good["org_id"].tolist())) if len(good) else []:
            rows = good[good["org_id"] == org]
            candidates.setdefault((ds, org), []).append(
                {"where": where, "issued": identity.as_of, "n": n, "rows": rows, "as_sent": as_sent,
                 "owner": identity.org_id,
                 "unchanged": as_sent or _unchanged(ctx, ds, org, rows)})

    files: list[dict] = []
    changed: list[str] = []
    for (ds, org), options in sorted(candidates.items()):
        # A form that changes the data wins over one sent back as is; then the newest form, the later attachment.
        options.sort(key=lambda o: (not o["unchanged"], o["issued"], o["n"]))
        best = options[-1]
        for other in options[:-1]:
            files.append({"dataset": ds, "org_id": org, "label": other["where"], "rows": len(other["rows"]),
                          "status": "not_applied", "note": f"не применено: в письме есть {best['where']}"})
        entry = {"dataset": ds, "org_id": org, "label": best["where"], "rows": len(best["rows"])}
        later = newest_sent(ctx.intake_root, ds, org)
        if best["as_sent"]:
            files.append(entry | {"status": "unchanged", "note": "лист возвращен таким, каким был отправлен: "
                                                                 "изменений нет"})
        elif best["unchanged"]:
            files.append(entry | {"status": "unchanged", "note": "совпадает с имеющимися сведениями: изменений нет"})
        elif later is not None and later > sent_at:
            files.append(entry | {"status": "superseded", "note": "позже отправлен другой ответ "
                                  f"({_local(later, ctx.plan):%d.%m.%Y %H:%M}), учтен он"})
        else:
            rows = best["rows"]
            path = write_submission(ctx.intake_root, ds, org, sent_at, message_id, rows,
                                    source=_source_label(best["where"], sent_at, ctx.plan),
                                    rows=rows["_row"].tolist())
            files.append(entry | {"status": "accepted", "path": str(path)})
            changed.append(best["owner"])  # the form's organization (a МООУСО for its schools' approvals)
    # A reply that a later reply of the sender replaced was still read correctly: it counts as answered.
    applied = [f for f in files if f["status"] in ("accepted", "unchanged", "superseded")]
    if applied and not problems and not refused:
        outcome = IntakeOutcome.ACCEPTED
    elif applied:
        outcome = IntakeOutcome.PARTIAL
    else:
        outcome = IntakeOutcome.REJECTED
    return outcome, orgs[0], base | {
        "identified_by": "form", "forms": checked, "files": files, "problems": problems[:500],
        "problems_total": len(problems), "refused": refused, "notes": notes[:100], "orgs": orgs,
        "changed": sorted(set(changed)), "fresh": fresh}


def _source_label(where: str, sent_at: dt.datetime, plan) -> str:
    """How a submission's rows are named in findings and letters: the answer and the form's sheet."""
    return f"ответ по почте от {_local(sent_at, plan):%d.%m.%Y %H:%M}, {where.split(', ', 1)[-1]}"


def _read_rows(ctx: Context, dataset: str, rel: str, org_id: str | None, table):
    """The data folder's reader and row rules on one sheet, as a per-organization file of ``org_id`` (None: the
    rows name their schools)."""

    findings: list = []
    frame = read_dataset(Path("."), dataset, findings, ctx.limits, tables=[(rel, org_id, table)])
    if len(frame):
        findings += validate_rows({dataset: frame}, informing_stages(ctx.plan)).findings()
    return frame, findings


# ---------------------------------------------------------------- receipts

# The verdict as the receipt's sentence says it («Итог: сведения приняты»); the outcome's label in tables is
# labels.INTAKE_OUTCOME_RU.
RECEIPT_VERDICT_RU = {IntakeOutcome.ACCEPTED: "сведения приняты", IntakeOutcome.PARTIAL: "сведения приняты частично",
                      IntakeOutcome.REJECTED: "сведения не приняты",
                      IntakeOutcome.NO_FORM: "сведения не изменены: нужна форма мониторинга"}
_FILE_STATUS_RU = {"accepted": "принято", "unchanged": "без изменений", "not_applied": "не применено",
                   "superseded": "заменено более поздним ответом"}


def receipt_recipients(ctx_orgs: Organizations, row: dict) -> list[str]:
    """Who gets the receipt of a message: only addresses the registry and operator lists give the organizations
    it concerns — the sender when it is one of them, and the head of every organization whose data changed
    (when the head did not send it); an authentic form from an address no organization has: its heads."""
    result = row.get("result") or {}
    orgs = [o for o in (result.get("orgs") or ([row["org_id"]] if row.get("org_id") else [])) if o in ctx_orgs]
    sender = (row.get("sender") or "").lower()
    out: list[str] = []
    if sender and any(sender in ctx_orgs.addresses.get(o, ()) for o in orgs):
        out.append(sender)
    heads_of = set(result.get("changed") or [])
    if not out and result.get("identified_by") == "form":
        heads_of |= set(orgs)
    for org in sorted(heads_of):
        out += [h for h in ctx_orgs.heads.get(org, []) if h not in out]
    return [a for a in out if delivery_form(a)]  # an address the outbox would refuse is not tried


def render_receipt(plan, as_of: dt.date, row: dict, org_names: dict, statuses: dict[str, list[dict]],
                   recipient: str, from_email: str, from_name: str, forms: list[tuple[str, bytes]] = (),
                   recipient_name: str | None = None):
    """The reply to one message: what was accepted, what is still wrong (attachment, sheet, row, column), the
    stages now, and a fresh form where the one sent could not count."""

    result = row.get("result") or {}
    outcome = row["outcome"]
    orgs = result.get("orgs") or [row["org_id"]]
    sent = dt.datetime.fromisoformat(result["sent_at"]) if result.get("sent_at") else row["received_at"]
    names = ", ".join(f"{org_names.get(o, o)} (код {o})" for o in orgs)
    lines = [salutation(recipient_name or ""), "",
             f"Получено ваше письмо от {_local(sent, plan):%d.%m.%Y %H:%M} (время — {_zone(plan)}, письмо "
             f"обработано {_local(row['received_at'], plan):%d.%m.%Y %H:%M}). "
             + (f"Организация: {names} — по подписи формы." if result.get("identified_by") == "form"
                else f"Адрес отправителя принадлежит организации: {names}."),
             "", f"Итог: {RECEIPT_VERDICT_RU.get(outcome, outcome)}."]
    if result.get("reason"):
        lines += ["", result["reason"]]
    files = result.get("files") or []
    if files:
        lines += ["", "Сведения из формы (строки листа заменяют прежние сведения организации по этому набору данных):"]
        for f in files:
            org = f" — {org_names.get(f['org_id'], f['org_id'])}" if len(orgs) > 1 or f["org_id"] not in orgs else ""
            lines.append(f"  - {f['label']}{org}: {DATASETS[f['dataset']].ru}, {plural(f['rows'], ROWS)} — "
                         f"{_FILE_STATUS_RU.get(f.get('status'), 'принято')}"
                         + (f" ({f['note']})" if f.get("note") else ""))
    if result.get("notes"):
        lines += ["", "Обратите внимание:"] + [f"  - {n}" for n in result["notes"]]
    wrong = result.get("problems") or []
    if wrong or result.get("refused"):
        lines += ["", "Не принято — исправьте и отправьте снова (ответом на это письмо):"]
        lines += [f"  - {r}" for r in result.get("refused") or []]
        for p in wrong:
            where = p["file"] + (f", строка {p['row']}" if p.get("row") is not None else "") + (
                f", столбец «{p['column']}»" if p.get("column") else "")
            lines.append(f"  - {where}: {safe_text(p['message'], 400)}")
        if result.get("problems_total", 0) > len(wrong):
            more = result["problems_total"] - len(wrong)
            lines.append(f"  ... и еще {plural(more, PROBLEMS)}")
    if forms:
        lines += ["", "Во вложении — действующая форма организации: заполните ее и отправьте ответом на это письмо."]
    for org, rows in statuses.items():
        if not rows:
            continue
        lines += ["", f"Состояние этапов плана — {org_names.get(org, org)} (на {ru_date(as_of)}):"]
        for s in rows:
            lines.append(f"  Этап {s['stage']}. {s['title']}: {STATUS_RU.get(s['status'], s['status'])}")
            lines += [f"    - {m}" for m in s["missing"]]
    lines += ["", "С уважением,", *plan.sender.lines()]
    lines += ["", "--", "Письмо сформировано автоматически системой мониторинга подготовки к приему в 1-й класс "
              f"(кампания {plan.id})."]
    text = "\n".join(safe_text(line, 2000) if line else "" for line in lines) + "\n"
    subject = f"Квитанция: {RECEIPT_VERDICT_RU.get(outcome, outcome)} — {org_names.get(orgs[0], orgs[0])}"
    stages = sorted({s["stage"] for rows in statuses.values() for s in rows})
    msg = envelope(plan.id, "receipt", stages, orgs, as_of, subject,
                   receipt_key(plan.id, row["message_id"], recipient), Person(email=recipient, name=""),
                   from_email, from_name)
    reply_to = safe_message_id(row["message_id"])
    if reply_to and not reply_to.startswith(("<no-id-", "<bad-id-", "<uid-")):
        msg["In-Reply-To"] = reply_to
        msg["References"] = reply_to
    msg.set_content(text, charset="utf-8", cte="base64")
    html_lines = "".join(f"<p>{escape(line)}</p>" if line else "" for line in text.splitlines())
    msg.add_alternative(f"<html><body>{html_lines}</body></html>", subtype="html", charset="utf-8", cte="base64")
    for name, data in forms:
        msg.add_attachment(data, maintype="application",
                           subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet", filename=name)
    return msg


def _local(moment: dt.datetime, plan) -> dt.datetime:
    """A stored (naive UTC) time in the plan's time zone, as the official's clock shows it."""
    return moment.replace(tzinfo=dt.UTC).astimezone(plan.tz)


def _zone(plan) -> str:
    return "московское" if plan.timezone == "Europe/Moscow" else f"часовой пояс {plan.timezone}"


def zone_ru(plan) -> str:
    """The plan's time zone as a column header says it: «время московское»."""
    return "время московское" if plan.timezone == "Europe/Moscow" else f"часовой пояс {plan.timezone}"


def compose_reviews(plan, as_of: dt.date, url: str, results, frames: dict, keys: FormKeys | bytes,
                    from_email: str, from_name: str, dry_run: bool = False) -> dict:
    """A letter for every review made on the campaign page and not yet mailed (kind ``receipt``, one per review):
    to the answer's sender when it is one of the organization's own addresses, else to its head; the reviewer's
    comment, and a fresh form when the answer was not accepted."""
    keys = keys if isinstance(keys, FormKeys) else FormKeys(keys)
    done = reviews(url, plan.id)
    if done.empty:
        return {"reviews": 0}
    with engine_for(url).connect() as conn:
        mailed = {k.split("|")[2] for k in conn.execute(select(outbox.c.digest_key).where(
            outbox.c.plan_id == plan.id, outbox.c.digest_key.startswith(f"{plan.id}|review|"))).scalars()}
        answers = {r["message_id"]: dict(r) for r in conn.execute(select(
            intake.c.message_id, intake.c.sender, intake.c.received_at, intake.c.result).where(
            intake.c.plan_id == plan.id, intake.c.message_id.in_(done["message_id"].tolist()))).mappings()}
    orgs = Organizations(frames)
    messages, issued = [], []
    for r in done.to_dict("records"):
        if str(r["id"]) in mailed or r["org_id"] not in orgs or r["message_id"] not in answers:
            continue
        answer = answers[r["message_id"]]
        sender = (answer.get("sender") or "").lower()
        to = [sender] if sender in orgs.addresses.get(r["org_id"], set()) else orgs.heads.get(r["org_id"], [])
        forms = []
        if r["state"] != "принято":
            stages = _stages_for_form(plan, orgs, r["org_id"], results)
            data = build_form(plan, as_of, r["org_id"], orgs.name.get(r["org_id"], r["org_id"]), stages, frames,
                              keys.current, from_email, kind=orgs.kind.get(r["org_id"])) if stages else None
            if data is not None:
                forms.append((file_name(r["org_id"], as_of), data))
                issued.append((r["org_id"], tuple(form_datasets(plan, stages, orgs.kind.get(r["org_id"]))), as_of,
                               form_expiry(plan, stages, as_of)))
        for address in [a for a in to if delivery_form(a)]:
            messages.append((f"{plan.id}|review|{r['id']}|{address}", "receipt",
                             _review_letter(plan, as_of, r, answer, orgs, address, from_email, from_name, forms)))
    if messages:
        enqueue(url, plan.id, as_of, messages, dry_run=dry_run)
    if issued and not dry_run:
        record_issued_forms(url, plan.id, issued)
    return {"reviews": len(messages)}


def _review_letter(plan, as_of: dt.date, review: dict, answer: dict, orgs: Organizations, address: str,
                   from_email: str, from_name: str, forms: list[tuple[str, bytes]]):
    received = _local(answer["received_at"], plan)
    accepted = "; ".join(DATASETS[f["dataset"]].ru for f in (answer.get("result") or {}).get("files", [])
                         if f.get("dataset") in DATASETS and f.get("status", "accepted") == "accepted")
    name = orgs.name.get(review["org_id"], review["org_id"])
    lines = [salutation(orgs.person.get(address, "")), "",
             f"Ответ организации {name} (код {review['org_id']}) от {received:%d.%m.%Y %H:%M}"
             + (f" (сведения: {accepted})" if accepted else "") + f" проверен: {review['state']}."]
    if review["comment"]:
        lines += ["", f"Замечания проверяющего: {safe_text(review['comment'], 2000)}"]
    if review["state"] != "принято":
        lines += ["", "Пока замечания не устранены, этап не считается выполненным. Исправьте сведения в форме "
                      "во вложении и отправьте ее ответом на это письмо."]
    lines += ["", "С уважением,", *plan.sender.lines(), "", "--",
              "Письмо сформировано автоматически системой мониторинга подготовки к приему в 1-й класс "
              f"(кампания {plan.id})."]
    text = "\n".join(lines) + "\n"
    msg = envelope(plan.id, "receipt", [], [review["org_id"]], as_of,
                   f"Проверка ответа: {review['state']} — {name}", f"{plan.id}|review|{review['id']}|{address}",
                   Person(email=address, name=""), from_email, from_name)
    reply_to = safe_message_id(review["message_id"])
    if reply_to and not reply_to.startswith(("<no-id-", "<bad-id-", "<uid-")):
        msg["In-Reply-To"] = reply_to
        msg["References"] = reply_to
    msg.set_content(text, charset="utf-8", cte="base64")
    msg.add_alternative("<html><body>" + "".join(f"<p>{escape(line)}</p>" if line else "" for line in text.splitlines())
                        + "</body></html>", subtype="html", charset="utf-8", cte="base64")
    for file, data in forms:
        msg.add_attachment(data, maintype="application",
                           subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet", filename=file)
    return msg


def _stages_for_form(plan, ctx_orgs: Organizations, org_id: str, results) -> list[int]:
    """The stages a fresh form covers: those the organization (or, for approvals, its schools) has not completed
    and may submit data for by mail; every such stage when all are complete (to correct the data)."""
    kind = ctx_orgs.kind.get(org_id)
    status = {}
    if len(results):
        status = {(o, int(s)): st for o, s, st in zip(results["org_id"].tolist(), results["stage"].tolist(),
                                                       results["status"].tolist(), strict=True)}
    able, open_ = [], []
    for stage in plan.ordered_stages:
        datasets = form_datasets(plan, [stage.number], kind)
        if not datasets:
            continue
        schools = any(MAIL_RIGHTS[d].scope == "schools" for d in datasets)
        who = sorted(ctx_orgs.schools_of(org_id)) if schools else [org_id]
        concerned = [o for o in who if ctx_orgs.kind.get(o) in stage.concerns]
        if not concerned:
            continue
        able.append(stage.number)
        if any(status.get((o, stage.number)) != Status.COMPLETE for o in concerned):
            open_.append(stage.number)
    return open_ or able


def compose_receipts(plan, as_of: dt.date, url: str, results, frames: dict, keys: FormKeys | bytes,
                     from_email: str, from_name: str, dry_run: bool = False) -> dict:
    """A receipt for every message read and not yet answered, to the addresses :func:`receipt_recipients`
    allows; unknown senders, duplicates and quarantined messages get none. A message whose receipt fails
    ``MAX_ATTEMPTS`` times is quarantined."""

    keys = keys if isinstance(keys, FormKeys) else FormKeys(keys)
    orgs = Organizations(frames)
    titles = {s.number: s.title for s in plan.stages}
    counts = {"receipts": 0, "no_reply": 0, "forms": 0, "quarantined": 0}
    issued: list = []
    for row in rows_in(url, plan.id, (IntakeState.WRITTEN,)):
        try:
            messages = _receipts_of(plan, as_of, row, results, frames, keys, orgs, titles, from_email, from_name,
                                    issued)
            if messages:
                enqueue(url, plan.id, as_of, messages, dry_run=dry_run)
        except Exception as exc:  # noqa: BLE001 (one message must not stop the receipts of the others)
            result = dict(row.get("result") or {})
            result["receipt_attempts"] = int(result.get("receipt_attempts") or 0) + 1
            result["receipt_error"] = type(exc).__name__
            log.error("receipt of message uid %s failed (attempt %d): %s", row["uid"], result["receipt_attempts"],
                      type(exc).__name__)
            if result["receipt_attempts"] >= MAX_ATTEMPTS:
                result["reason"] = (f"квитанцию не удалось составить ({MAX_ATTEMPTS} попытки, ошибка "
                                    f"{type(exc).__name__}); письмо отложено, проверьте его вручную")
                _put(url, row | {"state": IntakeState.RECEIPTED, "outcome": IntakeOutcome.QUARANTINED,
                                 "result": result})
                counts["quarantined"] += 1
            else:
                _put(url, row | {"result": result})
            continue
        if messages:
            counts["receipts"] += len(messages)
            counts["forms"] += sum(1 for _, _, m in messages for _ in m.iter_attachments())
        else:
            counts["no_reply"] += 1
        # recorded after the outbox holds the receipt: a rerun finds it there (same key) and stops
        _put(url, row | {"state": IntakeState.RECEIPTED})
    if issued and not dry_run:
        record_issued_forms(url, plan.id, issued)
    return counts


def _receipts_of(plan, as_of, row, results, frames, keys, orgs, titles, from_email, from_name, issued) -> list:
    if row["outcome"] in (IntakeOutcome.UNKNOWN, IntakeOutcome.DUPLICATE, IntakeOutcome.QUARANTINED):
        return []
    recipients = receipt_recipients(orgs, row)
    if not recipients:
        return []
    result = row.get("result") or {}
    concerned = [o for o in (result.get("orgs") or [row["org_id"]]) if o in orgs]
    statuses = {}
    for org in concerned:
        mine = results[results["org_id"] == org] if len(results) else results
        statuses[org] = [{"stage": int(r.stage), "title": titles.get(int(r.stage), ""), "status": r.status,
                          "missing": list(r.missing)} for r in mine.sort_values("stage").itertuples()] if len(mine) else []
    forms = []
    for org in result.get("fresh") or []:
        if org not in orgs:
            continue
        stages = _stages_for_form(plan, orgs, org, results)
        data = build_form(plan, as_of, org, orgs.name.get(org, org), stages, frames, keys.current, from_email,
                          kind=orgs.kind.get(org)) if stages else None
        if data is not None:
            forms.append((file_name(org, as_of), data))
            issued.append((org, tuple(form_datasets(plan, stages, orgs.kind.get(org))), as_of,
                           form_expiry(plan, stages, as_of)))
    return [(receipt_key(plan.id, row["message_id"], to), "receipt",
             render_receipt(plan, as_of, row, orgs.name, statuses, to, from_email, from_name, forms,
                            orgs.person.get(to.lower())))
            for to in recipients]
