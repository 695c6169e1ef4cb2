"""GX Data Docs of the day's row validations: built by the snapshot (the rows validated that day), found again
and copied into the report's folder.

Cell values are people's data; GX prints them as they are (see the web adapter for how the pages are served).
Importing GX costs about 3 s: it is imported inside :func:`build` (as inside the row rules' functions), never at
module level, so a day on which no file changed does not pay for it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pandas as pd

from admission import quiet_libraries
from admission.inputs.rules import add_validation_definition, prepare, ruled_datasets
from admission.layout import DATA_DOCS, Layout


def build(frames: dict[str, pd.DataFrame], folder: Path, informing_stages: tuple[int, ...] | None = None) -> Path:
    """GX Data Docs of the day's row validations, as static HTML under ``folder``; returns index.html.

    Each dataset's validation definition runs once (GX stores its result), then the site is built
    once: a checkpoint action per dataset rebuilt the whole site eight times.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    quiet_libraries()

    folder.mkdir(parents=True, exist_ok=True)
    ctx = gx.get_context(mode="file", project_root_dir=str(folder))
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    for name, frame in frames.items():
        if frame.empty or name not in ruled_datasets():
            continue
        vd, _ = add_validation_definition(ctx, name, informing_stages)
        vd.run(batch_parameters={"dataframe": prepare(name, frame)}, result_format={"result_format": "SUMMARY"})
    ctx.build_data_docs()
    index = next(folder.rglob(f"{DATA_DOCS}/local_site/index.html"), None)
    if index is None:
        raise RuntimeError(f"GX wrote no Data Docs under {folder}")
    return index


def newest(output: Path, plan_id: str, as_of: dt.date) -> tuple[dt.date, Path] | None:
    """The newest Data Docs built by a snapshot on or before ``as_of``: (its date, index.html)."""
    for day, path in reversed(Layout(Path(output)).snapshot_days(plan_id)):
        if day <= as_of:
            index = next((path / DATA_DOCS).rglob("local_site/index.html"), None) if (path / DATA_DOCS).is_dir() else None
            if index is not None:
                return day, index
    return None


def copy_to(output: Path, plan_id: str, as_of: dt.date, folder: Path) -> tuple[dt.date, Path] | None:
    """The newest Data Docs the ingest built (the rows validated that day) copied into the report's folder,
    so that the folder stays whole when old snapshots are pruned; returns (the day they were built, the copy's
    index.html)."""
    found = newest(output, plan_id, as_of)
    if found is None:
        return None
    day, index = found
    source = next(p for p in index.parents if p.name == DATA_DOCS)
    target = folder / DATA_DOCS
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return day, target / index.relative_to(source)
