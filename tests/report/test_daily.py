"""The ministry's daily report: numbers, workbook, chart, the mail, and no report on a day off."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from admission.checks.stages import evaluate_stage, summarize
from admission.mail.outbox import SmtpTransport, deliver, enqueue, smtp_settings
from admission.mail.recipients import Directory
from admission.report import daily as rep
from admission.store import load_findings, load_history, load_results, previous_date, save_stage
from openpyxl import load_workbook

from tests.helpers import set_airflow_env, take_snapshot

D = dt.date
DAYS = (D(2019, 12, 18), D(2020, 1, 9), D(2020, 1, 15))


@pytest.fixture(scope="module")
def store(plan, demo_data, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'admission.db'}"
    for day in DAYS:
        for stage in plan.stages:
            out = evaluate_stage(plan, stage, demo_data, day)
            save_stage(url, plan.id, stage.number, day, out.results, out.findings)
    return url


@pytest.fixture(scope="module")
def built(plan, demo_data, store, tmp_path_factory):
    as_of = D(2020, 1, 15)
    today = load_results(store, plan.id, as_of)
    prev = previous_date(store, plan.id, as_of)
    report = rep.build(plan, as_of, today, load_results(store, plan.id, prev), prev, demo_data["organizations"],
                       load_findings(store, plan.id, as_of))
    folder = tmp_path_factory.mktemp("report")
    png = rep.chart(plan, load_history(store, plan.id, as_of), as_of, folder / "chart.png")
    xlsx = rep.workbook(report, today, folder / "report.xlsx")
    return report, today, png, xlsx


def test_report_numbers_agree_with_the_stage_results(plan, demo_data, built):
    report, _, _, _ = built
    assert report.previous == D(2020, 1, 9)
    for stage in plan.stages:
        counts = summarize(evaluate_stage(plan, stage, demo_data, D(2020, 1, 15)).results)
        row = report.stages.set_index("stage").loc[stage.number]
        assert (row["complete"], row["lagging"], row["overdue"], row["total"]) == (
            counts["complete"], counts["lagging"], counts["overdue"], counts["total"])
    assert report.stages.set_index("stage").loc[6, "days_left"] == -5
    # Municipalities add up to every organization under a МООУСО.
    assert report.municipalities["total"].sum() == report.stages["total"].sum()


def test_changes_since_the_previous_report_and_longest_overdue(built):
    report, _, _, _ = built
    stage6 = report.changes[report.changes["stage"] == 6]
    assert set(stage6["before"]) == {"lagging"} and set(stage6["after"]) == {"overdue"}
    assert report.longest["days_overdue"].is_monotonic_decreasing
    assert report.longest.iloc[0]["stage"] in (4, 5)  # deadline 16.12: overdue longest


def test_workbook_has_a_sheet_per_stage_and_data_problems(plan, built):
    report, today, _, xlsx = built
    wb = load_workbook(xlsx)
    assert wb.sheetnames == ["Сводка", *[f"Этап {n}" for n in range(1, 9)], "Утверждение", "Продления и освобождения",
                             "Проблемы данных", "Почта", "Изменения файлов"]
    ws = wb["Этап 5"]
    header = [c.value for c in ws[1]]
    assert header == ["Код", "Организация", "Тип", "МООУСО", "Статус", "Дней просрочки", "Что не сделано"]
    assert ws.max_row - 1 == len(today[today["stage"] == 5])
    assert ws.auto_filter.ref.startswith("A1:G") and ws.column_dimensions["B"].width >= 40
    statuses = {ws.cell(row=r, column=5).value for r in range(2, ws.max_row + 1)}
    assert statuses == {"выполнено", "просрочено"}
    problems = wb["Проблемы данных"]
    assert problems.max_row - 1 == len(report.problems) > 0
    files = {problems.cell(row=r, column=2).value for r in range(2, problems.max_row + 1)}
    assert "informing/D107.xlsx" in files


def test_chart_is_a_valid_png(built):
    from PIL import Image

    _, _, png, _ = built
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] >= 600


def test_report_mail_reaches_smtp_with_inline_chart_and_workbook(plan, demo_data, built, tmp_path, smtp_sink):
    report, _, png, xlsx = built
    url = f"sqlite:///{tmp_path / 'out.db'}"
    roiv = Directory(demo_data).roiv
    messages = [(f"k|{p.email}", "report", rep.render_email(report, p, "monitor@region.example", "М", png, xlsx))
                for p in roiv]
    enqueue(url, plan.id, report.as_of, messages)
    transport = SmtpTransport(smtp_settings("127.0.0.1", smtp_sink.port, None, None, {"ssl": "false"}))
    assert deliver(url, plan.id, report.as_of, transport, kinds=("report",))["delivered"] == len(roiv) == 2
    msg = smtp_sink.messages()[0]
    assert msg["X-Admission-Kind"] == "report" and msg["X-Admission-Date"] == "2020-01-15"
    # Every space survives the header encoding (Python's own folding lost the one in "в 1-й").
    assert msg["Subject"] == "Ежедневный отчет: подготовка к приему в 1-й класс, кампания 2020-2021, на 15.01.2020"
    assert str(msg["From"]) == "М <monitor@region.example>" and msg["To"].addresses[0].addr_spec in msg["To"]
    html = msg.get_body(("html",)).get_content()
    image = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    assert f"cid:{image['Content-ID'].strip('<>')}" in html
    attachment = next(p for p in msg.iter_attachments() if p.get_filename() == xlsx.name)
    assert attachment.get_content() == xlsx.read_bytes()
    assert "Проблемы данных" in html and "Этапы плана" in html
    plain = msg.get_body(("plain",)).get_content()
    assert "ЭТАПЫ ПЛАНА" in plain
    # A row is a whole number and a file-level problem names no row or column.
    assert "informing/D201.csv, строка 17, «Дата»: значение «31.02.2020»" in plain
    assert "informing/D107.xlsx: файл XLSX поврежден" in plain


@pytest.mark.airflow
def test_report_dag_mails_on_a_working_day_and_not_on_a_day_off(airflow_db, plan, demo_data, demo_dir, tmp_path,
                                                                monkeypatch, smtp_sink):
    from airflow.dag_processing.dagbag import DagBag

    url = f"sqlite:///{tmp_path / 'admission.db'}"
    for day in (D(2020, 1, 15), D(2020, 1, 18)):
        for stage in plan.stages:
            out = evaluate_stage(plan, stage, demo_data, day)
            save_stage(url, plan.id, stage.number, day, out.results, out.findings)
    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink)
    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_PAGE_URL", "https://monitoring.minobr.example")
    take_snapshot(demo_dir, tmp_path, "2020-01-15")
    dag = DagBag(dag_folder=str(Path(__file__).parents[2] / "dags")).dags["report_2020_2021"]
    run = dag.test(logical_date=dt.datetime(2020, 1, 18, 4, tzinfo=dt.UTC), run_conf={"as_of": "2020-01-18"})
    assert "success" in str(run.state) and smtp_sink.received == []  # Saturday: no report
    run = dag.test(logical_date=dt.datetime(2020, 1, 15, 4, tzinfo=dt.UTC), run_conf={"as_of": "2020-01-15"})
    assert "success" in str(run.state)
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp_sink.messages()) == [
        "minobr@zarechye.example", "monitoring@zarechye.example"]
    folder = tmp_path / "reports" / "2020-2021" / "2020-01-15"
    assert (folder / "progress_2020-01-15.png").exists() and (folder / "report_2020-2021_2020-01-15.xlsx").exists()
    docs = next(folder.rglob("data_docs/local_site/index.html"))
    listed = docs.read_text(encoding="utf-8")
    assert all(f"validations/admission_{name}" in listed for name in demo_data.frames)  # one result per dataset
    # The Data Docs through the campaign page (behind its login), never a file:// path of the server.
    html = smtp_sink.messages()[0].get_body(("html",)).get_content()
    rel = docs.relative_to(folder / "data_docs").as_posix()
    assert f'href="https://monitoring.minobr.example/admission/docs/2020-2021/2020-01-15/{rel}"' in html
    assert "file://" not in html
