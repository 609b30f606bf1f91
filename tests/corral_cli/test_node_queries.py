"""`corral nodes -q QUERY`, `corral node tags` and `corral run --on query:...` against a real manager and agents
started with tags (CORRAL_TAGS): one query language for listing nodes and for targeting them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from corral_cli.tasks import parse_targets
from tests.corral_cli.stack import HOST, Stack, ok, running_stack

OTHER = "cli-b"
"""The second agent's hostname (tagged db); the stack's own agent (HOST) is tagged web,ssd."""


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CORRAL_TAGS", "web,ssd")  # the stack's agent reads its environment
        tmp = tmp_path_factory.mktemp("cli-tags")
        with running_stack(tmp) as stack:
            stack.env = {**stack.env, "CORRAL_TAGS": "db"}
            stack.start_agent(OTHER, tmp / "other")
            yield stack


def listed(stack: Stack, *args: str) -> list[str]:
    """The hostnames `corral nodes ARGS --json` prints."""
    return sorted(str(n["hostname"]) for n in json.loads(ok(stack.corral("nodes", *args, "--json")).stdout)["nodes"])


def test_nodes_q_lists_the_nodes_a_query_selects(tagged: Stack) -> None:
    assert listed(tagged, "-q", "tags:web") == [HOST]
    assert listed(tagged, "-q", "tags:db OR tags:ssd") == [HOST, OTHER]
    assert listed(tagged, "--query", 'tags:db AND os.cpus:>0 AND disks.dirName:"/"') == [OTHER]
    assert listed(tagged, "-q", "tags:nope") == []

    table = ok(tagged.corral("node", "list", "-q", "tags:ssd")).stdout.splitlines()
    assert re.split(r" {2,}", table[0]) == ["ID", "HOSTNAME", "IP", "STATUS", "RESOURCES", "LAST HEARTBEAT", "TAGS"]
    [row] = table[1:]
    assert f" {HOST} " in row and " online " in row and row.endswith("web,ssd") and "cpu_usage_percent:" in row

    bad = ok(tagged.corral("nodes", "-q", "tags:(web"), 2)
    assert bad.stderr.startswith("Error: ") and "Invalid request format: q: " in bad.stderr and bad.stdout == ""


def test_node_tags_sets_and_hands_back_the_tags(tagged: Stack) -> None:
    shown = ok(tagged.corral("node", "tags", OTHER, "hpc", "gpu")).stdout.splitlines()
    assert [re.split(r" {2,}", line) for line in shown] == [["TAG", "FROM"], ["hpc", "api"], ["gpu", "api"]]
    assert listed(tagged, "-q", "tags:hpc AND tags:gpu") == [OTHER] and listed(tagged, "-q", "tags:db") == []

    cleared = json.loads(ok(tagged.corral("node", "tags", OTHER, "--clear", "--json")).stdout)
    assert (cleared["tags"], cleared["api_tags"], cleared["agent_tags"]) == ([], [], ["db"])
    back = ok(tagged.corral("node", "tags", OTHER, "--agent")).stdout.splitlines()
    assert [re.split(r" {2,}", line) for line in back] == [["TAG", "FROM"], ["db", "agent"]]

    assert "give TAG..., or --clear, or --agent" in ok(tagged.corral("node", "tags", OTHER), 2).stderr
    assert "give TAG..., or --clear" in ok(tagged.corral("node", "tags", OTHER, "x", "--agent"), 2).stderr
    refused = ok(tagged.corral("node", "tags", OTHER, "two words"), 2)
    assert "Invalid request format: tags" in refused.stderr


def test_run_on_a_query_reaches_the_nodes_it_selects(tagged: Stack) -> None:
    result = ok(tagged.corral("run", "echo from-$(hostname)", "--on", "query:tags:db AND os.cpus:>0", "--json"))
    task = json.loads(result.stdout)
    assert [h["hostname"] for h in task["hosts"]] == [OTHER] and task["targets"] == ["query:tags:db AND os.cpus:>0"]
    assert task["status"] == "completed"
    bad = ok(tagged.corral("run", "true", "--on", "query:tags:(db"), 2)
    assert "Invalid request format: targets: " in bad.stderr


def test_a_query_target_is_kept_whole_commas_and_all() -> None:
    assert parse_targets(["web-1,db-1", " query:tags:(a, b) "]) == ["web-1", "db-1", "query:tags:(a, b)"]
