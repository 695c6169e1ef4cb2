"""How the product words things in Russian: plurals, salutations, the sender's signature.

Plural forms follow the CLDR rule for Russian (Babel's ``plural_form``: one / few / many), so «1 день, 2 дня,
5 дней, 11 дней, 21 день, 22 дня, 25 дней» comes out right for every count in every text. Salutations follow the
custom of official correspondence between state bodies: «Уважаемый Кирилл Борисович!» — first name and
patronymic, the adjective agreeing with the patronymic; a name that does not have both is addressed
«Уважаемый коллега!» rather than guessed at.
"""

from __future__ import annotations

from functools import lru_cache

from babel import Locale

# Counted nouns of the product: (one, few, many).
DAYS = ("день", "дня", "дней")
WORKING_DAYS = ("рабочий день", "рабочих дня", "рабочих дней")
CHANGES = ("изменение", "изменения", "изменений")
ORGANIZATIONS = ("организация", "организации", "организаций")
EDU_ORGANIZATIONS = ("образовательная организация", "образовательные организации", "образовательных организаций")
ACCOUNTS = ("учетная запись", "учетные записи", "учетных записей")
FILES = ("файл", "файла", "файлов")
PAGES = ("страница", "страницы", "страниц")
ROWS = ("строка", "строки", "строк")
LETTERS = ("письмо", "письма", "писем")
PROBLEMS = ("проблема", "проблемы", "проблем")
SITES = ("сайт", "сайта", "сайтов")


@lru_cache(maxsize=1)
def _russian() -> Locale:
    return Locale.parse("ru")


def plural_word(n: int, forms: tuple[str, str, str]) -> str:
    """The form of the noun that goes with ``n`` (CLDR's Russian rule; fractions take «few»)."""
    category = _russian().plural_form(n)
    return {"one": forms[0], "few": forms[1]}.get(category, forms[2])


def plural(n: int, forms: tuple[str, str, str] | list[str]) -> str:
    """«21 день», «22 дня», «25 дней»."""
    return f"{n} {plural_word(n, tuple(forms))}"


_MALE = ("ович", "евич", "ич", "оглы")  # Turkic patronymics: «оглы» (son), «кызы» (daughter)
_FEMALE = ("овна", "евна", "ична", "инична", "кызы")


def salutation(full_name: str) -> str:
    """«Уважаемый Кирилл Борисович!» from «Медведев Кирилл Борисович» (registry order: surname, name,
    patronymic); «Уважаемый коллега!» when the name has no recognizable patronymic."""
    parts = full_name.split()
    if len(parts) == 4 and parts[3].casefold() in ("оглы", "кызы"):  # «Мамедов Рашид Ильхам оглы»
        parts = [parts[0], parts[1], f"{parts[2]} {parts[3]}"]
    if len(parts) == 3:
        name, patronymic = parts[1], parts[2]
        low = patronymic.casefold()
        if low.endswith(_FEMALE):
            return f"Уважаемая {name} {patronymic}!"
        if low.endswith(_MALE):
            return f"Уважаемый {name} {patronymic}!"
    return "Уважаемый коллега!"


def lower_first(text: str) -> str:
    """A phrase of the plan («До 27.12.2019») inside a sentence («срок по плану: до 27.12.2019»)."""
    if len(text) >= 2 and text[:2].isupper():  # an abbreviation («АИС») keeps its capitals
        return text
    return text[:1].lower() + text[1:]


def percent(value: float | None) -> str:
    """«70,4 %» as Russian writes a share (decimal comma, a space before the sign); «—» for none."""
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:.1f}".replace(".", ",").removesuffix(",0") + " %"
