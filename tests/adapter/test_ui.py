"""The campaign page in the Airflow UI, driven in a real browser (Debian's chromium through chromedriver).

Airflow runs as `make airflow` runs it (admission.adapter.standalone: API server, scheduler, DAG processor,
triggerer on 127.0.0.1) over a store filled by a demo day (`admission day`). Screenshots are saved under the
output folder (`<output>/screenshots/`) as test artifacts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

BIN = Path(sys.executable).parent
DAY = "2020-01-15"
pytestmark = [pytest.mark.airflow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser_or_skip() -> None:
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but Debian's chromium/chromium-driver are not installed (.ci/run installs them)")
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def ui(tmp_path_factory, demo_dir):
    """Airflow as `make airflow` starts it, over a store filled by the demo day; yields where and how to log in."""
    _browser_or_skip()
    from admission.adapter import standalone

    tmp = tmp_path_factory.mktemp("ui")
    home, output = tmp / "airflow", tmp / "output"
    home.mkdir()
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ADMISSION"))} | {
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW_VAR_ADMISSION_DATA_DIR": str(demo_dir), "AIRFLOW_VAR_ADMISSION_OUTPUT_DIR": str(output),
        "GX_ANALYTICS_ENABLED": "false", "ADMISSION_RETRY_DELAY_SECONDS": "5",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
    }
    env = standalone.environment(home, port) | base
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    day = subprocess.run([str(BIN / "admission"), "day", DAY], env=env, capture_output=True, text=True, timeout=600)
    assert day.returncode == 0, day.stdout[-2000:] + day.stderr[-2000:]
    password = standalone.admin_password(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]))
    viewer = standalone.admin_password(Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]), "viewer")
    logs = tmp / "logs"
    logs.mkdir()
    procs = standalone.start(home, port, logs, extra=base)
    try:
        deadline = time.monotonic() + 180
        while not standalone.healthy(port):
            dead = [n for n, p in procs.items() if p.poll() is not None]
            assert not dead and time.monotonic() < deadline, (dead, *(
                (logs / f"{n}.log").read_text(errors="replace")[-2000:] for n in procs))
            time.sleep(1)
        shots = output / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        yield {"url": f"http://127.0.0.1:{port}", "password": password, "viewer": viewer, "output": output, "shots": shots,
               "store": f"sqlite:///{output / 'admission.db'}", "logs": logs}
    finally:
        standalone.stop(procs)


def _get(url: str, token: str | None = None, cookie: str | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if cookie:
        request.add_header("Cookie", f"_token={cookie}")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _api(ui: dict, method: str, path: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{ui['url']}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def test_without_a_login_the_page_and_every_data_endpoint_are_refused(ui):
    page = f"{ui['url']}/admission/"
    status, body, headers = _get(page)
    assert status in (302, 303, 307) and "/auth/login" in headers["location"] and b"S101" not in body
    endpoints = ["/admission/api/overview", "/admission/api/organizations?q=S1", "/admission/api/organizations/S101",
                 "/admission/api/municipalities/M01",
                 f"/admission/files/2020-2021/{DAY}/report_2020-2021_{DAY}.xlsx",
                 f"/admission/files/2020-2021/{DAY}/progress_{DAY}.png",
                 f"/admission/docs/2020-2021/{DAY}/local_site/index.html"]
    for path in endpoints:
        status, body, _ = _get(f"{ui['url']}{path}")
        assert status == 401, (path, status)
        assert b"S101" not in body and b"@" not in body, path
        status, _, _ = _get(f"{ui['url']}{path}", cookie="not-a-valid-token")
        assert status in (401, 403), (path, status)


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800",
                "--lang=ru-RU"):
        options.add_argument(arg)
    service = Service(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def test_an_admin_logs_in_reads_the_campaign_searches_a_school_and_runs_a_dry_day(ui):
    from admission.store import load_results
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    results = load_results(ui["store"], "2020-2021", dt.date.fromisoformat(DAY))
    driver = _driver()
    try:
        # Log in through Airflow's own form, asked for by the campaign page.
        driver.get(f"{ui['url']}/admission/")
        user = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "input[name='username']"))
        user.send_keys("admin")
        driver.find_element(By.CSS_SELECTOR, "input[name='password']").send_keys(ui["password"], Keys.ENTER)
        _wait(driver, lambda d: "/auth/login" not in d.current_url)
        driver.get(f"{ui['url']}/admission/")
        table = _wait(driver, lambda d: d.find_element(By.ID, "stages"))
        driver.save_screenshot(str(ui["shots"] / "campaign.png"))

        # Every stage's counts are the store's.
        for row in table.find_elements(By.CSS_SELECTOR, "tr[data-stage]"):
            stage = int(row.get_attribute("data-stage"))
            cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
            stored = results[results["stage"] == stage]["status"].value_counts()
            assert [int(c) for c in cells[3:6]] == [int(stored.get(s, 0)) for s in ("complete", "lagging", "overdue")]
        assert "Утверждение списка главных операторов" in table.text

        # Search a school that is overdue on stage 5 and open it: what is missing, and the mail about it.
        overdue = results[(results["stage"] == 5) & (results["status"] == "overdue")].iloc[0]
        box = driver.find_element(By.NAME, "q")
        box.send_keys(overdue["org_id"], Keys.ENTER)
        hit = _wait(driver, lambda d: d.find_element(By.LINK_TEXT, overdue["org_id"]))
        hit.click()
        card = _wait(driver, lambda d: d.find_element(By.ID, "org"))
        assert overdue["missing"][0] in card.text
        assert "уведомление о просрочке" in card.text and "записано в файл .eml" in card.text
        driver.save_screenshot(str(ui["shots"] / "organization.png"))

        # Drill down into a МООУСО.
        driver.find_element(By.CSS_SELECTOR, "#municipalities a").click()
        _wait(driver, lambda d: d.find_element(By.ID, "members"))
        driver.save_screenshot(str(ui["shots"] / "municipality.png"))

        # The day's workbook, served through the page to the logged-in browser.
        link = driver.find_element(By.LINK_TEXT, "Отчет Excel").get_attribute("href")
        cookie = driver.get_cookie("_token")["value"]
        status, body, headers = _get(link, cookie=cookie)
        assert status == 200 and body[:2] == b"PK" and "spreadsheetml" in headers["content-type"]

        # Run a day from the page: the judged date is in the run's id and note.
        form = driver.find_element(By.ID, "run")
        date = form.find_element(By.NAME, "date")
        driver.execute_script("arguments[0].value = '2020-01-16'", date)  # no script on our page; the test sets it
        form.find_element(By.NAME, "dry_run").click()
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait(driver, lambda d: "/runs/manual__day_2020-01-16__" in d.current_url)
        page_run = driver.current_url.rsplit("/runs/", 1)[1]

        # The UI's own pages: the navigation entry and the DAG's trigger form the page links to.
        driver.get(f"{ui['url']}/dags/run_day_2020_2021")
        _wait(driver, lambda d: "run_day_2020_2021" in d.page_source)
        driver.save_screenshot(str(ui["shots"] / "run_day.png"))
    finally:
        driver.quit()

    # Run a day by hand, dry, twice for the same date (no 409), through the API as the logged-in admin.
    token = cookie
    _api(ui, "PATCH", "/api/v2/dags/run_day_2020_2021", token, {"is_paused": False})
    runs = [_api(ui, "POST", "/api/v2/dags/run_day_2020_2021/dagRuns", token,
                 {"logical_date": None, "conf": {"as_of": "2020-01-16", "dry_run": True}})["dag_run_id"]
            for _ in range(2)]
    assert len(set(runs)) == 2
    note = _api(ui, "GET", f"/api/v2/dags/run_day_2020_2021/dagRuns/{page_run}", token)
    assert note["note"].startswith("День кампании 16.01.2020 — пробный запуск") and note["conf"]["dry_run"] is True
    runs.append(page_run)
    deadline = time.monotonic() + 420
    while True:
        states = [_api(ui, "GET", f"/api/v2/dags/run_day_2020_2021/dagRuns/{r}", token)["state"] for r in runs]
        if all(s in ("success", "failed") for s in states) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert states == ["success"] * 3, (states, (ui["logs"] / "scheduler.log").read_text()[-3000:])
    from admission.mail.outbox import outbox_counts

    counts = outbox_counts(ui["store"], "2020-2021", dt.date(2020, 1, 16))
    assert counts and all(set(by_status) == {"dry_run"} for by_status in counts.values()), counts
    assert not (ui["output"] / "mail" / "2020-2021" / "2020-01-16").exists()  # nothing written, nothing sent


def _token(ui: dict, user: str, password: str) -> str:
    request = urllib.request.Request(f"{ui['url']}/auth/token", method="POST",
                                     data=json.dumps({"username": user, "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())["access_token"]


def test_a_viewer_is_refused_the_campaigns_data_in_the_browser_and_through_the_api(ui):
    """Viewer may log in to Airflow, but may not run the campaign's day: no card, no workbook, no Data Docs."""
    from selenium.webdriver.common.by import By

    token = _token(ui, "viewer", ui["viewer"])
    for path in ("/admission/api/overview", "/admission/api/organizations/S101",
                 f"/admission/files/2020-2021/{DAY}/report_2020-2021_{DAY}.xlsx",
                 f"/admission/docs/2020-2021/{DAY}/local_site/index.html"):
        status, body, _ = _get(f"{ui['url']}{path}", token=token)
        assert status == 403, (path, status)
        assert b"S101" not in body and b"@" not in body
    driver = _driver()
    try:
        driver.get(f"{ui['url']}/api/v2/monitor/health")
        driver.add_cookie({"name": "_token", "value": token, "path": "/"})
        driver.get(f"{ui['url']}/admission/")
        heading = _wait(driver, lambda d: d.find_element(By.TAG_NAME, "h1"))
        assert heading.text == "Нет доступа" and "run_day" in driver.page_source
        assert "S101" not in driver.page_source and "@" not in driver.page_source
        driver.save_screenshot(str(ui["shots"] / "viewer_refused.png"))
    finally:
        driver.quit()


def _page_links(ui: dict) -> dict[str, str]:
    """Recipient -> the page link of their digest, from the demo day's .eml files."""
    import email
    import re
    from email import policy

    found = {}
    for path in (ui["output"] / "mail" / "2020-2021" / DAY).rglob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        text = msg.get_body(("plain",)).get_content()
        match = re.search(r"(http://127\.0\.0\.1:\d+/admission/o/\S+)", text)
        if match and msg["X-Admission-Kind"] == "escalation":
            found[str(msg["To"])] = match.group(1)
    return found


def test_a_mooyso_curators_link_shows_only_its_schools_expires_and_cannot_be_altered(ui):
    from admission.layout import Layout
    from admission.mail.forms import form_keys
    from admission.report.links import Scope, make_token
    from admission.store import load_results
    from selenium.webdriver.common.by import By

    results = load_results(ui["store"], "2020-2021", dt.date.fromisoformat(DAY))
    links = _page_links(ui)
    assert links, "the demo day's escalations carry no page link"
    recipient, link = next((r, u) for r, u in sorted(links.items()) if "uo-" in r)  # a МООУСО's head
    token = link.rsplit("/", 1)[1]
    driver = _driver()  # a browser without any Airflow login
    try:
        driver.get(link)
        table = _wait(driver, lambda d: d.find_element(By.ID, "members"))
        shown = {a.text for a in table.find_elements(By.CSS_SELECTOR, "td:first-child a")}
        assert shown, recipient
        parents = results.drop_duplicates("org_id").set_index("org_id")["parent_id"]
        mooyso = {parents.get(o) for o in shown if parents.get(o) not in (None, "")} - {"MIN", None}
        everyone = set(results["org_id"])
        others = {o for o in everyone if parents.get(o) not in mooyso and o not in shown}
        assert others and not (others & shown)  # another МООУСО's schools are not there
        driver.save_screenshot(str(ui["shots"] / "link_members.png"))
        # The same card the admin sees, for an organization of the link.
        first = sorted(shown)[0]
        driver.find_element(By.LINK_TEXT, first).click()
        card = _wait(driver, lambda d: d.find_element(By.ID, "org"))
        assert f"код {first}" in card.text and "Проблемы данных организации" in card.text
        driver.save_screenshot(str(ui["shots"] / "link_card.png"))
        # Another МООУСО's school through this link: refused.
        stranger = sorted(others)[0]
        driver.get(f"{link}?org={stranger}")
        assert "Нет такой организации" in driver.page_source and f"код {stranger}" not in driver.page_source
        # Altered: a scope rewritten with the link's own signature.
        body, signature = token.split(".")
        forged = make_token(Scope("2020-2021", (stranger,), dt.date(2099, 1, 1)), form_keys(Layout(ui["output"]).form_key))
        driver.get(f"{link.rsplit('/', 1)[0]}/{forged.split('.')[0]}.{signature}")
        assert "Ссылка не открывается" in driver.page_source and "недействительна" in driver.page_source
        # Expired: the installation's own key, a last day in the past.
        keys = form_keys(Layout(ui["output"]).form_key)
        old = make_token(Scope("2020-2021", tuple(sorted(shown)), dt.date(2020, 1, 29)), keys)
        driver.get(f"{link.rsplit('/', 1)[0]}/{old}")
        assert "срок действия ссылки истек 29.01.2020" in driver.page_source
        assert "код" not in driver.page_source
    finally:
        driver.quit()
