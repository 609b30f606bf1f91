"""Reports of one host read in the same batch are folded into one (pure logic of services.fleet_tasks)."""

from __future__ import annotations

from manager_api.services.fleet_tasks.reports import coalesce


def report(status: str, at: float, node: str = "n1", **extra: object) -> dict[str, object]:
    return {"task_id": "t1", "node_id": node, "status": status, "at": at, **extra}


def test_running_then_final_keeps_the_final_with_the_pid_and_start() -> None:
    folded = coalesce([report("running", 10.0, pid=42), report("succeeded", 11.0, exit_code=0, stdout="hi\n")])
    assert folded == [report("succeeded", 11.0, exit_code=0, stdout="hi\n", pid=42, started_at=10.0)]


def test_the_first_final_report_wins_and_other_hosts_are_untouched() -> None:
    folded = coalesce(
        [
            report("failed", 5.0, exit_code=3, started_at=4.0),
            report("running", 6.0, node="n2", pid=7),
            report("canceled", 7.0),
        ]
    )
    assert folded == [report("failed", 5.0, exit_code=3, started_at=4.0), report("running", 6.0, node="n2", pid=7)]
