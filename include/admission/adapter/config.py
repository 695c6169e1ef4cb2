"""Configuration read inside tasks (never at parse time): Variables and Connections.

Variables: ``admission_data_dir`` (required), ``admission_output_dir``
(default ``$AIRFLOW_HOME/admission``), ``admission_form_secret`` (the forms' key, masked), ``admission_site_check``,
``admission_page_url`` (optional: the Airflow address officials open; the digests then link the campaign page).
Connections: ``admission_db`` (optional SQLAlchemy URL of the project's store), ``admission_smtp`` (optional
SMTP), ``admission_imap`` (optional: the mailbox the forms come back to).
All can come from the environment (``AIRFLOW_VAR_*``, ``AIRFLOW_CONN_*``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from airflow.sdk import Variable
from airflow.sdk.bases.hook import BaseHook

from admission.layout import Layout
from admission.plan import Plan

try:  # Airflow 3.x
    from airflow.sdk.exceptions import AirflowNotFoundException
except ImportError:  # pragma: no cover
    from airflow.exceptions import AirflowNotFoundException


log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """Configuration an admin must fix; the message says how."""


def data_dir() -> Path:
    value = Variable.get("admission_data_dir", default=None)
    if not value:
        raise ConfigError(
            "Airflow Variable admission_data_dir is not set: point it (or AIRFLOW_VAR_ADMISSION_DATA_DIR) "
            "at the region's data folder"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"admission_data_dir = {path} is not a folder")
    return path


def output_dir() -> Path:
    default = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "admission"
    path = Path(Variable.get("admission_output_dir", default=None) or default).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def layout() -> Layout:
    """Where the product writes (admission.layout), under ``admission_output_dir``."""
    return Layout(output_dir())


def site_check() -> dict:
    """The Variable ``admission_site_check`` (JSON; absent: the check runs with the plan's settings):
    ``{"enabled": false}`` switches the website check off; ``ca_bundle``: a PEM file of extra CAs (the national
    certification authority); ``connect_timeout``/``read_timeout``/``retries``; ``allow_hosts``: "host" or
    "host:port" entries that may be on loopback or a private network — for tests and the demo only."""
    value = Variable.get("admission_site_check", default=None)
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ConfigError(f"Variable admission_site_check is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ConfigError('Variable admission_site_check must be a JSON object, e.g. {"enabled": false}')
    return parsed


@contextmanager
def imap_client():
    """A logged-in IMAP client on the connection ``admission_imap`` (None when it is not defined), over TLS with
    the server's certificate and name verified (admission.tls): ``ca_bundle`` in the extras adds a PEM file of CAs
    to the system's. The client is made here, not by Airflow's IMAP hook, because the hook turns verification off
    whenever the global ``[email] ssl_context`` says ``none``; a connection whose extras ask for no TLS
    (``"use_ssl": false``) or no verification (``"ssl_context": "none"``) is refused: it would carry the
    mailbox's password and the schools' data unprotected. Extras: ``ca_bundle``, ``timeout`` (seconds, 60)."""
    import imaplib

    from admission.tls import verified_context

    conn = get_connection("admission_imap")
    if conn is None:
        yield None
        return
    extra = conn.extra_dejson
    if str(extra.get("use_ssl", True)).lower() in ("false", "0", "no") or extra.get("ssl_context") == "none":
        raise ConfigError("connection admission_imap must use TLS with certificate verification: remove "
                          '"use_ssl": false and "ssl_context": "none" from its extras (add "ca_bundle" for a CA of '
                          "your own)")
    bundle = extra.get("ca_bundle")
    if bundle and not Path(str(bundle)).is_file():
        raise ConfigError(f"connection admission_imap: ca_bundle {bundle} is not a file")
    client = imaplib.IMAP4_SSL(conn.host or "localhost", int(conn.port or 993),
                               ssl_context=verified_context(str(bundle) if bundle else None),
                               timeout=float(extra.get("timeout") or 60))
    try:
        if conn.login:
            client.login(conn.login, conn.password or "")
        yield client
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def form_secret() -> str | None:
    """The forms' signing key (admission.mail.forms.form_keys): the Variable ``admission_form_secret`` — a key, or
    ``{"current": …, "previous": …, "previous_until": "YYYY-MM-DD"}`` during a rotation. Airflow masks a
    Variable whose name says «secret» in the UI, the API and the logs; the keys inside the JSON are masked in
    the logs here too. The first version's ``admission_form_key`` (shown in clear) is still read, with a warning."""
    from airflow.sdk.log import mask_secret

    value = Variable.get("admission_form_secret", default=None)
    if not value:
        value = Variable.get("admission_form_key", default=None)
        if value:
            log.warning("Variable admission_form_key is shown in clear in the Airflow UI and API: move its value to "
                        "admission_form_secret (masked) and delete it")
    if value:
        mask_secret(value)
        try:
            parsed = json.loads(value) if value.strip().startswith("{") else {}
        except ValueError:
            parsed = {}
        for name in ("current", "previous"):
            if isinstance(parsed, dict) and parsed.get(name):
                mask_secret(str(parsed[name]))
    return value or None


def get_connection(conn_id: str):
    """The connection, or None when it is not defined (an optional connection)."""
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def store_url() -> str:
    conn = get_connection("admission_db")
    if conn is not None:
        uri = conn.get_uri()
        # Airflow spells PostgreSQL "postgres://"; SQLAlchemy wants "postgresql://".
        return uri.replace("postgres://", "postgresql://", 1) if uri.startswith("postgres://") else uri
    return f"sqlite:///{layout().default_store}"


def as_of_date(plan: Plan, params: dict, logical_date: dt.datetime | None, run_after: dt.datetime | None) -> dt.date:
    """The date a run judges: the `as_of` param, else the run's logical date in the plan's time zone."""
    value = (params or {}).get("as_of")
    if value:
        return dt.date.fromisoformat(str(value)[:10])
    moment = logical_date or run_after
    if moment is None:
        return dt.datetime.now(plan.tz).date()
    return moment.astimezone(plan.tz).date()


_PREVIEW_REASON = ("план кампании {plan} — пример (status: example): даты не подтверждены регионом, поэтому письма "
                  "не отправляются; проверки и отчет формируются для просмотра")


def preview_reason(plan: Plan) -> str | None:
    """Why a plan's runs send nothing (an example plan), as the summary, the report and the run say it."""
    return _PREVIEW_REASON.format(plan=plan.id) if plan.status == "example" else None


def _latest_events(events) -> list:
    """The newest event of each asset (a manual run of one stage leaves older events of another day)."""
    latest = []
    for evs in (events or {}).values():
        dated = [e for e in evs if getattr(e, "extra", None) and e.extra.get("as_of")]
        if dated:
            latest.append(max(dated, key=lambda e: e.timestamp))
    return latest


def resolve_day(plan: Plan, params: dict, logical_date: dt.datetime | None, run_after: dt.datetime | None,
                run_type: object = None, events=None) -> dict:
    """The day a run judges and whether it may mail: ``{"as_of", "dry_run", "preview"}``.

    Order: the ``as_of`` param; else the day the stage runs behind this run judged (the newest asset
    event: the one that completed the set); else the run's logical date. A dry stage run makes the
    follow-ups it triggers dry. A plan with ``status: example`` never mails. A date outside the
    campaign skips a scheduled run and fails a manual one with a message that says why.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    dry = bool((params or {}).get("dry_run"))
    latest = _latest_events(events) if not (params or {}).get("as_of") else []
    if latest:
        newest = max(latest, key=lambda e: e.timestamp)
        as_of = dt.date.fromisoformat(str(newest.extra["as_of"])[:10])
        dry = dry or any(e.extra.get("dry_run") for e in latest if e.extra.get("as_of") == newest.extra["as_of"])
    else:
        try:
            as_of = as_of_date(plan, params, logical_date, run_after)
        except ValueError as exc:
            raise AirflowFailException(f"as_of «{params.get('as_of')}»: ожидается дата ГГГГ-ММ-ДД") from exc
    if not plan.covers(as_of):
        message = (f"{as_of} вне кампании {plan.id} ({plan.campaign.start}..{plan.campaign.end}): проверять нечего. "
                   "Укажите в параметре as_of дату внутри кампании.")
        if "scheduled" in str(run_type or "").lower():
            raise AirflowSkipException(message)
        raise AirflowFailException(message)
    preview = preview_reason(plan)
    return {"as_of": as_of.isoformat(), "dry_run": dry or preview is not None, "preview": preview}


def smtp_or_defaults():
    """SMTP settings of `admission_smtp`, or the defaults (sender address) when the connection is absent."""
    from admission.mail.outbox import smtp_settings

    conn = get_connection("admission_smtp")
    if conn is None:
        return None, smtp_settings(None, None, None, None, {})
    return conn, smtp_settings(conn.host, conn.port, conn.login, conn.password, conn.extra_dejson)


def settings(need_data: bool = False, sender=None):
    """The jobs' settings from the Variables and Connections (``need_data``: the data folder is required;
    ``sender``: the SMTP settings when the caller has already read them)."""
    from admission.jobs import Settings

    if sender is None:
        _, sender = smtp_or_defaults()
    return Settings(data_dir=data_dir() if need_data else None, output_dir=output_dir(), store_url=store_url(),
                    from_email=sender.from_email, from_name=sender.from_name,
                    form_key=form_secret(), page_url=Variable.get("admission_page_url", default=None) or None)
