"""Human review of answers by mail (issue «Manage the campaign»): a person marks an answer on the campaign page; the
organization hears of it with the comment and a fresh form; a stage whose plan says ``review: true`` counts it."""

from __future__ import annotations

import datetime as dt
import email
from email import policy

DAY = dt.date(2020, 1, 15)
SENDER = "school11-ozerny@zarechye.example"  # S211's head, as the registry has it


def test_a_review_with_remarks_reaches_the_sender_and_keeps_the_stage_open_until_accepted(tmp_path, demo_dir):
    from admission import jobs
    from admission.layout import Layout
    from admission.mail.outbox import EmlTransport
    from admission.plan import load_plan
    from admission.store import engine_for, intake, load_results, record_review

    from tests.helpers import REPO

    text = (REPO / "include" / "plans" / "2020-2021.yaml").read_text(encoding="utf-8")
    text = text.replace("    check: school_data\n", "    check: school_data\n    review: true\n", 1)
    (tmp_path / "plan.yaml").write_text(text, encoding="utf-8")
    plan = load_plan(tmp_path / "plan.yaml")
    stage = next(s for s in plan.stages if s.check == "school_data")
    assert stage.review
    settings = jobs.Settings(data_dir=demo_dir, output_dir=tmp_path / "out", store_url=f"sqlite:///{tmp_path / 's.db'}",
                             from_email="monitor@region.example")
    jobs.ingest(settings, plan, DAY)

    def judged() -> tuple[str, list[str]]:
        jobs.check_stages(settings, plan, DAY)
        row = load_results(settings.store_url, plan.id, DAY, [stage.number]).set_index("org_id").loc["S211"]
        return row["status"], list(row["missing"])

    assert judged()[0] == "complete"  # no answer by mail: the rules alone, as before
    now = dt.datetime(2020, 1, 15, 9, 0)
    with engine_for(settings.store_url).begin() as conn:  # an answer the intake accepted (its files written)
        conn.execute(intake.insert().values(
            uidvalidity=1, uid=1, message_id="<answer-1@school.example>", plan_id=plan.id, as_of=DAY,
            received_at=now, sender=SENDER, subject="Re: Напоминание", state="receipted", outcome="accepted",
            org_id="S211", updated_at=now, sent_at=now,
            result={"orgs": ["S211"], "files": [{"dataset": "first_grade_classes", "rows": 2, "status": "accepted"}]}))
    status, missing = judged()
    assert status != "complete" and any(m.startswith("ожидается: проверка ответа от 15.01.2020") for m in missing)

    record_review(settings.store_url, plan.id, "S211", "<answer-1@school.example>", "есть замечания",
                  "в классе 1Б не указано число мест", "Иванова И.И.")
    status, missing = judged()
    assert status != "complete"
    assert "ответ от 15.01.2020 проверен: есть замечания — в классе 1Б не указано число мест" in missing

    jobs.compose_receipts(settings, plan, DAY)
    jobs.compose_receipts(settings, plan, DAY)  # the next intake run: the review is mailed once
    jobs.deliver(settings, plan, DAY, EmlTransport(Layout(settings.output_dir)), kinds=("receipt",))
    letters = [email.message_from_bytes(p.read_bytes(), policy=policy.default)
               for p in Layout(settings.output_dir).mail_of(plan.id, DAY).rglob("*.eml")]
    (letter,) = [m for m in letters if str(m["To"]).endswith(SENDER + ">") or str(m["To"]) == SENDER]
    body = letter.get_body(("plain",)).get_content()
    assert "проверен: есть замечания" in body and "Замечания проверяющего: в классе 1Б не указано число мест" in body
    assert letter["In-Reply-To"] == "<answer-1@school.example>"
    assert [a.get_filename() for a in letter.iter_attachments()] == ["forma_S211_2020-01-15.xlsx"]

    record_review(settings.store_url, plan.id, "S211", "<answer-1@school.example>", "принято", "", "Иванова И.И.")
    assert judged()[0] == "complete"


def test_the_campaign_page_records_a_review_and_refuses_one_without_a_comment_or_from_another_site(tmp_path,
                                                                                                   monkeypatch):
    from admission.adapter import web
    from admission.store import reviews
    from fastapi.testclient import TestClient

    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setattr(web, "store_url", lambda: url)
    monkeypatch.setattr(web, "campaign_allowed", lambda user, plan: True)
    app = web.create_app()

    class Admin:
        def get_name(self):
            return "Иванова И.И."

    app.dependency_overrides[web._user] = Admin
    client = TestClient(app)
    form = {"plan": "2020-2021", "org": "S211", "message_id": "<answer-1@school.example>"}
    answer = client.post("/review", data=form | {"state": "есть замечания", "comment": "нет протокола"},
                         follow_redirects=False)
    assert answer.status_code == 303 and "org=S211" in answer.headers["location"]
    assert client.post("/review", data=form | {"state": "отклонено", "comment": " "}).status_code == 422
    assert client.post("/review", data=form | {"state": "как-нибудь", "comment": "x"}).status_code == 422
    assert client.post("/review", data=form | {"state": "принято"},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    done = reviews(url, "2020-2021")
    assert list(zip(done["state"], done["comment"], done["reviewer"], strict=True)) == [
        ("есть замечания", "нет протокола", "Иванова И.И.")]


def test_each_answer_shows_what_it_changed_against_the_previous_version(tmp_path):
    import pandas as pd
    from admission.inputs.submissions import version_diff, write_submission
    from admission.schema import DATASETS

    keys = DATASETS["first_grade_classes"].keys

    def classes(*rows):
        return pd.DataFrame([dict(zip(keys, r, strict=True)) for r in rows], columns=keys)

    first = write_submission(tmp_path, "first_grade_classes", "S211", dt.datetime(2020, 1, 14, 9),
                             "<a1@x>", classes(("S211", "1А", 25, 20, None), ("S211", "1Б", 25, 30, None)))
    second = write_submission(tmp_path, "first_grade_classes", "S211", dt.datetime(2020, 1, 15, 9),
                              "<a2@x>", classes(("S211", "1А", 25, 20, None), ("S211", "1Б", 25, 25, None)))
    assert version_diff(first)["previous"] is None and version_diff(first)["added"] == 2
    diff = version_diff(second)
    assert (diff["added"], diff["removed"]) == (1, 1)
    assert diff["added_rows"] == [("S211", "1Б", "25", "25", "")]
    assert diff["removed_rows"] == [("S211", "1Б", "25", "30", "")]
