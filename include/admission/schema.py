"""Datasets of the data contract (section 2): keys, Russian headers, types.

One table drives the reader (header aliases, parsing), the GX suites
(required columns) and the Russian wording of findings, so that the
contract is written down once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

ColType = Literal["str", "date", "bool", "int", "emails"]


@dataclass(frozen=True)
class Column:
    key: str
    ru: str
    required: bool = False
    type: ColType = "str"
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    name: str
    ru: str
    columns: tuple[Column, ...]

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.key for c in self.columns if c.required]

    def column(self, key: str) -> Column:
        for col in self.columns:
            if col.key == key:
                return col
        raise KeyError(key)

    def header_map(self) -> dict[str, str]:
        """Normalized header (English key, Russian header or alias) -> key."""
        out: dict[str, str] = {}
        for col in self.columns:
            for name in (col.key, col.ru, *col.aliases):
                out[normalize_header(name)] = col.key
        return out


def normalize_header(name: object) -> str:
    return " ".join(str(name).replace("\ufeff", "").replace("ё", "е").replace("Ё", "Е").split()).casefold()


C = Column
DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "organizations",
            "Реестр участников",
            (
                C("org_id", "Код", True),
                C("kind", "Тип", True),
                C("name", "Наименование", True),
                C("parent_id", "Код МООУСО"),
                C("head_name", "Руководитель", True),
                C("head_email", "E-mail руководителя", True, "emails"),
                C("website", "Официальный сайт"),
                C("inn", "ИНН"),
                C("curator_name", "Куратор МООУСО"),
                C("curator_email", "E-mail куратора", False, "emails"),
            ),
        ),
        Dataset(
            "school_cards",
            "Карточка ОО",
            (
                C("org_id", "Код ОО", True),
                C("full_name", "Полное наименование", True),
                C("short_name", "Краткое наименование"),
                C("inn", "ИНН", True),
                C("kpp", "КПП", True),
                C("ogrn", "ОГРН", True),
                C("address", "Адрес", True),
                C("phone", "Телефон", True),
                C("email", "E-mail", True),
                C("website", "Сайт", True),
                C("head_name", "Руководитель", True),
                C("updated_at", "Дата изменения", False, "date"),
            ),
        ),
        Dataset(
            "first_grade_classes",
            "Первые классы",
            (
                C("org_id", "Код ОО", True),
                C("class_name", "Класс", True),
                C("capacity", "Количество мест", True, "int"),
                C("vacancies", "Вакантные места", True, "int"),
                C("entered_at", "Дата внесения", False, "date"),
            ),
        ),
        Dataset(
            "approvals",
            "Утверждение сведений",
            (
                C("org_id", "Код ОО", True),
                C("status", "Статус", True),
                C("approved_by", "Утвердил"),
                C("approved_at", "Дата утверждения", False, "date"),
            ),
        ),
        Dataset(
            "module_staff",
            "Ответственные МООУСО",
            (
                C("org_id", "Код МООУСО", True),
                C("full_name", "ФИО", True),
                C("position", "Должность", True),
                C("email", "E-mail", True),
                C("replaced", "Замена", True, "bool"),
                C("order_no", "№ приказа"),
                C("order_date", "Дата приказа", False, "date"),
            ),
        ),
        Dataset(
            "operators",
            "Операторы ОО",
            (
                C("org_id", "Код ОО", True),
                C("full_name", "ФИО", True),
                C("position", "Должность", True),
                C("role", "Роль", True),
                C("email", "E-mail", True),
                C("phone", "Телефон"),
                C("order_no", "№ приказа"),
                C("order_date", "Дата приказа", False, "date"),
            ),
        ),
        Dataset(
            "accounts",
            "Учетные записи",
            (
                C("org_id", "Код ОО", True),
                C("full_name", "ФИО", True),
                C("login", "Логин", True),
                C("status", "Статус", True),
                C("issued_at", "Дата выдачи", False, "date"),
            ),
        ),
        Dataset(
            "informing",
            "Информирование",
            (
                C("org_id", "Код", True),
                C("stage", "Этап", True, "int"),
                C("channel", "Канал", True),
                C("event_date", "Дата", True, "date"),
                C("protocol_no", "№ протокола"),
                C("attendees", "Присутствовало", False, "int"),
                C("url", "Ссылка"),
                C("topics", "Темы"),
            ),
        ),
        Dataset(
            # Per organization × stage, granted by the ministry or a МООУСО: a later deadline, or the stage not
            # required of it (admission.checks.stages.apply_exemptions). Region-wide changes are the plan's.
            "exemptions",
            "Продления и освобождения",
            (
                C("org_id", "Код", True),
                C("stage", "Этап", True, "int"),
                C("kind", "Вид", True),
                C("until", "Срок продлен до", False, "date"),
                C("reason", "Основание", True),
                C("granted_by", "Кем предоставлено", True),
            ),
        ),
    )
}
EXEMPTION_KINDS = ("продление", "не требуется")

ORG_KINDS = {"МООУСО", "ОО", "ДОУ", "ДОО", "РЦОКО", "РОИВ"}
KIND_ALIASES = {"ДОО": "ДОУ"}
APPROVAL_STATUSES = ("утверждено", "на доработке", "не рассмотрено")
ACCOUNT_STATUSES = ("выдана", "запрошена", "заблокирована")
OPERATOR_ROLES = ("главный оператор", "оператор")
CHIEF_OPERATOR = OPERATOR_ROLES[0]
CHANNELS = ("сайт", "стенд", "собрание", "рассылка", "другое")
TOPICS = ("порядок и сроки", "возраст", "ЕСИА")

# Codes (org_id, parent_id) longer than this cannot be stored (the store's code columns) or be real codes:
# the reader reports them instead of letting the database refuse a whole day's results.
CODE_MAX = 64
CODE_COLUMNS = frozenset({"org_id", "parent_id"})


def cell_value(value: object) -> object:
    """A frame's value as people read it: None when missing (None, pandas NA/NaT, NaN), да/нет for booleans."""
    if value is None or type(value).__name__ in ("NAType", "NaTType") or (isinstance(value, float) and value != value):
        return None  # missing (None, pandas NA/NaT, NaN)
    if isinstance(value, bool):
        return "да" if value else "нет"
    return value


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
