"""Tables and parsing of the schedule, audit, node, template, deployment and business verbs (pure functions)."""

from __future__ import annotations

import click
import pytest

from corral_cli import formatting
from corral_cli.businesses import already_exists
from corral_cli.client import ApiError
from corral_cli.context import CommandError, alias_of, segment
from corral_cli.deployments import ShowByDefaultGroup
from corral_cli.main import cli
from corral_cli.nodes import match_node, node_list, nodes, parse_label_changes
from corral_cli.schedules import match_schedule
from corral_cli.workflows import progress_text

SCHEDULES = [
    {
        "id": "a1",
        "name": "disk-check",
        "cron": None,
        "interval": 60,
        "paused": False,
        "next_run_at": "2026-11-26T17:45:55Z",
        "last_run_at": None,
    },
    {
        "id": "b2",
        "name": "nightly",
        "cron": "0 3 * * 1-5",
        "interval": None,
        "paused": True,
        "next_run_at": None,
        "last_run_at": "2026-11-26T03:00:00Z",
    },
]


def test_schedules_table_shows_when_next_last_and_paused() -> None:
    lines = formatting.schedules_table(SCHEDULES).splitlines()
    assert lines[0].split() == ["NAME", "ID", "WHEN", "NEXT", "RUN", "LAST", "RUN", "PAUSED"]
    assert lines[1].split() == ["disk-check", "a1", "every", "60s", "2026-11-26T17:45:55Z", "-", "no"]
    assert lines[2].split() == ["nightly", "b2", "0", "3", "*", "*", "1-5", "-", "2026-11-26T03:00:00Z", "yes"]


def test_schedule_summary_names_trigger_targets_env_and_recent_tasks() -> None:
    schedule = dict(
        SCHEDULES[0],
        command="df -h /",
        targets=["*", "role=db"],
        timeout=30,
        env_keys=["A", "B"],
        created_by="anonymous@127.0.0.1",
        recent_task_ids=["t2", "t1"],
    )
    lines = formatting.schedule_summary(schedule).splitlines()
    assert lines[:4] == [
        "schedule disk-check  a1",
        "when every 60s (UTC)  paused no",
        "command df -h /",
        "targets *, role=db  timeout 30 s  env A, B",
    ]
    assert lines[4].startswith("next run 2026-11-26T17:45:55Z  last run -  last task -")
    assert lines[-3:] == ["recent tasks (`corral tasks show ID`):", "  t2", "  t1"]
    assert "recent tasks" not in formatting.schedule_summary(SCHEDULES[1])


def test_audit_table_puts_the_detail_on_one_line() -> None:
    entries = [
        {
            "at": "2026-11-26T17:44:55Z",
            "actor": "anonymous@127.0.0.1",
            "action": "schedule.create",
            "target": "a1",
            "detail": {"name": "disk-check", "interval": 60},
        },
        {
            "at": "2026-11-26T17:40:00Z",
            "actor": "bob",
            "action": "node.labels",
            "target": "n1",
            "detail": {"api_labels": {"rack": "r7"}, "previous": {}},
        },
        {"at": "t", "actor": "system", "action": "node.offline", "target": "n2", "detail": {}},
    ]
    lines = formatting.audit_table(entries).splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"]
    assert lines[1].split() == [
        "2026-11-26T17:44:55Z",
        "anonymous@127.0.0.1",
        "schedule.create",
        "a1",
        "name=disk-check",
        "interval=60",
    ]
    assert lines[2].endswith('api_labels={"rack":"r7"} previous={}')
    assert lines[3].split() == ["t", "system", "node.offline", "n2", "-"]


def test_labels_table_says_where_each_label_comes_from() -> None:
    node = {"labels": {"zone": "us", "rack": "r7"}, "agent_labels": {"zone": "us"}, "api_labels": {"rack": "r7"}}
    assert formatting.labels_table(node).splitlines() == [
        "LABEL  VALUE  FROM",
        "rack   r7     api",
        "zone   us     agent",
    ]
    assert formatting.labels_table({"labels": {}}) == "LABEL  VALUE  FROM"


def test_templates_and_deployments_tables() -> None:
    templates = [{"name": "数据处理", "groups": 1, "tasks": [{}, {}], "created_at": "c", "deployments": 3}]
    lines = formatting.templates_table(templates).splitlines()
    assert lines[0].split() == ["NAME", "GROUPS", "TASKS", "DEPLOYMENTS", "CREATED"]
    assert lines[1].split() == ["数据处理", "1", "2", "3", "c"]
    deployments = [
        {
            "id": "d1",
            "name": "t",
            "state": "RUNNING",
            "status": 0,
            "created_at": "c",
            "stopped_at": None,
            "task_count": 3,
            "task_states": {"RUNNING": 2, "FAILED": 1, "STOPPED": 0},
        }
    ]
    lines = formatting.deployments_table(deployments).splitlines()
    assert lines[0].split() == ["ID", "TEMPLATE", "STATE", "TASKS", "TASK", "STATES", "CREATED", "STOPPED"]
    assert lines[1].split() == ["d1", "t", "RUNNING", "3", "1", "failed,", "2", "running", "c", "-"]


def test_page_footer_counts_pages() -> None:
    assert formatting.page_footer({"total": 41, "page": 2, "page_size": 20}, "template(s)", 1, 20) == (
        "page 2 of 3, 41 template(s)"
    )
    assert formatting.page_footer({"total": 0}, "deployment(s)", 1, 20) == "page 1 of 1, 0 deployment(s)"
    assert formatting.page_footer({"total": 3, "size": 1}, "task(s)", 1, 20) == "page 1 of 3, 3 task(s)"


def test_update_summary_one_line_per_list() -> None:
    answer = {
        "message": "updating",
        "changed": ["worker"],
        "added": [],
        "removed": ["old", "older"],
        "unchanged": ["web"],
    }
    assert formatting.update_summary(answer).splitlines() == [
        "changed: worker",
        "added: -",
        "removed: old, older",
        "unchanged: web",
    ]
    assert formatting.update_summary({"message": "nothing to change"}) == "nothing to change"


NODES = [
    {"id": "old1", "hostname": "twin", "status": "offline", "last_heartbeat": "2026-11-26T10:00:00Z"},
    {"id": "new2", "hostname": "twin", "status": "online", "last_heartbeat": "2026-11-26T17:00:00Z"},
    {"id": "solo3", "hostname": "solo", "status": "online", "last_heartbeat": None},
]


def test_match_node_by_id_or_unique_hostname() -> None:
    assert match_node(NODES, "old1") == "old1"
    assert match_node(NODES, "solo") == "solo3"


def test_match_node_refuses_an_unknown_or_shared_hostname() -> None:
    with pytest.raises(CommandError, match="no node has the id or hostname 'nope'") as unknown:
        match_node(NODES, "nope")
    assert unknown.value.exit_code == 2
    with pytest.raises(CommandError) as shared:
        match_node(NODES, "twin")
    lines = shared.value.message.splitlines()
    assert lines[0] == "2 nodes have the hostname 'twin'; name one by its id:"
    assert [line.split()[:2] for line in lines[2:]] == [["old1", "offline"], ["new2", "online"]]


def test_label_changes_set_and_remove_kubectl_style() -> None:
    assert parse_label_changes(["a=1", "b=x=y", "c=", "d-"], replace=False) == {
        "a": "1",
        "b": "x=y",
        "c": "",
        "d": None,
    }
    assert parse_label_changes(["tier-=x"], replace=False) == {"tier-": "x"}
    assert parse_label_changes(["a=1"], replace=True) == {"a": "1"}
    for bad, replace in (("d-", True), ("noequals", False), ("-", False), ("=v", False)):
        with pytest.raises(click.BadParameter):
            parse_label_changes([bad], replace=replace)


def test_match_schedule_by_id_then_name() -> None:
    assert match_schedule(SCHEDULES, "b2")["name"] == "nightly"
    assert match_schedule(SCHEDULES, "disk-check")["id"] == "a1"
    with pytest.raises(CommandError, match="no schedule has the id or name 'x'"):
        match_schedule(SCHEDULES, "x")


def test_already_exists_tells_a_taken_id_from_a_placement_refusal() -> None:
    taken = ApiError(
        409, "Business shop already exists: update it with PUT /api/businesses/shop", {"business_id": "shop"}
    )
    assert already_exists(taken, {"business_id": "shop"}) == "shop"
    assert already_exists(ApiError(409, "Business shop already exists"), {"business_id": "shop"}) == "shop"
    refused = ApiError(409, "no node fits component db: memory on 2 nodes", {"rejections": {}})
    assert already_exists(refused, {"business_id": "shop"}) is None
    assert already_exists(ApiError(400, "Business shop already exists"), {"business_id": "shop"}) is None


def test_segment_quotes_names_for_a_url_path() -> None:
    assert segment("数据 处理/x") == "%E6%95%B0%E6%8D%AE%20%E5%A4%84%E7%90%86%2Fx"


def test_show_by_default_group_takes_an_unknown_first_argument_as_show_id() -> None:
    group = ShowByDefaultGroup("g", context_settings={"help_option_names": ["-h", "--help"]})

    @group.command("show")
    @click.argument("ident")
    @click.option("--json", "as_json", is_flag=True)
    def show(ident: str, as_json: bool) -> tuple[str, str, bool]:
        return ("show", ident, as_json)

    @group.command("list")
    @click.option("--page", type=int, default=1)
    def list_(page: int) -> tuple[str, int]:
        return ("list", page)

    assert group.main(["abc"], standalone_mode=False) == ("show", "abc", False)
    assert group.main(["abc", "--json"], standalone_mode=False) == ("show", "abc", True)
    assert group.main(["--json", "abc"], standalone_mode=False) == ("show", "abc", True)
    assert group.main(["show", "abc"], standalone_mode=False) == ("show", "abc", False)
    assert group.main(["list", "--page", "2"], standalone_mode=False) == ("list", 2)
    assert group.main(["--help"], standalone_mode=False) == 0  # the group's own help, not `show --help`


def test_corral_nodes_is_node_list_under_a_second_name() -> None:
    node_group = cli.commands["node"]
    assert isinstance(node_group, click.Group)
    assert cli.commands["nodes"] is nodes and node_group.commands["list"] is node_list
    assert nodes.callback is node_list.callback and nodes.params is node_list.params
    assert nodes.get_short_help_str() == "Alias of `corral node list`."
    assert nodes.help == f"Alias of `corral node list`.\n\n{node_list.help}"


def test_alias_of_runs_the_same_callback_with_the_same_options() -> None:
    @click.command("long")
    @click.option("--json", "as_json", is_flag=True)
    def long(as_json: bool) -> tuple[str, bool]:
        """Do the thing."""
        return ("long", as_json)

    short = alias_of(long, "short", "tool long")
    assert short.main(["--json"], standalone_mode=False) == long.main(["--json"], standalone_mode=False)
    assert short.help == "Alias of `tool long`.\n\nDo the thing."


LIST_COMMANDS = [
    (("template", "list"), None, 20),
    (("deployment", "list"), None, 20),
    (("schedule", "list"), None, 20),
    (("business", "list"), None, 20),
    (("tasks", "list"), "--size", 20),
    (("audit",), "--limit", 50),
]
"""Every paged list command, the older spelling of its --page-size, and its default size."""


@pytest.mark.parametrize(("path", "older", "default"), LIST_COMMANDS)
def test_every_list_command_takes_page_and_page_size_and_its_older_spelling(
    path: tuple[str, ...], older: str | None, default: int
) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    parsed = command.make_context(path[-1], ["--page", "2", "--page-size", "3"]).params
    assert (parsed["page"], parsed["page_size"]) == (2, 3)
    assert command.make_context(path[-1], []).params["page_size"] == default
    if older is not None:
        assert command.make_context(path[-1], [older, "4"]).params["page_size"] == 4
    for unknown in {"--size", "--limit"} - {older}:
        with pytest.raises(click.NoSuchOption):
            command.make_context(path[-1], [unknown, "4"])


def test_workflow_progress_names_its_running_steps() -> None:
    steps = [{"name": f"s{i}", "status": "running"} for i in range(6)] + [{"name": "done", "status": "succeeded"}]
    workflow = {"name": "deploy", "status": "running", "progress": {"text": "1/7"}, "steps": steps}
    assert progress_text(workflow) == "workflow deploy: running 1/7 steps: s0, s1, s2, s3 +2"
    ended = {"name": "deploy", "status": "completed", "progress": {"text": "7/7"}, "steps": steps[-1:]}
    assert progress_text(ended) == "workflow deploy: completed 7/7 steps"
