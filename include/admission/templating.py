"""One Jinja environment for every text the product writes from a template: mail, the report, the campaign page
and the DAG docs (``templates/<mail|report|web|dags>/``).

HTML templates autoescape (names and e-mails come from files people fill in); text and Markdown ones do not.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from admission import wording

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1024)
def ru_date(day: dt.date | None) -> str:
    """A date as an official writes it: 15.01.2020; «—» for none."""
    return day.strftime("%d.%m.%Y") if day else "—"


def stage_list(stages: list[int]) -> str:
    """«этап 5» / «этапы 5, 6»."""
    return ("этап " if len(stages) == 1 else "этапы ") + ", ".join(map(str, stages))


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # package files: no stat() per message (it was a tenth of a national render)
    )
    env.filters["ru_date"] = ru_date
    env.filters["lower_first"] = wording.lower_first
    env.filters["plural"] = wording.plural
    env.filters["percent"] = wording.percent
    env.globals["stage_label"] = stage_list
    env.globals["salutation"] = wording.salutation
    env.globals["words"] = wording  # counted nouns: {{ n | plural(words.DAYS) }}
    return env


def render(name: str, context: dict) -> str:
    """The template ``name`` (a path under templates/, e.g. ``mail/digest.txt.j2``) filled with ``context``."""
    return environment().get_template(name).render(context)
