"""Organization-level rules: is a stage complete for each organization, and why not.

Input: the data folder (already read) and its row problems (reader findings +
GX failures). Output: one row per concerned organization with its status
(``complete`` / ``lagging`` / ``overdue``) and the Russian list of what is
missing, which the mail quotes as is. Everything is grouped pandas; no loop
over data rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from .plan import Plan, Stage
from .reader import DataFolder, Finding
from .rules import Validation, chief_position_ok, normalize_text, validate_rows
from .schema import TOPICS

RESULT_COLUMNS = [
    "plan_id", "stage", "as_of", "org_id", "kind", "name", "parent_id",
    "status", "missing", "deadline", "days_overdue", "days_left",
]

# Datasets each check reads (organizations is always read).
CHECK_DATASETS: dict[str, list[str]] = {
    "esia_informing": ["informing"],
    "public_information": ["informing"],
    "parent_meetings": ["informing"],
    "module_staff": ["module_staff"],
    "operators": ["operators"],
    "accounts": ["operators", "accounts"],
    "school_data": ["school_cards", "first_grade_classes", "operators"],
    "approvals": ["approvals"],
}


@dataclass
class Context:
    """What a check needs: frames, row problems, the plan and the date."""

    data: DataFolder
    problems: pd.DataFrame  # dataset, file, row, column, message, org_id
    plan: Plan
    stage: Stage
    as_of: dt.date
    _messages: dict[str, pd.Series] = field(default_factory=dict)

    def frame(self, name: str) -> pd.DataFrame:
        return self.data.frames[name]

    def valid_rows(self, name: str) -> pd.DataFrame:
        """Rows with no problem at all (a broken row does not count as evidence)."""
        frame = self.frame(name)
        bad = self.problems.loc[self.problems["dataset"] == name, ["file", "row"]].drop_duplicates()
        if bad.empty or frame.empty:
            return frame
        key = pd.MultiIndex.from_frame(frame[["_file", "_row"]].astype({"_row": int}))
        bad_key = pd.MultiIndex.from_frame(bad.astype({"row": int}))
        return frame[~key.isin(bad_key)]

    def row_messages(self, name: str) -> pd.Series:
        """org_id -> list of "file, строка N, столбец «X»: message" for that dataset (computed once per stage)."""
        if name not in self._messages:
            self._messages[name] = self._row_messages(name)
        return self._messages[name]

    def _row_messages(self, name: str) -> pd.Series:
        p = self.problems[(self.problems["dataset"] == name) & self.problems["org_id"].notna()]
        if p.empty:
            return pd.Series(dtype="object")
        text = p["file"] + ", строка " + p["row"].astype(int).astype(str) + ", «" + p["column"] + "»: " + p["message"]
        return text.groupby(p["org_id"]).agg(list)


def _orgs(ctx: Context) -> pd.DataFrame:
    orgs = ctx.frame("organizations")
    return orgs[orgs["kind"].isin(ctx.stage.concerns)][["org_id", "kind", "name", "parent_id"]].reset_index(drop=True)


def _missing(orgs: pd.DataFrame, *parts: pd.Series) -> pd.Series:
    """Concatenate per-org lists of reasons (each part: org_id -> list[str])."""
    out = pd.Series([[] for _ in range(len(orgs))], index=orgs["org_id"].to_numpy(), dtype="object")
    for part in parts:
        if part is None or part.empty:
            continue
        part = part[part.index.isin(out.index)]
        out.loc[part.index] = [a + b for a, b in zip(out.loc[part.index], part, strict=True)]
    return out


def _flag(orgs: pd.DataFrame, condition: pd.Series, message: str | pd.Series) -> pd.Series:
    """org_id -> [message] where condition (aligned on orgs) holds."""
    hit = orgs["org_id"][condition.to_numpy()]
    if isinstance(message, pd.Series):
        msgs = message[condition.to_numpy()]
        return pd.Series([[m] for m in msgs], index=hit.to_numpy(), dtype="object")
    return pd.Series([[message] for _ in range(len(hit))], index=hit.to_numpy(), dtype="object")


def _has(orgs: pd.DataFrame, org_ids: pd.Series) -> pd.Series:
    return orgs["org_id"].isin(set(org_ids.dropna()))


def _fmt(day: object) -> str:
    return day.strftime("%d.%m.%Y") if isinstance(day, dt.date) else "—"


def _informing(ctx: Context, stage_no: int | None = None) -> pd.DataFrame:
    rows = ctx.valid_rows("informing")
    rows = rows[rows["event_date"].notna()]
    rows = rows[rows["event_date"].map(lambda d: d <= ctx.as_of, na_action="ignore").astype(bool)]
    if stage_no is not None:
        rows = rows[rows["stage"] == stage_no]
    return rows.assign(channel=normalize_text(rows["channel"]))


def _topics(series: pd.Series) -> pd.Series:
    """Topic cell -> set of canonical topics it names."""
    norm = normalize_text(series).fillna("")
    canon = {t.casefold(): t for t in TOPICS}
    return norm.str.split(r"\s*[;,]\s*", regex=True).map(lambda items: {canon[i] for i in items if i in canon})


def check_esia_informing(ctx: Context, orgs: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    rule = ctx.plan.stage1
    rows = _informing(ctx)
    esia = rows[_topics(rows["topics"]).map(lambda s: "ЕСИА" in s).astype(bool)]
    last = esia.groupby("org_id")["event_date"].max()
    last_date = orgs["org_id"].map(last)
    since = last_date.map(lambda d: (ctx.as_of - d).days, na_action="ignore")
    complete = since.notna() & (since.fillna(10**6) <= rule.lag_days)
    anchor = last_date.map(lambda d: max(d, ctx.plan.campaign.start), na_action="ignore").fillna(ctx.plan.campaign.start)
    days_without = anchor.map(lambda d: (ctx.as_of - d).days)
    days_overdue = (days_without - rule.overdue_days).where(~complete & (days_without > rule.overdue_days))
    reason = pd.Series(
        [
            f"нет мероприятия по информированию о регистрации в ЕСИА за последние {rule.lag_days} дней"
            + (f" (последнее — {_fmt(d)})" if isinstance(d, dt.date) else " (мероприятий не было)")
            for d in last_date
        ],
        index=orgs.index,
    )
    return complete, _missing(orgs, _flag(orgs, ~complete, reason)), days_overdue


def check_public_information(ctx: Context, orgs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    rows = _informing(ctx, 2)
    site = _has(orgs, rows.loc[rows["channel"] == "сайт", "org_id"])
    stand = _has(orgs, rows.loc[rows["channel"] == "стенд", "org_id"])
    anything = _has(orgs, rows["org_id"])
    kind = orgs["kind"]
    needs_site = kind.isin(["МООУСО", "ОО"])
    needs_stand = kind == "ОО"
    complete = (~needs_site | site) & (~needs_stand | stand) & (kind.isin(["МООУСО", "ОО"]) | anything)
    missing = _missing(
        orgs,
        _flag(orgs, needs_site & ~site, "нет сведений о размещении информации на официальном сайте (канал «сайт»)"),
        _flag(orgs, needs_stand & ~stand, "нет сведений о размещении информации на информационном стенде (канал «стенд»)"),
        _flag(orgs, (kind == "ДОУ") & ~anything, "нет ни одной записи об информировании родителей"),
        ctx.row_messages("informing"),
    )
    return complete, missing


def check_parent_meetings(ctx: Context, orgs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    rows = _informing(ctx, 3)
    meetings = rows[rows["channel"] == "собрание"]
    with_protocol = meetings[meetings["protocol_no"].notna()]
    covered = _topics(with_protocol["topics"]).groupby(with_protocol["org_id"]).agg(lambda sets: set().union(*sets))
    topics = orgs["org_id"].map(covered)
    lacking = topics.map(lambda s: [t for t in TOPICS if t not in s], na_action="ignore")
    has_protocol = _has(orgs, with_protocol["org_id"])
    has_meeting = _has(orgs, meetings["org_id"])
    complete = has_protocol & lacking.map(lambda x: not x, na_action="ignore").fillna(False).astype(bool)
    missing = _missing(
        orgs,
        _flag(orgs, ~has_meeting, "нет записи о родительском собрании (канал «собрание»)"),
        _flag(orgs, has_meeting & ~has_protocol, "у родительского собрания не указан № протокола"),
        _flag(
            orgs,
            has_protocol & ~complete,
            lacking.map(lambda t: "в протоколах собраний не отражены темы: " + ", ".join(t or []), na_action="ignore"),
        ),
        ctx.row_messages("informing"),
    )
    return complete, missing


def check_module_staff(ctx: Context, orgs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    rows = ctx.valid_rows("module_staff")
    deadline = ctx.stage.deadline
    replaced = rows[rows["replaced"] == True]  # noqa: E712 (object column of True/False/NA)
    order_ok = replaced["order_no"].notna() & replaced["order_date"].map(
        lambda d: deadline is None or d <= deadline, na_action="ignore").fillna(False).astype(bool)
    bad_orders = replaced[~order_ok]
    bad_msg = (
        bad_orders["_file"] + ", строка " + bad_orders["_row"].astype(str)
        + ": замена ответственного без приказа (№ и дата не позднее " + _fmt(deadline) + ")"
    )
    has_staff = _has(orgs, rows["org_id"])
    has_bad = _has(orgs, bad_orders["org_id"])
    complete = has_staff & ~has_bad
    missing = _missing(
        orgs,
        _flag(orgs, ~has_staff, "нет ни одного ответственного сотрудника с корректным e-mail"),
        bad_msg.groupby(bad_orders["org_id"]).agg(list),
        ctx.row_messages("module_staff"),
    )
    return complete, missing


def check_operators(ctx: Context, orgs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    all_rows = ctx.frame("operators")
    rows = ctx.valid_rows("operators")
    chief = rows[(normalize_text(rows["role"]) == "главный оператор") & chief_position_ok(rows["position"])]
    has_chief = _has(orgs, chief["org_id"])
    person = normalize_text(all_rows["full_name"])
    dup_mask = person.notna() & pd.DataFrame({"o": all_rows["org_id"], "p": person}).duplicated(keep="first")
    dups = all_rows[dup_mask.to_numpy()]
    dup_msg = dups["_file"] + ", строка " + dups["_row"].astype(str) + ": «" + dups["full_name"] + "» указан(а) повторно"
    has_rows = _has(orgs, all_rows["org_id"])
    has_dup = _has(orgs, dups["org_id"])
    has_bad_rows = orgs["org_id"].isin(ctx.row_messages("operators").index)
    complete = has_chief & ~has_dup & ~has_bad_rows
    missing = _missing(
        orgs,
        _flag(orgs, ~has_rows, "список операторов не представлен"),
        _flag(orgs, has_rows & ~has_chief,
              "нет главного оператора в должности не ниже заместителя директора"),
        dup_msg.groupby(dups["org_id"]).agg(list),
        ctx.row_messages("operators"),
    )
    return complete, missing


def check_accounts(ctx: Context, orgs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    ops = ctx.valid_rows("operators")
    acc = ctx.valid_rows("accounts")
    ops_key = pd.DataFrame({"org_id": ops["org_id"], "person": normalize_text(ops["full_name"]), "name": ops["full_name"]})
    ops_key = ops_key.drop_duplicates(["org_id", "person"])
    issued = acc[normalize_text(acc["status"]) == "выдана"]
    acc_key = pd.DataFrame({"org_id": issued["org_id"], "person": normalize_text(issued["full_name"]),
                            "name": issued["full_name"]}).drop_duplicates(["org_id", "person"])
    merged = ops_key.merge(acc_key[["org_id", "person"]], how="left", on=["org_id", "person"], indicator=True)
    no_account = merged[merged["_merge"] == "left_only"]
    stale = acc_key.merge(ops_key[["org_id", "person"]], how="left", on=["org_id", "person"], indicator=True)
    stale = stale[stale["_merge"] == "left_only"]
    has_ops = _has(orgs, ops_key["org_id"])
    lacks = _has(orgs, no_account["org_id"])
    has_stale = _has(orgs, stale["org_id"])
    complete = has_ops & ~lacks & ~has_stale
    missing = _missing(
        orgs,
        _flag(orgs, ~has_ops, "нет утвержденного списка операторов (этап 5), учетные записи выдать некому"),
        ("нет выданной учетной записи: " + no_account["name"]).groupby(no_account["org_id"]).agg(list),
        ("учетная запись не заблокирована, хотя сотрудника нет в списке операторов: " + stale["name"])
        .groupby(stale["org_id"]).agg(list),
        ctx.row_messages("accounts"),
    )
    return complete, missing


def check_school_data(ctx: Context, orgs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    cards = ctx.frame("school_cards")
    classes = ctx.frame("first_grade_classes")
    card_msgs = ctx.row_messages("school_cards")
    class_msgs = ctx.row_messages("first_grade_classes")
    has_card = _has(orgs, cards["org_id"])
    has_class = _has(orgs, classes["org_id"])
    bad = orgs["org_id"].isin(card_msgs.index) | orgs["org_id"].isin(class_msgs.index)
    complete = has_card & has_class & ~bad
    missing = _missing(
        orgs,
        _flag(orgs, ~has_card, "карточка ОО в АИС «Е-услуги. Образование» не заполнена"),
        _flag(orgs, ~has_class, "не создан ни один 1-й класс"),
        card_msgs,
        class_msgs,
    )
    return complete, missing


def check_approvals(ctx: Context, orgs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    rows = ctx.valid_rows("approvals")
    rows = rows.assign(status=normalize_text(rows["status"]))
    # The latest decision counts: by approval date, then by order in the files.
    rows = rows.assign(_d=rows["approved_at"].map(lambda d: d.toordinal(), na_action="ignore").fillna(0))
    last = rows.sort_values(["_d", "_file", "_row"]).groupby("org_id")["status"].last()
    status = orgs["org_id"].map(last)
    complete = (status == "утверждено").fillna(False).astype(bool)
    missing = _missing(
        orgs,
        _flag(orgs, status.isna(), "сведения об ОО и вакансиях не рассмотрены МООУСО (нет записи об утверждении)"),
        _flag(orgs, status.notna() & ~complete, "сведения не утверждены, статус: «" + status.fillna("") + "»"),
        ctx.row_messages("approvals"),
    )
    return complete, missing


CHECKS: dict[str, Callable] = {
    "esia_informing": check_esia_informing,
    "public_information": check_public_information,
    "parent_meetings": check_parent_meetings,
    "module_staff": check_module_staff,
    "operators": check_operators,
    "accounts": check_accounts,
    "school_data": check_school_data,
    "approvals": check_approvals,
}


def unknown_org_findings(data: DataFolder) -> list[Finding]:
    """Rows that name an organization missing from the registry."""
    known = set(data.frames["organizations"]["org_id"])
    out: list[Finding] = []
    for name, frame in data.frames.items():
        if name == "organizations" or frame.empty:
            continue
        stray = frame[frame["org_id"].notna() & ~frame["org_id"].isin(known)]
        col = "Код" if name == "informing" else ("Код МООУСО" if name == "module_staff" else "Код ОО")
        out.extend(
            Finding(name, f, f"код «{o}» не найден в реестре участников; строка не учтена", row=int(r), column=col, org_id=o)
            for f, r, o in zip(stray["_file"], stray["_row"], stray["org_id"], strict=True)
        )
    return out


def problems_frame(findings: list[Finding]) -> pd.DataFrame:
    rows = [f for f in findings if f.row is not None]
    frame = pd.DataFrame(
        [(f.dataset, f.file, f.row, f.column or "", f.message, f.org_id) for f in rows],
        columns=["dataset", "file", "row", "column", "message", "org_id"],
    )
    return frame.drop_duplicates(["dataset", "file", "row", "column"]).reset_index(drop=True)


def dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple] = set()
    out = []
    for f in findings:
        key = (f.dataset, f.file, f.row, f.column)
        if f.row is not None and key in seen:
            continue
        seen.add(key)
        out.append(f)
    return out


@dataclass
class StageOutcome:
    results: pd.DataFrame
    findings: list[Finding]
    validation: Validation | None = None


def evaluate_stage(plan: Plan, stage: Stage, data: DataFolder, as_of: dt.date,
                   validation: Validation | None = None) -> StageOutcome:
    """Status of every concerned organization for one stage as of a date."""
    names = ["organizations", *CHECK_DATASETS[stage.check]]
    if validation is None:
        validation = validate_rows({n: data.frames[n] for n in names if n in data.frames})
    findings = dedupe(data.findings + validation.findings() + unknown_org_findings(data))
    ctx = Context(data, problems_frame(findings), plan, stage, as_of)
    orgs = _orgs(ctx)
    out = CHECKS[stage.check](ctx, orgs)
    complete, missing = out[0].to_numpy(dtype=bool), out[1]
    results = orgs.copy()
    results.insert(0, "as_of", as_of)
    results.insert(0, "stage", stage.number)
    results.insert(0, "plan_id", plan.id)
    results["missing"] = missing.reindex(orgs["org_id"]).tolist() if len(orgs) else []
    results["deadline"] = stage.deadline
    if stage.deadline is None:
        days_overdue = out[2]
        overdue = days_overdue.notna().to_numpy()
        results["days_overdue"] = days_overdue.astype("Int64")
        results["days_left"] = pd.NA
    else:
        late = (as_of - stage.deadline).days
        overdue = ~complete & (late > 0)
        results["days_overdue"] = pd.Series(late, index=results.index, dtype="Int64").where(overdue)
        results["days_left"] = max((stage.deadline - as_of).days, 0)
    results["status"] = "lagging"
    results.loc[overdue, "status"] = "overdue"
    results.loc[complete, "status"] = "complete"
    # A complete organization may still have had a warning; the mail lists only what blocks it.
    results["missing"] = [[] if done else items for done, items in zip(complete, results["missing"], strict=True)]
    return StageOutcome(results[RESULT_COLUMNS], findings, validation)


def summarize(results: pd.DataFrame) -> dict[str, int]:
    counts = results["status"].value_counts()
    return {k: int(counts.get(k, 0)) for k in ("complete", "lagging", "overdue")} | {"total": len(results)}
