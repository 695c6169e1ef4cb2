"""The campaign plan as typed data.

A plan is one YAML file per campaign (``include/plans/*.yaml``). It is
validated on load, so a typo in a deadline is caught by ``admission plan
check`` and by DAG parsing, not by an official who gets a wrong reminder.
This module imports only pydantic and PyYAML: it is safe at DAG parse time.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from admission.registry import CHECKS
from admission.vocabulary import EscalationRole, ResponsibleRole

OrgKind = Literal["МООУСО", "ОО", "ДОУ", "РЦОКО", "РОИВ"]
# Roles (who receives what) are enums of admission.vocabulary; checks are names of admission.registry.

# The plan folder; ADMISSION_PLANS_DIR (an environment setting, read when parsing, like the retry delay)
# points elsewhere, e.g. at a region's own plans or a test's.
PLANS_DIR = Path(os.environ.get("ADMISSION_PLANS_DIR") or Path(__file__).resolve().parents[1] / "plans")


class PlanError(ValueError):
    """A plan file that cannot be used; the message names file and stage(s)."""

    def __init__(self, path: str, problems: list[str], stages: Iterable[int] = ()):
        self.path = path
        self.problems = problems
        self.stages = sorted(set(stages))
        super().__init__(f"{path}: " + "; ".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(_Model):
    number: int = Field(ge=1)
    title: str = Field(min_length=3, description="Short Russian name for subjects and tables")
    text: str = Field(min_length=3, description="The stage as the plan words it")
    deadline: dt.date | None = Field(
        description="Last day (inclusive, plan time zone); null for whole-campaign stages"
    )
    deadline_text: str = Field(description="The deadline as the plan words it")
    responsible_text: str = Field(description="'Ответственные' column of the plan")
    check: str = Field(description="A check of admission.registry.CHECKS")
    concerns: list[OrgKind] = Field(min_length=1, description="Kinds of organizations the stage checks")
    responsible: dict[OrgKind, ResponsibleRole]
    escalation: dict[OrgKind, EscalationRole]
    depends_on: list[int] = Field(default_factory=list)
    # A stage machine rules cannot judge alone (a meeting protocol, a staff order): an organization's newest answer
    # by mail for it counts once a person has reviewed it «принято» on the campaign page.
    review: bool = False
    note: str | None = None

    @field_validator("check")
    @classmethod
    def _known_check(cls, value: str) -> str:
        if value not in CHECKS:
            raise ValueError(f"unknown check {value!r}; known: {', '.join(CHECKS)}")
        return value

    @model_validator(mode="after")
    def _roles_cover_concerned_kinds(self) -> Stage:
        for kind in self.concerns:
            if kind not in self.responsible:
                raise ValueError(f"no responsible role for {kind}")
            if kind not in self.escalation:
                raise ValueError(f"no escalation role for {kind}")
        return self


class Campaign(_Model):
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Campaign:
        if self.end < self.start:
            raise ValueError(f"campaign end {self.end} is before its start {self.start}")
        return self


class Stage1Rule(_Model):
    """Whole-campaign stage: lag when no ЕСИА event in `lag_days`, overdue after `overdue_days`."""

    lag_days: int = Field(30, ge=1)
    overdue_days: int = Field(60, ge=1)


class Calendar(_Model):
    """Regional corrections to the Russian production calendar."""

    extra_days_off: list[dt.date] = Field(default_factory=list)
    extra_working_days: list[dt.date] = Field(default_factory=list)


# Every group must match (AND); any phrase of a group will do (OR); matched on a page's visible text with case,
# ё/е and spaces folded. A region tunes them in its plan file (``site_check.phrases``).
DEFAULT_SITE_PHRASES: list[list[str]] = [
    ["прием в 1 класс", "прием в первый класс", "приема в 1 класс", "приема в первый класс", "зачисление в 1 класс",
     "зачисление в первый класс", "будущим первоклассникам", "будущих первоклассников", "запись в 1 класс",
     "запись в первый класс"],
    ["электронной форме", "электронном виде", "госуслуг", "епгу", "есиа", "портал"],
]
# Words in a link's text or address that suggest admission information: such links are followed first.
DEFAULT_LINK_HINTS: list[str] = [
    "прием", "зачислен", "первоклассник", "1 класс", "первый класс", "родителям", "полезная информация",
    "сведения об", "priem", "pervoklassnik", "roditel", "sveden", "document", "parents"]
# Known platforms of school sites: a host suffix and the sections where such a site usually keeps the admission
# information, asked first (each costs one page of the budget). Госвеб (``*.gosuslugi.ru``), where most Russian
# schools' official sites have been since 2023, keeps it under «Родителям и ученикам» → «Полезная информация» →
# «Будущим первоклассникам» and in «Сведения об образовательной организации» → «Документы». The section
# addresses are the platform's usual ones; a region whose sites differ lists its own in the plan.
DEFAULT_PLATFORM_PATHS: dict[str, list[str]] = {
    ".gosuslugi.ru": ["/roditelyam-i-uchenikam/poleznaya-informatsiya/buduschim-pervoklassnikam/",
                      "/roditelyam-i-uchenikam/poleznaya-informatsiya/",
                      "/svedeniya-ob-obrazovatelnoy-organizatsii/dokumenty/"],
}


class SiteCheck(_Model):
    """The automatic website check of the stage whose check is ``public_information`` (admission.checks.crawler).

    What a region may tune lives here, in the plan; what depends on the installation (switching it off, a CA
    bundle, the test-only allow-list) is the Airflow Variable ``admission_site_check``.
    """

    enabled: bool = True
    phrases: list[list[str]] = Field(default_factory=lambda: [list(g) for g in DEFAULT_SITE_PHRASES], min_length=1)
    link_hints: list[str] = Field(default_factory=lambda: list(DEFAULT_LINK_HINTS))
    max_pages: int = Field(15, ge=1, le=200)
    max_depth: int = Field(3, ge=0, le=10)
    recheck_days: int = Field(7, ge=1, le=90, description="A site found compliant is fetched again after this many days")
    run_at: str = Field("02:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                        description="When the check runs each campaign day (the plan's time zone): at night, before "
                                    "the day judges stage 2 on it")
    max_age_days: int = Field(7, ge=1, le=60, description="Stage 2 counts a site's newest finished check when it is "
                                                            "at most this many days old")
    platform_paths: dict[str, list[str]] = Field(default_factory=lambda: {k: list(v) for k, v in
                                                                         DEFAULT_PLATFORM_PATHS.items()})
    concurrency: int = Field(16, ge=1, le=128)

    @field_validator("phrases")
    @classmethod
    def _no_empty_group(cls, value: list[list[str]]) -> list[list[str]]:
        for i, group in enumerate(value, 1):
            if not [p for p in group if p.strip()]:
                raise ValueError(f"phrase group {i} is empty: every group must have a phrase")
        return value


class IntakeRules(_Model):
    """Answers by mail (admission.mail.intake): how long a form the monitor sent stays a valid authorization."""

    form_grace_days: int = Field(10, ge=0, le=365, description=(
        "A form is accepted this many days after the latest deadline of its stages (the campaign's end for a "
        "stage without one) or after the day it was issued, whichever is later"))
    superseded_after_days: int = Field(7, ge=0, le=90, description=(
        "Once a newer form for the same organization and data was issued, an older one is still accepted for "
        "this many days (a school may fill in the form of Monday's reminder and send it on Wednesday)"))


class Sender(_Model):
    """Who signs the letters: the body that runs the campaign, its unit and a telephone (official correspondence
    between state bodies names them; an automatic letter still answers «to whom do I call»)."""

    body: str = Field("Система мониторинга подготовки к приему в 1-й класс", min_length=1, max_length=300)
    unit: str = Field("", max_length=300)
    phone: str = Field("", max_length=100)
    email: str = Field("", max_length=200)

    def lines(self) -> list[str]:
        return [line for line in (self.unit, self.body, f"Телефон: {self.phone}" if self.phone else "",
                                  f"Эл. почта: {self.email}" if self.email else "") if line]


class RequestRules(_Model):
    """The requests to РЦОКО (admission.checks.operators): when a missing account becomes РЦОКО's to answer for."""

    response_working_days: int = Field(3, ge=0, le=30, description=(
        "An account a delivered request asked for (or a block it asked for) is РЦОКО's item only this many working "
        "days after the request was delivered; before that, and without a request, it is not"))


class RankingRules(_Model):
    """The МООУСО ranking's traffic light (admission.report.ranking): % of organization × stage complete."""

    green_pct: float = Field(90.0, ge=0, le=100)
    yellow_pct: float = Field(70.0, ge=0, le=100)


class PageRules(_Model):
    """The campaign page's links in the digests (admission.report.links)."""

    link_days: int = Field(14, ge=1, le=90, description=(
        "A digest's link to the recipient's organizations on the campaign page opens for this many days"))


class Plan(_Model):
    id: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z_-]*$")
    title: str
    status: Literal["approved", "example"] = "approved"
    timezone: str = "Europe/Moscow"
    campaign: Campaign
    reminder_working_days: int = Field(5, ge=0)
    stage1: Stage1Rule = Stage1Rule()
    calendar: Calendar = Calendar()
    run_at: str = Field("07:00", pattern=r"^\d\d:\d\d$", description="Daily run time, plan time zone")
    site_check: SiteCheck = SiteCheck()
    intake: IntakeRules = IntakeRules()
    page: PageRules = PageRules()
    requests: RequestRules = RequestRules()
    ranking: RankingRules = RankingRules()
    sender: Sender = Sender()
    stages: list[Stage] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("run_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        dt.time.fromisoformat(value)  # ValueError names the bad hour or minute
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def run_time(self) -> dt.time:
        return dt.time.fromisoformat(self.run_at)

    @property
    def slug(self) -> str:
        """The plan id as it appears in dag_ids (letters, digits, underscores)."""
        return self.id.replace("-", "_")

    @property
    def ordered_stages(self) -> list[Stage]:
        """The stages by number (a plan file may list them in any order): the order of every table and list."""
        return sorted(self.stages, key=lambda s: s.number)

    def stage(self, number: int) -> Stage:
        for stage in self.stages:
            if stage.number == number:
                return stage
        raise KeyError(f"plan {self.id} has no stage {number}")

    def covers(self, day: dt.date) -> bool:
        return self.campaign.start <= day <= self.campaign.end

    def summary(self) -> str:
        dated = [s for s in self.stages if s.deadline]
        last = max((s.deadline for s in dated), default=None)
        return (
            f"plan {self.id}: {len(self.stages)} stages, campaign {self.campaign.start}..{self.campaign.end}, "
            f"{len(dated)} deadlines (last {last}), time zone {self.timezone}, status {self.status}"
        )


def _semantic_problems(plan: Plan) -> tuple[list[str], set[int]]:
    """Rules that span stages; pydantic checks each stage on its own."""
    problems: list[str] = []
    named: set[int] = set()
    numbers = [s.number for s in plan.stages]
    dupes = sorted({n for n in numbers if numbers.count(n) > 1})
    for n in dupes:
        problems.append(f"stage {n} appears more than once")
        named.add(n)
    by_number = {s.number: s for s in plan.stages}
    for stage in plan.stages:
        if stage.deadline is None:
            continue
        if stage.deadline < plan.campaign.start:
            problems.append(
                f"stage {stage.number}: deadline {stage.deadline} is before the campaign start "
                f"{plan.campaign.start}"
            )
            named.add(stage.number)
        if stage.deadline > plan.campaign.end:
            problems.append(
                f"stage {stage.number}: deadline {stage.deadline} is after the campaign end {plan.campaign.end}"
            )
            named.add(stage.number)
        for dep in stage.depends_on:
            other = by_number.get(dep)
            if other is None:
                problems.append(f"stage {stage.number}: depends on stage {dep}, which the plan does not have")
                named.add(stage.number)
            elif other.deadline and stage.deadline < other.deadline:
                problems.append(
                    f"stage {stage.number}: deadline {stage.deadline} is before the deadline "
                    f"{other.deadline} of stage {dep}, on which it depends"
                )
                named.update({stage.number, dep})
    return problems, named


def _stage_numbers_in_errors(raw: object, exc: ValidationError) -> set[int]:
    numbers: set[int] = set()
    stages = raw.get("stages") if isinstance(raw, dict) else None
    for err in exc.errors():
        loc = err.get("loc", ())
        if len(loc) >= 2 and loc[0] == "stages" and isinstance(loc[1], int) and isinstance(stages, list):
            try:
                numbers.add(int(stages[loc[1]].get("number", loc[1] + 1)))
            except (AttributeError, IndexError, TypeError, ValueError):
                numbers.add(loc[1] + 1)
    return numbers


def _describe(raw: object, exc: ValidationError) -> list[str]:
    stages = raw.get("stages") if isinstance(raw, dict) else None
    out = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "stages" and isinstance(loc[1], int) and isinstance(stages, list):
            try:
                num = stages[loc[1]].get("number", loc[1] + 1)
            except (AttributeError, IndexError):
                num = loc[1] + 1
            rest = ".".join(str(p) for p in loc[2:]) or "(stage)"
            where = f"stage {num}: {rest}"
        out.append(f"{where}: {err.get('msg')}")
    return out


def parse_plan(text: str, source: str = "<plan>") -> Plan:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanError(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise PlanError(source, ["the file must be a YAML mapping with id, campaign and stages"])
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        raise PlanError(source, _describe(raw, exc), _stage_numbers_in_errors(raw, exc)) from exc
    problems, named = _semantic_problems(plan)
    if problems:
        raise PlanError(source, problems, named)
    return plan


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(str(path), [f"cannot read: {exc}"]) from exc
    return parse_plan(text, str(path))


def plan_files(plans_dir: str | Path | None = None) -> list[Path]:
    folder = Path(plans_dir) if plans_dir else PLANS_DIR
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in {".yaml", ".yml"})


def load_valid_plans(plans_dir: str | Path | None = None) -> tuple[list[Plan], list[PlanError]]:
    """Every valid plan of the folder, and the errors of the others: one broken file must not take
    the other campaigns' DAGs down. A second file with an id already used is an error; the first stands."""
    plans: list[Plan] = []
    errors: list[PlanError] = []
    for path in plan_files(plans_dir):
        try:
            plan = load_plan(path)
        except PlanError as exc:
            errors.append(exc)
            continue
        if any(p.id == plan.id for p in plans):
            errors.append(PlanError(str(path), [f"plan id {plan.id} is already used by another file"]))
            continue
        plans.append(plan)
    return plans, errors


def load_plans(plans_dir: str | Path | None = None) -> list[Plan]:
    """All plans of the folder; raises on the first invalid one (a broken plan must not be half-served)."""
    plans = [load_plan(p) for p in plan_files(plans_dir)]
    ids = [p.id for p in plans]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise PlanError(str(plans_dir or PLANS_DIR), [f"plan id {i} is used by more than one file" for i in dupes])
    return plans
