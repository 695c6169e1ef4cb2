"""What a browser may do with the plugin's pages (admission.adapter.web): every response carries a strict
Content-Security-Policy, ``nosniff`` and no framing; the Great Expectations Data Docs, which print cell values
unescaped, are served sandboxed — markup planted in a data cell is shown, never run (checked in chromium)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

DAY = "2020-01-15"
PLANTED = ('<html><head><title>docs</title></head><body><p>E-mail: '
           '<img src="x" onerror="document.title=\'pwned\'"></p>'
           '<script>document.title = "pwned"; fetch("/api/v2/variables")</script></body></html>')


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The plugin's app on an output folder whose report copy of the Data Docs holds a planted cell; logged in."""
    from admission.adapter import web
    from admission.layout import DATA_DOCS, Layout

    monkeypatch.setenv("AIRFLOW_VAR_ADMISSION_OUTPUT_DIR", str(tmp_path))
    docs = Layout(tmp_path).report("2020-2021", __import__("datetime").date.fromisoformat(DAY)) / DATA_DOCS
    (docs / "local_site").mkdir(parents=True)
    (docs / "local_site" / "index.html").write_text(PLANTED, encoding="utf-8")
    monkeypatch.setattr(web, "campaign_allowed", lambda user, plan: True)  # an admin (the roles: tests/adapter/test_ui)
    app = web.create_app()
    app.dependency_overrides[web._user] = lambda: object()
    return app


def test_every_response_says_no_script_no_framing_no_sniffing_and_data_docs_are_sandboxed(app):
    from admission.adapter.web import DOCS_CSP, PAGE_CSP
    from fastapi.testclient import TestClient

    client = TestClient(app)
    docs = client.get(f"/docs/2020-2021/{DAY}/local_site/index.html")
    assert docs.status_code == 200 and docs.headers["content-security-policy"] == DOCS_CSP
    assert DOCS_CSP.startswith("sandbox;") and "script-src" not in DOCS_CSP and "'unsafe-inline'" not in DOCS_CSP.split(
        "style-src")[0]
    missing = client.get(f"/files/2020-2021/{DAY}/secret.txt")  # an error response too
    for response in (docs, missing):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert missing.status_code == 404 and missing.headers["content-security-policy"] == PAGE_CSP
    assert "frame-ancestors 'none'" in PAGE_CSP and "script-src" not in PAGE_CSP and "default-src 'none'" in PAGE_CSP


@pytest.mark.browser
def test_markup_planted_in_the_data_docs_runs_nothing_in_chromium(app):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Debian's chromium/chromium-driver are not installed (.ci/run installs them)")
        pytest.skip("chromium and chromedriver are not installed")
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(f"http://127.0.0.1:{port}/docs/2020-2021/{DAY}/local_site/index.html")
        time.sleep(1)
        assert "E-mail" in driver.page_source  # the page is shown
        assert driver.title == "docs"  # neither the inline script nor the onerror handler ran
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(10)
