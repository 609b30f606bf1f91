"""The console's end-to-end fixtures: a real manager (with an API token) and agents, and a real headless
Chromium driven through Debian's matching chromedriver (Selenium; nothing downloads a browser)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "console-test-token"
INTERVAL = 1.0
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
"""Where the tests leave a picture of each page (the README shows them)."""


class Console:
    """A manager with two agents (tagged web; node-b also db), shared by one test module."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = isolated_env(workdir)
        self.env["CORRAL_NODE_METRICS_EVERY_SECONDS"] = "1"  # the node chart has points within seconds
        self.manager = Manager(workdir, self.env, ["--api-token", TOKEN])
        self.agents = {name: Agent(workdir, self.env, self.manager, name, INTERVAL) for name in ("node-a", "node-b")}
        self.agents["node-a"].args += ["--tag", "web"]
        self.agents["node-b"].args += ["--tag", "web", "--tag", "db"]

    @property
    def url(self) -> str:
        return self.manager.url

    def api(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def start(self) -> None:
        self.manager.start()
        for agent in self.agents.values():
            agent.start()
        wait_until(self._all_online, timeout=60, what=f"two agents online\n{self.logs()}")

    def _all_online(self) -> bool:
        nodes = self.manager.get("/api/nodes", headers=self.api()).json()["nodes"]
        return sum(1 for n in nodes if n["status"] == "online") == 2

    def node_id(self, hostname: str) -> str:
        nodes = self.manager.get("/api/nodes", headers=self.api()).json()["nodes"]
        return next(n["id"] for n in nodes if n["hostname"] == hostname)

    def logs(self) -> str:
        parts = [f"--- manager\n{self.manager.output()[-4000:]}"]
        parts += [f"--- {name}\n{agent.output()[-2000:]}" for name, agent in self.agents.items()]
        return "\n".join(parts)

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.terminate()
        self.manager.terminate()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    started = Console(tmp_path_factory.mktemp("console"))
    try:
        started.start()
        yield started
    finally:
        started.stop()


def make_browser(width: int = 1280, height: int = 800) -> WebDriver:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            raise AssertionError(
                f"{path} is missing: install Debian's chromium and chromium-driver (ops/dev test-tools)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    return driver


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    driver = make_browser()
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(browser: WebDriver, console: Console, token: str = TOKEN) -> None:
    """Fill in the sign-in form (the one the browser was sent to, keeping where it goes next; else /signin)."""
    if "/signin" not in browser.current_url:
        browser.get(console.url + "/signin")
    browser.find_element(By.ID, "token").send_keys(token)
    submit = browser.find_element(By.CSS_SELECTOR, "form button[type=submit]")
    submit.click()
    # The click does not always wait for the answer's page: until the form is gone, the next find_element
    # would search the sign-in page that is still there (a wrong token's error was once looked for too early).
    answered = WebDriverWait(browser, 20, poll_frequency=0.05)
    answered.until(staleness_of(submit), message="the sign-in form was not answered")


SWAPPED_OUT = "does not belong to the document"
"""How chromedriver sometimes tells of an element a live update replaced, instead of a stale element reference."""


def wait_for(browser: WebDriver, condition, timeout: float = 20, what: str = "") -> object:  # type: ignore[no-untyped-def]
    """Poll ``condition(browser)`` until truthy (WebDriverWait: polling with a deadline, no fixed sleeps)."""

    # A live update may replace an element between finding and reading it: that is "not yet", not a failure.
    def probe(b: WebDriver) -> object:
        try:
            return condition(b)
        except StaleElementReferenceException:
            return False
        except WebDriverException as exc:
            if SWAPPED_OUT in (exc.msg or ""):
                return False
            raise

    waiting = WebDriverWait(browser, timeout, poll_frequency=0.1)
    return waiting.until(probe, message=what)


def follow_link(browser: WebDriver, text: str) -> None:
    """Open the link ``text`` of a live listing: its href read within wait_for (a live update may swap the row
    between finding the link and clicking it, which a click would fail on), then loaded as a click would."""
    href = wait_for(browser, lambda b: b.find_element(By.LINK_TEXT, text).get_attribute("href"), what=f"link {text}")
    browser.get(str(href))


def screenshot(browser: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def console_errors(browser: WebDriver) -> list[str]:
    """What the page logged as errors (a CSP violation, a script error); answers of 4xx the test asked for (a
    bad query's 400) are the page working, not failing; nor is a live stream's end: the manager ends each after
    STREAM_SECONDS, or at once when the process has no free slot, and the browser comes back by itself, while
    htmx's SSE extension logs the EventSource's error event ("... Event") each time. Whether a live page stays
    live is what the tests' waits on it check."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE"
        and "the server responded with a status of 4" not in entry["message"]
        and "Response Status Error Code 4" not in entry["message"]  # htmx tells of the 4xx it swapped in
        and not entry["message"].endswith(" Event")
    ]
