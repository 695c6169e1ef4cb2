"""The data folder is untrusted: the corpus of bad inputs (tests/data/bad/) beside a good region.

Every bad input becomes a finding naming its file (and row and column where it has them); the good
organizations' mail is exactly what it is without the corpus; nobody outside the registry gets mail;
one file that would crash the XLSX engine costs that file only.
"""

from __future__ import annotations

import datetime as dt
import email
import os
import re
import shutil
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest

from tests.helpers import REPO, airflow_env, registry, write_csv

CORPUS = REPO / "tests" / "data" / "bad"
ATTACKER = "attacker@evil.example"


def _expected() -> dict[str, str]:
    rows = (CORPUS / "expected.txt").read_text(encoding="utf-8").splitlines()
    return dict(line.split("\t", 1) for line in rows if line)


# What git cannot hold, made in the folder by the test: relative path -> (maker, a word of its finding).
def _symlink_out(path: Path) -> None:
    path.symlink_to("/etc/passwd")


def _symlink_dir(path: Path) -> None:
    outside = path.parents[2] / "outside"
    outside.mkdir(exist_ok=True)
    write_csv(outside / "S101.csv", ["ФИО", "Должность", "Роль", "E-mail"],
              [["Чужой Ч.Ч.", "директор", "главный оператор", ATTACKER]])
    path.symlink_to(outside, target_is_directory=True)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _huge(path: Path) -> None:
    with open(path, "wb") as fh:  # sparse: 150 MB by size, nothing on disk
        fh.truncate(150 * 1024 * 1024)


SPECIAL = {
    "operators/BAD60.csv": (_symlink_out, "символическая ссылка"),
    "operators/BAD61": (_symlink_dir, "символическая ссылка"),
    "operators/BAD62.csv": (_fifo, "FIFO"),
    "operators/BAD63.csv": (_huge, "слишком большой"),
}


def overlay(folder: Path) -> dict[str, str]:
    """Lay the corpus over a good data folder; returns file -> expected word of its finding."""
    for src in CORPUS.rglob("*"):
        rel = src.relative_to(CORPUS)
        if src.is_file() and src.name not in {"make_corpus.py", "expected.txt", "README.md"}:
            dst = folder / rel
            assert not dst.exists(), f"the corpus must not replace a good file: {rel}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    for rel, (make, _) in SPECIAL.items():
        make(folder / rel)
    return _expected() | {rel: word for rel, (_, word) in SPECIAL.items()}


def test_the_corpus_has_at_least_forty_bad_inputs():
    inputs = _expected() | SPECIAL
    registry_rows = (CORPUS / "organizations.csv").read_text(encoding="utf-8").count("\n") - 1
    assert len(inputs) - 1 + registry_rows >= 40


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    from admission.tools.demo import generate

    folder = tmp_path_factory.mktemp("region") / "data"
    generate(folder)
    return folder, overlay(folder)


@pytest.fixture(scope="module")
def corpus_problems(corpus_dir):
    from admission.checks.stages import day_problems
    from admission.inputs.reader import read_data_folder
    from admission.inputs.rules import validate_rows

    data = read_data_folder(corpus_dir[0])
    return data, day_problems(data, validate_rows(data.frames))[0]


@pytest.mark.slow
def test_every_bad_input_is_a_finding_that_names_its_file(corpus_dir, corpus_problems):
    _, expected = corpus_dir
    _, findings = corpus_problems
    by_file: dict[str, list[str]] = {}
    for f in findings:
        by_file.setdefault(f.file, []).append(str(f))
    missing = {rel: (word, by_file.get(rel)) for rel, word in expected.items()
               if not any(re.search(word, text) for text in by_file.get(rel, []))}
    assert not missing


@pytest.mark.slow
def test_row_and_column_are_named_where_the_input_has_them(corpus_problems):
    _, findings = corpus_problems
    where = {(f.file, f.row, f.column) for f in findings}
    assert ("operators/BAD31.csv", 2, "Код ОО") in where  # a row for another organization
    assert ("informing/BAD40.csv", 2, "Присутствовало") in where  # 99999999999999999999
    assert ("operators/BAD25.csv", 2, "E-mail") in where  # a field over the CSV field limit
    assert ("organizations.csv", 2, "Тип") in where  # empty «Тип»
    quoted = [f.message for f in findings if f.file == "informing/BAD40.csv"]
    assert any("«99999999999999999999»" in m for m in quoted) and not any("-9223372036854775808" in m for m in quoted)


@pytest.mark.slow
def test_nothing_outside_the_folder_and_no_other_organizations_rows_are_read(corpus_problems):
    data, _ = corpus_problems
    ops = data["operators"]
    assert ATTACKER not in set(ops["email"].dropna())
    assert not ops["_file"].str.contains("BAD6[01]").any()
    s101 = ops[ops["org_id"] == "S101"]
    assert set(s101["_file"]) == {f for f in set(s101["_file"]) if "S101" in f}
    orgs = data["organizations"].set_index("org_id")
    assert ATTACKER not in set(orgs["head_email"].dropna())  # the conflicting duplicate of S101 is not used
    assert orgs.loc["S101", "name"] != "Двойник школы"


def test_a_native_crash_of_the_xlsx_engine_costs_one_file(tmp_path):
    """The far-cell workbook, with the extent check switched off, aborts calamine: only its child dies."""
    from admission.inputs.files import CRASHED, Job, Limits, parse_isolated

    good = tmp_path / "good.xlsx"
    shutil.copyfile(CORPUS / "operators" / "BAD02.xlsx", good)  # a readable workbook
    bomb = tmp_path / "far.xlsx"
    shutil.copyfile(CORPUS / "operators" / "BAD01.xlsx", bomb)
    trusting = Limits(max_rows=2_000_000, max_columns=20_000, max_cells=10**12, memory_bytes=512 * 1024 * 1024)
    got_good, got_bomb = parse_isolated([Job(good.read_bytes(), ".xlsx"), Job(bomb.read_bytes(), ".xlsx")],
                                        trusting)
    assert got_bomb.problems[0].message == CRASHED and not got_bomb.rows
    assert got_good.rows[0][:2] == ["ФИО", "Должность"]


@pytest.mark.slow
def test_reading_the_corpus_stays_within_a_memory_limit(corpus_dir):
    """The whole read (zip bomb, far cell, huge declared range) under a 3 GiB address-space limit."""
    code = (
        "import resource, sys; sys.path.insert(0, 'include');"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30));"
        "from admission.inputs.reader import read_data_folder;"
        f"d = read_data_folder({str(corpus_dir[0])!r}); print(len(d.findings))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) > 40


def test_registry_exact_duplicates_collapse_and_conflicts_keep_the_first(tmp_path):
    from admission.inputs.reader import read_data_folder

    registry(tmp_path, extra=[
        ["S1", "ОО", "Школа № 1", "M1", "Первова П.П.", "s1@test.example", "https://s1.test.example", "1234567894",
         "Куратова К.К.", "cur@test.example"],
        ["S2", "ОО", "Школа № 2", "M1", "Чужой", ATTACKER, "", "", "", ""],
        ["S3", "", "Школа без типа", "M1", "Х", ATTACKER, "", "", "", ""],
    ])
    data = read_data_folder(tmp_path)
    orgs = data["organizations"]
    assert sorted(orgs["org_id"]) == ["D1", "M1", "MIN", "RC", "S1", "S2"]
    assert ATTACKER not in set(orgs["head_email"])
    messages = {f.row: f.message for f in data.findings}
    assert "повторяет" in messages[8] and "другими сведениями" in messages[9] and "тип" in messages[10]


def _mail(folder: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(recipient, kind) -> (listed orgs, plain text) of every .eml a day wrote."""
    out = {}
    for path in folder.rglob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        for line in path.read_bytes().split(b"\n"):
            assert len(line.rstrip(b"\r")) <= 998, (path, line[:80])
        body = msg.get_body(("plain",))
        out[(msg["To"].addresses[0].addr_spec, msg["X-Admission-Kind"])] = (
            str(msg["X-Admission-Orgs"]), body.get_content() if body else "")
    return out


def _day(data: Path, output: Path, date: str) -> subprocess.CompletedProcess:
    env = os.environ.copy() | airflow_env(data, output) | {"ADMISSION_RETRY_DELAY_SECONDS": "3"}
    cmd = [str(Path(sys.executable).parent / "admission"), "day", date]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.airflow
@pytest.mark.parametrize("date", ["2019-12-18", "2020-01-15"])
def test_campaign_days_over_the_corpus_send_the_good_mail_unchanged(airflow_db, corpus_dir, tmp_path, date):
    from admission.store import load_findings
    from admission.tools.demo import generate

    clean = tmp_path / "clean"
    generate(clean)
    base = _day(clean, tmp_path / "out-clean", date)
    assert base.returncode == 0, base.stdout[-2000:] + base.stderr[-3000:]
    dirty = _day(corpus_dir[0], tmp_path / "out-corpus", date)
    assert dirty.returncode == 0, dirty.stdout[-2000:] + dirty.stderr[-3000:]

    digests = ("reminder", "overdue", "escalation")
    before = {k: v for k, v in _mail(tmp_path / "out-clean" / "mail").items() if k[1] in digests}
    after = _mail(tmp_path / "out-corpus" / "mail")
    assert before and {k: v for k, v in after.items() if k[1] in digests} == before
    everyone = {to for to, _ in _mail(tmp_path / "out-clean" / "mail")}
    assert {to for to, _ in after} <= everyone  # nobody the registry does not name
    stored = load_findings(f"sqlite:///{tmp_path / 'out-corpus' / 'admission.db'}", "2020-2021",
                           dt.date.fromisoformat(date))
    files = set(stored["file"])
    assert set(corpus_dir[1]) <= files, set(corpus_dir[1]) - files
    assert "Проблемы данных:" in dirty.stdout and "accounts.xlsx, строка 2, «Код ОО»" in dirty.stdout


@pytest.mark.slow
def test_the_store_takes_any_finding_on_postgresql(corpus_problems, postgres_url):
    """Long file names, long values and odd text reach PostgreSQL (SQLite would hide a length error)."""
    from admission.checks.stages import evaluate_stage
    from admission.plan import load_plan
    from admission.store import load_findings, load_results, save_stage

    data, _ = corpus_problems
    plan = load_plan(REPO / "include" / "plans" / "2020-2021.yaml")
    day = dt.date(2020, 1, 15)
    for stage in plan.stages:
        out = evaluate_stage(plan, stage, data, day)
        save_stage(postgres_url, plan.id, stage.number, day, out.results, out.findings)
    assert len(load_results(postgres_url, plan.id, day)) > 0
    files = set(load_findings(postgres_url, plan.id, day)["file"])
    assert "operators/" + "B" * 70 + ".csv" in files and "organizations.csv" in files


def test_a_non_utf8_file_name_and_a_nul_in_a_workbook_reach_postgresql(tmp_path, postgres_url):
    """Names the OS gives as undecodable bytes and Excel's ``_x0000_`` (a NUL) would make PostgreSQL refuse
    the whole day's findings; both stay findings."""
    import re as _re
    import zipfile

    from admission.checks.stages import day_problems
    from admission.inputs.reader import read_data_folder
    from admission.inputs.rules import validate_rows
    from admission.store import load_findings, save_stage

    registry(tmp_path)
    ops = tmp_path / "operators"
    ops.mkdir()
    (ops / os.fsdecode(b"BAD\xff.csv")).write_text("ФИО;Должность;Роль;E-mail\nА;директор;оператор;a@b.ru\n")
    src = CORPUS / "operators" / "BAD02.xlsx"  # a readable workbook of an unregistered school
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(ops / "BAD70.xlsx", "w") as zo:
        for info in zi.infolist():
            body = zi.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                body = _re.sub(rb"<t>([^<]*@[^<]*)</t>", rb"<t>\1_x0000_</t>", body, count=1)
            zo.writestr(info, body)
    data = read_data_folder(tmp_path)
    findings = day_problems(data, validate_rows(data.frames))[0]
    assert any("UTF-8" in f.message for f in findings)
    assert not any("\x00" in (f.message + f.file) for f in findings)
    save_stage(postgres_url, "2020-2021", 5, dt.date(2019, 12, 16), data["organizations"].iloc[0:0].assign(
        plan_id=[], stage=[], as_of=[], status=[], missing=[], deadline=[], days_overdue=[], days_left=[]), findings)
    assert len(load_findings(postgres_url, "2020-2021", dt.date(2019, 12, 16))) == len(findings)
