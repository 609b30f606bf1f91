"""The console's apps in a real browser: an app created from JSON runs real processes on the agents, its
instances are seen turning healthy without a reload, it is scaled, restarted, stopped and started from its page,
an instance's log is followed live, bad JSON is refused at the field, and it is deleted after a confirmation.

Every app runs `python3` payloads of tests/e2e/app_payloads with MARK in their argv, so that the teardown finds
and kills this module's processes by their command line without touching anything else on the machine.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions

from tests.e2e.test_apps import HTTP_CHECK  # the apps e2e tests' fast HTTP check
from tests.support import kill_marked, marked_processes, wait_until

from .conftest import Console, console_errors, follow_link, screenshot, sign_in, wait_for

pytestmark = pytest.mark.e2e

PAYLOADS = Path(__file__).resolve().parents[1] / "e2e" / "app_payloads"
MARK = "corral-console-app"  # in every payload's argv: what the teardown kills
APPS = ("console-web", "console-ticker")


def app_body(name: str, script: str, *script_args: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "toProcess": sys.executable,
        "args": [str(PAYLOADS / script), MARK, *script_args],
        "ports": [0],
        **extra,
    }


def payloads() -> list[psutil.Process]:
    """This module's live payload processes."""
    return marked_processes(MARK)


def kill_payloads() -> None:
    kill_marked(MARK)


@pytest.fixture
def cleanup(console: Console) -> Iterator[None]:
    """Delete this module's apps and kill whatever payload is left, whatever the test did."""
    try:
        yield
    finally:
        for name in APPS:
            requests.delete(f"{console.url}/api/apps/{name}", headers=console.api(), timeout=10)
        try:
            wait_until(lambda: not payloads(), timeout=15, what="payloads stopped by their agents")
        except AssertionError:
            pass
        kill_payloads()


def api_app(console: Console, name: str) -> requests.Response:
    return requests.get(f"{console.url}/api/apps/{name}", headers=console.api(), timeout=10)


def rows_shown(browser: WebDriver) -> list[dict[str, str]]:
    """The instance rows of the live table, read in one go (the stream may swap the table between two reads)."""
    rows: list[dict[str, str]] = browser.execute_script(
        "return Array.from(document.querySelectorAll('#instances-table tr[data-instance]'))"
        ".map(function (r) { return Object.assign({}, r.dataset); });"
    )
    return rows


def row_html(browser: WebDriver, instance: str) -> dict[str, str]:
    """An instance's row as shown: its text, node link (text and address) and log link, read in one go."""
    found: dict[str, str] = browser.execute_script(
        "var r = document.querySelector('#instances-table tr[data-instance=\"' + arguments[0] + '\"]');"
        "var node = r.querySelector('td:nth-child(2) a');"
        "var log = r.querySelector('a[href$=\"/log\"]');"
        "return {text: r.innerText, node: node.innerText, href: node.href, log: log.href};",
        instance,
    )
    return found


def healthy_rows(browser: WebDriver) -> list[str]:
    """Ids of the instances the page shows healthy (and wanted)."""
    return [r["instance"] for r in rows_shown(browser) if r["health"] == "healthy" and r["desired"] == "run"]


def all_rows(browser: WebDriver) -> list[str]:
    return [r["instance"] for r in rows_shown(browser)]


def type_definition(browser: WebDriver, text: str) -> None:
    field = browser.find_element(By.ID, "definition")
    field.clear()
    field.send_keys(text)
    browser.execute_script("window.corralOldPage = true;")
    browser.find_element(By.CSS_SELECTOR, "form.app-json button[type=submit]").click()

    def answered(b: WebDriver) -> bool:
        return bool(b.execute_script("return !window.corralOldPage && document.readyState === 'complete';"))

    wait_for(browser, answered, what="the form's answer (a new page)")


def confirm(browser: WebDriver) -> None:
    wait_for(browser, expected_conditions.alert_is_present(), what="the confirmation")
    browser.switch_to.alert.accept()


def test_create_watch_scale_restart_stop_start_and_delete_an_app(
    browser: WebDriver, console: Console, cleanup: None
) -> None:
    browser.get(console.url + "/apps")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "apps"))
    browser.find_element(By.LINK_TEXT, "New app").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "definition"))
    assert '"toProcess"' in browser.find_element(By.ID, "definition").get_attribute("value")  # an example to edit

    body = app_body("console-web", "http_server.py", "$PORT0", nodeQuery="tags:web", healthChecks=[HTTP_CHECK])
    type_definition(browser, json.dumps(body))
    wait_for(browser, lambda b: b.current_url.endswith("/apps/console-web"), what="the app's page after creating")
    marker = browser.execute_script("window.corralMarker = 7; return window.corralMarker")

    # The instance starts unknown and is seen turning healthy by the live table alone.
    (first,) = wait_for(browser, healthy_rows, timeout=40, what="one healthy instance on the page")  # type: ignore[misc]
    assert browser.execute_script("return window.corralMarker") == marker  # no reload
    answer = api_app(console, "console-web").json()
    (row,) = answer["instances"]
    assert row["id"] == first and row["health"] == "healthy" and row["ports"][0] > 0
    assert psutil.Process(row["pid"]).is_running()  # a real process on the agent's machine
    assert requests.get(f"http://127.0.0.1:{row['ports'][0]}/", timeout=5).status_code == 200
    line = row_html(browser, first)
    assert line["node"] == row["hostname"] and line["href"].endswith(f"/nodes/{row['node_id']}")
    assert str(row["ports"][0]) in line["text"] and "HTTP 200" in line["text"]  # ports and the last check

    # Scale to 2, as POST /api/apps/console-web/scale would.
    field = browser.find_element(By.ID, "instances")
    field.clear()
    field.send_keys("2")
    field.submit()
    wait_for(browser, lambda b: len(healthy_rows(b)) == 2 and len(all_rows(b)) == 2, timeout=40, what="2 healthy")
    assert api_app(console, "console-web").json()["counts"]["planned"] == 2
    hosts = {r["hostname"] for r in api_app(console, "console-web").json()["instances"]}
    assert hosts == {"node-a", "node-b"}  # spread over both web nodes
    screenshot(browser, "app")

    # A bad count is refused at the field.
    field = browser.find_element(By.ID, "instances")
    field.clear()
    field.send_keys("1001")
    field.submit()
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "instances-error"))
    assert "instances" in error[0].text and "1000" in error[0].text  # type: ignore[index]
    assert api_app(console, "console-web").json()["definition"]["instances"] == 2

    # The list: counts, state, version.
    browser.get(console.url + "/apps")
    listed = browser.find_element(By.CSS_SELECTOR, "#apps tr[data-app='console-web']")
    assert "2 / 2" in listed.text and "running" in listed.text
    screenshot(browser, "apps")

    # Rolling restart: both instances replaced by new ones, healthy.
    browser.get(console.url + "/apps/console-web")
    before = set(all_rows(browser))
    browser.find_element(By.XPATH, "//button[text()='Rolling restart']").click()
    confirm(browser)

    def replaced(b: WebDriver) -> bool:
        now = healthy_rows(b)
        return len(now) == 2 and not before & set(now) and len(all_rows(b)) == 2

    wait_for(browser, replaced, timeout=60, what="both instances replaced")

    # Stop: no instance left, the definition kept; start: running again.
    browser.find_element(By.XPATH, "//button[text()='Stop']").click()
    confirm(browser)
    wait_for(browser, lambda b: not all_rows(b), timeout=40, what="no instance after stop")
    assert api_app(console, "console-web").json()["status"] == "stopped"
    browser.find_element(By.XPATH, "//button[text()='Start']").click()
    wait_for(browser, lambda b: len(healthy_rows(b)) == 2, timeout=40, what="2 healthy after start")

    # Delete, after a confirmation; dismissing it first keeps the app.
    browser.find_element(By.ID, "delete").click()
    wait_for(browser, expected_conditions.alert_is_present())
    browser.switch_to.alert.dismiss()
    assert api_app(console, "console-web").status_code == 200
    browser.find_element(By.ID, "delete").click()
    confirm(browser)
    wait_for(browser, lambda b: b.current_url.endswith("/apps"), what="back to the list")
    assert not browser.find_elements(By.CSS_SELECTOR, "#apps tr[data-app='console-web']")
    assert api_app(console, "console-web").status_code == 404
    wait_until(lambda: not payloads(), timeout=30, what="the app's processes stopped by their agents")

    # Every change was the console user's, in the audit log.
    audit = requests.get(
        f"{console.url}/api/audit", params={"target": "console-web"}, headers=console.api(), timeout=10
    ).json()
    actions = {(e["action"], e["actor"]) for e in audit["entries"]}
    for action in ("app.create", "app.scale", "app.restart", "app.stop", "app.start", "app.delete"):
        assert (action, "console@127.0.0.1") in actions, audit
    assert console_errors(browser) == []


def test_an_instance_log_is_followed_live(browser: WebDriver, console: Console, cleanup: None) -> None:
    created = requests.post(
        f"{console.url}/api/apps",
        json=app_body("console-ticker", "logger.py", ports=[]),
        headers=console.api(),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    browser.get(console.url + "/apps/console-ticker")
    sign_in(browser, console)

    def running(b: WebDriver) -> list[str]:
        return [r["instance"] for r in rows_shown(b) if r["state"] == "running"]

    (instance,) = wait_for(browser, running, timeout=40, what="the ticker running")  # type: ignore[misc]
    browser.get(row_html(browser, instance)["log"])  # the row's log link (the live table may swap it meanwhile)
    wait_for(browser, lambda b: b.find_elements(By.ID, "log"))

    def ticks(b: WebDriver) -> list[int]:
        return [
            int(line.split()[1]) for line in b.find_element(By.ID, "log").text.splitlines() if line.startswith("tick ")
        ]

    seen = wait_for(browser, ticks, timeout=30, what="a tick line in the log")
    marker = browser.execute_script("window.corralMarker = 9; return window.corralMarker")
    last = max(seen)  # type: ignore[call-overload]
    # New lines come in as the process writes them (five a second), on the same page.
    wait_for(browser, lambda b: max(ticks(b)) >= last + 5, timeout=30, what="new tick lines appended")
    shown = ticks(browser)
    assert shown == sorted(shown) and len(shown) == len(set(shown))  # in order, none twice
    assert browser.execute_script("return window.corralMarker") == marker
    screenshot(browser, "instance-log")

    # Edit: the current definition prefilled, saved as PUT /api/apps/console-ticker would (a rolling update).
    follow_link(browser, "console-ticker")
    browser.find_element(By.LINK_TEXT, "Edit JSON").click()
    current = json.loads(browser.find_element(By.ID, "definition").get_attribute("value") or "")
    assert current == api_app(console, "console-ticker").json()["definition"]
    type_definition(browser, json.dumps({**current, "envs": {"COLOUR": "green"}}))
    wait_for(browser, lambda b: b.current_url.endswith("/apps/console-ticker"), what="the app's page after saving")
    answer = api_app(console, "console-ticker").json()
    assert answer["version"] == 2 and answer["definition"]["envs"] == {"COLOUR": "green"}
    assert console_errors(browser) == []


def test_bad_json_is_refused_at_the_field_and_the_text_kept(
    browser: WebDriver, console: Console, cleanup: None
) -> None:
    browser.get(console.url + "/apps/_new")
    sign_in(browser, console)
    wait_for(browser, lambda b: b.find_elements(By.ID, "definition"))

    bad = '{"name": "x", "healthChecks": [{"protocol": "UDP"}]}'
    type_definition(browser, bad)
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "definition-error"))[0]  # type: ignore[index]
    assert error.find_element(By.CSS_SELECTOR, "code[data-field]").text == "toProcess"  # the first bad field
    assert browser.find_element(By.ID, "definition").get_attribute("value") == bad
    assert browser.find_element(By.ID, "definition").get_attribute("aria-invalid") == "true"

    udp = json.dumps({"name": "x", "toProcess": "true", "healthChecks": [{"protocol": "UDP"}]}, indent=2)
    type_definition(browser, udp)
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "definition-error"))[0]  # type: ignore[index]
    assert error.find_element(By.CSS_SELECTOR, "code[data-field]").text == "healthChecks[0].protocol"
    assert "Must be one of: HTTP, TCP, COMMAND" in error.text
    assert browser.find_element(By.ID, "definition").get_attribute("value") == udp
    screenshot(browser, "app-new")

    syntax = '{"name": "x",\n "toProcess": "true" "instances": 1}'
    type_definition(browser, syntax)
    error = wait_for(browser, lambda b: b.find_elements(By.ID, "definition-error"))[0]  # type: ignore[index]
    assert "JSON syntax error at line 2 column 22" in error.text, error.text
    assert browser.find_element(By.ID, "definition").get_attribute("value") == syntax

    assert api_app(console, "x").status_code == 404  # nothing was created
    with requests.Session() as client:  # the status a script sees
        form = client.get(console.url + "/signin", timeout=10)
        token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        client.post(console.url + "/signin", data={"token": "console-test-token", "csrf_token": token}, timeout=10)
        page = client.get(console.url + "/apps/_new", timeout=10).text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]  # the signed-in session's
        refused = client.post(console.url + "/apps", data={"definition": udp, "csrf_token": token}, timeout=10)
        assert refused.status_code == 400 and "healthChecks[0].protocol" in refused.text
    assert console_errors(browser) == []
