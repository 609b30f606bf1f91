"""The real `corral` verbs for schedules, the audit log, nodes by hostname, labels, forgetting, templates,
deployments and business updates, against a real manager and agents."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.corral_cli.stack import HOST, Stack, ok
from tests.support import wait_until

pytestmark = pytest.mark.e2e

TWIN = "cli-twin"
"""Hostname of two nodes: one whose agent stopped, and a newer one."""


def rows_by_first(stdout: str) -> dict[str, list[str]]:
    """Table rows (after the header) split on blanks, by their first cell."""
    return {line.split()[0]: line.split() for line in stdout.splitlines()[1:] if line.strip()}


def schedule_json(stack: Stack, name: str) -> dict[str, Any]:
    """A schedule as the API lists it (read around the CLI, for polling)."""
    return next(s for s in stack.manager.get("/api/schedules").json()["schedules"] if s["name"] == name)


def check_schedule_audit(stack: Stack, tick_id: str, nightly_id: str) -> None:
    """`corral audit` lists what the schedule test did, newest first, and checks its page size."""
    audit = ok(stack.corral("audit", "--limit", "50")).stdout.splitlines()
    assert audit[0].split() == ["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"]
    assert re.fullmatch(r"page 1 of 1, \d+ entries", audit[-1]), audit[-1]
    actions = [(line.split()[2], line.split()[3], line.split()[4:]) for line in audit[1:-1]]
    assert actions[0] == ("schedule.delete", nightly_id, ["name=nightly"])
    assert ("schedule.delete", tick_id, ["name=tick"]) in actions
    assert ("schedule.create", tick_id, ["name=tick", "interval=1"]) in actions
    assert [a for a, _, _ in actions].count("schedule.pause") == 2
    assert [e["action"] for e in json.loads(ok(stack.corral("audit", "--limit", "2", "--json")).stdout)["entries"]] == [
        "schedule.delete",
        "schedule.delete",
    ]
    assert "--limit" in ok(stack.corral("audit", "--limit", "0"), 2).stderr


def test_schedule_create_list_show_pause_resume_delete_and_audit(stack: Stack) -> None:
    created = ok(
        stack.corral(
            "schedule", "create", "tick", "--command", "echo tick", "--on", HOST, "--every", "1", "--timeout", "30",
            "--env", "K=V",
        )
    ).stdout.splitlines()  # fmt: skip
    tick_id = schedule_json(stack, "tick")["id"]
    assert created[:4] == [
        f"schedule tick  {tick_id}",
        "when every 1s (UTC)  paused no",
        "command echo tick",
        f"targets {HOST}  timeout 30 s  env K",
    ]
    nightly = json.loads(
        ok(
            stack.corral(
                "schedule", "create", "nightly", "--command", "echo n", "--on", "all", "--cron", "0 3 * * 1-5", "--json"
            )
        ).stdout
    )
    assert (nightly["cron"], nightly["interval"], nightly["targets"]) == ("0 3 * * 1-5", None, ["*"])
    on_agent = ok(
        stack.corral("schedule", "create", "on-node", "--command", "true", "--on", HOST, "--every", "60", "--on-agent")
    ).stdout.splitlines()
    assert on_agent[1] == "when every 60s (UTC)  paused no  fired by the target nodes' agents"
    assert schedule_json(stack, "on-node")["on_agent"] is True
    assert ok(stack.corral("schedule", "delete", "on-node")).stdout == "schedule on-node deleted\n"

    base = ("schedule", "create", "bad", "--command", "x", "--on", "all")
    assert "either --cron 'EXPR' or --every SECONDS" in ok(stack.corral(*base), 2).stderr
    assert "either --cron" in ok(stack.corral(*base, "--cron", "* * * * *", "--every", "5"), 2).stderr
    bad_cron = ok(stack.corral(*base, "--cron", "61 * * * *"), 2).stderr
    assert bad_cron.startswith("Error: Invalid request format: cron: not a valid crontab line"), bad_cron
    taken = ok(stack.corral("schedule", "create", "tick", "--command", "x", "--on", "all", "--every", "5"), 2)
    assert taken.stderr.startswith("Error: ") and "'tick'" in taken.stderr and "(HTTP 409)" in taken.stderr

    listed = ok(stack.corral("schedule", "list")).stdout
    assert listed.splitlines()[0].split() == ["NAME", "ID", "WHEN", "NEXT", "RUN", "LAST", "RUN", "PAUSED"]
    rows = rows_by_first(listed)
    assert rows["tick"][:4] == ["tick", tick_id, "every", "1s"] and rows["tick"][-1] == "no"
    assert " 0 3 * * 1-5 " in next(line for line in listed.splitlines() if line.startswith("nightly "))

    fired = wait_until(lambda: schedule_json(stack, "tick")["last_task_id"], timeout=20, what="tick fired")
    shown = ok(stack.corral("schedule", "show", "tick")).stdout.splitlines()
    assert "recent tasks (`corral tasks show ID`):" in shown
    assert f"  {fired}" in shown
    assert stack.manager.get(f"/api/tasks/{fired}").json()["created_by"] == "schedule:tick"

    assert ok(stack.corral("schedule", "pause", "tick")).stdout == "schedule tick paused\n"
    assert rows_by_first(ok(stack.corral("schedule", "list")).stdout)["tick"][-1] == "yes"
    resumed = ok(stack.corral("schedule", "resume", tick_id)).stdout
    assert resumed.startswith("schedule tick active, next run 20"), resumed
    assert json.loads(ok(stack.corral("schedule", "pause", tick_id, "--json")).stdout)["paused"] is True
    assert ok(stack.corral("schedule", "delete", "tick")).stdout == "schedule tick deleted\n"
    gone = ok(stack.corral("schedule", "show", "tick"), 2)
    assert gone.stderr == "Error: no schedule has the id or name 'tick'\n" and gone.stdout == ""
    assert ok(stack.corral("schedule", "delete", nightly["id"])).stdout == "schedule nightly deleted\n"
    assert json.loads(ok(stack.corral("schedule", "list", "--json")).stdout)["schedules"] == []

    check_schedule_audit(stack, tick_id, nightly["id"])


@pytest.fixture(scope="module")
def twins(stack: Stack) -> Iterator[tuple[str, str]]:
    """Two nodes called `cli-twin`: an old one whose agent stopped (offline), and a newer one online."""
    old_agent, old_id = stack.start_agent(TWIN, stack.tmp / "twin-old")
    old_agent.terminate()
    wait_until(
        lambda: any(n["id"] == old_id and n["status"] == "offline" for n in stack.nodes()),
        timeout=30,
        what="the old twin offline",
    )
    new_agent, new_id = stack.start_agent(TWIN, stack.tmp / "twin-new")
    yield old_id, new_id
    new_agent.terminate()


def node_id_of(stack: Stack, hostname: str) -> str:
    return next(str(n["id"]) for n in stack.nodes() if n["hostname"] == hostname)


def test_node_list_show_label_replace_and_hostname_resolution(stack: Stack, twins: tuple[str, str]) -> None:
    old_id, new_id = twins
    host_id = node_id_of(stack, HOST)
    listed = ok(stack.corral("node", "list")).stdout
    # the same columns; their padding follows the rows (heartbeat times, resources), which change between calls
    columns = re.split(r" {2,}", listed.splitlines()[0])
    assert columns == re.split(r" {2,}", ok(stack.corral("nodes")).stdout.splitlines()[0])
    assert columns == ["ID", "HOSTNAME", "IP", "STATUS", "RESOURCES", "LAST HEARTBEAT"]
    assert set(rows_by_first(listed)) == {host_id, old_id, new_id}
    assert json.loads(ok(stack.corral("node", "list", "--json")).stdout)["nodes"][0]["hostname"] == HOST

    assert json.loads(ok(stack.corral("node", "show", HOST)).stdout)["id"] == host_id
    assert json.loads(ok(stack.corral("node", "show", host_id)).stdout)["hostname"] == HOST
    assert json.loads(ok(stack.corral("node", "show", old_id)).stdout)["status"] == "offline"
    unknown = ok(stack.corral("node", "show", "no-such-host"), 2)
    assert unknown.stderr == "Error: no node has the id or hostname 'no-such-host'\n" and unknown.stdout == ""
    for args in (("show", TWIN), ("label", TWIN, "--replace", "a=b"), ("forget-secret", TWIN)):
        shared = ok(stack.corral("node", *args), 2)
        lines = shared.stderr.splitlines()
        assert lines[0] == f"Error: 2 nodes have the hostname '{TWIN}'; name one by its id:", shared.stderr
        assert lines[1].split() == ["ID", "STATUS", "LAST", "HEARTBEAT"]
        assert {tuple(line.split()[:2]) for line in lines[2:]} == {(old_id, "offline"), (new_id, "online")}
    assert json.loads(ok(stack.corral("node", "forget-secret", old_id)).stdout)

    labelled = ok(stack.corral("node", "label", HOST, "--replace", "rack=r7", "tier=web")).stdout
    assert labelled.splitlines() == ["LABEL  VALUE  FROM", "rack   r7     api", "tier   web    api"]
    shown = json.loads(ok(stack.corral("node", "show", HOST)).stdout)
    assert shown["api_labels"] == {"rack": "r7", "tier": "web"}
    assert "is not KEY=VALUE" in ok(stack.corral("node", "label", HOST, "--replace", "rack-"), 2).stderr
    assert "at least one KEY=VALUE or KEY-" in ok(stack.corral("node", "label", HOST), 2).stderr
    cleared = json.loads(ok(stack.corral("node", "label", host_id, "--replace", "--json")).stdout)
    assert cleared["api_labels"] == {}


def test_node_label_adds_and_removes_with_a_merge_patch(stack: Stack) -> None:
    ok(stack.corral("node", "label", HOST, "--replace", "rack=r7", "tier=web"))
    patched = ok(stack.corral("node", "label", HOST, "zone=eu", "tier=db", "rack-")).stdout
    assert patched.splitlines() == ["LABEL  VALUE  FROM", "tier   db     api", "zone   eu     api"]
    again = json.loads(ok(stack.corral("node", "label", HOST, "zone-", "--json")).stdout)
    assert again["api_labels"] == {"tier": "db"}
    ok(stack.corral("node", "label", HOST, "--replace"))


def test_node_forget_by_id_or_hostname(stack: Stack, twins: tuple[str, str]) -> None:
    old_id, new_id = twins
    assert "2 nodes have the hostname" in ok(stack.corral("node", "forget", TWIN), 2).stderr
    assert ok(stack.corral("node", "forget", old_id)).stdout == f"node {old_id} ({TWIN}) forgotten\n"
    assert old_id not in {n["id"] for n in stack.nodes()}
    assert json.loads(ok(stack.corral("node", "show", TWIN)).stdout)["id"] == new_id  # no longer ambiguous
    online = ok(stack.corral("node", "forget", TWIN), 2)  # the new twin is online: refused
    assert online.stderr.startswith("Error: ") and "(HTTP 409)" in online.stderr, online.stderr
    gone = ok(stack.corral("node", "show", old_id), 2)
    assert gone.stderr == f"Error: no node has the id or hostname '{old_id}'\n"


def write_business(path: Path, business_id: str, worker_args: list[str]) -> Path:
    components = [
        {"component_id": "web", "component_name": "web", "type": "process", "command": "sleep 60"},
        {
            "component_id": "worker",
            "component_name": "worker",
            "type": "process",
            "command": "sleep",
            "args": worker_args,
        },
    ]
    path.write_text(json.dumps({"business_id": business_id, "business_name": business_id, "components": components}))
    return path


def test_business_update_lists_components_and_a_second_deploy_points_to_it(stack: Stack) -> None:
    path = write_business(stack.tmp / "verbs-biz.json", "verbs-biz", ["61"])
    ok(stack.corral("business", "deploy", str(path), "--wait"))
    again = ok(stack.corral("business", "deploy", str(path)), 2)
    assert again.stderr == f"Error: business verbs-biz already exists: use 'corral business update {path}'\n"
    assert again.stdout == ""

    write_business(path, "verbs-biz", ["62"])
    updated = ok(stack.corral("business", "update", str(path), "--wait")).stdout.splitlines()
    assert updated[:4] == ["changed: worker", "added: -", "removed: -", "unchanged: web"], updated
    assert {row[0]: row[3] for row in map(str.split, updated[5:])} == {"web": "running", "worker": "running"}
    same = ok(stack.corral("business", "update", "verbs-biz", str(path))).stdout  # the ID FILE spelling
    assert same in ("nothing to change\n", "changed: -\nadded: -\nremoved: -\nunchanged: web, worker\n"), same
    listed = ok(stack.corral("business", "list", "--page-size", "1")).stdout.splitlines()
    assert listed[1].split()[:2] == ["verbs-biz", "verbs-biz"] and listed[-1] == "page 1 of 1, 1 business(es)"
    assert "no business_id" in ok(stack.corral("business", "update", "-", input_text="{}"), 2).stderr
    ok(stack.corral("business", "stop", "verbs-biz", "--wait"))


def test_business_delete_only_once_stopped(stack: Stack) -> None:
    path = write_business(stack.tmp / "verbs-del.json", "verbs-del", ["63"])
    ok(stack.corral("business", "deploy", str(path), "--wait"))
    running = ok(stack.corral("business", "delete", "verbs-del"), 2)
    assert running.stderr.startswith("Error: ") and "(HTTP 409)" in running.stderr, running.stderr
    ok(stack.corral("business", "stop", "verbs-del", "--wait"))
    assert ok(stack.corral("business", "delete", "verbs-del")).stdout == "business verbs-del deleted\n"
    assert "(HTTP 404)" in ok(stack.corral("business", "show", "verbs-del"), 2).stderr


def deploy_template(stack: Stack, name: str, command: str) -> str:
    path = stack.tmp / f"{name}.json"
    path.write_text(
        json.dumps({"name": name, "task_groups": [{"tasks": [{"name": "t", "config": {"command": command}}]}]})
    )
    ok(stack.corral("template", "create", str(path)))
    return ok(stack.corral("deploy", name, "--wait")).stdout.strip()


def wait_state(stack: Stack, dep_id: str, state: str) -> None:
    wait_until(lambda: f"  {state} " in stack.corral("status", dep_id).stdout, timeout=20, what=f"{dep_id} {state}")


def test_deployment_id_and_deployment_show_id_are_one_command(stack: Stack) -> None:
    dep_id = deploy_template(stack, "verbs-show", "sleep 60")
    plain = ok(stack.corral("deployment", dep_id)).stdout
    assert plain.splitlines()[0] == f"deployment {dep_id}  template verbs-show"
    assert ok(stack.corral("deployment", "show", dep_id)).stdout == plain
    as_json = json.loads(ok(stack.corral("deployment", dep_id, "--json")).stdout)
    assert as_json["id"] == dep_id and as_json["tasks"][0]["state"] == "RUNNING"
    assert json.loads(ok(stack.corral("deployment", "show", "--json", dep_id)).stdout) == as_json
    assert json.loads(ok(stack.corral("deployment", "--json", dep_id)).stdout) == as_json
    assert "Commands:" in ok(stack.corral("deployment", "--help")).stdout
    bare = ok(stack.corral("deployment"), 2)  # no ID and no command: the group's help
    assert "Usage: corral deployment [OPTIONS] ID | COMMAND" in bare.stdout + bare.stderr
    missing = ok(stack.corral("deployment", "no-such-id"), 2)
    assert missing.stderr == "Error: Deployment not found (HTTP 404)\n"
    ok(stack.corral("stop", dep_id))
    wait_state(stack, dep_id, "STOPPED")


def test_template_and_deployment_list_and_delete(stack: Stack) -> None:
    dep_id = deploy_template(stack, "verbs-list", "sleep 60")

    templates = ok(stack.corral("template", "list", "--name", "verbs-list")).stdout.splitlines()
    assert templates[0].split() == ["NAME", "GROUPS", "TASKS", "DEPLOYMENTS", "CREATED"]
    assert rows_by_first("\n".join(templates[:-1]))["verbs-list"][1:4] == ["1", "1", "1"]
    assert templates[-1] == "page 1 of 1, 1 template(s)"
    page = json.loads(ok(stack.corral("template", "list", "--page-size", "1", "--json")).stdout)
    assert page["page_size"] == 1 and len(page["templates"]) == 1 and page["total"] >= 1

    listed = ok(stack.corral("deployment", "list", "--state", "running", "--name", "verbs-list")).stdout.splitlines()
    assert listed[0].split()[:4] == ["ID", "TEMPLATE", "STATE", "TASKS"]
    assert rows_by_first("\n".join(listed[:-1]))[dep_id][1:6] == ["verbs-list", "RUNNING", "1", "1", "running"]
    assert listed[-1] == "page 1 of 1, 1 deployment(s)"
    assert json.loads(ok(stack.corral("deployment", "list", "--json")).stdout)["total"] >= 1

    assert "(HTTP 409)" in ok(stack.corral("deployment", "delete", dep_id), 2).stderr  # still running
    assert "(HTTP 409)" in ok(stack.corral("template", "delete", "verbs-list"), 2).stderr  # still used
    ok(stack.corral("stop", dep_id))
    wait_state(stack, dep_id, "STOPPED")
    assert ok(stack.corral("deployment", "delete", dep_id)).stdout == f"deployment {dep_id} deleted\n"
    assert "(HTTP 404)" in ok(stack.corral("deployment", dep_id), 2).stderr
    assert ok(stack.corral("template", "delete", "verbs-list")).stdout == "template verbs-list deleted\n"
    assert "(HTTP 404)" in ok(stack.corral("template", "delete", "verbs-list"), 2).stderr
