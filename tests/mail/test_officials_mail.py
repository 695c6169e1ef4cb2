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


# Latin words an official may meet in a letter: product names, the form's file name, a web link's parts.
ALLOWED_LATIN = {"excel", "vipnet", "data", "docs", "xlsx", "forma", "e-mail", "http", "https"}  # «E-mail»: a form column; «http://»: a site address must start so
_ADDRESSES = __import__("re").compile(r"\S+@\S+|https?://\S+|\bforma_\S+\.xlsx")
_LATIN = __import__("re").compile(r"(?<![\w.-])[A-Za-z][A-Za-z-]{1,}(?![\w.-])")


def _problems_of(text: str, data_dir: Path) -> list[str]:
    """What an official must not find in a letter."""
    found = []
    plain = _ADDRESSES.sub(" ", text)
    latin = {w.casefold() for w in _LATIN.findall(plain)} - ALLOWED_LATIN
    if latin:
        found.append(f"English words: {sorted(latin)}")
    for bad in ("nan", "None", "file://", str(data_dir), " дн.", "Здравствуйте"):
        if bad in ("nan", "None"):
            if __import__("re").search(rf"\b{bad}\b", text):
                found.append(bad)
        elif bad in text:
            found.append(bad)
    for file_name in (".csv", ".xlsx,", "строка 1", "informing/", "operators/"):
        if file_name in text and "forma_" not in text.split(file_name)[0][-40:]:
            found.append(f"a data folder file: {file_name}")
    return found


def test_every_letter_reads_as_official_correspondence(day_mail, demo_dir, plan):
    """Reminders, notices, escalations, the request to РЦОКО: an official's salutation, the sender's signature,
    no English word, no nan, no file:// and no file of the admin's data folder."""
    _, letters = day_mail
    kinds = {"reminder", "overdue", "escalation", "request"}
    assert kinds <= set(letters), set(letters)
    for kind in kinds:
        for to, text in letters[kind]:
            assert text.startswith(("Уважаемый ", "Уважаемая ")), (kind, to, text[:60])
            assert "С уважением,\nОтдел общего образования\nМинистерство образования Заречной области" in text
            assert _problems_of(text, demo_dir) == [], (kind, to)
            assert "Срок по плану: До" not in text


def test_the_report_opens_with_what_needs_attention_and_is_signed(day_mail, demo_dir):
    _, letters = day_mail
    (to, text), *_ = letters["report"]
    assert text.startswith("Уважаемый Кирилл Борисович!")
    head = text[text.index("ГЛАВНОЕ"):text.index("ЭТАПЫ ПЛАНА")]
    assert "Просрочено: 49 организаций" in head and "Больше всего просрочек: Управление образования" in head
    assert "Ближайший срок: этап 7" in head and "через 2 дня" in head
    assert "nan" not in text and "file://" not in text and " дн." not in text
    assert "срок весь период" in text  # stage 1 has no deadline: no «—» pretending to be a date
    assert text.rstrip().endswith("Телефон: +7 (900) 000-00-00")


def test_the_reports_workbook_has_no_nan_and_puts_the_overdue_first(day_mail, plan):
    from openpyxl import load_workbook

    settings, _ = day_mail
    book = load_workbook(settings.output_dir / "reports" / plan.id / DAY.isoformat() / f"report_{plan.id}_{DAY}.xlsx",
                         read_only=True)
    summary = list(book["Сводка"].iter_rows(values_only=True))
    days_left = [r[3] for r in summary[1:]]
    assert days_left[0] == "—" and all(isinstance(d, int) for d in days_left[1:]), days_left
    for stage in (5, 7):
        rows = list(book[f"Этап {stage}"].iter_rows(values_only=True))[1:]
        order = {"просрочено": 0, "отстает": 1, "выполнено": 2}
        ranks = [order[r[4]] for r in rows]
        assert ranks == sorted(ranks), stage
    assert str(book["Почта"]["A1"].value).startswith("Получено (время московское)")


def test_a_receipt_greets_the_head_by_name_and_is_signed(plan):
    from admission.mail.intake import render_receipt

    row = {"outcome": "accepted", "org_id": "S101", "message_id": "<m1@school.example>",
           "received_at": dt.datetime(2020, 1, 15, 9, 30, tzinfo=dt.UTC),
           "result": {"orgs": ["S101"], "identified_by": "form",
                      "files": [{"label": "вложение 1", "org_id": "S101", "dataset": "first_grade_classes",
                                 "rows": 21, "status": "accepted"}]}}
    msg = render_receipt(plan, DAY, row, {"S101": "Школа № 1"}, {}, "s1@school.example", "monitor@region.example",
                         "Мониторинг", recipient_name="Первова Анна Петровна")
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("Уважаемая Анна Петровна!")
    assert "Первые классы, 21 строка — принято" in text
    assert "С уважением,\nОтдел общего образования" in text


@pytest.mark.parametrize(("n", "days", "organizations", "changes"), [
    (0, "0 дней", "0 организаций", "0 изменений"), (1, "1 день", "1 организация", "1 изменение"),
    (2, "2 дня", "2 организации", "2 изменения"), (5, "5 дней", "5 организаций", "5 изменений"),
    (11, "11 дней", "11 организаций", "11 изменений"), (21, "21 день", "21 организация", "21 изменение"),
    (22, "22 дня", "22 организации", "22 изменения"), (25, "25 дней", "25 организаций", "25 изменений")])
def test_every_count_takes_the_russian_plural(n, days, organizations, changes):
    from admission.templating import environment
    from admission.wording import CHANGES, DAYS, ORGANIZATIONS, plural

    assert (plural(n, DAYS), plural(n, ORGANIZATIONS), plural(n, CHANGES)) == (days, organizations, changes)
    rendered = environment().from_string("просрочено на {{ n | plural(words.DAYS) }}").render(n=n)
    assert rendered == f"просрочено на {days}"


@pytest.mark.parametrize(("name", "greeting"), [
    ("Медведев Кирилл Борисович", "Уважаемый Кирилл Борисович!"),
    ("Павлинова Елена Андреевна", "Уважаемая Елена Андреевна!"),
    ("Ильин Петр Ильич", "Уважаемый Петр Ильич!"), ("Кузьмина Анна Ильинична", "Уважаемая Анна Ильинична!"),
    ("Мамедов Рашид Ильхам оглы", "Уважаемый Рашид Ильхам оглы!"), ("Приемная", "Уважаемый коллега!"),
    ("", "Уважаемый коллега!")])
def test_a_salutation_follows_official_custom(name, greeting):
    from admission.wording import salutation

    assert salutation(name) == greeting


def test_rcoko_is_told_only_of_accounts_a_delivered_request_asked_for_long_enough_ago(demo_dir, plan, tmp_path):
    """Stage 6 of the demo: approved operators without an account, accounts of people no longer on a list, schools
    with no approved list. Before any request, РЦОКО gets no notice; the day a request is delivered, still none (its
    answer is not due); three working days later its notice lists exactly the request's items — never a school
    without an approved list (the school's own stage 5)."""
    from admission import jobs
    from admission.layout import Layout
    from admission.mail.outbox import EmlTransport
    from admission.report import dashboard

    settings = jobs.Settings(data_dir=demo_dir, output_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'store.db'}",
                             from_email="monitor@region.example")

    def day(when: dt.date) -> list[str]:
        jobs.ingest(settings, plan, when)
        jobs.check_stages(settings, plan, when)
        jobs.compose_digests(settings, plan, when, dry_run=False)
        jobs.collect_operators(settings, plan, when, dry_run=False)
        jobs.deliver(settings, plan, when, EmlTransport(Layout(tmp_path)), kinds=None)
        texts = []
        for path in sorted(Layout(tmp_path).mail_of(plan.id, when).rglob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            if "rcoko@" in str(msg["To"]) and msg["X-Admission-Kind"] in ("reminder", "overdue"):
                texts.append(msg.get_body(("plain",)).get_content())
        return texts

    first = dt.date(2020, 1, 13)  # Monday: the request goes out this day (after the stages were judged)
    assert day(first) == []  # nothing was asked of РЦОКО before today
    assert day(dt.date(2020, 1, 14)) == []  # asked yesterday: 1 working day, its answer is not due
    (notice,) = day(dt.date(2020, 1, 16))  # three working days after the request
    flat = " ".join(notice.split())
    assert "нет выданной учетной записи: Воронов Илья Андреевич (заявка направлена 13.01.2020)" in flat
    assert "учетная запись не заблокирована" in flat and "(заявка направлена 13.01.2020)" in flat
    assert "S105" not in flat and "учетные записи выдать некому" not in flat  # no approved list: the school's
    assert "ожидается" not in flat
    # The admin still sees every item, with what it waits for.
    card = dashboard.organization(settings.store_url, dashboard.Day.load(settings.store_url, plan,
                                                                          dt.date(2020, 1, 16)), "S105")
    stage6 = next(s for s in card["stages"] if s["number"] == 6)
    assert any(m.startswith("ожидается: утвержденный список операторов (этап 5)") for m in stage6["missing"])
