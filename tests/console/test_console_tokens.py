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
