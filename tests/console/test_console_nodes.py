"""The console in a real browser: sign-in, the overview kept live, nodes found by a query after their tags are
edited, the audit log, and what a wrong token or a bad query shows."""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from .conftest import Console, console_errors, follow_link, make_browser, screenshot, sign_in, wait_for

pytestmark = pytest.mark.e2e


def test_a_wrong_token_is_refused_with_a_clear_message(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/nodes")
    assert "/signin" in browser.current_url  # no session: sent to the sign-in form, and back after it
    sign_in(browser, console, token="not-the-token")
    error = browser.find_element(By.ID, "signin-error")
    assert "neither the manager's API token nor a valid named token" in error.text
    screenshot(browser, "signin")
    cookies = {c["name"] for c in browser.get_cookies()}
    assert "corral_console" not in cookies


def test_sign_in_see_the_nodes_edit_tags_and_query_by_them(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/nodes?q=tags:web")
    sign_in(browser, console)
    wait_for(browser, lambda b: "/nodes" in b.current_url and b.find_elements(By.CSS_SELECTOR, "#nodes tr[data-node]"))
    session = next(c for c in browser.get_cookies() if c["name"] == "corral_console")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    rows = browser.find_elements(By.CSS_SELECTOR, "#nodes tbody tr[data-node]")
    assert {row.find_element(By.CSS_SELECTOR, "td a").text for row in rows} == {"node-a", "node-b"}
    screenshot(browser, "nodes")

    # A node's page: its document, and new tags saved through the form.
    follow_link(browser, "node-a")
    wait_for(browser, lambda b: b.find_elements(By.ID, "tags"))
    assert "node-a" in browser.find_element(By.TAG_NAME, "h1").text
    field = browser.find_element(By.ID, "tags")
    field.clear()
    field.send_keys("web canary")
    field.submit()
    wait_for(browser, lambda b: "canary" in b.find_element(By.ID, "tags-h").find_element(By.XPATH, "..").text)
    # Its CPU and memory history drawn (uPlot draws on a canvas) from the samples the API answers too.
    node_a_id = browser.find_element(By.CSS_SELECTOR, "dl.facts code").text
    samples = requests.get(f"{console.url}/api/nodes/{node_a_id}/metrics", headers=console.api(), timeout=10).json()
    assert samples["at"] and len(samples["cpu_percent"]) == len(samples["at"])
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#chart-cpu canvas"), what="the CPU chart")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-memory canvas")
    screenshot(browser, "node")
    node_a = console.node_id("node-a")
    answer = requests.get(f"{console.url}/api/nodes/{node_a}", headers=console.api(), timeout=10).json()
    assert answer["tags"] == ["web", "canary"]

    # The same query language as the API, typed into the box: only node-a carries the new tag.
    browser.get(console.url + "/nodes")
    box = browser.find_element(By.ID, "q")
    box.send_keys("tags:canary")
    box.submit()

    def one_row(b: WebDriver) -> bool:
        rows = b.find_elements(By.CSS_SELECTOR, "#nodes tbody tr[data-node]")
        return len(rows) == 1 and rows[0].get_attribute("data-node") == node_a

    wait_for(browser, one_row, what="only node-a matching tags:canary")
    assert "q=tags%3Acanary" in browser.current_url  # the query is in the address: a link shares it

    # A malformed query says where it broke.
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("tags:(web")
    box.submit()
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "q-error"))
    assert "Invalid request format" in error[0].text  # type: ignore[index]

    # A bad tag is refused at the field.
    browser.get(f"{console.url}/nodes/{node_a}")
    field = browser.find_element(By.ID, "tags")
    field.clear()
    field.send_keys("no/slashes")
    field.submit()
    wait_for(browser, lambda b: b.find_elements(By.ID, "tags-error"))

    # Every change is in the audit log, with who made it.
    browser.get(console.url + "/audit?action=tags")
    table = browser.find_element(By.ID, "audit").text
    assert "console@127.0.0.1" in table and node_a in table
    screenshot(browser, "audit")
    assert console_errors(browser) == []


def test_the_overview_updates_live_without_a_reload(browser: WebDriver, console: Console) -> None:
    sign_in(browser, console)
    # The count is swapped in live, so it is read again on every poll rather than held as an element.
    wait_for(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, "[data-count=nodes-online]").text == "2",
        what="the overview showing both nodes online",
    )
    marker = browser.execute_script("window.corralMarker = 1; return window.corralMarker")
    screenshot(browser, "overview")
    console.agents["node-b"].kill()  # offline after 3 intervals: the page must say so by itself
    wait_for(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, "[data-count=nodes-offline]").text == "1",
        timeout=30,
        what="the overview showing node-b offline",
    )
    assert browser.execute_script("return window.corralMarker") == marker  # the same page: no reload
    console.agents["node-b"].start()
    assert console_errors(browser) == []


def test_pages_send_a_strict_content_security_policy_and_a_404_page(console: Console) -> None:
    answer = requests.get(console.url + "/no-such-page", timeout=10)
    assert answer.status_code == 404
    assert "There is no page at /no-such-page" in answer.text and "Traceback" not in answer.text
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    api = requests.get(console.url + "/api/no-such", timeout=10)
    assert api.status_code == 401 and api.json() == {"error": "Missing or invalid API token"}


def test_a_form_without_its_csrf_token_is_refused(console: Console) -> None:
    with requests.Session() as client:
        form = client.get(console.url + "/signin", timeout=10)
        token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        client.post(console.url + "/signin", data={"token": "console-test-token", "csrf_token": token}, timeout=10)
        assert "corral_console" in client.cookies
        node_a = console.node_id("node-a")
        refused = client.post(f"{console.url}/nodes/{node_a}/tags", data={"tags": "evil"}, timeout=10)
        assert refused.status_code == 403 and "expired or came from another site" in refused.text
        answer = requests.get(f"{console.url}/api/nodes/{node_a}", headers=console.api(), timeout=10).json()
        assert "evil" not in answer["tags"]


def test_phone_width_and_the_keyboard(console: Console) -> None:
    phone = make_browser(390, 844)
    try:
        sign_in(phone, console)
        pages = ["/", "/nodes", "/audit", f"/nodes/{console.node_id('node-a')}"]
        pages += ["/apps", "/apps/_new", "/tasks", "/schedules", "/businesses", "/businesses/new", "/manual"]
        for path in pages:
            phone.get(console.url + path)
            wait_for(phone, lambda b: b.find_elements(By.TAG_NAME, "h1"))
            # Wide tables scroll inside their box; the page itself never scrolls sideways.
            overflow = phone.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
            unlabelled = phone.execute_script(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]"
                ".filter(e => e.tagName === 'BUTTON' ? !e.textContent.trim() && !e.getAttribute('aria-label')"
                " : !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name || e.id)"
            )
            assert unlabelled == [], f"{path}: controls without a label: {unlabelled}"
        phone.get(console.url + "/nodes")
        screenshot(phone, "nodes-phone")
        # The first Tab reaches "Skip to content", which leads past the navigation to the page itself.
        body = phone.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        assert phone.switch_to.active_element.text == "Skip to content"
        assert console_errors(phone) == []
    finally:
        phone.quit()
