"""Schemathesis over the whole OpenAPI document, against a live manager (gunicorn, its own Redis) with a real
agent: no answer is a 5xx, and every answer's status code, content type and body are the ones the document
declares for it.

The manager and its agent are this module's own: generated DELETEs, stops and label changes hit them, never
another module's fixtures. Generated bodies never run anything on this host but ``true`` (see ``harmless``).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case, HookContext
from schemathesis import checks as check

from manager_api import db
from manager_api.api import openapi
from manager_api.app import close_app, create_app
from manager_api.config import Settings
from shared.api import JOIN_PATH, OPENAPI_PATH, bearer
from shared.paths import local_join_token_path
from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import kill_marked, wait_until

pytestmark = pytest.mark.e2e

API_TOKEN = "schemathesis-api-token"
HARMLESS = "true"
"""The command every generated command, health check and process becomes."""
MARK = "307.25"
"""The sleep of the fixtures' own long-running processes (business component, app instance): killed by it after."""
MAX_EXAMPLES = 10
"""Fuzzed cases per operation, besides the coverage phase's boundary cases: ~60 operations in about 2 minutes."""
MAX_WAIT = 1
"""The longest ``?wait=`` sent: the API allows 300 s, which would hold a request (and this test) that long."""

CHECKS = [
    check.not_a_server_error,
    check.status_code_conformance,
    check.content_type_conformance,
    check.response_schema_conformance,
]

# Keys whose string values run on the agent's host: a fleet task's or schedule's command, a deployment task's
# config.command, a component's command, an app's toProcess and a COMMAND health check's command.
COMMAND_KEYS = frozenset({"command", "toProcess"})
# Keys whose values would reach out of the agent's sandbox: args appended to the command line, archives and
# files fetched from a URL (file:///dev/zero, the manager itself...), a working directory the agent would
# create anywhere (app instances mkdir it).
EMPTIED_KEYS = {"args": [], "uris": [], "image_url": None, "working_dir": None, "workingDirectory": None}
HARMLESS_SCRIPT = "fuzz-script@1"
"""The registered script (its body: `true`) every generated run of a script runs (issue 17)."""
# A fleet task's script runs a registered body on the agent: every one generated names HARMLESS_SCRIPT, and
# every script generated is registered with a body of `true` (nothing generated ever runs).
REPLACED_KEYS = {"script": HARMLESS_SCRIPT, "body": HARMLESS}


def harmless_body(value: Any) -> Any:
    """``value`` with every command replaced by ``true`` and nothing fetched or created outside the agent's own
    directories, at any depth. Values of the wrong type are left as they are: they still test validation."""
    if isinstance(value, list):
        return [harmless_body(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        if key in COMMAND_KEYS and isinstance(item, str):
            result[key] = HARMLESS
        elif key in REPLACED_KEYS and isinstance(item, str):
            result[key] = REPLACED_KEYS[key]
        elif key in EMPTIED_KEYS and isinstance(item, str | list):
            result[key] = EMPTIED_KEYS[key]
        else:
            result[key] = harmless_body(item)
    return result


def capped_wait(value: Any) -> Any:
    """A ``wait`` query value of at most MAX_WAIT seconds; what is not a number is left to be refused."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return value
    return MAX_WAIT if math.isnan(seconds) or seconds > MAX_WAIT else value


class Fleet:
    """The module's manager, its agent and one real resource of each kind (what path parameters may name)."""

    def __init__(self, tmp: Path) -> None:
        env = isolated_env(tmp) | {"CORRAL_API_TOKEN": API_TOKEN}
        self.manager = Manager(tmp, env)
        # No Docker here: a docker component fails at once on a socket that does not exist, pulling nothing.
        self.agent = Agent(tmp, env, self.manager, "fuzz-node", 0.5)
        self.agent.args += ["--docker-host", f"unix://{tmp}/no-docker.sock"]
        self.join_token_file = Path(env["CORRAL_RUNTIME_DIR"]) / local_join_token_path(self.manager.port).name
        self.known: dict[str, str] = {}
        self.join_token = ""

    @property
    def auth(self) -> dict[str, str]:
        return bearer(API_TOKEN)

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        answer = requests.request(method, self.manager.url + path, json=body, headers=self.auth, timeout=30)
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def start(self) -> None:
        self.manager.start()
        self.agent.start()
        self.join_token = self.join_token_file.read_text().strip()
        nodes = wait_until(
            lambda: [n for n in self.call("GET", "/api/task/node")["nodes"] if n["status"] == 0],
            timeout=30,
            what="the agent online",
        )
        self.known["node_id"] = nodes[0]["id"]
        # A pending fleet task (start: false), so /start, /cancel and the detail have a real one to work on.
        self.known["task_id"] = self.call(
            "POST", "/api/tasks", {"name": "pending", "command": HARMLESS, "targets": ["*"], "start": False}, 201
        )["task_id"]
        schedule = {"name": "hourly", "command": HARMLESS, "targets": ["*"], "interval": 3600}
        self.known["schedule_id"] = self.call("POST", "/api/schedules", schedule, 201)["id"]
        template = {"name": "fuzz-template", "task_groups": [{"tasks": [{"name": "t", "config": {"command": "true"}}]}]}
        self.call("POST", "/api/task/task_group", template)
        deployed = self.call("POST", "/api/task/task_group/deploy", {"name": "fuzz-template"})
        self.known["deployment_id"] = deployed["id"]
        self.known["name"] = "fuzz-template"
        component = {"component_id": "web", "type": "process", "command": f"exec sleep {MARK}"}
        business = {"business_id": "fuzz-business", "business_name": "fuzz", "components": [component]}
        self.known["business_id"] = self.call("POST", "/api/businesses", business, 201)["business_id"]
        app = {"name": "fuzz-app", "toProcess": f"exec sleep {MARK}", "instances": 1}
        self.call("POST", "/api/apps", app, 201)
        self.known["app"] = "fuzz-app"
        script_name, version = HARMLESS_SCRIPT.split("@")
        script = {"name": script_name, "version": version, "interpreter": "sh", "body": HARMLESS}
        self.call("POST", "/api/scripts", {**script, "params": [{"name": "p", "type": "string"}]}, 201)
        self.known["script"], self.known["version"] = script_name, version

    def stop(self) -> None:
        if self.agent.alive():
            self.agent.terminate()
        if self.manager.alive():
            self.manager.terminate()
        # Components and app instances outlive their agent by design: these are the fixtures' own.
        kill_marked(MARK)


def served_document() -> dict[str, Any]:
    """The document every manager of this source tree serves, built as GET /api/openapi.json builds it.

    Schemathesis parametrizes at collection, before any fixture runs, so the document is built in-process here
    (no file, no Redis connection); the fleet fixture checks that the live manager serves this very document.
    Schemathesis's fixture-loaded schemas (schemathesis.pytest.from_fixture) would load it from the live manager
    instead, but read a pytest node attribute pytest 9.2 no longer has."""
    # The secrets key file of an in-memory database would go beside it, in the working directory: a scratch one.
    with tempfile.TemporaryDirectory(prefix="corral-openapi-") as scratch:
        settings = Settings(
            db_path=":memory:", redis_url="redis://127.0.0.1:9/0", secrets_key_file=str(Path(scratch) / "secrets.key")
        )
        app = create_app(settings)
        try:
            return openapi.build(app)
        finally:
            close_app(app)
            db.close()


DOCUMENT = served_document()
schema = (
    schemathesis.openapi.from_dict(
        DOCUMENT,
        config=schemathesis.Config.from_dict(
            {
                "request-timeout": 15,
                # Derandomized: every run sends the same requests, so CI fails or passes for a reason.
                "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            }
        ),
        # GET /api/tasks/{task_id}/output is Server-Sent Events that end only when the task does: on the pending
        # fixture task it would never answer; a workflow's /events alike on one that runs. Their 404 and 400 answers
        # are tested in tests/manager_api.
    )
    .exclude(path="/api/tasks/{task_id}/output")
    .exclude(path="/api/workflows/{workflow_id}/events")
)
KNOWN: dict[str, str] = {}
"""The fleet's real resources by path parameter name, filled by the fixture before any case is generated."""


@schema.hook("map_case")
def harmless(context: HookContext, case: Case) -> Case:
    # map_case runs on the cases of every phase (examples, coverage, fuzzing), so nothing reaches the agent
    # unrewritten: POST /api/tasks, /api/schedules, /api/apps (and PUT), /api/businesses (and PUT) and templates
    # stay tested, with their commands turned into `true`.
    case.body = harmless_body(case.body)
    if isinstance(case.query, dict):
        if "wait" in case.query:
            case.query["wait"] = capped_wait(case.query["wait"])
        if "follow" in case.query:
            # follow=1 streams an instance's log until the client leaves: the answer would never end.
            case.query["follow"] = "false"
    return case


@schema.hook("flatmap_path_parameters")
def sometimes_real(context: HookContext, path_parameters: dict[str, Any] | None) -> Any:
    # Random ids only ever find nothing (404): half the cases name the fleet's real node, task, schedule,
    # deployment, template, business and app instead, so their handlers run past the lookup.
    if not isinstance(path_parameters, dict):  # None on a path without parameters
        return st.just(path_parameters)
    real = {key: KNOWN[key] for key in path_parameters if key in KNOWN}
    if "name" in path_parameters and context.operation and context.operation.path.startswith("/api/apps"):
        real["name"] = KNOWN["app"]
    if "name" in path_parameters and context.operation and context.operation.path.startswith("/api/scripts"):
        real["name"] = KNOWN["script"]
    if not real:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, **real}])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    live = Fleet(tmp_path_factory.mktemp("schemathesis"))
    try:
        live.start()
        assert requests.get(live.manager.url + OPENAPI_PATH, timeout=10).json() == DOCUMENT
        KNOWN.update(live.known)
        yield live
    finally:
        live.stop()


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Case, fleet: Fleet) -> None:
    # The join asks for the join token, not the API token: with it, generated joins reach validation (and
    # register nodes that never heartbeat, so they stay offline and are sent nothing).
    token = fleet.join_token if case.path == JOIN_PATH else API_TOKEN
    case.call_and_validate(base_url=fleet.manager.url, headers=bearer(token), checks=CHECKS)


def test_generated_commands_are_rewritten_at_any_depth() -> None:
    body = {
        "command": "rm -rf /",
        "timeout": 5,
        "task_groups": [{"tasks": [{"name": "t", "config": {"command": "reboot", "host": "h"}}]}],
        "components": [{"command": "curl x | sh", "args": ["-c", "x"], "image_url": "file:///dev/zero"}],
        "toProcess": "shutdown",
        "workingDirectory": "/etc/x",
        "uris": ["http://example.com/a.tgz"],
        "healthChecks": [{"protocol": "COMMAND", "command": "halt"}],
        "script": "evil@1",
        "body": "rm -rf ~",
    }
    assert harmless_body(body) == {
        "command": HARMLESS,
        "timeout": 5,
        "task_groups": [{"tasks": [{"name": "t", "config": {"command": HARMLESS, "host": "h"}}]}],
        "components": [{"command": HARMLESS, "args": [], "image_url": None}],
        "toProcess": HARMLESS,
        "workingDirectory": None,
        "uris": [],
        "healthChecks": [{"protocol": "COMMAND", "command": HARMLESS}],
        "script": HARMLESS_SCRIPT,
        "body": HARMLESS,
    }
    # A wrongly typed command is sent as it is: the API must refuse it (400), which is what the case tests.
    assert harmless_body({"command": 7}) == {"command": 7}
    assert [capped_wait(v) for v in (300, "300", 0.5, "nan", "soon")] == [MAX_WAIT, MAX_WAIT, 0.5, MAX_WAIT, "soon"]


def test_only_true_ran_on_the_agent(fleet: Fleet) -> None:
    # After the run above (pytest runs a module's tests in order): every fleet task the generated requests made
    # ran `true`, never a generated command (a script task: HARMLESS_SCRIPT, whose body is `true`).
    tasks = fleet.call("GET", "/api/tasks?page_size=1000")["tasks"]
    assert len(tasks) > 10
    commands = {fleet.call("GET", f"/api/tasks/{t['task_id']}")["command"] for t in tasks}
    assert HARMLESS in commands and commands <= {HARMLESS, f"script:{HARMLESS_SCRIPT}"}, commands
