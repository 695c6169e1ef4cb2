"""The outbox: every message is recorded before it is sent and its outcome after.

States: ``pending`` (rendered, not yet delivered), ``dry_run`` (rendered by a
dry run: never delivered; a later real run of the same day renders it again and takes it over), ``written`` (delivered as an .eml file, no SMTP configured),
``sent`` (the SMTP server accepted it), ``refused`` (the server refused the
recipient permanently, 5xx), ``failed`` (a transient failure; retried),
``superseded`` (never delivered, and no longer owed: a later real run rendered
the recipient's mail afresh, see ``enqueue``; the next report lists it).
What stays owed: a day's digests and report until the next working day's run
renders new ones (each digest covers everything that still concerns its reader,
so yesterday's would only repeat it with stale figures); a request to РЦОКО
(``UNDATED_KINDS``) until it is delivered or a different set of changes replaces
it, whatever date recorded it.
A digest key (plan, date, kind, recipient) is unique: re-running a day finds
the key and sends nothing new. Each outcome is committed right after the
SMTP reply, so a crash mid-batch loses nothing and a retry resends nothing
that was accepted. (If the connection drops after the server took the
message but before it replied, the message is retried: SMTP cannot tell;
the stable Message-ID lets mail systems drop the copy.)

Stored once: a large base64 part (the report's workbook, PART_MIN_BYTES and more) is kept in
``admission_outbox_part`` once, whatever the number of messages that carry it; the message keeps a token in its
place and gets it back just before it is sent (:class:`Parts`). Retention (:func:`prune_parts`): messages are
kept whole as the record of what officials were sent; large parts no message of the last 90 days carries are
deleted (the report folder keeps each day's workbook), the old message then saying where the attachment was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import smtplib
import socket
import uuid
from dataclasses import dataclass
from email.message import Message

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from admission.layout import Layout
from admission.mail.render import recipient_of, to_wire
from admission.store import bulk_insert, engine_for, outbox, outbox_part
from admission.tls import verified_context
from admission.vocabulary import Delivery

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


BATCH_BYTES = 64 * 2**20  # serialized messages held at once while recording them
UNDATED_KINDS = ("request",)  # owed until delivered whatever day recorded them; digests and reports are per day
OWED = (Delivery.PENDING, Delivery.FAILED)


def enqueue(url: str, plan_id: str, as_of: dt.date, messages: list[tuple[str, str, Message]],
            dry_run: bool = False, supersedes: tuple[str, ...] = ()) -> dict[str, int]:
    """Record rendered messages (digest_key, kind, message) in one transaction; an existing key is kept as it is.

    A real run also retires what it replaces: undelivered messages of the ``supersedes`` kinds recorded for
    earlier days (for ``UNDATED_KINDS``: any other key, whatever its day) become ``superseded``.
    """
    engine = engine_for(url)
    keys = [key for key, _, _ in messages]
    existing: dict[str, str] = {}
    with engine.connect() as conn:
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            existing.update(conn.execute(select(outbox.c.digest_key, outbox.c.status)
                                         .where(outbox.c.digest_key.in_(chunk))).tuples().all())
    now = _now()
    columns = ["digest_key", "plan_id", "as_of", "kind", "recipient", "message_id", "subject", "stages", "orgs",
               "message", "status", "attempts", "created_at", "updated_at"]
    parts = Parts(engine, as_of)
    status = Delivery.DRY_RUN if dry_run else Delivery.PENDING
    stamp, day = now.isoformat(sep=" "), as_of.isoformat()  # driver-level insert: ISO text, as save_stage
    def row(key: str, kind: str, msg: Message) -> tuple:
        return (key, plan_id, day, kind, recipient_of(msg), str(msg["Message-ID"]), str(msg["Subject"]),
                str(msg["X-Admission-Stages"]), str(msg["X-Admission-Orgs"]), parts.detach(to_wire(msg)), status, 0,
                stamp, stamp)

    def batches(chosen: list[tuple[str, str, Message]]):
        """Rows serialized a batch at a time: the national report is 85 copies of an 11 MB workbook, and
        serializing every message before inserting any held 1.3 GB."""
        batch, size = [], 0
        for key, kind, msg in chosen:
            batch.append(row(key, kind, msg))
            size += len(batch[-1][9])
            if size > BATCH_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    new = [(key, kind, msg) for key, kind, msg in messages if key not in existing]
    # A real run replaces what a dry run only previewed: the preview's content may be stale, and a
    # preview is never delivered as it is.
    previews = [] if dry_run else [(key, kind, msg) for key, kind, msg in messages if existing.get(key) == Delivery.DRY_RUN]
    added = 0
    try:
        with engine.begin() as conn:  # one transaction, inserted a batch at a time
            for batch in batches(new):
                parts.save(conn)  # before the messages that refer to them
                bulk_insert(conn, outbox, columns, batch)
                added += len(batch)
    except IntegrityError:  # another writer recorded some of them meanwhile: fall back to one by one
        added = 0
        for one in new:
            values = row(*one)
            try:
                with engine.begin() as conn:
                    parts.save(conn)
                    bulk_insert(conn, outbox, columns, [values])
                added += 1
            except IntegrityError:
                parts.pending.clear()  # the other writer stored the message, and its parts with it
    for batch in batches(previews):
        with engine.begin() as conn:
            parts.save(conn)
            for values in batch:
                fields = dict(zip(columns, values, strict=True))
                conn.execute(update(outbox).where(outbox.c.digest_key == fields["digest_key"],
                                                  outbox.c.status == Delivery.DRY_RUN)
                             .values(recipient=fields["recipient"], message_id=fields["message_id"],
                                     subject=fields["subject"], stages=fields["stages"], orgs=fields["orgs"],
                                     message=fields["message"], status=Delivery.PENDING, updated_at=now))
    retired = 0 if dry_run else _supersede(engine, plan_id, as_of, supersedes, set(keys))
    return {"added": added + len(previews), "kept": len(messages) - added - len(previews), "superseded": retired}


# A run of base64 lines of at least PART_MIN_BYTES (the report's workbook, its chart): a part worth storing once.
PART_MIN_BYTES = 64 * 1024
_PART = re.compile(r"(?m)(?:^[A-Za-z0-9+/]{60,76}\r?\n){" + str(PART_MIN_BYTES // 77)
                   + r",}(?:^[A-Za-z0-9+/]*={0,2}\r?\n)?")
_TOKEN = re.compile(r"@@admission-part:([0-9a-f]{64})@@(\r?\n)")
PART_PRUNED = "[вложение удалено по истечении срока хранения]\n"


class Parts:
    """Large parts stored once (table ``admission_outbox_part``). A message is recorded with a token line
    («@@admission-part:<sha256>@@», characters base64 never has) where each large base64 block was, and gets the
    block back just before it is sent or written (:meth:`attach`): the national report's workbook is stored once,
    not once per ministry address (85 × 11 MB a day)."""

    def __init__(self, engine, as_of: dt.date) -> None:
        self.engine = engine
        self.as_of = as_of
        self.pending: dict[str, str] = {}
        self.cache: dict[str, str] = {}

    def detach(self, wire: str) -> str:
        def token(found: re.Match) -> str:
            block = found.group(0)
            digest = hashlib.sha256(block.encode("ascii")).hexdigest()
            self.pending.setdefault(digest, block)
            return f"@@admission-part:{digest}@@" + ("\r\n" if block.endswith("\r\n") else "\n")

        return _PART.sub(token, wire) if len(wire) >= PART_MIN_BYTES else wire

    def save(self, conn) -> None:
        """Store the parts detached since the last save (a part already stored is only marked as used today)."""
        if not self.pending:
            return
        known = set(conn.execute(select(outbox_part.c.sha256).where(
            outbox_part.c.sha256.in_(list(self.pending)))).scalars())
        new = [{"sha256": d, "body": b, "size": len(b), "last_used": self.as_of}
               for d, b in self.pending.items() if d not in known]
        if new:  # another writer may store the same part meanwhile: the first one stays
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(dialect.insert(outbox_part).on_conflict_do_nothing(), new)
        if known:
            conn.execute(update(outbox_part).where(outbox_part.c.sha256.in_(list(known)),
                                                   outbox_part.c.last_used < self.as_of)
                         .values(last_used=self.as_of))
        self.pending.clear()

    def attach(self, stored: str) -> str:
        """The message as it goes out: every token replaced by its part (or, once pruned, by a note)."""
        digests = [d for d, _ in _TOKEN.findall(stored) if d not in self.cache]
        if digests:
            with self.engine.connect() as conn:
                self.cache.update(conn.execute(select(outbox_part.c.sha256, outbox_part.c.body).where(
                    outbox_part.c.sha256.in_(digests))).tuples().all())
        return _TOKEN.sub(lambda m: self.cache.get(m.group(1), PART_PRUNED.replace("\n", m.group(2))), stored)


def stored_message(url: str, row_id: int) -> str:
    """An outbox message as it was (or will be) sent, its large parts put back."""
    engine = engine_for(url)
    with engine.connect() as conn:
        stored = conn.execute(select(outbox.c.message, outbox.c.as_of).where(outbox.c.id == row_id)).first()
    return Parts(engine, stored.as_of).attach(stored.message) if stored else ""


def prune_parts(url: str, today: dt.date, keep_days: int = 90) -> dict[str, int]:
    """Delete the large parts no message of the last ``keep_days`` days carries: the messages themselves (headers,
    text, small attachments such as the forms) are kept — the record of what officials were sent — while the
    report workbooks of past days, which the report folder also keeps, go."""
    engine = engine_for(url)
    cutoff = today - dt.timedelta(days=keep_days)
    with engine.begin() as conn:
        size = conn.execute(select(func.coalesce(func.sum(outbox_part.c.size), 0)).where(
            outbox_part.c.last_used < cutoff)).scalar_one()
        gone = conn.execute(delete(outbox_part).where(outbox_part.c.last_used < cutoff)).rowcount
    return {"parts": int(gone or 0), "bytes": int(size or 0)}


def outbox_bytes(url: str, plan_id: str, as_of: dt.date) -> dict[str, int]:
    """What a day's mail takes in the store: its messages (large parts as tokens) and the parts first stored that
    day (the bench prints both)."""
    with engine_for(url).connect() as conn:
        messages = conn.execute(select(func.coalesce(func.sum(func.length(outbox.c.message)), 0)).where(
            outbox.c.plan_id == plan_id, outbox.c.as_of == as_of)).scalar_one()
        parts = conn.execute(select(func.coalesce(func.sum(outbox_part.c.size), 0)).where(
            outbox_part.c.last_used == as_of)).scalar_one()
    return {"messages": int(messages), "parts": int(parts)}


def _supersede(engine, plan_id: str, as_of: dt.date, kinds: tuple[str, ...], keep: set[str]) -> int:
    """Mark what today's mail replaces, keeping its last error for the report."""
    if not kinds:
        return 0
    stale = _now() - STALE_CLAIM
    dated = [k for k in kinds if k not in UNDATED_KINDS]
    undated = [k for k in kinds if k in UNDATED_KINDS]
    which = (outbox.c.kind.in_(dated) & (outbox.c.as_of < as_of)) | outbox.c.kind.in_(undated)
    owed = outbox.c.status.in_(OWED) | ((outbox.c.status == Delivery.SENDING) & (outbox.c.updated_at < stale))
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.id, outbox.c.digest_key, outbox.c.status, outbox.c.last_error)
                            .where(outbox.c.plan_id == plan_id, which, owed)).all()
    retire = [r for r in rows if r.digest_key not in keep]
    with engine.begin() as conn:
        for r in retire:
            before = r.last_error if r.status == Delivery.FAILED and r.last_error else "не отправлено"
            conn.execute(update(outbox).where(outbox.c.id == r.id, owed).values(
                status=Delivery.SUPERSEDED, updated_at=_now(),
                last_error=f"{before}; заменено письмом за {as_of.isoformat()}"[:1000]))
    return len(retire)


@dataclass
class SmtpSettings:
    host: str
    port: int
    login: str | None
    password: str | None
    ssl: bool
    starttls: bool
    from_email: str
    from_name: str
    timeout: float = 30.0
    ca_bundle: str | None = None  # PEM file of extra trusted CAs (e.g. the Russian national CA)


class InsecureSmtpConfig(RuntimeError):
    """The connection would send the password in clear text; the admin must enable SSL or STARTTLS."""


def tls_context(settings: SmtpSettings):
    """Certificates and host names verified (smtplib's own default context checks neither); ``ca_bundle`` adds
    to the system's CAs (admission.tls)."""

    return verified_context(settings.ca_bundle)


def _flag(value: object, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on", "да"}


def _choice(extra: dict, ours: str, airflows_disable: str, default: bool) -> bool:
    """Our extra (``ssl``/``starttls``) if given, else Airflow's ``disable_ssl``/``disable_tls``, else the default."""
    if extra.get(ours) not in (None, ""):
        return _flag(extra[ours], default)
    if extra.get(airflows_disable) not in (None, ""):
        return not _flag(extra[airflows_disable], False)
    return default


def smtp_settings(host: str | None, port: int | str | None, login: str | None, password: str | None,
                  extra: dict | None) -> SmtpSettings:
    """Settings from an Airflow connection's fields; extras may arrive as strings ("false").

    Extras: ours (``ssl``, ``starttls``, ``from_email``, ``from_name``, ``timeout``, ``ca_bundle``) and those of
    Airflow's own ``smtp`` connection type (``disable_ssl``, ``disable_tls``, ``timeout``, ``from_email``).
    Defaults by port: implicit TLS on 465, STARTTLS on 587.
    """
    extra = extra or {}
    port = int(port) if port else (465 if _flag(extra.get("ssl"), False) else 25)
    ssl = _choice(extra, "ssl", "disable_ssl", port == 465)
    starttls = not ssl and _choice(extra, "starttls", "disable_tls", port == 587)
    from_email = str(extra.get("from_email") or (login if login and "@" in login else "") or "admission@localhost")
    return SmtpSettings(
        host=host or "localhost", port=port, login=login or None, password=password or None, ssl=ssl,
        starttls=starttls, from_email=from_email,
        from_name=str(extra.get("from_name") or "Мониторинг приема в 1-й класс"),
        timeout=float(extra.get("timeout") or 30), ca_bundle=str(extra["ca_bundle"]) if extra.get("ca_bundle") else None,
    )


class TransientError(RuntimeError):
    """The batch stopped on a fault that a later retry may clear (nothing was lost)."""


class EmlTransport:
    """No SMTP connection: each message becomes an .eml file an admin can open."""

    statuses_to_deliver = (Delivery.PENDING, Delivery.FAILED)  # never "dry_run": a preview is not mail
    done_status = Delivery.WRITTEN

    def __init__(self, layout: Layout):
        self.layout = layout
        self.folder = layout.mail

    def __enter__(self) -> EmlTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def deliver(self, row: dict) -> str:
        safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in row["recipient"])
        path = self.layout.mail_of(row["plan_id"], row["as_of"]) / row["kind"] / f"{safe}.eml"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(row["message"].encode("utf-8"))
        tmp.replace(path)
        return str(path)


class SmtpTransport:
    """yagmail over smtplib: one connection for the whole batch, never a password prompt."""

    statuses_to_deliver = (Delivery.PENDING, Delivery.FAILED, Delivery.WRITTEN)
    done_status = Delivery.SENT

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.client = None

    def _connect(self) -> None:
        import yagmail

        s = self.settings
        skip_login = not (s.login and s.password)  # no password: no login, and no keyring lookup or prompt
        if not skip_login and not (s.ssl or s.starttls):
            raise InsecureSmtpConfig(
                f"admission_smtp {s.host}:{s.port}: a password is set but neither SSL nor STARTTLS is on; the "
                "password is never sent in clear text (set the extra ssl or starttls, or port 465/587)")
        context = tls_context(s) if (s.ssl or s.starttls) else None
        self.client = yagmail.SMTP(
            user=s.login or s.from_email, password=s.password, host=s.host, port=s.port, smtp_ssl=s.ssl,
            smtp_starttls={"context": context} if s.starttls else False, smtp_skip_login=skip_login,
            soft_email_validation=False, timeout=s.timeout, **({"context": context} if s.ssl else {}),
        )
        self.client.login()

    def __enter__(self) -> SmtpTransport:
        try:
            self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"cannot connect to SMTP {self.settings.host}:{self.settings.port}: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.client is not None and self.client.smtp is not None:
                self.client.smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass

    def deliver(self, row: dict) -> str:
        # The stored bytes go out as they are: what the outbox recorded is what the recipient gets.
        # As str: the stored text is ASCII (encoded headers, base64 parts) and smtplib turns its line
        # ends into CRLF; bytes would go out with bare LFs, which strict servers refuse.
        refused = self.client.smtp.sendmail(self.settings.from_email, [row["recipient"]], row["message"])
        if refused:  # only possible with several recipients; we send one per message
            code, text = next(iter(refused.values()))
            raise smtplib.SMTPRecipientsRefused({row["recipient"]: (code, text)})
        return ""

    def reconnect(self) -> None:
        self.__exit__()
        self._connect()


def _classify(exc: BaseException) -> tuple[str, str]:
    """('refused' | 'failed' | 'connection', text) for an SMTP error."""
    if isinstance(exc, UnicodeError | smtplib.SMTPNotSupportedError | ValueError):
        # An address or header the server cannot take (no SMTPUTF8): retrying changes nothing.
        return Delivery.REFUSED, f"{type(exc).__name__}: адрес или заголовок не может быть передан"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        return (Delivery.REFUSED if 500 <= int(code) < 600 else Delivery.FAILED), f"{code} {text!r}"
    if isinstance(exc, smtplib.SMTPResponseException) and not isinstance(exc, smtplib.SMTPSenderRefused):
        return (Delivery.REFUSED if 500 <= exc.smtp_code < 600 else Delivery.FAILED), f"{exc.smtp_code} {exc.smtp_error!r}"
    if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | socket.timeout | TimeoutError | OSError):
        return "connection", f"{type(exc).__name__}: {exc}"
    return Delivery.FAILED, f"{type(exc).__name__}: {exc}"


STALE_CLAIM = dt.timedelta(minutes=10)


def _claim(engine, ids: list[int], statuses: tuple[str, ...], token: str) -> set[int]:
    """Atomically mark messages 'sending' under ``token`` (chunk by chunk); returns those this sender got.

    Another sender's claim is respected unless it is older than STALE_CLAIM (a crashed sender); a claim
    with this very token (the same task instance, an earlier try killed mid-batch) is taken back at once.
    """
    stale = _now() - STALE_CLAIM
    got: set[int] = set()
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        with engine.begin() as conn:
            conn.execute(update(outbox).where(
                outbox.c.id.in_(chunk),
                outbox.c.status.in_(statuses)
                | ((outbox.c.status == Delivery.SENDING) & ((outbox.c.updated_at < stale) | (outbox.c.last_error == token))),
            ).values(status=Delivery.SENDING, last_error=token, updated_at=_now()))
            got |= set(conn.execute(select(outbox.c.id).where(outbox.c.id.in_(chunk),
                                                               outbox.c.last_error == token)).scalars())
    return got


RENEW_EVERY = dt.timedelta(minutes=1)


class _Claims:
    """This sender's claims during a batch: ownership re-read before each message (a cheap read on one
    connection, not a write per message: a commit per check halved the sending rate), and all remaining
    claims renewed at once every minute, far inside STALE_CLAIM, so a long batch is never taken over."""

    def __init__(self, engine, token: str):
        self.engine, self.token = engine, token
        self.conn = engine.connect()
        self.renewed = _now()

    def still_mine(self, row_id: int) -> bool:
        if _now() - self.renewed > RENEW_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.status == Delivery.SENDING, outbox.c.last_error == self.token)
                             .values(updated_at=_now()))
            self.renewed = _now()
        owner = self.conn.execute(select(outbox.c.status, outbox.c.last_error).where(outbox.c.id == row_id)).first()
        self.conn.rollback()  # end the read: the next check must see other senders' commits
        return owner is not None and tuple(owner) == (Delivery.SENDING, self.token)

    def close(self) -> None:
        self.conn.close()


def _release(engine, claimed: set[int], previous: dict[int, str]) -> None:
    """Give back the claims of messages not yet tried (a stopped batch leaves them for the retry)."""
    with engine.begin() as conn:
        for row_id in claimed:
            conn.execute(update(outbox).where(outbox.c.id == row_id, outbox.c.status == Delivery.SENDING)
                         .values(status=previous[row_id], last_error=None, updated_at=_now()))


def _record(engine, row_id: int, **values: object) -> None:
    """One delivery attempt's outcome, committed at once."""
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == row_id).values(
            attempts=outbox.c.attempts + 1, updated_at=_now(), **values))


def deliver(url: str, plan_id: str, as_of: dt.date, transport, kinds: tuple[str, ...] | None = None,
            max_reconnects: int = 2, owner: str | None = None) -> dict[str, int]:
    """Send every message of the day that still needs it; commit each outcome at once.

    Each message is claimed ('sending') before it goes out, so two senders (a retry that overlaps a
    task thought dead, the report and the digests) never send the same one. ``owner`` names the
    sender across its retries (the adapter passes dag, task and run): a retry takes back at once
    what its killed predecessor had claimed; anyone else takes over a claim after ten minutes.
    Each claim is renewed, and re-checked, just before its message goes out. Messages of
    ``UNDATED_KINDS`` still owed from any other day go out too.
    """

    engine = engine_for(url)
    token = f"claim:{owner}" if owner else f"claim:{uuid.uuid4().hex}"
    query = select(outbox).where(
        outbox.c.plan_id == plan_id, (outbox.c.as_of == as_of) | outbox.c.kind.in_(UNDATED_KINDS),
        outbox.c.status.in_(transport.statuses_to_deliver)
        | ((outbox.c.status == Delivery.SENDING)
           & ((outbox.c.updated_at < _now() - STALE_CLAIM) | (outbox.c.last_error == token))))
    if kinds:
        query = query.where(outbox.c.kind.in_(kinds))
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query.order_by(outbox.c.id)).mappings()]
    counts = {"delivered": 0, "refused": 0, "failed": 0, "to_deliver": len(rows)}
    if not rows:
        return counts
    reconnects = 0
    parts = Parts(engine, as_of)
    claimed = _claim(engine, [r["id"] for r in rows], transport.statuses_to_deliver, token)
    previous = {r["id"]: (Delivery.PENDING if r["status"] == Delivery.SENDING else r["status"]) for r in rows}
    claims = _Claims(engine, token)
    try:
        with transport:
            for row in rows:
                if row["id"] not in claimed or not claims.still_mine(row["id"]):
                    continue
                row["message"] = parts.attach(row["message"])  # the large parts back in, as sent
                while True:
                    try:
                        path = transport.deliver(row)
                    except Exception as exc:  # classified below; nothing escapes unrecorded
                        outcome, text = _classify(exc)
                        status = Delivery.REFUSED if outcome == Delivery.REFUSED else Delivery.FAILED
                        _record(engine, row["id"], status=status, last_error=text)
                        if outcome == "connection":
                            if reconnects < max_reconnects and hasattr(transport, "reconnect"):
                                reconnects += 1
                                try:
                                    transport.reconnect()
                                    continue  # retry this message on the new connection
                                except (OSError, smtplib.SMTPException) as again:
                                    raise TransientError(f"SMTP connection lost and not regained: {again}") from again
                            raise TransientError(f"SMTP connection lost: {text}") from exc
                        counts[status] += 1
                        log.warning("message %s: %s (%s)", row["id"], status, text.split(" ", 1)[0])
                    else:
                        _record(engine, row["id"], status=transport.done_status, last_error=None,
                                path=path or row.get("path"), sent_at=_now())
                        counts["delivered"] += 1
                    break
    except BaseException:
        _release(engine, claimed, previous)  # whatever was not tried goes back for the retry
        raise
    finally:
        claims.close()
    return counts


def delivered_request(url: str, plan_id: str, key_prefix: str) -> dict | None:
    """The first delivered message whose key starts with ``key_prefix`` (a request's change set): as_of, sent_on,
    path; None while nobody has received it.

    ``sent_on`` is a campaign day: the day the message was composed for, plus the days its delivery took (an SMTP
    server down for two days makes it two days later). Not the wall-clock date: a past campaign day judged today
    (the demo, a re-run, a test) would otherwise have its request delivered years after its own deadline."""
    with engine_for(url).connect() as conn:
        row = conn.execute(select(outbox.c.as_of, outbox.c.sent_at, outbox.c.created_at, outbox.c.path).where(
            outbox.c.plan_id == plan_id, outbox.c.digest_key.startswith(key_prefix, autoescape=True),
            outbox.c.status.in_((Delivery.SENT, Delivery.WRITTEN))).order_by(outbox.c.sent_at).limit(1)).first()
    if row is None:
        return None
    took = max((row.sent_at.date() - row.created_at.date()).days, 0) if row.sent_at and row.created_at else 0
    return {"as_of": row.as_of, "sent_on": row.as_of + dt.timedelta(days=took), "path": row.path}


def outbox_counts(url: str, plan_id: str, as_of: dt.date) -> dict[str, dict[str, int]]:
    """kind -> status -> count, for summaries."""
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(outbox.c.kind, outbox.c.status).where(
            outbox.c.plan_id == plan_id, outbox.c.as_of == as_of)).all()
    out: dict[str, dict[str, int]] = {}
    for kind, status in rows:
        out.setdefault(kind, {}).setdefault(status, 0)
        out[kind][status] += 1
    return out


def undelivered(url: str, plan_id: str, as_of: dt.date, since: dt.date | None = None) -> list[dict]:
    """What did not reach anyone, for the day's report: the day's refused or failing messages, the requests
    still owed from any day, and what earlier days (``since`` <= day < ``as_of``) left undelivered until this
    day's mail replaced it. Each superseded message is listed by the one report that follows it."""
    first = since or dt.date.min
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(outbox.c.as_of, outbox.c.kind, outbox.c.recipient, outbox.c.status,
                                   outbox.c.last_error).where(
            outbox.c.plan_id == plan_id,
            (outbox.c.status.in_((Delivery.REFUSED, Delivery.FAILED))
             & ((outbox.c.as_of == as_of) | outbox.c.kind.in_(UNDATED_KINDS)))
            | ((outbox.c.status == Delivery.SUPERSEDED) & outbox.c.as_of.between(first, as_of - dt.timedelta(days=1))
               & outbox.c.kind.not_in(UNDATED_KINDS)))
            .order_by(outbox.c.id)).mappings().all()
    return [{"as_of": r["as_of"], "kind": r["kind"], "recipient": r["recipient"], "status": r["status"],
             "error": (r["last_error"] or "")[:200]} for r in rows]
