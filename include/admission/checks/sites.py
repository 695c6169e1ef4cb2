"""Stage 2's website check as a daily job: which sites, what is reused from earlier days, what the stage reads.

The crawler (:mod:`admission.checks.crawler`) answers for one site; this module decides which sites a day checks
(the official site in the registry of every МООУСО and ОО the stage concerns), which answers of earlier days
still stand, and turns the day's answers into per-organization evidence for the stage check.

Reuse, so that 2,000 sites are not crawled in full every day:
- a site found compliant is not fetched again for ``recheck_days`` (the plan's ``site_check``); after that,
  its evidence page is asked whether it changed (ETag / Last-Modified): unchanged, or changed and still
  matching, the evidence stands after one request; otherwise the site is crawled again;
- a site where the information was not found is crawled every day (it may be published any day).
Every day stores one row per site (reused rows say so: no requests, the day it was last verified), so a
day's stage result always reads that day's rows, and the history keeps the first day the information was seen.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import pandas as pd

from admission.checks.crawler import Crawler, Evidence
from admission.registry import CHECKS

log = logging.getLogger(__name__)

# Contract §2, stage 2: МООУСО and ОО must publish on their official sites (ДОУ: any informing row).
SITE_KINDS = ("МООУСО", "ОО")


def site_url(value: object) -> str | None:
    """The registry's «Официальный сайт» as an address to fetch: the first address of the cell, ``http://`` added
    when the scheme is missing (people write «school1.ru»); None when empty."""
    if not isinstance(value, str):
        return None
    parts = [p for p in re.split(r"[\s;,]+", value.strip()) if p]
    if not parts:
        return None
    url = parts[0]
    return url if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", url) else "http://" + url


def sites_of(plan, orgs: pd.DataFrame) -> dict[str, list[str]]:
    """Site address -> the organizations whose official site it is (kinds the site stage concerns)."""

    kinds = {k for s in plan.stages if CHECKS[s.check].sites for k in s.concerns} & set(SITE_KINDS)
    out: dict[str, list[str]] = {}
    rows = orgs[orgs["kind"].isin(sorted(kinds))] if "website" in orgs else orgs.iloc[0:0]
    for org_id, website in zip(rows["org_id"].tolist(), rows["website"].tolist(), strict=True):
        url = site_url(website)
        if url:
            out.setdefault(url, []).append(org_id)
    return out


def _evidence(row: dict) -> Evidence:
    return Evidence(url=row["url"], found=bool(row["found"]), page=row.get("page"), phrases=list(row.get("phrases") or []),
                    status=row.get("status"), pages=int(row.get("pages") or 0), reason=row.get("reason"),
                    etag=row.get("etag"), last_modified=row.get("last_modified"))


def check_sites(crawler: Crawler, urls: list[str], previous: pd.DataFrame, as_of: dt.date,
                recheck_days: int) -> list[dict]:
    """One stored row per site for ``as_of``: reused, re-checked (conditional request) or crawled."""
    before = {r["url"]: r for r in previous.to_dict("records")} if not previous.empty else {}

    def one(url: str) -> dict:
        prev = before.get(url)
        evidence, verified = None, as_of
        if prev and prev["found"] and prev.get("verified_on") and prev["verified_on"] <= as_of:
            if (as_of - prev["verified_on"]).days < recheck_days:
                evidence, verified = _evidence(prev), prev["verified_on"]
                evidence.requests = 0
            else:
                evidence = crawler.recheck(_evidence(prev))
        if evidence is None:
            evidence = crawler.check(url)
        if evidence.unfinished:
            return carried(url, prev, evidence)
        first = prev.get("first_found") if prev else None
        if evidence.found and (first is None or first > as_of):
            first = as_of
        return {"url": url, "found": evidence.found, "page": evidence.page, "phrases": evidence.phrases,
                "status": evidence.status, "pages": evidence.pages, "reason": evidence.reason, "etag": evidence.etag,
                "last_modified": evidence.last_modified, "requests": evidence.requests,
                "verified_on": verified if evidence.found else None, "first_found": first}

    done = crawler.run_within_budget(one, urls)  # the plan's run budget: the day never waits for a slow crawl
    return [done.get(u) or carried(u, before.get(u), crawler.not_checked(u)) for u in urls]


def carried(url: str, prev: dict | None, evidence: Evidence) -> dict:
    """A site whose check the time budget cut short: its last finished check stands (its date kept in
    ``verified_on``, so stage 2 says of which day), with today's reason beside it; without one, not found."""
    if prev is None:
        return {"url": url, "found": False, "page": None, "phrases": [], "status": None, "pages": evidence.pages,
                "reason": evidence.reason, "etag": None, "last_modified": None, "requests": evidence.requests,
                "verified_on": None, "first_found": None}
    when = prev.get("verified_on")
    note = f"{evidence.reason}; учтена прежняя проверка" + (f" от {when:%d.%m.%Y}" if when else "")
    keys = ("url", "found", "page", "phrases", "status", "pages", "etag", "last_modified", "verified_on", "first_found")
    return {k: prev.get(k) for k in keys} | {"url": url, "found": bool(prev.get("found")),
                                             "phrases": list(prev.get("phrases") or []),
                                             "reason": None if prev.get("found") else note,
                                             "requests": evidence.requests}


def recent(checks: pd.DataFrame, as_of: dt.date, max_age_days: int) -> pd.DataFrame:
    """The newest finished check of each site (``latest_site_checks``) that is at most ``max_age_days`` old on
    ``as_of``: what stage 2 is judged on, whatever the day's crawl is doing."""
    if checks.empty:
        return checks
    oldest = as_of - dt.timedelta(days=max_age_days)
    return checks[[isinstance(d, dt.date) and d >= oldest for d in checks["as_of"]]]


def _checked_on(row: dict) -> dt.date | None:
    """The day the row's answer was last established: a found page's ``verified_on`` (a re-check within
    ``recheck_days`` reuses it; a check cut short keeps it), else the day of the check."""
    return (row.get("verified_on") if row.get("found") else None) or row.get("as_of")


def organization_evidence(checks: pd.DataFrame, orgs: pd.DataFrame) -> pd.DataFrame:
    """The site rows per organization of the registry: org_id, url, found, page, phrases, reason, first_found and
    checked_on (the day of the check); an organization whose site has no check is absent."""
    columns = ["org_id", "url", "found", "page", "phrases", "reason", "first_found", "checked_on"]
    if checks.empty or "website" not in orgs:
        return pd.DataFrame(columns=columns)
    by_url = {r["url"]: r for r in checks.to_dict("records")}
    rows = []
    for org_id, website in zip(orgs["org_id"].tolist(), orgs["website"].tolist(), strict=True):
        url = site_url(website)
        row = by_url.get(url) if url else None
        if row is not None:
            rows.append({"org_id": org_id, **{c: row.get(c) for c in columns[1:-1]}, "checked_on": _checked_on(row)})
    return pd.DataFrame(rows, columns=columns)
