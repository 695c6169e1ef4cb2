"""Reading the data folder in every format the contract allows, and on broken files."""

from __future__ import annotations

import datetime as dt

from admission.inputs.reader import read_data_folder

from tests.helpers import registry, write_csv, write_xlsx

OPS_RU = ["ФИО", "Должность", "Роль", "E-mail"]


def _ops(reader_data, org):
    frame = reader_data["operators"]
    return frame[frame["org_id"] == org]


def test_csv_encodings_and_delimiters_are_all_read(tmp_path):
    registry(tmp_path)
    rows = [["S1", "Иванова Анна Петровна", "зам. директора", "главный оператор", "a@t.example"]]
    write_csv(tmp_path / "operators.csv", ["Код ОО", *OPS_RU], rows, encoding="cp1251", sep=";")
    data = read_data_folder(tmp_path)
    assert data.findings == []
    assert data["operators"].loc[0, "full_name"] == "Иванова Анна Петровна"
    for enc, sep in [("utf-8", ","), ("utf-8-sig", ";"), ("utf-8-sig", ","), ("cp1251", ",")]:
        write_csv(tmp_path / "operators.csv", ["Код ОО", *OPS_RU], rows, encoding=enc, sep=sep)
        frame = read_data_folder(tmp_path)["operators"]
        assert frame.loc[0, "position"] == "зам. директора", (enc, sep)
        assert frame.loc[0, "org_id"] == "S1"


def test_headers_in_english_or_russian_any_case_and_spacing(tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "approvals.csv", ["  org_id ", "СТАТУС", "утвердил", "Дата Утверждения"],
              [["S1", "утверждено", "Куратова", "14.01.2020"]])
    frame = read_data_folder(tmp_path)["approvals"]
    assert frame.loc[0, "status"] == "утверждено"
    assert frame.loc[0, "approved_at"] == dt.date(2020, 1, 14)


def test_xlsx_with_numbers_and_real_dates(tmp_path):
    registry(tmp_path)
    write_xlsx(tmp_path / "school_cards.xlsx",
               ["Код ОО", "Полное наименование", "ИНН", "КПП", "ОГРН", "Адрес", "Телефон", "E-mail", "Сайт",
                "Руководитель", "Дата изменения"],
               [["S1", "Школа", 1234567894, 612301001, 1026100000002, "ул. 1", "88005553535", "s@t.example",
                 "https://s.example", "Первова", dt.datetime(2020, 1, 9)]])
    frame = read_data_folder(tmp_path)["school_cards"]
    assert frame.loc[0, "inn"] == "1234567894"  # not 1234567894.0
    assert frame.loc[0, "ogrn"] == "1026100000002"
    assert frame.loc[0, "updated_at"] == dt.date(2020, 1, 9)


def test_per_school_folder_without_org_id_takes_the_file_stem(tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "operators" / "S1.csv", OPS_RU, [["Иванова А.П.", "директор", "главный оператор", "a@t.example"]],
              encoding="cp1251")
    write_xlsx(tmp_path / "operators" / "S2.xlsx", OPS_RU, [["Петров П.П.", "и.о. директора", "главный оператор",
                                                            "p@t.example"]])
    data = read_data_folder(tmp_path)
    assert sorted(data["operators"]["org_id"]) == ["S1", "S2"]
    assert set(data["operators"]["_file"]) == {"operators/S1.csv", "operators/S2.xlsx"}


def test_russian_and_iso_dates_and_yes_no_values(tmp_path):
    registry(tmp_path)
    header = ["Код МООУСО", "ФИО", "Должность", "E-mail", "Замена", "№ приказа", "Дата приказа"]
    rows = [["M1", "А", "специалист", "a@t.example", "да", "1", "10.12.2019"],
            ["M1", "Б", "специалист", "b@t.example", "No", "", "2019-12-11"],
            ["M1", "В", "специалист", "c@t.example", "1", "2", ""],
            ["M1", "Г", "специалист", "d@t.example", "0", "", ""]]
    write_csv(tmp_path / "module_staff.csv", header, rows)
    frame = read_data_folder(tmp_path)["module_staff"]
    assert frame["replaced"].tolist() == [True, False, True, False]
    assert frame["order_date"].tolist()[:2] == [dt.date(2019, 12, 10), dt.date(2019, 12, 11)]


def test_unparseable_value_names_file_row_column_and_other_rows_count(tmp_path):
    registry(tmp_path)
    header = ["Код", "Этап", "Канал", "Дата", "Темы"]
    rows = [["S1", "1", "сайт", "01.12.2019", "ЕСИА"],
            ["S1", "1", "сайт", "31.02.2020", "ЕСИА"],
            ["S2", "два", "стенд", "2019-12-05", "ЕСИА"]]
    write_csv(tmp_path / "informing.csv", header, rows)
    data = read_data_folder(tmp_path)
    messages = {(f.file, f.row, f.column) for f in data.findings}
    assert ("informing.csv", 3, "Дата") in messages
    assert ("informing.csv", 4, "Этап") in messages
    assert len(data["informing"]) == 3
    assert data["informing"].loc[0, "event_date"] == dt.date(2019, 12, 1)


def test_broken_xlsx_is_a_finding_and_other_files_still_count(tmp_path):
    registry(tmp_path)
    (tmp_path / "operators").mkdir()
    (tmp_path / "operators" / "S1.xlsx").write_bytes(b"PK\x03\x04 garbage")
    write_csv(tmp_path / "operators" / "S2.csv", OPS_RU, [["Петров П.П.", "директор", "главный оператор", "p@t.example"]])
    data = read_data_folder(tmp_path)
    broken = [f for f in data.findings if f.file == "operators/S1.xlsx"]
    assert broken and "XLSX" in broken[0].message
    assert data["operators"]["org_id"].tolist() == ["S2"]


def test_missing_required_column_names_the_column(tmp_path):
    registry(tmp_path)
    write_csv(tmp_path / "accounts.csv", ["Код ОО", "ФИО", "Статус"], [["S1", "Иванова", "выдана"]])
    data = read_data_folder(tmp_path)
    [finding] = [f for f in data.findings if f.dataset == "accounts"]
    assert finding.file == "accounts.csv" and finding.column == "Логин"
    assert "Логин" in str(finding) and "accounts.csv" in str(finding)
    assert data["accounts"].empty


def test_utf16_file_is_reported_not_misread(tmp_path):
    registry(tmp_path)
    (tmp_path / "approvals.csv").write_bytes("Код ОО;Статус\nS1;утверждено\n".encode("utf-16"))
    data = read_data_folder(tmp_path)
    assert any(f.file == "approvals.csv" and "кодировк" in f.message for f in data.findings)
    assert data["approvals"].empty


def test_row_with_too_many_fields_is_reported_with_its_line(tmp_path):
    registry(tmp_path)
    (tmp_path / "approvals.csv").write_text("Код ОО;Статус\nS1;утверждено\nS2;утверждено;лишнее;поле\n",
                                            encoding="utf-8")
    data = read_data_folder(tmp_path)
    assert [f.row for f in data.findings if f.file == "approvals.csv"] == [3]
    assert data["approvals"]["org_id"].tolist() == ["S1"]


def test_absent_dataset_means_nothing_submitted(tmp_path):
    registry(tmp_path)
    data = read_data_folder(tmp_path)
    assert data["approvals"].empty and "approvals" not in data.present
    assert "organizations" in data.present


def test_registry_kinds_normalized_and_duplicates_reported(tmp_path):
    registry(tmp_path, extra=[["D2", "доо", "Сад 2", "M1", "Х", "x@t.example", "", "", "", ""],
                              ["S1", "ОО", "Дубль", "M1", "Х", "x@t.example", "", "", "", ""]])
    data = read_data_folder(tmp_path)
    orgs = data["organizations"].set_index("org_id")
    assert orgs.loc["D2", "kind"] == "ДОУ"
    assert orgs.loc["S1", "name"] == "Школа № 1"
    assert any(f.row == 9 and f.column == "Код" for f in data.findings)


def test_demo_region_reads_with_only_the_seeded_file_defects(demo_data):
    files = sorted({f.file for f in demo_data.findings})
    assert files == ["informing/D107.xlsx", "informing/D201.csv"]
    kinds = demo_data["organizations"]["kind"].value_counts().to_dict()
    assert kinds["ОО"] >= 30 and kinds["ДОУ"] >= 20 and kinds["МООУСО"] == 3
    assert kinds["РЦОКО"] == 1 and kinds["РОИВ"] == 1


def test_the_parse_cache_parses_each_content_once_and_a_changed_byte_is_read_again(tmp_path):
    """The day's many reads of one folder parse each file once; the result is the same as without the cache."""
    from admission.inputs.parse_cache import ParseCache
    from admission.inputs.reader import read_data_folder

    data = tmp_path / "data"
    registry(data)
    header = ["ФИО", "Должность", "Роль", "E-mail"]
    for i in range(1, 4):
        write_csv(data / "operators" / f"S{i}.csv", header,
                  [[f"Иванова Анна {i}", "директор", "главный оператор", f"a{i}@t.example"]], encoding="cp1251")
    plain = read_data_folder(data)
    cache = ParseCache(tmp_path / "cache")
    first = read_data_folder(data, cache=cache)
    assert (cache.hits, cache.misses) == (0, 4)  # the registry and three operator files
    second = read_data_folder(data, cache=cache)
    assert (cache.hits, cache.misses) == (4, 4)
    for got in (first, second):
        assert got.frames["operators"].drop(columns=["_file"]).equals(plain.frames["operators"].drop(columns=["_file"]))
        assert got.findings == plain.findings
    write_csv(data / "operators" / "S2.csv", header,
              [["Петров Петр Петрович", "директор", "главный оператор", "p@t.example"]], encoding="cp1251")
    third = read_data_folder(data, cache=cache)
    assert (cache.hits, cache.misses) == (7, 5)  # only the changed file was parsed again
    assert "p@t.example" in set(third.frames["operators"]["email"])
    assert cache.prune(keep_days=0) == 5 and read_data_folder(data, cache=cache).findings == plain.findings
