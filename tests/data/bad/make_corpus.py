"""Writes the corpus of bad inputs in this folder (run it to regenerate: ``python tests/data/bad/make_corpus.py``).

Each file is laid over a good data folder (the demo region) without replacing any of its files: per-school
folders get files of organizations that are not in the registry (codes ``BAD…``), single-file datasets get a
second file beside the demo's (``organizations.csv`` beside ``organizations.xlsx``...), which the reader
merges. What cannot live in git (a symlink leading out, a FIFO, a 150 MB file) is made by the test itself:
see ``SPECIAL`` in ``tests/test_bad_inputs.py``. ``EXPECTED`` below says, per file, a word the finding
about it must contain.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPS = ["ФИО", "Должность", "Роль", "E-mail"]
GOOD_ROW = ["Иванова Анна Петровна", "директор", "главный оператор", "ivanova@bad.example"]
ATTACKER = "attacker@evil.example"

# file -> a word that the finding naming that file must contain
EXPECTED: dict[str, str] = {}


def _csv(rows: list[list[str]], sep: str = ";") -> str:
    return "".join(sep.join(r) + "\r\n" for r in rows)


def _xlsx(rows: list[list[object]]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _patch_sheet(data: bytes, fn, name: str = "xl/worksheets/sheet1.xml") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zi, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            body = zi.read(info.filename)
            zo.writestr(info, fn(body) if info.filename == name else body)
    return out.getvalue()


def put(rel: str, data: bytes | str, expect: str) -> None:
    path = HERE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    EXPECTED[rel] = expect


def main() -> None:
    for old in HERE.rglob("*"):
        if old.is_file() and old.name not in {"make_corpus.py", "README.md", "expected.txt"}:
            old.unlink()
    good = _xlsx([OPS, GOOD_ROW])
    # XLSX
    put("operators/BAD01.xlsx", _patch_sheet(good, lambda d: d.replace(
        b"</sheetData>", b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>')),
        "XFD1048576|строки 1048576")
    put("operators/BAD02.xlsx", _patch_sheet(good, lambda d: re.sub(rb'<dimension ref="[^"]+"',
                                                                   b'<dimension ref="A1:XFD1048576"', d)),
        "A1:XFD1048576")
    put("operators/BAD03.xlsx", "<!DOCTYPE html><html><body><table><tr><td>ФИО</td></tr></table></body></html>",
        "веб-страница")
    put("operators/BAD04.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + b"old excel", "97–2003")
    put("operators/BAD05.xlsx", good[: len(good) // 2], "поврежден")
    two = _xlsx([[]])
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(two))
    second = wb.create_sheet("Данные")
    for r in (OPS, GOOD_ROW):
        second.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    put("operators/BAD06.xlsx", buf.getvalue(), "первый лист")
    bomb = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as zi, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            body = zi.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                with zo.open(info.filename, "w", force_zip64=True) as fh:
                    head, _, tail = body.partition(b"<sheetData>")
                    fh.write(head + b"<sheetData>")
                    block = b" " * (1 << 20)
                    for _ in range(1100):  # 1.1 GB of spaces: a «zip bomb» of about 1 MB
                        fh.write(block)
                    fh.write(tail)
            else:
                zo.writestr(info, body)
    put("operators/BAD07.xlsx", bomb.getvalue(), "zip-бомба")
    put("operators/BAD08.xlsx", _patch_sheet(good, lambda d: d.replace(
        b"<worksheet", b'<!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><worksheet', 1)),
        "DOCTYPE")
    put("operators/BAD09.xlsx", bytes(range(256)) * 4, "не файл XLSX")
    put("operators/BAD10.xlsx", b"", "пуст")
    put("operators/BAD11.xlsx", _xlsx([["Список операторов школы BAD11"], [], OPS, GOOD_ROW]), "над заголовком")
    put("operators/BAD12.xlsx", _xlsx([OPS, ["Иванова А.П.", "директор", "главный оператор", "x" * 40000]]),
        "длиннее")
    put("operators/BAD13.xlsx", _xlsx([OPS + [f"c{i}" for i in range(300)], GOOD_ROW]), "больше допустимого")
    put("operators/BAD14.xlsm", good, "макрос")
    put("operators/BAD15.xls", good, ".xls")
    # CSV
    text = _csv([OPS, GOOD_ROW])
    put("operators/BAD20.csv", text.encode("utf-16"), "UTF-16")
    put("operators/BAD21.csv", text.encode("utf-16-le"), "UTF-16")
    put("operators/BAD22.csv", _csv([OPS]).encode("utf-8") + _csv([GOOD_ROW]).encode("cp1251")
        + _csv([["Петров П.П.", "учитель", "оператор", "p@bad.example"]]).encode("utf-8"), "смешаны кодировки")
    put("operators/BAD23.csv", _csv([OPS, ["Ивано\x00ва А.П.", "директор", "главный оператор", "a@bad.example"]]),
        "NUL")
    put("operators/BAD24.csv", _csv([OPS, ['"Иванова А.П.', "директор", "главный оператор", "a@bad.example"],
                                     GOOD_ROW, GOOD_ROW]), "незакрытая кавычка")
    put("operators/BAD25.csv", _csv([OPS, ["Иванова А.П.", "директор", "главный оператор", "y" * 200_000]]),
        "длиннее")
    put("operators/BAD26.csv", _csv([["ФИО", "Должность", "Роль", "E-mail", "E-mail"], GOOD_ROW + [ATTACKER]]),
        "повторяется")
    put("operators/BAD27.csv", _csv([["Список операторов"], ["на 01.12.2019"], OPS, GOOD_ROW]), "над заголовком")
    put("operators/BAD28.csv", _csv([OPS, GOOD_ROW + ["лишнее", "поле"]]), "полей")
    put("operators/BAD29.csv", _csv([["ФИО", "Роль"], ["Иванова А.П.", "оператор"]]), "обязательного столбца")
    put("operators/BAD30.csv", "", "пуст")
    put("operators/BAD31.csv", _csv([["Код ОО", *OPS], ["S101", "Злоумышленник З.З.", "директор", "главный оператор",
                                                        ATTACKER]]), "только ее собственные")
    put("operators/BAD32.csv", _csv([OPS, ["Иванова А.П.", "директор", "главный оператор", "директор@школа.рф"],
                                     ["Петров П.П.", "учитель", "оператор", "p@shkоla.ru"]]), "не годится")
    put("operators/" + "B" * 70 + ".csv", text, "длиннее 64")
    put("operators/BAD33.csv", _csv([OPS, ["Иванова А.П.", "директор", "главный оператор", "a@" + "b." * 1500]]),
        "e-mail")
    # Values
    inf = ["Код", "Этап", "Канал", "Дата", "Присутствовало", "Темы"]
    put("informing/BAD40.csv", _csv([inf, ["BAD40", "1", "сайт", "01.12.2019", "99999999999999999999", "ЕСИА"],
                                     ["BAD40", "1e400", "сайт", "01.12.2019", "1e400", "ЕСИА"],
                                     ["BAD40", "-1", "сайт", "01.12.2019", "-5", "ЕСИА"]]), "99999999999999999999")
    put("informing/BAD41.csv", _csv([inf, ["BAD41", "1", "сайт", "31.02.2020", "", "ЕСИА"],
                                     ["BAD41", "1", "сайт", "0020-01-01", "", "ЕСИА"],
                                     ["BAD41", "1", "сайт", "2020-13-45", "", "ЕСИА"]]), "31.02.2020")
    cards = ["Код ОО", "Полное наименование", "ИНН", "КПП", "ОГРН", "Адрес", "Телефон", "E-mail", "Сайт",
             "Руководитель"]
    put("school_cards.xlsx", _xlsx([cards, ["BAD50", "Школа", "99999999999999999999", "1e400", "-1", "ул.", "x",
                                            "a@b.ru", "http://" + "a." * 1990, "И.И."]]), "ИНН")
    put("first_grade_classes.xlsx", _xlsx([["Код ОО", "Класс", "Количество мест", "Вакантные места"],
                                           ["BAD51", "1А", -5, "99999999999999999999"],
                                           ["BAD51", "1Б", "1e400", 3]]), "Количество мест|мест")
    put("accounts.xlsx", _xlsx([["Код ОО", "ФИО", "Логин", "Статус"], [None, "Иванова А.П.", "iv", "выдана"],
                                ["BAD52", None, None, "украдена"]]), "Код ОО|код")
    put("approvals.csv", _csv([["Код ОО", "Статус", "Дата утверждения"], ["", "утверждено", "01.01.2020"],
                               ["BAD53", "почти", "99.99.9999"]]), "статус|Статус|код")
    put("module_staff.xlsx", _xlsx([["Код МООУСО", "ФИО", "Должность", "E-mail", "Замена"],
                                    ["BAD54", "Иванова А.П.", "специалист", "a@bad.example", "может быть"]]), "да/нет")
    # The registry, merged with the demo's organizations.xlsx: no row here may add someone who gets mail.
    org = ["Код", "Тип", "Наименование", "Код МООУСО", "Руководитель", "E-mail руководителя"]
    put("organizations.csv", _csv([org, ["BADK1", "", "Школа без типа", "M1", "Без Типа", ATTACKER],
                                   ["", "ОО", "Школа без кода", "M1", "Без Кода", ATTACKER],
                                   ["BADK2", "Школа", "Неизвестный тип", "M1", "Тип Неизвестный", ATTACKER],
                                   ["K" * 70, "ОО", "Длинный код", "M1", "Код Длинный", ATTACKER],
                                   ["S101", "ОО", "Двойник школы", "M1", "Двойник", ATTACKER]]), "строка не учтена")
    (HERE / "expected.txt").write_text("".join(f"{k}\t{v}\n" for k, v in sorted(EXPECTED.items())), encoding="utf-8")


if __name__ == "__main__":
    main()
