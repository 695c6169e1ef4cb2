"""`admission bench`: the code the DAG tasks run, in-process and in their order, phase by phase.

Phases are the jobs of :mod:`admission.jobs` the tasks of ``run_day_<plan>`` run, in-process: ingest
(read the folder, row rules, GX Data Docs, write the snapshot), the stage checks, the digests
(recipients, rendering, outbox; no SMTP), the report (tables, chart, workbook), the operator lists. Each
phase reports wall seconds and its peak RSS (sampled). Then the real path: ``admission day --dry-run``
(the ``run_day_<plan>`` DAG through Airflow, in its own process) on a copy of the same data, first day
and next day with 1 % of the per-organization files changed, with the ratio of the real path to the
in-process day.
`floor_ratio` compares the GX validation with a plain vectorized pandas
implementation of the same rules on the same frames, which must find exactly
the same failures. Extras: DAG parse time in a fresh interpreter, and
rendering + sending N digests to an SMTP server on loopback over one
connection. A tool, not a test: it prints numbers and asserts nothing about speed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from admission import jobs
from admission.inputs.reader import read_data_folder, thaw_heap
from admission.inputs.rules import prepare, row_rules, validate_rows
from admission.mail.outbox import SmtpTransport, deliver, enqueue, outbox_bytes, smtp_settings
from admission.mail.recipients import Digest, Item, Person
from admission.mail.render import render_all
from admission.plan import load_plan
from admission.registry import informing_stages
from admission.schema import DATASETS
from admission.store import load_results
from admission.tools.demo import generate
from admission.tools.scale import change
from admission.tools.scale import generate as generate_scaled

REPO = Path(__file__).resolve().parents[3]
AS_OF = dt.date(2020, 1, 15)


class PeakRSS:
    """Peak resident memory of this process during a block, sampled every 20 ms."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRSS:
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def floor_failures(frames: dict[str, pd.DataFrame]) -> set[tuple[str, int, str]]:
    """The same row rules as the GX suites, as plain vectorized pandas: (dataset, index, column)."""

    out: set[tuple[str, int, str]] = set()
    for name, frame in frames.items():
        if frame.empty:
            continue
        data = prepare(name, frame)
        for rule in (r for r in row_rules() if r.dataset == name):
            exp = rule.build()
            kind = type(exp).__name__
            if kind == "ExpectColumnValuesToNotBeNull":
                bad = data[exp.column].isna()
            elif kind == "ExpectColumnValuesToMatchRegex":
                col = data[exp.column]
                bad = col.notna() & ~col.astype("string").str.contains(exp.regex, regex=True, na=False)
            elif kind == "ExpectColumnValuesToBeInSet":
                col = data[exp.column]
                bad = col.notna() & ~col.isin(list(exp.value_set))
            elif kind == "ExpectColumnValuesToBeBetween":
                col = pd.to_numeric(data[exp.column], errors="coerce")
                bad = col.notna() & (col < exp.min_value)
            elif kind == "ExpectColumnPairValuesAToBeGreaterThanB":
                a, b = (pd.to_numeric(data[c], errors="coerce") for c in (exp.column_A, exp.column_B))
                bad = a.notna() & b.notna() & (a < b)
            else:  # pragma: no cover - a new rule type must get a floor twin
                raise NotImplementedError(kind)
            column = DATASETS[name].column(rule.column).ru
            out.update((name, int(i), column) for i in data.index[bad.fillna(False).to_numpy(dtype=bool)])
    return out


def _phase(results: dict, name: str, fn, rows: int | None = None):
    with PeakRSS() as rss:
        start = time.perf_counter()
        value = fn()
        wall = time.perf_counter() - start
    results[name] = {"wall_s": round(wall, 3), "peak_rss_mb": round(rss.peak / 2**20, 1)}
    if rows:
        results[name]["rows_per_s"] = round(rows / wall) if wall else None
    return value


def run_day(data_dir: Path, work: Path) -> dict:
    """One campaign day through the jobs the DAG tasks run (admission.jobs), in their order, in-process."""

    plan = load_plan(REPO / "include" / "plans" / "2020-2021.yaml")
    settings = jobs.Settings(data_dir=data_dir, output_dir=work / "out", store_url=f"sqlite:///{work / 'bench.db'}",
                             from_email="monitor@region.example")
    phases: dict[str, dict] = {}
    total_start = time.perf_counter()
    with PeakRSS() as total_rss:
        _phase(phases, "ingest", lambda: jobs.ingest(settings, plan, AS_OF))
        _phase(phases, "stages", lambda: jobs.check_stages(settings, plan, AS_OF))
        digests = _phase(phases, "digests", lambda: jobs.compose_digests(settings, plan, AS_OF, dry_run=True))
        _phase(phases, "report", lambda: jobs.build_report(settings, plan, AS_OF, dry_run=True))
        _phase(phases, "operators", lambda: jobs.collect_operators(settings, plan, AS_OF, dry_run=True))
        thaw_heap()
    total = time.perf_counter() - total_start
    # Parsing alone (the reader, no cache, no snapshot, no rules) against the raw readers' floor on the same bytes.
    parse = _phase(phases, "parse", lambda: read_data_folder(data_dir))
    del parse
    floor_s = reader_floor(data_dir)
    phases["parse"]["floor_s"] = round(floor_s, 3)
    phases["parse"]["floor_ratio"] = round(phases["parse"]["wall_s"] / floor_s, 2) if floor_s else None
    # The row rules alone, against their plain pandas twin, on the snapshot's frames (not part of the day).
    data = jobs.load_snapshot(settings, plan, AS_OF).data
    rows = sum(len(f) for f in data.frames.values())
    import great_expectations  # noqa: F401  (import cost is not validation cost)

    validation = _phase(phases, "validate", lambda: validate_rows(data.frames, informing_stages(plan)), rows)
    floor = _phase(phases, "validate_floor", lambda: floor_failures(data.frames), rows)
    gx = {(d, int(i), c) for d, i, c in zip(validation.failures["dataset"], validation.failures["index"],
                                            validation.failures["column"], strict=True)}
    phases["validate"]["floor_ratio"] = round(phases["validate"]["wall_s"] / phases["validate_floor"]["wall_s"], 2)
    return {
        "rows": rows, "organizations": len(data.frames["organizations"]),
        "stage_results": len(load_results(settings.store_url, plan.id, AS_OF)),
        "digests": digests["digests"], "row_failures": len(gx),
        "floor_agrees": gx == floor, "floor_ratio": phases["validate"]["floor_ratio"],
        "parse_floor_ratio": phases["parse"]["floor_ratio"],
        "phases": phases, "total": {"wall_s": round(total, 3), "peak_rss_mb": round(total_rss.peak / 2**20, 1),
                                    "rows_per_s": round(rows / total)},
    }


def reader_floor(data_dir: Path) -> float:
    """Seconds the raw readers take on the data folder's files, in this process: python-calamine's rows of each
    workbook's first sheet, the csv module's rows of each CSV decoded as UTF-8 (else Windows-1251) — what parsing
    cannot beat; the bench prints the reader's time over it."""
    import csv
    import io

    import python_calamine

    began = time.perf_counter()
    for path in sorted(data_dir.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix.casefold() == ".xlsx":
            try:
                python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data)).get_sheet_by_index(0).to_python()
            except Exception:  # noqa: BLE001 (a damaged workbook costs the floor nothing)
                continue
        elif path.suffix.casefold() == ".csv":
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("cp1251", errors="replace")
            for _ in csv.reader(io.StringIO(text), delimiter=";"):
                pass
    return time.perf_counter() - began


def _timed_day(env: dict[str, str], day: dt.date) -> dict:
    """`admission day DAY --dry-run` in its own process: wall time and the peak RSS of the largest process
    of its tree (os.wait4 reports the maximum over the child and the children it waited for)."""
    cmd = [sys.executable, "-m", "admission.cli", "day", day.isoformat(), "--dry-run"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"admission day {day} failed:\n{out.decode(errors='replace')[-3000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def real_path(data_dir: Path, work: Path, changed_fraction: float = 0.01) -> dict:
    """The path users run: every DAG of the day through Airflow (``admission day --dry-run``), on a copy of
    the data; then the next day with ``changed_fraction`` of the per-organization files changed."""

    data = work / "real-data"
    shutil.copytree(data_dir, data)
    home = work / "airflow"
    home.mkdir()
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW_VAR_ADMISSION_DATA_DIR": str(data),
           "AIRFLOW_VAR_ADMISSION_OUTPUT_DIR": str(work / "real-out"), "GX_ANALYTICS_ENABLED": "false",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           # The generated regions' sites are invented (.example): the website check is network time, not
           # the product's, and is measured apart (tests/test_sitecheck.py prints 200 slow sites' wall time).
           "AIRFLOW_VAR_ADMISSION_SITE_CHECK": '{"enabled": false}'}
    env.pop("ADMISSION_DEMO_SITES", None)
    env.pop("AIRFLOW_CONN_ADMISSION_SMTP", None)
    env.pop("AIRFLOW_CONN_ADMISSION_DB", None)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True,
                   capture_output=True)
    store = f"sqlite:///{work / 'real-out' / 'admission.db'}"
    first = _timed_day(env, AS_OF) | {"outbox_bytes": outbox_bytes(store, "2020-2021", AS_OF)}
    changed = change(data, changed_fraction, seed=1) if (data / "operators").is_dir() else []
    time.sleep(0.01)
    nxt = _timed_day(env, AS_OF + dt.timedelta(days=1)) | {"changed_files": len(changed)}
    nxt["outbox_bytes"] = outbox_bytes(store, "2020-2021", AS_OF + dt.timedelta(days=1))
    return {"first_day": first, "next_day": nxt}


def dag_parse_seconds(repeats: int = 3) -> float:
    """All DAG files parsed in a fresh interpreter that has already imported Airflow (median of runs)."""
    folder = str(REPO / "dags")
    code = (
        "import time, airflow.sdk\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"t = time.perf_counter(); bag = DagBag(dag_folder={folder!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print(time.perf_counter() - t)\n"
    )
    env = os.environ.copy() | {"AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return round(statistics.median(times), 3)


def _sink_process(port: int, count, ready, stop) -> None:
    """A loopback SMTP server in its own process, so that it does not share the client's GIL."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            with count.get_lock():
                count.value += 1
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def smtp_throughput(n: int) -> dict:
    """Render and send n digests to an aiosmtpd server on loopback (another process) over one connection."""
    import multiprocessing as mp


    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    count, ready, stop = ctx.Value("i", 0), ctx.Event(), ctx.Event()
    server = ctx.Process(target=_sink_process, args=(port, count, ready, stop), daemon=True)
    server.start()
    ready.wait(60)
    try:
        plan = load_plan(REPO / "include" / "plans" / "2020-2021.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/smtp.db"
            start = time.perf_counter()
            digests = [
                Digest(plan.id, AS_OF, "overdue", Person(f"head{i}@school.example", "Руководитель"), [
                    Item(5, f"S{i}", f"Школа № {i}", "ОО", "overdue", dt.date(2019, 12, 16), 30, 0,
                         ["нет главного оператора в должности не ниже заместителя директора"], "УО: uo@x.example")])
                for i in range(n)
            ]
            enqueue(url, plan.id, AS_OF, render_all(digests, plan, "monitor@region.example"))
            rendered = time.perf_counter() - start
            transport = SmtpTransport(smtp_settings("127.0.0.1", port, None, None, {"ssl": "false"}))
            counts = deliver(url, plan.id, AS_OF, transport)
            total = time.perf_counter() - start
    finally:
        stop.set()
        server.join(10)
    return {"messages": n, "delivered": counts["delivered"], "received": count.value,
            "render_and_store_s": round(rendered, 3), "total_s": round(total, 3),
            "messages_per_s": round(n / total, 1), "send_only_per_s": round(n / (total - rendered), 1)}


def main(args) -> int:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    scale = args.scale
    with tempfile.TemporaryDirectory(prefix="admission-bench-") as tmp:
        work = Path(tmp)
        if args.data:
            data_dir = Path(args.data)
        else:
            data_dir = Path(tempfile.gettempdir()) / f"admission-bench-data-{scale}"
            if not (data_dir / "organizations.csv").exists() and not (data_dir / "organizations.xlsx").exists():
                if scale in ("tiny", "demo"):
                    generate(data_dir)
                else:
                    generate_scaled(data_dir, scale)
        result = {"scale": scale, "as_of": AS_OF.isoformat(), "date_measured": dt.date.today().isoformat(),
                  "cpus": os.cpu_count(), **run_day(data_dir, work)}
        if not getattr(args, "skip_real", False):
            result["real_path"] = real_path(data_dir, work)
            result["real_path"]["ratio"] = round(result["real_path"]["first_day"]["wall_s"] / result["total"]["wall_s"], 2)
        if not args.skip_extras:
            result["dag_parse_s"] = dag_parse_seconds()
            result["smtp"] = smtp_throughput(args.messages if scale != "tiny" else 200)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0 if result["floor_agrees"] else 1
