"""Large invented data folders for the benchmark: `--scale region` and `--scale national`.

Same contract and the same kinds of defects as the small demo, generated
vectorized (numpy). Registry-like datasets are single files in mixed encodings
and formats (CSV in UTF-8, UTF-8 with BOM and Windows-1251, `;` and `,`,
Russian and English headers). What schools send themselves arrives as real
submissions do: every school's operator list is its own file without
`org_id` (half XLSX, half Windows-1251 CSV, Russian headers), and a share of
organizations send their informing rows as their own files too.
Deterministic for a seed. ``change`` turns a folder into the next day's: a
fraction of the per-organization files changed, the rest left byte for byte.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from admission.inputs.files import Job, Limits, parse_bytes
from admission.inputs.rules import INN_WEIGHTS
from admission.schema import DATASETS, normalize_header
from admission.tools.demo import DOMAIN, NAMES_F, NAMES_M, PATRONYMICS_F, PATRONYMICS_M, SURNAMES
from admission.xlsx import new_workbook, write_sheet

PER_ORG_INFORMING = 0.3  # the share of organizations that send their informing rows as their own file

SCALES = {
    #            regions, МООУСО, ОО,     ДОУ
    "region": (1, 45, 1500, 1700),
    "national": (85, 2300, 40000, 45000),
}


def _ids(prefix: str, n: int) -> np.ndarray:
    width = len(str(n))
    return np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), width))


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    female = rng.random(n) < 0.7
    sur = np.array(SURNAMES, dtype=object)[rng.integers(0, len(SURNAMES), n)]
    sur = np.where(female, sur + "а", sur)
    first = np.where(female, np.array(NAMES_F, dtype=object)[rng.integers(0, len(NAMES_F), n)],
                     np.array(NAMES_M, dtype=object)[rng.integers(0, len(NAMES_M), n)])
    pat = np.where(female, np.array(PATRONYMICS_F, dtype=object)[rng.integers(0, len(PATRONYMICS_F), n)],
                   np.array(PATRONYMICS_M, dtype=object)[rng.integers(0, len(PATRONYMICS_M), n)])
    return sur + " " + first + " " + pat


def _inns(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.integers(0, 10, size=(n, 9))
    check = (d @ np.array(INN_WEIGHTS)) % 11 % 10
    return np.array(["".join(map(str, row)) for row in np.column_stack([d, check])])


def _ogrns(rng: np.random.Generator, n: int) -> np.ndarray:
    body = rng.integers(10**10, 10**11, size=n, dtype=np.int64)  # "1" + 11 digits, then the check digit
    return np.char.add(np.char.add("1", body.astype(str)), ((10**11 + body) % 11 % 10).astype(str))


def _write(frame: pd.DataFrame, path: Path, dataset: str, *, russian: bool, encoding: str = "utf-8",
           sep: str = ";") -> None:
    ds = DATASETS[dataset]
    if russian:
        frame = frame.rename(columns={c.key: c.ru for c in ds.columns})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep=sep, index=False, encoding=encoding, lineterminator="\r\n")


def write_submission(frame: pd.DataFrame, folder: Path, org_id: str, dataset: str, xlsx: bool) -> Path:
    """One organization's own file, as a school saves it: Russian headers, XLSX or Windows-1251 CSV."""
    ds = DATASETS[dataset]
    ru = {c.key: c.ru for c in ds.columns}
    if not xlsx:
        path = folder / f"{org_id}.csv"
        _write(frame, path, dataset, russian=True, encoding="cp1251")
        return path
    path = folder / f"{org_id}.xlsx"
    wb = new_workbook(path)
    write_sheet(wb, "Лист1", [ru[c] for c in frame.columns], frame.astype(object).to_numpy().tolist(),
                [30] * len(frame.columns))
    wb.close()
    return path


def generate(outdir: str | Path, scale: str = "region", seed: int = 2019) -> dict[str, int]:
    n_reg, n_mo, n_oo, n_dou = SCALES[scale]
    rng = np.random.default_rng(seed)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ru = dt.date(2019, 12, 1)

    mo = _ids("M", n_mo)
    oo = _ids("S", n_oo)
    dou = _ids("D", n_dou)
    roiv = _ids("MIN", n_reg)
    rc = _ids("RC", n_reg)
    oo_parent = mo[rng.integers(0, n_mo, n_oo)]
    dou_parent = mo[rng.integers(0, n_mo, n_dou)]
    heads = _names(rng, n_mo + n_oo + n_dou + 2 * n_reg)
    inn = _inns(rng, n_oo)
    curator_missing = rng.random(n_oo) < 0.05
    orgs = pd.DataFrame({
        "org_id": np.concatenate([roiv, rc, mo, oo, dou]),
        "kind": ["РОИВ"] * n_reg + ["РЦОКО"] * n_reg + ["МООУСО"] * n_mo + ["ОО"] * n_oo + ["ДОУ"] * n_dou,
        "name": np.concatenate([np.char.add("Министерство образования № ", np.arange(1, n_reg + 1).astype(str)),
                                np.char.add("РЦОКО № ", np.arange(1, n_reg + 1).astype(str)),
                                np.char.add("Управление образования ", mo),
                                np.char.add("Школа ", oo), np.char.add("Детский сад ", dou)]),
        # Several regions in one folder: МООУСО and РЦОКО name their РОИВ (an optional use of parent_id).
        "parent_id": np.concatenate([[""] * n_reg, roiv, roiv[np.arange(n_mo) % n_reg], oo_parent, dou_parent]),
        "head_name": heads,
        "website": np.concatenate([[""] * (2 * n_reg), np.char.add("https://", np.char.add(np.char.lower(mo),
                                   "." + DOMAIN)), np.char.add("https://", np.char.add(np.char.lower(oo), "." + DOMAIN)),
                                   [""] * n_dou]),
        "inn": np.concatenate([[""] * (2 * n_reg + n_mo), inn, [""] * n_dou]),
        "curator_name": np.concatenate([[""] * (2 * n_reg + n_mo), np.where(curator_missing, "", _names(rng, n_oo)),
                                        [""] * n_dou]),
    })
    orgs["head_email"] = np.char.add(np.char.lower(orgs["org_id"].to_numpy().astype(str)), "@" + DOMAIN)
    orgs["curator_email"] = np.where(orgs["curator_name"] != "",
                                     np.char.add("cur.", orgs["head_email"].to_numpy().astype(str)), "")
    _write(orgs, out / "organizations.csv", "organizations", russian=True, encoding="utf-8-sig")

    # Stage 1-3: informing (≈3.5 rows per school and preschool).
    inf_orgs = np.concatenate([mo, oo, dou])
    k = len(inf_orgs)
    rows = []
    esia_ok = rng.random(k) > 0.1
    rows.append(pd.DataFrame({"org_id": inf_orgs[esia_ok], "stage": 1, "channel": "рассылка",
                              "event_date": [(ru + dt.timedelta(days=int(x))).strftime("%d.%m.%Y")
                                             for x in rng.integers(0, 40, int(esia_ok.sum()))],
                              "topics": "ЕСИА"}))
    site_ok = rng.random(n_mo + n_oo) > 0.08
    rows.append(pd.DataFrame({"org_id": np.concatenate([mo, oo])[site_ok], "stage": 2, "channel": "сайт",
                              "event_date": "2019-12-12", "topics": "порядок и сроки"}))
    stand_ok = rng.random(n_oo + n_dou) > 0.08
    rows.append(pd.DataFrame({"org_id": np.concatenate([oo, dou])[stand_ok], "stage": 2, "channel": "стенд",
                              "event_date": "13.12.2019", "topics": "порядок и сроки"}))
    meet = rng.random(n_dou)
    rows.append(pd.DataFrame({"org_id": dou[meet > 0.1], "stage": 3, "channel": "собрание",
                              "event_date": "18.12.2019",
                              "protocol_no": np.where(meet[meet > 0.1] > 0.15, "1/2019", ""),
                              "topics": np.where(meet[meet > 0.1] > 0.2, "порядок и сроки; возраст; ЕСИА",
                                                 "порядок и сроки; ЕСИА")}))
    extra = rng.integers(0, k, int(k * 0.75))
    rows.append(pd.DataFrame({"org_id": inf_orgs[extra], "stage": 1, "channel": "сайт",
                              "event_date": [(ru + dt.timedelta(days=int(x))).strftime("%d.%m.%Y")
                                             for x in rng.integers(0, 200, len(extra))],
                              "topics": "порядок и сроки; ЕСИА"}))
    informing = pd.concat(rows, ignore_index=True)
    informing.loc[rng.integers(0, len(informing), 20), "event_date"] = "31.02.2020"  # unparseable dates
    for c in ("protocol_no", "attendees", "url"):
        if c not in informing:
            informing[c] = ""
    informing = informing[DATASETS["informing"].keys]
    own = informing["org_id"].isin(inf_orgs[rng.random(k) < PER_ORG_INFORMING])
    _write(informing[~own], out / "informing.csv", "informing", russian=True, encoding="cp1251")
    for org_id, part in informing[own].groupby("org_id", sort=True):
        _write(part, out / "informing" / f"{org_id}.csv", "informing", russian=True, encoding="utf-8-sig")

    # Stage 4: module staff, 2 per МООУСО; 3% replaced without an order.
    ms_org = np.repeat(mo, 2)
    replaced = rng.random(len(ms_org)) < 0.1
    no_order = replaced & (rng.random(len(ms_org)) < 0.3)
    staff = pd.DataFrame({"org_id": ms_org, "full_name": _names(rng, len(ms_org)), "position": "главный специалист",
                          "email": np.char.add(np.char.add("staff", np.arange(len(ms_org)).astype(str)), "@" + DOMAIN),
                          "replaced": np.where(replaced, "да", "нет"),
                          "order_no": np.where(replaced & ~no_order, "12-о", ""),
                          "order_date": np.where(replaced & ~no_order, "10.12.2019", "")})
    _write(staff, out / "module_staff.csv", "module_staff", russian=False, sep=",")

    # Stage 5-6: operators (≈3.75 per school) and accounts.
    per = rng.integers(2, 7, n_oo)
    op_org = np.repeat(oo, per)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    is_chief = np.zeros(len(op_org), dtype=bool)
    is_chief[first] = True
    positions = np.array(["зам. директора по УВР", "заместитель директора", "и.о. директора", "директор"], dtype=object)
    pos = np.where(is_chief, positions[rng.integers(0, 4, len(op_org))], "учитель")
    pos[first[rng.random(n_oo) < 0.05]] = "учитель начальных классов"
    names = _names(rng, len(op_org))
    emails = np.char.add(np.char.add("op", np.arange(len(op_org)).astype(str)), "@" + DOMAIN).astype(object)
    bad_mail = rng.random(len(op_org)) < 0.01
    emails[bad_mail] = np.char.replace(emails[bad_mail].astype(str), "@", "@@")
    ops = pd.DataFrame({"org_id": op_org, "full_name": names, "position": pos,
                        "role": np.where(is_chief, "главный оператор", "оператор"), "email": emails,
                        "phone": "", "order_no": "1-од", "order_date": "11.12.2019"})
    missing_list = np.isin(op_org, oo[rng.random(n_oo) < 0.04])
    ops = ops[~missing_list]
    # Every school sends its own list, without org_id (the file name is the code): half as workbooks.
    as_xlsx = set(oo[rng.random(n_oo) < 0.5])
    for org_id, part in ops.groupby("org_id", sort=True):
        write_submission(part.drop(columns="org_id"), out / "operators", org_id, "operators", org_id in as_xlsx)
    status = np.where(rng.random(len(ops)) < 0.06, "запрошена", "выдана")
    acc = pd.DataFrame({"org_id": ops["org_id"].to_numpy(), "full_name": ops["full_name"].to_numpy(),
                        "login": np.char.add("u", np.arange(len(ops)).astype(str)), "status": status,
                        "issued_at": np.where(status == "выдана", "20.12.2019", "")})
    _write(acc, out / "accounts.csv", "accounts", russian=True)

    # Stage 7: cards and first classes (≈1.5 per school).
    has_card = rng.random(n_oo) > 0.03
    cards = pd.DataFrame({"org_id": oo, "full_name": np.char.add("Школа ", oo), "short_name": "",
                          "inn": inn, "kpp": "612301001", "ogrn": _ogrns(rng, n_oo), "address": "ул. Школьная, 1",
                          "phone": "8 (800) 555-35-35", "email": np.char.add(np.char.lower(oo), "@" + DOMAIN),
                          "website": np.char.add("https://", np.char.add(np.char.lower(oo), "." + DOMAIN)),
                          "head_name": heads[2 * n_reg + n_mo: 2 * n_reg + n_mo + n_oo], "updated_at": "09.01.2020"})
    bad_inn = rng.random(n_oo) < 0.02
    cards.loc[bad_inn, "inn"] = [s[:-1] + str((int(s[-1]) + 1) % 10) for s in cards.loc[bad_inn, "inn"]]
    cards.loc[rng.random(n_oo) < 0.02, "phone"] = ""
    _write(cards[has_card], out / "school_cards.csv", "school_cards", russian=True, encoding="cp1251")
    n_cls = rng.choice([0, 1, 2, 3], size=n_oo, p=[0.03, 0.5, 0.4, 0.07])
    cls_org = np.repeat(oo, n_cls)
    cap = rng.integers(20, 31, len(cls_org))
    vac = np.minimum(cap, rng.integers(0, 31, len(cls_org)) + np.where(rng.random(len(cls_org)) < 0.01, 40, 0))
    vac = np.where(rng.random(len(cls_org)) < 0.01, cap + 5, vac)
    classes = pd.DataFrame({"org_id": cls_org, "class_name": "1А", "capacity": cap, "vacancies": vac,
                            "entered_at": "2020-01-10"})
    _write(classes, out / "first_grade_classes.csv", "first_grade_classes", russian=False, sep=",",
           encoding="utf-8-sig")

    # Stage 8: approvals.
    st = rng.random(n_oo)
    appr = pd.DataFrame({"org_id": oo, "status": np.where(st < 0.05, "на доработке", "утверждено"),
                         "approved_by": "", "approved_at": "14.01.2020"})[st > 0.03]
    _write(appr, out / "approvals.csv", "approvals", russian=True)
    return {"РОИВ": n_reg, "РЦОКО": n_reg, "МООУСО": n_mo, "ОО": n_oo, "ДОУ": n_dou, "operators": len(ops),
            "first_grade_classes": len(classes), "informing": len(informing)}


def change(folder: str | Path, fraction: float, seed: int) -> list[str]:
    """The next day's folder: ``fraction`` of the per-organization files changed in place (an operator
    added to a list, an event added to informing), chosen by ``seed``; every other file keeps its bytes.
    Returns the changed files, relative to the folder."""
    root = Path(folder)
    files = sorted(p for d in ("operators", "informing") if (root / d).is_dir() for p in (root / d).iterdir()
                   if p.suffix in (".csv", ".xlsx"))
    rng = np.random.default_rng(seed)
    picked = [files[i] for i in sorted(rng.choice(len(files), size=round(len(files) * fraction), replace=False))]
    for path in picked:
        dataset = path.parent.name
        part = _read_one(path, dataset)
        if dataset == "operators":
            n = int(rng.integers(10**6, 10**7))
            added = {"full_name": _names(rng, 1)[0], "position": "учитель", "role": "оператор",
                     "email": f"new{n}@{DOMAIN}", "phone": "", "order_no": "2-од", "order_date": "16.12.2019"}
        else:
            added = {"org_id": path.stem, "stage": "1", "channel": "рассылка", "event_date": "16.12.2019",
                     "protocol_no": "", "attendees": "", "url": "", "topics": "ЕСИА"}
        part = pd.concat([part, pd.DataFrame([{c: added.get(c, "") for c in part.columns}])], ignore_index=True)
        path.unlink()
        if dataset == "operators":
            write_submission(part, path.parent, path.stem, dataset, path.suffix == ".xlsx")
        else:
            _write(part, path, dataset, russian=True, encoding="utf-8-sig")
    return [p.relative_to(root).as_posix() for p in picked]


def _read_one(path: Path, dataset: str) -> pd.DataFrame:
    """One generated file back as text columns by key (what ``change`` rewrites)."""

    ds = DATASETS[dataset]
    table = parse_bytes(Job(path.read_bytes(), path.suffix, set(ds.header_map()), normalize_header), Limits())
    keys = {normalize_header(c.ru): c.key for c in ds.columns}
    header = [keys[normalize_header(h)] for h in table.rows[0]]
    return pd.DataFrame(table.rows[1:], columns=header)
