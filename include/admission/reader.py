"""Read the data folder exactly as the contract (section 1) allows.

Every dataset is ``<name>.csv`` / ``<name>.xlsx`` and/or a folder ``<name>/``
of such files. Files are read as people produce them (UTF-8 with or without
BOM, Windows-1251, ``;`` or ``,``, XLSX, Russian or English headers). A file
or value that cannot be read becomes a :class:`Finding` naming the file, row
and column; everything else still counts.

Row numbers are spreadsheet rows: the header is row 1, the first data row is
row 2 (for CSV this is the line number when no value spans lines).
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .schema import DATASETS, KIND_ALIASES, ORG_KINDS, Dataset, normalize_header

META = ["_file", "_row"]
_TRUE = {"да", "yes", "1", "true", "д", "y", "истина"}
_FALSE = {"нет", "no", "0", "false", "н", "n", "ложь"}


@dataclass(frozen=True)
class Finding:
    """One problem in the data, worded in Russian for the people who fix it."""

    dataset: str
    file: str
    message: str
    row: int | None = None
    column: str | None = None
    org_id: str | None = None
    value: str | None = None

    @property
    def where(self) -> str:
        parts = [self.file]
        if self.row is not None:
            parts.append(f"строка {self.row}")
        if self.column:
            parts.append(f"столбец «{self.column}»")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DataFolder:
    """All datasets of one data folder, plus what could not be read."""

    root: Path
    frames: dict[str, pd.DataFrame]
    findings: list[Finding] = field(default_factory=list)
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def cached(self, key: object, compute, depends_on: object = None):
        """Derived data computed once per read (the bench and `make day` run all stages on one read),
        and again when ``depends_on`` is another object (e.g. another validation of the same read)."""
        hit = self.memo.get(key)
        if hit is None or hit[0] is not depends_on:
            hit = self.memo[key] = (depends_on, compute())
        return hit[1]

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]

    @property
    def present(self) -> set[str]:
        """Datasets for which at least one file exists (absent = nothing submitted yet)."""
        return {n for n, f in self.frames.items() if f.attrs.get("present")}


def empty_frame(ds: Dataset) -> pd.DataFrame:
    frame = pd.DataFrame({k: pd.Series(dtype="object") for k in ds.keys + META})
    frame.attrs["present"] = False
    return frame


def _sources(root: Path, name: str) -> list[tuple[Path, bool]]:
    """(file, is_per_org) for one dataset; names compared case-insensitively."""
    out: list[tuple[Path, bool]] = []
    if not root.is_dir():
        return out
    for entry in sorted(root.iterdir()):
        low = entry.name.casefold()
        if entry.is_file() and low in {f"{name}.csv", f"{name}.xlsx"}:
            out.append((entry, False))
        elif entry.is_dir() and low == name:
            for sub in sorted(entry.rglob("*")):
                if sub.is_file() and sub.suffix.casefold() in {".csv", ".xlsx"} and not sub.name.startswith(("~$", ".")):
                    out.append((sub, True))
    return out


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise UnicodeError("файл не в кодировке UTF-8 или Windows-1251 (похоже на UTF-16)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1251")
    except UnicodeDecodeError as exc:
        raise UnicodeError("файл не в кодировке UTF-8 или Windows-1251") from exc


def _pick_delimiter(text: str, ds: Dataset) -> str:
    first = text.split("\n", 1)[0]
    known = ds.header_map()
    best, best_score = ";", (-1, -1)
    for sep in (";", ","):
        cells = next(csv.reader([first], delimiter=sep), [])
        score = (sum(normalize_header(c) in known for c in cells), len(cells))
        if score > best_score:
            best, best_score = sep, score
    return best


def _read_csv(path: Path, ds: Dataset, rel: str, findings: list[Finding]) -> pd.DataFrame | None:
    try:
        text = _decode(path.read_bytes())
    except UnicodeError as exc:
        findings.append(Finding(ds.name, rel, f"не удалось прочитать: {exc}"))
        return None
    if not text.strip():
        findings.append(Finding(ds.name, rel, "файл пуст"))
        return None
    sep = _pick_delimiter(text, ds)
    opts = dict(sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False, header=None)
    try:
        raw = pd.read_csv(io.StringIO(text), **opts)
    except pd.errors.ParserError:
        bad: list[list[str]] = []

        def _bad(line: list[str]) -> None:
            bad.append(line)
            return None

        raw = pd.read_csv(io.StringIO(text), engine="python", on_bad_lines=_bad, **opts)
        # The python engine does not tell the line number; find them by field count.
        width = raw.shape[1]
        for lineno, cells in enumerate(csv.reader(io.StringIO(text), delimiter=sep), start=1):
            if len(cells) > width:
                findings.append(
                    Finding(ds.name, rel, f"в строке {len(cells)} полей вместо {width}; строка пропущена", row=lineno)
                )
    return raw


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return "да" if value else "нет"
    return str(value)


def _read_xlsx(path: Path, ds: Dataset, rel: str, findings: list[Finding]) -> pd.DataFrame | None:
    try:
        raw = pd.read_excel(path, header=None, dtype=object, engine="calamine")
    except Exception as exc:  # calamine raises its own types for broken archives
        findings.append(Finding(ds.name, rel, f"не удалось открыть XLSX: {type(exc).__name__}: {exc}"))
        return None
    return raw.map(_cell)


def _normalize(raw: pd.DataFrame, ds: Dataset, rel: str, stem: str | None, findings: list[Finding]) -> pd.DataFrame | None:
    """Header row -> keys, strip values, drop empty rows, add _file/_row."""
    if raw.empty:
        findings.append(Finding(ds.name, rel, "файл пуст"))
        return None
    raw = raw.astype(str)
    headers = [normalize_header(h) for h in raw.iloc[0].tolist()]
    body = raw.iloc[1:]
    known = ds.header_map()
    columns: dict[str, pd.Series] = {}
    for pos, header in enumerate(headers):
        key = known.get(header)
        if key and key not in columns:
            columns[key] = body.iloc[:, pos].str.strip()
    if "org_id" not in columns and stem is not None:
        columns["org_id"] = pd.Series(stem, index=body.index, dtype="object")
    elif "org_id" in columns and stem is not None:
        columns["org_id"] = columns["org_id"].mask(columns["org_id"] == "", stem)
    missing = [c for c in ds.required if c not in columns]
    if missing:
        names = ", ".join(f"«{ds.column(c).ru}» ({c})" for c in missing)
        findings.append(
            Finding(ds.name, rel, f"нет обязательного столбца: {names}; файл не учтен", row=1,
                    column=ds.column(missing[0]).ru)
        )
        return None
    frame = pd.DataFrame(columns, index=body.index)
    for key in ds.keys:
        if key not in frame:
            frame[key] = ""
    frame = frame[ds.keys]
    filled = frame.drop(columns=["org_id"]) if stem is not None else frame
    frame = frame[(filled != "").any(axis=1)]
    frame = frame.mask(frame == "")
    frame["_file"] = rel
    frame["_row"] = frame.index.astype(int) + 1  # header is row 1
    return frame.reset_index(drop=True)


def _parse_types(frame: pd.DataFrame, ds: Dataset, findings: list[Finding]) -> pd.DataFrame:
    for col in ds.columns:
        if col.type == "str" or col.type == "emails":
            continue
        raw = frame[col.key]
        present = raw.notna()
        if col.type == "date":
            text = raw.astype("string").str.strip()
            ru = pd.to_datetime(text.where(text.str.fullmatch(r"\d{1,2}\.\d{1,2}\.\d{4}", na=False)),
                                format="%d.%m.%Y", errors="coerce")
            iso = pd.to_datetime(text.str.slice(0, 10).where(text.str.match(r"\d{4}-\d{2}-\d{2}", na=False)),
                                 format="%Y-%m-%d", errors="coerce")
            parsed = ru.fillna(iso).dt.date.astype("object")
            hint = "ожидается ДД.ММ.ГГГГ или ГГГГ-ММ-ДД"
        elif col.type == "bool":
            low = raw.astype("string").str.strip().str.casefold()
            parsed = pd.Series(pd.NA, index=raw.index, dtype="object")
            parsed[low.isin(_TRUE).fillna(False).astype(bool)] = True
            parsed[low.isin(_FALSE).fillna(False).astype(bool)] = False
            hint = "ожидается да/нет"
        else:  # int
            num = pd.to_numeric(raw.astype("string").str.replace(r"\s", "", regex=True), errors="coerce")
            whole = num.notna() & (num % 1 == 0)
            parsed = num.where(whole).astype("Int64")
            hint = "ожидается целое число"
        bad = present & parsed.isna()
        for idx in frame.index[bad.to_numpy()]:
            findings.append(
                Finding(ds.name, frame.at[idx, "_file"], f"значение «{raw.at[idx]}» не распознано: {hint}",
                        row=int(frame.at[idx, "_row"]), column=col.ru, org_id=_org(frame, idx), value=str(raw.at[idx]))
            )
        frame[col.key] = parsed
    return frame


def _org(frame: pd.DataFrame, idx: object) -> str | None:
    value = frame.at[idx, "org_id"]
    return None if pd.isna(value) else str(value)


def read_dataset(root: Path, name: str, findings: list[Finding]) -> pd.DataFrame:
    ds = DATASETS[name]
    parts: list[pd.DataFrame] = []
    sources = _sources(root, name)
    for path, per_org in sources:
        rel = path.relative_to(root).as_posix()
        reader = _read_xlsx if path.suffix.casefold() == ".xlsx" else _read_csv
        raw = reader(path, ds, rel, findings)
        if raw is None:
            continue
        frame = _normalize(raw, ds, rel, path.stem if per_org else None, findings)
        if frame is not None and not frame.empty:
            parts.append(frame)
    frame = pd.concat(parts, ignore_index=True) if parts else empty_frame(ds)
    frame = _parse_types(frame, ds, findings)
    frame.attrs["present"] = bool(sources)
    return frame


def _clean_organizations(frame: pd.DataFrame, findings: list[Finding]) -> pd.DataFrame:
    kind = frame["kind"].astype("string").str.strip().str.upper()
    kind = kind.replace(KIND_ALIASES)
    bad = frame["kind"].notna() & ~kind.isin(ORG_KINDS).fillna(False).astype(bool)
    for idx in frame.index[bad.to_numpy()]:
        findings.append(
            Finding("organizations", frame.at[idx, "_file"],
                    f"неизвестный тип организации «{frame.at[idx, 'kind']}» (допустимо: МООУСО, ОО, ДОУ, РЦОКО, РОИВ)",
                    row=int(frame.at[idx, "_row"]), column="Тип", org_id=_org(frame, idx))
        )
    frame = frame.assign(kind=kind.astype("object").where(~bad))
    dup = frame["org_id"].notna() & frame["org_id"].duplicated(keep="first")
    for idx in frame.index[dup.to_numpy()]:
        findings.append(
            Finding("organizations", frame.at[idx, "_file"],
                    f"код «{frame.at[idx, 'org_id']}» уже встречался выше; строка не учтена",
                    row=int(frame.at[idx, "_row"]), column="Код", org_id=_org(frame, idx))
        )
    no_id = frame["org_id"].isna()
    for idx in frame.index[no_id.to_numpy()]:
        findings.append(Finding("organizations", frame.at[idx, "_file"], "не заполнен код организации; строка не учтена",
                                row=int(frame.at[idx, "_row"]), column="Код"))
    return frame[~dup & ~no_id].reset_index(drop=True)


def read_data_folder(root: str | Path, datasets: list[str] | None = None) -> DataFolder:
    """Read the named datasets (all by default); never raises for bad data, only for a missing folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist (set the Airflow Variable admission_data_dir)")
    findings: list[Finding] = []
    names = datasets or list(DATASETS)
    if "organizations" not in names:
        names = ["organizations", *names]
    frames = {name: read_dataset(root, name, findings) for name in names}
    frames["organizations"] = _clean_organizations(frames["organizations"], findings)
    if not frames["organizations"].attrs.get("present", True) or frames["organizations"].empty:
        findings.append(Finding("organizations", "organizations", "реестр участников не найден или пуст"))
    frames["organizations"].attrs["present"] = True
    return DataFolder(root, frames, findings)


def freeze_heap() -> None:
    """Move everything alive now out of the cyclic garbage collector's sight.

    Called by a task after it has read its data: the frames are millions of objects that live
    until the task ends, and every full collection would scan them again (national run: the
    stage rules 2.8 -> 2.1 s, rendering the digests 9.3 -> 7.4 s). Pair it with :func:`thaw_heap`
    when the task ends, so that a process running several tasks (`make day`) frees them.
    """
    gc.freeze()


def thaw_heap() -> None:
    gc.unfreeze()
