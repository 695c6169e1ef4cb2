"""Manual triggers, dry runs, example plans, a broken plan and a failing stage: what an admin does by hand."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from tests.helpers import REPO, set_airflow_env, take_snapshot

PLANS = REPO / "include" / "plans"


@dataclass
class Event:
    extra: dict
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def _at(minutes: int) -> dt.datetime:
    return dt.datetime(2026, 12, 2, 7, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)


def test_follow_ups_judge_the_day_of_the_newest_stage_event_not_the_latest_date(plan):
    from admission.adapter.config import resolve_day

    # A manual day for 15.01 ran earlier; now the scheduled 18.12 runs completed the set.
    events = {"stage_1": [Event({"as_of": "2020-01-15"}, _at(0)), Event({"as_of": "2019-12-18"}, _at(30))],
              "stage_2": [Event({"as_of": "2019-12-18"}, _at(31))]}
    assert resolve_day(plan, {}, None, None, "asset_triggered", events) == {
        "as_of": "2019-12-18", "dry_run": False, "preview": None}
    # A dry stage run for that day makes the follow-ups it triggers dry.
    events["stage_2"].append(Event({"as_of": "2019-12-18", "dry_run": True}, _at(40)))
    assert resolve_day(plan, {}, None, None, "asset_triggered", events)["dry_run"] is True
    # The as_of param wins over the events.
    assert resolve_day(plan, {"as_of": "2019-12-20"}, None, None, "manual", events)["as_of"] == "2019-12-20"


def test_a_date_outside_the_campaign_skips_a_scheduled_run_and_fails_a_manual_one(plan):
    from admission.adapter.config import resolve_day
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    with pytest.raises(AirflowSkipException):
        resolve_day(plan, {}, dt.datetime(2021, 1, 10, 4, tzinfo=dt.UTC), None, "scheduled")
    with pytest.raises(AirflowFailException, match="вне кампании"):
        resolve_day(plan, {"as_of": "2021-01-10"}, None, None, "manual")
    with pytest.raises(AirflowFailException, match="ГГГГ-ММ-ДД"):
        resolve_day(plan, {"as_of": "15.01.2020"}, None, None, "manual")


def test_an_example_plan_never_mails_and_says_why():
    from admission.adapter.config import resolve_day
    from admission.adapter.factory import build_all
    from admission.plan import load_plan

    example = load_plan(PLANS / "2027-2028.yaml")
    assert example.status == "example"
    day = resolve_day(example, {"as_of": "2026-12-02"}, None, None, "manual")
    assert day["dry_run"] is True and "status: example" in day["preview"]
    docs = [d.doc_md for i, d in build_all().items() if "2027_2028" in i]
    assert docs and all("письма не отправляются" in doc for doc in docs)


def test_a_broken_plan_beside_a_good_one_leaves_the_good_dags_loaded(tmp_path):
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "2020-2021.yaml").write_bytes((PLANS / "2020-2021.yaml").read_bytes())
    text = (PLANS / "2027-2028.yaml").read_text(encoding="utf-8")
    broken = text.replace("deadline: 2027-01-22", "deadline: 2026-01-22")  # the seed's stage 8 typo: a year early
    assert broken != text
    (plans / "2027-2028.yaml").write_text(broken, encoding="utf-8")
    code = ("from airflow.dag_processing.dagbag import DagBag; import json;"
            f"b = DagBag(dag_folder={str(REPO / 'dags')!r});"
            "print(json.dumps({'ids': sorted(b.dag_ids), 'errors': {k: str(v) for k, v in b.import_errors.items()}}))")
    env = os.environ | {"ADMISSION_PLANS_DIR": str(plans)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "check_2020_2021_stage_8" in result["ids"] and "notify_2020_2021" in result["ids"]
    assert not any("2027_2028" in i for i in result["ids"])
    [(path, error)] = result["errors"].items()
    assert path.endswith("admission_plan_errors.py")
    assert "2027-2028.yaml" in error and "stage 8" in error


@pytest.mark.airflow
@pytest.mark.parametrize("with_smtp", [False, True], ids=["eml", "smtp"])
def test_a_failing_stage_still_publishes_its_asset_and_the_admin_is_told(airflow_db, demo_dir, tmp_path, monkeypatch,
                                                                         smtp_sink, with_smtp):
    from admission.adapter import tasks
    from airflow.dag_processing.dagbag import DagBag

    # Airflow's own SmtpNotifier reads Airflow's extras: a plain loopback server needs disable_ssl/disable_tls.
    extra = {"disable_ssl": "true", "disable_tls": "true"}
    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink if with_smtp else None, **extra)
    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_ADMIN_EMAIL", "admin@region.example")

    def broken(*_a, **_k):
        raise RuntimeError("simulated failure of the check")

    monkeypatch.setattr(tasks, "check_stage", broken)
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["check_2020_2021_stage_3"]
    for task in dag.tasks:
        task.retries = 0
    run = dag.test(logical_date=dt.datetime(2019, 12, 18, 4, tzinfo=dt.UTC), run_conf={"as_of": "2019-12-18"})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert "failed" in states["check_organizations"] and "success" in states["publish_results"], states
    assert "success" not in str(run.state)  # the run is red although the Asset went out
    if with_smtp:
        [msg] = smtp_sink.messages()
        assert msg["To"] == "admin@region.example" and "check_2020_2021_stage_3" in msg["Subject"]
    else:
        alerts = list((tmp_path / "mail" / "alerts").rglob("*.eml"))
        assert len(alerts) == 1 and b"check_2020_2021_stage_3" in alerts[0].read_bytes()


def test_the_report_names_a_stage_that_could_not_be_judged(plan, demo_data):
    from admission.checks.stages import evaluate_stage
    from admission.report import daily as rep

    day = dt.date(2020, 1, 15)
    import pandas as pd

    today = pd.concat([evaluate_stage(plan, s, demo_data, day).results for s in plan.stages if s.number != 3])
    built = rep.build(plan, day, today, today.iloc[0:0], None, demo_data["organizations"], pd.DataFrame(
        columns=["dataset", "file", "row", "column", "message", "org_id"]))
    assert built.unjudged == [3]


@pytest.mark.airflow
def test_a_dry_run_then_the_real_day_sends_only_the_real_days_mail(airflow_db, demo_data, demo_dir, tmp_path,
                                                                  monkeypatch, plan, smtp_sink):
    from admission.checks.stages import evaluate_stage
    from admission.store import engine_for, outbox, save_stage
    from airflow.dag_processing.dagbag import DagBag
    from sqlalchemy import select

    url = f"sqlite:///{tmp_path / 'admission.db'}"
    for day in (dt.date(2019, 12, 17), dt.date(2019, 12, 18)):
        for stage in plan.stages:
            out = evaluate_stage(plan, stage, demo_data, day)
            save_stage(url, plan.id, stage.number, day, out.results, out.findings)
    set_airflow_env(monkeypatch, demo_dir, tmp_path, smtp_sink)
    take_snapshot(demo_dir, tmp_path, "2019-12-17")
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["notify_2020_2021"]
    logical = dt.datetime(2019, 12, 17, 4, tzinfo=dt.UTC)
    for as_of in ("2019-12-18", "2019-12-17"):  # a preview of two days
        assert "success" in str(dag.test(logical_date=logical, run_conf={"as_of": as_of, "dry_run": True}).state)
    assert smtp_sink.received == []
    # dry_run given explicitly: in one process, dag.test() keeps the previous run's conf in the DAG's params.
    run = dag.test(logical_date=logical, run_conf={"as_of": "2019-12-17", "dry_run": False})
    assert "success" in str(run.state)
    sent = smtp_sink.messages()
    assert sent and {m["X-Admission-Date"] for m in sent} == {"2019-12-17"}  # the preview of 18.12 stays a preview
    with engine_for(url).connect() as conn:
        statuses = dict(conn.execute(select(outbox.c.as_of, outbox.c.status).distinct()).tuples().all())
    assert statuses[dt.date(2019, 12, 18)] == "dry_run"
    assert "success" in str(dag.test(logical_date=logical, run_conf={"as_of": "2019-12-17", "dry_run": False}).state)
    assert len(smtp_sink.received) == len(sent)  # and the real day once


def test_an_address_the_server_cannot_take_is_refused_not_retried_every_day(tmp_path, smtp_sink):
    from admission.mail.outbox import SmtpTransport, deliver, enqueue, smtp_settings
    from admission.mail.recipients import Digest, Person
    from admission.mail.render import render_all
    from admission.plan import load_plan
    from admission.store import engine_for, outbox
    from sqlalchemy import update

    plan = load_plan(PLANS / "2020-2021.yaml")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    day = dt.date(2019, 12, 18)
    digests = [Digest(plan.id, day, "overdue", Person(a, "Имя")) for a in ("ok@x.example", "ok2@x.example")]
    messages = render_all(digests, plan, "monitor@region.example")
    enqueue(url, plan.id, day, messages)
    with engine_for(url).begin() as conn:  # as if an address that needs SMTPUTF8 had been recorded
        conn.execute(update(outbox).where(outbox.c.recipient == "ok@x.example").values(recipient="директор@школа.рф"))
    transport = SmtpTransport(smtp_settings("127.0.0.1", smtp_sink.port, None, None, {"ssl": "false"}))
    counts = deliver(url, plan.id, day, transport)
    assert counts["refused"] == 1 and counts["delivered"] == 1 and counts["failed"] == 0
    assert deliver(url, plan.id, day, transport)["to_deliver"] == 0  # tomorrow's retry does not try it again


def test_idna_addresses_are_delivered_in_ascii_and_look_alikes_refused():
    from admission.addresses import delivery_form

    assert delivery_form("info@школа.рф") == "info@" + "школа.рф".encode("idna").decode()
    assert delivery_form("директор@школа.рф") is None
    assert delivery_form("info@shkоla.ru") is None  # a Cyrillic «о» among Latin letters
    assert delivery_form("info@school.example") == "info@school.example"


def test_every_message_of_a_wide_escalation_keeps_header_lines_short(plan):
    from admission.mail.recipients import Digest, Item, Person
    from admission.mail.render import render

    digest = Digest(plan.id, dt.date(2020, 1, 15), "escalation", Person("head@x.example", "Г" * 3000))
    digest.items = [Item(5, f"S{i:05d}", "Школа", "ОО", "overdue", dt.date(2019, 12, 16), 30, 0, ["нет"], "—")
                    for i in range(800)]
    wire = render(digest, plan, "monitor@region.example", "М" * 2000).wire
    assert max(len(line) for line in wire.splitlines()) <= 998
