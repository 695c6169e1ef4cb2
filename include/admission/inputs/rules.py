"""Row- and column-level rules, run as Great Expectations Core suites.

Each rule is one GX expectation on one dataset plus the Russian sentence an
official reads when a row breaks it. Failures come back as a frame of
(dataset, row index, column, message) so that the organization-level rules in
:mod:`admission.checks.stages` can say which organization a bad row belongs to.

Values that need a computation GX does not have (ИНН/ОГРН check digits,
normalized enumerations) are derived as columns first, vectorized.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from admission import quiet_libraries
from admission.addresses import cell_deliverable
from admission.schema import (
    ACCOUNT_STATUSES,
    APPROVAL_STATUSES,
    CHANNELS,
    CHIEF_OPERATOR,
    DATASETS,
    EXEMPTION_KINDS,
    OPERATOR_ROLES,
    Finding,
)

# Every pattern below is unambiguous (each character can be matched one way only), so Python's
# backtracking engine runs in linear time on any text; the reader also caps every cell's length.
# A domain is labels without dots, each followed by a dot, then the last label.
_NOT_IN_ADDRESS = r"\s@;,<>()\"'"
EMAIL = rf"[^{_NOT_IN_ADDRESS}]+@(?:[^{_NOT_IN_ADDRESS}.]+\.)+[^{_NOT_IN_ADDRESS}.]{{2,}}"
EMAIL_RE = rf"^{EMAIL}$"
EMAIL_LIST_RE = rf"^{EMAIL}(?:\s*[;,]\s*{EMAIL})*\s*[;,]?$"
URL_RE = r"^https?://[^\s/$.?#][^\s/.]*(?:\.[^\s/.]+)+\.?(?:[/?#]\S*)?$"
PHONE_RE = r"^\+?[\d\s()\-]{6,20}$"
FIRST_CLASS_RE = r"^1(?:\D.*)?$"

# Positions of a chief operator: director, acting director, deputy director,
# in the spellings people really use. Applied to casefolded text with ё -> е.
CHIEF_POSITION_RE = re.compile(
    r"^(?:(?:первый\s+)?(?:заместитель|зам\.?|зам\s)\s*"
    r"|(?:и\.?\s*о\.?|врио|вр\.?\s*и\.?\s*о\.?|исполняющий\s+обязанности|временно\s+исполняющий\s+обязанности)\s*)?"
    r"(?:директора?|дир\.?)(?=$|[\s,.;(])"
)


def normalize_text(s: pd.Series) -> pd.Series:
    """Casefold, ё -> е, collapse spaces: how enumerations and names are compared.

    Computed on the distinct values only: statuses, roles and channels repeat in
    hundreds of thousands of rows.
    """
    text = s.astype("string")
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    norm = (
        pd.Series(uniques, dtype="string")
        .str.replace("ё", "е")
        .str.replace("Ё", "Е")
        .str.casefold()
        .str.replace(r"\s+", " ", regex=True)
        .str.strip()
    )
    values = np.append(norm.to_numpy(dtype=object, na_value=pd.NA), pd.NA)  # code -1 (missing) -> NA
    return pd.Series(values[codes], index=s.index, dtype="string")


def is_chief_operator(roles: pd.Series) -> pd.Series:
    """True where a row's role is «главный оператор» (compared as :func:`normalize_text` does): the one rule the
    stage check, the operator lists and the recipients all use."""
    return (normalize_text(roles) == CHIEF_OPERATOR).fillna(False).astype(bool)


def chief_position_ok(position: pd.Series) -> pd.Series:
    return normalize_text(position).str.contains(CHIEF_POSITION_RE, na=False).astype(bool)


INN_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)  # a legal entity's 10-digit ИНН: check digit = Σ dᵢwᵢ mod 11 mod 10


def _digits(s: pd.Series, n: int) -> tuple[pd.Series, np.ndarray]:
    text = s.astype("string").str.strip()
    ok = text.str.fullmatch(rf"\d{{{n}}}", na=False).astype(bool)
    padded = text.where(ok, "0" * n).fillna("0" * n)
    matrix = np.frombuffer("".join(padded.tolist()).encode("ascii"), dtype=np.uint8).reshape(-1, n) - 48
    return ok, matrix.astype(np.int64)


def inn_checksum_ok(inn: pd.Series) -> pd.Series:
    """10-digit (legal entity) ИНН check digit; NA where the format is wrong (the regex rule reports that)."""
    ok, d = _digits(inn, 10)
    if len(d) == 0:
        return pd.Series(pd.NA, index=inn.index, dtype="boolean")
    valid = (d[:, :9] @ np.array(INN_WEIGHTS)) % 11 % 10 == d[:, 9]
    return pd.Series(valid, index=inn.index, dtype="boolean").where(ok.to_numpy())


def ogrn_checksum_ok(ogrn: pd.Series) -> pd.Series:
    """13-digit ОГРН check digit: the first 12 digits mod 11, mod 10."""
    ok, d = _digits(ogrn, 13)
    if len(d) == 0:
        return pd.Series(pd.NA, index=ogrn.index, dtype="boolean")
    # 12 digits fit in int64; mod 11 folded digit by digit.
    rem = np.zeros(len(d), dtype=np.int64)
    for i in range(12):
        rem = (rem * 10 + d[:, i]) % 11
    valid = rem % 10 == d[:, 12]
    return pd.Series(valid, index=ogrn.index, dtype="boolean").where(ok.to_numpy())


EMAIL_COLUMNS = {"organizations": ("head_email", "curator_email"), "school_cards": ("email",),
                 "module_staff": ("email",), "operators": ("email",)}
UNDELIVERABLE = ("адрес «{value}» не годится для отправки писем: русские буквы до «@», смесь латиницы и "
                 "кириллицы в одной части домена или недопустимый домен")


def _deliverable(cells: pd.Series) -> pd.Series:
    """True/False per cell whose syntax is right (the regex rule reports the rest); computed per distinct value."""

    pattern = re.compile(EMAIL_LIST_RE)
    codes, uniques = pd.factorize(cells, use_na_sentinel=True)
    verdicts = [cell_deliverable(u) if pattern.match(str(u)) else None for u in uniques]
    return pd.Series([verdicts[c] if c >= 0 else None for c in codes], index=cells.index, dtype="object")


@lru_cache(maxsize=32)
def rule_columns(name: str) -> frozenset[str]:
    """The columns a dataset's expectations read."""
    cols: set[str] = set()
    for rule in (r for r in row_rules() if r.dataset == name):
        exp = rule.build()
        cols.update(c for c in (getattr(exp, a, None) for a in ("column", "column_A", "column_B")) if c)
    return frozenset(cols)


def prepare(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Normalized copies and derived columns the rules read (vectorized), and nothing else.

    Only the rule columns go to GX: it fingerprints (hashes) every column of a batch,
    which on the national data cost more than the expectations themselves.
    """
    used = rule_columns(name)
    frame = frame[[c for c in frame.columns if c in used or c in {"inn", "ogrn", "kind"}
                   or c in EMAIL_COLUMNS.get(name, ())]].copy()
    if name in {"approvals", "accounts", "operators", "informing"}:
        for col in ("status", "role", "channel"):
            if col in frame:
                frame[col] = normalize_text(frame[col]).astype("object").where(frame[col].notna())
    if name == "school_cards":
        frame["_inn_ok"] = inn_checksum_ok(frame["inn"]).astype("object")
        frame["_ogrn_ok"] = ogrn_checksum_ok(frame["ogrn"]).astype("object")
    if name == "organizations":
        inn = frame["inn"].where(frame["kind"] == "ОО")
        frame["_inn_ok"] = inn_checksum_ok(inn).astype("object")
    for col in EMAIL_COLUMNS.get(name, ()):
        frame[f"_{col}_ok"] = _deliverable(frame[col])
    frame = frame[[c for c in frame.columns if c in used]]
    for col in frame.columns:
        if frame[col].dtype == "object":
            frame[col] = frame[col].where(frame[col].notna(), None)
    return frame


@dataclass(frozen=True)
class Rule:
    dataset: str
    column: str  # the contract column the official should fix
    message: str  # Russian; {value} is replaced by the bad value
    build: Callable[[], object]  # returns a GX expectation


def row_rules(informing_stages: tuple[int, ...] | None = None) -> list[Rule]:
    """Every row rule; ``informing_stages``: the stage numbers informing rows may name (the plan's, see
    admission.registry.informing_stages), or None for any positive number."""
    import great_expectations.expectations as gxe

    rules: list[Rule] = []
    for ds in DATASETS.values():
        for key in ds.required:
            rules.append(
                Rule(ds.name, key, f"не заполнено обязательное поле «{ds.column(key).ru}»",
                     lambda k=key: gxe.ExpectColumnValuesToNotBeNull(column=k))
            )

    def regex(ds: str, col: str, pattern: str, msg: str) -> None:
        rules.append(Rule(ds, col, msg, lambda: gxe.ExpectColumnValuesToMatchRegex(column=col, regex=pattern)))

    def in_set(ds: str, col: str, values: tuple, msg: str) -> None:
        rules.append(Rule(ds, col, msg, lambda: gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(values))))

    regex("organizations", "head_email", EMAIL_LIST_RE, "некорректный e-mail руководителя «{value}»")
    regex("organizations", "curator_email", EMAIL_LIST_RE, "некорректный e-mail куратора «{value}»")
    for ds_name, cols in EMAIL_COLUMNS.items():
        for col in cols:
            rules.append(Rule(ds_name, col, UNDELIVERABLE,
                              lambda c=col: gxe.ExpectColumnValuesToBeInSet(column=f"_{c}_ok", value_set=[True])))
    regex("organizations", "website", URL_RE, "адрес сайта «{value}» должен начинаться с http:// или https://")
    regex("organizations", "inn", r"^\d{10}$", "ИНН «{value}» должен состоять из 10 цифр")
    rules.append(Rule("organizations", "inn", "ИНН «{value}»: неверное контрольное число",
                      lambda: gxe.ExpectColumnValuesToBeInSet(column="_inn_ok", value_set=[True])))

    regex("school_cards", "inn", r"^\d{10}$", "ИНН «{value}» должен состоять из 10 цифр")
    rules.append(Rule("school_cards", "inn", "ИНН «{value}»: неверное контрольное число",
                      lambda: gxe.ExpectColumnValuesToBeInSet(column="_inn_ok", value_set=[True])))
    regex("school_cards", "kpp", r"^\d{9}$", "КПП «{value}» должен состоять из 9 цифр")
    regex("school_cards", "ogrn", r"^\d{13}$", "ОГРН «{value}» должен состоять из 13 цифр")
    rules.append(Rule("school_cards", "ogrn", "ОГРН «{value}»: неверное контрольное число",
                      lambda: gxe.ExpectColumnValuesToBeInSet(column="_ogrn_ok", value_set=[True])))
    regex("school_cards", "email", EMAIL_RE, "некорректный e-mail «{value}»")
    regex("school_cards", "website", URL_RE, "адрес сайта «{value}» должен начинаться с http:// или https://")
    regex("school_cards", "phone", PHONE_RE, "некорректный телефон «{value}»")

    regex("first_grade_classes", "class_name", FIRST_CLASS_RE, "«{value}» — не первый класс (ожидается, например, 1А)")
    rules.append(Rule("first_grade_classes", "capacity", "количество мест «{value}» должно быть больше нуля",
                      lambda: gxe.ExpectColumnValuesToBeBetween(column="capacity", min_value=1)))
    rules.append(Rule("first_grade_classes", "vacancies", "вакантных мест «{value}» не может быть меньше нуля",
                      lambda: gxe.ExpectColumnValuesToBeBetween(column="vacancies", min_value=0)))
    rules.append(Rule("first_grade_classes", "vacancies", "вакантных мест больше, чем мест в классе",
                      lambda: gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                          column_A="capacity", column_B="vacancies", or_equal=True,
                          ignore_row_if="either_value_is_missing")))

    in_set("approvals", "status", APPROVAL_STATUSES, "статус «{value}» не из списка: " + ", ".join(APPROVAL_STATUSES))
    regex("module_staff", "email", EMAIL_RE, "некорректный e-mail «{value}»")
    in_set("operators", "role", OPERATOR_ROLES, "роль «{value}» не из списка: " + ", ".join(OPERATOR_ROLES))
    regex("operators", "email", EMAIL_RE, "некорректный e-mail «{value}»")
    in_set("accounts", "status", ACCOUNT_STATUSES, "статус «{value}» не из списка: " + ", ".join(ACCOUNT_STATUSES))
    if informing_stages:
        *first, last = [str(n) for n in informing_stages]
        expected = f"{', '.join(first)} или {last}" if first else last
        in_set("informing", "stage", informing_stages, "этап «{value}» — ожидается " + expected)
    else:
        rules.append(Rule("informing", "stage", "этап «{value}» — ожидается номер этапа плана",
                          lambda: gxe.ExpectColumnValuesToBeBetween(column="stage", min_value=1)))
    in_set("informing", "channel", CHANNELS, "канал «{value}» не из списка: " + ", ".join(CHANNELS))
    in_set("exemptions", "kind", EXEMPTION_KINDS, "вид «{value}» не из списка: " + ", ".join(EXEMPTION_KINDS))
    return rules


@lru_cache(maxsize=1)
def _context():
    """One ephemeral GX context per process (creating one costs more than validating a dataset)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig


    quiet_libraries()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def suite_for(name: str, rules: list[Rule] | None = None, informing_stages: tuple[int, ...] | None = None):
    """The GX suite of one dataset; each expectation remembers its rule by position (GX reorders results)."""
    import great_expectations as gx

    rules = [r for r in (rules or row_rules(informing_stages)) if r.dataset == name]
    suite = gx.ExpectationSuite(name=suite_name(name, informing_stages))
    for i, rule in enumerate(rules):
        expectation = rule.build()
        expectation.meta = {"rule": i, "column_ru": DATASETS[name].column(rule.column).ru, "message": rule.message}
        suite.add_expectation(expectation)
    return suite, rules


def suite_name(name: str, informing_stages: tuple[int, ...] | None) -> str:
    """Suites differ by the plan's informing stages only for ``informing``; GX refuses to run a validation
    whose suite was replaced under the same name, so each variant has its own."""
    if name == "informing" and informing_stages:
        return f"admission_{name}_stages_{'_'.join(map(str, informing_stages))}"
    return f"admission_{name}"


FAILURE_COLUMNS = ["dataset", "index", "org_id", "file", "row", "column", "message"]


@dataclass
class Validation:
    """Row failures of every dataset, and the GX results (kept for Data Docs)."""

    failures: pd.DataFrame
    gx_results: dict[str, object]

    def findings(self) -> list[Finding]:
        f = self.failures
        return [
            Finding(d, fl, m, row=int(r), column=c, org_id=None if pd.isna(o) else o)
            for d, fl, m, r, c, o in zip(f["dataset"], f["file"], f["message"], f["row"], f["column"], f["org_id"], strict=True)
        ]

    def bad_index(self, dataset: str) -> pd.Index:
        return pd.Index(self.failures.loc[self.failures["dataset"] == dataset, "index"].unique())


def add_validation_definition(ctx, name: str, informing_stages: tuple[int, ...] | None = None
                              ) -> tuple[object, list[Rule]]:
    """A dataset's source, asset, batch definition, suite and validation definition in a GX context.

    Validation runs through a ValidationDefinition rather than ``batch.validate``: the latter
    builds (and fingerprints) the batch twice.
    """
    import great_expectations as gx

    suite, rules = suite_for(name, informing_stages=informing_stages)
    source_name = suite.name
    try:
        source = ctx.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = ctx.data_sources.add_pandas(source_name)
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name)
    try:
        batch_def = asset.get_batch_definition("whole")
    except KeyError:
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add_or_update(suite)
    vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=source_name, data=batch_def, suite=suite))
    return vd, rules


@lru_cache(maxsize=32)
def _validation_definition(name: str, informing_stages: tuple[int, ...] | None) -> tuple[object, list[Rule]]:
    """Once per process in the ephemeral context: adding expectations to a suite whose name the
    context already stores re-serializes the suite on every expectation."""
    return add_validation_definition(_context(), name, informing_stages)


@lru_cache(maxsize=1)
def ruled_datasets() -> frozenset[str]:
    """Datasets that have row rules."""
    return frozenset(r.dataset for r in row_rules())


def validate_rows(frames: dict[str, pd.DataFrame], informing_stages: tuple[int, ...] | None = None) -> Validation:
    """Run each dataset's GX suite; map unexpected rows back to file, row and organization."""
    parts: list[pd.DataFrame] = []
    results: dict[str, object] = {}
    for name, frame in frames.items():
        if frame.empty or name not in ruled_datasets():
            continue
        vd, rules = _validation_definition(name, informing_stages if name == "informing" else None)
        data = prepare(name, frame)
        result = vd.run(
            batch_parameters={"dataframe": data}, result_format={"result_format": "COMPLETE"})
        results[name] = result
        for res in result.results:
            rule = rules[res.expectation_config.meta["rule"]]
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(f"GX rule on {name}.{rule.column} failed to run: {res.exception_info}")
            idx = (res.result or {}).get("unexpected_index_list") or []
            if not idx:
                continue
            idx = pd.Index(idx)
            values = frame.loc[idx, rule.column].astype("string").fillna("")
            parts.append(
                pd.DataFrame(
                    {
                        "dataset": name,
                        "index": idx,
                        "org_id": frame.loc[idx, "org_id"].to_numpy(),
                        "file": frame.loc[idx, "_file"].to_numpy(),
                        "row": frame.loc[idx, "_row"].astype(int).to_numpy(),
                        "column": DATASETS[name].column(rule.column).ru,
                        "message": [rule.message.replace("{value}", v) for v in values],
                    }
                )
            )
    failures = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FAILURE_COLUMNS)
    failures = failures.drop_duplicates(["dataset", "index", "column"]).reset_index(drop=True)
    return Validation(failures, results)
