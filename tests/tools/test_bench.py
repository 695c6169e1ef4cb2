"""The benchmark is a tool: here only that it runs at a tiny scale and that its floor agrees with GX."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from admission.inputs.rules import validate_rows
from admission.tools.bench import floor_failures

pytestmark = [pytest.mark.slow]  # a generated region and the bench: left out of make test-fast

def test_floor_finds_exactly_the_failures_gx_finds(demo_data):
    gx = validate_rows(demo_data.frames).failures
    assert floor_failures(demo_data.frames) == {
        (d, int(i), c) for d, i, c in zip(gx["dataset"], gx["index"], gx["column"], strict=True)}
    assert len(gx) > 10


def test_bench_runs_at_a_tiny_scale_and_prints_one_json_object(tmp_path, demo_dir):
    out = subprocess.run([str(Path(sys.executable).parent / "admission"), "bench", "--scale", "tiny", "--json",
                          "--data", str(demo_dir)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["floor_agrees"] is True
    assert set(result["phases"]) == {"ingest", "stages", "digests", "report", "operators", "parse", "validate",
                                     "validate_floor"}
    # The reader against the raw readers on the same bytes, and the outbox's size of each day.
    assert result["phases"]["parse"]["floor_s"] > 0 and result["parse_floor_ratio"] > 0
    assert result["real_path"]["first_day"]["outbox_bytes"]["messages"] > 0
    real = result["real_path"]  # the same day through Airflow, then the next one
    assert real["first_day"]["wall_s"] > 0 and real["next_day"]["peak_rss_mb"] > 0 and real["ratio"] > 0
    assert all(p["wall_s"] >= 0 and p["peak_rss_mb"] > 0 for p in result["phases"].values())
    assert result["digests"] > 0 and result["smtp"]["received"] == result["smtp"]["messages"] == 200
    assert result["dag_parse_s"] > 0


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_region_scale_generator_is_deterministic_and_readable(tmp_path, plan):
    from admission.checks.stages import evaluate_stage, summarize
    from admission.inputs.reader import read_data_folder
    from admission.tools.scale import generate

    counts = generate(tmp_path / "a", "region")
    generate(tmp_path / "b", "region")
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert counts["ОО"] == 1500
    data = read_data_folder(tmp_path / "a")
    assert len(data["organizations"]) == sum(counts[k] for k in ("РОИВ", "РЦОКО", "МООУСО", "ОО", "ДОУ"))
    assert {f.file for f in data.findings} <= {"informing.csv"} | {
        f"informing/{o}.csv" for o in data["organizations"]["org_id"]}  # the seeded impossible dates
    # Operator lists arrive as schools send them: one file per school, no org_id, XLSX and cp1251 CSV.
    files = sorted((tmp_path / "a" / "operators").iterdir())
    assert not (tmp_path / "a" / "operators.csv").exists()
    assert {p.suffix for p in files} == {".csv", ".xlsx"} and len(files) > 1300
    assert all(f.startswith("operators/S") for f in data["operators"]["_file"])
    assert b"\xd4\xc8\xce" in next(p for p in files if p.suffix == ".csv").read_bytes()  # «ФИО» in Windows-1251
    informing_files = list((tmp_path / "a" / "informing").iterdir())
    assert 0.2 * 3245 < len(informing_files) < 0.4 * 3245
    for number in (5, 7):
        s = summarize(evaluate_stage(plan, plan.stage(number), data, dt.date(2020, 1, 15)).results)
        assert s["complete"] > 0 and s["lagging"] + s["overdue"] > 0


def test_the_next_days_folder_changes_exactly_the_chosen_files(tmp_path):
    from admission.inputs.reader import read_data_folder
    from admission.tools.scale import change, generate

    generate(tmp_path / "a", "region")
    before = {p: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    ops_before = len(read_data_folder(tmp_path / "a", ["operators"])["operators"])
    changed = change(tmp_path / "a", 0.05, seed=7)
    after = {p: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    differ = {p.relative_to(tmp_path / "a").as_posix() for p in before if before[p] != after.get(p)}
    assert differ == set(changed) and 0.04 * len(before) < len(changed) < 0.06 * len(before)
    ops = read_data_folder(tmp_path / "a", ["operators"])["operators"]
    assert len(ops) == ops_before + sum(c.startswith("operators/") for c in changed)
