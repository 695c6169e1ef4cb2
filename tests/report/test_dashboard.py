"""The campaign page's data (admission.report.dashboard) against the store it reads, on a demo day."""

from __future__ import annotations

import datetime as dt

import pytest

DAY = dt.date(2020, 1, 15)


@pytest.fixture(scope="module")
def day_store(demo_dir, plan, tmp_path_factory):
    from admission import jobs

    out = tmp_path_factory.mktemp("dashboard")
    settings = jobs.Settings(data_dir=demo_dir, output_dir=out, store_url=f"sqlite:///{out / 'store.db'}",
                             from_email="monitor@region.example")
    jobs.ingest(settings, plan, DAY)
    jobs.check_stages(settings, plan, DAY)
    jobs.compose_digests(settings, plan, DAY, dry_run=False)
    return settings


def test_stage_and_municipality_figures_add_up_to_the_stored_results(day_store, plan):
    from admission.report import dashboard

    day = dashboard.Day.load(day_store.store_url, plan, DAY)
    assert dashboard.result_days(day_store.store_url, plan.id) == [DAY]
    for row in dashboard.stages(day):
        stored = day.results[day.results["stage"] == row["number"]]["status"].value_counts()
        assert (row["complete"], row["lagging"], row["overdue"]) == tuple(
            int(stored.get(s, 0)) for s in ("complete", "lagging", "overdue"))
        assert row["days_left"] == ((row["deadline"] - DAY).days if row["deadline"] else None)
    munis = dashboard.municipalities(day)
    assert len(munis) == 3
    for number in (s.number for s in plan.stages):
        judged = day.results[(day.results["stage"] == number) & day.results["kind"].isin(["МООУСО", "ОО", "ДОУ"])]
        assert sum(m["stages"][number]["total"] for m in munis if m["stages"][number]) == len(judged)
    members = dashboard.members(day, munis[0]["org_id"])
    assert members[0]["kind"] == "МООУСО" and {m["org_id"] for m in members} >= {munis[0]["org_id"]}
    assert len(members) == munis[0]["organizations"]


def test_an_organization_is_found_by_code_name_or_inn_and_shows_what_is_missing_and_its_mail(day_store, plan):
    from admission.inputs import snapshot
    from admission.report import dashboard

    day = dashboard.Day.load(day_store.store_url, plan, DAY)
    registry = snapshot.load(day_store.output_dir, plan.id, DAY, datasets=[]).data.frames["organizations"]
    school = registry[registry["kind"] == "ОО"].iloc[2]
    assert [h["org_id"] for h in dashboard.search(day, registry, school["inn"])] == [school["org_id"]]
    assert school["org_id"] in [h["org_id"] for h in dashboard.search(day, registry, school["name"].upper())]
    assert dashboard.search(day, registry, school["org_id"])[0]["org_id"] == school["org_id"]  # exact code first

    overdue = day.results[(day.results["stage"] == 5) & (day.results["status"] == "overdue")].iloc[0]
    card = dashboard.organization(day_store.store_url, day, overdue["org_id"])
    stage5 = next(s for s in card["stages"] if s["number"] == 5)
    assert stage5["status"] == "overdue" and stage5["missing"] == list(overdue["missing"])
    kinds = {m["kind"] for m in card["mail"]}
    assert {"overdue", "escalation"} <= kinds  # the notice to it and the escalation to its МООУСО
    assert all(m["status"] == "pending" for m in card["mail"])
    assert dashboard.organization(day_store.store_url, day, "NO-SUCH-ORG") is None


def test_the_progress_chart_has_a_line_per_stage_and_a_straight_line_per_deadline(day_store, plan):
    from admission.report import dashboard

    data = dashboard.progress(day_store.store_url, plan, DAY)
    svg = dashboard.progress_svg(data)
    assert svg.startswith("<svg") and "<script" not in svg
    assert svg.count('stroke-dasharray="5,4"') == len([s for s in plan.stages if s.deadline])
    assert all(len(points) == 1 for points in data["series"].values())


def test_the_days_mail_counts_every_kind_and_lists_what_did_not_go_out_with_its_reason(day_store, plan):
    """The «Письма за день» block: one refused message shows its recipient, reason and organizations."""
    import sqlite3

    from admission.report import dashboard

    db = day_store.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT count(*) FROM admission_outbox WHERE as_of = ?", (DAY.isoformat(),)).fetchone()[0]
        key, orgs = conn.execute("SELECT digest_key, orgs FROM admission_outbox WHERE kind = 'overdue' LIMIT 1").fetchone()
        conn.execute("UPDATE admission_outbox SET status = 'refused', attempts = 1, last_error = ? WHERE digest_key = ?",
                     ("550 5.1.1 mailbox unavailable", key))
    mail = dashboard.day_mail(day_store.store_url, dashboard.Day.load(day_store.store_url, plan, DAY))
    assert mail["total"] == total == sum(k["total"] for k in mail["kinds"])
    overdue = next(k for k in mail["kinds"] if k["kind"] == "overdue")
    assert ("отклонено сервером", 1) in overdue["states"]
    refused = [m for m in mail["problems"] if m["status_ru"] == "отклонено сервером"]
    assert len(refused) == 1 and refused[0]["reason"] == "550 5.1.1 mailbox unavailable"
    assert refused[0]["orgs"] == orgs.split(",")[:10]
