"""Mail submissions as the snapshot's input: the rows a form brought, one CSV per message, every version kept.

``<output>/intake/<dataset>/<org_id>/<received>_<message>.csv`` (UTF-8, the contract's English keys), written
atomically under a name derived from the message, so a retry writes the same file once; the admin's data folder
is never written. The snapshot takes, per organization and dataset, the newer of the data folder's file and the
newest submission (:func:`merge`). The mailbox side (reading, checking, receipts) is :mod:`admission.mail.intake`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import os
import re
from pathlib import Path

import pandas as pd

from admission.inputs.files import Limits, parse_csv, read_regular
from admission.inputs.reader import read_dataset
from admission.schema import DATASETS, cell_value, normalize_header

log = logging.getLogger(__name__)


def _csv_value(value: object) -> str:
    value = cell_value(value)
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return str(value)


def submission_path(root: Path, dataset: str, org_id: str, received_at: dt.datetime, message_id: str) -> Path:
    safe_org = re.sub(r"[^0-9A-Za-zА-Яа-яЁё_-]+", "_", org_id)[:64]
    digest = hashlib.sha256(message_id.encode("utf-8", errors="replace")).hexdigest()[:12]
    return root / dataset / safe_org / f"{received_at:%Y%m%dT%H%M%S}_{digest}.csv"


def write_submission(root: Path, dataset: str, org_id: str, received_at: dt.datetime, message_id: str, frame) -> Path:
    """The accepted rows as a new version (the name is the message's, so a retry writes the same file once)."""
    path = submission_path(root, dataset, org_id, received_at, message_id)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = DATASETS[dataset].keys
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=";", lineterminator="\n")
    writer.writerow(keys)
    for rec in frame[keys].itertuples(index=False, name=None):
        writer.writerow([_csv_value(v) for v in rec])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def newest_submissions(root: Path) -> dict[tuple[str, str], Path]:
    """(dataset, org_id) -> its newest submission file (names start with the time received)."""
    out: dict[tuple[str, str], Path] = {}
    if not root.is_dir():
        return out
    for ds_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        for org_dir in sorted(p for p in ds_dir.iterdir() if p.is_dir() and not p.is_symlink()):
            versions = sorted(p for p in org_dir.glob("*.csv") if p.is_file() and not p.is_symlink()
                              and not p.name.startswith("."))
            if versions:
                out[(ds_dir.name, org_dir.name)] = versions[-1]
    return out


def received_of(path: Path) -> dt.datetime:
    return dt.datetime.strptime(path.name.split("_", 1)[0], "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)


def merge(data, root: Path, files: list, limits: Limits) -> list[dict]:
    """Replace, per organization and dataset, the data folder's rows by the newest mail submission when it is newer
    than every data-folder file holding that organization's rows. Returns where each replacement came from."""
    mtimes = {r.path: r.mtime_ns for r in files}
    sources: list[dict] = []
    for (name, org_id), path in sorted(newest_submissions(root).items()):
        if name not in DATASETS or name not in data.frames:
            continue
        frame = data.frames[name]
        received = received_of(path)
        mine = frame["org_id"] == org_id
        folder_ns = max((mtimes.get(f, 0) for f in frame.loc[mine, "_file"].unique()), default=0)
        if folder_ns and folder_ns >= received.timestamp() * 1e9:
            continue  # the data folder's file is newer: it counts
        try:
            table = parse_csv(read_regular(path, limits), limits, set(DATASETS[name].header_map()), normalize_header)
        except Exception as exc:  # noqa: BLE001 (our own file; a broken one costs that submission only)
            log.warning("submission %s not read: %s", path.name, exc)
            continue
        rel = f"почта/{name}/{org_id}/{path.name}"
        rows = read_dataset(Path("."), name, data.findings, limits, tables=[(rel, org_id, table)])
        merged = pd.concat([frame[~mine], rows], ignore_index=True) if len(rows) else frame[~mine]
        merged.attrs = dict(frame.attrs, present=True)
        data.frames[name] = merged.reset_index(drop=True)
        sources.append({"dataset": name, "org_id": org_id, "file": rel, "received": received.isoformat(),
                        "replaced_rows": int(mine.sum()), "rows": len(rows)})
    return sources
