"""The console's Tokens page (issue 15) in a real browser: a token created there shows its secret once and
works on the API with its role; revoked there, the API refuses it."""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from .conftest import Console, console_errors, screenshot, sign_in, wait_for

pytestmark = pytest.mark.e2e


def test_create_a_token_see_its_secret_once_and_revoke_it(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/tokens")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "token-form"))
    browser.find_element(By.ID, "name").send_keys("console-reader")
    Select(browser.find_element(By.ID, "role")).select_by_visible_text("viewer")
    browser.find_element(By.ID, "expiresIn").send_keys("30d")
    browser.find_element(By.ID, "token-form").submit()
    wait_for(browser, lambda b: b.find_elements(By.ID, "new-token"), what="the new token shown")
    secret = browser.find_element(By.ID, "new-token").text
    assert secret.startswith("corral_")
    screenshot(browser, "tokens")
    headers = {"Authorization": f"Bearer {secret}"}
    assert requests.get(f"{console.url}/api/nodes", headers=headers, timeout=10).status_code == 200
    assert requests.post(f"{console.url}/api/tokens", json={}, headers=headers, timeout=10).status_code == 403

    browser.get(console.url + "/tokens")  # shown once: not on the page again
    assert secret not in browser.page_source
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-token='{secret.split('_')[1]}']")
    row.find_element(By.TAG_NAME, "button").click()
    wait_for(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, f"tr[data-token='{secret.split('_')[1]}'] .state").text == "revoked",
        what="the token revoked",
    )
    answer = requests.get(f"{console.url}/api/nodes", headers=headers, timeout=10)
    assert answer.status_code == 401 and "revoked" in answer.json()["error"]

    browser.find_element(By.ID, "name").send_keys("bad name!")
    browser.find_element(By.ID, "token-form").submit()
    wait_for(browser, lambda b: b.find_elements(By.ID, "name-error"), what="the name refused")
    assert console_errors(browser) == []


def _named_token(console: Console, body: dict[str, object]) -> str:
    made = requests.post(f"{console.url}/api/tokens", json=body, headers=console.api(), timeout=10)
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def _sign_in_fresh(browser: WebDriver, console: Console, token: str) -> None:
    browser.get(console.url + "/signin")
    browser.delete_all_cookies()  # a browser of its own per test, but never the admin's session
    browser.get(console.url + "/nodes")
    sign_in(browser, console, token)


def test_named_tokens_sign_in_with_their_role_and_scope(browser: WebDriver, console: Console) -> None:
    """A viewer reads but changes nothing and never sees Tokens; an operator acts only within its node query;
    revoking a token ends its console session at the next page."""
    viewer = _named_token(console, {"name": "console-viewer", "role": "viewer"})
    _sign_in_fresh(browser, console, viewer)
    wait_for(browser, lambda b: "node-a" in b.page_source, what="the nodes page for the viewer")
    nav = browser.find_element(By.CSS_SELECTOR, "nav[aria-label=Sections]").text
    assert "Nodes" in nav and "Tokens" not in nav
    browser.get(console.url + "/tokens")
    assert "has role viewer" in browser.page_source and "token-form" not in browser.page_source
    before = requests.get(f"{console.url}/api/tasks", headers=console.api(), timeout=10).json()["total"]
    browser.get(console.url + "/tasks")
    browser.find_element(By.ID, "name").send_keys("from-viewer")
    browser.find_element(By.ID, "command").send_keys("echo hi")
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.CSS_SELECTOR, "#run-form button[type=submit]").click()
    wait_for(browser, lambda b: "has role viewer: this needs operator" in b.page_source, what="the viewer refused")
    assert requests.get(f"{console.url}/api/tasks", headers=console.api(), timeout=10).json()["total"] == before
    audit = requests.get(f"{console.url}/api/audit", headers=console.api(), timeout=10).json()
    assert any(entry["actor"].startswith("console:console-viewer@") for entry in audit["entries"]), audit

    operator = _named_token(
        console, {"name": "console-db-ops", "role": "operator", "nodeQuery": "tags:db", "commands": ["echo *"]}
    )
    _sign_in_fresh(browser, console, operator)
    browser.get(console.url + "/tasks")
    wait_for(browser, lambda b: b.find_elements(By.ID, "run-form"))
    browser.find_element(By.ID, "name").send_keys("beyond")
    browser.find_element(By.ID, "command").send_keys("echo hi")
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.CSS_SELECTOR, "#run-form button[type=submit]").click()
    wait_for(browser, lambda b: "outside its node query" in b.page_source, what="node-a refused to the operator")
    assert requests.get(f"{console.url}/api/tasks", headers=console.api(), timeout=10).json()["total"] == before

    token_id = operator.split("_")[1]
    revoked = requests.delete(f"{console.url}/api/tokens/{token_id}", headers=console.api(), timeout=10)
    assert revoked.status_code == 200, revoked.text
    browser.get(console.url + "/nodes")
    wait_for(browser, lambda b: "/signin" in b.current_url, what="the revoked token's session ended")
    assert console_errors(browser) == []
