"""Businesses and the manual's deployments in a real browser: a business typed as JSON, planned (the scheduler's
placements, and each node's refusal of a component too big for it), deployed onto the real agents (real `sleep`
processes), seen running with its usage charts, stopped; a template of the manual created, deployed, its task
seen RUNNING with a pid, stopped. Bad JSON is named at its field."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
import requests
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.support import wait_until

from .conftest import Console, console_errors, screenshot, sign_in, wait_for

pytestmark = pytest.mark.e2e

BUSINESS = "console-shop"
TEMPLATE = "console-job"
# Each payload sleeps its own odd number of seconds: the teardown finds (and kills) exactly these.
SLEEP_WEB, SLEEP_WORKER, SLEEP_TASK = 7311, 7312, 7313
SLEEPS = {str(SLEEP_WEB), str(SLEEP_WORKER), str(SLEEP_TASK)}


def _sleepers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[-2:-1] == ["sleep"] and cmdline[-1] in SLEEPS and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.fixture(scope="module", autouse=True)
def cleanup(console: Console) -> Iterator[None]:
    """Stop what the tests started through the console, whatever failed, and never leave a payload behind."""
    yield
    api = console.api()
    requests.post(f"{console.url}/api/businesses/{BUSINESS}/stop", headers=api, timeout=10)
    deployed = requests.get(f"{console.url}/api/deployments", headers=api, timeout=10).json()
    for deployment in deployed.get("deployments", []):
        requests.post(f"{console.url}/api/task/task_group/stop", json={"id": deployment["id"]}, headers=api, timeout=10)
    try:
        wait_until(lambda: not _sleepers(), timeout=15, what="the payloads stopped")
    finally:
        for proc in _sleepers():
            try:
                proc.kill()
            except psutil.Error:
                pass


def _fill(browser: WebDriver, element_id: str, text: str) -> WebElement:
    field = browser.find_element(By.ID, element_id)
    browser.execute_script("arguments[0].value = arguments[1];", field, text)
    return field


def _component(component_id: str, seconds: int, memory_mb: int = 32) -> dict[str, Any]:
    return {
        "component_id": component_id,
        "type": "process",
        "command": f"exec sleep {seconds}",
        "resource_requirements": {"cpu_cores": 0.1, "memory_mb": memory_mb},
    }


def _live(condition: Callable[[WebDriver], Any]) -> Callable[[WebDriver], Any]:
    """``condition`` on a part of the page the live stream replaces: an element swapped out between finding and
    reading it is "not yet", not a failure."""

    def probe(b: WebDriver) -> Any:
        try:
            return condition(b)
        except StaleElementReferenceException:
            return False

    return probe


def _read(browser: WebDriver, what: Callable[[WebDriver], Any]) -> Any:
    """What ``what`` reads off a live part of the page, read again if the stream swapped it meanwhile."""
    return wait_for(browser, _live(what), what="reading the live part of the page")


def _confirm(browser: WebDriver) -> None:
    alert = wait_for(browser, lambda b: b.switch_to.alert, what="the confirmation")
    alert.accept()  # type: ignore[attr-defined]


def test_plan_deploy_see_running_and_stop_a_business(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/businesses/new")
    sign_in(browser, console)
    wait_for(browser, lambda b: "/businesses/new" in b.current_url and b.find_elements(By.ID, "spec"))

    # Bad JSON, then a request the API's schema refuses: each named at the field.
    _fill(browser, "spec", '{"business_name": "x", components: []}')
    browser.find_element(By.ID, "plan-button").click()
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "spec-error"))[0]  # type: ignore[index]
    assert "not JSON" in error.text and "line 1" in error.text
    assert browser.find_element(By.ID, "spec").get_attribute("aria-invalid") == "true"
    _fill(browser, "spec", json.dumps({"business_name": "x", "components": [{"component_id": "a", "type": "process"}]}))
    browser.find_element(By.ID, "plan-button").click()
    wait_for(browser, lambda b: "components[0].command" in b.find_element(By.ID, "spec-error").text)

    # A component bigger than any node: the plan is refused, each node says why.
    too_big = {"business_id": "too-big", "business_name": "too big", "components": [_component("db", 1, 60_000_000)]}
    _fill(browser, "spec", json.dumps(too_big))
    browser.find_element(By.ID, "plan-button").click()
    reasons = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#refusal ul[data-component=db] li"))
    texts = [r.text for r in reasons]  # type: ignore[attr-defined]
    assert any(t.startswith("node-a: memory") and "< 60000000 MB" in t for t in texts), texts
    assert any(t.startswith("node-b: memory") for t in texts), texts
    assert not browser.find_elements(By.ID, "deploy-button")  # nothing to deploy without a plan
    missing = requests.get(f"{console.url}/api/businesses/too-big", headers=console.api(), timeout=10)
    assert missing.status_code == 404

    # A business that fits: the plan names the node of each component, and only then a Deploy button.
    body = {
        "business_id": BUSINESS,
        "business_name": "console shop",
        "components": [_component("web", SLEEP_WEB), _component("worker", SLEEP_WORKER)],
    }
    _fill(browser, "spec", json.dumps(body, indent=2))
    browser.find_element(By.ID, "plan-button").click()
    rows = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#plan tbody tr[data-component]"))
    placed = {r.get_attribute("data-component"): r.find_elements(By.TAG_NAME, "td")[1].text for r in rows}  # type: ignore[attr-defined]
    assert set(placed) == {"web", "worker"} and set(placed.values()) <= {"node-a", "node-b"}, placed
    screenshot(browser, "business-plan")
    assert (
        requests.get(f"{console.url}/api/businesses/{BUSINESS}", headers=console.api(), timeout=10).status_code == 404
    )

    browser.find_element(By.ID, "deploy-button").click()
    wait_for(browser, lambda b: b.current_url.endswith(f"/businesses/{BUSINESS}"), what="the business's page")

    def all_running(b: WebDriver) -> bool:
        rows = b.find_elements(By.CSS_SELECTOR, "#components tbody tr[data-component]")
        return len(rows) == 2 and all(
            r.get_attribute("data-status") == "running" and r.find_element(By.CSS_SELECTOR, ".pid").text.isdigit()
            for r in rows
        )

    wait_for(browser, _live(all_running), timeout=40, what="both components running, live on the page")
    assert _read(browser, lambda b: b.find_element(By.ID, "business-status").text) == "running"
    answer = requests.get(f"{console.url}/api/businesses/{BUSINESS}", headers=console.api(), timeout=10).json()
    assert answer["status"] == "running" and answer["created_by"] == "console@127.0.0.1"
    pids = {c["pid"] for c in answer["components"]}
    shown = _read(browser, lambda b: {int(e.text) for e in b.find_elements(By.CSS_SELECTOR, "#components .pid")})
    assert shown == pids
    assert len(_sleepers()) >= 2
    href = _read(
        browser, lambda b: b.find_element(By.CSS_SELECTOR, "#components [data-component=web] a").get_attribute("href")
    )
    assert "/nodes/" in href

    # Usage charts: drawn by uPlot from the page's JSON block; samples (one per 10 s at most) arrive live, the
    # charts drawn again with each, without a reload.
    browser.get(f"{console.url}/businesses/{BUSINESS}")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, ".chart .uplot canvas")) == 2, what="charts")
    marker = browser.execute_script("window.corralMarker = 3; return window.corralMarker")

    def samples(b: WebDriver) -> int:
        data = json.loads(b.find_element(By.ID, "usage-data").get_attribute("data-charts") or "{}")
        return len(data.get("times", []))

    first = _read(browser, lambda b: (samples(b),))[0]  # a tuple: 0 samples is an answer too
    wait_for(browser, lambda b: samples(b) > first, timeout=40, what="a new usage sample, live in the charts' data")
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, ".chart .uplot canvas")) == 2, what="charts")
    assert browser.execute_script("return window.corralMarker") == marker  # the same page: no reload
    metrics = requests.get(f"{console.url}/api/businesses/{BUSINESS}/metrics", headers=console.api(), timeout=10)
    assert set(metrics.json()["components"]) == {"web", "worker"} and metrics.json()["times"]
    legend = browser.find_element(By.ID, "chart-memory").text
    assert "web" in legend and "worker" in legend
    history = browser.find_element(By.ID, "history").text
    assert "deploying" in history and "console@127.0.0.1" in history
    browser.execute_script("document.getElementById('components-h').scrollIntoView()")
    screenshot(browser, "business")

    # Update refuses bad JSON at its field; restart starts a new generation of each component.
    _fill(browser, "spec", '{"business_name": "console shop", "components": [{"component_id": "web"}]}')
    browser.find_element(By.ID, "update-button").click()
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "spec-error"))[0]  # type: ignore[index]
    assert "components[0].type" in error.text
    browser.find_element(By.ID, "restart-button").click()

    def restarted(b: WebDriver) -> bool:
        rows = b.find_elements(By.CSS_SELECTOR, "#components tbody tr[data-component]")
        return len(rows) == 2 and all(
            r.get_attribute("data-status") == "running"
            and r.find_elements(By.TAG_NAME, "td")[4].text == "2"
            and r.find_element(By.CSS_SELECTOR, ".pid").text.isdigit()
            for r in rows
        )

    wait_for(browser, _live(restarted), timeout=40, what="both components running again, generation 2")
    answer = requests.get(f"{console.url}/api/businesses/{BUSINESS}", headers=console.api(), timeout=10).json()
    assert {c["generation"] for c in answer["components"]} == {2}
    assert not {c["pid"] for c in answer["components"]} & pids

    # Stop (after a confirmation): the page follows by itself, the processes are gone.
    browser.find_element(By.ID, "stop-button").click()
    _confirm(browser)
    wait_for(browser, _live(lambda b: b.find_element(By.ID, "business-status").text == "stopped"), timeout=40)
    answer = requests.get(f"{console.url}/api/businesses/{BUSINESS}", headers=console.api(), timeout=10).json()
    assert answer["status"] == "stopped"
    wait_until(lambda: not [p for p in _sleepers() if p.info["cmdline"][-1] != str(SLEEP_TASK)], timeout=15)

    # The list, with its status filter.
    browser.get(console.url + "/businesses?status=stopped")
    rows = browser.find_elements(By.CSS_SELECTOR, "#businesses tr[data-business]")
    assert [r.get_attribute("data-business") for r in rows] == [BUSINESS]
    browser.get(console.url + "/businesses?status=running")
    assert not browser.find_elements(By.CSS_SELECTOR, "#businesses tr[data-business]")
    browser.get(console.url + "/businesses?name=nothing-like-it")
    assert not browser.find_elements(By.CSS_SELECTOR, "#businesses tr[data-business]")
    browser.get(console.url + "/businesses")
    screenshot(browser, "businesses")
    assert console_errors(browser) == []


def test_create_deploy_and_stop_a_template_of_the_manual(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/manual")
    sign_in(browser, console)
    wait_for(browser, lambda b: "/manual" in b.current_url and b.find_elements(By.ID, "spec"))
    assert len(browser.find_elements(By.ID, "spec")) == 1  # one form, one field of that id
    browser.find_element(By.CSS_SELECTOR, "#new-template summary").click()  # the form opens on demand

    _fill(browser, "spec", '{"name": "x", "task_groups": [}')
    browser.find_element(By.ID, "create-template").click()
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "spec-error"))[0]  # type: ignore[index]
    assert "not JSON" in error.text
    _fill(browser, "spec", json.dumps({"name": TEMPLATE, "task_groups": [{"tasks": [{"name": "t"}]}]}))
    browser.find_element(By.ID, "create-template").click()
    wait_for(browser, lambda b: "task_groups.0.tasks.0.config" in b.find_element(By.ID, "spec-error").text)

    template = {
        "name": TEMPLATE,
        "task_groups": [{"tasks": [{"name": "sleeper", "config": {"command": f"sleep {SLEEP_TASK}"}}]}],
    }
    _fill(browser, "spec", json.dumps(template))
    browser.find_element(By.ID, "create-template").click()
    row = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f"#templates tr[data-template={TEMPLATE}]"))[0]  # type: ignore[index]
    shown = requests.get(f"{console.url}/api/templates/{TEMPLATE}", headers=console.api(), timeout=10).json()
    assert shown["task_groups"][0]["tasks"][0]["config"]["command"] == f"sleep {SLEEP_TASK}"

    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, lambda b: "/manual/deployments/" in b.current_url, what="the deployment's page")
    deployment_id = browser.current_url.rsplit("/", 1)[1]

    def task_running(b: WebDriver) -> bool:
        rows = b.find_elements(By.CSS_SELECTOR, "#tasks tbody tr[data-task]")
        return (
            len(rows) == 1
            and rows[0].get_attribute("data-state") == "RUNNING"
            and rows[0].find_element(By.CSS_SELECTOR, ".pid").text.isdigit()
        )

    wait_for(browser, _live(task_running), timeout=40, what="the task RUNNING with its pid, live on the page")
    answer = requests.get(f"{console.url}/api/deployments/{deployment_id}", headers=console.api(), timeout=10).json()
    assert answer["state"] == "RUNNING"
    assert (
        int(_read(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#tasks .pid").text)) == answer["tasks"][0]["pid"]
    )
    assert _read(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#tasks td a").text) in {"node-a", "node-b"}
    screenshot(browser, "deployment")

    browser.find_element(By.ID, "stop-button").click()
    _confirm(browser)
    wait_for(browser, _live(lambda b: b.find_element(By.ID, "deployment-state").text == "STOPPED"), timeout=40)
    answer = requests.get(f"{console.url}/api/deployments/{deployment_id}", headers=console.api(), timeout=10).json()
    assert answer["state"] == "STOPPED" and answer["tasks"][0]["state"] == "STOPPED"

    browser.get(console.url + "/manual")
    row = browser.find_element(By.CSS_SELECTOR, f"#deployments tr[data-deployment='{deployment_id}']")
    assert "STOPPED" in row.text
    screenshot(browser, "manual")
    assert console_errors(browser) == []
