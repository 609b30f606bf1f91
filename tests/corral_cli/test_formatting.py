"""Tables, output lines, progress and results as the CLI prints them; option parsing helpers."""

from __future__ import annotations

import click
import pytest

from corral_cli import formatting
from corral_cli.tasks import fleet_body, parse_env, parse_targets

HOSTS = [
    {
        "host_id": "a1",
        "hostname": "web-1",
        "ip": "10.0.0.1",
        "target": "*",
        "status": "succeeded",
        "exit_code": 0,
        "execution_time": 12,
        "error_message": None,
        "stdout": "hi\nthere\n",
        "stderr": "",
        "stdout_truncated": False,
        "stderr_truncated": False,
    },
    {
        "host_id": "b2",
        "hostname": "db-10",
        "ip": "10.0.0.2",
        "target": "*",
        "status": "failed",
        "exit_code": 3,
        "execution_time": 61_500,
        "error_message": None,
        "stdout": "",
        "stderr": "boom",
        "stdout_truncated": False,
        "stderr_truncated": True,
    },
    {
        "host_id": None,
        "hostname": None,
        "ip": None,
        "target": "ghost",
        "status": "dispatch_failed",
        "exit_code": None,
        "execution_time": None,
        "error_message": "no node matches this target",
    },
]


def test_table_aligns_columns_and_shows_missing_values() -> None:
    text = formatting.table(("A", "LONGER"), [("x", None), ("wide-value", "multi\nline")])
    assert text.splitlines() == ["A           LONGER", "x           -", "wide-value  multi line"]


def test_table_pads_by_display_width_for_chinese_names() -> None:
    text = formatting.table(("NAME", "STATE"), [("数据清洗器", "RUNNING"), ("b", "STOPPED")])
    first, second = text.splitlines()[1:]
    assert first.index("RUNNING") + 5 == second.index("STOPPED")  # five wide characters take ten columns


def test_nodes_table_words_the_status() -> None:
    nodes = [
        {
            "id": "n1",
            "hostname": "web-1",
            "ip": "10.0.0.1",
            "status": 0,
            "resources": "cpu_usage_percent:1",
            "last_heartbeat": "2026-11-26T16:59:33Z",
        },
        {"id": "n2", "hostname": "web-2", "ip": "10.0.0.2", "status": 1, "resources": "x", "last_heartbeat": None},
    ]
    lines = formatting.nodes_table(nodes).splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "IP", "STATUS", "RESOURCES", "LAST", "HEARTBEAT"]
    assert lines[1].split() == ["n1", "web-1", "10.0.0.1", "online", "cpu_usage_percent:1", "2026-11-26T16:59:33Z"]
    assert lines[2].split() == ["n2", "web-2", "10.0.0.2", "offline", "x", "-"]


def test_results_table_one_row_per_node_with_times_and_errors() -> None:
    lines = formatting.results_table(HOSTS).splitlines()
    assert lines[0].split() == ["NODE", "IP", "STATUS", "EXIT", "TIME", "ERROR"]
    assert lines[1].split() == ["web-1", "10.0.0.1", "succeeded", "0", "12", "ms", "-"]
    assert lines[2].split() == ["db-10", "10.0.0.2", "failed", "3", "1m01s", "-"]
    assert lines[3].split()[:5] == ["ghost", "-", "dispatch_failed", "-", "-"]
    assert lines[3].endswith("no node matches this target")


@pytest.mark.parametrize(
    ("ms", "text"), [(None, "-"), (0, "0 ms"), (999, "999 ms"), (1000, "1.0 s"), (12_345, "12.3 s"), (125_000, "2m05s")]
)
def test_duration(ms: int | None, text: str) -> None:
    assert formatting.duration(ms) == text


def test_output_line_marks_stderr_and_aligns_bars() -> None:
    width = formatting.label_width(["web-1", "db-10", "a"])
    assert formatting.output_line("a", "stdout", "hi", width) == "a     | hi"
    assert formatting.output_line("web-1", "stdout", "x | y", width) == "web-1 | x | y"
    assert formatting.output_line("db-10", "stderr", "boom", width) == "db-10 [stderr] | boom"


def test_host_output_lists_stdout_then_stderr_and_notes_truncation() -> None:
    assert formatting.host_output(HOSTS[0]) == [("stdout", "hi"), ("stdout", "there")]
    assert formatting.host_output(HOSTS[1]) == [("stderr", "boom"), ("stderr", "... (stderr truncated)")]
    assert formatting.host_output(HOSTS[2]) == []


def test_progress_line_from_the_api_progress_or_from_hosts() -> None:
    task = {"progress": {"total": 5, "ended": 3, "succeeded": 2, "failed": 1, "running": 2, "pending": 0}}
    assert formatting.task_progress(task) == "3/5 ended  2 succeeded  1 failed  2 running"
    assert formatting.task_progress({"hosts": HOSTS}) == "3/3 ended  1 succeeded  2 failed  0 running"


def test_succeeded_needs_every_node_and_at_least_one() -> None:
    assert formatting.succeeded({"hosts": HOSTS[:1]})
    assert not formatting.succeeded({"hosts": HOSTS})
    assert not formatting.succeeded({"hosts": []})


def test_deployment_progress_counts_states() -> None:
    tasks = [{"state": "RUNNING"}, {"state": "PENDING"}, {"state": "COMPLETED"}]
    assert formatting.deployment_progress(tasks) == "2/3 tasks up (1 completed, 1 pending, 1 running)"


def test_deployment_tasks_table_shows_node_and_exit() -> None:
    tasks = [
        {
            "id": "t1",
            "name": "数据清洗器",
            "group": 0,
            "node": {"hostname": "vm"},
            "pid": 42,
            "state": "STOPPED",
            "exit_code": -15,
            "started_at": "s",
            "ended_at": "e",
            "error": None,
        }
    ]
    assert formatting.deployment_tasks_table(tasks).splitlines()[1].split() == [
        "t1",
        "数据清洗器",
        "0",
        "vm",
        "42",
        "STOPPED",
        "-15",
        "s",
        "e",
        "-",
    ]


def test_targets_split_on_commas_and_all_means_every_node() -> None:
    assert parse_targets(["web-1, db-1", "all", "role=db", "web-1"]) == ["web-1", "db-1", "*", "role=db"]
    with pytest.raises(click.BadParameter):
        parse_targets([" , "])


def test_env_options_become_a_dict() -> None:
    assert parse_env(None, None, ["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}  # type: ignore[arg-type]
    with pytest.raises(click.BadParameter):
        parse_env(None, None, ["NOEQUALS"])  # type: ignore[arg-type]


def test_fleet_body_keeps_the_key_order_and_env_only_when_given() -> None:
    body = fleet_body("nightly", "date", ["all"], 30, {}, description="d", cron="0 3 * * *")
    assert list(body.items()) == [
        ("name", "nightly"),
        ("command", "date"),
        ("targets", ["*"]),
        ("timeout", 30),
        ("description", "d"),
        ("cron", "0 3 * * *"),
    ]
    assert fleet_body("x", "true", ["web-1"], 5, {"A": "1"})["env"] == {"A": "1"}
