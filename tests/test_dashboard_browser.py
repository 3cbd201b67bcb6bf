"""The dashboard in a real browser (Debian's chromium, headless, driven by Selenium): it
loads behind the backend's auth, every figure renders, and the stop signal's inputs on the
page are the served numbers."""

from __future__ import annotations

import shutil
import threading

import pytest
from werkzeug.serving import make_server

from backend.app import create_app
from backend.dashboard import dashboard_data
from backend.settings import Settings
from tests.availability import unavailable
from tests.test_dashboard import project  # noqa: F401  (the fixture)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        unavailable("chromium and chromium-driver not installed (scripts/setup-services)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1200,2400",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=DriverService(driver))
    yield chrome
    chrome.quit()


@pytest.fixture
def served(project):  # noqa: F811
    root, _ = project
    settings = Settings(registry=root, basic_auth_user="viewer", basic_auth_password="s3cret")
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, server.server_port
    server.shutdown()


def test_the_dashboard_renders_in_chromium_behind_auth(browser, served, tmp_path):
    root, port = served
    browser.get(f"http://127.0.0.1:{port}/dashboard?project=4")
    assert "verdict" not in browser.page_source  # no credentials: a 401, no page
    browser.get(f"http://viewer:s3cret@127.0.0.1:{port}/dashboard?project=4")
    assert browser.title == "crackal: project 4"
    for figure in ("curve", "distances", "effort"):
        size = browser.execute_script(
            "const i = document.getElementById(arguments[0]);"
            "return i.complete ? [i.naturalWidth, i.naturalHeight] : null;",
            figure,
        )
        assert size and size[0] > 200 and size[1] > 100, (figure, size)
    data = dashboard_data(root, 4)
    rows = browser.find_element("id", "stop-inputs").text.splitlines()
    for side, row in zip(("near", "far"), rows[1:], strict=True):
        numbers = data["stop"][side]
        assert row.split()[:3] == [side, str(numbers["n"]), f"{numbers['mean']:.3f}"]
    edits = browser.find_element("id", "edits").text.splitlines()[1:]
    assert len(edits) == len(data["edits"])
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
