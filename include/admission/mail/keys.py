"""The outbox's keys: what makes two messages the same message.

The outbox (admission.mail.outbox) records a message under its key once; a re-run, a retry or a second run of
the day that renders the same key records nothing new, and the Message-ID is derived from the key, so a message
that does go out twice (a fault after the server accepted it) is recognisably the same one.
"""

from __future__ import annotations

import datetime as dt
import hashlib


def digest_key(plan_id: str, as_of: dt.date, kind: str, email: str) -> str:
    """A day's digest or report: the same person, kind, plan and day is the same message."""
    return f"{plan_id}|{as_of.isoformat()}|{kind}|{email.lower()}"


def request_key(plan_id: str, change_hash: str, email: str) -> str:
    """A request to РЦОКО: one per set of changes and recipient, whatever the day."""
    return f"{plan_id}|request|{change_hash}|{email.lower()}"


def receipt_key(plan_id: str, message_id: str, sender: str) -> str:
    """A receipt: one per received message, whatever the run that records it."""
    return f"{plan_id}|receipt|{hashlib.sha256(message_id.encode('utf-8', 'replace')).hexdigest()[:32]}|{sender}"
