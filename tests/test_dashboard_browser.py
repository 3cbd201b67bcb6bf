"""The dashboard in a real browser (Debian's chromium, headless, driven by Selenium): it
loads behind the backend's auth, every figure renders, the stop signal's inputs on the
page are the served numbers, and a point of the map opens its task's page."""

from __future__ import annotations

import shutil
import threading

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.wait import WebDriverWait
from werkzeug.serving import make_server

from backend.app import create_app
from backend.dashboard import dashboard_data
from backend.settings import Settings
from tests.availability import unavailable
from tests.test_dashboard import project  # noqa: F401  (the fixture)
from tests.test_pool_map import POOL_IDS, mapped  # noqa: F401  (the fixture)


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


def rendered_size(browser, element_id: str) -> list[int] | None:
    """[width, height] of a loaded image as the browser decoded it, None if not loaded."""
    return browser.execute_script(
        "const i = document.getElementById(arguments[0]);"
        "return i.complete ? [i.naturalWidth, i.naturalHeight] : null;",
        element_id,
    )


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
        size = rendered_size(browser, figure)
        assert size and size[0] > 200 and size[1] > 100, (figure, size)
    data = dashboard_data(root, 4)
    rows = browser.find_element("id", "stop-inputs").text.splitlines()
    for side, row in zip(("near", "far"), rows[1:], strict=True):
        numbers = data["stop"][side]
        assert row.split()[:3] == [side, str(numbers["n"]), f"{numbers['mean']:.3f}"]
    edits = browser.find_element("id", "edits").text.splitlines()[1:]
    assert len(edits) == len(data["edits"])
    browser.save_screenshot(str(tmp_path / "dashboard.png"))


def test_a_point_of_the_map_opens_its_task_in_chromium(browser, mapped, tmp_path):  # noqa: F811
    server = make_server("127.0.0.1", 0, create_app(mapped["settings"]), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://u:p@127.0.0.1:{server.server_port}/dashboard?project=4")
        points = browser.find_elements("css selector", "#map svg a")
        assert len(points) == len(POOL_IDS)
        browser.save_screenshot(str(tmp_path / "map.png"))
        href = points[3].get_attribute("xlink:href") or points[3].get_attribute("href")
        ActionChains(browser).move_to_element(points[3]).click().perform()
        task = int(href.rsplit("task=", 1)[1])
        WebDriverWait(browser, 60).until(lambda b: len(b.window_handles) == 2)  # a new tab
        browser.switch_to.window(browser.window_handles[1])
        WebDriverWait(browser, 60).until(lambda b: "/dashboard/task?" in b.current_url)
        assert browser.current_url.endswith(f"/dashboard/task?project=4&task={task}")
        for figure in ("shown", "cam", "nearest-images"):
            size = rendered_size(browser, figure)
            assert size and size[0] > 200 and size[1] > 100, (figure, size)
        assert len(browser.find_element("id", "nearest").find_elements("tag name", "li")) == 5
        browser.save_screenshot(str(tmp_path / "task.png"))
    finally:
        server.shutdown()
