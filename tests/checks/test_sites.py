"""Stage 2 on the real websites: the daily check (admission.checks.sites, jobs.check_websites), its reuse of earlier
days, and a campaign day whose stage-2 mail quotes what the check found (real HTTP servers on loopback)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.helpers import ORG_HEADER, PRIEM, REPO, Site, drip, set_airflow_env, write_csv

D = dt.date


@pytest.fixture
def served():
    made: list[Site] = []

    def make(pages: dict) -> Site:
        made.append(Site(pages))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _etagged(body: str, etag: str = '"v1"'):
    def answer(handler):
        if handler.headers.get("If-None-Match") == etag:
            return 304, {"ETag": etag}, b""
        return 200, {"ETag": etag}, body

    return answer


def _region(folder: Path, uo_site: str, school_site: str) -> Path:
    rows = [
        ["MIN", "РОИВ", "Министерство", "", "Тестов Т.Т.", "min@test.example", "", "", "", ""],
        ["M1", "МООУСО", "Управление образования", "", "Главнов Г.Г.", "uo@test.example", uo_site, "", "", ""],
        ["S1", "ОО", "Школа № 1", "M1", "Первова П.П.", "s1@test.example", school_site, "1234567894", "", ""],
        ["S2", "ОО", "Школа № 2", "M1", "Второв В.В.", "s2@test.example", "", "1234567894", "", ""],
    ]
    write_csv(folder / "organizations.csv", ORG_HEADER, rows)
    return folder


def _day(settings, plan, day: D, allow: str) -> dict:
    from admission import jobs

    jobs.ingest(settings, plan, day)
    return jobs.check_websites(settings, plan, day, {"allow_hosts": [allow]})


def test_a_compliant_site_is_reused_for_a_week_then_asked_if_changed_and_the_stage_counts_it(tmp_path, served, plan):
    from admission import jobs
    from admission.store import latest_site_checks, load_results, load_site_checks

    uo = served({"/": (200, {}, '<a href="/priem/">Прием в 1 класс</a>'), "/priem/": _etagged(PRIEM)})
    school = served({"/": (200, {}, "<p>Новости школы</p>")})
    settings = jobs.Settings(data_dir=_region(tmp_path / "data", uo.url + "/", school.url + "/"),
                             output_dir=tmp_path / "out", store_url=f"sqlite:///{tmp_path / 'store.db'}")
    first = _day(settings, plan, D(2019, 12, 20), "127.0.0.1")
    assert first["sites"] == 2 and first["found"] == 1
    assert [h for h in uo.hits if h != "/robots.txt"] == ["/", "/priem/"]

    # The next day: the compliant site is not fetched at all; the other one is crawled again.
    uo.hits.clear()
    school.hits.clear()
    second = _day(settings, plan, D(2019, 12, 21), "127.0.0.1")
    assert uo.hits == [] and "/" in school.hits
    assert second["reused"] == 1
    rows = load_site_checks(settings.store_url, plan.id, D(2019, 12, 21)).set_index("url")
    assert rows.loc[uo.url + "/", "requests"] == 0 and rows.loc[uo.url + "/", "verified_on"] == D(2019, 12, 20)

    # A week after it was verified: one conditional request for the evidence page, answered 304.
    _day(settings, plan, D(2019, 12, 27), "127.0.0.1")
    assert [h for h in uo.hits if h != "/robots.txt"] == ["/priem/"]
    latest = latest_site_checks(settings.store_url, plan.id, D(2019, 12, 27)).set_index("url")
    assert latest.loc[uo.url + "/", "found"] and latest.loc[uo.url + "/", "verified_on"] == D(2019, 12, 27)
    assert latest.loc[uo.url + "/", "first_found"] == D(2019, 12, 20)  # history: first seen on the 20th

    jobs.check_stages(settings, plan, D(2019, 12, 27))
    stage = next(s.number for s in plan.stages if s.check == "public_information")
    results = load_results(settings.store_url, plan.id, D(2019, 12, 27), [stage]).set_index("org_id")
    assert results.loc["M1", "status"] == "complete"  # no informing row at all: the site check alone
    assert results.loc["M1", "evidence"].startswith("проверка сайта от 27.12.2019: " + uo.url + "/priem/")
    s1 = " ".join(results.loc["S1", "missing"]) + str(load_site_checks(settings.store_url, plan.id, D(2020, 1, 16))[["url", "found", "reason", "verified_on"]].to_dict("records"))
    assert f"на сайте {school.url}/ не найдена информация" in s1 and "проверено 1 страница" in s1
    assert "адрес сайта в реестре не указан" in " ".join(results.loc["S2", "missing"])


def test_a_site_that_stops_matching_is_crawled_again_and_loses_its_evidence(tmp_path, served, plan):
    from admission import jobs
    from admission.store import load_site_checks

    pages = {"/": (200, {}, '<a href="/priem/">Прием в 1 класс</a>'), "/priem/": _etagged(PRIEM)}
    uo = served(pages)
    settings = jobs.Settings(data_dir=_region(tmp_path / "data", uo.url, ""), output_dir=tmp_path / "out",
                             store_url=f"sqlite:///{tmp_path / 'store.db'}")
    _day(settings, plan, D(2019, 12, 10), "127.0.0.1")
    pages["/priem/"] = _etagged("<p>Страница в разработке</p>", '"v2"')
    _day(settings, plan, D(2019, 12, 20), "127.0.0.1")
    row = load_site_checks(settings.store_url, plan.id, D(2019, 12, 20)).iloc[0]
    assert not row["found"] and "проверено 2 страницы" in row["reason"]
    assert row["first_found"] == D(2019, 12, 10)  # the history keeps when it was first seen


def test_the_switch_and_the_allow_list_leave_stage_2_to_the_informing_rows(tmp_path, served, plan):
    from admission import jobs
    from admission.store import load_site_checks

    uo = served({"/": (200, {}, PRIEM)})
    settings = jobs.Settings(data_dir=_region(tmp_path / "data", uo.url, ""), output_dir=tmp_path / "out",
                             store_url=f"sqlite:///{tmp_path / 'store.db'}")
    jobs.ingest(settings, plan, D(2019, 12, 20))
    assert "skipped" in jobs.check_websites(settings, plan, D(2019, 12, 20), {"enabled": False})
    assert load_site_checks(settings.store_url, plan.id, D(2019, 12, 20)).empty and uo.hits == []
    # Without the allow-list a registry address on loopback is refused before any request.
    jobs.check_websites(settings, plan, D(2019, 12, 20), {})
    row = load_site_checks(settings.store_url, plan.id, D(2019, 12, 20)).iloc[0]
    assert not row["found"] and "внутреннюю сеть" in row["reason"] and uo.hits == []


def _run(dag_id: str, day: str):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags[dag_id]
    for task in dag.tasks:
        task.retries = 0
    run = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": day, "dry_run": False})
    return run, {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@pytest.mark.airflow
def test_the_demo_day_counts_the_sites_and_the_overdue_notice_quotes_the_check(
        airflow_db, tmp_path, monkeypatch, smtp_sink, plan):
    """The demo region with its websites served on loopback: the website check's own DAG (the campaign's first
    night: it takes the snapshot itself), then the whole day through Airflow (run_day)."""
    from admission.store import load_results
    from admission.tools.demo import generate
    from admission.tools.demo_sites import serving
    from openpyxl import load_workbook

    with serving(0) as base:
        data = tmp_path / "demo"
        generate(data, sites=base)
        set_airflow_env(monkeypatch, data, tmp_path / "out", smtp_sink)
        monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_SITE_CHECK", f'{{"allow_hosts": ["{base[len("http://"):]}"]}}')
        _, sites = _run("check_websites_2020_2021", "2020-01-15")
        run, states = _run("run_day_2020_2021", "2020-01-15")
    assert all("success" in s for s in sites.values()), sites
    assert all("success" in s for s in states.values()), states
    stage = next(s.number for s in plan.stages if s.check == "public_information")
    results = load_results(f"sqlite:///{tmp_path / 'out' / 'admission.db'}", plan.id, D(2020, 1, 15), [stage])
    results = results.set_index("org_id")
    # ОО 9 of each МООУСО has no «сайт» row: its «Госвеб»-like site (three links deep) counts.
    assert results.loc["S109", "status"] == "complete"
    assert results.loc["S109", "evidence"].startswith(f"проверка сайта от 15.01.2020: {base}/school9-zarechny/roditelyam")
    assert results.loc["S103", "evidence"] == "строка «сайт» в сведениях об информировании"  # site without it; the row counts
    # МООУСО 3: neither; its overdue notice quotes what the check found, and of which day.
    assert results.loc["M03", "status"] == "overdue"
    notices = [m for m in smtp_sink.messages() if m["X-Admission-Kind"] == "overdue"
               and "uo-svetlogorsk@" in m["To"]]
    assert len(notices) == 1
    text = notices[0].get_body(("plain",)).get_content()
    assert (f"проверка сайта от 15.01.2020: на сайте {base}/edu-svetlogorsk/ не найдена информация о порядке записи "
            f"в 1 класс в электронной форме; проверено 4 страницы") in " ".join(text.split())
    book = load_workbook(tmp_path / "out" / "reports" / plan.id / "2020-01-15" / "report_2020-2021_2020-01-15.xlsx",
                         read_only=True)
    rows = list(book[f"Этап {stage}"].iter_rows(values_only=True))
    assert rows[0][-1] == "Что засчитано"
    assert any(r[0] == "S109" and r[-1].startswith("проверка сайта") for r in rows[1:])


@pytest.mark.airflow
def test_a_failed_website_check_is_its_own_red_run_and_the_day_is_judged_and_mailed_without_it(
        airflow_db, demo_dir, tmp_path, monkeypatch, smtp_sink, plan):
    from admission.checks import sites as websites
    from admission.store import load_results

    def broken(*_a, **_k):
        raise RuntimeError("simulated failure of the website check")

    monkeypatch.setattr(websites, "check_sites", broken)
    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink)
    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_SITE_CHECK", "{}")
    sites_run, sites = _run("check_websites_2020_2021", "2020-01-15")
    assert "failed" in sites["check_websites"] and "success" not in str(sites_run.state), sites
    run, states = _run("run_day_2020_2021", "2020-01-15")
    assert all("success" in s for s in states.values()), states
    stage = next(s.number for s in plan.stages if s.check == "public_information")
    results = load_results(f"sqlite:///{tmp_path / 'admission.db'}", plan.id, D(2020, 1, 15), [stage])
    m03 = " ".join(results.set_index("org_id").loc["M03", "missing"])
    assert "законченной автоматической проверки сайтов за последние 7 дней нет" in m03
    assert any(m["X-Admission-Kind"] == "overdue" for m in smtp_sink.messages())


def test_a_crawl_cut_short_leaves_stage_2_on_the_last_finished_check_and_says_of_which_day(tmp_path, served, plan):
    """Day 1 both sites publish the information. A week later (the found pages are asked again) the МООУСО's site drips and the school's home page is
    1.8 MB of unclosed tags: the crawl stops within its budget, the school's page is read at once (nothing found),
    and stage 2 counts the МООУСО on its check of day 1, saying so."""
    import time

    from admission import jobs
    from admission.store import load_results

    pages_uo, pages_school = {"/": (200, {}, PRIEM)}, {"/": (200, {}, PRIEM)}
    uo, school = served(pages_uo), served(pages_school)
    school_url = school.url.replace("127.0.0.1", "localhost") + "/"  # another host: the crawler's per-host lock
    settings = jobs.Settings(data_dir=_region(tmp_path / "data", uo.url + "/", school_url),
                             output_dir=tmp_path / "out", store_url=f"sqlite:///{tmp_path / 'store.db'}")
    budget = {"allow_hosts": ["127.0.0.1", "localhost"], "page_seconds": 10, "site_seconds": 3, "run_seconds": 4, "retries": 0}
    jobs.ingest(settings, plan, D(2020, 1, 9))
    jobs.check_websites(settings, plan, D(2020, 1, 9), budget)
    pages_uo["/"] = drip
    pages_school["/"] = (200, {}, "<html><body><p>" + "<b " * 600_000)  # 1.8 MB, under the size cap
    jobs.ingest(settings, plan, D(2020, 1, 16))
    began = time.monotonic()
    summary = jobs.check_websites(settings, plan, D(2020, 1, 16), budget)
    print(f"crawl of day 2: {time.monotonic() - began:.1f} s (budget {budget['run_seconds']} s)")
    assert summary["sites"] == 2
    jobs.check_stages(settings, plan, D(2020, 1, 16))
    stage = next(s.number for s in plan.stages if s.check == "public_information")
    results = load_results(settings.store_url, plan.id, D(2020, 1, 16), [stage]).set_index("org_id")
    assert results.loc["M1", "status"] == "complete"
    assert results.loc["M1", "evidence"].startswith(f"проверка сайта от 09.01.2020: {uo.url}/")
    s1 = " ".join(results.loc["S1", "missing"])
    assert "проверка сайта от 16.01.2020: на сайте" in s1 and "не найдена" in s1


def test_a_store_from_before_the_evidence_column_gets_it_when_opened(tmp_path):
    import sqlite3

    from admission.store import engine_for, save_stage

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the results table as earlier versions created it
        conn.execute("CREATE TABLE admission_stage_result (plan_id VARCHAR(64), as_of DATE, stage INTEGER, "
                     "org_id VARCHAR(64), kind VARCHAR(16), name TEXT, parent_id VARCHAR(64), status VARCHAR(16), "
                     "missing JSON, deadline DATE, days_overdue INTEGER, days_left INTEGER, computed_at DATETIME, "
                     "PRIMARY KEY (plan_id, as_of, stage, org_id))")
    import pandas as pd

    results = pd.DataFrame([{"org_id": "M1", "kind": "МООУСО", "name": "УО", "parent_id": None, "status": "complete",
                             "missing": [], "deadline": D(2019, 12, 27), "days_overdue": None, "days_left": 0,
                             "evidence": "проверка сайта: https://uo.example/priem"}])
    save_stage(f"sqlite:///{db}", "p", 2, D(2019, 12, 20), results, [])
    with engine_for(f"sqlite:///{db}").connect() as conn:
        assert conn.exec_driver_sql("SELECT evidence FROM admission_stage_result").scalar().startswith("проверка")
