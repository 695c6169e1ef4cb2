"""A deterministic data folder for an invented region («Заречная область»).

Everything here is made up: names are combined from common word lists,
addresses use the reserved ``.example`` domain, ИНН/ОГРН are generated with
valid check digits. Formats are deliberately mixed (CSV in UTF-8, UTF-8 with
BOM and Windows-1251, ``;`` and ``,``, XLSX, Russian and English headers,
per-school folders with and without ``org_id``), and defects are seeded so
that every stage has complete and lagging organizations.

Seeded defects, by school/preschool number within its МООУСО (1-based):
  stage 1: ДОУ 7 and ОО 10 hold one ЕСИА event on 2019-12-03 only, ОО 12 none;
  stage 2: ОО 4 has no stand, ОО 9 no website row, ДОУ 5 nothing; МООУСО 3 no website row; the official
           sites are served on loopback by admission.tools.demo_sites (what each holds: see there);
  stage 3: ДОУ 2 meeting without protocol, ДОУ 6 lacks the topic «возраст», ДОУ 8 no meeting
           (ДОУ 7 of МООУСО 1 ships a broken XLSX);
  stage 4: МООУСО 3 replaced staff without an order;
  stage 5: ОО 3 chief operator is a teacher, ОО 5 sent no list, ОО 8 bad e-mail, ОО 11 a person twice;
  stage 6: ОО 4 a new operator without any account, ОО 6 one account only requested, ОО 7 a stale
           account, ОО 5 (no list);
  stage 7: ОО 2 bad ИНН check digit, ОО 6 no phone and a site without http, ОО 9 no first class,
           ОО 10 more vacancies than places, ОО 12 no card;
  stage 8: ОО 2 «на доработке», ОО 7 (no curator: mail falls back to the МООУСО head), 9 and 12 not reviewed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import shutil
from pathlib import Path

from admission.schema import DATASETS
from admission.tools.demo_sites import sites_url

REGION = "Заречная область"
DOMAIN = "zarechye.example"
SURNAMES = ["Белов", "Воронов", "Голубев", "Журавлев", "Зайцев", "Комаров", "Лебедев", "Медведев",
            "Орлов", "Павлинов", "Соколов", "Сорокин", "Стрижов", "Чайкин", "Щеглов", "Ястребов"]
NAMES_M = ["Алексей", "Борис", "Виктор", "Глеб", "Денис", "Егор", "Илья", "Кирилл", "Олег", "Роман"]
NAMES_F = ["Анна", "Вера", "Галина", "Дарья", "Елена", "Ирина", "Мария", "Наталья", "Ольга", "Татьяна"]
PATRONYMICS_M = ["Андреевич", "Борисович", "Викторович", "Иванович", "Петрович", "Сергеевич"]
PATRONYMICS_F = ["Андреевна", "Борисовна", "Викторовна", "Ивановна", "Петровна", "Сергеевна"]
DISTRICTS = [("Заречный район", "zarechny"), ("Озерный район", "ozerny"), ("город Светлогорск", "svetlogorsk")]
TRANSLIT = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                    ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r",
                     "s", "t", "u", "f", "h", "ts", "ch", "sh", "sch", "", "y", "", "e", "yu", "ya"], strict=True))


def _translit(text: str) -> str:
    return "".join(TRANSLIT.get(ch, ch) for ch in text.lower())


class _People:
    """Invented people; each name is used once in the region."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def person(self) -> tuple[str, str]:
        while True:
            female = self.rng.random() < 0.7
            surname = self.rng.choice(SURNAMES) + ("а" if female else "")
            first = self.rng.choice(NAMES_F if female else NAMES_M)
            patronymic = self.rng.choice(PATRONYMICS_F if female else PATRONYMICS_M)
            full = f"{surname} {first} {patronymic}"
            if full not in self.used:
                self.used.add(full)
                login = f"{_translit(surname)}.{_translit(first[0])}{_translit(patronymic[0])}{len(self.used)}"
                return full, login


def _inn(rng: random.Random) -> str:
    digits = [rng.randint(0, 9) for _ in range(9)]
    weights = [2, 4, 10, 3, 5, 9, 4, 6, 8]
    check = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11 % 10
    return "".join(map(str, digits)) + str(check)


def _ogrn(rng: random.Random) -> str:
    body = "1" + "".join(str(rng.randint(0, 9)) for _ in range(11))
    return body + str(int(body) % 11 % 10)


def _bad_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def _ru(day: dt.date) -> str:
    return day.strftime("%d.%m.%Y")


def _write(path: Path, dataset: str, rows: list[dict], *, fmt: str = "csv", headers: str = "ru",
           encoding: str = "utf-8", sep: str = ";", keys: list[str] | None = None) -> None:
    """Write rows as a real person's file would look (chosen format, encoding, header language)."""
    ds = DATASETS[dataset]
    keys = keys or [k for k in ds.keys if any(k in r for r in rows)] or ds.keys
    names = [ds.column(k).ru if headers == "ru" else k for k in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    table = [[r.get(k, "") for k in keys] for r in rows]
    if fmt == "xlsx":
        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.active
        ws.title = ds.ru[:31]
        ws.append(names)
        for row in table:
            ws.append([v if v is not None else None for v in row])
        wb.properties.creator = "admission demo"
        wb.properties.created = dt.datetime(2019, 12, 1)
        wb.save(path)
        return
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\r\n")
    writer.writerow(names)
    for row in table:
        writer.writerow(["" if v is None else (_ru(v) if isinstance(v, dt.date) else v) for v in row])
    path.write_bytes(buf.getvalue().encode(encoding))


# How the demo region catches up over a campaign's days (``generate(progress=k)`` fixes the first 3·k): the
# defects the first day's data has, in the order schools and МООУСО fix them.
FIXES = ("d107_sent_again", "site_rows", "vacancies", "stand_rows", "approvals", "classes", "cards", "meetings",
         "operators_s5", "module_order")


def generate(outdir: str | Path, seed: int = 2019, sites: str | None = None, progress: int = 0) -> dict[str, int]:
    """Write the demo data folder; returns counts per organization kind. ``sites``: the base URL of the demo
    websites (admission.tools.demo_sites, default http://127.0.0.1:8399) that the registry gives as official sites.
    ``progress``: how many campaign days the region has had to catch up since the first (each fixes three of
    :data:`FIXES`), so that a demo of several days shows a trajectory."""
    fixed = set(FIXES[: 3 * max(progress, 0)])

    sites = (sites or sites_url()).rstrip("/")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("informing", "operators"):  # per-organization files: a day's set replaces the previous one
        shutil.rmtree(out / folder, ignore_errors=True)
    rng = random.Random(seed)
    people = _People(rng)

    orgs: list[dict] = []
    cards: list[dict] = []
    classes: list[dict] = []
    approvals: list[dict] = []
    staff: list[dict] = []
    accounts: list[dict] = []
    informing: dict[str, list[dict]] = {}
    operator_files: dict[str, tuple[list[dict], str]] = {}

    head, _ = people.person()
    orgs.append({"org_id": "MIN", "kind": "РОИВ", "name": f"Министерство образования {REGION[:-7]}ой области",
                 "head_name": head, "head_email": f"minobr@{DOMAIN}; monitoring@{DOMAIN}"})
    head, _ = people.person()
    orgs.append({"org_id": "RC", "kind": "РЦОКО", "name": "ГБУ «Региональный центр оценки качества образования»",
                 "head_name": head, "head_email": f"rcoko@{DOMAIN}"})

    def inform(org_id: str, stage: int, channel: str, day: dt.date, topics: str = "", protocol: str = "",
               attendees: int | str = "", url: str = "") -> None:
        informing.setdefault(org_id, []).append(
            {"org_id": org_id, "stage": stage, "channel": channel, "event_date": day, "protocol_no": protocol,
             "attendees": attendees, "url": url, "topics": topics})

    def esia_events(org_id: str, n: int, mode: str) -> None:
        if mode == "none":
            return
        if mode == "once":
            inform(org_id, 1, "рассылка", dt.date(2019, 12, 3), "ЕСИА")
            return
        day = dt.date(2019, 12, 2) + dt.timedelta(days=n % 5)
        while day <= dt.date(2020, 8, 31):
            inform(org_id, 1, rng.choice(["рассылка", "сайт", "собрание"]), day, "ЕСИА; порядок и сроки")
            day += dt.timedelta(days=21)

    for m, (district, slug) in enumerate(DISTRICTS, start=1):
        mid = f"M{m:02d}"
        head, _ = people.person()
        site = f"{sites}/edu-{slug}/"  # the official sites are the demo's loopback server (admission.tools.demo_sites)
        orgs.append({"org_id": mid, "kind": "МООУСО", "name": f"Управление образования ({district})",
                     "head_name": head, "head_email": f"uo-{slug}@{DOMAIN}", "website": site})
        if m != 3:
            inform(mid, 2, "сайт", dt.date(2019, 12, 9), "порядок и сроки", url=f"{site}priem")
        # Stage 4: responsible staff of the module.
        for i in range(2):
            full, _ = people.person()
            row = {"org_id": mid, "full_name": full, "position": "главный специалист", "email":
                   f"{slug}.staff{i + 1}@{DOMAIN}", "replaced": "нет"}
            if m == 2 and i == 0:
                row |= {"replaced": "да", "order_no": "145-о", "order_date": dt.date(2019, 12, 10)}
            if m == 3 and i == 1:
                row |= {"replaced": "да"}
                if "module_order" in fixed:
                    row |= {"order_no": "12-о", "order_date": dt.date(2019, 12, 12)}
            staff.append(row)
        curator, _ = people.person()
        curator_email = f"curator-{slug}@{DOMAIN}"
        for s in range(1, 13):
            sid = f"S{m}{s:02d}"
            head, _ = people.person()
            inn, ogrn = _inn(rng), _ogrn(rng)
            name = f"МБОУ «Средняя общеобразовательная школа № {s}» ({district})"
            if m == 1 and s == 1:
                name = "МБОУ «Школа <Радуга> & Ко» (Заречный район)"  # escaping is exercised by the demo
            school_site = f"https://school{s}-{slug}.{DOMAIN}"  # as the e-services card says
            orgs.append({"org_id": sid, "kind": "ОО", "name": name, "parent_id": mid, "head_name": head,
                         "head_email": f"school{s}-{slug}@{DOMAIN}", "website": f"{sites}/school{s}-{slug}/",
                         "inn": inn,
                         "curator_name": curator if s != 7 else "",
                         "curator_email": curator_email if s != 7 else ""})
            esia_events(sid, s, "none" if s == 12 else "once" if s == 10 else "regular")
            if s != 9 or "site_rows" in fixed:
                inform(sid, 2, "сайт", dt.date(2019, 12, 12), "порядок и сроки", url=f"{school_site}/priem")
            if s != 4 or "stand_rows" in fixed:
                inform(sid, 2, "стенд", dt.date(2019, 12, 13), "порядок и сроки; возраст")
            # Stage 5: operators, one file per school in mixed formats.
            ops: list[dict] = []
            chief_pos = ["зам. директора по УВР", "Заместитель директора", "и.о. директора", "директор"][s % 4]
            if s == 3:
                chief_pos = "учитель начальных классов"
            chief, _ = people.person()
            ops.append({"full_name": chief, "position": chief_pos, "role": "главный оператор",
                        "email": f"chief.s{s}.{slug}@{DOMAIN}", "phone": f"+7 900 {m}{s:02d}-00-01",
                        "order_no": f"{s}-од", "order_date": dt.date(2019, 12, 11)})
            for k in range(1 + s % 3):
                full, _ = people.person()
                ops.append({"full_name": full, "position": "учитель", "role": "оператор",
                            "email": f"op{k + 1}.s{s}.{slug}@{DOMAIN}", "phone": "",
                            "order_no": f"{s}-од", "order_date": dt.date(2019, 12, 11)})
            if s == 8:
                ops[-1]["email"] = f"op.s{s}.{slug}@@{DOMAIN}"
            if s == 11:
                ops.append(dict(ops[-1]) | {"email": f"dup.s{s}.{slug}@{DOMAIN}"})
            if s != 5 or "operators_s5" in fixed:
                fmt = "xlsx" if s % 4 == 1 else "csv"
                operator_files[sid] = (ops, fmt)
            # Stage 6: accounts issued by the regional center.
            for k, op in enumerate(ops if s != 5 else []):
                if s == 11 and k == len(ops) - 1:
                    continue  # the duplicate row is the same person
                if s == 4 and k == len(ops) - 1:
                    continue  # a new operator: the request to РЦОКО must ask for an account
                status = "запрошена" if (s == 6 and k == 1) else "выдана"
                accounts.append({"org_id": sid, "full_name": op["full_name"], "login": f"{sid.lower()}_{k + 1}",
                                 "status": status, "issued_at": dt.date(2019, 12, 20) if status == "выдана" else ""})
            if s == 7:
                gone, _ = people.person()
                accounts.append({"org_id": sid, "full_name": gone, "login": f"{sid.lower()}_old",
                                 "status": "выдана", "issued_at": dt.date(2018, 12, 20)})
            # Stage 7: the school card and first classes.
            if s != 12 or "cards" in fixed:
                card = {"org_id": sid, "full_name": name, "short_name": f"СОШ № {s}", "inn": inn,
                        "kpp": f"61{m}{s:02d}1001", "ogrn": ogrn, "address": f"{district}, ул. Школьная, д. {s}",
                        "phone": f"8 (800) 555-{m}{s:02d}", "email": f"school{s}-{slug}@{DOMAIN}",
                        "website": school_site, "head_name": head, "updated_at": dt.date(2020, 1, 9)}
                if s == 2:
                    card["inn"] = _bad_check_digit(inn)
                if s == 6:
                    card["phone"] = ""
                    card["website"] = f"school{s}-{slug}.{DOMAIN}"
                cards.append(card)
            if s != 9 or "classes" in fixed:
                for letter in "АБ"[: 1 + s % 2]:
                    cap = 25
                    vac = 30 if s == 10 and "vacancies" not in fixed else 25 - (s % 5)
                    classes.append({"org_id": sid, "class_name": f"1{letter}", "capacity": cap, "vacancies": vac,
                                    "entered_at": dt.date(2020, 1, 10).isoformat()})
            # Stage 8: approval by the МООУСО.
            if s not in (7, 9, 12) or ("approvals" in fixed and s == 7):
                approvals.append({"org_id": sid, "status": "на доработке" if s == 2 else "утверждено",
                                  "approved_by": curator, "approved_at": dt.datetime(2020, 1, 14)})
        for d in range(1, 9):
            did = f"D{m}{d:02d}"
            head, _ = people.person()
            orgs.append({"org_id": did, "kind": "ДОО" if d == 3 else "ДОУ",
                         "name": f"МБДОУ «Детский сад № {d}» ({district})", "parent_id": mid,
                         "head_name": head, "head_email": f"ds{d}-{slug}@{DOMAIN}"})
            esia_events(did, d, "once" if d == 7 else "regular")
            if d != 5 or "stand_rows" in fixed:
                inform(did, 2, "стенд", dt.date(2019, 12, 16), "порядок и сроки")
            if d == 2 and "meetings" not in fixed:
                inform(did, 3, "собрание", dt.date(2019, 12, 19), "порядок и сроки; возраст; ЕСИА", attendees=21)
            elif d == 6:
                inform(did, 3, "собрание", dt.date(2019, 12, 19), "порядок и сроки, ЕСИА", f"{d}/2019", 18)
            elif d != 8:
                inform(did, 3, "собрание", dt.date(2019, 12, 18 + d % 3), "порядок и сроки; возраст; ЕСИА",
                       f"{d}/2019", 15 + d)

    # Files, in the formats people send.
    _write(out / "organizations.xlsx", "organizations", orgs, fmt="xlsx")
    _write(out / "school_cards.csv", "school_cards", cards, encoding="cp1251", sep=";")
    _write(out / "first_grade_classes.csv", "first_grade_classes", classes, headers="en",
           encoding="utf-8-sig", sep=",")
    _write(out / "approvals.xlsx", "approvals", approvals, fmt="xlsx", headers="en")
    _write(out / "module_staff.csv", "module_staff", staff, encoding="utf-8", sep=";")
    _write(out / "accounts.csv", "accounts", accounts, encoding="utf-8", sep=",")
    op_keys = ["full_name", "position", "role", "email", "phone", "order_no", "order_date"]
    for sid, (ops, fmt) in operator_files.items():
        n = int(sid[2:])
        if fmt == "xlsx":
            _write(out / "operators" / f"{sid}.xlsx", "operators", ops, fmt="xlsx", keys=op_keys)
        elif n % 2 == 0:
            _write(out / "operators" / f"{sid}.csv", "operators", ops, encoding="cp1251", sep=";", keys=op_keys)
        else:
            rows = [r | {"org_id": sid} for r in ops]
            _write(out / "operators" / f"{sid}.csv", "operators", rows, headers="en", sep=",",
                   keys=["org_id", *op_keys])
    inf_keys = ["stage", "channel", "event_date", "protocol_no", "attendees", "url", "topics"]
    for i, (oid, rows) in enumerate(sorted(informing.items())):
        if i % 3 == 0:
            _write(out / "informing" / f"{oid}.xlsx", "informing", rows, fmt="xlsx", keys=inf_keys)
        else:
            _write(out / "informing" / f"{oid}.csv", "informing", rows, encoding="utf-8-sig", sep=";", keys=inf_keys)
    # An extension and an exemption, as a ministry grants them: a later deadline for one school's classes, and a
    # school being merged into another, which creates no first class.
    _write(out / "exemptions.xlsx", "exemptions", [
        {"org_id": "S110", "stage": 7, "kind": "продление", "until": dt.date(2020, 1, 31),
         "reason": "число мест уточняется после решения комиссии", "granted_by": "Министерство, письмо № 01-15/7"},
        {"org_id": "S312", "stage": 7, "kind": "не требуется", "until": "",
         "reason": "школа присоединяется к СОШ № 11 (реорганизация)",
         "granted_by": "Управление образования (город Светлогорск), приказ № 3-о"},
    ], fmt="xlsx")
    # Two defects of the kind people really send: a broken upload and an impossible date.
    if "d107_sent_again" not in fixed:
        (out / "informing" / "D107.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
        for stale in (out / "informing").glob("D107.csv"):
            stale.unlink()
    with (out / "informing" / "D201.csv").open("a", encoding="utf-8") as fh:
        fh.write("1;рассылка;31.02.2020;;;;ЕСИА\r\n")
    kinds: dict[str, int] = {}
    for o in orgs:
        kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
    return kinds
