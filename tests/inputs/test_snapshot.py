"""The day's snapshot: the same results as reading the folder, incremental, and the only thing checks read."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

AS_OF = dt.date(2020, 1, 15)


@pytest.fixture(scope="module")
def school_folder(tmp_path_factory) -> Path:
    """A small region whose schools send their own files (half XLSX, half Windows-1251 CSV, no org_id)."""
    from admission.tools import scale as demo_scale

    demo_scale.SCALES["small"] = (1, 3, 40, 20)
    try:
        out = tmp_path_factory.mktemp("schools")
        demo_scale.generate(out, scale="small", seed=7)
    finally:
        del demo_scale.SCALES["small"]
    return out


def _settings(data: Path, out: Path):
    from admission.jobs import Settings

    return Settings(data_dir=data, output_dir=out, store_url=f"sqlite:///{out / 'store.db'}")


def _direct(plan, folder: Path) -> pd.DataFrame:
    """Every stage's results from reading the folder directly (no snapshot, no cache)."""
    from admission.checks.stages import evaluate_stage
    from admission.inputs.reader import read_data_folder

    data = read_data_folder(folder)
    # As the day's jobs do: the request history of a store in which no request was delivered yet.
    none_asked = pd.DataFrame(columns=["org_id", "person", "action", "delivered_on"])
    return pd.concat([evaluate_stage(plan, s, data, AS_OF, requests=none_asked).results for s in plan.stages],
                     ignore_index=True)


def _via_snapshot(plan, settings) -> pd.DataFrame:
    from admission import jobs
    from admission.store import load_results

    jobs.ingest(settings, plan, AS_OF)
    for stage in plan.stages:
        jobs.check_stage(settings, plan, stage.number, AS_OF)
    return load_results(settings.store_url, plan.id, AS_OF)


def _comparable(results: pd.DataFrame) -> pd.DataFrame:
    cols = ["stage", "org_id", "status", "missing"]
    out = results[cols].astype(object).assign(missing=results["missing"].map(lambda m: "|".join(m)),
                                              stage=results["stage"].astype(int))
    return out.sort_values(["stage", "org_id"]).reset_index(drop=True)


@pytest.mark.parametrize("folder_fixture", ["demo_dir", "school_folder"])
def test_snapshot_gives_the_same_stage_results_as_reading_the_folder(folder_fixture, request, plan, tmp_path):
    folder = request.getfixturevalue(folder_fixture)
    direct = _direct(plan, folder)
    via = _via_snapshot(plan, _settings(folder, tmp_path))
    assert len(direct) > 0
    pd.testing.assert_frame_equal(_comparable(direct), _comparable(via))


def test_stage_checks_mail_report_and_operator_lists_read_no_file_of_the_data_folder(demo_dir, plan, tmp_path):
    from admission import jobs
    from admission.store import load_results

    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    settings = _settings(data, tmp_path / "out")
    jobs.ingest(settings, plan, AS_OF)
    shutil.rmtree(data)  # nothing after the ingest can read the folder now
    for stage in plan.stages:
        jobs.check_stage(settings, plan, stage.number, AS_OF)
    assert jobs.compose_digests(settings, plan, AS_OF, dry_run=True)["digests"] > 0
    assert jobs.build_report(settings, plan, AS_OF, dry_run=True)["folder"]
    assert jobs.collect_operators(settings, plan, AS_OF, dry_run=True)["operators"] > 0
    assert len(load_results(settings.store_url, plan.id, AS_OF)["stage"].unique()) == len(plan.stages)


def _frames(snap) -> dict[str, pd.DataFrame]:
    return {n: f.sort_values(["_file", "_row"]).reset_index(drop=True) for n, f in snap.data.frames.items()}


def test_a_changed_added_or_removed_file_changes_exactly_its_rows(school_folder, plan, tmp_path, monkeypatch):
    from admission import jobs
    from admission.inputs import reader, snapshot
    from admission.registry import informing_stages
    from admission.tools import scale as demo_scale

    data = tmp_path / "data"
    shutil.copytree(school_folder, data)
    for path in data.rglob("*"):  # files older than the read: their stat is trusted (see snapshot.RACY_NS)
        os.utime(path, (path.stat().st_atime - 60, path.stat().st_mtime - 60))
    settings = _settings(data, tmp_path / "out")
    jobs.ingest(settings, plan, AS_OF)
    before = snapshot.load(settings.output_dir, plan.id, AS_OF)

    reads: list[Path] = []
    real = reader.read_regular
    monkeypatch.setattr(reader, "read_regular", lambda path, limits: reads.append(path) or real(path, limits))
    normalized: list[str] = []
    real_normalize = reader._normalize
    monkeypatch.setattr(reader, "_normalize", lambda table, ds, rel, *a: normalized.append(rel) or
                        real_normalize(table, ds, rel, *a))
    # Next day, nothing touched: no file of the folder is even read again, and only the registry (de-duplicated
    # across its rows) is normalized again; every other file's rows come from the last snapshot.
    day2 = AS_OF + dt.timedelta(days=1)
    summary = jobs.ingest(settings, plan, day2)
    assert reads == [] and summary["changed"] == summary["added"] == summary["removed"] == 0
    assert normalized == ["organizations.csv"]
    pd.testing.assert_frame_equal(_frames(snapshot.load(settings.output_dir, plan.id, day2))["operators"],
                                  _frames(before)["operators"])
    assert summary["validated_rows"] == 0 and summary["row_failures"] == len(before.failures) > 0  # verdicts kept

    per_org = [p for d in ("operators", "informing") for p in (data / d).iterdir()]
    changed = demo_scale.change(data, 1 / len(per_org), seed=3)  # one file
    assert len(changed) == 1
    ops = sorted((data / "operators").iterdir())
    removed = next(p for p in ops if p.as_posix()[-len(changed[0]):] != changed[0])
    removed.unlink()
    school = next(p.stem for p in ops if not (data / "informing" / f"{p.stem}.csv").exists())
    new = f"informing/{school}.csv"
    (data / new).write_text(f"Код;Этап;Канал;Дата;Темы\n{school};1;рассылка;10.01.2020;ЕСИА\n"
                            f"{school};1;голубиная почта;11.01.2020;ЕСИА\n", encoding="utf-8")
    day3 = AS_OF + dt.timedelta(days=2)
    reads.clear()
    normalized.clear()
    summary = jobs.ingest(settings, plan, day3)
    after = snapshot.load(settings.output_dir, plan.id, day3)
    assert {p.relative_to(data).as_posix() for p in reads} == {changed[0], new}
    assert sorted(normalized) == sorted(["organizations.csv", changed[0], new])
    assert after.changes == {"added": [new], "changed": changed,
                             "removed": [removed.relative_to(data).as_posix()]}

    b, a = _frames(before), _frames(after)
    touched = {changed[0], new, removed.relative_to(data).as_posix()}
    for name in b:
        keep_b = b[name][~b[name]["_file"].isin(touched)].reset_index(drop=True)
        keep_a = a[name][~a[name]["_file"].isin(touched)].reset_index(drop=True)
        pd.testing.assert_frame_equal(keep_b, keep_a, obj=name)  # every other file's rows are as they were
    assert not a["operators"]["_file"].eq(removed.relative_to(data).as_posix()).any()
    assert a["informing"]["_file"].eq(new).sum() == 2
    # Only the rows of the changed and the new file went through the row rules; the new file's bad row is found,
    # and every other file keeps its verdicts.
    assert summary["validated_rows"] == sum(f["_file"].isin([changed[0], new]).sum() for f in a.values())
    assert after.failures[after.failures["file"] == new][["row", "column"]].values.tolist() == [[3, "Канал"]]
    cols = ["dataset", "file", "row", "column", "message"]
    untouched_b = before.failures[~before.failures["file"].isin(touched)][cols].reset_index(drop=True)
    untouched_a = after.failures[~after.failures["file"].isin(touched)][cols].reset_index(drop=True)
    assert len(untouched_b) > 0
    pd.testing.assert_frame_equal(untouched_b, untouched_a)
    grown = a[changed[0].split("/")[0]]["_file"].eq(changed[0]).sum()
    assert grown == b[changed[0].split("/")[0]]["_file"].eq(changed[0]).sum() + 1

    # The incremental snapshot and a full rebuild (no previous snapshot, no parse cache) agree.
    full = snapshot.take(data, tmp_path / "fresh", plan.id, day3, informing_stages(plan))
    for name, frame in _frames(full).items():
        pd.testing.assert_frame_equal(frame, a[name], obj=name)
    pd.testing.assert_frame_equal(full.failures, after.failures)  # same rows, same indexes, same order
    assert sorted(map(str, full.data.findings)) == sorted(map(str, after.data.findings))


def test_a_renumbered_plan_judges_its_own_stage_numbers(demo_dir, plan, tmp_path):
    """Stage numbers come from the plan: swap 2 and 3 in the plan and in the informing rows, same verdicts."""
    from admission.checks.stages import evaluate_stage
    from admission.inputs.reader import read_data_folder

    stages = [s.model_copy(update={"number": {2: 3, 3: 2}.get(s.number, s.number),
                                   "depends_on": []}) for s in plan.stages]
    renumbered = plan.model_copy(update={"stages": stages})
    data = read_data_folder(demo_dir)
    original = {s.check: evaluate_stage(plan, s, data, AS_OF).results for s in plan.stages}
    swapped = data.frames["informing"].copy()
    swapped["stage"] = swapped["stage"].map({2: 3, 3: 2}).fillna(swapped["stage"])
    data.frames["informing"] = swapped
    data.memo.clear()
    for s in renumbered.stages:
        got = evaluate_stage(renumbered, s, data, AS_OF).results
        want = original[s.check]
        assert list(got["status"]) == list(want["status"]), s.check
        assert (got["stage"] == s.number).all()


def test_two_files_whose_names_show_alike_keep_their_own_rows_on_the_next_day(demo_dir, plan, tmp_path):
    """A control character is shown escaped («\\x01»): a second file literally named that way shows alike.
    With equal size and modification time, the next day must still match each file by its real name."""
    from admission import jobs
    from admission.inputs import snapshot

    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    (data / "informing").mkdir(exist_ok=True)
    real, literal = data / "informing" / "S101\x01.csv", data / "informing" / "S101\\x01.csv"
    real.write_text("Этап;Канал;Дата;Темы\n1;рассылка;10.01.2020;ЕСИА\n", encoding="utf-8")
    literal.write_text("Этап;Канал;Дата;Темы\n1;голубиная;10.01.2020;ЕСИА\n", encoding="utf-8")
    for path in (real, literal):
        os.utime(path, ns=(1_500_000_000 * 10**9, 1_500_000_000 * 10**9))
    settings = _settings(data, tmp_path / "out")
    first = jobs.ingest(settings, plan, AS_OF)
    second = jobs.ingest(settings, plan, AS_OF + dt.timedelta(days=1))
    assert second["changed"] == second["added"] == second["removed"] == 0, (first, second)
    snaps = [snapshot.load(settings.output_dir, plan.id, AS_OF + dt.timedelta(days=d)) for d in (0, 1)]
    for snap in snaps:
        rows = snap.data.frames["informing"]
        shown = rows[rows["_file"] == "informing/S101\\x01.csv"]
        assert sorted(shown["channel"]) == ["голубиная", "рассылка"]  # one row from each file, neither lost
        failing = snap.failures[snap.failures["file"] == "informing/S101\\x01.csv"]
        assert failing["message"].str.contains("голубиная").sum() == 1
