"""The product's codes as enums: one spelling for statuses, mail kinds, delivery states and roles.

They are ``StrEnum``: a member *is* its code string, so the store, the outbox, the mail headers
(``X-Admission-Kind``) and plan files keep the contract's spelling, and comparisons with the stored
strings hold. Their Russian labels are in :mod:`admission.labels`.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """An organization's state on a stage as of a date."""

    COMPLETE = "complete"
    LAGGING = "lagging"
    OVERDUE = "overdue"


class MailKind(StrEnum):
    REMINDER = "reminder"
    OVERDUE = "overdue"
    ESCALATION = "escalation"
    REPORT = "report"
    REQUEST = "request"
    RECEIPT = "receipt"


# The digests compose_digests decides each day (the report and the request have their own jobs).
DIGEST_KINDS = (MailKind.REMINDER, MailKind.OVERDUE, MailKind.ESCALATION)


class Delivery(StrEnum):
    """A message's state in the outbox."""

    PENDING = "pending"
    DRY_RUN = "dry_run"
    SENDING = "sending"
    WRITTEN = "written"
    SENT = "sent"
    REFUSED = "refused"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class ResponsibleRole(StrEnum):
    """Who receives the reminder / overdue notice for an organization (contract section 3)."""

    HEAD = "head"
    CHIEF_OPERATORS = "chief_operators"
    CURATOR = "curator"
    RCOKO_HEAD = "rcoko_head"


class EscalationRole(StrEnum):
    """Who receives the escalation of an organization's overdue lag."""

    MOOYSO_HEAD = "mooyso_head"
    ROIV_HEAD = "roiv_head"


class IntakeState(StrEnum):
    """How far a message of the mailbox got (admission.mail.intake); each step is recorded before it acts."""

    RECEIVED = "received"
    WRITTEN = "written"
    RECEIPTED = "receipted"
    FILED = "filed"


class IntakeOutcome(StrEnum):
    """What became of a message read from the mailbox."""

    ACCEPTED = "accepted"
    PARTIAL = "partial"
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # no valid form and a sender no organization has: no reply
    NO_FORM = "no_form"  # no valid form, from an organization's own address: nothing changed, a fresh form sent
    DUPLICATE = "duplicate"  # the same Message-ID delivered again
    QUARANTINED = "quarantined"  # failed MAX_ATTEMPTS times: set aside for the admin, the mailbox goes on


# The start of a stage item that is not the responsible party's to act on yet: it waits on someone else (a
# request to РЦОКО not yet sent or not yet due, a list the school has not approved). The card and the report show
# it; the responsible party's letters leave it out (admission.mail.recipients.plan_digests).
WAITING = "ожидается: "
