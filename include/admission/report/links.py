"""Signed links to the campaign page for officials without an Airflow account.

Each digest carries a link whose *scope* is the organizations the letter is about (a school head: their school;
a МООУСО curator: the МООУСО's schools in the letter); the page behind it (``/admission/o/<token>``, served by
the same plugin) shows those organizations' cards, read-only, and nothing else.

The token is ``base64url(zlib(payload)).<HMAC-SHA256>``: the payload names the plan, the organizations, the last
day it opens and the key that signed it; changing any of it breaks the signature. The key is derived from the
installation's form key (``admission_form_secret``) for this purpose only, so a link's signature is never a
form's. Revocation: rotating the form secret revokes every link (a rotation with ``previous`` keeps the old links
until ``previous_until``; without ``previous``, at once). Links expire after the plan's ``page.link_days``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import zlib
from dataclasses import dataclass

from admission.mail.forms import FormKeys, key_id

_VERSION = "l1"
MAX_ORGS = 2000  # a letter about more organizations carries no link (the token would not fit a URL)


@dataclass(frozen=True)
class Scope:
    plan_id: str
    orgs: tuple[str, ...]
    expires: dt.date
    key_id: str = ""


def _link_key(key: bytes) -> bytes:
    return hmac.new(key, b"admission-page-link", hashlib.sha256).digest()


def _payload(scope: Scope) -> bytes:
    return "|".join([_VERSION, scope.plan_id, ",".join(scope.orgs), scope.expires.isoformat(), scope.key_id]
                    ).encode("utf-8")


def make_token(scope: Scope, keys: FormKeys) -> str:
    """A token for ``scope`` signed with the current key."""
    scope = Scope(scope.plan_id, tuple(sorted(set(scope.orgs))), scope.expires, key_id(keys.current))
    payload = _payload(scope)
    body = base64.urlsafe_b64encode(zlib.compress(payload, 9)).decode("ascii").rstrip("=")
    signature = hmac.new(_link_key(keys.current), payload, hashlib.sha256).hexdigest()[:40]
    return f"{body}.{signature}"


class BadLink(Exception):
    """The link cannot be honoured; the message is Russian, for the person who opened it."""


def read_token(token: str, keys: FormKeys, today: dt.date) -> Scope:
    """The scope a valid token names, else :class:`BadLink` (altered, another installation's, revoked by a key
    rotation, expired)."""
    body, _, signature = token.partition(".")
    if not body or not signature or len(token) > 20_000:
        raise BadLink("ссылка повреждена: откройте ее из письма целиком")
    try:
        inflate = zlib.decompressobj()
        payload = inflate.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), 200_000)
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise BadLink("ссылка повреждена: откройте ее из письма целиком") from exc
    if not inflate.eof or inflate.unused_data:  # cut short (its checksum missing) or with bytes after it
        raise BadLink("ссылка повреждена: откройте ее из письма целиком")
    candidates = [keys.current] + ([keys.previous] if keys.accepts_previous(today) and keys.previous else [])
    if not any(hmac.compare_digest(signature, hmac.new(_link_key(k), payload, hashlib.sha256).hexdigest()[:40])
               for k in candidates):
        raise BadLink("ссылка недействительна (изменена или отозвана): откройте ссылку из последнего письма")
    try:
        version, plan_id, orgs, expires, kid = payload.decode("utf-8").split("|")
        scope = Scope(plan_id, tuple(o for o in orgs.split(",") if o), dt.date.fromisoformat(expires), kid)
    except ValueError as exc:
        raise BadLink("ссылка повреждена: откройте ее из письма целиком") from exc
    if version != _VERSION:
        raise BadLink("ссылка устарела: откройте ссылку из последнего письма")
    if today > scope.expires:
        raise BadLink(f"срок действия ссылки истек {scope.expires:%d.%m.%Y}: откройте ссылку из последнего письма")
    return scope


def link_for(plan, as_of: dt.date, org_ids: list[str], keys: FormKeys, page_url: str | None,
             today: dt.date | None = None) -> tuple[str, dt.date] | None:
    """(URL, last day it opens) of the page link for a letter about ``org_ids``; None without a page address
    (Variable ``admission_page_url``) or with too many organizations. It opens ``page.link_days`` after the
    letter is written (a past day run today gets a link that opens from today)."""
    if not page_url or not org_ids or len(org_ids) > MAX_ORGS:
        return None
    written = max(as_of, today or dt.datetime.now(plan.tz).date())
    expires = written + dt.timedelta(days=plan.page.link_days)
    token = make_token(Scope(plan.id, tuple(org_ids), expires), keys)
    return f"{page_url.rstrip('/')}/admission/o/{token}", expires


def in_scope(scope: Scope, org_id: str, parents: dict[str, str]) -> bool:
    """An organization of the scope, or a school of a МООУСО in the scope (``parents``: org_id -> parent_id of
    the day shown)."""
    return org_id in scope.orgs or parents.get(org_id) in scope.orgs
