"""The demo region's official websites, served on loopback, so that the demo's website check (stage 2) reads real
pages over HTTP and makes no request beyond 127.0.0.1.

The demo registry (admission.tools.demo) gives every МООУСО and school an address ``http://127.0.0.1:<port>/<site>/``;
this server answers for all of them. What a site holds depends on the organization's number, so that the demo
shows every kind of answer (numbers within a МООУСО, as in admission.tools.demo):
  МООУСО 1, ОО 1, 5, 9: a «Госвеб»-like site, the admission page three links deep (ОО 9 has no «сайт» row in
      ``informing``: the site check alone makes its site requirement complete);
  МООУСО 2, ОО 2, 6, 10: an own site in Windows-1251 with «Сведения об образовательной организации»;
  МООУСО 3, ОО 3, 7, 11: a site with news and contacts only (not found; МООУСО 3 has no row either: its
      overdue notice quotes the check);
  ОО 4: the site answers 404;  ОО 8: an admission page that does not say how to apply electronically;
  ОО 12: the address redirects to a new site that publishes it.
Started by ``admission day`` and ``make airflow`` when ``ADMISSION_DEMO_SITES`` names a port (the Makefile sets
it, together with the allow-list entry ``127.0.0.1:<port>`` in the Variable ``admission_site_check``).
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import re
import threading
import urllib.request
from collections.abc import Iterator

log = logging.getLogger(__name__)

DEFAULT_PORT = 8399
MARKER = "/_demo-sites"  # answers "admission demo sites": a second demo run reuses a server already running

_SITE = re.compile(r"^/(?:school(?P<s>\d+)|edu)-(?P<slug>[a-z]+)/")
_MOOYSO = {"zarechny": 1, "ozerny": 2, "svetlogorsk": 3}  # admission.tools.demo.DISTRICTS, in order


def sites_url(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}"


def kind_of(school: int | None, mooyso: int) -> str:
    """Which demo site an organization has (school None: the МООУСО's own site)."""
    if school is None:
        return {1: "gosweb", 2: "cp1251", 3: "plain"}[mooyso]
    if school == 4:
        return "missing"
    if school == 8:
        return "vague"
    if school == 12:
        return "moved"
    return {1: "gosweb", 2: "cp1251", 3: "plain", 0: "plain"}[school % 4]


def _html(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang=\"ru\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<script>var analytics = 'прием в 1 класс в электронной форме';</script></head>"
            f"<body><h1>{title}</h1>{body}</body></html>")


def _links(base: str, items: list[tuple[str, str]]) -> str:
    return "<ul>" + "".join(f'<li><a href="{base}{href}">{text}</a></li>' for href, text in items) + "</ul>"


PRIEM_TEXT = ("<p>Прием в 1 класс на 2020/2021 учебный год начинается 15 января 2020 года. Заявление о приеме "
              "подается родителями (законными представителями) в электронной форме через Единый портал "
              "государственных услуг (Госуслуги) после регистрации в ЕСИА, либо лично в школе.</p>")


def page(path: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a demo page."""
    if path == MARKER:
        return 200, {"Content-Type": "text/plain"}, b"admission demo sites"
    if path == "/robots.txt":
        return 200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /private/\n"
    found = _SITE.match(path)
    if not found:
        return 404, {"Content-Type": "text/html; charset=utf-8"}, _html("Страница не найдена", "").encode()
    school = int(found["s"]) if found["s"] else None
    base = found.group(0)
    rest = path[len(base):].split("?", 1)[0]
    kind = kind_of(school, _MOOYSO.get(found["slug"], 3))
    name = f"Школа № {school}" if school else "Управление образования"
    html = {"Content-Type": "text/html; charset=utf-8", "ETag": f'"{kind}-{school}-v1"',
            "Last-Modified": "Mon, 09 Dec 2019 09:00:00 GMT"}
    not_found = (404, html, _html("Страница не найдена", "").encode())
    if kind == "missing":
        return not_found
    if kind == "moved":
        if not rest.startswith("new/"):
            return 301, {"Location": f"{base}new/", "Content-Type": "text/html"}, b""
        kind, base, rest = "gosweb", base + "new/", rest[4:]
    if kind in ("gosweb", "vague"):
        pages = {
            "": _links(base, [("roditelyam-i-uchenikam/", "Родителям и ученикам"), ("novosti/", "Новости"),
                              ("sveden/", "Сведения об образовательной организации")]),
            "roditelyam-i-uchenikam/": _links(base, [("roditelyam-i-uchenikam/poleznaya-informatsiya/",
                                                      "Полезная информация")]),
            "roditelyam-i-uchenikam/poleznaya-informatsiya/": _links(
                base, [("roditelyam-i-uchenikam/poleznaya-informatsiya/buduschim-pervoklassnikam/",
                        "Будущим первоклассникам")]),
            "roditelyam-i-uchenikam/poleznaya-informatsiya/buduschim-pervoklassnikam/": (
                PRIEM_TEXT if kind == "gosweb" else "<p>Прием в 1 класс. Информация появится позднее.</p>"),
            "novosti/": "<p>Новости школы: новогодний утренник, спортивные соревнования.</p>",
            "sveden/": "<p>Основные сведения. Структура и органы управления.</p>",
        }
        if rest not in pages:
            return not_found
        return 200, html, _html(f"{name}: {rest or 'главная'}", pages[rest]).encode()
    if kind == "cp1251":
        pages = {
            "": '<a href="sveden/">Сведения об образовательной организации</a> <a href="kontakty/">Контакты</a>',
            "sveden/": '<a href="../priem/">Прием в 1 класс</a> <a href="../sveden/document/">Документы</a>',
            "sveden/document/": "<p>Устав, лицензия.</p>",
            "priem/": PRIEM_TEXT,
            "kontakty/": "<p>Телефон, адрес.</p>",
        }
        if rest not in pages:
            return not_found
        body = (f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
                f"<title>{name}</title></head><body>{pages[rest]}</body></html>")
        return 200, {"Content-Type": "text/html", "ETag": html["ETag"]}, body.encode("cp1251")
    pages = {"": _links(base, [("news/", "Новости"), ("contacts/", "Контакты"), ("history/", "История")]),
             "news/": "<p>Новогодний концерт. Олимпиада по математике.</p>",
             "contacts/": "<p>Адрес, телефон, e-mail.</p>", "history/": "<p>Школа основана в 1965 году.</p>"}
    if rest not in pages:
        return not_found
    return 200, html, _html(f"{name}: {rest or 'главная'}", pages[rest]).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        status, headers, body = page(self.path)
        if status == 200 and headers.get("ETag") and self.headers.get("If-None-Match") == headers["ETag"]:
            status, body = 304, b""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet: the demo's output is the day's table
        pass


def _ours(port: int) -> bool:
    try:
        with urllib.request.urlopen(sites_url(port) + MARKER, timeout=2) as resp:  # noqa: S310 (loopback)
            return resp.read() == b"admission demo sites"
    except OSError:
        return False


@contextlib.contextmanager
def serving(port: int = DEFAULT_PORT) -> Iterator[str | None]:
    """The demo sites on 127.0.0.1:<port> while the block runs; yields the base URL, or None when the port is
    taken by something else (the website check then reports the demo sites unreachable)."""
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    except OSError:
        if _ours(port):
            yield sites_url(port)  # another demo run serves them already
        else:
            log.warning("port %s is taken: the demo websites are not served, the website check will say so", port)
            yield None
        return
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield sites_url(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def serving_from_env() -> contextlib.AbstractContextManager:
    """``serving(port)`` when the environment's ``ADMISSION_DEMO_SITES`` names a port (the Makefile's demo
    setting), else nothing."""

    value = os.environ.get("ADMISSION_DEMO_SITES", "").strip()
    if not value.isdigit():
        return contextlib.nullcontext(None)
    return serving(int(value))
