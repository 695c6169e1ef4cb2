"""Mail submissions as the snapshot's input: the rows a form brought, one CSV per message, every version kept.

``<output>/intake/<dataset>/<org_id>/<sent>_<message>.csv`` (UTF-8, the contract's English keys), written
atomically under a name derived from the message, so a retry writes the same file once; the admin's data folder
is never written. The name starts with the time the sender sent it, so the newest by name is the reply sent
last, whatever order the mailbox gave them in. Beside it, ``<same name>.json`` says where the rows came from
(the answer and the form's sheet, and each row's row number on that sheet), so a finding about a submitted row
names the sheet and row the official sees, not this file. The snapshot takes, per organization and dataset,
the newer of the data folder's file and the newest submission (:func:`merge`). The mailbox side (reading,
checking, receipts) is :mod:`admission.mail.intake`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
from dataclasses import replace
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


def submission_dir(root: Path, dataset: str, org_id: str) -> Path:
    """The folder of an organization's versions of a dataset (the code made safe for a file name)."""
    return root / dataset / re.sub(r"[^0-9A-Za-zА-Яа-яЁё_-]+", "_", org_id)[:64]


def submission_path(root: Path, dataset: str, org_id: str, received_at: dt.datetime, message_id: str) -> Path:
    digest = hashlib.sha256(message_id.encode("utf-8", errors="replace")).hexdigest()[:12]
    return submission_dir(root, dataset, org_id) / f"{received_at:%Y%m%dT%H%M%S}_{digest}.csv"


def write_submission(root: Path, dataset: str, org_id: str, received_at: dt.datetime, message_id: str, frame,
                     source: str | None = None, rows: list[int] | None = None) -> Path:
    """The accepted rows as a new version (the name is the message's, so a retry writes the same file once).
    ``received_at``: the time that orders versions (the intake passes the time the reply was sent); ``source``
    and ``rows``: the sheet and its row numbers, recorded beside the file for the findings."""
    path = submission_path(root, dataset, org_id, received_at, message_id)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:  # written first: a file without its sidecar is still readable (its own rows then)
        side = path.with_suffix(".json")
        tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"source": source, "rows": [int(r) for r in rows or []]}, ensure_ascii=False),
                       encoding="utf-8")
        os.replace(tmp, side)
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


def version_diff(path: Path, shown: int = 5) -> dict:
    """What a submission changed against the organization's previous version of the same dataset (ODK Central's
    activity feed): rows added and removed (values as the CSV holds them), at most ``shown`` of each listed.
    ``previous`` is None for the first version by mail."""
    path = Path(path)
    versions = sorted(p for p in path.parent.glob("*.csv") if not p.name.startswith("."))
    before = [p for p in versions if p.name < path.name]

    def rows(file: Path) -> tuple[list[str], list[tuple[str, ...]]]:
        try:
            lines = list(csv.reader(io.StringIO(file.read_text(encoding="utf-8")), delimiter=";"))
        except OSError:
            return [], []
        return (lines[0], [tuple(r) for r in lines[1:]]) if lines else ([], [])

    header, now = rows(path)
    if not before:
        return {"previous": None, "added": len(now), "removed": 0, "added_rows": now[:shown], "removed_rows": [],
                "header": header}
    _, old = rows(before[-1])
    added = [r for r in now if r not in set(old)]
    removed = [r for r in old if r not in set(now)]
    return {"previous": before[-1].name, "added": len(added), "removed": len(removed), "added_rows": added[:shown],
            "removed_rows": removed[:shown], "header": header}


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


def newest_sent(root: Path, dataset: str, org_id: str) -> dt.datetime | None:
    """When the newest submission of an organization's dataset was sent (naive UTC), or None."""
    path = submission_dir(root, dataset, org_id)
    if not path.is_dir():
        return None
    names = sorted(p.name for p in path.glob("*.csv") if not p.name.startswith("."))
    return received_of(path / names[-1]).replace(tzinfo=None) if names else None


def _source(path: Path) -> tuple[str | None, list[int]]:
    """The sidecar of a submission: (the sheet it came from, its row numbers), or (None, []) without one."""
    try:
        side = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        return str(side["source"]), [int(r) for r in side.get("rows") or []]
    except (OSError, ValueError, KeyError, TypeError):
        return None, []


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
        source, numbers = _source(path)
        rel = source or f"почта/{name}/{org_id}/{path.name}"
        before = len(data.findings)
        rows = read_dataset(Path("."), name, data.findings, limits, tables=[(rel, org_id, table)])
        if numbers:  # the file's row n is the sheet's row numbers[n - 2]
            def sheet_row(n: int | None, numbers: list[int] = numbers) -> int | None:
                return numbers[n - 2] if n is not None and 0 <= n - 2 < len(numbers) else n

            rows["_row"] = [sheet_row(int(n)) for n in rows["_row"].tolist()]
            data.findings[before:] = [replace(f, row=sheet_row(f.row)) if f.file == rel else f
                                      for f in data.findings[before:]]
        merged = pd.concat([frame[~mine], rows], ignore_index=True) if len(rows) else frame[~mine]
        merged.attrs = dict(frame.attrs, present=True)
        data.frames[name] = merged.reset_index(drop=True)
        sources.append({"dataset": name, "org_id": org_id, "file": rel, "received": received.isoformat(),
                        "replaced_rows": int(mine.sum()), "rows": len(rows)})
    return sources
