"""Task bodies: domain calls wrapped with Airflow configuration. Heavy imports happen here, at run time."""

from __future__ import annotations

import datetime as dt
import logging

from admission.plan import Plan

from . import config

log = logging.getLogger(__name__)


def check_stage(plan: Plan, stage_no: int, as_of_iso: str) -> dict:
    """Read the data folder, run the GX and pandas rules, store the stage results; return counts."""
    from admission.reader import read_data_folder
    from admission.stages import CHECK_DATASETS, evaluate_stage, summarize
    from admission.store import save_stage

    stage = plan.stage(stage_no)
    as_of = dt.date.fromisoformat(as_of_iso)
    data = read_data_folder(config.data_dir(), CHECK_DATASETS[stage.check])
    outcome = evaluate_stage(plan, stage, data, as_of)
    save_stage(config.store_url(), plan.id, stage.number, as_of, outcome.results, outcome.findings)
    counts = summarize(outcome.results)
    # Counts and file positions only: the log never carries names or e-mails.
    log.info("plan %s stage %s as of %s: %s", plan.id, stage.number, as_of, counts)
    for f in outcome.findings[:50]:
        log.info("data problem: %s, row %s, column %s", f.file, f.row, f.column)
    if len(outcome.findings) > 50:
        log.warning("... and %d more data problems (see the store)", len(outcome.findings) - 50)
    return {"plan_id": plan.id, "stage": stage.number, "as_of": as_of_iso, **counts,
            "findings": len(outcome.findings)}
