"""`--secret-env` of `corral run`, `corral schedule create` and `corral app create/update`, against a real
manager and agent: NAME takes the value from the CLI's environment, NAME=VALUE as written; the answers the CLI
prints show names only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.corral_cli.stack import Stack, ok
from tests.support import wait_until

pytestmark = pytest.mark.e2e

SECRET = "cli-secret-5e1f"


def test_run_takes_a_secret_from_the_environment_or_as_written(stack: Stack) -> None:
    # The command prints the values reversed: the output shows they arrived, the plain value is looked for.
    command = 'echo "$DB_PASSWORD" | rev; echo "$TOKEN" | rev'
    result = ok(
        stack.corral(
            "run",
            command,
            "--on",
            "all",
            "--secret-env",
            "DB_PASSWORD",
            "--secret-env",
            "TOKEN=t0k",
            "--no-follow",
            "--json",
            DB_PASSWORD=SECRET,
        )
    )
    task = json.loads(result.stdout)
    assert task["hosts"][0]["stdout"] == f"{SECRET[::-1]}\nk0t\n", task["hosts"]
    assert task["secretEnv"] == {"DB_PASSWORD": "(secret)", "TOKEN": "(secret)"}
    assert SECRET not in json.dumps({**task, "hosts": []}) and SECRET not in result.stderr


def test_a_secret_name_missing_from_the_environment_is_a_usage_error(stack: Stack) -> None:
    result = ok(stack.corral("run", "true", "--on", "all", "--secret-env", "NOT_SET_ANYWHERE_1"), 2)
    assert "NOT_SET_ANYWHERE_1 is not set in the environment" in result.stderr
    clash = ok(stack.corral("run", "true", "--on", "all", "--env", "A=1", "--secret-env", "A=2"), 2)
    assert "secretEnv" in clash.stderr


def test_schedule_create_sends_its_secret_env(stack: Stack) -> None:
    result = ok(
        stack.corral(
            "schedule",
            "create",
            "cli-secret",
            "--command",
            "true",
            "--on",
            "all",
            "--every",
            "3600",
            "--secret-env",
            "API_KEY",
            "--json",
            API_KEY=SECRET,
        )
    )
    schedule = json.loads(result.stdout)
    assert schedule["secretEnv"] == {"API_KEY": "(secret)"} and SECRET not in result.stdout
    shown = ok(stack.corral("schedule", "show", "cli-secret")).stdout
    assert "secret env API_KEY" in shown and SECRET not in shown
    requests.delete(f"{stack.manager.url}/api/schedules/{schedule['id']}", timeout=10)


def test_app_create_and_update_send_secret_envs(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "app.out"
    spec = {"name": "cli-secret", "toProcess": f'echo "$DB_PASSWORD" | rev >> {out}; exec sleep 600'}
    file = tmp_path / "app.json"
    file.write_text(json.dumps(spec))
    try:
        created = ok(
            stack.corral("app", "create", str(file), "--secret-env", "DB_PASSWORD", "--json", DB_PASSWORD=SECRET)
        )
        assert json.loads(created.stdout)["secretEnvs"] == {"DB_PASSWORD": "(secret)"}
        wait_until(lambda: out.exists() and out.read_text() == SECRET[::-1] + "\n", timeout=30, what="the secret")
        shown = ok(stack.corral("app", "show", "cli-secret")).stdout
        assert "secret env DB_PASSWORD" in shown and SECRET not in shown
        # An update without --secret-env keeps it (version 1 still); with a new value, a new version gets it.
        kept = json.loads(ok(stack.corral("app", "update", str(file), "--json")).stdout)
        assert kept["version"] == 1 and kept["secretEnvs"] == {"DB_PASSWORD": "(secret)"}
        changed = ok(stack.corral("app", "update", str(file), "--secret-env", "DB_PASSWORD=new-one", "--json"))
        assert json.loads(changed.stdout)["version"] == 2
        wait_until(lambda: out.read_text().splitlines()[-1:] == ["eno-wen"], timeout=60, what="the new value")
    finally:
        stack.manager.post("/api/apps/cli-secret/stop")
        gone = lambda: not stack.manager.get("/api/apps/cli-secret").json()["instances"]  # noqa: E731
        wait_until(gone, timeout=60, what="every instance stopped")
        requests.delete(f"{stack.manager.url}/api/apps/cli-secret", timeout=10)
