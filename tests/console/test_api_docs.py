"""GET /api/docs in a real headless Chromium against a real manager with an API token: the vendored Swagger UI
renders every operation of /api/openapi.json under the page's strict CSP, and a call made from it with the token
reaches the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from shared.api import DOCS_PATH, OPENAPI_PATH
from tests.console.conftest import TOKEN, console_errors, wait_for
from tests.e2e.harness import Manager, isolated_env


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    workdir: Path = tmp_path_factory.mktemp("api-docs")
    started = Manager(workdir, isolated_env(workdir), ["--api-token", TOKEN])
    started.start()
    try:
        yield started
    finally:
        started.terminate()


def test_the_reference_renders_every_operation_and_calls_the_api(browser: WebDriver, manager: Manager) -> None:
    document = manager.get(OPENAPI_PATH).json()
    operations = sum(len(ops) for ops in document["paths"].values())
    browser.get(manager.url + DOCS_PATH)

    def rendered(b: WebDriver) -> bool:
        return len(b.find_elements(By.CSS_SELECTOR, ".opblock")) == operations

    wait_for(browser, rendered, what=f"{operations} operations rendered")
    assert browser.find_element(By.CSS_SELECTOR, ".info .title").text.startswith(document["info"]["title"])

    # Authorize with the API token, then run GET /api/task/node from the page.
    browser.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    scheme = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".modal-ux .auth-container"))[0]
    scheme.find_element(By.CSS_SELECTOR, "input").send_keys(TOKEN)
    scheme.find_element(By.CSS_SELECTOR, "button.authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".modal-ux .close-modal").click()
    block = browser.find_element(By.ID, "operations-nodes-nodes_list_nodes_get")
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait_for(browser, lambda b: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))[0].click()
    wait_for(browser, lambda b: block.find_elements(By.CSS_SELECTOR, "button.execute"))[0].click()

    answered = ".live-responses-table tr.response"

    def status(b: WebDriver) -> str:
        live = block.find_elements(By.CSS_SELECTOR, f"{answered} .response-col_status")
        return live[0].text.strip() if live else ""

    wait_for(browser, status, what="the call's answer")
    assert status(browser) == "200"
    assert '"nodes"' in block.find_element(By.CSS_SELECTOR, f"{answered} .response-col_description").text
    assert not console_errors(browser)  # a CSP violation would be logged here
