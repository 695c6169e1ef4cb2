"""The signed page links of the digests (admission.report.links): a link shows what it names, until its day,
and nothing once altered or revoked."""

from __future__ import annotations

import datetime as dt

import pytest
from admission.mail.forms import FormKeys
from admission.report.links import BadLink, Scope, in_scope, link_for, make_token, read_token

D = dt.date
KEYS = FormKeys(b"installation-key")


def test_a_link_names_its_organizations_and_opens_until_its_last_day():
    token = make_token(Scope("2020-2021", ("M01", "S101"), D(2020, 1, 29)), KEYS)
    scope = read_token(token, KEYS, D(2020, 1, 29))
    assert scope.plan_id == "2020-2021" and scope.orgs == ("M01", "S101")
    with pytest.raises(BadLink, match="срок действия ссылки истек 29.01.2020"):
        read_token(token, KEYS, D(2020, 1, 30))


def test_an_altered_link_does_not_open():
    import base64
    import zlib

    token = make_token(Scope("2020-2021", ("M01",), D(2020, 1, 29)), KEYS)
    body, signature = token.split(".")
    forged = zlib.compress(b"l1|2020-2021|M02|2020-01-29|")  # another МООУСО, the same signature
    forged_body = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    flipped = signature[:-1] + ("1" if signature[-1] == "0" else "0")
    for bad in (f"{forged_body}.{signature}", f"{body}.{flipped}", body, f"{body[:-2]}.{signature}", "x.y"):
        with pytest.raises(BadLink):
            read_token(bad, KEYS, D(2020, 1, 20))


def test_rotating_the_key_revokes_every_link_and_a_grace_period_keeps_them_until_its_day():
    token = make_token(Scope("2020-2021", ("M01",), D(2020, 1, 29)), KEYS)
    with pytest.raises(BadLink, match="отозвана"):
        read_token(token, FormKeys(b"new-key"), D(2020, 1, 20))
    graced = FormKeys(b"new-key", previous=KEYS.current, previous_until=D(2020, 1, 21))
    assert read_token(token, graced, D(2020, 1, 21)).orgs == ("M01",)
    with pytest.raises(BadLink):
        read_token(token, graced, D(2020, 1, 22))


def test_a_form_signature_is_not_a_link_signature():
    """The link key is derived from the form key for this purpose only."""
    import hashlib
    import hmac

    token = make_token(Scope("2020-2021", ("M01",), D(2020, 1, 29)), KEYS)
    body = token.split(".")[0]
    import base64
    import zlib

    payload = zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    with_form_key = hmac.new(KEYS.current, payload, hashlib.sha256).hexdigest()[:40]
    with pytest.raises(BadLink):
        read_token(f"{body}.{with_form_key}", KEYS, D(2020, 1, 20))


def test_a_mooyso_in_the_scope_covers_its_schools_only():
    scope = Scope("p", ("M01",), D(2020, 1, 29))
    parents = {"S101": "M01", "S201": "M02", "M01": "MIN", "M02": "MIN"}
    assert in_scope(scope, "M01", parents) and in_scope(scope, "S101", parents)
    assert not in_scope(scope, "S201", parents) and not in_scope(scope, "M02", parents)


def test_a_digest_gets_a_link_only_where_the_page_has_an_address(plan):
    assert link_for(plan, D(2020, 1, 15), ["S101"], KEYS, None) is None
    url, until = link_for(plan, D(2020, 1, 15), ["S101"], KEYS, "https://airflow.example/", today=D(2020, 1, 15))
    assert url.startswith("https://airflow.example/admission/o/") and until == D(2020, 1, 29)
    assert read_token(url.rsplit("/", 1)[1], KEYS, until).orgs == ("S101",)
    # A past day judged today: the letter is written today, its link opens from today.
    _, until = link_for(plan, D(2020, 1, 15), ["S101"], KEYS, "https://airflow.example/", today=D(2026, 12, 5))
    assert until == D(2026, 12, 19)
