"""What the tests share besides fixtures: small data files, the test registry, a real SMTP sink on loopback,
the Airflow environment of a task, the day's snapshot."""

from __future__ import annotations

import csv
import datetime as dt
import http.server
import io
import ipaddress
import ssl
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_csv(path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8",
              sep: str = ";") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    from openpyxl import Workbook

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


ORG_HEADER = ["Код", "Тип", "Наименование", "Код МООУСО", "Руководитель", "E-mail руководителя", "Официальный сайт",
              "ИНН", "Куратор МООУСО", "E-mail куратора"]


def registry(folder: Path, extra: list[list[object]] | None = None) -> Path:
    """A small registry: ministry, regional center, one МООУСО with two schools and one preschool."""
    rows = [
        ["MIN", "РОИВ", "Министерство", "", "Тестов Т.Т.", "min@test.example", "", "", "", ""],
        ["RC", "РЦОКО", "РЦОКО", "", "Центров Ц.Ц.", "rc@test.example", "", "", "", ""],
        ["M1", "МООУСО", "Управление образования", "", "Главнов Г.Г.", "uo@test.example", "https://uo.test.example",
         "", "", ""],
        ["S1", "ОО", "Школа № 1", "M1", "Первова П.П.", "s1@test.example", "https://s1.test.example", "1234567894",
         "Куратова К.К.", "cur@test.example"],
        ["S2", "ОО", "Школа № 2", "M1", "Второв В.В.", "s2@test.example", "https://s2.test.example", "1234567894",
         "", ""],
        ["D1", "ДОУ", "Детский сад № 1", "M1", "Садова С.С.", "d1@test.example", "", "", "", ""],
        *(extra or []),
    ]
    return write_csv(folder / "organizations.csv", ORG_HEADER, rows)


class SmtpSink:
    """A real SMTP server on loopback (aiosmtpd) that records what reaches it and can misbehave."""

    def __init__(self):
        import asyncio
        import socket
        import threading

        from aiosmtpd.controller import Controller

        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()  # recipients answered with 550
        self.defer: set[str] = set()  # recipients answered with 451
        self.drop_on_rcpt: set[str] = set()  # close the connection when these are named (once each)
        self.stall_on_rcpt: dict[str, float] = {}  # answer these only after so many seconds (once each)
        # Take the message, then hold the reply until `release` is set (once each): the sender cannot know.
        self.hold_after_data: set[str] = set()
        self.release = threading.Event()
        self.connections = 0
        sink = self

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                sink.connections += 1
                session.host_name = hostname
                return responses

            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                if address in sink.drop_on_rcpt:
                    sink.drop_on_rcpt.discard(address)
                    server.transport.close()
                    return "421 closing"
                if address in sink.stall_on_rcpt:
                    await asyncio.sleep(sink.stall_on_rcpt.pop(address))
                if address in sink.refuse:
                    return "550 5.1.1 mailbox unavailable"
                if address in sink.defer:
                    return "451 4.3.0 try again later"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                sink.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
                                      or envelope.content))
                held = sink.hold_after_data & set(envelope.rcpt_tos)
                if held:
                    sink.hold_after_data -= held
                    for _ in range(600):  # at most 30 s
                        if sink.release.is_set():
                            break
                        await asyncio.sleep(0.05)
                return "250 Message accepted"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, decode_data=False)
        self.controller.start()

    def conn_json(self, **extra: str) -> str:
        """The `admission_smtp` connection (environment form) pointing at this sink."""
        import json

        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"ssl": "false", "starttls": "false", "from_email": "monitor@region.example",
                                     **extra}})

    def messages(self):
        from email import message_from_bytes, policy

        return [message_from_bytes(raw, policy=policy.default) for _, _, raw in self.received]

    def recipients(self) -> list[str]:
        return sorted(r for _, rcpts, _ in self.received for r in rcpts)

    def stop(self):
        self.release.set()
        self.controller.stop()


def airflow_env(data_dir: Path, output_dir: Path, sink: SmtpSink | None = None, **smtp_extra: str) -> dict[str, str]:
    """The Variables (and SMTP connection) a task reads, as environment variables."""
    env = {"AIRFLOW_VAR_ADMISSION_DATA_DIR": str(data_dir), "AIRFLOW_VAR_ADMISSION_OUTPUT_DIR": str(output_dir)}
    if sink is not None:
        env["AIRFLOW_CONN_ADMISSION_SMTP"] = sink.conn_json(**smtp_extra)
    return env


def set_airflow_env(monkeypatch, *args, **kwargs) -> None:
    for key, value in airflow_env(*args, **kwargs).items():
        monkeypatch.setenv(key, value)


def take_snapshot(data_dir: Path, output_dir: Path, as_of: str, plan_file: str = "2020-2021.yaml") -> dict:
    """What the day's ``ingest_<plan>`` DAG does before the checks: the snapshot the stage, mail, report and
    operator DAGs read (they never read the data folder)."""
    import datetime as dt

    from admission import jobs
    from admission.plan import load_plan

    settings = jobs.Settings(data_dir=Path(data_dir), output_dir=Path(output_dir), store_url="sqlite://")
    return jobs.ingest(settings, load_plan(REPO / "include" / "plans" / plan_file), dt.date.fromisoformat(as_of))


def ca_and_cert(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA (PEM) and a server certificate for ``names`` signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA of the admission monitor")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


PRIEM = ("<html><head><title>Будущим первоклассникам</title></head><body><h1>Прием в 1 класс</h1>"
         "<p>Заявления о приёме в первый класс подаются в электронной форме через портал Госуслуг (ЕПГУ).</p>"
         "</body></html>")


class Site:
    """One site on its own loopback address: ``pages`` maps a path to (status, headers, body) or a callable."""

    def __init__(self, pages: dict, host: str = "127.0.0.1", tls: tuple | None = None):
        site = self
        self.hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                site.hits.append(self.path)
                page = pages.get(self.path, (404, {}, b"not found"))
                if callable(page):
                    page = page(self)
                    if page is None:
                        return
                status, headers, body = page
                body = body.encode("utf-8") if isinstance(body, str) else body
                self.send_response(status)
                headers = {"Content-Type": "text/html; charset=utf-8", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# A «Решаем вместе» block as Госвеб puts it on every page: an iframe and a script (nothing a reader sees matches the
# admission phrases) and links out to the portal.
GOSWEB_WIDGET = ('<div class="pos-widget"><iframe src="https://pos.gosuslugi.ru/og/widget"></iframe>'
                 '<script>var w = "Запись в 1 класс в электронной форме";</script>'
                 '<a href="https://www.gosuslugi.ru/">Госуслуги</a> <a href="https://pos.gosuslugi.ru/">Решаем вместе</a>'
                 '<p>Не убрали снег, яма на дороге, не горит фонарь? Сообщите о проблеме</p></div>')
GOSWEB_MENU = [("/svedeniya-ob-obrazovatelnoy-organizatsii/", "Сведения об образовательной организации"),
               ("/roditelyam-i-uchenikam/", "Родителям и ученикам"), ("/pedagogam/", "Педагогам"),
               ("/novosti/", "Новости"), ("/meropriyatiya/", "Мероприятия"), ("/fotogalereya/", "Фотогалерея"),
               ("/kontakty/", "Контакты"), ("/obrascheniya/", "Обращения граждан"), ("/vakansii/", "Вакансии"),
               ("/search/", "Поиск"), ("/special/", "Версия для слабовидящих")]


def gosweb_pages(leaf: str = "/roditelyam-i-uchenikam/poleznaya-informatsiya/buduschim-pervoklassnikam/",
                 middle: str = "/roditelyam-i-uchenikam/poleznaya-informatsiya/", news: int = 24,
                 answer: str | None = None) -> dict:
    """A school site shaped like Госвеб's: a menu of 11 sections, ``news`` news items whose titles speak to parents
    («Родителям о каникулах»), the widget on every page, and the admission information three links deep
    (home → «Родителям и ученикам» → «Полезная информация» → «Будущим первоклассникам»): 30+ links per page."""

    def page(title: str, *links: tuple[str, str], body: str = "") -> tuple[int, dict, str]:
        menu = " ".join(f'<a href="{h}">{t}</a>' for h, t in GOSWEB_MENU)
        items = " ".join(f'<a href="/novosti/{i}/">Родителям о событиях недели {i}: прием у врача, классный час</a>'
                         for i in range(1, news + 1))
        own = " ".join(f'<a href="{h}">{t}</a>' for h, t in links)
        return (200, {}, f"<html><head><title>{title}</title></head><body><nav>{menu}</nav><main><h1>{title}</h1>"
                         f"{own}{body}</main><aside>{items}</aside>{GOSWEB_WIDGET}</body></html>")

    pages = {
        "/": page("МБОУ «Школа № 1»", body="<p>Добро пожаловать на официальный сайт школы</p>"),
        "/roditelyam-i-uchenikam/": page("Родителям и ученикам", (middle, "Полезная информация"),
                                         ("/roditelyam-i-uchenikam/raspisanie/", "Расписание уроков"),
                                         ("/roditelyam-i-uchenikam/pitanie/", "Питание")),
        middle: page("Полезная информация", (leaf, "Будущим первоклассникам"),
                     ("/roditelyam-i-uchenikam/poleznaya-informatsiya/bezopasnost/", "Безопасность")),
        leaf: answer or page("Будущим первоклассникам",
                             body="<p>Прием в 1 класс на 2026/27 учебный год. Заявление можно подать в электронной "
                                  "форме через портал Госуслуг.</p>"),
        "/svedeniya-ob-obrazovatelnoy-organizatsii/": page("Сведения об образовательной организации",
                                                           ("/svedeniya-ob-obrazovatelnoy-organizatsii/dokumenty/",
                                                            "Документы")),
        "/svedeniya-ob-obrazovatelnoy-organizatsii/dokumenty/": page("Документы", body="<p>Устав, лицензия</p>"),
    }
    for i in range(1, news + 1):
        pages[f"/novosti/{i}/"] = page(f"Новость {i}", body="<p>Родителям: новости школы</p>")
    for href, title in GOSWEB_MENU:
        pages.setdefault(href, page(title))
    return pages


def drip(handler) -> None:
    """A page that sends its head, then one byte every 0.3 s for a minute: every read returns in time, the page
    never ends within any budget (a ``Site`` page callable)."""
    import time

    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.end_headers()
    try:
        handler.wfile.write(PRIEM.encode("utf-8")[:200])
        for _ in range(200):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.3)
    except (BrokenPipeError, ConnectionResetError):
        pass
