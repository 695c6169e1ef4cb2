"""Timeliness and the МООУСО ranking over several campaign days (admission.report.timeliness, .ranking): the demo
region catching up from one day to the next, judged as the day's jobs judge it."""

from __future__ import annotations

import datetime as dt

import pytest

DAYS = [dt.date(2020, 1, 13), dt.date(2020, 1, 14), dt.date(2020, 1, 15)]


@pytest.fixture(scope="module")
def campaign(plan, tmp_path_factory):
    """Three campaign days of the demo region (tools.demo: the data catching up), each judged and reported."""
    from admission import jobs
    from admission.tools.demo import generate

    root = tmp_path_factory.mktemp("timeliness")
    settings = jobs.Settings(data_dir=root / "data", output_dir=root / "out",
                             store_url=f"sqlite:///{root / 'store.db'}", from_email="monitor@region.example")
    for i, day in enumerate(DAYS):
        generate(root / "data", progress=i)
        jobs.ingest(settings, plan, day)
        jobs.check_stages(settings, plan, day)
        jobs.build_report(settings, plan, day, dry_run=True)
    return settings


def _timely(settings, plan, day):
    from admission.report.timeliness import timeliness
    from admission.store import load_results

    return timeliness(settings.store_url, plan, day, load_results(settings.store_url, plan.id, day)).set_index(
        ["org_id", "stage"])


def test_an_organization_that_completes_after_its_deadline_is_late_by_working_days_and_stays_late(campaign, plan):
    """D107's informing file is damaged on the first day and sent again on the second: stage 2 (deadline
    27.12.2019) is complete from 14.01.2020, six working days late (30 and 31 December, 9, 10, 13, 14 January),
    and still late the next day."""
    from admission.workdays import WorkCalendar

    stage = next(s for s in plan.stages if s.check == "public_information")
    late = WorkCalendar.for_plan(plan).working_days_between(stage.deadline, DAYS[1])
    assert late == 6
    first = _timely(campaign, plan, DAYS[0]).loc[("D107", stage.number)]
    assert first["timeliness"] == "не выполнено" and first["complete_since"] is None
    for day in DAYS[1:]:
        row = _timely(campaign, plan, day).loc[("D107", stage.number)]
        assert (row["timeliness"], row["days_late"], row["complete_since"]) == ("с опозданием", 6, DAYS[1]), day
    # Complete on the first judged day: when is unknown, so it is not called late.
    on_time = _timely(campaign, plan, DAYS[2]).loc[("S101", stage.number)]
    assert on_time["timeliness"] == "в срок" and on_time["first_complete"] == DAYS[0]


def test_the_mooyso_ranking_says_the_change_since_yesterday_and_the_trend(campaign, plan):
    from admission.report.ranking import ranking
    from admission.report.timeliness import timeliness
    from admission.store import load_history, load_results

    url = campaign.store_url
    today = load_results(url, plan.id, DAYS[2])
    ranked = ranking(url, plan, DAYS[2], today, timeliness(url, plan, DAYS[2], today), {})
    assert list(ranked["place"]) == [1, 2, 3] and len(ranked) == 3
    assert list(ranked["pct"]) == sorted(ranked["pct"], reverse=True)
    for row in ranked.to_dict("records"):
        assert len(row["trend"]) == 3 and row["trend"][-1] == row["pct"]
        assert set(row["stages"]) == set(range(1, 9)) and all(0 <= v["pct"] <= 100 for v in row["stages"].values())
        assert row["change_day"] == round(row["trend"][-1] - row["trend"][-2], 1)
        assert row["change_week"] is None  # no judged day a week before
        assert row["light"] in ("зеленый", "желтый", "красный")
    assert any(r["change_day"] > 0 for r in ranked.to_dict("records"))  # the region caught up
    assert not load_history(url, plan.id, DAYS[2]).empty


def test_the_report_ranks_the_mooyso_and_counts_on_time_per_stage(campaign, plan):
    from openpyxl import load_workbook

    folder = campaign.output_dir / "reports" / plan.id / DAYS[2].isoformat()
    book = load_workbook(folder / f"report_{plan.id}_{DAYS[2]}.xlsx", read_only=True)
    ranking = list(book["МООУСО"].iter_rows(values_only=True))
    assert ranking[0][:3] == ("Место", "МООУСО", "Светофор") and [r[0] for r in ranking[1:]] == [1, 2, 3]
    assert all("→" in r[8] for r in ranking[1:])
    assert ranking[0][9:] == tuple(f"Этап {n}: % / % в срок" for n in range(1, 9))  # МООУСО × stage
    assert all("/" in cell for r in ranking[1:] for cell in r[9:] if cell != "—")
    timely = list(book["Своевременность"].iter_rows(values_only=True))
    assert timely[0][3:6] == ("Выполнено в срок", "С опозданием", "Не выполнено")
    stage2 = next(r for r in timely[1:] if r[0] == 2)
    assert stage2[4] >= 1  # D107, late
    sheet = list(book["Этап 2"].iter_rows(values_only=True))
    d107 = next(r for r in sheet[1:] if r[0] == "D107")
    header = sheet[0]
    assert d107[header.index("Своевременность")] == "с опозданием"
    assert d107[header.index("Рабочих дней опоздания")] == 6


def test_the_export_is_a_stable_csv_and_json_behind_the_pages_authorization(campaign, plan, monkeypatch):
    import csv
    import io

    from admission.adapter import web
    from admission.report.export import COLUMNS
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_OUTPUT_DIR", str(campaign.output_dir))
    monkeypatch.setattr(web, "store_url", lambda: campaign.store_url)
    allowed = {"yes": True}
    monkeypatch.setattr(web, "campaign_allowed", lambda user, p: allowed["yes"])
    app = web.create_app()
    app.dependency_overrides[web._user] = lambda: object()  # the data endpoints' login

    async def logged_in(request):  # the page's own login check
        return object()

    monkeypatch.setattr(web, "_user", logged_in)
    client = TestClient(app)
    answer = client.get(f"/api/export.csv?plan={plan.id}&date={DAYS[2]}")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith("\ufeff".encode())
    table = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert list(table[0]) == COLUMNS
    d107 = next(r for r in table if r["org_id"] == "D107" and r["stage"] == "2")
    assert (d107["timeliness"], d107["days_late"], d107["complete_since"]) == ("с опозданием", "6", "2020-01-14")
    assert d107["mooyso_id"] == "M01" and d107["as_of"] == "2020-01-15"
    as_json = client.get(f"/api/export.json?plan={plan.id}&date={DAYS[2]}").json()
    assert len(as_json) == len(table) and set(as_json[0]) == set(COLUMNS)
    page = client.get(f"/?plan={plan.id}&date={DAYS[2]}").text
    assert 'id="ranking"' in page and "Рейтинг МООУСО" in page and "→" in page
    assert 'id="approvals"' in page and "Утверждение сведений МООУСО" in page
    allowed["yes"] = False  # a viewer: no export
    assert client.get(f"/api/export.csv?plan={plan.id}").status_code == 403


def test_an_extension_moves_that_organizations_mail_only_and_an_exemption_leaves_the_denominator(plan, tmp_path):
    """The demo grants S110 until 31.01.2020 for stage 7 (deadline 17.01) and exempts S312 from stage 7. On 15.01,
    within stage 7's reminder window, S210 and S310 (the same defect) get reminders and S110 does not; S312 is
    not judged on stage 7 at all, and the report lists both."""
    import email
    from email import policy

    from admission import jobs
    from admission.layout import Layout
    from admission.mail.outbox import EmlTransport
    from admission.store import load_results
    from admission.tools.demo import generate
    from openpyxl import load_workbook

    day = DAYS[2]
    generate(tmp_path / "data")
    settings = jobs.Settings(data_dir=tmp_path / "data", output_dir=tmp_path / "out",
                             store_url=f"sqlite:///{tmp_path / 'store.db'}", from_email="monitor@region.example")
    jobs.ingest(settings, plan, day)
    jobs.check_stages(settings, plan, day)
    results = load_results(settings.store_url, plan.id, day)
    s7 = results[results["stage"] == 7].set_index("org_id")
    assert (s7.loc["S110", "status"], s7.loc["S110", "deadline"]) == ("lagging", dt.date(2020, 1, 31))
    assert s7.loc["S210", "deadline"] == dt.date(2020, 1, 17)  # the same defect, no extension
    assert "S312" not in set(results[results["stage"] == 7]["org_id"])  # exempt: not in the denominator
    assert "S312" in set(results[results["stage"] == 8]["org_id"])  # from stage 7 only
    jobs.compose_digests(settings, plan, day, dry_run=False)
    jobs.build_report(settings, plan, day, dry_run=False)
    jobs.deliver(settings, plan, day, EmlTransport(Layout(settings.output_dir)), kinds=None)
    mail = {}
    for path in Layout(settings.output_dir).mail_of(plan.id, day).rglob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        mail.setdefault(str(msg["X-Admission-Kind"]), []).append(msg.get_body(("plain",)).get_content())
    stage7 = " ".join(text.split("ЭТАП 7.", 1)[1].split("\nЭТАП ", 1)[0]
                      for text in mail.get("reminder", []) if "ЭТАП 7." in text)
    assert "(S210)" in stage7 and "(S310)" in stage7 and "(S110)" not in stage7
    report = mail["report"][0]
    assert "ПРОДЛЕНИЯ СРОКОВ И ОСВОБОЖДЕНИЯ: 2 (учтено 2)" in report
    assert "(S110), этап 7: срок продлен до 31.01.2020" in report and "(S312), этап 7: не требуется" in report
    book = load_workbook(settings.output_dir / "reports" / plan.id / day.isoformat() / f"report_{plan.id}_{day}.xlsx",
                         read_only=True)
    rows = list(book["Продления и освобождения"].iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == ["S110", "S312"] and all(r[7] == "да" for r in rows[1:])


def test_an_approval_counts_only_on_complete_data_and_a_later_change_asks_the_curator_again(plan, tmp_path):
    """Stage 8 depends on stage 7. S210's classes still have more vacancies than places on 14.01, the day its
    МООУСО approved it: the approval does not count, even once stage 7 is complete. S201's card is changed on
    15.01, after its approval of 14.01: it needs approving again, and the curator's letter says what changed."""
    import email
    from email import policy

    from admission import jobs
    from admission.layout import Layout
    from admission.mail.outbox import EmlTransport
    from admission.store import load_results
    from admission.tools.demo import generate

    data = tmp_path / "data"
    settings = jobs.Settings(data_dir=data, output_dir=tmp_path / "out", store_url=f"sqlite:///{tmp_path / 'st.db'}",
                             from_email="monitor@region.example")
    for day, progress in ((DAYS[0], 0), (DAYS[1], 0), (DAYS[2], 1)):  # the vacancies are fixed on the third day
        generate(data, progress=progress)
        if day == DAYS[2]:
            cards = (data / "school_cards.csv").read_bytes().decode("cp1251").splitlines(keepends=True)
            cards = [line.replace("09.01.2020", "15.01.2020") if line.startswith("S201;") else line for line in cards]
            (data / "school_cards.csv").write_bytes("".join(cards).encode("cp1251"))
        jobs.ingest(settings, plan, day)
        jobs.check_stages(settings, plan, day)
    results = load_results(settings.store_url, plan.id, DAYS[2]).set_index(["org_id", "stage"])
    assert results.loc[("S210", 7), "status"] == "complete"  # stage 7 is done now ...
    assert results.loc[("S210", 8), "status"] != "complete"  # ... but the approval was given before it was
    assert any("утверждение не учтено: на дату утверждения (14.01.2020) этап 7" in m
               for m in results.loc[("S210", 8), "missing"])
    assert results.loc[("S211", 8), "status"] == "complete"  # approved on complete data, unchanged since
    s201 = " ".join(results.loc[("S201", 8), "missing"])
    assert "требует повторного утверждения: после утверждения 14.01.2020 изменены карточка ОО (изменена 15.01.2020)" \
        in s201
    jobs.compose_digests(settings, plan, DAYS[2], dry_run=False)
    jobs.deliver(settings, plan, DAYS[2], EmlTransport(Layout(settings.output_dir)), kinds=None)
    curator = [email.message_from_bytes(p.read_bytes(), policy=policy.default)
               for p in Layout(settings.output_dir).mail_of(plan.id, DAYS[2]).rglob("*curator-ozerny*.eml")]
    text = " ".join(" ".join(m.get_body(("plain",)).get_content().split()) for m in curator)
    assert "(S201)" in text and "требует повторного утверждения" in text and "карточка ОО (изменена 15.01.2020)" in text
    # The report: the approvals waiting on each МООУСО.
    jobs.build_report(settings, plan, DAYS[2], dry_run=True)
    from openpyxl import load_workbook

    book = load_workbook(settings.output_dir / "reports" / plan.id / DAYS[2].isoformat()
                         / f"report_{plan.id}_{DAYS[2]}.xlsx", read_only=True)
    queue = {r[0]: r[1:] for r in list(book["Утверждение"].iter_rows(values_only=True))[1:]}
    ozerny = queue["Управление образования (Озерный район)"]
    assert ozerny[1] >= 1 and ozerny[2] >= 1  # S201 to approve again, S210's approval not counted
