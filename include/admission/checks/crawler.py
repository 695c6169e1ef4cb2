"""The website check of stage 2: is the procedure of admission in electronic form published on a site?

A polite, bounded crawler on ``requests``: for one site, fetch the start page and follow same-site links
(admission-like ones first) up to a depth and a page count, and look for the plan's phrase sets in the
visible text. Every answer is evidence an official can check: the page and the phrases found, or why not,
in Russian («не найдена … проверено 14 страниц», «сайт не ответил за 10 с», «robots.txt запрещает…»).

Safety, since a site address comes from untrusted data: only http/https; the host's addresses are
resolved and a loopback, private, link-local, multicast or reserved one is refused (so is a redirect to
one; ``allow_hosts`` exists for tests only); redirects are followed by hand, each hop checked; a response
is streamed and dropped past ``max_bytes``; HTML is parsed by libxml2 (lxml: linear in the page's size, no network,
nothing runs — the standard library's ``html.parser`` before Python 3.11.13 is quadratic on unclosed tags, and
one 2 MB page then costs hours);
TLS is verified (``ca_bundle`` adds the national CA), a TLS failure is reported as such and never retried
without verification. The check is made again when a connection is opened, on the address the connection
then uses (:func:`_guarded_pools`), so a DNS answer that changes after the first check (DNS rebinding) cannot
reach an internal address either. An IPv6 address that carries an IPv4 one (NAT64 ``64:ff9b::/96``, 6to4,
Teredo, IPv4-mapped) is judged by the IPv4 address it reaches.

Proxies: the worker's ``HTTP(S)_PROXY`` and ``.netrc`` are ignored (``trust_env = False``): through a proxy the
connection goes to the proxy, and the rebinding guard would check the wrong address. A network that reaches
sites only through a proxy names it in the Variable ``admission_site_check`` (``proxy``); the address is then
still checked before every request and every redirect, but the proxy resolves the name again, so the proxy
itself must refuse internal addresses (the README says so).

How a person looks for the page: links are ranked by what their text and address say (:func:`link_score`:
admission and first-graders first, then the sections for parents and the school's documents; news archives,
galleries, calendars, files and logins last), and on a known platform (Госвеб, ``*.gosuslugi.ru``) its usual
sections are asked first (``site_check.platform_paths`` in the plan). A site that moved and redirects to its
new address (an old domain to Госвеб) is crawled on the address it moved to.

Politeness: a clear User-Agent naming the monitor, robots.txt honoured, at most one request at a time per
host, urllib3 ``Retry`` with backoff on connect errors, 429 and 5xx (``Retry-After`` honoured, capped),
connect and read timeouts, bounded total concurrency (a thread pool, one Session per thread).
"""

from __future__ import annotations

import codecs
import datetime as dt
import heapq
import ipaddress
import itertools
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote, urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import requests
import urllib3
from charset_normalizer import from_bytes
from lxml import etree
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from admission.plan import DEFAULT_LINK_HINTS, DEFAULT_PLATFORM_PATHS, DEFAULT_SITE_PHRASES

DEFAULT_PHRASES: tuple[tuple[str, ...], ...] = tuple(tuple(g) for g in DEFAULT_SITE_PHRASES)
LINK_HINTS: tuple[str, ...] = tuple(DEFAULT_LINK_HINTS)
PLATFORM_PATHS: tuple[tuple[str, tuple[str, ...]], ...] = tuple((k, tuple(v)) for k, v in DEFAULT_PLATFORM_PATHS.items())


LINKS_PER_PAGE = 300  # a page of a million links must not grow the queue without bound


def fold(text: str) -> str:
    return " ".join(text.replace("ё", "е").replace("Ё", "Е").casefold().split())


@dataclass(frozen=True)
class SiteCheckSettings:
    phrases: tuple[tuple[str, ...], ...] = DEFAULT_PHRASES
    max_pages: int = 15
    max_depth: int = 3
    max_bytes: int = 2_000_000
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    retries: int = 2
    retry_after_max: float = 30.0
    concurrency: int = 16
    # Budgets that really stop the work (wall time, seconds): a page that has not arrived whole within
    # ``page_seconds`` is a failed page, never evidence (a site that drips one byte every few seconds passes
    # every read timeout); a site's check ends after ``site_seconds``; the run ends after ``run_seconds``:
    # sites not started by then are not checked (said so), running ones stop at their next read.
    page_seconds: float = 30.0
    site_seconds: float = 120.0
    run_seconds: float = 900.0
    # HTTP headers are Latin-1: the monitor names itself in English.
    user_agent: str = ("AdmissionMonitor/1.0 (regional education ministry's monitor of first-grade e-enrollment; "
                       "checks that the admission procedure is published)")
    # Tests and the demo only: "host" or "host:port" entries whose loopback/private addresses may be fetched.
    allow_hosts: frozenset[str] = frozenset()
    ca_bundle: str | None = None
    link_hints: tuple[str, ...] = LINK_HINTS
    platform_paths: tuple[tuple[str, tuple[str, ...]], ...] = PLATFORM_PATHS
    # The installation's proxy (Variable admission_site_check ``proxy``), else none: the environment's is ignored.
    proxy: str | None = None

    @classmethod
    def for_plan(cls, rule, deployment: dict | None = None) -> SiteCheckSettings:
        """The plan's ``site_check`` (phrases, limits) with the installation's settings (``ca_bundle``,
        ``allow_hosts``, timeouts) from the Variable ``admission_site_check``."""
        deployment = deployment or {}
        extra = {k: deployment[k] for k in ("connect_timeout", "read_timeout", "retries", "max_bytes",
                                            "page_seconds", "site_seconds", "run_seconds") if k in deployment}
        return cls(phrases=tuple(tuple(p for p in g if p.strip()) for g in rule.phrases),
                   link_hints=tuple(fold(h) for h in rule.link_hints), max_pages=rule.max_pages,
                   max_depth=rule.max_depth, concurrency=rule.concurrency,
                   allow_hosts=frozenset(str(h) for h in deployment.get("allow_hosts") or ()),
                   platform_paths=tuple((str(k).casefold(), tuple(str(p) for p in v))
                                        for k, v in rule.platform_paths.items()),
                   ca_bundle=deployment.get("ca_bundle") or None, proxy=deployment.get("proxy") or None, **extra)


@dataclass
class Evidence:
    """What the check found on one site, as the report and the mail quote it."""

    url: str
    found: bool
    page: str | None = None  # where the phrases were found
    phrases: list[str] = field(default_factory=list)
    status: int | None = None  # HTTP status of the start page (or of the page that failed)
    pages: int = 0  # pages read
    reason: str | None = None  # Russian, when not found
    checked_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    etag: str | None = None  # of the evidence page: the weekly re-check asks "changed since?"
    last_modified: str | None = None
    requests: int = 0  # HTTP requests this check made (robots.txt included)
    unfinished: bool = False  # the time budget ended the check: it says nothing about the site

    def sentence(self) -> str:
        if self.found:
            return f"на сайте {self.page} найдена информация о записи в 1 класс ({', '.join(self.phrases)})"
        return self.reason or f"на сайте {self.url} информация не найдена"


class Fetched(NamedTuple):
    url: str  # after redirects
    status: int
    body: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None


class Refused(Exception):
    """A URL that must not be fetched, or a page that could not be read; the message is Russian."""


class OutOfTime(Exception):
    """The site's or the run's time budget is spent: the site's check ends here (not just this page)."""


def _check_address(url: str, settings: SiteCheckSettings) -> None:
    """Before a request: only http/https, and a host whose addresses are all public (or allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"адрес «{url[:200]}» не http/https")
    try:
        port = parts.port
    except ValueError as exc:
        raise Refused(f"адрес «{url[:200]}»: неверный порт") from exc
    checked_address(parts.hostname, port or (443 if parts.scheme == "https" else 80), settings, url)


def checked_address(host: str, port: int, settings: SiteCheckSettings, url: str | None = None) -> str:
    """The address to connect to: the host resolved once, every answer public (or the host allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"имя сайта {host} не найдено в DNS") from exc
    if not infos:
        raise Refused(f"имя сайта {host} не найдено в DNS")
    if host not in settings.allow_hosts and f"{host}:{port}" not in settings.allow_hosts:
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
            if not public(ip):
                raise Refused(f"адрес {(url or host)[:200]} ведет во внутреннюю сеть ({ip}): не проверяется")
    return infos[0][4][0]


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped, NAT64 (the well-known and the local-use prefix:
    the last 32 bits), 6to4 (2002::/16), Teredo (its server and its client)."""
    out = []
    if ip.ipv4_mapped:
        out.append(ip.ipv4_mapped)
    if any(ip in net for net in _NAT64):
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour:
        out.append(ip.sixtofour)
    if ip.teredo:
        out.extend(ip.teredo)
    return out


def public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A global unicast address, and for an IPv6 one every IPv4 address it carries is one too."""
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return all(inner.is_global and not inner.is_multicast for inner in embedded_ipv4(ip))
    return True


def _guarded_pools(settings: SiteCheckSettings) -> dict:
    """urllib3 connection pools whose connections go to the address they checked themselves: requests resolves a
    host again when it connects, and a DNS answer that changes between the check and the connection (DNS
    rebinding) must not reach an internal address. Through a proxy the proxy is connected to (not guarded here;
    the target was checked before the request)."""

    class Guard:
        def _new_conn(self):
            if getattr(self, "proxy", None) is not None or getattr(self, "_tunnel_host", None):
                return super()._new_conn()
            name = self._dns_host
            self._dns_host = checked_address(name, self.port, settings)  # SNI and the certificate use self.host
            try:
                return super()._new_conn()
            finally:
                self._dns_host = name

    class GuardedHTTP(Guard, HTTPConnection):
        pass

    class GuardedHTTPS(Guard, HTTPSConnection):
        pass

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTP

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPS

    return {"http": HTTPPool, "https": HTTPSPool}


class Page(NamedTuple):
    """What an HTML page says (its visible text, links and navigation left out) and its links (href, text)."""

    text: list[str]
    links: list[tuple[str, str]]


_HIDDEN = ("script", "style", "noscript", "template", "head", "svg", "iframe")
_NAVIGATION = ("a", "nav", "footer", "aside", "button", "select")
# Block elements end a word: «<p>Прием</p><p>в 1 класс</p>» reads as two words, not «Приемв».
_BLOCKS = {"br", "p", "div", "li", "td", "th", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "ul",
           "ol", "table", "header", "footer", "nav", "main", "aside", "a"}


def parse_html(text: str) -> Page:
    """Text and links of a page by libxml2 (recovering parser, no network, comments and processing
    instructions dropped): linear in the page's size whatever its tags, so a hostile page costs milliseconds."""

    parser = etree.HTMLParser(encoding="utf-8", recover=True, no_network=True, remove_comments=True,
                              remove_pis=True, remove_blank_text=False)
    root = etree.fromstring(text.encode("utf-8", errors="replace"), parser)
    if root is None:
        return Page([], [])
    etree.strip_elements(root, *_HIDDEN, with_tail=False)
    links = [(a.get("href"), " ".join(" ".join(a.itertext()).split())) for a in root.iter("a") if a.get("href")]
    # What the page says, not where it points: a menu item «Будущим первоклассникам» beside the portal's widget
    # link «Госуслуги» is on every page of a Госвеб site and is not the information.
    etree.strip_elements(root, *_NAVIGATION, with_tail=False)
    for element in root.iter(*_BLOCKS):
        element.text = " " + (element.text or "")
        element.tail = " " + (element.tail or "")
    words = list(root.itertext())
    return Page(words, links)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-]+)""", re.IGNORECASE)


def decode(body: bytes, content_type: str | None) -> str:
    """Text of a page: the charset the HTTP header names, else the page's <meta>, else detection (Windows-1251,
    KOI8-R and UTF-8 pages without a declaration are common)."""

    candidates = []
    match = re.search(r"charset=([\w\-]+)", content_type or "", re.IGNORECASE)
    if match:
        candidates.append(match.group(1))
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        candidates.append(meta.group(1).decode("ascii"))
    for name in candidates:
        try:
            codecs.lookup(name)
            return body.decode(name, errors="replace")
        except LookupError:
            continue
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass

    best = from_bytes(body[:200_000], cp_isolation=["cp1251", "koi8_r", "utf_8", "cp866"]).best()
    return str(best) if best is not None else body.decode("utf-8", errors="replace")


class _Retry:
    """urllib3's Retry with a cap on a server's Retry-After (a site must not hold a worker for an hour)."""

    @staticmethod
    def make(settings: SiteCheckSettings):
        class CappedRetry(Retry):
            def get_retry_after(self, response):
                value = super().get_retry_after(response)
                return None if value is None else min(value, settings.retry_after_max)

        return CappedRetry(total=settings.retries, connect=settings.retries, read=0, status=settings.retries,
                           backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods={"GET"},
                           respect_retry_after_header=True, raise_on_status=False, redirect=0)


class Crawler:
    """Checks sites; one Session per worker thread, one request at a time per host."""

    def __init__(self, settings: SiteCheckSettings | None = None) -> None:
        self.settings = settings or SiteCheckSettings()
        self._local = threading.local()
        self._hosts: dict[str, threading.Lock] = {}
        self._hosts_lock = threading.Lock()
        self._robots: dict[str, RobotFileParser | None] = {}
        self.requests = 0  # made, for tests and logs
        self._count_lock = threading.Lock()
        self._run_deadline: float | None = None  # check_all's budget (time.monotonic)

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            trust = ssl.create_default_context()  # the system's CAs, plus the national CA when configured
            if self.settings.ca_bundle:
                trust.load_verify_locations(self.settings.ca_bundle)

            pools = _guarded_pools(self.settings)

            class TrustingAdapter(HTTPAdapter):
                def init_poolmanager(self, *args, **kwargs):
                    kwargs["ssl_context"] = trust
                    super().init_poolmanager(*args, **kwargs)
                    self.poolmanager.pool_classes_by_scheme = pools

            session = requests.Session()
            # The environment's proxies, .netrc and CA bundle are not ours to use (see the module's docs).
            session.trust_env = False
            if self.settings.proxy:
                session.proxies = {"http": self.settings.proxy, "https": self.settings.proxy}
            session.headers["User-Agent"] = self.settings.user_agent
            adapter = TrustingAdapter(max_retries=_Retry.make(self.settings))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def _host_lock(self, host: str) -> threading.Lock:
        with self._hosts_lock:
            return self._hosts.setdefault(host, threading.Lock())

    def fetch(self, url: str, max_bytes: int | None = None, headers: dict[str, str] | None = None) -> Fetched:
        """One page, redirects followed by hand (each hop checked); ``headers``: conditional request headers."""

        limit = max_bytes or self.settings.max_bytes
        for _ in range(6):
            self._check_deadline()
            _check_address(url, self.settings)
            host = urlsplit(url).hostname
            with self._host_lock(host):
                with self._count_lock:
                    self.requests += 1
                self._local.requests = getattr(self._local, "requests", 0) + 1
                try:
                    # verify=True, always: a CA bundle in the environment must not replace the trust above.
                    resp = self._session().get(url, stream=True, allow_redirects=False, verify=True, headers=headers,
                                               timeout=(self.settings.connect_timeout, self.settings.read_timeout))
                except requests.exceptions.SSLError as exc:
                    raise Refused(f"сайт {url[:200]}: сертификат TLS не прошел проверку") from exc
                except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout) as exc:
                    raise Refused(f"сайт {url[:200]} не ответил за {self.settings.read_timeout:g} с") from exc
                except requests.exceptions.RetryError as exc:
                    raise Refused(f"сайт {url[:200]} отвечает ошибкой (повторы исчерпаны)") from exc
                except requests.exceptions.ConnectionError as exc:
                    cause = str(exc)
                    if "timed out" in cause:  # a read timeout under Retry arrives as a ConnectionError
                        raise Refused(f"сайт {url[:200]} не ответил за {self.settings.read_timeout:g} с") from exc
                    if "Name or service not known" in cause or "getaddrinfo" in cause:
                        raise Refused(f"имя сайта {host} не найдено в DNS") from exc
                    raise Refused(f"сайт {url[:200]} недоступен (соединение не установлено)") from exc
                with resp:
                    if resp.is_redirect and resp.headers.get("location"):
                        url = urljoin(url, resp.headers["location"])
                        continue
                    body = bytearray()
                    began = time.monotonic()
                    try:
                        # read1: whatever has arrived (iter_content waits for a whole 64 KB chunk, so a page that
                        # drips a byte at a time would never reach the budget check below).
                        while chunk := resp.raw.read1(65536, decode_content=True):
                            body += chunk
                            if len(body) > limit:
                                raise Refused(f"страница {url[:200]} больше {limit // 1_000_000 or 1} МБ: не читается")
                            if time.monotonic() - began > self.settings.page_seconds:
                                raise Refused(f"страница {url[:200]} не пришла целиком за "
                                              f"{self.settings.page_seconds:g} с: не учтена")
                            self._check_deadline()
                    except urllib3.exceptions.ReadTimeoutError as exc:
                        raise Refused(f"сайт {url[:200]} не ответил за {self.settings.read_timeout:g} с") from exc
                    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                        raise Refused(f"сайт {url[:200]} оборвал ответ") from exc
                    return Fetched(resp.url or url, resp.status_code, bytes(body), resp.headers.get("content-type"),
                                   resp.headers.get("etag"), resp.headers.get("last-modified"))
        raise Refused(f"сайт {url[:200]}: слишком много перенаправлений")

    def allowed(self, url: str) -> bool:
        """robots.txt of the URL's site permits our User-Agent (no robots.txt, or an unreadable one: allowed)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            parser = None
            try:
                robots = self.fetch(origin + "/robots.txt", max_bytes=500_000)
                if robots.status == 200:
                    parser = RobotFileParser()
                    parser.parse(robots.body.decode("utf-8", errors="replace").splitlines())
            except Refused:
                parser = None
            self._robots[origin] = parser
        parser = self._robots[origin]
        return parser is None or parser.can_fetch(self.settings.user_agent, url)

    def check(self, start: str) -> Evidence:
        """Crawl one site from ``start``: same-site links, admission-like first, within the page and depth limits.
        Never raises: an unexpected error is that site's reason, not the end of the other sites' checks."""
        self._local.requests = 0
        try:
            evidence = self._crawl(start)
        except Exception as exc:  # noqa: BLE001 (one odd site must not stop the region's check)
            evidence = Evidence(url=start, found=False, reason=f"сайт {start[:200]} не проверен: внутренняя ошибка "
                                                                f"проверки ({type(exc).__name__})")
        evidence.requests = getattr(self._local, "requests", 0)
        return evidence

    def recheck(self, previous: Evidence) -> Evidence | None:
        """A site found compliant before: ask its evidence page whether it changed (ETag / Last-Modified).
        Unchanged (304), or changed and still matching: the evidence stands (one request). Else None: crawl."""
        self._local.requests = 0
        headers = {k: v for k, v in (("If-None-Match", previous.etag), ("If-Modified-Since", previous.last_modified))
                   if v}
        try:
            if not previous.page or not self.allowed(previous.page):
                return None
            got = self.fetch(previous.page, headers=headers or None)
        except Exception:  # noqa: BLE001 (refused, or anything odd: the full crawl decides, and reports it)
            return None
        found: list[str] = []
        if got.status == 304:
            found = list(previous.phrases)
        elif got.status == 200:
            found = match(_visible_text(got.body, got.content_type), self.settings.phrases)
        if not found:
            return None
        return Evidence(url=previous.url, found=True, page=previous.page, phrases=found, status=got.status, pages=1,
                        etag=got.etag or previous.etag, last_modified=got.last_modified or previous.last_modified,
                        requests=getattr(self._local, "requests", 0))

    def _check_deadline(self) -> None:
        """Stop this site's work once its own or the run's budget is spent (checked before each request and
        between the chunks of a page)."""
        now = time.monotonic()
        if self._run_deadline is not None and now > self._run_deadline:
            raise OutOfTime(f"проверка прервана: истекло время проверки всех сайтов ({self.settings.run_seconds:g} с)")
        site_deadline = getattr(self._local, "deadline", None)
        if site_deadline is not None and now > site_deadline:
            raise OutOfTime(f"проверка сайта прервана: истекло отведенное время ({self.settings.site_seconds:g} с)")

    def _crawl(self, start: str) -> Evidence:
        self._local.deadline = time.monotonic() + self.settings.site_seconds
        try:
            return self._crawl_pages(start)
        except OutOfTime as exc:
            return Evidence(url=start, found=False, reason=f"сайт {start}: {exc}", unfinished=True)

    def _crawl_pages(self, start: str) -> Evidence:
        """Best-first: the most promising link (:func:`link_score`) is read next, shallower first among equals;
        the start page's own site (after its redirects: a moved domain) bounds the crawl."""
        evidence = Evidence(url=start, found=False)
        try:
            _check_address(start, self.settings)
        except Refused as exc:
            evidence.reason = str(exc)
            return evidence
        site = _site(start)
        order = itertools.count()
        queue: list[tuple[int, int, int, str]] = [(0, 0, next(order), urldefrag(start)[0])]
        seen = {queue[0][3]}
        while queue and evidence.pages < self.settings.max_pages:
            _, depth, _, url = heapq.heappop(queue)
            if not self.allowed(url):
                if evidence.pages == 0:
                    evidence.reason = f"robots.txt сайта {start} запрещает проверку"
                    return evidence
                continue
            try:
                got = self.fetch(url)
            except Refused as exc:
                if evidence.pages == 0:
                    evidence.reason = str(exc)
                    return evidence
                continue
            evidence.pages += 1
            final, status = got.url, got.status
            if evidence.status is None:
                evidence.status = status
            if status >= 400:
                if evidence.pages == 1:
                    evidence.reason = f"сайт {start} ответил ошибкой HTTP {status}"
                    return evidence
                continue
            if evidence.pages == 1 and _site(final) != site:  # the site moved (an old domain to Госвеб)
                site = _site(final)
                seen.add(urldefrag(final)[0])
            if evidence.pages == 1:
                for path in self.platform_paths(final):
                    target = urljoin(final, path)
                    if target not in seen:
                        seen.add(target)
                        heapq.heappush(queue, (-PLATFORM_SCORE, 1, next(order), target))
            page = _parse(got.body, got.content_type)
            if page is None:
                continue
            found = match(" ".join(page.text), self.settings.phrases)
            if found:
                evidence.found, evidence.page, evidence.phrases, evidence.reason = True, final, found, None
                evidence.etag, evidence.last_modified = got.etag, got.last_modified
                return evidence
            if depth >= self.settings.max_depth:
                continue
            for href, text in page.links[:LINKS_PER_PAGE]:
                try:  # a malformed link («http://[x») is that link skipped, not the site's check lost
                    target = urldefrag(urljoin(final, href.strip()))[0]
                    if urlsplit(target).scheme not in ("http", "https") or _site(target) != site or target in seen:
                        continue
                except ValueError:
                    continue
                seen.add(target)
                heapq.heappush(queue, (-link_score(text, target, self.settings.link_hints), depth + 1, next(order),
                                       target))
        evidence.reason = (f"на сайте {start} не найдена информация о порядке записи в 1 класс в электронной форме; "
                           f"проверено {evidence.pages} {_pages_word(evidence.pages)}")
        return evidence

    def platform_paths(self, url: str) -> tuple[str, ...]:
        """The usual sections of the platform the site runs on (by its host), else ()."""
        host = (urlsplit(url).hostname or "").casefold()
        return next((paths for suffix, paths in self.settings.platform_paths if host.endswith(suffix)), ())

    def check_all(self, urls: Iterable[str]) -> dict[str, Evidence]:
        """Every site, ``concurrency`` at a time, within ``run_seconds``: when it is spent, the sites not yet
        started are not checked (their evidence says so) and the running ones stop at their next read; the
        call returns without waiting for a queue of sites."""
        urls = list(dict.fromkeys(urls))
        done = self.run_within_budget(self.check, urls)
        return {u: done.get(u) or self.not_checked(u) for u in urls}

    def run_within_budget(self, work, items: list) -> dict:
        """``work(item)`` for every item, ``concurrency`` at a time, until ``run_seconds`` is spent; returns
        item -> result for those that finished. Items not started are cancelled and running ones stop at their
        next read (``_check_deadline``): the call never waits for a queue of sites."""
        self._run_deadline = time.monotonic() + self.settings.run_seconds
        pool = ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency))
        try:
            futures = {pool.submit(work, item): item for item in items}
            done, _ = wait(futures, timeout=self.settings.run_seconds + self.settings.read_timeout + 5)
            return {futures[f]: f.result() for f in done if not f.cancelled() and f.exception() is None}
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self._run_deadline = None

    def not_checked(self, url: str) -> Evidence:
        return Evidence(url=url, found=False, unfinished=True, reason=(
            f"сайт {url} не проверен: истекло время проверки всех сайтов ({self.settings.run_seconds:g} с)"))


def _parse(body: bytes, content_type: str | None) -> Page | None:
    """Text and links of an HTML or text page; None for other content or a page the parser cannot take."""
    if content_type and "html" not in content_type.casefold() and "text" not in content_type.casefold():
        return None
    try:
        return parse_html(decode(body, content_type))
    except Exception:  # noqa: BLE001 (a page the parser cannot take is one page less, not a failed check)
        return None


def _visible_text(body: bytes, content_type: str | None) -> str:
    page = _parse(body, content_type)
    return " ".join(page.text) if page else ""


# What a link's text and address say about where it leads (folded: ё as е, lower case). A person looking for the
# admission procedure opens «Прием в 1 класс» or «Будущим первоклассникам» first, then the sections for parents
# and the school's documents, and never the news archive, the photo gallery or a file to download.
LINK_WORDS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (8, ("первоклассник", "прием в 1", "прием в перв", "приема в 1", "приема в перв", "зачислени", "1 класс",
         "первый класс", "pervoklass", "buduschim", "budushhim", "priem-v-1", "priem-v-perv", "1-klass",
         "zachislen")),
    (4, ("родителям", "полезная информация", "поступающ", "прием", "roditel", "poleznaya", "priem", "postupayu")),
    (2, ("сведения об образовательной", "документы", "sveden", "dokument", "document", "obrazovanie")),
    (-6, ("новост", "архив", "галере", "фото", "видео", "календар", "событи", "анонс", "news", "archive", "arhiv",
          "gallery", "galereya", "foto", "photo", "video", "calendar", "event", "anons", "?page=", "&page=", "/page/",
          "print", "login", "вход", "rss", "poisk", "search", "поиск", "версия для слабовидящих", "special")),
)
_FILES = (".pdf", ".doc", ".docx", ".xls", ".xlsx", ".rtf", ".odt", ".zip", ".rar", ".jpg", ".jpeg", ".png", ".gif",
          ".mp4", ".mp3")
PLATFORM_SCORE = 9  # a platform's known section is read before any link but one that names the admission itself


def link_score(text: str, url: str, hints: tuple[str, ...] = ()) -> int:
    """How promising a link is: the best word group its text or address matches, plus the plan's ``link_hints``
    (one point each); a file to download or an archive page scores below an ordinary link."""
    said = fold(f"{text} {unquote(url)}")
    score = max((weight for weight, words in LINK_WORDS if any(w in said for w in words)), default=0)
    if any(w in said for w in LINK_WORDS[-1][1]):
        score = min(score, LINK_WORDS[-1][0])
    score += sum(1 for h in hints if h in said)
    if urlsplit(url).path.casefold().endswith(_FILES):
        score -= 10
    return score


def match(text: str, phrases: tuple[tuple[str, ...], ...]) -> list[str]:
    """The phrases found, one per group, when every group has one; else []."""
    folded = fold(text)
    found = []
    for group in phrases:
        hit = next((p for p in group if fold(p) in folded), None)
        if hit is None:
            return []
        found.append(hit)
    return found


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").casefold()
    return host.removeprefix("www.")


def _pages_word(n: int) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return "страница"
    if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14):
        return "страницы"
    return "страниц"
