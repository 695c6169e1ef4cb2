"""Which e-mail addresses mail may go to, and in which form.

Internationalized domains are real in Russia (``школа.рф``): they are delivered in their ASCII
(IDNA, ``xn--``) form, which every SMTP server accepts. What is refused instead of risked:
a local part (before ``@``) with non-ASCII letters, which needs SMTPUTF8 that few servers offer;
a domain label that mixes Latin and Cyrillic letters (``shkоla.ru`` with a Cyrillic «о»), the
usual look-alike typo or spoof; and anything email-validator rejects.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

MAX_ADDRESS = 254  # RFC 5321 path limit
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def split_emails(cell: object) -> list[str]:
    """The addresses of a cell: separated by ``;`` or ``,`` (contract, section 1)."""
    if not isinstance(cell, str):
        return []
    return [p.strip() for p in cell.replace(",", ";").split(";") if p.strip()]


@lru_cache(maxsize=200_000)
def delivery_form(address: str) -> str | None:
    """The address as mail is sent to it (ASCII; IDNA domain), or None when it must not be used."""
    if len(address) > MAX_ADDRESS or "@" not in address:
        return None
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    if any(_LATIN.search(label) and _CYRILLIC.search(label) for label in domain.split(".")):
        return None
    try:
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return valid.ascii_email or None


def cell_deliverable(cell: object) -> bool | None:
    """Every address of a cell can be delivered; None for an empty cell."""
    parts = split_emails(cell)
    if not parts:
        return None
    return all(delivery_form(p) is not None for p in parts)
