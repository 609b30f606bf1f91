"""Scripts, workflows and agent-side schedules in a real browser (issue 17): a script version listed, its page
(params, content) and its run form starting a fleet task whose output appears (a secret param never shown); a
workflow started from its JSON form, its steps linked to their tasks and its live status reaching completed;
a workflow canceled; a schedule created on agent and marked so. Each checked in the API too."""

from __future__ import annotations

import json
import re

import requests
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.webhook_receiver import start_receiver
from tests.support import wait_until

from .conftest import Console, console_errors, follow_link, screenshot, sign_in, wait_for

pytestmark = __import__("pytest").mark.e2e

HELLO = {
    "name": "hello",
    "version": "1.0",
    "interpreter": "python3",
    "body": (
        "import os\n"
        'print("greeting for", os.environ["CORRAL_PARAM_WHO"], "x", os.environ["CORRAL_PARAM_TIMES"])\n'
        'print("token set:", bool(os.environ.get("CORRAL_PARAM_TOKEN")))\n'
    ),
    "params": [
        {"name": "who", "type": "string", "required": True, "description": "who is greeted"},
        {"name": "times", "type": "int", "default": 1},
        {"name": "token", "type": "string", "secret": True},
    ],
}
SECRET = "hunter2-not-shown"


def _api(console: Console, method: str, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
    return requests.request(method, console.url + path, headers=console.api(), timeout=30, **kwargs)


def _text(browser: WebDriver, selector: str) -> str:
    """An element's text; "" while a live update is replacing it (or it is not there yet)."""
    try:
        found = browser.find_elements(By.CSS_SELECTOR, selector)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def _click(browser: WebDriver, selector: str) -> None:
    """Click a button of a live part of the page (found again if a live update replaced it meanwhile)."""

    def clicked(b: WebDriver) -> bool:
        try:
            b.find_element(By.CSS_SELECTOR, selector).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(browser, clicked, what=f"clicking {selector}")


def test_a_script_listed_shown_and_run_with_typed_params(browser: WebDriver, console: Console) -> None:
    assert _api(console, "POST", "/api/scripts", json=HELLO).status_code == 201
    browser.get(console.url + "/scripts")
    sign_in(browser, console)
    row = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#scripts tr[data-script='hello@1.0']"))
    cells = row[0].text  # type: ignore[index]
    assert "python3" in cells and "body" in cells and "who: string" in cells and "token: string (secret)" in cells
    screenshot(browser, "scripts")
    follow_link(browser, "hello")
    wait_for(browser, lambda b: b.find_elements(By.ID, "run-form"), what="the script's page")
    assert "CORRAL_PARAM_WHO" in browser.find_element(By.ID, "content").text
    digest = _api(console, "GET", "/api/scripts/hello/1.0").json()["digest"]
    assert digest in browser.find_element(By.ID, "digest").text
    params = [r.get_attribute("data-param") for r in browser.find_elements(By.CSS_SELECTOR, "#params tr[data-param]")]
    assert params == ["who", "times", "token"]
    assert browser.find_element(By.ID, "param-token").get_attribute("type") == "password"
    tasks_before = _api(console, "GET", "/api/tasks").json()["total"]

    # A value not of the declared type is refused at its field, and nothing is run.
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.ID, "param-who").send_keys("ops")
    browser.find_element(By.ID, "param-times").send_keys("three")
    browser.find_element(By.CSS_SELECTOR, "#run-form button[type=submit]").click()
    error = wait_for(browser, lambda b: _text(b, "#param-times-error"), what="the error at the times field")
    assert "params.times: must be of type int" in str(error)
    assert _api(console, "GET", "/api/tasks").json()["total"] == tasks_before
    assert browser.find_element(By.ID, "param-who").get_attribute("value") == "ops"  # the form kept

    times = browser.find_element(By.ID, "param-times")
    times.clear()
    times.send_keys("3")
    browser.find_element(By.ID, "param-token").send_keys(SECRET)
    browser.find_element(By.CSS_SELECTOR, "#run-form button[type=submit]").click()
    wait_for(browser, lambda b: re.search(r"/tasks/[0-9a-f-]{36}$", b.current_url), what="the task's page")
    task_id = browser.current_url.rsplit("/", 1)[1]
    wait_for(browser, lambda b: _text(b, "#task-status") == "completed", timeout=30, what="the task completed")
    node_a = console.node_id("node-a")
    wait_for(browser, lambda b: "greeting for ops x 3" in _text(b, f"#out-{node_a}"), what="the script's output")
    assert "token set: True" in _text(browser, f"#out-{node_a}")
    assert "hello@1.0" in _text(browser, "#task-script")
    shown_params = _text(browser, "#task-params")
    assert "who=ops" in shown_params and "times=3" in shown_params and "token=(secret)" in shown_params
    assert SECRET not in browser.page_source
    answer = _api(console, "GET", f"/api/tasks/{task_id}").json()
    assert answer["script"]["name"] == "hello" and answer["status"] == "completed"
    assert console_errors(browser) == []


def test_a_script_version_deleted_after_confirming(browser: WebDriver, console: Console) -> None:
    body = {**HELLO, "version": "0.9"}
    assert _api(console, "POST", "/api/scripts", json=body).status_code == 201
    browser.get(console.url + "/scripts/hello/0.9")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "delete"))
    browser.find_element(By.ID, "delete").click()
    alert = browser.switch_to.alert
    assert "Delete script hello@0.9" in alert.text
    alert.accept()
    wait_for(browser, lambda b: b.current_url.endswith("/scripts"), what="back on the list")
    assert _api(console, "GET", "/api/scripts/hello/0.9").status_code == 404
    assert not browser.find_elements(By.CSS_SELECTOR, "#scripts tr[data-script='hello@0.9']")


def _start_workflow(browser: WebDriver, console: Console, body: dict | str) -> None:
    browser.get(console.url + "/workflows")
    if "/signin" in browser.current_url:
        sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "workflow-form"))
    box = browser.find_element(By.ID, "body")
    box.clear()
    box.send_keys(body if isinstance(body, str) else json.dumps(body))
    browser.find_element(By.CSS_SELECTOR, "#workflow-form button[type=submit]").click()


def _step_status(browser: WebDriver, step: str) -> str | None:
    try:
        found = browser.find_elements(By.CSS_SELECTOR, f"#steps tr[data-step='{step}']")
        return found[0].get_attribute("data-status") if found else None
    except StaleElementReferenceException:
        return None


def test_a_workflow_from_its_json_followed_live_to_completed(browser: WebDriver, console: Console) -> None:
    _start_workflow(browser, console, "{not json")
    error = wait_for(browser, lambda b: _text(b, "#body-error"), what="the JSON refused")
    assert "not JSON" in str(error)
    workflow = {
        "name": "roll-out",
        "steps": [
            {"name": "fetch", "task": {"command": "echo fetching; sleep 3", "targets": ["*"]}},
            {"name": "restart", "depends_on": ["fetch"], "task": {"command": "echo restarted", "targets": ["*"]}},
        ],
    }
    _start_workflow(browser, console, workflow)
    wait_for(browser, lambda b: re.search(r"/workflows/[0-9a-f-]{36}$", b.current_url), what="the workflow's page")
    workflow_id = browser.current_url.rsplit("/", 1)[1]
    # Live: the page shows the first step running (and the second waiting), then both done, without a reload.
    wait_for(browser, lambda b: _step_status(b, "fetch") == "running", what="fetch running")
    assert _step_status(browser, "restart") == "pending"
    screenshot(browser, "workflow")
    wait_for(browser, lambda b: _text(b, "#workflow-status") == "completed", timeout=40, what="the workflow completed")
    assert _step_status(browser, "restart") == "succeeded"
    answer = _api(console, "GET", f"/api/workflows/{workflow_id}").json()
    assert answer["status"] == "completed"
    for step in answer["steps"]:
        link = browser.find_element(By.CSS_SELECTOR, f"#steps tr[data-step='{step['name']}'] td.task a")
        assert link.get_attribute("href").endswith(f"/tasks/{step['task_id']}")
    browser.find_element(By.CSS_SELECTOR, "#steps tr[data-step='restart'] td.task a").click()
    wait_for(browser, lambda b: _text(b, "#task-status") == "completed", what="the step's task page")
    browser.get(console.url + "/workflows")
    row = browser.find_element(By.CSS_SELECTOR, f"#workflows tr[data-workflow='{workflow_id}']")
    assert row.get_attribute("data-status") == "completed" and "2/2" in row.text
    assert console_errors(browser) == []


def test_a_running_workflow_canceled(browser: WebDriver, console: Console) -> None:
    workflow = {
        "name": "long-haul",
        "steps": [
            {"name": "wait", "task": {"command": "sleep 60", "targets": ["*"]}},
            {"name": "after", "depends_on": ["wait"], "task": {"command": "true", "targets": ["*"]}},
        ],
    }
    workflow_id = _api(console, "POST", "/api/workflows", json=workflow).json()["id"]
    browser.get(f"{console.url}/workflows/{workflow_id}")
    sign_in(browser, console)
    wait_for(browser, lambda b: _step_status(b, "wait") == "running", what="the first step running")
    _click(browser, "#cancel")
    alert = browser.switch_to.alert
    assert "Cancel workflow long-haul" in alert.text
    alert.accept()
    wait_for(browser, lambda b: _text(b, "#workflow-status") == "canceled", what="the workflow canceled")
    assert _step_status(browser, "after") == "canceled"
    assert not browser.find_elements(By.ID, "cancel")
    answer = _api(console, "GET", f"/api/workflows/{workflow_id}").json()
    assert answer["status"] == "canceled" and answer["canceled_by"] == "console@127.0.0.1"
    assert console_errors(browser) == []


def test_a_schedule_created_on_agent_is_marked_so(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/schedules")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "schedule-form"))
    browser.find_element(By.ID, "name").send_keys("agent-tick")
    browser.find_element(By.ID, "command").send_keys("true")
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.ID, "interval").send_keys("3600")
    browser.find_element(By.ID, "on_agent").click()
    browser.find_element(By.CSS_SELECTOR, "#schedule-form button[type=submit]").click()
    schedule = wait_for(
        browser,
        lambda b: next(
            (s for s in _api(console, "GET", "/api/schedules").json()["schedules"] if s["name"] == "agent-tick"), None
        ),
        what="the schedule created",
    )
    assert schedule["on_agent"] is True  # type: ignore[index]
    row = f"#schedules tr[data-schedule='{schedule['id']}']"  # type: ignore[index]

    def marked(b: WebDriver) -> bool:
        try:
            shown = b.find_elements(By.CSS_SELECTOR, row)
            return bool(shown) and shown[0].get_attribute("data-on-agent") == "true" and "on agent" in shown[0].text
        except StaleElementReferenceException:
            return False

    wait_for(browser, marked, what="the on-agent mark")
    # Its page: every target node's agent came to hold the current set (it was pushed to them at once).
    follow_link(browser, "agent-tick")
    wait_for(browser, lambda b: "on agent" in _text(b, "#fired-by"), what="the schedule's page")

    def every_agent_current(b: WebDriver) -> bool:
        rows = b.find_elements(By.CSS_SELECTOR, "#agents tr[data-node]")
        if len(rows) == 2 and all(r.get_attribute("data-current") == "true" for r in rows):
            return True
        b.refresh()  # the page is drawn as it is, not kept live
        return False

    wait_for(browser, every_agent_current, timeout=30, what="both agents holding the current set")
    screenshot(browser, "schedule-on-agent")
    api = _api(console, "GET", f"/api/schedules/{schedule['id']}").json()  # type: ignore[index]
    assert {a["hostname"] for a in api["agents"] if a["current"]} == {"node-a", "node-b"}
    assert _text(browser, "#set-version") == str(api["agent_set_version"])
    _api(console, "DELETE", f"/api/schedules/{schedule['id']}")  # type: ignore[index]
    assert console_errors(browser) == []


def test_a_tasks_processor_shown_with_its_deliveries(browser: WebDriver, console: Console) -> None:
    server, receiver = start_receiver()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/t0ken-in-path"
        body = {
            "name": "processed",
            "command": "echo done",
            "targets": ["*"],
            "processor": {"url": url, "secret": "s3cr3t-of-the-console-test"},
        }
        answer = _api(console, "POST", "/api/tasks?wait=30", json=body)
        assert answer.status_code == 201, answer.text
        task_id = answer.json()["task_id"]
        wait_until(lambda: receiver.of("task.summary"), timeout=30, what="the summary delivered")
        browser.get(f"{console.url}/tasks/{task_id}")
        sign_in(browser, console)

        def summary_sent(b: WebDriver) -> bool:
            if "summary sent" in _text(b, "#task-processor"):
                return True
            b.refresh()  # the processor block is drawn with the page, not kept live
            return False

        wait_for(browser, summary_sent, what="the summary shown as sent")
        shown = _text(browser, "#task-processor")
        assert f"127.0.0.1:{server.server_address[1]}" in shown and "sent 3" in shown
        assert "t0ken-in-path" not in browser.page_source and "s3cr3t-of-the-console-test" not in browser.page_source
        assert console_errors(browser) == []
    finally:
        server.shutdown()
        server.server_close()


def test_a_viewer_sees_scripts_and_workflows_but_runs_nothing(browser: WebDriver, console: Console) -> None:
    made = _api(console, "POST", "/api/tokens", json={"name": "scripts-viewer", "role": "viewer"})
    assert made.status_code == 201, made.text
    if _api(console, "GET", "/api/scripts/hello/1.0").status_code == 404:
        assert _api(console, "POST", "/api/scripts", json=HELLO).status_code == 201
    browser.get(console.url + "/scripts/hello/1.0")
    sign_in(browser, console, made.json()["token"])
    wait_for(browser, lambda b: b.find_elements(By.ID, "run-form"), what="the script's page for the viewer")
    nav = browser.find_element(By.CSS_SELECTOR, "nav[aria-label=Sections]").text
    assert "Scripts" in nav and "Workflows" in nav
    before = _api(console, "GET", "/api/tasks").json()["total"]
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.ID, "param-who").send_keys("viewer")
    browser.find_element(By.CSS_SELECTOR, "#run-form button[type=submit]").click()
    wait_for(browser, lambda b: "has role viewer: this needs operator" in b.page_source, what="the run refused")
    assert _api(console, "GET", "/api/tasks").json()["total"] == before
    browser.get(console.url + "/workflows")
    wait_for(browser, lambda b: b.find_elements(By.ID, "workflows"), what="the workflows list for the viewer")
    box = browser.find_element(By.ID, "body")
    box.send_keys(json.dumps({"name": "nope", "steps": [{"name": "a", "task": {"command": "true", "targets": ["*"]}}]}))
    before = _api(console, "GET", "/api/workflows").json()["total"]
    browser.find_element(By.CSS_SELECTOR, "#workflow-form button[type=submit]").click()
    wait_for(browser, lambda b: "has role viewer: this needs operator" in b.page_source, what="the workflow refused")
    assert _api(console, "GET", "/api/workflows").json()["total"] == before


def test_a_schedule_of_a_script_created_with_typed_params(browser: WebDriver, console: Console) -> None:
    assert _api(console, "POST", "/api/scripts", json={**HELLO, "version": "sched"}).status_code == 201
    browser.get(console.url + "/schedules")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "schedule-form"))
    browser.find_element(By.ID, "name").send_keys("hello-hourly")
    browser.find_element(By.ID, "script").send_keys("hello@sched")
    browser.find_element(By.ID, "params").send_keys(f"who=ops\ntimes=x\ntoken={SECRET}")
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.ID, "interval").send_keys("3600")
    browser.find_element(By.CSS_SELECTOR, "#schedule-form button[type=submit]").click()
    # A value not of its declared type: said at the params field, the form kept, nothing created.
    wait_for(browser, lambda b: "params.times: must be of type int" in _text(b, "#params-error"), what="the error")
    assert "times=x" in browser.find_element(By.ID, "params").get_attribute("value")  # type: ignore[operator]
    assert not [s for s in _api(console, "GET", "/api/schedules").json()["schedules"] if s["name"] == "hello-hourly"]
    params = browser.find_element(By.ID, "params")
    params.clear()
    params.send_keys(f"who=ops\ntimes=3\ntoken={SECRET}")
    browser.find_element(By.CSS_SELECTOR, "#schedule-form button[type=submit]").click()
    schedule = wait_for(
        browser,
        lambda b: next(
            (s for s in _api(console, "GET", "/api/schedules").json()["schedules"] if s["name"] == "hello-hourly"),
            None,
        ),
        what="the schedule created",
    )
    assert schedule["script"] == "hello@sched"  # type: ignore[index]
    assert schedule["params"] == {"who": "ops", "times": 3, "token": "(secret)"}  # type: ignore[index]
    browser.get(console.url + f"/schedules/{schedule['id']}")  # type: ignore[index]
    shown = wait_for(browser, lambda b: _text(b, "#script-params"), what="the schedule's page")
    assert "who=ops" in shown and "times=3" in shown and "token=(secret)" in shown  # type: ignore[operator]
    assert SECRET not in browser.page_source
    assert console_errors(browser) == []
