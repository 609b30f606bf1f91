"""process_tree.by_environment: the processes of one node's commands, found by their environment."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from worker_agent import process_tree


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(10)


def sleeper(started: list[subprocess.Popen[bytes]], **env: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], **env})
    started.append(proc)
    return proc


def test_finds_the_nodes_processes_by_marker_and_groups_them_by_key(sleepers: list[subprocess.Popen[bytes]]) -> None:
    node = uuid.uuid4().hex
    a1 = sleeper(sleepers, CORRAL_NODE_ID=node, CORRAL_TASK_ID="a")
    a2 = sleeper(sleepers, CORRAL_NODE_ID=node, CORRAL_TASK_ID="a")
    b = sleeper(sleepers, CORRAL_NODE_ID=node, CORRAL_TASK_ID="b")
    sleeper(sleepers, CORRAL_NODE_ID=node + "0", CORRAL_TASK_ID="longer node id")
    sleeper(sleepers, OTHER_CORRAL_NODE_ID=node, CORRAL_TASK_ID="another variable")
    sleeper(sleepers, CORRAL_NODE_ID=node)  # no task id: not a command's

    found = process_tree.by_environment("CORRAL_NODE_ID", node, "CORRAL_TASK_ID")

    assert {task: sorted(p.pid for p in procs) for task, procs in found.items()} == {
        "a": sorted([a1.pid, a2.pid]),
        "b": [b.pid],
    }


def test_finds_nothing_for_a_node_without_processes() -> None:
    assert process_tree.by_environment("CORRAL_NODE_ID", uuid.uuid4().hex, "CORRAL_TASK_ID") == {}
