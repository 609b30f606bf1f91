"""Fleet tasks and schedules in a real browser: a command's output appearing live per node before it ends,
its results, a bad query target refused at the field, cancel and re-run; a schedule created, paused, resumed
and deleted, each checked in the API."""

from __future__ import annotations

import requests
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .conftest import Console, console_errors, screenshot, sign_in, wait_for

pytestmark = __import__("pytest").mark.e2e

SLOW_LINES = "for i in 1 2 3 4; do echo line-$i; sleep 1; done"


def _api_task(console: Console, task_id: str) -> dict:
    return requests.get(f"{console.url}/api/tasks/{task_id}", headers=console.api(), timeout=10).json()


def _task_id(browser: WebDriver) -> str:
    return browser.current_url.rstrip("/").rsplit("/", 1)[1]


def _pick(browser: WebDriver, query: str, node_id: str) -> None:
    """Find a node with the picker's search box (``query`` matching it alone) and tick it."""
    search = browser.find_element(By.ID, "find")
    search.clear()
    search.send_keys(query)

    def found_alone(b: WebDriver) -> bool:
        boxes = b.find_elements(By.CSS_SELECTOR, "#picker-nodes input[name=node]")
        return [box.get_attribute("value") for box in boxes if not box.is_selected()] == [node_id]

    wait_for(browser, found_alone, what=f"the picker finding {query}")
    box = f"#picker-nodes input[name=node][value='{node_id}']"
    wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, box).click() or True, what=f"ticking {node_id}")


def _run_form(browser: WebDriver, name: str, command: str, targets: str = "") -> None:
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "command").send_keys(command)
    if targets:
        browser.find_element(By.ID, "targets").send_keys(targets)
    browser.find_element(By.ID, "timeout").send_keys("60")
    browser.find_element(By.CSS_SELECTOR, "#run-form button[type=submit]").click()


def _text(browser: WebDriver, element_id: str) -> str:
    """An element's text; "" while a live update is replacing it."""
    try:
        return browser.find_element(By.ID, element_id).text
    except StaleElementReferenceException:
        return ""


def _output(browser: WebDriver, node_id: str) -> str:
    return _text(browser, f"out-{node_id}")


def _click(browser: WebDriver, element_id: str) -> None:
    """Click a button of the task's live part (found again if a live update replaced it meanwhile)."""
    _click_css(browser, f"#{element_id}")


def test_run_a_command_and_see_its_output_live_then_its_results(browser: WebDriver, console: Console) -> None:
    node_a, node_b = console.node_id("node-a"), console.node_id("node-b")
    browser.get(console.url + "/tasks")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "run-form"))
    # The picker finds nodes by the node query syntax and keeps a ticked node whatever is searched next.
    _pick(browser, "node-b", node_b)
    search = browser.find_element(By.ID, "find")
    search.clear()
    search.send_keys("node-a")
    wait_for(
        browser,
        lambda b: (
            [box.get_attribute("value") for box in b.find_elements(By.CSS_SELECTOR, "#picker-nodes input")]
            == [node_b, node_a]
        ),
        what="node-b still ticked above the search's node-a",
    )
    assert browser.find_element(By.CSS_SELECTOR, f"#picker-nodes input[value='{node_b}']").is_selected()
    # One node by its hostname typed as a target, the other the one picked above.
    _run_form(browser, "count", SLOW_LINES, targets="node-a")
    wait_for(browser, lambda b: "/tasks/" in b.current_url and b.find_elements(By.ID, "task-state"))
    task_id = _task_id(browser)
    marker = browser.execute_script("window.corralMarker = 7; return window.corralMarker")

    # The first line shows up while the command is still running (it runs about 4 s).
    wait_for(browser, lambda b: "line-1" in _output(b, node_a), timeout=15, what="line-1 of node-a, live")
    assert _api_task(console, task_id)["status"] == "running"
    assert "line-4" not in _output(browser, node_a)

    # Then every line on both nodes, and the results table says both succeeded with exit code 0.
    wait_for(browser, lambda b: _text(b, "task-status") == "completed", timeout=30, what="the task completed")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr[data-node]")
    assert {r.get_attribute("data-node") for r in rows} == {node_a, node_b}
    assert {r.get_attribute("data-status") for r in rows} == {"succeeded"}
    assert [r.find_element(By.CSS_SELECTOR, "td.exit").text for r in rows] == ["0", "0"]
    for node_id in (node_a, node_b):
        wait_for(browser, lambda b, n=node_id: "line-4" in _output(b, n), what=f"line-4 of {node_id}")
        assert [line for line in _output(browser, node_id).splitlines()] == [f"line-{i}" for i in range(1, 5)]
    progress = browser.find_element(By.ID, "task-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == "2"
    assert browser.execute_script("return window.corralMarker") == marker  # kept current without a reload
    screenshot(browser, "task")
    answer = _api_task(console, task_id)
    assert answer["status"] == "completed" and {h["exit_code"] for h in answer["hosts"]} == {0}

    # The history lists it; re-run makes a new task with the same command, targets and timeout.
    browser.get(console.url + "/tasks?name=count")
    assert browser.find_element(By.CSS_SELECTOR, f"#tasks tr[data-task='{task_id}']")
    screenshot(browser, "tasks")
    browser.get(f"{console.url}/tasks/{task_id}")  # over: the output as stored, no live stream
    assert _output(browser, node_b).splitlines() == [f"line-{i}" for i in range(1, 5)]
    assert not browser.find_elements(By.CSS_SELECTOR, "[sse-connect]")
    _click(browser, "rerun")
    wait_for(browser, lambda b: "/tasks/" in b.current_url and _task_id(b) != task_id, what="the new task's page")
    again = _api_task(console, _task_id(browser))
    assert again["task_id"] != task_id
    assert (again["command"], again["targets"], again["timeout"]) == (SLOW_LINES, ["node-a", node_b], 60)
    assert again["created_by"] == "console@127.0.0.1"
    requests.get(f"{console.url}/api/tasks/{again['task_id']}?wait=30", headers=console.api(), timeout=40)
    assert console_errors(browser) == []


def test_a_bad_query_target_is_shown_at_the_field(browser: WebDriver, console: Console) -> None:
    before = requests.get(f"{console.url}/api/tasks", headers=console.api(), timeout=10).json()["total"]
    browser.get(console.url + "/tasks")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "run-form"))
    _run_form(browser, "broken", "true", targets="query:tags:(web")
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "targets-error"))
    assert "query:tags:(web" in error[0].text  # type: ignore[index]
    assert browser.find_element(By.ID, "targets").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "command").get_attribute("value") == "true"  # what was typed stays
    # A missing name is refused at its field too, as the API's schema says.
    browser.get(console.url + "/tasks")
    browser.find_element(By.ID, "command").send_keys("true")
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.CSS_SELECTOR, "#run-form button[type=submit]").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "name-error"))
    after = requests.get(f"{console.url}/api/tasks", headers=console.api(), timeout=10).json()["total"]
    assert after == before
    assert console_errors(browser) == []


# What htmx's SSE extension does when a stream fails for good (a 503 while every slot of the process is taken,
# a connection lost): it opens a new EventSource, which sends no Last-Event-ID, so the manager starts again
# from the first line. Reached through htmx's internal data, the same path as a real failure.
RESTART_STREAM = """
var source = document.getElementById("task-live")["htmx-internal-data"].sseEventSource;
source.close();
source.onerror(new Event("error"));
"""


def test_a_stream_opened_anew_shows_each_line_once(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/tasks")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "run-form"))
    _run_form(browser, "again", "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.5; done", targets="node-a")
    wait_for(browser, lambda b: "/tasks/" in b.current_url and b.find_elements(By.ID, "task-state"))
    node_a = console.node_id("node-a")
    wait_for(browser, lambda b: "line-2" in _output(b, node_a), timeout=15, what="line-2 of node-a, live")
    browser.execute_script(RESTART_STREAM)
    wait_for(browser, lambda b: _text(b, "task-status") == "completed", timeout=30, what="the task completed")
    wait_for(browser, lambda b: "line-6" in _output(b, node_a), what="line-6 of node-a")
    assert _output(browser, node_a).splitlines() == [f"line-{i}" for i in range(1, 7)]
    # htmx logs the error event the script fired ("... Event"); nothing else may be logged.
    assert [error for error in console_errors(browser) if not error.endswith(" Event")] == []


def test_cancel_a_long_task(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/tasks")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "run-form"))
    _run_form(browser, "long", "echo started; sleep 60", targets="*")
    wait_for(browser, lambda b: "/tasks/" in b.current_url and b.find_elements(By.ID, "cancel"))
    task_id = _task_id(browser)
    node_a = console.node_id("node-a")
    wait_for(browser, lambda b: "started" in _output(b, node_a), timeout=15, what="the task running on node-a")
    _click(browser, "cancel")
    alert = browser.switch_to.alert  # data-confirm asks first
    assert "Cancel task long" in alert.text
    alert.accept()
    wait_for(browser, lambda b: _text(b, "task-status") == "canceled", timeout=15)
    assert not browser.find_elements(By.ID, "cancel")
    answer = requests.get(f"{console.url}/api/tasks/{task_id}?wait=20", headers=console.api(), timeout=30).json()
    assert answer["status"] == "canceled" and answer["canceled_by"] == "console@127.0.0.1"
    assert {h["status"] for h in answer["hosts"]} <= {"canceled", "failed"}
    assert console_errors(browser) == []


def _create_schedule(browser: WebDriver, name: str, command: str) -> str:
    """Fill the schedules page's form (every node, hourly) and answer the id of the row it adds."""
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "command").send_keys(command)
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.ID, "interval").send_keys("3600")
    browser.find_element(By.CSS_SELECTOR, "#schedule-form button[type=submit]").click()
    rows = "#schedules tr[data-schedule]"
    # Read in the poll: the live table may be swapped between finding the row and reading it.
    found = wait_for(
        browser,
        lambda b: next(
            (
                r.get_attribute("data-schedule")
                for r in b.find_elements(By.CSS_SELECTOR, rows)
                if r.find_element(By.CSS_SELECTOR, "td").text == name
            ),
            None,
        ),
        what=f"the schedule {name} listed",
    )
    return str(found)


def _click_css(browser: WebDriver, selector: str) -> None:
    """Click a button of a live part of the page (found again if a live update replaced it meanwhile)."""

    def clicked(b: WebDriver) -> bool:
        try:
            b.find_element(By.CSS_SELECTOR, selector).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(browser, clicked, what=f"clicking {selector}")


def _paused_shown(browser: WebDriver, selector: str) -> str | None:
    """What the schedule's row says (None while the page after a form is loading)."""
    try:
        return browser.find_element(By.CSS_SELECTOR, selector).get_attribute("data-paused")
    except StaleElementReferenceException:
        return None


def test_a_schedule_created_paused_resumed_and_deleted(browser: WebDriver, console: Console) -> None:
    browser.get(console.url + "/schedules")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "schedule-form"))
    schedule_id = _create_schedule(browser, "heartbeat-echo", "echo tick")
    answer = requests.get(f"{console.url}/api/schedules/{schedule_id}", headers=console.api(), timeout=10).json()
    trigger = (answer["name"], answer["interval"], answer["cron"], answer["paused"])
    assert trigger == ("heartbeat-echo", 3600, None, False)
    assert answer["next_run_at"] is not None
    screenshot(browser, "schedules")

    def api_paused() -> bool:
        url = f"{console.url}/api/schedules/{schedule_id}"
        return bool(requests.get(url, headers=console.api(), timeout=10).json()["paused"])

    selector = f"#schedules tr[data-schedule='{schedule_id}']"
    _click_css(browser, f"{selector} button[data-action=pause]")
    wait_for(browser, lambda b: _paused_shown(b, selector) == "true")
    assert api_paused()
    _click_css(browser, f"{selector} button[data-action=resume]")
    wait_for(browser, lambda b: _paused_shown(b, selector) == "false")
    assert not api_paused()

    # The list is live: a pause made elsewhere (the API here) shows without a reload.
    marker = browser.execute_script("window.corralMarker = 5; return window.corralMarker")
    url = f"{console.url}/api/schedules/{schedule_id}/pause"
    assert requests.post(url, headers=console.api(), timeout=10).status_code == 200
    wait_for(browser, lambda b: _paused_shown(b, selector) == "true", what="the API's pause, live on the page")
    assert browser.execute_script("return window.corralMarker") == marker
    assert requests.post(url.replace("/pause", "/resume"), headers=console.api(), timeout=10).status_code == 200
    wait_for(browser, lambda b: _paused_shown(b, selector) == "false", what="the API's resume, live on the page")

    # A bad crontab line is refused at its field.
    browser.find_element(By.ID, "name").send_keys("bad-cron")
    browser.find_element(By.ID, "command").send_keys("true")
    browser.find_element(By.ID, "targets").send_keys("*")
    browser.find_element(By.CSS_SELECTOR, "input[name=trigger][value=cron]").click()
    browser.find_element(By.ID, "cron").send_keys("61 * * * *")
    browser.find_element(By.CSS_SELECTOR, "#schedule-form button[type=submit]").click()
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "cron-error"))
    assert "not a valid crontab line" in error[0].text  # type: ignore[index]

    _click_css(browser, f"{selector} button[data-action=delete]")
    alert = browser.switch_to.alert
    assert "Delete schedule heartbeat-echo" in alert.text
    alert.accept()
    wait_for(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, selector))
    gone = requests.get(f"{console.url}/api/schedules/{schedule_id}", headers=console.api(), timeout=10)
    assert gone.status_code == 404

    # A schedule that fires: its last run links the task it started.
    body = {"name": "every-second", "command": "echo fired", "targets": ["node-a"], "interval": 1}
    made = requests.post(f"{console.url}/api/schedules", json=body, headers=console.api(), timeout=10).json()
    url = f"{console.url}/api/schedules/{made['id']}"
    wait_for(browser, lambda b: requests.get(url, headers=console.api(), timeout=10).json()["last_task_id"])
    requests.post(f"{url}/pause", headers=console.api(), timeout=10)
    browser.get(console.url + "/schedules")
    fired = requests.get(url, headers=console.api(), timeout=10).json()["last_task_id"]
    link = f"#schedules tr[data-schedule='{made['id']}'] td.last a"
    # The live table may be swapped between finding the link and reading it: read it again then.
    wait_for(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, link).get_attribute("href").endswith(f"/tasks/{fired}"),
        what="the last run's link to its task",
    )
    requests.delete(url, headers=console.api(), timeout=10)
    assert console_errors(browser) == []
