"""The real `corral` console script against a real manager (gunicorn, private Redis) and a real agent."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.corral_cli.stack import HOST, Stack, ok, result_row, stop_all
from tests.e2e.harness import BIN, Manager, isolated_env
from tests.support import default_sigint, free_port, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "cli-test-token-5f2d9a"  # noqa: S105 - a test token, checked never to be printed


def test_nodes_table_and_json(stack: Stack) -> None:
    table = ok(stack.corral("nodes")).stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "HOSTNAME", "IP", "STATUS"]
    row = next(line.split() for line in table[1:] if f" {HOST} " in line)
    assert row[1:4] == [HOST, "127.0.0.1", "online"]
    assert re.fullmatch(r"cpu_usage_percent:\d+,memory_usage_percent:\d+", row[4])
    nodes = json.loads(ok(stack.corral("nodes", "--json")).stdout)["nodes"]
    assert [n["hostname"] for n in nodes] == [HOST]


def test_template_deploy_status_deployment_stop(stack: Stack) -> None:
    template = {
        "name": "数据处理",
        "task_groups": [
            {
                "tasks": [
                    {"name": "清洗器", "config": {"command": f"{HOST}:/bin/sleep 60"}},
                    {"name": "analyser", "config": {"command": "sh -c 'echo analysing; sleep 60'"}},
                ]
            }
        ],
    }
    path = stack.tmp / "template.json"
    path.write_text(json.dumps(template, ensure_ascii=False))
    assert ok(stack.corral("template", "create", str(path))).stdout.strip() == "template 数据处理 created"
    again = ok(stack.corral("template", "create", str(path)), 2)
    assert "already exists" in again.stderr and again.stdout == ""
    shown = json.loads(ok(stack.corral("template", "show", "数据处理")).stdout)
    assert shown["task_groups"][0]["tasks"][0]["config"] == {"command": "/bin/sleep 60", "host": HOST}

    deployed = ok(stack.corral("deploy", "数据处理", "--wait"))
    dep_id = deployed.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", dep_id), deployed.stdout
    assert "2/2 tasks up" in deployed.stderr
    assert ok(stack.corral("status", dep_id)).stdout.split() == [dep_id, "RUNNING", "(status", "0)"]
    lines = ok(stack.corral("deployment", dep_id)).stdout.splitlines()
    assert lines[0] == f"deployment {dep_id}  template 数据处理"
    rows = {line.split()[1]: line.split() for line in lines[4:]}
    assert set(rows) == {"清洗器", "analyser"}
    assert all(row[3] == HOST and row[5] == "RUNNING" for row in rows.values())

    assert ok(stack.corral("stop", dep_id)).stdout.strip() == f"stopping {dep_id}"
    wait_until(lambda: "STOPPED" in stack.corral("status", dep_id).stdout, timeout=20, what="deployment stopped")
    stopped = json.loads(ok(stack.corral("deployment", dep_id, "--json")).stdout)
    assert {t["state"] for t in stopped["tasks"]} == {"STOPPED"}


def test_api_errors_print_the_message_and_exit_2(stack: Stack) -> None:
    missing = ok(stack.corral("deploy", "no-such-template"), 2)
    assert missing.stderr.strip() == "Error: Business template not found (HTTP 404)"
    assert ok(stack.corral("deployment", "no-such-id"), 2).stderr.strip() == "Error: Deployment not found (HTTP 404)"
    bad = stack.tmp / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in ok(stack.corral("template", "create", str(bad)), 2).stderr
    assert ok(stack.corral("tasks", "show", "nope"), 2).stderr.strip() == "Error: Task not found (HTTP 404)"
    assert "--on" in ok(stack.corral("run", "echo hi"), 2).stderr
    assert "KEY=VALUE" in ok(stack.corral("run", "echo hi", "--on", "all", "--env", "NOEQUALS"), 2).stderr
    assert "timeout" in ok(stack.corral("run", "echo hi", "--on", "all", "--timeout", "0"), 2).stderr.lower()
    down = ok(stack.corral("nodes", CORRAL_URL=f"http://127.0.0.1:{free_port()}"), 2)
    assert "cannot reach the manager" in down.stderr


def test_run_echo_on_all_prints_the_line_and_exits_0(stack: Stack) -> None:
    result = ok(stack.corral("run", "echo hi", "--on", "all"))
    assert f"{HOST} | hi" in result.stdout.splitlines()
    row = result_row(result.stdout, HOST)
    assert row[1:4] == ["127.0.0.1", "succeeded", "0"]
    assert re.search(r"task \S+ completed: 1/1 succeeded", result.stdout)
    assert "\x1b[" not in result.stderr  # no live progress line off a terminal
    as_json = ok(stack.corral("run", "echo j", "--on", "all", "--json"))
    task = json.loads(as_json.stdout)  # stdout is only the document; the live line went to stderr
    assert task["status"] == "completed" and task["hosts"][0]["stdout"] == "j\n"
    assert f"{HOST} | j" in as_json.stderr.splitlines()


def test_run_failing_command_marks_stderr_and_exits_1(stack: Stack) -> None:
    result = ok(stack.corral("run", "echo out; echo bad >&2; exit 4", "--on", HOST, "--env", "X=1"), 1)
    lines = result.stdout.splitlines()
    assert f"{HOST} | out" in lines and f"{HOST} [stderr] | bad" in lines
    assert result_row(result.stdout, HOST)[1:4] == ["127.0.0.1", "failed", "4"]


def test_run_on_an_unknown_node_shows_dispatch_failed_and_exits_1(stack: Stack) -> None:
    result = ok(stack.corral("run", "echo hi", "--on", f"{HOST},no-such-node"), 1)
    assert f"{HOST} | hi" in result.stdout.splitlines()
    assert result_row(result.stdout, HOST)[2] == "succeeded"
    row = result_row(result.stdout, "no-such-node")
    assert row[1:3] == ["-", "dispatch_failed"]
    assert re.search(r"task \S+ failed: 1/2 succeeded", result.stdout)


def test_run_no_follow_then_tasks_list_show_cancel(stack: Stack) -> None:
    result = ok(stack.corral("run", "echo later", "--on", "all", "--no-follow", "--name", "nofollow-check"))
    assert " | " not in result.stdout  # no streamed lines, only the results
    task_id = re.search(r"task (\S+) completed", result.stdout).group(1)  # type: ignore[union-attr]

    listed = ok(stack.corral("tasks", "list", "--name", "nofollow-check")).stdout.splitlines()
    assert listed[1].split()[:4] == [task_id, "nofollow-check", "completed", "1/1"]
    assert listed[-1] == "page 1 of 1, 1 task(s)"
    page = json.loads(ok(stack.corral("tasks", "list", "--status", "completed", "--size", "1", "--json")).stdout)
    assert page["size"] == 1 and len(page["tasks"]) == 1 and page["tasks"][0]["status"] == "completed"

    shown = ok(stack.corral("tasks", "show", task_id)).stdout
    assert shown.startswith(f"task {task_id}  nofollow-check\nstatus completed")
    assert f"{HOST} | later" in shown.splitlines()
    assert ok(stack.corral("tasks", "cancel", task_id), 2).stderr.startswith("Error: ")


def test_ctrl_c_cancels_the_task_and_exits_130(stack: Stack) -> None:
    # The `with` closes the pipes whatever happens, so a failure here never leaks them into another test.
    with subprocess.Popen(
        [str(BIN / "corral"), "run", "echo started; sleep 30", "--on", "all", "--name", "ctrl-c-check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stack.cli_env(),
        preexec_fn=default_sigint,
    ) as proc:
        try:

            def running() -> dict[str, Any] | None:
                tasks = stack.manager.get("/api/tasks", params={"name": "ctrl-c-check"}).json()["tasks"]
                return tasks[0] if tasks and tasks[0]["progress"]["running"] == 1 else None

            task = wait_until(running, timeout=20, what="the task running")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, f"stdout:\n{out}\nstderr:\n{err}"
    assert f"task {task['task_id']} canceled" in err
    detail = wait_until(
        lambda: (
            (t := stack.manager.get(f"/api/tasks/{task['task_id']}").json())["hosts"][0]["status"] == "canceled" and t
        ),
        timeout=10,
        what="the node canceled",
    )
    assert detail["status"] == "canceled"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Stack]:
    """A manager that wants an API token on every call (no agent needed)."""
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env, ["--api-token", TOKEN])
    manager.start()
    try:
        yield Stack(tmp_path, manager, [], env)
    finally:
        stop_all(manager, [], tmp_path)


def test_token_from_flag_env_or_config_file_and_never_printed(guarded: Stack) -> None:
    refused = ok(guarded.corral("-v", "nodes"), 2)
    assert "(HTTP 401)" in refused.stderr
    wrong = ok(guarded.corral("--token", "wrong-token", "nodes"), 2)
    assert "(HTTP 401)" in wrong.stderr and "wrong-token" not in wrong.stderr + wrong.stdout
    outputs = [
        ok(guarded.corral("--token", TOKEN, "-v", "nodes")),
        ok(guarded.corral("nodes", "--json", CORRAL_API_TOKEN=TOKEN)),
    ]
    config_dir = guarded.tmp / "config" / "corral"
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text(f'url = "{guarded.manager.url}"\ntoken = "{TOKEN}"\n')
    outputs.append(ok(guarded.corral("nodes", CORRAL_URL="")))
    outputs.append(ok(guarded.corral("run", "echo x", "--on", "all"), 1))  # no node: nothing succeeded
    for result in outputs:
        assert TOKEN not in result.stdout + result.stderr
    assert result_row(outputs[-1].stdout, "*")[2] == "dispatch_failed"  # `all` with no node online


def test_business_deploy_show_label_stop_and_refusal(stack: Stack) -> None:
    body = {
        "business_id": "cli-biz",
        "business_name": "cli business",
        "components": [
            {"component_id": "web", "component_name": "web", "type": "process", "command": "sleep 60"},
            {
                "component_id": "worker",
                "component_name": "worker",
                "type": "process",
                "command": "sleep",
                "args": ["61"],
            },
        ],
    }
    path = stack.tmp / "business.json"
    path.write_text(json.dumps(body))

    plan = ok(stack.corral("business", "deploy", str(path), "--dry-run")).stdout.splitlines()
    assert plan[0].split() == ["COMPONENT", "NODE", "NODE", "ID"]
    assert {line.split()[0]: line.split()[1] for line in plan[1:]} == {"web": HOST, "worker": HOST}
    assert json.loads(ok(stack.corral("business", "list", "--json")).stdout)["businesses"] == []

    deployed = ok(stack.corral("business", "deploy", str(path), "--wait"))
    lines = deployed.stdout.splitlines()
    assert lines[0] == "cli-biz"
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"web", "worker"}
    assert all(row[2] == HOST and row[3] == "running" for row in rows.values()), deployed.stdout
    pids = {name: int(row[4]) for name, row in rows.items()}
    assert all(psutil.pid_exists(pid) for pid in pids.values())

    shown = ok(stack.corral("business", "show", "cli-biz")).stdout.splitlines()
    assert shown[0].split() == ["cli-biz", "cli", "business", "running"]
    listed = ok(stack.corral("business", "list")).stdout.splitlines()
    assert listed[1].split()[:2] == ["cli-biz", "cli"]

    node_id = json.loads(ok(stack.corral("nodes", "--json")).stdout)["nodes"][0]["id"]
    labelled = json.loads(ok(stack.corral("node", "label", node_id, "rack=r7", "--replace", "--json")).stdout)
    assert labelled["api_labels"] == {"rack": "r7"} and labelled["labels"]["rack"] == "r7"
    assert json.loads(ok(stack.corral("node", "label", node_id, "--replace", "--json")).stdout)["api_labels"] == {}

    stopped = ok(stack.corral("business", "stop", "cli-biz", "--wait"))
    assert {line.split()[0]: line.split()[3] for line in stopped.stdout.splitlines()[2:]} == {
        "web": "stopped",
        "worker": "stopped",
    }
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in pids.values()), timeout=10, what="sleepers gone")

    huge = dict(body, business_id="cli-huge")
    huge["components"] = [dict(body["components"][0], resource_requirements={"memory_mb": 64 * 1024 * 1024})]
    path.write_text(json.dumps(huge))
    refused = ok(stack.corral("business", "deploy", str(path)), 2)
    assert "web:" in refused.stderr and f"{HOST}: memory" in refused.stderr, refused.stderr
    assert refused.stdout == ""
