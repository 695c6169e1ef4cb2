"""The day's snapshot: the data folder read once, its row rules run once, kept for every later step.

One ``ingest`` per plan and day reads the folder (untrusted files, per-file limits, every core) and
runs the GX row rules, then writes under ``<output>/snapshots/<plan>/<date>/``:

- ``<dataset>.pickle`` — the typed frame of each dataset (a check loads only the datasets it reads);
- ``findings.pickle`` — the reader's findings and the GX failures;
- ``manifest.json`` — every file with dataset, size, modification time and SHA-256, and which files
  were added, changed or removed since the previous day's snapshot (the report shows it).

The stage checks, the mail, the report and the operator lists read this, never the folder.

Why pickle rather than Parquet: the frames hold Python objects that the checks rely on as they are
(``datetime.date`` cells, nullable booleans in object columns, lists), a Parquet round trip would
retype them and needs pyarrow; the snapshot is written and read only by this product, in its own
output folder (not the untrusted data folder), by the same installed versions (the format number
below changes when its shape does; a snapshot that does not load is simply taken again).

Incremental: a file whose size and modification time equal the last snapshot's is not read again,
its hash comes from the manifest and its parsed table from the parse cache; a changed file is read,
hashed and parsed; either way only its own rows change.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pickle
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .ingest import Limits
from .parse_cache import ParseCache
from .reader import DataFolder, FileRecord, read_data_folder
from .rules import Validation

log = logging.getLogger(__name__)

FORMAT = 1
KEEP_DAYS = 14
RACY_NS = 2 * 10**9


class NoSnapshot(RuntimeError):
    """No snapshot of the data folder exists yet for the plan: its ingest DAG has not run."""


@dataclass
class Snapshot:
    plan_id: str
    as_of: dt.date
    taken_at: str
    root: str
    data: DataFolder
    started_ns: int  # when the read began (time.time_ns()): the next read trusts older modification times
    failures: pd.DataFrame  # GX row failures (admission.rules.FAILURE_COLUMNS)
    files: list[FileRecord] = field(default_factory=list)
    changes: dict[str, list[str]] = field(default_factory=dict)  # added / changed / removed, vs the previous day

    @property
    def validation(self) -> Validation:
        return Validation(self.failures, {})

    def summary(self) -> dict:
        return {"as_of": self.as_of.isoformat(), "taken_at": self.taken_at, "files": len(self.files),
                **{k: len(v) for k, v in self.changes.items()},
                "rows": int(sum(len(f) for f in self.data.frames.values())),
                "reader_findings": len(self.data.findings), "row_failures": len(self.failures)}


def folder_of(output: Path, plan_id: str) -> Path:
    return Path(output) / "snapshots" / plan_id


def _dated(output: Path, plan_id: str) -> list[tuple[dt.date, Path]]:
    base = folder_of(output, plan_id)
    out = []
    for p in base.iterdir() if base.is_dir() else []:
        try:
            out.append((dt.date.fromisoformat(p.name), p))
        except ValueError:
            continue
    return sorted(out)


def _manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == FORMAT else None


def _records(manifest: dict | None) -> dict[str, FileRecord]:
    return {r["path"]: FileRecord(**r) for r in (manifest or {}).get("files", [])}


def changes_between(before: dict[str, FileRecord], now: list[FileRecord]) -> dict[str, list[str]]:
    """Files added, changed (other content) and removed between two manifests."""
    current = {r.path: r for r in now}
    return {
        "added": sorted(p for p in current if p not in before),
        "changed": sorted(p for p, r in current.items() if p in before and before[p].sha256 != r.sha256),
        "removed": sorted(p for p in before if p not in current),
    }


def take(root: Path, output: Path, plan_id: str, as_of: dt.date, informing_stages: tuple[int, ...] | None,
         limits: Limits | None = None, cache: ParseCache | None = None) -> Snapshot:
    """Read the folder (reusing what the newest snapshot knows), validate the rows, write the snapshot."""
    from .rules import validate_rows

    dated = _dated(output, plan_id)
    newest = max(dated, key=lambda d: (d[1] / "manifest.json").stat().st_mtime if (d[1] / "manifest.json").exists()
                 else 0, default=None)
    started_ns = time.time_ns()
    last = _manifest(newest[1]) if newest else None
    # A file modified shortly before the last read began may have changed again within the file system's
    # timestamp granularity without changing its size ("racy" entries, as git calls them): read it again.
    settled = (last or {}).get("started_ns", 0) - RACY_NS
    reuse = {p: r for p, r in _records(last).items() if r.mtime_ns < settled}
    yesterday = [p for d, p in dated if d < as_of]
    before = _records(_manifest(yesterday[-1])) if yesterday else {}
    files: list[FileRecord] = []
    data = read_data_folder(root, limits=limits, cache=cache, previous=reuse, files=files)
    validation = validate_rows(data.frames, informing_stages)
    snap = Snapshot(plan_id, as_of, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), str(root), data,
                    started_ns,
                    validation.failures, files, changes_between(before, files) if yesterday else
                    {"added": sorted(r.path for r in files), "changed": [], "removed": []})
    write(snap, output)
    prune(output, plan_id)
    return snap


def write(snap: Snapshot, output: Path) -> Path:
    """Atomically: a half-written snapshot is never read (written beside, then renamed into place)."""
    final = folder_of(output, snap.plan_id) / snap.as_of.isoformat()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    for name, frame in snap.data.frames.items():
        with open(tmp / f"{name}.pickle", "wb") as fh:
            pickle.dump(frame, fh, protocol=pickle.HIGHEST_PROTOCOL)
    with open(tmp / "findings.pickle", "wb") as fh:
        pickle.dump({"format": FORMAT, "datasets": list(snap.data.frames), "findings": snap.data.findings,
                     "failures": snap.failures}, fh, protocol=pickle.HIGHEST_PROTOCOL)
    manifest = {"format": FORMAT, "plan_id": snap.plan_id, "as_of": snap.as_of.isoformat(), "taken_at": snap.taken_at,
                "started_ns": snap.started_ns, "root": snap.root, "changes": snap.changes, "files": [asdict(r) for r in snap.files]}
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load(output: Path, plan_id: str, as_of: dt.date, datasets: list[str] | None = None) -> Snapshot:
    """The snapshot of the day (``datasets``: only these frames, and the registry); when that day has
    none (a check run by hand for another date), the newest one taken before it, else the newest of
    all, with a log line saying which."""
    dated = _dated(output, plan_id)
    if not dated:
        raise NoSnapshot(f"нет снимка данных для плана {plan_id}: сначала запустите DAG ingest_"
                         f"{plan_id.replace('-', '_')} (чтение папки данных)")
    exact = [p for d, p in dated if d == as_of]
    earlier = [p for d, p in dated if d <= as_of]
    path = exact[0] if exact else (earlier[-1] if earlier else dated[-1][1])
    if not exact:
        log.warning("no snapshot for %s: using the snapshot of %s", as_of, path.name)
    manifest = _manifest(path)
    try:
        with open(path / "findings.pickle", "rb") as fh:
            body = pickle.load(fh)
        names = body["datasets"] if datasets is None else \
            [n for n in body["datasets"] if n == "organizations" or n in datasets]
        frames = {}
        for name in names:
            with open(path / f"{name}.pickle", "rb") as fh:
                frames[name] = pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as exc:
        raise NoSnapshot(f"снимок данных {path} не читается ({type(exc).__name__}): запустите ingest заново") from exc
    if manifest is None or body.get("format") != FORMAT:
        raise NoSnapshot(f"снимок данных {path} другого формата: запустите ingest заново")
    findings, failures = body["findings"], body["failures"]
    if datasets is not None:  # what a direct read of these datasets would have found
        findings = [f for f in findings if f.dataset in frames]
        failures = failures[failures["dataset"].isin(list(frames))].reset_index(drop=True)
    data = DataFolder(Path(manifest["root"]), frames, findings)
    return Snapshot(plan_id, dt.date.fromisoformat(manifest["as_of"]), manifest["taken_at"], manifest["root"], data,
                    manifest.get("started_ns", 0), failures, list(_records(manifest).values()), manifest.get("changes", {}))


def prune(output: Path, plan_id: str, keep_days: int = KEEP_DAYS) -> None:
    """Keep the last ``keep_days`` snapshots of a plan (each is the whole folder's rows)."""
    for _, path in _dated(output, plan_id)[:-keep_days]:
        shutil.rmtree(path, ignore_errors=True)
