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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from admission.inputs.reader import DataFolder
from admission.inputs.rules import (
    Validation,
    chief_position_ok,
    is_chief_operator,
    normalize_text,
    validate_rows,
)
from admission.plan import Plan, Stage
from admission.registry import CHECKS, datasets_of, informing_stages
from admission.schema import DATASETS, TOPICS, Finding
from admission.vocabulary import WAITING, Status
from admission.wording import DAYS, WORKING_DAYS, plural
from admission.workdays import WorkCalendar

RESULT_COLUMNS = [
    "plan_id", "stage", "as_of", "org_id", "kind", "name", "parent_id",
    "status", "missing", "deadline", "days_overdue", "days_left", "evidence",
]

# How the report names what counted for stage 2's website requirement (the start of the evidence text).
SOURCE_SITE = "проверка сайта"
SOURCE_ROW = "строка «сайт» в сведениях об информировании"



@dataclass
class Context:
    """What a check needs: frames, row problems, the plan and the date."""

    data: DataFolder
    problems: pd.DataFrame  # dataset, file, row, column, message, org_id
    plan: Plan
    stage: Stage
    as_of: dt.date
    sites: pd.DataFrame | None = None  # the day's website check per organization (admission.checks.sites); None: not run
    requests: pd.DataFrame | None = None  # what delivered requests to РЦОКО named (jobs.request_history); None: unknown
    depends: pd.DataFrame | None = None  # stored daily statuses of the stages this one depends on (store.stage_statuses)
    reviews: tuple | None = None  # (answers, reviews) for a stage that needs review (jobs.review_state)
    evidence: pd.Series | None = None  # org_id -> what counted, set by a check that says (stage 2)

    def frame(self, name: str) -> pd.DataFrame:
        return self.data.frames[name]

    def memo(self, key: tuple, compute: Callable[[], object]):
        """Derived data kept on the data folder while the row problems are the same object."""
        return self.data.cached(key, compute, depends_on=self.problems)

    def norm(self, name: str, column: str) -> pd.Series:
        """A column normalized for comparison (whole frame; index it with the rows at hand)."""
        return self.data.cached(("norm", name, column), lambda: normalize_text(self.frame(name)[column]))

    def valid_rows(self, name: str) -> pd.DataFrame:
        """Rows with no problem at all (a broken row does not count as evidence)."""
        return self.memo(("valid_rows", name), lambda: self._valid_rows(name))

    def _valid_rows(self, name: str) -> pd.DataFrame:
        frame = self.frame(name)
        bad = self.problems.loc[self.problems["dataset"] == name, ["file", "row"]].drop_duplicates()
        if bad.empty or frame.empty:
            return frame
        key = pd.MultiIndex.from_frame(frame[["_file", "_row"]].astype({"_row": int}))
        bad_key = pd.MultiIndex.from_frame(bad.astype({"row": int}))
        return frame[~key.isin(bad_key)]

    def row_messages(self, name: str) -> pd.Series:
        """org_id -> list of "file, строка N, столбец «X»: message" for that dataset."""
        return self.memo(("row_messages", name), lambda: self._row_messages(name))

    def _row_messages(self, name: str) -> pd.Series:
        p = self.problems[(self.problems["dataset"] == name) & self.problems["org_id"].notna()]
        files = self.file_problems(name)
        if p.empty:
            return files
        text = p["file"] + ", строка " + p["row"].astype(int).astype(str) + ", «" + p["column"] + "»: " + p["message"]
        rows = group_lists(p["org_id"], text)
        if files.empty:
            return rows
        both = {k: list(v) for k, v in files.items()}
        for org, items in rows.items():
            both.setdefault(org, []).extend(items)
        return pd.Series(both, dtype="object")

    def file_problems(self, name: str) -> pd.Series:
        """org_id -> what is wrong with the organization's own file of that dataset as a whole (unreadable,
        refused), worded for the organization: its data was not lost for want of sending it."""
        return self.data.cached(("file_problems", name), lambda: self._file_problems(name))

    def _file_problems(self, name: str) -> pd.Series:
        out: dict[str, list[str]] = {}
        for f in self.data.findings:
            if f.dataset == name and f.row is None and f.org_id:
                out.setdefault(f.org_id, []).append(
                    f"файл «{f.file.rsplit('/', 1)[-1]}» (сведения «{DATASETS[name].ru}») не прочитан: "
                    f"{f.message.removesuffix('; не прочитан').removesuffix('; файл не прочитан')}; его нужно "
                    "исправить и прислать заново (до этого сведения из него не учитываются)")
        return pd.Series(out, dtype="object")

    def unreadable(self, name: str) -> pd.Series:
        """Aligned on nothing: the org_ids whose own file of the dataset could not be read."""
        return pd.Series(list(self.file_problems(name).index), dtype="object")


def group_lists(keys: pd.Series, values: pd.Series) -> pd.Series:
    """key -> list of its values in row order, keys in first-seen order.

    A dict loop: pandas' ``groupby().agg(list)`` calls Python once per group (~30 µs),
    which with 85,000 organizations was most of a stage's time.
    """
    out: dict[object, list] = {}
    mask = keys.notna().to_numpy()
    for k, v in zip(keys[mask].tolist(), values[mask].tolist(), strict=True):
        bucket = out.get(k)
        if bucket is None:
            out[k] = [v]
        else:
            bucket.append(v)
    return pd.Series(out, dtype="object") if out else pd.Series(dtype="object")


def ordinals(days: pd.Series) -> pd.Series:
    """Dates (Python objects) as day numbers, NaN where missing; computed on the distinct dates."""
    codes, uniques = pd.factorize(days, use_na_sentinel=True)
    values = np.append(np.array([d.toordinal() for d in uniques], dtype="float64"), np.nan)
    return pd.Series(values[codes], index=days.index)


def _orgs(ctx: Context) -> pd.DataFrame:
    """The organizations the stage concerns, less those exempt from it (out of its denominator too)."""
    orgs = ctx.frame("organizations")
    orgs = orgs[orgs["kind"].isin(ctx.stage.concerns)][["org_id", "kind", "name", "parent_id"]]
    exempt = {o for o, (kind, _) in exemptions(ctx.data, ctx.stage.number).items() if kind == "не требуется"}
    return orgs[~orgs["org_id"].isin(exempt)].reset_index(drop=True)


def exemptions(data: DataFolder, stage: int) -> dict[str, tuple[str, dt.date | None]]:
    """org_id -> (kind, new deadline) of the stage's valid extensions and exemptions (the last row counts). A row
    of another kind, or an extension without its date, counts for nothing (the report lists it as not counted)."""
    frame = data.frames.get("exemptions")
    if frame is None or frame.empty:
        return {}
    out: dict[str, tuple[str, dt.date | None]] = {}
    for org, number, kind, until in zip(frame["org_id"].tolist(), frame["stage"].tolist(), frame["kind"].tolist(),
                                        frame["until"].tolist(), strict=True):
        kind = str(kind or "").strip().casefold()
        if number != stage or pd.isna(org):
            continue
        if kind == "не требуется":
            out[org] = (kind, None)
        elif kind == "продление" and isinstance(until, dt.date):
            out[org] = (kind, until)
    return out


def _missing(orgs: pd.DataFrame, *parts: pd.Series) -> pd.Series:
    """Concatenate per-org lists of reasons (each part: org_id -> list[str]); orgs' order."""
    acc: dict[object, list] = {}
    for part in parts:
        if part is None or part.empty:
            continue
        for org, items in zip(part.index.tolist(), part.tolist(), strict=True):
            acc.setdefault(org, []).extend(items)
    ids = orgs["org_id"].tolist()
    return pd.Series([acc.get(i, []) for i in ids], index=ids, dtype="object")


def _flag(orgs: pd.DataFrame, condition: pd.Series, message: str | pd.Series) -> pd.Series:
    """org_id -> [message] where condition (aligned on orgs) holds."""
    hit = orgs["org_id"][condition.to_numpy()]
    if isinstance(message, pd.Series):
        msgs = message[condition.to_numpy()]
        return pd.Series([[m] for m in msgs], index=hit.to_numpy(), dtype="object")
    return pd.Series([[message] for _ in range(len(hit))], index=hit.to_numpy(), dtype="object")


def _has(orgs: pd.DataFrame, org_ids: pd.Series) -> pd.Series:
    return orgs["org_id"].isin(org_ids.dropna().unique())


def _fmt(day: object) -> str:
    return day.strftime("%d.%m.%Y") if isinstance(day, dt.date) else "—"


def _informing(ctx: Context, own_stage: bool = False) -> pd.DataFrame:
    """Valid informing rows dated up to the day, with channel normalized, day number and topic sets;
    ``own_stage``: only the rows that name the stage being checked (its number in the plan)."""
    def compute() -> pd.DataFrame:
        rows = ctx.valid_rows("informing")
        day = ordinals(rows["event_date"])
        keep = (day <= ctx.as_of.toordinal()).to_numpy()  # NaN (no date) compares False
        rows = rows[keep]
        return rows.assign(channel=ctx.norm("informing", "channel").loc[rows.index], _day=day[keep],
                           _topics=_topics(rows["topics"]))

    rows = ctx.memo(("informing", ctx.as_of), compute)
    return rows[rows["stage"] == ctx.stage.number] if own_stage else rows


def _topics(series: pd.Series) -> pd.Series:
    """Topic cell -> frozenset of canonical topics it names (parsed once per distinct cell)."""
    canon = {t.casefold(): t for t in TOPICS}
    codes, uniques = pd.factorize(normalize_text(series).fillna(""), use_na_sentinel=True)
    sets = [frozenset(canon[i.strip()] for i in u.replace(",", ";").split(";") if i.strip() in canon) for u in uniques]
    table = np.array([*sets, frozenset()], dtype=object)
    return pd.Series(table[codes], index=series.index, dtype="object")


@dataclass(frozen=True)
class CheckResult:
    """What a check says of every organization it concerns (Series indexed like its ``orgs``)."""

    complete: pd.Series  # bool
    missing: pd.Series  # list of Russian reasons: what the organization still has to do
    # For a stage without a fixed deadline (each organization has its own): days past it, NA when not overdue.
    days_overdue: pd.Series | None = None


def check_esia_informing(ctx: Context, orgs: pd.DataFrame) -> CheckResult:
    rule = ctx.plan.stage1
    rows = _informing(ctx)
    esia = rows[np.fromiter(("ЕСИА" in t for t in rows["_topics"]), dtype=bool, count=len(rows))]
    last = esia.groupby("org_id")["_day"].max()
    last_day = orgs["org_id"].map(last).astype("float64")  # NaN: never
    today = ctx.as_of.toordinal()
    complete = (today - last_day <= rule.lag_days).to_numpy()  # NaN compares False
    complete = pd.Series(complete, index=orgs.index)
    days_without = today - np.fmax(last_day, ctx.plan.campaign.start.toordinal())  # fmax skips NaN
    days_overdue = (days_without - rule.overdue_days).where(~complete & (days_without > rule.overdue_days))
    shown = {d: _fmt(dt.date.fromordinal(int(d))) for d in set(last_day.dropna().tolist())}
    lead = f"нет мероприятия по информированию о регистрации в ЕСИА за последние {rule.lag_days} дней"
    reason = pd.Series(
        [lead + (f" (последнее — {shown[d]})" if d == d else " (мероприятий не было)") for d in last_day.tolist()],
        index=orgs.index,
    )
    return CheckResult(complete, _missing(orgs, _flag(orgs, ~complete, reason)), days_overdue)


def _on(day: object) -> str:
    return f" от {_fmt(day)}" if isinstance(day, dt.date) else ""


def _checked_on(found: dict) -> str:
    day = found.get("checked_on")
    return f"проверка сайта от {_fmt(day)}: " if isinstance(day, dt.date) else ""


def check_public_information(ctx: Context, orgs: pd.DataFrame) -> CheckResult:
    """МООУСО and ОО: the information is on the official site — the day's website check found it, or an
    informing row of the stage says channel «сайт»; ОО also on the stand; ДОУ: any informing row."""
    rows = _informing(ctx, own_stage=True)
    site_row = _has(orgs, rows.loc[rows["channel"] == "сайт", "org_id"])
    stand = _has(orgs, rows.loc[rows["channel"] == "стенд", "org_id"])
    anything = _has(orgs, rows["org_id"])
    sites = ctx.sites if ctx.sites is not None else pd.DataFrame(columns=["org_id", "found", "page", "phrases",
                                                                            "reason", "first_found"])
    by_org = {r["org_id"]: r for r in sites.to_dict("records")}
    ids = orgs["org_id"].tolist()
    site_found = pd.Series([bool(by_org.get(i, {}).get("found")) for i in ids], index=orgs.index, dtype=bool)
    site = site_row | site_found
    kind = orgs["kind"]
    needs_site = kind.isin(["МООУСО", "ОО"])
    needs_stand = kind == "ОО"
    complete = (~needs_site | site) & (~needs_stand | stand) & (kind.isin(["МООУСО", "ОО"]) | anything)
    websites = orgs["org_id"].map(ctx.frame("organizations").drop_duplicates("org_id").set_index("org_id")
                                  .get("website", pd.Series(dtype=object)))

    def why_no_site(org_id: object, website: object) -> str:
        lead = "нет сведений о размещении информации на официальном сайте: "
        tail = "; строки с каналом «сайт» по этому этапу в сведениях об информировании тоже нет"
        found = by_org.get(org_id)
        if found is not None:
            return (lead + _checked_on(found) + str(found.get("reason") or "информация на сайте не найдена") + tail)
        if not isinstance(website, str) or not website.strip():
            return lead + "адрес сайта в реестре не указан, автоматическая проверка невозможна" + tail
        if ctx.sites is None:
            return (lead + "законченной автоматической проверки сайтов за последние "
                    f"{plural(ctx.plan.site_check.max_age_days, DAYS)} нет" + tail)
        return lead + "сайт не проверен" + tail

    def counted(org_id: object, has_row: bool) -> str | None:
        found = by_org.get(org_id)
        parts = []
        if found is not None and found.get("found"):
            since = found.get("first_found")
            parts.append(f"{SOURCE_SITE}{_on(found.get('checked_on'))}: {found.get('page')} (найдено: «" + "», «".join(found.get("phrases") or [])
                         + "»" + (f"; впервые {_fmt(since)}" if isinstance(since, dt.date) else "") + ")")
        if has_row:
            parts.append(SOURCE_ROW)
        return "; ".join(parts) or None

    ctx.evidence = pd.Series(
        [counted(i, r) if n else None for i, r, n in zip(ids, site_row.tolist(), needs_site.tolist(), strict=True)],
        index=ids, dtype=object)
    reasons = pd.Series([why_no_site(i, w) for i, w in zip(ids, websites.tolist(), strict=True)], index=orgs.index)
    sent = ~orgs["org_id"].isin(ctx.unreadable("informing"))  # an unreadable file is said as such, not as silence
    missing = _missing(
        orgs,
        _flag(orgs, needs_site & ~site, reasons),
        _flag(orgs, needs_stand & ~stand & sent, "нет сведений о размещении информации на информационном стенде "
                                                 "(канал «стенд»)"),
        _flag(orgs, (kind == "ДОУ") & ~anything & sent, "нет ни одной записи об информировании родителей"),
        ctx.row_messages("informing"),
    )
    return CheckResult(complete, missing)


def check_parent_meetings(ctx: Context, orgs: pd.DataFrame) -> CheckResult:
    rows = _informing(ctx, own_stage=True)
    meetings = rows[rows["channel"] == "собрание"]
    with_protocol = meetings[meetings["protocol_no"].notna()]
    covered: dict[object, frozenset] = {}  # topics are pooled over all of an organization's protocols
    for org, topics in zip(with_protocol["org_id"].tolist(), with_protocol["_topics"].tolist(), strict=True):
        covered[org] = covered.get(org, frozenset()) | topics
    lacking = {org: [t for t in TOPICS if t not in topics] for org, topics in covered.items()}
    ids = orgs["org_id"].tolist()
    has_protocol = _has(orgs, with_protocol["org_id"])
    has_meeting = _has(orgs, meetings["org_id"])
    complete = pd.Series([org in lacking and not lacking[org] for org in ids], index=orgs.index, dtype=bool)
    sent = ~orgs["org_id"].isin(ctx.unreadable("informing"))
    missing = _missing(
        orgs,
        _flag(orgs, ~has_meeting & sent, "нет записи о родительском собрании (канал «собрание»)"),
        _flag(orgs, has_meeting & ~has_protocol, "у родительского собрания не указан № протокола"),
        _flag(
            orgs,
            has_protocol & ~complete,
            pd.Series(["в протоколах собраний не отражены темы: " + ", ".join(lacking.get(org) or []) for org in ids],
                      index=orgs.index),
        ),
        ctx.row_messages("informing"),
    )
    return CheckResult(complete, missing)


def check_module_staff(ctx: Context, orgs: pd.DataFrame) -> CheckResult:
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
        group_lists(bad_orders["org_id"], bad_msg),
        ctx.row_messages("module_staff"),
    )
    return CheckResult(complete, missing)


def check_operators(ctx: Context, orgs: pd.DataFrame) -> CheckResult:
    all_rows = ctx.frame("operators")
    rows = ctx.valid_rows("operators")
    chief = rows[is_chief_operator(rows["role"]) & chief_position_ok(rows["position"])]
    has_chief = _has(orgs, chief["org_id"])
    person = ctx.norm("operators", "full_name")
    dup_mask = person.notna() & pd.DataFrame({"o": all_rows["org_id"], "p": person}).duplicated(keep="first")
    dups = all_rows[dup_mask.to_numpy()]
    dup_msg = dups["_file"] + ", строка " + dups["_row"].astype(str) + ": «" + dups["full_name"] + "» указан(а) повторно"
    has_rows = _has(orgs, all_rows["org_id"])
    has_dup = _has(orgs, dups["org_id"])
    has_bad_rows = orgs["org_id"].isin(ctx.row_messages("operators").index)
    complete = has_chief & ~has_dup & ~has_bad_rows
    missing = _missing(
        orgs,
        _flag(orgs, ~has_rows & ~orgs["org_id"].isin(ctx.unreadable("operators")), "список операторов не представлен"),
        _flag(orgs, has_rows & ~has_chief,
              "нет главного оператора в должности не ниже заместителя директора"),
        group_lists(dups["org_id"], dup_msg),
        ctx.row_messages("operators"),
    )
    return CheckResult(complete, missing)


def _stage_of(ctx: Context, check: str) -> str:
    """How a message names the plan's stage that runs ``check`` («этап 5»), or «список не утвержден»."""
    numbers = [s.number for s in ctx.plan.stages if s.check == check]
    return f"этап {numbers[0]}" if numbers else "отдельный этап плана"


def check_accounts(ctx: Context, orgs: pd.DataFrame) -> CheckResult:
    """Every approved operator has an issued account and no account outlives the list. РЦОКО answers for an item
    only once a request naming it was delivered ``requests.response_working_days`` working days ago; before that
    (or with no request at all, or no approved list) the item says what it waits for."""
    ops = ctx.valid_rows("operators")
    acc = ctx.valid_rows("accounts")
    ops_key = pd.DataFrame({"org_id": ops["org_id"], "person": ctx.norm("operators", "full_name").loc[ops.index],
                            "name": ops["full_name"]})
    ops_key = ops_key.drop_duplicates(["org_id", "person"])
    issued = acc[(ctx.norm("accounts", "status").loc[acc.index] == "выдана").to_numpy(dtype=bool, na_value=False)]
    acc_key = pd.DataFrame({"org_id": issued["org_id"], "person": ctx.norm("accounts", "full_name").loc[issued.index],
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
        _flag(orgs, ~has_ops, WAITING + "утвержденный список операторов (" + _stage_of(ctx, "operators")
              + "): пока его нет, учетные записи выдать некому"),
        _request_items(ctx, no_account, "create", "нет выданной учетной записи: ",
                       "выдача учетной записи: "),
        _request_items(ctx, stale, "block", "учетная запись не заблокирована, хотя сотрудника нет в списке "
                                            "операторов: ", "блокировка учетной записи: "),
        ctx.row_messages("accounts"),
    )
    return CheckResult(complete, missing)


def _request_items(ctx: Context, rows: pd.DataFrame, action: str, due: str, waiting: str) -> pd.Series:
    """org_id -> items for the people of ``rows``: РЦОКО's («нет выданной учетной записи: …, заявка от …») when a
    request naming them was delivered long enough ago, else what they wait for."""
    if rows.empty:
        return pd.Series(dtype="object")
    days = ctx.plan.requests.response_working_days
    history = ctx.requests
    asked: dict[tuple, dt.date] = {}
    if history is not None and not history.empty:
        mine = history[history["action"] == action]
        asked = {(o, p): d for o, p, d in zip(mine["org_id"], mine["person"], mine["delivered_on"], strict=True)}
    calendar = WorkCalendar.for_plan(ctx.plan)
    texts = []
    for org, person, name in zip(rows["org_id"].tolist(), rows["person"].tolist(), rows["name"].tolist(),
                                 strict=True):
        sent = asked.get((org, person))
        if history is None:  # no request history given (a check run outside the day): as before
            texts.append(f"{due}{name}")
        elif sent is None:
            texts.append(f"{WAITING}{waiting}{name} — заявка в РЦОКО еще не направлена")
        elif calendar.working_days_between(sent, ctx.as_of) >= days:
            texts.append(f"{due}{name} (заявка направлена {_fmt(sent)})")
        else:
            texts.append(f"{WAITING}{waiting}{name} — заявка направлена {_fmt(sent)}, срок ответа РЦОКО — "
                         f"{plural(days, WORKING_DAYS)}")
    return group_lists(rows["org_id"], pd.Series(texts, index=rows.index, dtype=object))


def check_school_data(ctx: Context, orgs: pd.DataFrame) -> CheckResult:
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
    return CheckResult(complete, missing)


def check_approvals(ctx: Context, orgs: pd.DataFrame) -> CheckResult:
    """The latest decision of the МООУСО counts, and an approval means something: it counts only when the stages
    this one depends on (the plan's ``depends_on``) were complete on its date, and only while the approved data
    (the school card, the first classes) has not changed since — a later change asks for approval again, and the
    curator's letter says what changed."""
    rows = ctx.valid_rows("approvals")
    rows = rows.assign(status=ctx.norm("approvals", "status").loc[rows.index])
    # The latest decision counts: by approval date, then by order in the files.
    rows = rows.assign(_d=ordinals(rows["approved_at"]).fillna(0))
    latest = rows.sort_values(["_d", "_file", "_row"]).groupby("org_id")[["status", "approved_at"]].last()
    status = orgs["org_id"].map(latest["status"])
    approved_on = orgs["org_id"].map(latest["approved_at"])
    approved = (status == "утверждено").fillna(False).astype(bool)
    not_ready, changed = _approval_problems(ctx, orgs, approved, approved_on)
    complete = approved & ~orgs["org_id"].isin(not_ready) & ~orgs["org_id"].isin(changed)
    missing = _missing(
        orgs,
        _flag(orgs, status.isna(), "сведения об ОО и вакансиях не рассмотрены МООУСО (нет записи об утверждении)"),
        _flag(orgs, status.notna() & ~approved, "сведения не утверждены, статус: «" + status.fillna("") + "»"),
        pd.Series({o: [m] for o, m in not_ready.items()}, dtype="object"),
        pd.Series({o: [m] for o, m in changed.items()}, dtype="object"),
        ctx.row_messages("approvals"),
    )
    return CheckResult(complete, missing)


NOT_COUNTED = "утверждение не учтено"
REAPPROVAL = "требует повторного утверждения"


def _approval_problems(ctx: Context, orgs: pd.DataFrame, approved: pd.Series,
                       approved_on: pd.Series) -> tuple[dict[str, str], dict[str, str]]:
    """(org_id -> why its approval does not count: a stage it depends on was not complete on the approval's
    date; org_id -> what changed after the approval)."""
    not_ready: dict[str, str] = {}
    changed: dict[str, str] = {}
    history = ctx.depends
    titles = {s.number: s.title for s in ctx.plan.stages}
    status_on: dict[tuple[str, int], list[tuple[dt.date, str]]] = {}
    if history is not None and not history.empty:
        for org, stage, day, st in zip(history["org_id"], history["stage"], history["as_of"], history["status"],
                                       strict=True):
            status_on.setdefault((org, int(stage)), []).append((day, st))
        for days in status_on.values():
            days.sort()
    cards = ctx.frame("school_cards") if "school_cards" in ctx.data.frames else None
    classes = ctx.frame("first_grade_classes") if "first_grade_classes" in ctx.data.frames else None
    card_dates = _latest_dates(cards, "updated_at")
    class_dates = _latest_dates(classes, "entered_at")
    for org, ok, when in zip(orgs["org_id"].tolist(), approved.tolist(), approved_on.tolist(), strict=True):
        if not ok:
            continue
        day = when.date() if isinstance(when, dt.datetime) else when if isinstance(when, dt.date) else None
        for dep in ctx.stage.depends_on:
            seen = status_on.get((org, dep))
            if not seen:
                continue  # never judged here (the approval predates the monitor): nothing to hold it against
            on_day = [st for d, st in seen if day is None or d <= day]
            state = on_day[-1] if on_day else None
            if state is not None and state != "complete":
                not_ready[org] = (f"{NOT_COUNTED}: на дату утверждения ({_fmt(day)}) этап {dep} («{titles.get(dep)}») "
                                  "не был выполнен; утвердите сведения после его выполнения")
                break
        if org in not_ready or day is None:
            continue
        what = []
        if card_dates.get(org) and card_dates[org] > day:
            what.append(f"карточка ОО (изменена {_fmt(card_dates[org])})")
        if class_dates.get(org) and class_dates[org] > day:
            what.append(f"1-е классы (изменены {_fmt(class_dates[org])})")
        if what:
            changed[org] = f"{REAPPROVAL}: после утверждения {_fmt(day)} изменены " + ", ".join(what)
    return not_ready, changed


def _latest_dates(frame: pd.DataFrame | None, column: str) -> dict[str, dt.date]:
    """org_id -> the newest date of the column among its rows."""
    out: dict[str, dt.date] = {}
    if frame is None or frame.empty or column not in frame:
        return out
    for org, value in zip(frame["org_id"].tolist(), frame[column].tolist(), strict=True):
        if isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value[:10])
            except ValueError:
                continue
        if isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, dt.date) and (org not in out or value > out[org]):
            out[org] = value
    return out


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


def day_problems(data: DataFolder, validation: Validation) -> tuple[list[Finding], pd.DataFrame]:
    """Every row problem of the read (reader, GX, unknown codes), once per validation."""
    def compute() -> tuple[list[Finding], pd.DataFrame]:
        findings = dedupe(data.findings + validation.findings() + unknown_org_findings(data))
        return findings, problems_frame(findings)

    findings, problems = data.cached("problems", compute, depends_on=validation)
    return list(findings), problems


@dataclass
class StageOutcome:
    results: pd.DataFrame
    findings: list[Finding]
    validation: Validation | None = None


def evaluate_stage(plan: Plan, stage: Stage, data: DataFolder, as_of: dt.date,
                   validation: Validation | None = None, sites: pd.DataFrame | None = None,
                   requests: pd.DataFrame | None = None, depends: pd.DataFrame | None = None,
                   reviews: tuple | None = None) -> StageOutcome:
    """Status of every concerned organization for one stage as of a date."""
    names = ["organizations", *datasets_of(stage.check)]
    if validation is None:
        validation = validate_rows({n: data.frames[n] for n in names if n in data.frames}, informing_stages(plan))
    findings, problems = day_problems(data, validation)
    ctx = Context(data, problems, plan, stage, as_of, sites, requests, depends, reviews)
    orgs = _orgs(ctx)
    out: CheckResult = CHECKS[stage.check].run()(ctx, orgs)
    complete, missing = out.complete.to_numpy(dtype=bool), out.missing
    results = orgs.copy()
    results.insert(0, "as_of", as_of)
    results.insert(0, "stage", stage.number)
    results.insert(0, "plan_id", plan.id)
    ids = orgs["org_id"].tolist()
    reasons = missing.tolist() if missing.index.tolist() == ids else missing.reindex(ids).tolist()
    # A complete organization may still have had a warning; the mail lists only what blocks it.
    results["missing"] = [[] if done else items for done, items in zip(complete.tolist(), reasons, strict=True)]
    results["deadline"] = stage.deadline
    if stage.deadline is None:
        days_overdue = out.days_overdue
        overdue = days_overdue.notna().to_numpy()
        results["days_overdue"] = days_overdue.astype("Int64")
        results["days_left"] = pd.NA
    else:
        late = (as_of - stage.deadline).days
        overdue = ~complete & (late > 0)
        results["days_overdue"] = pd.Series(late, index=results.index, dtype="Int64").where(overdue)
        results["days_left"] = max((stage.deadline - as_of).days, 0)
    results["evidence"] = ctx.evidence.reindex(ids).tolist() if ctx.evidence is not None else None
    if stage.review and reviews is not None:
        complete = _apply_reviews(results, complete.copy(), stage, reviews)
        if stage.deadline is not None:
            overdue = ~complete & ((as_of - stage.deadline).days > 0)
    overdue = np.asarray(overdue, dtype=bool)
    if stage.deadline is not None:  # an organization's extension moves its deadline, and only its own
        judged = set(ids)
        for org, (kind, until) in exemptions(data, stage.number).items():
            if kind != "продление" or org not in judged:
                continue
            at = results.index[results["org_id"] == org]
            late = (as_of - until).days
            results.loc[at, "deadline"] = until
            results.loc[at, "days_left"] = max((until - as_of).days, 0)
            is_late = ~complete[at] & (late > 0)
            overdue[at] = is_late
            results.loc[at, "days_overdue"] = pd.Series(late, index=at, dtype="Int64").where(is_late)
            for i in at:  # one cell at a time: a list in a cell is not a row to broadcast
                if not complete[i]:
                    results.at[i, "missing"] = [*results.at[i, "missing"], f"срок продлен до {_fmt(until)}"]
    results["status"] = str(Status.LAGGING)
    results.loc[overdue, "status"] = str(Status.OVERDUE)
    results.loc[complete, "status"] = str(Status.COMPLETE)
    return StageOutcome(results[RESULT_COLUMNS], findings, validation)


REVIEW_STATES = ("принято", "есть замечания", "отклонено")


def _apply_reviews(results: pd.DataFrame, complete: np.ndarray, stage: Stage, reviews: tuple) -> np.ndarray:
    """A stage that needs review: an organization whose newest answer by mail for it is not yet reviewed «принято»
    is not complete — waiting for the review, or with the reviewer's remark; the rest stand as judged."""
    answers, done = reviews
    wanted = set(datasets_of(stage.check))
    if answers is None or answers.empty:
        return complete
    mine = answers[[bool(wanted & set(d)) for d in answers["datasets"]]]
    if mine.empty:
        return complete
    newest = mine.sort_values("received_at").groupby("org_id").last()
    latest = {}
    if done is not None and not done.empty:
        latest = {(o, m): r for o, m, r in zip(done["org_id"], done["message_id"], done.to_dict("records"),
                                               strict=True)}  # in id order: the last one stays
    for i, org in enumerate(results["org_id"].tolist()):
        if org not in newest.index:
            continue
        answer = newest.loc[org]
        when = answer["received_at"]
        day = when.date() if isinstance(when, dt.datetime) else when
        seen = latest.get((org, answer["message_id"]))
        if seen is None:
            complete[i] = False
            results.at[results.index[i], "missing"] = [*results.at[results.index[i], "missing"],
                                                       f"{WAITING}проверка ответа от {_fmt(day)} проверяющим "
                                                       "(этап требует проверки человеком)"]
        elif seen["state"] != "принято":
            complete[i] = False
            results.at[results.index[i], "missing"] = [*results.at[results.index[i], "missing"],
                                                       f"ответ от {_fmt(day)} проверен: {seen['state']} — "
                                                       f"{seen['comment']}"]
    return complete


def summarize(results: pd.DataFrame) -> dict[str, int]:
    counts = results["status"].value_counts()
    return {str(k): int(counts.get(k, 0)) for k in Status} | {"total": len(results)}
