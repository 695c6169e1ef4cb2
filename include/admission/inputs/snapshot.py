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

Incremental: a file whose size and modification time equal the last snapshot's is not read again (its
hash comes from the manifest) and its typed rows and findings are taken from the last snapshot (the
registry excepted: its rows are de-duplicated across files, so it is normalized again from the parse
cache); a changed file is read, hashed and parsed; either way only its own rows change. Rows are lent
only by a snapshot read under the same reader (:func:`reader_key`). The row rules are incremental too: every rule
is about one row, so the rows of a file whose content equals the last snapshot's keep that snapshot's
failures (found again by file and row), and only the rows of added or changed files go through Great
Expectations; a day with no such file does not even import it. The last snapshot's failures are
reused only when the rules are the same (:func:`rules_key`), else every row is validated again.

Data Docs: Great Expectations' own pages of the validation the ingest ran (the rows of the files read
afresh that day; every row on a first day), built beside the snapshot; the report links the newest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import pickle
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from admission import addresses, schema
from admission.inputs import data_docs, files, reader, rules
from admission.inputs.files import Limits
from admission.inputs.parse_cache import ParseCache
from admission.inputs.reader import DataFolder, FileRecord, Reuse, read_data_folder
from admission.inputs.rules import FAILURE_COLUMNS, Validation, validate_rows
from admission.inputs.submissions import merge
from admission.layout import DATA_DOCS, Layout
from admission.schema import DATASETS

log = logging.getLogger(__name__)

FORMAT = 2
KEEP_DAYS = 14
RACY_NS = 2 * 10**9
# The sources whose change can change a row rule's verdict: a snapshot validated under other ones is not reused.
RULE_SOURCES = (rules, schema, addresses)
# ... and those whose change can change how a file becomes rows: a snapshot read under other ones lends no rows.
READER_SOURCES = (reader, files, schema)


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
    failures: pd.DataFrame  # GX row failures (admission.inputs.rules.FAILURE_COLUMNS)
    files: list[FileRecord] = field(default_factory=list)
    changes: dict[str, list[str]] = field(default_factory=dict)  # added / changed / removed, vs the previous day
    validated_rows: int = 0  # rows that went through GX this time (the others kept the last snapshot's verdicts)

    @property
    def validation(self) -> Validation:
        return Validation(self.failures, {})

    def restricted(self, datasets: list[str]) -> Snapshot:
        """Only these datasets (and the registry), with what a direct read of them would have found."""
        frames = {n: f for n, f in self.data.frames.items() if n == "organizations" or n in datasets}
        findings = [f for f in self.data.findings if f.dataset in frames]
        failures = self.failures[self.failures["dataset"].isin(list(frames))].reset_index(drop=True)
        return Snapshot(self.plan_id, self.as_of, self.taken_at, self.root, DataFolder(self.data.root, frames, findings),
                        self.started_ns, failures, self.files, self.changes)

    def summary(self) -> dict:
        return {"as_of": self.as_of.isoformat(), "taken_at": self.taken_at, "files": len(self.files),
                **{k: len(v) for k, v in self.changes.items()},
                "rows": int(sum(len(f) for f in self.data.frames.values())), "validated_rows": self.validated_rows,
                "reader_findings": len(self.data.findings), "row_failures": len(self.failures)}


def _manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("format") == FORMAT else None


def _records(manifest: dict | None) -> dict[str, FileRecord]:
    records = (FileRecord(**r) for r in (manifest or {}).get("files", []))
    return {r.key: r for r in records}


def changes_between(before: dict[str, FileRecord], now: list[FileRecord]) -> dict[str, list[str]]:
    """Files added, changed (other content) and removed between two manifests, as findings show their names."""
    current = {r.key: r for r in now}
    return {
        "added": sorted(r.path for k, r in current.items() if k not in before),
        "changed": sorted(r.path for k, r in current.items() if k in before and before[k].sha256 != r.sha256),
        "removed": sorted(r.path for k, r in before.items() if k not in current),
    }


def _sources_key(modules: tuple, extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def rules_key(informing_stages: tuple[int, ...] | None) -> str:
    """What the row rules' verdicts depend on besides the row: their sources, GX's version and the plan's
    informing stages. Cheap (no GX import): a day with nothing new validates nothing."""

    return _sources_key(RULE_SOURCES, f"{version('great_expectations')}|{informing_stages}")


def reader_key(limits: Limits) -> str:
    """What turning a file into typed rows depends on besides its bytes: the reader's sources, pandas' version
    and the per-file limits."""
    return _sources_key(READER_SOURCES, f"{pd.__version__}|{limits!r}")


def _prior(path: Path | None) -> Snapshot | None:
    """The last snapshot whole (its rows and verdicts are lent to today's), or None."""
    if path is None:
        return None
    try:
        return _load_path(path)
    except NoSnapshot:
        return None


def _reuse(prior: Snapshot | None) -> Reuse:
    """The last snapshot's rows and findings, for the files it alone shows under their name."""
    shown = Counter(r.path for r in prior.files)
    return Reuse(prior.data.frames, prior.data.findings, {r.key for r in prior.files if r.sha256 and shown[r.path] == 1})


def _sorted_failures(failures: pd.DataFrame) -> pd.DataFrame:
    """Dataset by dataset in the contract's order, row by row (the rules' order within a row kept)."""

    order = failures["dataset"].map({name: i for i, name in enumerate(DATASETS)})
    text = {c: object for c in ("dataset", "org_id", "file", "column", "message")}  # one dtype whichever path
    return failures.assign(_o=order).sort_values(["_o", "index"], kind="stable").drop(columns="_o") \
        .astype(text).reset_index(drop=True)


def validate_incrementally(frames: dict[str, pd.DataFrame], informing_stages: tuple[int, ...] | None,
                           same_files: set[str], last_failures: pd.DataFrame | None
                           ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Row failures of every dataset, and the frames that went through GX (for the Data Docs).

    Rows of ``same_files`` (content equal to the last snapshot's) take ``last_failures`` of the same file
    and row, re-indexed to today's frame; every other row is validated. Equal to validating everything,
    because every rule looks at one row only (tests compare the two).
    """

    if last_failures is None:
        same_files = set()
        last_failures = pd.DataFrame(columns=FAILURE_COLUMNS)
    fresh: dict[str, pd.DataFrame] = {}
    kept: list[pd.DataFrame] = []
    for name, frame in frames.items():
        if frame.empty:
            continue
        old = frame["_file"].isin(same_files).to_numpy()
        if (~old).any():
            fresh[name] = frame[~old]
        before = last_failures[(last_failures["dataset"] == name) & last_failures["file"].isin(same_files)]
        if len(before):
            where = pd.DataFrame({"file": frame["_file"][old], "row": frame["_row"][old].astype(int),
                                  "new_index": frame.index[old]})
            moved = before.merge(where, on=["file", "row"], how="inner")  # rows dropped since (a registry repeat)
            kept.append(moved.assign(index=moved["new_index"])[FAILURE_COLUMNS])
    validated = validate_rows(fresh, informing_stages).failures if fresh else None
    parts = [p for p in [*kept, validated] if p is not None and len(p)]
    failures = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FAILURE_COLUMNS)
    return _sorted_failures(failures), fresh


def take(root: Path, output: Path, plan_id: str, as_of: dt.date, informing_stages: tuple[int, ...] | None,
         limits: Limits | None = None, cache: ParseCache | None = None, intake: Path | None = None) -> Snapshot:
    """Read the folder (reusing what the newest snapshot knows), validate the new rows, write the snapshot.
    ``intake``: the submissions received by mail (admission.mail.intake), taken per organization and dataset when
    newer than the data folder's file."""
    dated = Layout(Path(output)).snapshot_days(plan_id)
    newest = max(dated, key=lambda d: (d[1] / "manifest.json").stat().st_mtime if (d[1] / "manifest.json").exists()
                 else 0, default=None)
    started_ns = time.time_ns()
    last = _manifest(newest[1]) if newest else None
    # A file modified shortly before the last read began may have changed again within the file system's
    # timestamp granularity without changing its size ("racy" entries, as git calls them): read it again.
    settled = (last or {}).get("started_ns", 0) - RACY_NS
    last_records = _records(last)
    reuse = {p: r for p, r in last_records.items() if r.mtime_ns < settled}
    yesterday = [p for d, p in dated if d < as_of]
    before = _records(_manifest(yesterday[-1])) if yesterday else {}
    files: list[FileRecord] = []
    limits = limits or Limits.from_env()
    keys = {"reader_key": reader_key(limits), "rules_key": rules_key(informing_stages)}
    prior = _prior(newest[1] if newest and last else None)
    lend_rows = prior is not None and last.get("reader_key") == keys["reader_key"]
    data = read_data_folder(root, limits=limits, cache=cache, previous=reuse, files=files,
                            reuse=_reuse(prior) if lend_rows else None)
    if intake is not None:
        merged = merge(data, intake, files, limits)
        if merged:
            log.info("%d submissions by mail replace the data folder's rows of their organizations", len(merged))
    # Rows are told apart by the displayed name: a name two files show alike keeps no verdict (both validated).
    shown = Counter(r.path for r in files)
    same = {r.path for r in files if r.sha256 and shown[r.path] == 1 and (b := last_records.get(r.key)) is not None
            and (b.sha256, b.dataset) == (r.sha256, r.dataset)}
    lend_verdicts = prior is not None and last.get("rules_key") == keys["rules_key"]
    failures, fresh = validate_incrementally(data.frames, informing_stages, same,
                                             prior.failures if lend_verdicts else None)
    del prior  # the last snapshot's frames: only today's are kept
    snap = Snapshot(plan_id, as_of, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), str(root), data,
                    started_ns,
                    failures, files, changes_between(before, files) if yesterday else
                    {"added": sorted(r.path for r in files), "changed": [], "removed": []},
                    validated_rows=int(sum(len(f) for f in fresh.values())))

    def docs(folder: Path) -> None:
        """Data Docs of what GX validated today; a failure costs the docs, never the snapshot."""
        if not fresh:
            return
        try:
            data_docs.build(fresh, folder / DATA_DOCS, informing_stages)
        except Exception as exc:
            log.warning("GX Data Docs not built: %s", exc)

    write(snap, output, keys, docs)
    prune(output, plan_id)
    return snap


def write(snap: Snapshot, output: Path, keys: dict[str, str] | None = None, extra=None) -> Path:
    """Atomically: a half-written snapshot is never read (written beside, then renamed into place).
    ``keys``: the reader's and the rules' (see reader_key, rules_key); ``extra(folder)`` adds to the folder
    before it is renamed (the Data Docs)."""
    final = Layout(Path(output)).snapshot(snap.plan_id, snap.as_of)
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
    if extra is not None:
        extra(tmp)
    manifest = {"format": FORMAT, "plan_id": snap.plan_id, "as_of": snap.as_of.isoformat(), "taken_at": snap.taken_at,
                "started_ns": snap.started_ns, **(keys or {}), "root": snap.root, "changes": snap.changes,
                "files": [asdict(r) for r in snap.files]}
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
    dated = Layout(Path(output)).snapshot_days(plan_id)
    if not dated:
        raise NoSnapshot(f"нет снимка данных для плана {plan_id}: сначала запустите DAG ingest_"
                         f"{plan_id.replace('-', '_')} (чтение папки данных)")
    exact = [p for d, p in dated if d == as_of]
    earlier = [p for d, p in dated if d <= as_of]
    path = exact[0] if exact else (earlier[-1] if earlier else dated[-1][1])
    if not exact:
        log.warning("no snapshot for %s: using the snapshot of %s", as_of, path.name)
    return _load_path(path, datasets)


def _load_path(path: Path, datasets: list[str] | None = None) -> Snapshot:
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
    data = DataFolder(Path(manifest["root"]), frames, body["findings"])
    snap = Snapshot(manifest["plan_id"], dt.date.fromisoformat(manifest["as_of"]), manifest["taken_at"],
                    manifest["root"], data, manifest.get("started_ns", 0), body["failures"], list(_records(manifest).values()),
                    manifest.get("changes", {}))
    return snap if datasets is None else snap.restricted(datasets)


def prune(output: Path, plan_id: str, keep_days: int = KEEP_DAYS) -> None:
    """Keep the last ``keep_days`` snapshots of a plan (each is the whole folder's rows)."""
    for _, path in Layout(Path(output)).snapshot_days(plan_id)[:-keep_days]:
        shutil.rmtree(path, ignore_errors=True)
