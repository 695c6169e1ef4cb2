"""Render a digest as a real e-mail: Russian text, HTML with a text/plain twin, contract headers.

The MIME message is built here with the standard library (not by yagmail,
whose message builder drops the address from ``To:``, reuses Message-IDs
and copies HTML into the plain part); yagmail only carries the connection.
Org names and people's names come from files people fill in, so the HTML
template autoescapes and header values lose any line breaks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses
from functools import lru_cache
from pathlib import Path

from admission.mail.keys import request_key
from admission.mail.recipients import Digest
from admission.plan import Plan
from admission.registry import REQUEST_CHECKS, REQUEST_DEADLINE_CHECK, stages_with
from admission.templating import render as render_template
from admission.templating import ru_date, stage_list
from admission.wording import CHANGES, plural
from admission.xlsx import XLSX_MIME

# Lines up to 120 characters (RFC 5322 allows 998): a Russian display name stays one encoded-word,
# which some parsers (Python's own among them) otherwise split with a stray space.
WIRE_POLICY = policy.SMTP.clone(max_line_length=120)
_CRLF = re.compile(r"[\r\n\t\x00-\x1f\x7f]+")

SUBJECTS = {
    "reminder": "Напоминание о сроке: {stages}",
    "overdue": "Срок пропущен: {stages}",
    "escalation": "Просрочки подведомственных организаций: {stages}",
}
INTROS = {
    "reminder": "Приближается срок выполнения мероприятий плана подготовки к приему в первый класс в электронной "
                "форме. По данным на {date} не выполнено следующее:",
    "overdue": "Срок выполнения мероприятий плана подготовки к приему в первый класс в электронной форме истек. "
               "По данным на {date} не выполнено следующее:",
    "escalation": "Подведомственные организации не выполнили в срок мероприятия плана подготовки к приему "
                  "в первый класс в электронной форме. Состояние на {date}:",
    # A reminder of stages without a deadline (stage 1 runs the whole campaign): no deadline «approaches».
    "ongoing": "Напоминаем о мероприятиях плана подготовки к приему в первый класс в электронной форме, которые "
               "выполняются в течение всей кампании. По данным на {date} не выполнено следующее:",
}
NEXT_STEPS = {
    "reminder": "Пожалуйста, выполните мероприятия до срока. Если срок будет пропущен, сведения о просрочке "
                "получит вышестоящий орган.",
    "overdue": "Пожалуйста, устраните недостатки как можно скорее. Сведения о просрочке направлены "
               "в вышестоящий орган; напоминания будут приходить ежедневно до выполнения.",
    "escalation": "Просим взять выполнение на контроль. Ответственные организации получают ежедневные уведомления.",
    "ongoing": "Пожалуйста, выполните эти мероприятия: их выполнение проверяется ежедневно до конца кампании.",
}


def clean_header(value: str) -> str:
    """One line, no control characters: a name from a spreadsheet cannot add headers."""
    return _CRLF.sub(" ", value).strip()


def contract_header_values(plan_id: str, kind: str, stages, org_ids, as_of: dt.date) -> dict[str, str]:
    """The machine-readable headers of contract section 5 (decoded values)."""
    return {
        "X-Admission-Campaign": clean_header(plan_id),
        "X-Admission-Kind": kind,
        "X-Admission-Stages": ",".join(str(s) for s in sorted(set(stages))),
        "X-Admission-Orgs": clean_header(",".join(sorted(set(org_ids)))),
        "X-Admission-Date": as_of.isoformat(),
    }


def contract_headers(msg: EmailMessage, plan_id: str, kind: str, stages, org_ids, as_of: dt.date) -> None:
    for name, value in contract_header_values(plan_id, kind, stages, org_ids, as_of).items():
        msg[name] = value


def envelope(plan_id: str, kind: str, stages, org_ids, as_of: dt.date, subject: str, key: str,
             recipient, from_email: str, from_name: str = "") -> EmailMessage:
    """An EmailMessage with every header a report or a request carries (bodies are added by the caller)."""
    msg = EmailMessage()
    msg["Subject"] = clean_header(subject)
    msg["From"] = Address(display_name=clean_header(from_name), addr_spec=from_email)
    msg["To"] = Address(display_name=clean_header(recipient.name), addr_spec=recipient.email)
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = message_id(key, from_email.rsplit("@", 1)[-1] or "admission.local")
    contract_headers(msg, plan_id, kind, stages, org_ids, as_of)
    return msg


def message_id(digest_key: str, domain: str) -> str:
    return f"<{hashlib.sha256(digest_key.encode()).hexdigest()[:40]}@{domain}>"


def subject_for(digest: Digest, plan: Plan) -> str:
    return clean_header(f"{SUBJECTS[digest.kind].format(stages=stage_list(digest.stages))} — "
                        f"прием в 1-й класс, кампания {plan.id}, на {ru_date(digest.as_of)}")


def _encoded_words(text: str, limit: int = 45) -> list[str]:
    """RFC 2047 base64 words of at most `limit` UTF-8 bytes each, cut on character boundaries."""
    words, chunk = [], b""
    for ch in text:
        b = ch.encode()
        if len(chunk) + len(b) > limit:
            words.append(chunk)
            chunk = b""
        chunk += b
    if chunk:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words]


MAX_DISPLAY_NAME = 100  # one encoded word of at most ≈ 280 characters: header lines stay far under 998


def address(name: str, email: str) -> str:
    """`Name <addr>`; a Russian name is one RFC 2047 word (a split one gains a stray space in some parsers)."""
    name = clean_header(name)
    if len(name) > MAX_DISPLAY_NAME:  # a name cell can hold thousands of characters; a header line may not
        name = name[:MAX_DISPLAY_NAME - 1] + "…"
    if not name:
        return email
    if name.isascii():
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{email}>'
    return f"=?utf-8?b?{base64.b64encode(name.encode()).decode()}?= <{email}>"


@lru_cache(maxsize=4096)
def unstructured(value: str) -> str:
    value = clean_header(value)
    return value if value.isascii() else "\n ".join(_encoded_words(value))


class Rendered:
    """A digest ready for the outbox: its headers (decoded, for the store and tests) and its wire text.

    Written by hand instead of through the email package, whose header folding made rendering
    the slowest step of a national run (≈120 messages/s); the structure is fixed and simple:
    multipart/alternative with a base64 text/plain part and a base64 text/html part.
    """

    def __init__(self, headers: dict[str, str], wire: str, recipient: str):
        self.headers = headers
        self.wire = wire
        self.recipient = recipient  # the bare address in To:

    def __getitem__(self, name: str) -> str | None:
        return self.headers.get(name)


def _b64(text: str) -> str:
    return base64.encodebytes(text.encode("utf-8")).decode("ascii")


def render(digest: Digest, plan: Plan, from_email: str, from_name: str = "",
           now: dt.datetime | None = None, attachments: list[tuple[str, bytes]] | None = None,
           page_link: tuple[str, dt.date] | None = None) -> Rendered:
    """The complete message for one digest; the same digest always gets the same Message-ID.
    ``attachments``: (ASCII file name, XLSX bytes), e.g. the organizations' forms (admission.mail.forms);
    ``page_link``: (URL, last day) of the recipient's organizations on the campaign page (admission.report.links)."""
    by_stage: dict[int, list] = {}
    for item in digest.items:  # one pass: an escalation digest may list thousands of items
        by_stage.setdefault(item.stage, []).append(item)
    stages = []
    for number in sorted(by_stage):
        stage = plan.stage(number)
        stages.append({
            "number": number, "title": stage.title, "text": stage.text, "deadline": stage.deadline,
            "deadline_text": stage.deadline_text, "items": by_stage[number],
        })
    subject = subject_for(digest, plan)
    ongoing = digest.kind == "reminder" and not any(plan.stage(n).deadline for n in by_stage)
    tone = "ongoing" if ongoing else digest.kind
    context = {
        "subject": subject, "recipient": digest.recipient, "kind": digest.kind, "stages": stages,
        "intro": INTROS[tone].format(date=ru_date(digest.as_of)), "next_step": NEXT_STEPS[tone],
        "sender": plan.sender,
        "plan_id": plan.id, "as_of": digest.as_of, "forms": [name for name, _ in attachments or []],
        "page_link": page_link[0] if page_link else None, "page_link_until": page_link[1] if page_link else None,
    }
    text = render_template("mail/digest.txt.j2", context)
    html = render_template("mail/digest.html.j2", context)
    to_name = clean_header(digest.recipient.name)
    headers = {
        "Subject": subject,
        "From": f"{clean_header(from_name)} <{from_email}>" if from_name else from_email,
        "To": f"{to_name} <{digest.recipient.email}>" if to_name else digest.recipient.email,
        "Date": format_datetime(now or dt.datetime.now(dt.UTC)),
        "Message-ID": message_id(digest.key, from_email.rsplit("@", 1)[-1] or "admission.local"),
        **contract_header_values(plan.id, digest.kind, digest.stages, digest.org_ids, digest.as_of),
    }
    wire_headers = dict(headers, Subject=unstructured(subject), From=address(from_name, from_email),
                        To=address(digest.recipient.name, digest.recipient.email))
    for name in ("X-Admission-Campaign", "X-Admission-Orgs"):  # ids are data: keep the wire ASCII
        if not wire_headers[name].isascii():
            wire_headers[name] = unstructured(wire_headers[name])
    orgs = wire_headers["X-Admission-Orgs"]
    if len(orgs) > 900:  # fold a long list after commas: RFC 5322 lines stay under 998 characters
        lines = [""]
        for oid in orgs.split(","):
            if len(lines[-1]) + len(oid) > 900:
                lines.append("")
            lines[-1] += oid + ","
        wire_headers["X-Admission-Orgs"] = "\n ".join(lines).rstrip(",")
    boundary = "=_admission_" + hashlib.sha256(digest.key.encode()).hexdigest()[:24]
    head = "".join(f"{k}: {v}\n" for k, v in wire_headers.items())
    body = (
        f"Content-Type: multipart/alternative; boundary=\"{boundary}\"\n\n"
        f"--{boundary}\nContent-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: base64\n\n"
        f"{_b64(text)}--{boundary}\nContent-Type: text/html; charset=\"utf-8\"\n"
        f"Content-Transfer-Encoding: base64\n\n{_b64(html)}--{boundary}--\n"
    )
    if attachments:
        outer = boundary + "_mixed"
        parts = "".join(
            f"--{outer}\nContent-Type: {XLSX_TYPE}; name=\"{name}\"\nContent-Transfer-Encoding: base64\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\n\n"
            f"{base64.encodebytes(data).decode('ascii')}" for name, data in attachments)
        body = f"Content-Type: multipart/mixed; boundary=\"{outer}\"\n\n--{outer}\n{body}{parts}--{outer}--\n"
    wire = f"{head}MIME-Version: 1.0\n{body}"
    return Rendered(headers, wire, digest.recipient.email)


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def render_all(digests: list[Digest], plan: Plan, from_email: str, from_name: str = "",
               attach=None, page_link=None) -> list[tuple[str, str, Rendered]]:
    """(digest key, kind, message) for every digest: what the outbox records. ``attach(digest)``: its
    attachments (the organizations' forms), or None; ``page_link(digest)``: its link to the campaign page."""
    return [(d.key, d.kind, render(d, plan, from_email, from_name, attachments=attach(d) if attach else None,
                                   page_link=page_link(d) if page_link else None))
            for d in digests]


def to_wire(msg: Message | Rendered) -> str:
    """The message exactly as it is stored, written to .eml and sent."""
    if isinstance(msg, Rendered):
        return msg.wire
    if isinstance(msg, EmailMessage):
        return _own_address_and_subject(msg, msg.as_string(policy=WIRE_POLICY))
    return msg.as_string()


def _own_address_and_subject(msg: EmailMessage, wire: str) -> str:
    """Subject, From and To as the digests encode them.

    Python's header folder may drop the space between two encoded words ("в 1-й" arrived as "в1-й"
    in the report's subject), so the headers people read are written by :func:`unstructured` and
    :func:`address`, which keep every space inside a word.
    """
    sep = WIRE_POLICY.linesep
    head, blank, body = wire.partition(sep * 2)
    own = {"Subject": unstructured(str(msg["Subject"]))}
    for name in ("From", "To"):
        person = msg[name].addresses[0]
        own[name] = address(person.display_name, person.addr_spec)
    for name, value in own.items():
        head = re.sub(rf"^{name}: [^\r\n]*(?:{sep}[ \t][^\r\n]*)*", lambda _m, n=name, v=value: f"{n}: " + v.replace("\n", sep),
                      head, count=1, flags=re.MULTILINE)
    return head + blank + body


def recipient_of(msg: Message) -> str:
    """The address in To:, whichever API built the message."""

    if isinstance(msg, Rendered):
        return msg.recipient
    return getaddresses([str(msg["To"])])[0][1]


def render_request(plan: Plan, as_of: dt.date, recipient, changes: list[dict], org_ids: list[str], xlsx: Path,
                   change_hash: str, from_email: str, from_name: str = "") -> EmailMessage:
    """The request to the regional center (kind `request`) with the XLSX attached."""
    deadline_stage = next(iter(stages_with(plan, (REQUEST_DEADLINE_CHECK,))), None)
    context = {"recipient": recipient, "changes": changes, "as_of": as_of, "plan_id": plan.id,
               "creates": sum(c["action"] == "create" for c in changes),
               "blocks": sum(c["action"] == "block" for c in changes), "schools": len(set(org_ids)),
               "deadline": deadline_stage.deadline if deadline_stage else None,
               "deadline_stage": deadline_stage.number if deadline_stage else None, "sender": plan.sender}
    msg = envelope(plan.id, "request", [s.number for s in stages_with(plan, REQUEST_CHECKS)], org_ids, as_of,
                   f"Заявка об изменении списка операторов АИС «Е-услуги. Образование» от {ru_date(as_of)} "
                   f"({plural(len(changes), CHANGES)})", request_key(plan.id, change_hash, recipient.email),
                   recipient, from_email, from_name)
    msg.set_content(render_template("mail/request.txt.j2", context), subtype="plain", charset="utf-8",
                    cte="base64")
    msg.add_alternative(render_template("mail/request.html.j2", context), subtype="html", charset="utf-8",
                        cte="base64")
    msg.add_attachment(xlsx.read_bytes(), maintype=XLSX_MIME[0], subtype=XLSX_MIME[1], filename=xlsx.name)
    return msg
