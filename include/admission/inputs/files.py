"""Reading untrusted files under limits: the data folder is filled by anyone who can drop a file in it.

What this module guarantees (contract, section 1):

* Only regular files inside the data folder are read: symlinks, FIFOs, sockets and devices are
  reported, never opened; files are opened with ``O_NOFOLLOW`` and checked again after opening.
* Before any parsing, what a file may cost is bounded (:class:`Limits`): its size; for XLSX the
  archive's unpacked size and the first sheet's real extent (rows × columns of the cells that
  hold a value), read from the sheet XML while streaming it, before the XLSX engine allocates
  its grid (python-calamine allocates rows × columns cells and aborts the process, not raises,
  when that is too much); for CSV rows, fields per row and lines per record.
* Files are parsed in forked child processes, on every core, with a memory limit (``RLIMIT_AS``):
  a native crash or an out-of-memory of the XLSX engine on one file kills that child only, and the
  file becomes a finding. CSV is parsed with the standard ``csv`` module (pure Python, its memory
  bounded by the size limit).

Everything a file does wrong comes back as :class:`Problem` (row, column position, Russian
message); the reader turns them into findings with the dataset, file and column names.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import logging
import os
import pickle
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

MB = 1 << 20


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    """What one file may cost. Defaults fit a national single-file dataset (≈300,000 rows)."""

    max_file_bytes: int = 100 * MB
    max_rows: int = 1_000_000
    max_columns: int = 100  # the widest dataset has 12 columns; room for a region's own extra columns
    max_cell_chars: int = 4000
    max_cells: int = 20_000_000  # rows × columns of an XLSX sheet: what the engine allocates
    max_unzipped_bytes: int = 1024 * MB
    max_lines_per_record: int = 30  # a CSV value spanning more lines is an unclosed quote
    header_search_rows: int = 10  # a title above the header is skipped when the header is this near
    memory_bytes: int = 2048 * MB  # per XLSX parsing process, above what it inherits

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults, or ``ADMISSION_MAX_FILE_MB`` / ``ADMISSION_READ_MEMORY_MB`` (environment, read at run time)."""
        return cls(max_file_bytes=_env_int("ADMISSION_MAX_FILE_MB", 100) * MB,
                   memory_bytes=_env_int("ADMISSION_READ_MEMORY_MB", 2048) * MB)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file. ``row`` is a spreadsheet row (header = 1); ``col`` a 0-based position."""

    message: str
    row: int | None = None
    col: int | None = None


@dataclass
class RawTable:
    """A file's cells as text, row by row, with the spreadsheet row number of each row."""

    rows: list[list[str]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def unreadable(self) -> bool:
        return not self.rows


# ---------------------------------------------------------------------------------------------
# The folder boundary


@dataclass(frozen=True)
class Entry:
    """A candidate file of a dataset; ``refusal`` is set when it must not be read."""

    path: Path
    per_org: bool
    refusal: str | None = None


_KIND = {stat.S_IFLNK: "символическая ссылка", stat.S_IFIFO: "именованный канал (FIFO)",
         stat.S_IFSOCK: "сокет", stat.S_IFCHR: "устройство", stat.S_IFBLK: "устройство"}
SUFFIXES = {".csv", ".xlsx"}


def _what(mode: int) -> str:
    return _KIND.get(stat.S_IFMT(mode), "не обычный файл")


def _refusal_for(path: Path, st: os.stat_result) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return f"{_what(st.st_mode)}, а не обычный файл: не прочитан"
    if not _utf8_name(path.name):
        return "имя файла не в кодировке UTF-8 (его нельзя сохранить и показать); переименуйте файл; не прочитан"
    return None


def _utf8_name(name: str) -> bool:
    """A name the OS gave as bytes that are not UTF-8 arrives with surrogate escapes, which no store takes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def dataset_entries(root: Path, name: str) -> list[Entry]:
    """Files of one dataset: ``<name>.csv|xlsx`` and ``<name>/**``; names compared case-insensitively.

    Nothing is followed: a symlinked file or folder is an entry with a refusal, so the folder can
    never lead outside itself. Unsupported files inside a per-organization folder are reported too
    (``.xls``, ``.xlsm``, ``.ods``...), except hidden and Office lock files.
    """
    out: list[Entry] = []
    try:
        # Order decides which of two registry rows with one code stands: the dataset's XLSX first (the
        # e-services system exports XLSX; a CSV beside it is usually a later hand-made addition), then
        # its CSV, then the per-organization folder's files by name.
        top = sorted(os.scandir(root), key=lambda e: (not e.name.casefold().endswith(".xlsx"), e.name))
    except OSError:
        return out
    for entry in top:
        low = entry.name.casefold()
        stem, dot, suffix = low.rpartition(".")
        st = entry.stat(follow_symlinks=False)
        if low == name:
            if stat.S_ISDIR(st.st_mode):
                out.extend(_walk(Path(entry.path), root))
            else:
                out.append(Entry(Path(entry.path), True, f"{_what(st.st_mode)} на месте папки «{name}»: не прочитан"))
        elif dot and stem == name:
            if f".{suffix}" in SUFFIXES:
                out.append(Entry(Path(entry.path), False, _refusal_for(Path(entry.path), st)))
            else:
                out.append(Entry(Path(entry.path), False, _unsupported(suffix)))
    return out


def _unsupported(suffix: str) -> str:
    if suffix in {"xlsm", "xltm", "xlsb"}:
        return "книги Excel с макросами и двоичные книги не принимаются: сохраните как .xlsx; файл не прочитан"
    if suffix == "xls":
        return "старый формат Excel 97–2003 (.xls) не поддерживается: сохраните как .xlsx; файл не прочитан"
    return f"формат «.{suffix}» не поддерживается (ожидается .csv или .xlsx); файл не прочитан"


def _walk(folder: Path, root: Path, depth: int = 0) -> list[Entry]:
    out: list[Entry] = []
    if depth > 8:
        return [Entry(folder, True, "слишком глубокая вложенность папок: не прочитана")]
    try:
        items = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        return [Entry(folder, True, f"папку не удалось прочитать: {exc.strerror}")]
    for entry in items:
        if entry.name.startswith(("~$", ".")):
            continue
        path = Path(entry.path)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            out.extend(_walk(path, root, depth + 1))
            continue
        suffix = path.suffix.casefold()
        if not stat.S_ISREG(st.st_mode):
            out.append(Entry(path, True, _refusal_for(path, st)))
        elif suffix in SUFFIXES:
            out.append(Entry(path, True, _refusal_for(path, st)))
        else:
            out.append(Entry(path, True, _unsupported(suffix.lstrip(".") or "без расширения")))
    return out


class Refused(Exception):
    """The file must not be parsed; the message says why, in Russian."""


def read_regular(path: Path, limits: Limits) -> bytes:
    """The bytes of a regular file, never following a link and never more than the size limit."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise Refused(f"файл не удалось открыть ({exc.strerror})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{_what(st.st_mode)}, а не обычный файл: не прочитан")
        if st.st_size > limits.max_file_bytes:
            raise Refused(f"файл слишком большой ({st.st_size / MB:.1f} МБ, допустимо не более "
                          f"{limits.max_file_bytes // MB} МБ); не прочитан")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limits.max_file_bytes + 1)
        if len(data) > limits.max_file_bytes:
            raise Refused(f"файл слишком большой (больше {limits.max_file_bytes // MB} МБ); не прочитан")
        return data
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# CSV


def _lines_list(numbers: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" и еще {len(numbers) - limit}" if len(numbers) > limit else "")


def _lines(text: str) -> list[str]:
    """Lines split as the csv module expects (\\n, \\r\\n, \\r only; not U+2028 and the like)."""
    return io.StringIO(text, newline="").readlines()


_UTF8_CYRILLIC = re.compile(rb"[\xd0\xd1][\x80-\xbf]")


def decode_csv(data: bytes) -> tuple[list[str], list[Problem]]:
    """Text lines of a CSV in UTF-8 (with or without BOM) or Windows-1251, one encoding per line when mixed."""
    problems: list[Problem] = []
    head = data[:4096]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or head.count(b"\x00") > len(head) // 8:
        raise Refused("файл в кодировке UTF-16 («Юникод»): сохраните его как CSV в UTF-8 или как XLSX; не прочитан")
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise Refused("файл в кодировке UTF-32: сохраните его как CSV в UTF-8 или как XLSX; не прочитан")
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    try:
        lines = _lines(data.decode("utf-8"))
    except UnicodeDecodeError:
        if not _UTF8_CYRILLIC.search(data):  # plain Windows-1251: nothing in it reads as UTF-8 Cyrillic
            return _lines(data.decode("cp1251", errors="replace")), problems
        lines, cp_lines, utf_lines = [], [], 0
        for n, raw in enumerate(data.splitlines(keepends=True), start=1):
            try:
                line = raw.decode("utf-8")
                utf_lines += not raw.isascii()
            except UnicodeDecodeError:
                line = raw.decode("cp1251", errors="replace")
                cp_lines.append(n)
            lines.append(line)
        if utf_lines and cp_lines:
            problems.append(Problem(f"в файле смешаны кодировки UTF-8 и Windows-1251; строки {_lines_list(cp_lines)} "
                                    "прочитаны как Windows-1251 — проверьте их и сохраните файл в одной кодировке"))
    nul = [n for n, line in enumerate(lines, start=1) if "\x00" in line]
    if nul:
        lines = [line.replace("\x00", "") for line in lines]
        for n in nul[:50]:
            problems.append(Problem("в строке есть нулевые байты (NUL): файл, вероятно, поврежден; строка не учтена",
                                    row=n))
    return lines, problems


def _pick_delimiter(lines: list[str], known: set[str], normalize) -> str:
    best, best_score = ";", (-1, -1)
    for sep in (";", ","):
        for line in lines:
            try:
                cells = next(csv.reader([line], delimiter=sep), [])
            except csv.Error:  # a line the vote cannot split says nothing about the delimiter
                continue
            score = (sum(normalize(c) in known for c in cells), len(cells))
            if score > best_score:
                best, best_score = sep, score
    return best


def parse_csv(data: bytes, limits: Limits, known: set[str], normalize) -> RawTable:
    """Records of a CSV with the line each starts on; bad records become problems, the rest is kept."""
    table = RawTable()
    try:
        lines, table.problems = decode_csv(data)
    except Refused as exc:
        table.problems.append(Problem(str(exc)))
        return table
    if not any(line.strip() for line in lines):
        table.problems.append(Problem("файл пуст"))
        return table
    # Before anything splits a line: a cell of a pasted web page (1 MB) is a value too long for its column
    # (a finding for its row, reader._normalize), not a file the csv module refuses as a whole.
    csv.field_size_limit(max(limits.max_file_bytes, 131072))
    sep = _pick_delimiter([ln for ln in lines[: limits.header_search_rows] if ln.strip()], known, normalize)
    reader = csv.reader(iter(lines), delimiter=sep)
    if not any('"' in line for line in lines):  # no quoting: every record is one line
        records = list(reader)
        widest = max(map(len, records), default=0)
        if len(records) <= limits.max_rows and widest <= limits.max_columns:
            table.rows, table.numbers = records, list(range(1, len(records) + 1))
            return table
        reader = iter(records)  # the careful loop below reports what is over the limits
        return _careful(table, reader, lines, limits, quoted=False)
    return _careful(table, reader, lines, limits, quoted=True)


def _careful(table: RawTable, reader, lines: list[str], limits: Limits, quoted: bool) -> RawTable:
    """Record by record, with the line each starts on and a problem for whatever is over the limits."""
    number = 0
    while True:
        start = reader.line_num + 1 if quoted else number + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # not expected with the field limit above; kept as a finding
            table.problems.append(Problem(f"строка не разобрана ({exc}); строка не учтена", row=start))
            continue
        end = number = reader.line_num if quoted else start
        spans = end - start + 1
        if spans > 1 and (spans > limits.max_lines_per_record or (end >= len(lines) and _odd_quotes(lines, start, end))):
            table.problems.append(Problem(
                f"незакрытая кавычка: значение, начатое в строке {start}, не закрыто до строки {end}; "
                f"строки {start}–{end} не прочитаны (всего строк: {spans})", row=start))
            continue
        if len(table.rows) >= limits.max_rows:
            table.problems.append(Problem(f"в файле больше {limits.max_rows} строк; строки начиная с {start} "
                                          "не прочитаны", row=start))
            break
        if len(record) > limits.max_columns:
            table.problems.append(Problem(f"в строке {len(record)} полей — больше допустимых {limits.max_columns}; "
                                          "строка не учтена", row=start))
            if not table.rows:
                break  # the header itself: nothing can be read
            continue
        table.rows.append(record)
        table.numbers.append(start)
    return table


def _odd_quotes(lines: list[str], start: int, end: int) -> bool:
    return sum(line.count('"') for line in lines[start - 1:end]) % 2 == 1


# ---------------------------------------------------------------------------------------------
# XLSX: checked while streaming the sheet XML, parsed by python-calamine in a limited child process

_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_CELL_REF = re.compile(r"([A-Z]{1,3})(\d{1,7})")


def _col_number(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def _signature_refusal(data: bytes) -> str | None:
    if data.startswith(b"PK\x03\x04"):
        return None
    if not data.strip():
        return "файл пуст"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return ("это не XLSX, а старый формат Excel 97–2003 (.xls) или зашифрованная книга под именем .xlsx: "
                "откройте файл в Excel и сохраните как «Книга Excel (.xlsx)» без пароля; не прочитан")
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<table", b"<meta", b"<head")):
        return ("это не XLSX, а веб-страница (HTML или XML), сохраненная с расширением .xlsx: "
                "откройте файл в Excel и сохраните как «Книга Excel (.xlsx)»; не прочитан")
    if data.startswith(b"PK"):
        return "файл XLSX поврежден (архив неполный или обрезан); не прочитан"
    return "это не файл XLSX (возможно, другой формат с расширением .xlsx); не прочитан"


def _first_sheet_name(zf: zipfile.ZipFile, index: int = 0) -> str | None:
    """The part name of the workbook's sheet ``index`` (the first, for the data folder's files)."""
    import xml.etree.ElementTree as ET

    def small(name: str) -> bytes:
        info = zf.getinfo(name)
        if info.file_size > 16 * MB:
            raise Refused("служебная часть книги слишком велика; файл не прочитан")
        data = zf.read(name)
        if b"<!DOCTYPE" in data:
            raise Refused("книга содержит объявление DOCTYPE (недопустимо в XLSX); файл не прочитан")
        return data

    names = set(zf.namelist())
    if "xl/workbook.xml" not in names:
        return None
    book = ET.fromstring(small("xl/workbook.xml"))
    sheets = list(book.iter(f"{_NS_MAIN}sheet"))
    sheet = sheets[index] if index < len(sheets) else None
    if sheet is None:
        return None
    rid = next((v for k, v in sheet.attrib.items() if k.endswith("}id")), None)
    target = None
    if rid and "xl/_rels/workbook.xml.rels" in names:
        for rel in ET.fromstring(small("xl/_rels/workbook.xml.rels")):
            if rel.get("Id") == rid:
                target = rel.get("Target", "")
    if not target:
        fallback = f"xl/worksheets/sheet{index + 1}.xml"
        return fallback if fallback in names else None
    target = target.lstrip("/")
    return target if target.startswith("xl/") else f"xl/{target}"


def scan_sheet(zf: zipfile.ZipFile, name: str, limits: Limits) -> tuple[int, int, str | None]:
    """(last row, last column) of the cells holding a value, and the declared dimension; streamed."""
    import xml.etree.ElementTree as ET

    parser = ET.XMLPullParser(events=("start", "end"))
    declared = None
    max_row = max_col = 0
    row_no = 0
    col_no = 0
    unpacked = 0
    with zf.open(name) as fh:
        while chunk := fh.read(1 * MB):
            unpacked += len(chunk)
            if unpacked > limits.max_unzipped_bytes:
                raise Refused(f"лист книги после распаковки больше {limits.max_unzipped_bytes // MB} МБ "
                              "(возможна «zip-бомба»); файл не прочитан")
            if unpacked == len(chunk) and b"<!DOCTYPE" in chunk:
                raise Refused("лист книги содержит объявление DOCTYPE (недопустимо в XLSX); файл не прочитан")
            parser.feed(chunk)
            for event, elem in parser.read_events():
                tag = elem.tag
                if event == "start":
                    if tag == f"{_NS_MAIN}row":
                        r = elem.get("r")
                        row_no = int(r) if r and r.isdigit() else row_no + 1
                        col_no = 0
                    elif tag == f"{_NS_MAIN}c":
                        m = _CELL_REF.fullmatch(elem.get("r") or "")
                        col_no = _col_number(m.group(1)) if m else col_no + 1
                    elif tag == f"{_NS_MAIN}dimension":
                        declared = elem.get("ref")
                    continue
                if tag == f"{_NS_MAIN}c":
                    if len(elem):  # a value (<v>, <is>, <f>); a styled empty cell holds none
                        max_row = max(max_row, row_no)
                        max_col = max(max_col, col_no)
                    elem.clear()
                elif tag == f"{_NS_MAIN}row":
                    elem.clear()
                    if row_no > limits.max_rows or max_col > limits.max_columns:
                        return row_no, max_col, declared
    return max_row, max_col, declared


def _declared_size(ref: str | None) -> tuple[int, int] | None:
    if not ref:
        return None
    last = ref.split(":")[-1].replace("$", "")
    m = _CELL_REF.fullmatch(last)
    return (int(m.group(2)), _col_number(m.group(1))) if m else None


def _text(value: object) -> str:
    """A cell as the text a person typed: whole numbers without ``.0``, dates ISO, booleans да/нет."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("\x00", "")  # Excel's _x0000_ escape: a NUL no database column takes
    if isinstance(value, bool):
        return "да" if value else "нет"
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def sheet_titles(data: bytes) -> list[str]:
    """The titles of a workbook's sheets, in order (the same guards as the parse: no DOCTYPE, small parts);
    [] for what is not a readable workbook."""
    import xml.etree.ElementTree as ET

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        info = zf.getinfo("xl/workbook.xml")
        if info.file_size > 16 * MB:
            return []
        xml = zf.read(info)
        if b"<!DOCTYPE" in xml:
            return []
        return [s.get("name", "") for s in ET.fromstring(xml).iter(f"{_NS_MAIN}sheet")]
    except (KeyError, zipfile.BadZipFile, ValueError, OSError, ET.ParseError):
        return []


def parse_xlsx(data: bytes, limits: Limits, sheet_index: int = 0) -> RawTable:
    """One sheet of a workbook (the first, for the data folder), after its real extent has been checked.
    Runs in a child process."""
    table = RawTable()
    try:
        refusal = _signature_refusal(data)
        if refusal:
            raise Refused(refusal)
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            infos = zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
            raise Refused("файл XLSX поврежден или обрезан (архив не читается); не прочитан") from exc
        if len(infos) > 10_000:
            raise Refused("в архиве книги слишком много частей; файл не прочитан")
        if any(i.flag_bits & 0x1 for i in infos):
            raise Refused("книга зашифрована (защищена паролем): сохраните ее без пароля; файл не прочитан")
        sheet = _first_sheet_name(zf, sheet_index)
        if sheet is None or sheet not in zf.namelist():
            raise Refused("в книге нет листов (файл не является книгой Excel или поврежден); не прочитан")
        rows, cols, declared = scan_sheet(zf, sheet, limits)
        size = _declared_size(declared)
        if size and (size[0] > limits.max_rows or size[1] > limits.max_columns):
            table.problems.append(Problem(
                f"лист объявляет диапазон {declared} — больше допустимого ({limits.max_rows} строк, "
                f"{limits.max_columns} столбцов); прочитаны только заполненные ячейки"))
        if rows > limits.max_rows or cols > limits.max_columns or rows * cols > limits.max_cells:
            raise Refused(f"на {'первом ' if sheet_index == 0 else ''}листе заполнены ячейки до строки {rows} и столбца {cols} — больше допустимого "
                          f"({limits.max_rows} строк, {limits.max_columns} столбцов): вероятно, значение в далекой "
                          "ячейке; удалите лишнее; файл не прочитан")
        if rows == 0:
            others = len([n for n in zf.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml")])
            hint = " (данные должны быть на первом листе)" if others > 1 else ""
            raise Refused(f"{'первый лист' if sheet_index == 0 else 'лист'} книги пуст{hint}; файл не прочитан")
        import python_calamine

        try:
            book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
            cells = book.get_sheet_by_index(sheet_index).to_python(skip_empty_area=False)
        except Exception as exc:  # calamine's own error types for broken parts
            raise Refused(f"книгу не удалось прочитать ({type(exc).__name__}): файл поврежден; не прочитан") from exc
        for n, row in enumerate(cells, start=1):
            table.rows.append([_text(v) for v in row])
            table.numbers.append(n)
    except Refused as exc:
        table.problems.append(Problem(str(exc)))
        table.rows, table.numbers = [], []
    return table


def _limit_memory(budget: int) -> None:
    """Child initializer: at most ``budget`` bytes of address space beyond what the fork inherited.

    The child's own crash report (faulthandler, inherited from pytest or Airflow) is switched off: the
    parent turns the crash into a finding, and a stack dump of a dead parser helps nobody reading the log.
    """
    import faulthandler
    import resource

    faulthandler.disable()
    try:
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        current = 0
    limit = current + budget
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass


CRASHED = ("чтение файла аварийно прервано (не хватило памяти или файл поврежден так, что программа чтения "
           "не справилась); файл не прочитан")


@dataclass
class Job:
    """One file to parse: its bytes (already read under the limits) and how to read them."""

    data: bytes
    suffix: str  # ".csv" or ".xlsx"
    known: set[str] = field(default_factory=set)  # the dataset's headers: they steer the CSV delimiter
    normalize: object = None  # header normalizer for the CSV delimiter vote
    sheet: int = 0  # which sheet of a workbook (a returned form has one per dataset)


def parse_bytes(job: Job, limits: Limits) -> RawTable:
    """A file's content as a table; never raises: whatever is wrong is a problem of the table."""
    try:
        if job.suffix == ".xlsx":
            return parse_xlsx(job.data, limits, job.sheet)
        return parse_csv(job.data, limits, job.known, job.normalize or (lambda h: h))
    except Refused as exc:
        return RawTable(problems=[Problem(str(exc))])
    except Exception as exc:  # a bug must still cost one file only, and say so in words, not an exception's name
        # The type and the line only: an exception's message may quote a cell (personal data stays out of logs).
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        logging.getLogger(__name__).error("parsing a %s file failed: %s at %s:%s", job.suffix, type(exc).__name__,
                                          tb.tb_frame.f_code.co_filename if tb else "?", tb.tb_lineno if tb else "?")
        return RawTable(problems=[Problem("файл не удалось разобрать (внутренняя ошибка чтения; администратор "
                                          "мониторинга видит подробности в журнале задачи); не прочитан")])


def _spawn(batch: list[Job], limits: Limits) -> tuple[int, int]:
    """Fork a child that parses ``batch`` in order, writing each result to a pipe as soon as it has it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's exit handlers
        code = 0
        try:
            os.close(read_end)
            _limit_memory(limits.memory_bytes)
            with os.fdopen(write_end, "wb") as out:
                for job in batch:
                    data = pickle.dumps(parse_bytes(job, limits), protocol=pickle.HIGHEST_PROTOCOL)
                    out.write(len(data).to_bytes(8, "little") + data)
                    out.flush()
        except BaseException:
            code = 70
        os._exit(code)
    os.close(write_end)
    return pid, read_end


def _results(buffer: bytes) -> list[RawTable]:
    out, pos = [], 0
    while pos + 8 <= len(buffer):
        size = int.from_bytes(buffer[pos:pos + 8], "little")
        if pos + 8 + size > len(buffer):
            break  # cut short by the child's death
        out.append(pickle.loads(buffer[pos + 8:pos + 8 + size]))
        pos += 8 + size
    return out


def parse_isolated(jobs: list[Job], limits: Limits, workers: int | None = None) -> list[RawTable]:
    """Parse files in forked children, on every core, with a memory limit; a child that dies costs only its file.

    Plain ``os.fork`` and pipes rather than ``multiprocessing``: under Celery the task runs in a
    daemonic process, which multiprocessing forbids to have children. The children inherit the
    jobs' bytes (nothing is copied or re-read). Each child takes a share of the files and reports
    each result as it goes; when one dies, the file it was on is the culprit (a finding) and the
    files after it go to a new child. Results come back in the order of ``jobs``.
    """
    if not jobs:
        return []
    import selectors

    workers = max(1, workers or os.cpu_count() or 1)
    out: dict[int, RawTable] = {}
    queue = list(range(len(jobs)))
    while queue:
        k = min(workers, len(queue))
        batches = [queue[i::k] for i in range(k)]
        queue = []
        sel = selectors.DefaultSelector()
        running = {}
        for batch in batches:
            pid, fd = _spawn([jobs[i] for i in batch], limits)
            running[fd] = (pid, batch, bytearray())
            sel.register(fd, selectors.EVENT_READ)
        while running:
            for key, _ in sel.select():
                pid, batch, buffer = running[key.fd]
                chunk = os.read(key.fd, 1 << 20)
                if chunk:
                    buffer += chunk
                    continue
                sel.unregister(key.fd)
                os.close(key.fd)
                del running[key.fd]
                os.waitpid(pid, 0)
                got = _results(bytes(buffer))
                out.update(zip(batch, got, strict=False))
                if len(got) < len(batch):
                    out[batch[len(got)]] = RawTable(problems=[Problem(CRASHED)])
                    queue.extend(batch[len(got) + 1:])
        sel.close()
    return [out[i] for i in range(len(jobs))]
