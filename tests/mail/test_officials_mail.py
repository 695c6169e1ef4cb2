"""Mail read as its recipients read it (issue «Mail an official can act on»): the demo day's letters of every kind,
rendered and delivered to .eml files, checked for what an official must and must not find in them."""

from __future__ import annotations

import datetime as dt
import email
from email import policy
from pathlib import Path

import pytest

DAY = dt.date(2020, 1, 15)


@pytest.fixture(scope="module")
def day_mail(demo_dir, plan, tmp_path_factory):
    """The demo day judged, mailed to .eml files and reported; returns (settings, {kind: [(To, text)]})."""
    from admission import jobs
    from admission.layout import Layout
    from admission.mail.outbox import EmlTransport

    out = tmp_path_factory.mktemp("officials")
    settings = jobs.Settings(data_dir=demo_dir, output_dir=out, store_url=f"sqlite:///{out / 'store.db'}",
                             from_email="monitor@region.example")
    jobs.ingest(settings, plan, DAY)
    jobs.check_stages(settings, plan, DAY)
    jobs.compose_digests(settings, plan, DAY, dry_run=False)
    jobs.build_report(settings, plan, DAY, dry_run=False)
    jobs.collect_operators(settings, plan, DAY, dry_run=False)
    jobs.deliver(settings, plan, DAY, EmlTransport(Layout(out)), kinds=None)
    letters: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(Layout(out).mail_of(plan.id, DAY).rglob("*.eml")):
        msg = email.message_from_bytes(Path(path).read_bytes(), policy=policy.default)
        letters.setdefault(str(msg["X-Admission-Kind"]), []).append(
            (str(msg["To"]), msg.get_body(("plain",)).get_content()))
    return settings, letters


def _to(letters, kind: str, org_id: str) -> list[str]:
    return [text for _, text in letters.get(kind, []) if org_id in text]


def test_a_damaged_file_is_its_organizations_and_is_said_as_such_not_as_silence(day_mail, plan):
    """informing/D107.xlsx of the demo is truncated: D107's card, its notice and its МООУСО's escalation say the
    file could not be read and to send it again; nobody is told D107 sent nothing."""
    from admission.report import dashboard

    settings, letters = day_mail
    day = dashboard.Day.load(settings.store_url, plan, DAY)
    card = dashboard.organization(settings.store_url, day, "D107")
    assert [p for p in card["problems"] if p["file"] == "informing/D107.xlsx"], card["problems"]
    missing = [m for s in card["stages"] for m in s["missing"]]
    said = "файл «D107.xlsx» (сведения «Информирование») не прочитан: файл XLSX поврежден или обрезан"
    assert any(m.startswith(said) and "исправить и прислать заново" in m for m in missing), missing
    assert not any("нет ни одной записи об информировании" in m for m in missing)
    mine = [t for kind in ("reminder", "overdue") for t in _to(letters, kind, "D107")]
    assert any(said in " ".join(t.split()) for t in mine), mine
    assert not any("нет ни одной записи об информировании" in t for t in mine)
    escalations = _to(letters, "escalation", "D107")
    assert escalations and all(said in " ".join(t.split()) for t in escalations)
    for text in mine + escalations:  # D107's own item never says it sent nothing
        item = text[text.index("(D107)"):].split("\n\n")[0]
        assert "нет ни одной записи" not in item



def test_a_pasted_web_page_in_one_cell_is_a_finding_for_its_row_and_the_other_rows_count(tmp_path, plan):
    """A 1 MB «Сайт» cell of the region-wide school_cards.csv: one finding for that row and column, in Russian;
    every other school's card is read."""
    from admission.inputs.reader import read_data_folder
    from admission.schema import DATASETS

    from tests.helpers import ORG_HEADER, write_csv

    orgs = [["MIN", "РОИВ", "Министерство", "", "Тестов Т.Т.", "min@test.example", "", "", "", ""],
            ["M1", "МООУСО", "Управление", "MIN", "Главнов Г.Г.", "uo@test.example", "", "", "", ""]]
    orgs += [[f"S{i}", "ОО", f"Школа № {i}", "M1", "Директоров Д.Д.", f"s{i}@test.example", "", "7707083893", "", ""]
             for i in range(1, 6)]
    write_csv(tmp_path / "organizations.csv", ORG_HEADER, orgs)
    header = [c.ru for c in DATASETS["school_cards"].columns]
    rows = []
    for i in range(1, 6):
        row = {c.key: "" for c in DATASETS["school_cards"].columns}
        row |= {"org_id": f"S{i}", "website": f"https://s{i}.example", "inn": "7707083893"}
        rows.append([row[c.key] for c in DATASETS["school_cards"].columns])
    site = [c.key for c in DATASETS["school_cards"].columns].index("website")
    rows[2][site] = "<html><body>" + "<p>Полезная информация для родителей</p>" * 25_000 + "</body></html>"
    write_csv(tmp_path / "school_cards.csv", header, rows)
    data = read_data_folder(tmp_path)
    cards = data.frames["school_cards"]
    assert sorted(cards["org_id"]) == ["S1", "S2", "S3", "S4", "S5"]
    long = [f for f in data.findings if f.file == "school_cards.csv"]
    assert [(f.row, f.column) for f in long if "длиннее" in f.message] == [(4, "Сайт")]
    assert not [f for f in long if f.row is None], long  # the file itself was read
    assert all(f.message.isascii() is False for f in long)
