"""The check registry: every check a plan can name, with the datasets it reads and the function that runs it.

A plan's stage says ``check: <name>``; everything that depends on *which* stage does what (the datasets
a check reads, which stages the operator request to РЦОКО concerns, which stages informing rows may
name) comes from here and from the plan, never from a stage number written in Python, so a plan with
renumbered or reordered stages works. The functions are named, not imported: the plan is validated at
DAG parse time, where pandas must not be imported (``run`` imports :mod:`admission.checks.stages`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

CHECKS_MODULE = "admission.checks.stages"


@dataclass(frozen=True)
class Check:
    name: str
    datasets: tuple[str, ...]  # besides the registry of organizations, which every check reads
    function: str  # a function of admission.checks.stages: (Context, orgs) -> CheckResult
    title: str  # Russian, for the DAG docs
    sites: bool = False  # the check also reads the day's website check (admission.checks.sites)
    form: tuple[str, ...] = ()  # what the organization itself fills in: the sheets of its form (admission.mail.forms)
    requests: bool = False  # the check also reads what the requests to РЦОКО named and when they were delivered
    depends: bool = False  # the check also reads the stored daily statuses of the stages its stage depends on

    def run(self) -> Callable:
        """The check's function, imported when a stage is judged (never at parse time)."""
        return getattr(importlib.import_module(CHECKS_MODULE), self.function)


CHECKS: dict[str, Check] = {c.name: c for c in (
    Check("esia_informing", ("informing",), "check_esia_informing", "информирование о регистрации в ЕСИА",
          form=("informing",)),
    Check("public_information", ("informing",), "check_public_information",
          "информация на сайте (автоматическая проверка сайтов или строки сведений об информировании) и на стенде", sites=True,
          form=("informing",)),
    Check("parent_meetings", ("informing",), "check_parent_meetings",
          "родительские собрания с протоколами (строки сведений об информировании этого этапа)", form=("informing",)),
    Check("module_staff", ("module_staff",), "check_module_staff", "ответственные МООУСО за модуль",
          form=("module_staff",)),
    Check("operators", ("operators",), "check_operators", "списки главных операторов и операторов ОО",
          form=("operators",)),
    Check("accounts", ("operators", "accounts"), "check_accounts", "учетные записи операторов, выданные РЦОКО",
          requests=True),
    Check("school_data", ("school_cards", "first_grade_classes", "operators"), "check_school_data",
          "карточка ОО и 1-е классы", form=("school_cards", "first_grade_classes")),
    Check("approvals", ("approvals", "school_cards", "first_grade_classes"), "check_approvals",
          "утверждение сведений МООУСО", form=("approvals",), depends=True),
)}


@dataclass(frozen=True)
class MailRight:
    """Who may change a dataset by mail, with a signed form (contract section 6)."""

    kinds: tuple[str, ...]  # kinds of organizations whose form may carry the dataset
    scope: str = "own"  # "own": rows of the form's organization; "schools": rows of the schools it supervises


# Contract section 6: an ОО/ДОУ its own informing, meetings, operators, school card and first classes; a МООУСО
# its module staff and the approvals of its own schools; nobody the registry (``organizations``), which only the
# admin's data folder changes, nor the accounts that РЦОКО issues. A dataset not listed here is never read from
# mail, whatever a form or a sheet says.
MAIL_RIGHTS: dict[str, MailRight] = {
    "informing": MailRight(("ОО", "ДОУ")),
    "operators": MailRight(("ОО",)),
    "school_cards": MailRight(("ОО",)),
    "first_grade_classes": MailRight(("ОО",)),
    "module_staff": MailRight(("МООУСО",)),
    "approvals": MailRight(("МООУСО",), scope="schools"),
}


def mail_datasets(kind: str) -> tuple[str, ...]:
    """The datasets an organization of this kind may submit by mail (the sheets its form may have)."""
    return tuple(name for name, right in MAIL_RIGHTS.items() if kind in right.kinds)


def form_owner_kind(dataset: str) -> str:
    """"own" or "schools": whose rows the dataset's sheet holds in a form (``MAIL_RIGHTS``)."""
    right = MAIL_RIGHTS.get(dataset)
    return right.scope if right else "own"

# The operator request to РЦОКО is about the stages whose checks these are (list, then accounts).
REQUEST_CHECKS = ("operators", "accounts")
# The checks that read the website check (their stages are judged on its newest finished check).
SITE_CHECKS = tuple(name for name, check in CHECKS.items() if check.sites)
# The stage that issues the accounts: its deadline is the request's deadline.
REQUEST_DEADLINE_CHECK = "accounts"


# Read by every stage: an organization's extension or exemption (admission.checks.stages.apply_exemptions).
EVERY_STAGE = ("exemptions",)


def datasets_of(check: str) -> list[str]:
    return [*CHECKS[check].datasets, *EVERY_STAGE]


def stages_with(plan, checks: tuple[str, ...]) -> list:
    """The plan's stages whose check is one of ``checks``, by number."""
    return [s for s in plan.ordered_stages if s.check in checks]


def informing_stages(plan) -> tuple[int, ...]:
    """Stage numbers an ``informing`` row may name: the plan's stages whose check reads informing."""
    return tuple(s.number for s in plan.ordered_stages
                 if "informing" in CHECKS[s.check].datasets)
