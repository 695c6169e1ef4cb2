"""Answers by mail: forms and files returned to the monitor's mailbox become the organization's data.

Steps, each recorded in the store (``admission_intake``, keyed by the mailbox's UIDVALIDITY and the message's
UID) before it acts, so that a retry, a second run or a process killed half-way continues instead of repeating:

1. ``read_mailbox``: every message of INBOX not yet recorded is claimed (state ``received``), read and checked;
   accepted rows are written as the organization's submission (state ``written``). A message whose Message-ID
   was already processed (delivered twice) is a ``duplicate``: nothing written, no receipt.
2. (the caller refreshes the day's snapshot and stage results, so the receipt tells the status after it)
3. ``compose_receipts``: the receipt (kind ``receipt``, In-Reply-To the message) goes into the outbox under a key
   of the message, so it is recorded once (state ``receipted``); unknown senders get none (no backscatter).
4. ``file_messages``: the message is moved to «Обработано» or «Отклонено» (state ``filed``).

Who the message is from: the form's signed identity (admission.mail.forms) decides; without a form, the sender's
address when it belongs to exactly one organization (its head or an operator in the registry and the operator
lists). A form writes for its own organization only: a forwarded form counts for the organization it was made
for, and a row naming another organization is refused, as in a per-organization file of the data folder.

What is read: ``.xlsx`` and ``.csv`` attachments, at most ``attachment_bytes`` each and ``message_bytes`` per
message (checked from the server's size before the message is fetched); macro workbooks and other files are
refused with a reason. Each sheet or file goes through the data folder's reader (forked parse under the same
limits) and row rules (GX); the rows without a problem become the submission, the others are listed in the
receipt with file, row and column.

Where it goes: ``<output>/intake/<dataset>/<org_id>/<received>_<message>.csv`` (UTF-8, the contract's English
keys), written atomically, every version kept; the admin's data folder is never written. The snapshot takes,
per organization and dataset, the newer of the data folder's file and the newest submission (:func:`merge`).
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import io
import logging
import re
import zipfile
from dataclasses import dataclass, field
from email import policy
from email.utils import parseaddr
from html import escape
from pathlib import Path

from sqlalchemy import delete, insert, select

from admission.addresses import split_emails
from admission.inputs.files import Job, Limits, parse_isolated, sheet_titles
from admission.inputs.reader import read_dataset
from admission.inputs.rules import validate_rows
from admission.inputs.submissions import write_submission
from admission.labels import STATUS_RU
from admission.mail.forms import read_identity, sheet_dataset
from admission.mail.keys import receipt_key
from admission.mail.outbox import enqueue
from admission.mail.recipients import Person
from admission.mail.render import envelope
from admission.registry import CHECKS, informing_stages
from admission.schema import DATASETS, normalize_header
from admission.store import engine_for, intake
from admission.templating import ru_date
from admission.vocabulary import IntakeOutcome, IntakeState

log = logging.getLogger(__name__)

FOLDER_DONE = "Обработано"
FOLDER_REJECTED = "Отклонено"
MB = 1024 * 1024


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
    key: bytes  # the forms' HMAC key (admission.mail.forms.installation_key)
    registry: object  # the snapshot's organizations frame
    operators: object  # the snapshot's operators frame (sender addresses of operators)
    limits: Limits = field(default_factory=Limits.from_env)
    intake_limits: IntakeLimits = field(default_factory=IntakeLimits)


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


def day_rows(url: str, plan_id: str, as_of: dt.date) -> list[dict]:
    """The messages processed for a day (the report's «Почта» sheet)."""

    with engine_for(url).connect() as conn:
        rows = conn.execute(select(intake).where(intake.c.plan_id == plan_id, intake.c.as_of == as_of)
                            .order_by(intake.c.received_at, intake.c.uid)).mappings().all()
    return [dict(r) for r in rows]


# ---------------------------------------------------------------- the mailbox


def _uidvalidity(client) -> int:
    typ, data = client.select("INBOX")
    if typ != "OK":
        raise RuntimeError(f"IMAP: INBOX cannot be selected: {data!r}")
    value = client.response("UIDVALIDITY")[1]
    return int(value[0]) if value and value[0] else 0


def read_mailbox(client, ctx: Context) -> dict:
    """Claim, read and check every new message of INBOX; write the accepted rows. Returns counts."""
    uidvalidity = _uidvalidity(client)
    typ, data = client.uid("SEARCH", None, "ALL")
    uids = [int(u) for u in (data[0] or b"").split()] if typ == "OK" else []
    counts = {"messages": len(uids), "new": 0, "written": 0, "duplicates": 0, "unknown": 0, "rejected": 0}
    for uid in uids:
        row = _get(ctx.store_url, uidvalidity, uid)
        if row is not None and row["state"] != IntakeState.RECEIVED:
            continue  # already read; the later steps finish it
        typ, data = client.uid("FETCH", str(uid), "(RFC822.SIZE BODY.PEEK[HEADER])")
        if typ != "OK" or not data or not isinstance(data[0], tuple):
            log.warning("IMAP: message uid %s could not be fetched; left for the next run", uid)
            continue
        size = int(re.search(rb"RFC822\.SIZE (\d+)", data[0][0]).group(1))
        head = email.message_from_bytes(data[0][1], policy=policy.default)
        message_id = str(head.get("Message-ID") or "").strip() or f"<no-id-{uidvalidity}-{uid}@intake>"
        sender = parseaddr(str(head.get("From") or ""))[1].strip().lower()
        if row is None:  # claimed before anything is written: a rerun finds it and continues
            row = {"uidvalidity": uidvalidity, "uid": uid, "message_id": message_id[:400], "plan_id": ctx.plan.id,
                   "as_of": ctx.as_of, "received_at": _now(), "sender": sender[:320] or None,
                   "subject": str(head.get("Subject") or "")[:500], "state": IntakeState.RECEIVED, "outcome": None,
                   "org_id": None, "result": None}
            _put(ctx.store_url, row)
        counts["new"] += 1
        if _processed_elsewhere(ctx.store_url, row["message_id"], uidvalidity, uid):
            outcome, org_id, result = IntakeOutcome.DUPLICATE, None, {"reason": "это письмо уже обработано (получено повторно)"}
        elif size > ctx.intake_limits.message_bytes:
            org_id = sender_org(ctx, sender)
            outcome, result = (IntakeOutcome.REJECTED if org_id else IntakeOutcome.UNKNOWN), {
                "reason": f"письмо больше {ctx.intake_limits.message_bytes // MB} МБ: не принято; отправьте "
                          "файлы меньшего размера", "identified_by": "sender" if org_id else None}
        else:
            typ, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
            raw = data[0][1] if typ == "OK" and data and isinstance(data[0], tuple) else b""
            outcome, org_id, result = process_message(email.message_from_bytes(raw, policy=policy.default), ctx,
                                                      row["received_at"], row["message_id"])
        counts["written" if outcome in (IntakeOutcome.ACCEPTED, IntakeOutcome.PARTIAL) else
               "duplicates" if outcome == IntakeOutcome.DUPLICATE else outcome] += 1
        _put(ctx.store_url, row | {"state": IntakeState.WRITTEN, "outcome": outcome, "org_id": org_id, "result": result})
    log.info("mailbox: %s", counts)
    return counts


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


def sender_org(ctx: Context, sender: str) -> str | None:
    """The organization whose head or operator writes from this address, when exactly one."""
    if not sender:
        return None

    found: set[str] = set()
    reg = ctx.registry
    for org_id, cell in zip(reg["org_id"].tolist(), reg["head_email"].tolist(), strict=True):
        if isinstance(cell, str) and sender in {e.lower() for e in split_emails(cell)}:
            found.add(org_id)
    ops = ctx.operators
    if ops is not None and not ops.empty:
        for org_id, cell in zip(ops["org_id"].tolist(), ops["email"].tolist(), strict=True):
            if isinstance(cell, str) and sender in {e.lower() for e in split_emails(cell)}:
                found.add(org_id)
    known = set(reg["org_id"].tolist())
    found &= known
    return next(iter(found)) if len(found) == 1 else None


def _is_macro_workbook(data: bytes) -> bool:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False
    return any(n.lower().endswith("vbaproject.bin") for n in names)


def _dataset_of_file(name: str, header: list[str]) -> str | None:
    """A plain file's dataset: its name (``operators.csv``, «Операторы ОО.xlsx»), else the header that covers
    one form dataset's required columns best."""

    candidates = [d for c in CHECKS.values() for d in c.form]
    stem = normalize_header(Path(name).stem)
    for d in candidates:
        if stem in (d, normalize_header(DATASETS[d].ru)):
            return d
    seen = {normalize_header(h) for h in header}
    best, best_score = None, 0
    for d in dict.fromkeys(candidates):
        mapping = DATASETS[d].header_map()
        keys = {mapping[h] for h in seen if h in mapping}
        if set(DATASETS[d].required) <= keys and len(keys) > best_score:
            best, best_score = d, len(keys)
    return best


def process_message(msg, ctx: Context, received_at: dt.datetime, message_id: str) -> tuple[str, str | None, dict]:
    """(outcome, org_id, result) of one message; writes the accepted rows."""

    sender = parseaddr(str(msg.get("From") or ""))[1].strip().lower()
    lim = ctx.intake_limits
    refused: list[str] = []
    identity, tampered = None, False
    files: list[tuple[str, bytes, object]] = []  # (name, content, its verified form identity or None)
    for part in msg.walk():
        name = part.get_filename()
        if not name or part.is_multipart():
            continue
        name = name.replace("/", "_")[:200]
        suffix = Path(name).suffix.casefold()
        if len(files) + len(refused) >= lim.attachments:
            refused.append(f"«{name}»: в письме больше {lim.attachments} файлов, остальные не читались")
            break
        payload = part.get_payload(decode=True) or b""
        if suffix not in (".xlsx", ".csv"):
            refused.append(f"«{name}»: принимаются только файлы .xlsx (без макросов) и .csv")
        elif len(payload) > lim.attachment_bytes:
            refused.append(f"«{name}»: файл больше {lim.attachment_bytes // MB} МБ, не принят")
        elif suffix == ".xlsx" and _is_macro_workbook(payload):
            refused.append(f"«{name}»: книга с макросами не принимается; сохраните ее как «Книга Excel (.xlsx)»")
        else:
            found = None
            if suffix == ".xlsx":
                found, carried = read_identity(payload, ctx.key)
                if carried and found is None:
                    tampered = True
                    refused.append(f"«{name}»: подпись формы не совпадает (форма изменена вне Excel или сделана не "
                                   "мониторингом); файл не принят, используйте форму из последнего письма")
                    continue
                identity = identity or found
            files.append((name, payload, found))
    known = set(ctx.registry["org_id"].tolist())
    if identity is not None and identity.org_id in known:
        org_id, how = identity.org_id, "form"
    else:
        org_id, how = sender_org(ctx, sender), "sender"
    if org_id is None:
        reason = ("подпись формы не совпадает" if tampered else
                  "в письме нет формы мониторинга, а адрес отправителя не принадлежит ни одной организации реестра")
        return IntakeOutcome.UNKNOWN, None, {"reason": reason, "refused": refused, "files": []}

    # Which sheet of which file holds which dataset.
    jobs: list[tuple[str, str, Job]] = []  # (label, dataset, job)
    for name, payload, ident in files:
        if name.casefold().endswith(".xlsx"):
            titles = sheet_titles(payload)
            for i, title in enumerate(titles):
                ds = sheet_dataset(title)
                if ds is None:
                    continue
                if ident is not None and ds not in ident.datasets:
                    refused.append(f"«{name}», лист «{title}»: этот лист не входит в форму; не принят")
                    continue
                jobs.append((f"{name}, лист «{title}»", ds, Job(payload, ".xlsx", set(DATASETS[ds].header_map()),
                                                                 normalize_header, sheet=i)))
            if not any(j[0].startswith(f"{name},") for j in jobs) and ident is None:
                jobs.append((name, "", Job(payload, ".xlsx", set(), normalize_header)))
        else:
            jobs.append((name, "", Job(payload, ".csv", set(), normalize_header)))
    tables = parse_isolated([j for _, _, j in jobs], ctx.limits) if jobs else []
    accepted: list[dict] = []
    problems: list[dict] = []
    stamp = received_at.strftime("%d.%m.%Y %H:%M")
    for (label, ds, _), table in zip(jobs, tables, strict=True):
        rel = f"письмо {stamp}: {label}"
        if not ds:
            header = table.rows[0] if table.rows else []
            ds = _dataset_of_file(label, header) or ""
            if not ds:
                refused.append(f"«{label}»: не удалось понять, какие это сведения (назовите файл по набору данных, "
                               "например operators.csv, или используйте форму из письма)")
                continue
        frame, found = _read_rows(ctx, ds, rel, org_id, table)
        bad_rows = {f.row for f in found if f.row is not None}
        problems.extend({"file": f.file, "row": f.row, "column": f.column, "message": f.message} for f in found)
        good = frame[~frame["_row"].isin(bad_rows)] if len(frame) else frame
        if len(good):
            path = write_submission(ctx.intake_root, ds, org_id, received_at, message_id, good)
            accepted.append({"dataset": ds, "label": label, "rows": len(good), "refused_rows": len(bad_rows),
                             "path": str(path)})
    outcome = (IntakeOutcome.ACCEPTED if accepted and not problems and not refused else IntakeOutcome.PARTIAL if accepted else IntakeOutcome.REJECTED)
    return outcome, org_id, {"identified_by": how, "files": accepted, "problems": problems[:500],
                             "problems_total": len(problems), "refused": refused}


def _read_rows(ctx: Context, dataset: str, rel: str, org_id: str, table):
    """The data folder's reader and row rules on one sheet, as a per-organization file of ``org_id``."""

    findings: list = []
    frame = read_dataset(Path("."), dataset, findings, ctx.limits, tables=[(rel, org_id, table)])
    if len(frame):
        findings += validate_rows({dataset: frame}, informing_stages(ctx.plan)).findings()
    return frame, findings


# ---------------------------------------------------------------- receipts

# The verdict as the receipt's sentence says it («Итог: сведения приняты»); the outcome's label in tables is
# labels.INTAKE_OUTCOME_RU.
RECEIPT_VERDICT_RU = {IntakeOutcome.ACCEPTED: "сведения приняты", IntakeOutcome.PARTIAL: "сведения приняты частично",
                      IntakeOutcome.REJECTED: "сведения не приняты"}


def render_receipt(plan, as_of: dt.date, row: dict, org_name: str, statuses: list[dict], from_email: str,
                   from_name: str):
    """The reply to one message: what was accepted, what is still wrong (file, row, column), the stages now."""

    result = row.get("result") or {}
    outcome = row["outcome"]
    lines = ["Здравствуйте!", "",
             f"Получено ваше письмо «{row.get('subject') or 'без темы'}» "
             f"({_local(row['received_at'], plan):%d.%m.%Y %H:%M}). Организация: {org_name} (код {row['org_id']}) — "
             + ("по подписи формы." if result.get("identified_by") == "form" else "по адресу отправителя."),
             "", f"Итог: {RECEIPT_VERDICT_RU.get(outcome, outcome)}."]
    if result.get("reason"):
        lines += ["", result["reason"]]
    if result.get("files"):
        lines += ["", "Принято (заменяет прежние сведения организации по этим наборам данных):"]
        lines += [f"  - {f['label']}: {DATASETS[f['dataset']].ru}, строк {f['rows']}" for f in result["files"]]
    wrong = result.get("problems") or []
    if wrong or result.get("refused"):
        lines += ["", "Не принято — исправьте и отправьте снова (ответом на это письмо):"]
        lines += [f"  - {r}" for r in result.get("refused") or []]
        for p in wrong:
            where = p["file"] + (f", строка {p['row']}" if p.get("row") is not None else "") + (
                f", столбец «{p['column']}»" if p.get("column") else "")
            lines.append(f"  - {where}: {p['message']}")
        if result.get("problems_total", 0) > len(wrong):
            lines.append(f"  ... и еще {result['problems_total'] - len(wrong)}")
    if statuses:
        lines += ["", f"Состояние этапов плана по организации после получения (на {ru_date(as_of)}):"]
        for s in statuses:
            lines.append(f"  Этап {s['stage']}. {s['title']}: {STATUS_RU.get(s['status'], s['status'])}")
            lines += [f"    - {m}" for m in s["missing"]]
    lines += ["", "--", "Письмо сформировано автоматически системой мониторинга подготовки к приему в 1-й класс "
              f"(кампания {plan.id})."]
    text = "\n".join(lines) + "\n"
    subject = f"Квитанция: {RECEIPT_VERDICT_RU.get(outcome, outcome)} — {org_name}"
    recipient = Person(email=row["sender"], name="")
    stages = [s["stage"] for s in statuses]
    msg = envelope(plan.id, "receipt", stages, [row["org_id"]], as_of, subject,
                   receipt_key(plan.id, row["message_id"], row["sender"]), recipient, from_email, from_name)
    if row["message_id"] and not row["message_id"].startswith("<no-id-"):
        msg["In-Reply-To"] = row["message_id"]
        msg["References"] = row["message_id"]
    msg.set_content(text, charset="utf-8", cte="base64")
    html_lines = "".join(f"<p>{_html(line)}</p>" if line else "" for line in lines)
    msg.add_alternative(f"<html><body>{html_lines}</body></html>", subtype="html", charset="utf-8", cte="base64")
    return msg


def _local(moment: dt.datetime, plan) -> dt.datetime:
    """A stored (naive UTC) time in the plan's time zone, as the official's clock shows it."""
    return moment.replace(tzinfo=dt.UTC).astimezone(plan.tz)


def _html(text: str) -> str:
    return escape(text)


def compose_receipts(plan, as_of: dt.date, url: str, results, registry, from_email: str, from_name: str,
                     dry_run: bool = False) -> dict:
    """A receipt for every message read and not yet answered; unknown senders and duplicates get none."""

    names = dict(zip(registry["org_id"].tolist(), registry["name"].tolist(), strict=True))
    titles = {s.number: s.title for s in plan.stages}
    messages, counts = [], {"receipts": 0, "no_reply": 0}
    rows = rows_in(url, plan.id, (IntakeState.WRITTEN,))
    for row in rows:
        if row["outcome"] in (IntakeOutcome.UNKNOWN, IntakeOutcome.DUPLICATE) or not row["org_id"] or not row["sender"]:
            counts["no_reply"] += 1
            continue
        mine = results[results["org_id"] == row["org_id"]] if len(results) else results
        statuses = [{"stage": int(r.stage), "title": titles.get(int(r.stage), ""), "status": r.status,
                     "missing": list(r.missing)} for r in mine.sort_values("stage").itertuples()]
        msg = render_receipt(plan, as_of, row, str(names.get(row["org_id"], row["org_id"])), statuses, from_email,
                             from_name)
        messages.append((receipt_key(plan.id, row["message_id"], row["sender"]), "receipt", msg))
        counts["receipts"] += 1
    if messages:
        counts |= enqueue(url, plan.id, as_of, messages, dry_run=dry_run)
    for row in rows:  # recorded after the outbox holds the receipt: a rerun finds it there (same key) and stops
        _put(url, row | {"state": IntakeState.RECEIPTED})
    return counts
