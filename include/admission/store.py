"""The project's own store (SQLAlchemy): stage results, findings, outbox.

Airflow 3 tasks may not use Airflow's metadata DB, and results must outlive
XCom anyway (history, reports, the outbox), so the project keeps its own
tables: a SQLite file under the output folder by default, any SQLAlchemy URL
(e.g. PostgreSQL) through the Airflow connection ``admission_db``.
Writes for one (plan, date, stage) replace the previous ones in a single
transaction, so a re-run or a retry never duplicates rows.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache

import pandas as pd
from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from admission.schema import Finding

metadata = MetaData()

stage_result = Table(
    "admission_stage_result",
    metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("as_of", Date, primary_key=True),
    Column("stage", Integer, primary_key=True),
    Column("org_id", String(64), primary_key=True),
    Column("kind", String(16)),
    Column("name", Text),
    Column("parent_id", String(64)),
    Column("status", String(16), nullable=False),
    Column("missing", JSON, nullable=False),
    Column("deadline", Date),
    Column("days_overdue", Integer),
    Column("days_left", Integer),
    Column("computed_at", DateTime, nullable=False),
    Column("evidence", Text),  # what counted, when the check says (stage 2: the website check or an informing row)
)

finding = Table(
    "admission_finding",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), nullable=False, index=True),
    Column("as_of", Date, nullable=False, index=True),
    Column("stage", Integer, nullable=False),
    Column("dataset", String(64), nullable=False),
    Column("file", Text, nullable=False),
    Column("row", Integer),
    Column("column", Text),
    Column("message", Text, nullable=False),
    Column("org_id", String(64)),
)


outbox = Table(
    "admission_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest_key", String(400), nullable=False, unique=True),
    Column("plan_id", String(64), nullable=False, index=True),
    Column("as_of", Date, nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("subject", Text, nullable=False),
    Column("stages", String(64), nullable=False),
    Column("orgs", Text, nullable=False),
    Column("message", Text, nullable=False),  # the full RFC 5322 message, as sent
    Column("status", String(16), nullable=False),  # pending, dry_run, written, sent, refused, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("path", Text),  # the .eml file when written to disk
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
)


operator_snapshot = Table(
    "admission_operator_snapshot",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), nullable=False, index=True),
    Column("as_of", Date, nullable=False, index=True),
    Column("org_id", String(64)),
    Column("full_name", Text),
    Column("position", Text),
    Column("role", Text),
    Column("email", Text),
    Column("phone", Text),
    Column("file", Text),
    Column("row", Integer),
)

site_check = Table(
    "admission_site_check",
    metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("as_of", Date, primary_key=True),
    Column("url", String(1000), primary_key=True),  # as the registry writes it (stripped)
    Column("found", Integer, nullable=False),
    Column("page", Text),
    Column("phrases", JSON, nullable=False),
    Column("status", Integer),
    Column("pages", Integer, nullable=False),
    Column("reason", Text),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("requests", Integer, nullable=False),  # made for this row; 0: carried over from ``verified_on``
    Column("verified_on", Date),  # the campaign day the information was last seen on the site itself
    Column("first_found", Date),  # the first campaign day it was seen (history)
    Column("checked_at", DateTime, nullable=False),
)

intake = Table(
    "admission_intake",
    metadata,
    Column("uidvalidity", Integer, primary_key=True, autoincrement=False),  # the mailbox's UIDVALIDITY
    Column("uid", Integer, primary_key=True, autoincrement=False),
    Column("message_id", String(400), nullable=False, index=True),
    Column("plan_id", String(64), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("received_at", DateTime, nullable=False),  # when first claimed: names the submission files
    Column("sender", String(320)),
    Column("subject", Text),
    Column("state", String(16), nullable=False),  # received, written, receipted, filed
    Column("outcome", String(16)),  # accepted, partial, rejected, unknown, duplicate
    Column("org_id", String(64)),
    Column("result", JSON),  # what was accepted and refused (file, row, column), the way it was identified
    Column("updated_at", DateTime, nullable=False),
    Column("sent_at", DateTime),  # the sender's Date: (clamped to received_at): decides between two replies
)

# Every form the monitor mailed (admission.mail.forms): a newer one for the same organization and datasets
# supersedes an older one after the plan's ``intake.superseded_after_days``.
issued_form = Table(
    "admission_issued_form",
    metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("org_id", String(64), primary_key=True),
    Column("datasets", String(200), primary_key=True),  # comma-separated, sorted
    Column("issued_on", Date, primary_key=True),
    Column("expires_on", Date, nullable=False),
)

# A large part of an outbox message (the report's workbook, its chart), stored once whatever the number of
# messages that carry it (admission.mail.outbox: the message keeps a token in its place). ``last_used``: the
# newest campaign day of a message that carries it — parts of messages older than the retention are pruned.
outbox_part = Table(
    "admission_outbox_part",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("body", Text, nullable=False),  # the part's base64 lines exactly as they go on the wire
    Column("size", Integer, nullable=False),
    Column("last_used", Date, nullable=False),
)

# A person's review of an answer by mail (the campaign page): принято / есть замечания / отклонено, with a comment.
# The newest review of an organization's newest answer counts for the stages whose plan says ``review: true``.
review = Table(
    "admission_review",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), nullable=False, index=True),
    Column("org_id", String(64), nullable=False),
    Column("message_id", String(400), nullable=False),  # the answer (admission_intake.message_id)
    Column("state", String(32), nullable=False),
    Column("comment", Text, nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("reviewed_at", DateTime, nullable=False),
)

# Every change a request to РЦОКО named (admission.jobs.collect_operators): whether an account that is still
# missing was asked for, and since when — РЦОКО answers for an item only a stated time after the request that
# named it was delivered (the outbox says when: the request's key carries its change hash).
requested_change = Table(
    "admission_requested_change",
    metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("change_hash", String(32), primary_key=True),
    Column("org_id", String(64), primary_key=True),
    Column("person", String(400), primary_key=True),  # the name normalized as the checks compare it
    Column("action", String(16), primary_key=True),  # create | block
    Column("prepared_on", Date, nullable=False),
)

# Columns added after a table was first created: (table, column, SQL type). ``create_all`` creates missing
# tables only, so a store from an earlier version gets them here, once, when it is opened.
_ADDED_COLUMNS = [(stage_result, "evidence", "TEXT"), (intake, "sent_at", "TIMESTAMP")]


def _add_missing_columns(engine: Engine) -> None:
    inspector = inspect(engine)
    for table, column, sql_type in _ADDED_COLUMNS:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        if column not in have:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column} {sql_type}")


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    # hide_parameters: a failed statement's error (and so the task log) never quotes the values: e-mails, names.
    engine = create_engine(url, future=True, pool_pre_ping=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            # WAL lets the notify and report tasks write at once; NORMAL syncs at checkpoints, not at every
            # commit (the outbox commits once per message): a commit survives a crash of the process,
            # only an OS crash may lose the last ones, which the outbox then sends again.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _none(value: object) -> object:
    return None if value is None or (not isinstance(value, list) and pd.isna(value)) else value


def _column(frame: pd.DataFrame, name: str, convert=None) -> list:
    """A column as Python values with None for missing ones (bulk, not cell by cell)."""
    values = frame[name].astype(object)
    values = values.where(frame[name].notna(), None).tolist()
    return [None if v is None else convert(v) for v in values] if convert else values


def bulk_insert(conn, table: Table, columns: list[str], rows: list[tuple]) -> None:
    """executemany straight on the driver: SQLAlchemy's per-row parameter processing costs more than the insert."""
    if not rows:
        return
    style = conn.dialect.paramstyle
    marks = ", ".join("?" if style == "qmark" else "%s" if style in ("format", "pyformat") else f":{c}"
                      for c in columns)
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    sql = f"INSERT INTO {table.name} ({quoted}) VALUES ({marks})"
    if style == "named":
        conn.exec_driver_sql(sql, [dict(zip(columns, r, strict=True)) for r in rows])
    else:
        conn.exec_driver_sql(sql, rows)


def save_stage(url: str, plan_id: str, stage: int, as_of: dt.date, results: pd.DataFrame,
               findings: list[Finding]) -> None:
    """Replace the results and findings of one (plan, date, stage) atomically."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    n = len(results)
    day = as_of.isoformat()
    cols = ["plan_id", "as_of", "stage", "org_id", "kind", "name", "parent_id", "status", "missing", "deadline",
            "days_overdue", "days_left", "computed_at", "evidence"]
    evidence = _column(results, "evidence") if "evidence" in results else [None] * n
    rows = list(zip(
        [plan_id] * n, [day] * n, [int(stage)] * n, _column(results, "org_id"), _column(results, "kind"),
        _column(results, "name"), _column(results, "parent_id"), _column(results, "status"),
        [json.dumps(list(m), ensure_ascii=False) if len(m) else "[]" for m in results["missing"]],
        _column(results, "deadline", lambda d: d.isoformat()), _column(results, "days_overdue", int),
        _column(results, "days_left", int), [now] * n, evidence, strict=True))
    fcols = ["plan_id", "as_of", "stage", "dataset", "file", "row", "column", "message", "org_id"]
    frows = [(plan_id, day, int(stage), f.dataset, f.file, f.row, f.column, f.message, f.org_id) for f in findings]
    with engine_for(url).begin() as conn:
        for table in (stage_result, finding):
            conn.execute(delete(table).where(table.c.plan_id == plan_id, table.c.as_of == as_of,
                                             table.c.stage == stage))
        bulk_insert(conn, stage_result, cols, rows)
        bulk_insert(conn, finding, fcols, frows)


def load_results(url: str, plan_id: str, as_of: dt.date, stages: list[int] | None = None) -> pd.DataFrame:
    """One day's stage results. Read on the driver: SQLAlchemy's per-row type processing
    (dates, JSON) cost 7 s for the national 380,000 rows; a few distinct values are decoded once."""
    t = stage_result
    names = [c.name for c in t.columns]
    query = select(t).where(t.c.plan_id == plan_id, t.c.as_of == as_of)
    if stages:
        query = query.where(t.c.stage.in_(stages))
    query = query.order_by(t.c.stage, t.c.org_id)
    with engine_for(url).connect() as conn:
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(str(compiled))
            rows = cursor.fetchall()
        finally:
            cursor.close()
    if not rows:
        return pd.DataFrame(columns=names)
    frame = pd.DataFrame(rows, columns=names)
    for col, parse in (("as_of", _as_date), ("deadline", _as_date), ("computed_at", _as_datetime)):
        codes, uniques = pd.factorize(frame[col], use_na_sentinel=True)
        values = [parse(u) for u in uniques] + [None]  # code -1 (missing) takes the last one
        frame[col] = pd.Series([values[c] for c in codes], index=frame.index, dtype="object")
    decoded: dict[str, list] = {}
    frame["missing"] = [v if isinstance(v, list) else decoded[v] if v in decoded else
                        decoded.setdefault(v, json.loads(v)) for v in frame["missing"]]
    for col in ("days_overdue", "days_left"):
        frame[col] = frame[col].astype("Int64")
    return frame


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    return None if _none(value) is None else dt.date.fromisoformat(str(value)[:10])


def _as_datetime(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    return None if _none(value) is None else dt.datetime.fromisoformat(str(value))


def load_findings(url: str, plan_id: str, as_of: dt.date) -> pd.DataFrame:
    t = finding
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(t).where(t.c.plan_id == plan_id, t.c.as_of == as_of)).mappings().all()
    frame = pd.DataFrame(rows, columns=[c.name for c in t.columns])
    frame = frame.drop_duplicates(["dataset", "file", "row", "column", "message"]).drop(columns=["id", "stage"])
    # None, not NaN, where a finding has no row or column (a whole file): people read these as "строка 17".
    frame = frame.astype(object).where(frame.notna(), None)
    frame["row"] = pd.Series([None if r is None else int(r) for r in frame["row"]], index=frame.index, dtype=object)
    return frame.reset_index(drop=True)


def stage_statuses(url: str, plan_id: str, stages: list[int], until: dt.date) -> pd.DataFrame:
    """Every stored daily status of these stages up to ``until``: org_id, stage, as_of, status (what an approval
    is checked against: were the stages it depends on complete on its date?)."""
    t = stage_result
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(t.c.org_id, t.c.stage, t.c.as_of, t.c.status).where(
            t.c.plan_id == plan_id, t.c.stage.in_(stages), t.c.as_of <= until)).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=["org_id", "stage", "as_of", "status"])
    frame["as_of"] = [_as_date(v) for v in frame["as_of"]]
    return frame


def load_history(url: str, plan_id: str, until: dt.date) -> pd.DataFrame:
    """Per date and stage: organizations complete / total (for progress over the campaign)."""

    t = stage_result
    query = (
        select(t.c.as_of, t.c.stage, t.c.status, func.count().label("n"))
        .where(t.c.plan_id == plan_id, t.c.as_of <= until)
        .group_by(t.c.as_of, t.c.stage, t.c.status)
    )
    with engine_for(url).connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=["as_of", "stage", "status", "n"])
    if frame.empty:
        return pd.DataFrame(columns=["as_of", "stage", "complete", "total", "pct"])
    wide = frame.pivot_table(index=["as_of", "stage"], columns="status", values="n", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=["complete", "lagging", "overdue"], fill_value=0)
    out = wide.reset_index()
    out["total"] = out[["complete", "lagging", "overdue"]].sum(axis=1)
    out["pct"] = (100.0 * out["complete"] / out["total"]).round(1)
    return out[["as_of", "stage", "complete", "total", "pct"]]


def previous_date(url: str, plan_id: str, before: dt.date) -> dt.date | None:
    t = stage_result
    with engine_for(url).connect() as conn:
        return conn.execute(select(func.max(t.c.as_of)).where(t.c.plan_id == plan_id, t.c.as_of < before)).scalar()


def save_operator_snapshot(url: str, plan_id: str, as_of: dt.date, ops: pd.DataFrame) -> None:
    """The day's consolidated operator list, replacing an earlier snapshot of the same day."""
    n = len(ops)
    cols = ["plan_id", "as_of", "org_id", "full_name", "position", "role", "email", "phone", "file", "row"]
    rows = list(zip([plan_id] * n, [as_of.isoformat()] * n,
                    *(_column(ops, c) for c in ("org_id", "full_name", "position", "role", "email", "phone", "_file")),
                    _column(ops, "_row", int), strict=True))
    t = operator_snapshot
    with engine_for(url).begin() as conn:
        conn.execute(delete(t).where(t.c.plan_id == plan_id, t.c.as_of == as_of))
        bulk_insert(conn, t, cols, rows)


def load_operator_snapshot(url: str, plan_id: str, as_of: dt.date) -> pd.DataFrame:
    t = operator_snapshot
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(t).where(t.c.plan_id == plan_id, t.c.as_of == as_of)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in t.columns])


SITE_COLUMNS = [c.name for c in site_check.columns]


def save_site_checks(url: str, plan_id: str, as_of: dt.date, rows: list[dict]) -> None:
    """Replace the day's website checks of a plan (a re-run of the day leaves one row per site)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    day = as_of.isoformat()

    def iso(value):
        return value.isoformat() if isinstance(value, dt.date) else value

    values = [(plan_id, day, r["url"], int(bool(r["found"])), r.get("page"),
               json.dumps(list(r.get("phrases") or []), ensure_ascii=False), r.get("status"), int(r.get("pages") or 0),
               r.get("reason"), r.get("etag"), r.get("last_modified"), int(r.get("requests") or 0),
               iso(r.get("verified_on")), iso(r.get("first_found")), now) for r in rows]
    t = site_check
    with engine_for(url).begin() as conn:
        conn.execute(delete(t).where(t.c.plan_id == plan_id, t.c.as_of == as_of))
        bulk_insert(conn, t, SITE_COLUMNS, values)


def _site_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame([dict(r) for r in rows], columns=SITE_COLUMNS)
    frame["found"] = frame["found"].astype(bool)
    frame["phrases"] = [p if isinstance(p, list) else json.loads(p or "[]") for p in frame["phrases"]]
    for col in ("as_of", "verified_on", "first_found"):
        frame[col] = [_as_date(v) for v in frame[col]]
    return frame.astype(object).where(frame.notna(), None)


def load_site_checks(url: str, plan_id: str, as_of: dt.date) -> pd.DataFrame:
    """The day's website checks (one row per site address)."""
    t = site_check
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(t).where(t.c.plan_id == plan_id, t.c.as_of == as_of)).mappings().all()
    return _site_frame(rows)


def latest_site_checks(url: str, plan_id: str, until: dt.date) -> pd.DataFrame:
    """Per site address, its newest check on or before ``until`` (what the next check may reuse)."""

    t = site_check
    newest = (select(t.c.url, func.max(t.c.as_of).label("day")).where(t.c.plan_id == plan_id, t.c.as_of <= until)
              .group_by(t.c.url).subquery())
    query = select(t).join(newest, (t.c.url == newest.c.url) & (t.c.as_of == newest.c.day)).where(
        t.c.plan_id == plan_id)
    with engine_for(url).connect() as conn:
        rows = conn.execute(query).mappings().all()
    return _site_frame(rows)


def record_issued_forms(url: str, plan_id: str, forms: list[tuple[str, tuple[str, ...], dt.date, dt.date]]) -> None:
    """Remember the forms mailed: (org_id, datasets, issued_on, expires_on); a form issued twice is kept once
    (``ON CONFLICT DO NOTHING``: a national day records 48,000 forms in one statement, no lookup first)."""
    if not forms:
        return
    rows = {(org, ",".join(sorted(ds)), issued): expires for org, ds, issued, expires in forms}
    values = [{"plan_id": plan_id, "org_id": k[0], "datasets": k[1], "issued_on": k[2], "expires_on": v}
              for k, v in rows.items()]
    engine = engine_for(url)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with engine.begin() as conn:
        conn.execute(dialect.insert(issued_form).on_conflict_do_nothing(), values)


def record_review(url: str, plan_id: str, org_id: str, message_id: str, state: str, comment: str,
                  reviewer: str) -> int:
    """Keep a review (every one: the answer's history shows them all); returns its id."""
    with engine_for(url).begin() as conn:
        result = conn.execute(review.insert().values(
            plan_id=plan_id, org_id=org_id, message_id=message_id[:400], state=state, comment=comment[:4000],
            reviewer=reviewer[:200], reviewed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
        return int(result.inserted_primary_key[0])


def reviews(url: str, plan_id: str, org_id: str | None = None) -> pd.DataFrame:
    """The reviews of a plan (or one organization), oldest first."""
    t = review
    query = select(t.c.id, t.c.org_id, t.c.message_id, t.c.state, t.c.comment, t.c.reviewer, t.c.reviewed_at).where(
        t.c.plan_id == plan_id)
    if org_id is not None:
        query = query.where(t.c.org_id == org_id)
    with engine_for(url).connect() as conn:
        rows = conn.execute(query.order_by(t.c.id)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=["id", "org_id", "message_id", "state", "comment", "reviewer",
                                                          "reviewed_at"])


def answers_for_review(url: str, plan_id: str, until: dt.date) -> pd.DataFrame:
    """Every answer by mail that changed data, up to a day: org_id, message_id, received_at, datasets (accepted)."""
    t = intake
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(t.c.org_id, t.c.message_id, t.c.received_at, t.c.result).where(
            t.c.plan_id == plan_id, t.c.as_of <= until, t.c.outcome.in_(["accepted", "partial"]))).mappings().all()
    out = [{"org_id": r["org_id"], "message_id": r["message_id"], "received_at": r["received_at"],
            "datasets": sorted({f.get("dataset") for f in (r["result"] or {}).get("files", [])
                                if f.get("status", "accepted") == "accepted" and f.get("dataset")})}
           for r in rows]
    return pd.DataFrame(out, columns=["org_id", "message_id", "received_at", "datasets"])


def record_requested_changes(url: str, plan_id: str, change_hash: str, items: list[tuple[str, str, str]],
                             prepared_on: dt.date) -> None:
    """Remember what a request names: (org_id, normalized name, action); the same request twice is kept once."""
    if not items:
        return
    values = [{"plan_id": plan_id, "change_hash": change_hash, "org_id": o, "person": p[:400], "action": a,
               "prepared_on": prepared_on} for o, p, a in dict.fromkeys(items)]
    engine = engine_for(url)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with engine.begin() as conn:
        conn.execute(dialect.insert(requested_change).on_conflict_do_nothing(), values)


def requested_changes(url: str, plan_id: str) -> pd.DataFrame:
    """Every change the plan's requests named: change_hash, org_id, person, action, prepared_on."""
    t = requested_change
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(t.c.change_hash, t.c.org_id, t.c.person, t.c.action, t.c.prepared_on)
                            .where(t.c.plan_id == plan_id)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=["change_hash", "org_id", "person", "action", "prepared_on"])


def issued_forms(url: str, plan_id: str, org_id: str) -> list[tuple[tuple[str, ...], dt.date]]:
    """(datasets, issued_on) of every form mailed to an organization."""
    with engine_for(url).connect() as conn:
        rows = conn.execute(select(issued_form.c.datasets, issued_form.c.issued_on)
                            .where(issued_form.c.plan_id == plan_id, issued_form.c.org_id == org_id)).all()
    return [(tuple(d for d in r.datasets.split(",") if d), r.issued_on) for r in rows]
