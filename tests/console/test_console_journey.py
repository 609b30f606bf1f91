"""One operator's whole day in the console, then the audit log: every area's change found on the audit page,
filtered to the signed-in user (issue 13's "find all of it in the audit log"). Each area's own module checks its
pages in depth; this one checks that they all leave the same trail."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support import kill_marked, marked_processes, wait_until

from .conftest import Console, console_errors, screenshot, sign_in, wait_for
from .test_console_apps import app_body, confirm, rows_shown, type_definition
from .test_console_businesses import _component, _fill
from .test_console_tasks import _click_css, _create_schedule, _pick, _run_form, _task_id, _text

pytestmark = pytest.mark.e2e

APP = "journey-app"
BUSINESS = "journey-shop"
SLEEP = 7321  # the business's payload; not in test_console_businesses' set, so that module's teardown leaves it
MARK = "corral-console-app"  # app_body puts it in the payload's argv


@pytest.fixture
def cleanup(console: Console) -> Iterator[None]:
    try:
        yield
    finally:
        requests.delete(f"{console.url}/api/apps/{APP}", headers=console.api(), timeout=10)
        requests.post(f"{console.url}/api/businesses/{BUSINESS}/stop", headers=console.api(), timeout=10)
        kill_marked(MARK)
        kill_marked(str(SLEEP))


def test_every_area_leaves_its_change_in_the_audit_log(browser: WebDriver, console: Console, cleanup: None) -> None:
    browser.get(console.url + "/nodes")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#nodes tr[data-node]"))
    node_a = console.node_id("node-a")

    # Nodes: a tag added on node-a's page.
    browser.get(f"{console.url}/nodes/{node_a}")
    field = browser.find_element(By.ID, "tags")
    field.clear()
    field.send_keys("web journey")
    field.submit()
    wait_for(browser, lambda b: "journey" in b.find_element(By.ID, "tags-h").find_element(By.XPATH, "..").text)

    # Fleet tasks: a command on the node picked by its new tag, run to its end.
    browser.get(console.url + "/tasks")
    _pick(browser, "tags:journey", node_a)
    _run_form(browser, "journey-echo", "echo journey")
    wait_for(browser, lambda b: "/tasks/" in b.current_url and b.find_elements(By.ID, "task-state"))
    task_id = _task_id(browser)
    wait_for(browser, lambda b: _text(b, "task-status") == "completed", timeout=30, what="the task completed")

    # Schedules: one created, then paused.
    browser.get(console.url + "/schedules")
    schedule_id = _create_schedule(browser, "journey-schedule", "true")
    _click_css(browser, f"#schedules tr[data-schedule='{schedule_id}'] button[data-action=pause]")
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#schedules tr[data-paused=true]"))

    # Apps: created from JSON, scaled to 2, deleted.
    browser.get(console.url + "/apps/_new")
    type_definition(browser, json.dumps(app_body(APP, "logger.py", nodeQuery="tags:web")))
    wait_for(browser, lambda b: b.current_url.endswith(f"/apps/{APP}"), what="the app's page")
    wait_for(browser, lambda b: len(rows_shown(b)) == 1, timeout=40, what="the app's instance")
    field = browser.find_element(By.ID, "instances")
    field.clear()
    field.send_keys("2")
    field.submit()
    wait_for(browser, lambda b: len(rows_shown(b)) == 2, timeout=40, what="two instances")
    browser.find_element(By.ID, "delete").click()
    confirm(browser)
    wait_for(browser, lambda b: b.current_url.endswith("/apps"), what="back to the apps")

    # Businesses: planned, deployed, stopped.
    browser.get(console.url + "/businesses/new")
    body = {"business_id": BUSINESS, "business_name": "journey shop", "components": [_component("web", SLEEP)]}
    _fill(browser, "spec", json.dumps(body))
    browser.find_element(By.ID, "plan-button").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "deploy-button"))
    browser.find_element(By.ID, "deploy-button").click()
    wait_for(browser, lambda b: b.current_url.endswith(f"/businesses/{BUSINESS}"), what="the business's page")
    _click_css(browser, "#stop-button")
    confirm(browser)
    stopped = f"{console.url}/api/businesses/{BUSINESS}"
    wait_until(
        lambda: requests.get(stopped, headers=console.api(), timeout=10).json()["status"] == "stopped",
        timeout=30,
        what="the business stopped",
    )
    wait_until(lambda: not marked_processes(str(SLEEP)), timeout=30, what="its payload gone")

    # The audit page, filtered to this user: every area's change, each with its target.
    browser.get(console.url + "/audit")
    who = browser.find_element(By.NAME, "actor")
    who.send_keys("console@127.0.0.1")
    who.submit()
    wait_for(browser, lambda b: "actor=console" in b.current_url)
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#audit tbody tr')].map(r => [...r.cells].map(c => c.innerText))"
    )
    seen = {(action, target) for _when, who, action, target, _detail in rows if who == "console@127.0.0.1"}
    expected = {
        ("node.tags", node_a),
        ("task.create", task_id),
        ("schedule.create", schedule_id),
        ("schedule.pause", schedule_id),
        ("app.create", APP),
        ("app.scale", APP),
        ("app.delete", APP),
        ("business.create", BUSINESS),
        ("business.stop", BUSINESS),
    }
    assert expected <= seen, f"missing from the audit page: {expected - seen}"
    assert all(who == "console@127.0.0.1" for _when, who, *_rest in rows)  # the filter held
    screenshot(browser, "audit-journey")
    assert console_errors(browser) == []
