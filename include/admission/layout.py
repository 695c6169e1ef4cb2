"""Where the product writes under its output folder (Variable ``admission_output_dir``): one place spells it.

::

    snapshots/<plan>/<date>/            the day's snapshot (frames, findings, the Data Docs it built)
    reports/<plan>/<date>/              the ministry's report: chart, workbook, a copy of the Data Docs
    operators/<plan>/<date>/            the consolidated operator list and the request to РЦОКО
    mail/<plan>/<date>/                 .eml files when no SMTP connection is set; mail/alerts/<date>/ for the admin
    intake/<dataset>/<org>/             submissions by mail, every version
    cache/parsed/                       parsed files reused while unchanged
    form.key                            the forms' key when none is configured
    admission.db                        the project's store when no admission_db connection is set
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

DATA_DOCS = "data_docs"  # the Data Docs' folder inside a snapshot's and a report's folder


@dataclass(frozen=True)
class Layout:
    root: Path

    def snapshots(self, plan_id: str) -> Path:
        return self.root / "snapshots" / plan_id

    def snapshot(self, plan_id: str, day: dt.date) -> Path:
        return self.snapshots(plan_id) / day.isoformat()

    def snapshot_days(self, plan_id: str) -> list[tuple[dt.date, Path]]:
        """The plan's snapshot folders, oldest first (a folder not named by a date is not a snapshot)."""
        base = self.snapshots(plan_id)
        out = []
        for p in base.iterdir() if base.is_dir() else []:
            try:
                out.append((dt.date.fromisoformat(p.name), p))
            except ValueError:
                continue
        return sorted(out)

    def reports(self, plan_id: str) -> Path:
        return self.root / "reports" / plan_id

    def report(self, plan_id: str, day: dt.date) -> Path:
        return self.reports(plan_id) / day.isoformat()

    def operators(self, plan_id: str, day: dt.date) -> Path:
        return self.root / "operators" / plan_id / day.isoformat()

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    def mail_of(self, plan_id: str, day: dt.date) -> Path:
        """The day's .eml files (admission.mail.outbox.EmlTransport), a folder per kind inside."""
        return self.mail / plan_id / day.isoformat()

    def alerts(self, day: dt.date) -> Path:
        return self.mail / "alerts" / day.isoformat()

    @property
    def intake(self) -> Path:
        return self.root / "intake"

    @property
    def parse_cache(self) -> Path:
        return self.root / "cache" / "parsed"

    @property
    def form_key(self) -> Path:
        return self.root / "form.key"

    @property
    def default_store(self) -> Path:
        return self.root / "admission.db"
