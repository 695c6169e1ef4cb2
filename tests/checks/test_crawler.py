"""The stage-2 website check against real HTTP(S) servers on loopback (admission.checks.crawler)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from tests.helpers import PRIEM, Site, ca_and_cert, drip, gosweb_pages


@pytest.fixture
def sites():
    made: list[Site] = []

    def make(pages: dict, **kw) -> Site:
        made.append(Site(pages, **kw))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _crawler(**kw):
    from admission.checks.crawler import Crawler, SiteCheckSettings

    hosts = frozenset(kw.pop("allow", {"127.0.0.1"}))
    return Crawler(SiteCheckSettings(allow_hosts=hosts, **({"connect_timeout": 2, "read_timeout": 2} | kw)))


def _link(href: str, text: str) -> str:
    return f'<html><body><a href="/other">Новости</a> <a href="{href}">{text}</a></body></html>'


def test_a_gosweb_like_site_with_the_information_three_links_deep_is_found(sites):
    site = sites({"/": (200, {}, _link("/roditelyam", "Родителям и ученикам")),
                  "/roditelyam": (200, {}, _link("/roditelyam/info", "Полезная информация")),
                  "/roditelyam/info": (200, {}, _link("/roditelyam/info/pervoklassnikam", "Будущим первоклассникам")),
                  "/roditelyam/info/pervoklassnikam": (200, {}, PRIEM),
                  "/other": (200, {}, "<p>Новости школы</p>")})
    evidence = _crawler().check(site.url + "/")
    assert evidence.found and evidence.page == site.url + "/roditelyam/info/pervoklassnikam"
    assert evidence.phrases == ["прием в 1 класс", "электронной форме"]
    assert "/other" not in site.hits  # the admission-like link is followed first
    assert "найдена информация" in evidence.sentence()


def test_a_malformed_link_is_skipped_and_the_next_one_still_followed(sites):
    site = sites({"/": (200, {}, '<a href="http://[broken">Прием в 1 класс</a> <a href="/priem">Прием в 1 класс</a>'),
                  "/priem": (200, {}, PRIEM)})
    evidence = _crawler().check(site.url + "/")
    assert evidence.found and evidence.page == site.url + "/priem"


def test_a_site_without_the_information_says_how_many_pages_were_read(sites):
    site = sites({"/": (200, {}, _link("/a", "О школе")), "/a": (200, {}, _link("/b", "Контакты")),
                  "/b": (200, {}, "<p>Прием документов в 10 класс</p>"), "/other": (200, {}, "<p>Новости</p>")})
    evidence = _crawler().check(site.url + "/")
    assert not evidence.found
    assert evidence.reason == (f"на сайте {site.url}/ не найдена информация о порядке записи в 1 класс в "
                               "электронной форме; проверено 4 страницы")


@pytest.mark.parametrize("declared", ["header", "meta", "nothing"])
def test_windows_1251_and_koi8_pages_are_read_whatever_declares_their_encoding(sites, declared):
    body = PRIEM.replace("<head>", '<head><meta charset="windows-1251">' if declared == "meta" else "<head>")
    headers = {"Content-Type": "text/html; charset=windows-1251" if declared == "header" else "text/html"}
    site = sites({"/": (200, headers, body.encode("cp1251")),
                  "/koi": (200, {"Content-Type": "text/html; charset=koi8-r"}, PRIEM.encode("koi8_r"))})
    assert _crawler().check(site.url + "/").found
    assert _crawler().check(site.url + "/koi").found


def test_a_redirect_chain_is_followed_to_the_page(sites):
    site = sites({"/": (301, {"Location": "/new/"}, ""), "/new/": (302, {"Location": "/new/priem"}, ""),
                  "/new/priem": (200, {}, PRIEM)})
    evidence = _crawler().check(site.url + "/")
    assert evidence.found and evidence.page == site.url + "/new/priem"


def test_a_site_that_does_not_answer_in_time_is_reported_as_such(sites):
    def slow(handler):
        time.sleep(4)
        return 200, {}, PRIEM

    site = sites({"/": slow})
    started = time.monotonic()
    evidence = _crawler(retries=0).check(site.url + "/")
    assert not evidence.found and "не ответил за 2 с" in evidence.reason
    assert time.monotonic() - started < 4


def test_a_500_is_retried_and_the_200_that_follows_counts(sites):
    answers = iter([(500, {}, "error"), (200, {}, PRIEM)])
    site = sites({"/": lambda h: next(answers)})
    assert _crawler().check(site.url + "/").found
    assert site.hits.count("/") == 2


def test_a_page_of_50_mb_is_not_read_past_the_cap(sites):
    big = b"<html><body>" + b"x" * (50 * 2**20) + b"</body></html>"
    site = sites({"/": (200, {}, big)})
    evidence = _crawler().check(site.url + "/")
    assert not evidence.found and "больше 2 МБ" in evidence.reason


def test_robots_txt_that_forbids_is_honoured(sites):
    site = sites({"/robots.txt": (200, {"Content-Type": "text/plain"}, "User-agent: *\nDisallow: /\n"),
                  "/": (200, {}, PRIEM)})
    evidence = _crawler().check(site.url + "/")
    assert not evidence.found and "robots.txt" in evidence.reason and "/" not in site.hits


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/",
                                 "http://10.0.0.1/", "file:///etc/passwd", "ftp://127.0.0.1/"])
def test_an_address_into_the_local_network_is_refused_without_a_request(url):
    evidence = _crawler(allow=set()).check(url)
    assert not evidence.found and evidence.pages == 0
    assert "внутреннюю сеть" in evidence.reason or "не http/https" in evidence.reason


def test_a_name_that_resolves_public_then_internal_cannot_reach_the_internal_address(sites, monkeypatch):
    """DNS rebinding: every other answer is public (the check before a request sees one), the next is loopback (the
    connection would get it). Only DNS is faked (a resolver that changes its answer cannot run here); the loopback
    server is real and must see nothing."""
    import itertools
    import socket

    from admission.checks import crawler as sitecheck

    site = sites({"/": (200, {}, PRIEM)})
    port = int(site.url.rsplit(":", 1)[1])
    real = socket.getaddrinfo
    answers = itertools.cycle(["93.184.216.34", "127.0.0.1"])

    def rebinding(host, *args, **kwargs):
        if host != "rebind.example":
            return real(host, *args, **kwargs)
        ip = next(answers)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    monkeypatch.setattr(sitecheck.socket, "getaddrinfo", rebinding)
    evidence = _crawler(allow=set()).check(f"http://rebind.example:{port}/")
    assert not evidence.found and "внутреннюю сеть (127.0.0.1)" in evidence.reason
    assert site.hits == []


def test_a_redirect_into_the_local_network_is_refused(sites):
    site = sites({"/": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, "")})
    evidence = _crawler().check(site.url + "/")
    assert not evidence.found and "внутреннюю сеть (169.254.169.254)" in evidence.reason


def test_a_self_signed_certificate_is_refused_and_accepted_once_its_ca_is_configured(sites, tmp_path):

    ca, cert, key = ca_and_cert(tmp_path, ["127.0.0.1"])
    site = sites({"/": (200, {}, PRIEM)}, tls=(str(cert), str(key)))
    evidence = _crawler().check(site.url + "/")
    assert not evidence.found and "сертификат TLS не прошел проверку" in evidence.reason
    assert _crawler(ca_bundle=str(ca)).check(site.url + "/").found


def _in_flight(delay: float):
    """A page that answers after ``delay`` and counts how many requests the servers hold at once."""
    lock, state = threading.Lock(), {"now": 0, "most": 0}

    def page(handler):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(delay)
        with lock:
            state["now"] -= 1
        return 200, {}, PRIEM

    return page, state


@pytest.mark.slow
def test_two_hundred_slow_sites_are_checked_concurrently(sites):
    """Many sites at once (the wall time is printed, not asserted): the servers see many requests in flight."""
    slow, state = _in_flight(0.3)

    hosts = [f"127.0.1.{i}" for i in range(1, 201)]
    made = [sites({"/": slow}, host=h) for h in hosts]
    crawler = _crawler(allow=set(hosts), concurrency=32)
    started = time.monotonic()
    found = crawler.check_all(s.url + "/" for s in made)
    print(f"200 sites × 0.3 s: {time.monotonic() - started:.1f} s with 32 workers (one at a time: ≈60 s); "
          f"at most {state['most']} pages in flight")
    assert all(e.found for e in found.values()) and len(found) == 200
    assert state["most"] > 8  # checked side by side, not one after another


def test_one_host_gets_one_request_at_a_time(sites):
    """Several organizations on one host (a site builder): their checks never overlap on it."""
    page, state = _in_flight(0.05)

    site = sites({f"/school{i}": page for i in range(12)})
    found = _crawler(concurrency=6).check_all(f"{site.url}/school{i}" for i in range(12))
    assert all(e.found for e in found.values()) and state["most"] == 1


def test_a_page_that_drips_is_a_failed_page_within_its_budget_never_evidence(sites):
    site = sites({"/": drip})
    started = time.monotonic()
    # A generous read timeout: each byte arrives in time; only the page's own budget can end it (also on a
    # loaded machine, where a 2 s read timeout might fire first).
    evidence = _crawler(retries=0, page_seconds=2, read_timeout=10).check(site.url + "/")
    assert not evidence.found and "не пришла целиком за 2 с" in evidence.reason
    assert time.monotonic() - started < 10  # the site would drip for a minute


def test_a_run_stops_within_its_budget_and_says_which_sites_it_did_not_check(sites):
    """1,000 sites of 0.5 s each need ≈30 s with 16 workers; with a 3 s budget the call returns at about 3 s."""
    slow, _ = _in_flight(0.5)
    hosts = [f"127.0.2.{i}" for i in range(1, 51)]
    made = [sites({f"/s{i}": slow for i in range(20)}, host=h) for h in hosts]
    urls = [f"{s.url}/s{i}" for s in made for i in range(20)]  # 1,000 start pages
    crawler = _crawler(allow=set(hosts), concurrency=16, run_seconds=3)
    started = time.monotonic()
    found = crawler.check_all(urls)
    took = time.monotonic() - started
    print(f"1,000 sites × 0.5 s under a 3 s budget: returned after {took:.1f} s")
    assert len(found) == 1000
    checked = [e for e in found.values() if e.found]
    skipped = [e for e in found.values() if e.unfinished]
    assert checked and skipped and len(checked) + len(skipped) == 1000
    assert all("истекло время проверки всех сайтов" in e.reason for e in skipped)
    assert took < 3 + 2 + 5  # budget + read timeout + margin: never the 30 s of the whole queue


def test_a_site_cut_short_by_the_budget_keeps_its_last_finished_check(sites):
    import pandas as pd
    from admission.checks.sites import check_sites

    site = sites({"/": drip})
    url = site.url + "/"
    previous = pd.DataFrame([{"url": url, "found": True, "page": url, "phrases": ["прием в 1 класс"], "status": 200,
                              "pages": 1, "reason": None, "etag": None, "last_modified": None, "requests": 1,
                              "verified_on": dt.date(2020, 1, 1), "first_found": dt.date(2019, 12, 20)}])
    crawler = _crawler(retries=0, page_seconds=30, site_seconds=1.5)
    (row,) = check_sites(crawler, [url], previous, dt.date(2020, 1, 15), recheck_days=7)
    assert row["found"] and row["verified_on"] == dt.date(2020, 1, 1)  # stage 2 counts the check of 01.01
    (fresh,) = check_sites(crawler, [url], previous.iloc[0:0], dt.date(2020, 1, 15), recheck_days=7)
    assert not fresh["found"] and "истекло отведенное время" in fresh["reason"]


def test_a_gosweb_site_is_read_like_a_person_reads_it_not_spent_on_its_news(sites):
    """30+ links on every page, news titles that speak to parents, the widget everywhere: the information three
    links deep is found within the page budget, and no news item or widget link is read."""
    site = sites(gosweb_pages())
    evidence = _crawler().check(site.url + "/")
    assert evidence.found, evidence.reason
    assert evidence.page.endswith("/buduschim-pervoklassnikam/")
    assert not [h for h in site.hits if h.startswith(("/novosti/", "/fotogalereya", "/search", "/special"))]
    assert evidence.pages <= 6


def test_a_gosweb_site_with_other_section_addresses_is_still_found_by_the_links_words(sites):
    site = sites(gosweb_pages(leaf="/parents/info/first-grade/", middle="/parents/info/"))
    evidence = _crawler(platform_paths=(("127.0.0.1", ("/roditelyam-i-uchenikam/poleznaya-informatsiya/"
                                                      "buduschim-pervoklassnikam/",)),)).check(site.url + "/")
    assert evidence.found and evidence.page == site.url + "/parents/info/first-grade/"


def test_on_a_known_platform_its_usual_section_is_asked_first(sites):
    site = sites(gosweb_pages())
    crawler = _crawler(platform_paths=(("127.0.0.1", ("/roditelyam-i-uchenikam/poleznaya-informatsiya/"
                                                      "buduschim-pervoklassnikam/",)),))
    evidence = crawler.check(site.url + "/")
    assert evidence.found and evidence.pages == 2  # the home page, then the platform's section


def test_a_school_that_moved_to_gosweb_is_crawled_where_it_moved(sites):
    """The registry still names the old domain, which redirects to the new site: its pages are the site's pages."""
    new = sites(gosweb_pages())
    port = new.url.rsplit(":", 1)[1]
    old = sites({"/": (301, {"Location": f"http://localhost:{port}/"}, "")})
    evidence = _crawler(allow={"127.0.0.1", "localhost"}).check(old.url + "/")
    assert evidence.found, evidence.reason
    assert evidence.page == f"http://localhost:{port}/roditelyam-i-uchenikam/poleznaya-informatsiya/" \
                           "buduschim-pervoklassnikam/"


def test_a_2_mb_page_of_unclosed_tags_is_read_at_once_and_the_next_page_still_counts(sites):
    """The standard library's html.parser before Python 3.11.13 takes minutes on 60 KB of this (hours on 2 MB);
    the crawler's parser reads it at once, so the site's budget is not spent on one page."""
    hostile = "<html><body><p>" + "<b " * 700_000
    site = sites({"/": (200, {}, hostile + '<a href="/priem">Прием в 1 класс</a>'),
                  "/index2": (200, {}, _link("/priem", "Прием в 1 класс")), "/priem": (200, {}, PRIEM)})
    crawler = _crawler(site_seconds=20, page_seconds=20)
    evidence = crawler.check(site.url + "/")
    assert not evidence.unfinished, evidence.reason
    evidence = crawler.check(site.url + "/index2")
    assert evidence.found


@pytest.mark.parametrize("address", ["64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::a9fe:a9fe", "2002:7f00:1::1",
                                     "2002:a00:1::1", "::ffff:10.0.0.1"])
def test_an_ipv6_address_that_carries_an_internal_ipv4_one_is_refused(address, monkeypatch):
    """NAT64, 6to4 and IPv4-mapped addresses reach the IPv4 address inside them."""
    import socket

    from admission.checks import crawler as mod

    monkeypatch.setattr(mod.socket, "getaddrinfo",
                        lambda host, port, **kw: [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))])
    with pytest.raises(mod.Refused, match="внутреннюю сеть"):
        mod.checked_address("school.example", 443, mod.SiteCheckSettings())
    assert mod.public(__import__("ipaddress").ip_address("64:ff9b::808:808"))  # 8.8.8.8 through NAT64 is public


def test_the_workers_proxy_environment_is_not_used(sites, monkeypatch):
    """A proxy in the worker's environment would take the connection away from the guarded address."""
    site = sites({"/": (200, {}, PRIEM)})
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    evidence = _crawler().check(site.url + "/")
    assert evidence.found, evidence.reason
