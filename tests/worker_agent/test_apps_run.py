"""App instances driven through AppInstances and the job functions: start with ports and environment, restarts
with growing backoff, health checks (HTTP, TCP, COMMAND), stop with killSignal and SIGKILL, ports held while
stopping, and the log stream and rotated files."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis as redis_lib

from tests.support import free_port, pid_alive, wait_until
from worker_agent import jobs
from worker_agent.app_instances.health import HealthChecks
from worker_agent.app_instances.instance import TIMER_SLACK_SECONDS, Instance, command_line, shell_word
from worker_agent.app_instances.ports import PortAllocator, usable_ports
from worker_agent.app_instances.records import InstanceRecord
from worker_agent.deployment_tasks.restarts import RunState

from .apps_support import check, last, log_lines, make_instances, reports, running, spec, state_is, stop

SERVER = f"{sys.executable} -m http.server --bind 127.0.0.1"


def test_an_instance_runs_with_its_ports_and_environment(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(
            spec(
                "i1",
                'echo "port0=$PORT0 port=$PORT ports=$PORTS host=$HOST app=$APP_NAME id=$INSTANCE_ID"; exec ' + SERVER,
                args=["$PORT0"],
                ports=[0, 0],
            )
        )
        report = wait_until(lambda: state_is(redis_client, "i1", "running"), what="the instance running")
        assert report["pid"] and pid_alive(report["pid"])
        port0, port1 = report["ports"]
        assert port0 != port1
        low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        assert all(20000 <= p <= 32767 and not low <= p <= high for p in (port0, port1))
        assert report["health"] == "healthy"  # no checks: healthy while it runs
        assert wait_until(lambda: _answers(f"http://127.0.0.1:{port0}/"), what="the server") == 200
        expected = f"port0={port0} port={port0} ports={port0},{port1} host=127.0.0.1 app=web id=i1"
        wait_until(lambda: expected in log_lines(redis_client, node_id, "i1"), what="the env line in Redis")
        assert expected in (data_dir / "app-runs" / "i1" / "stdout.log").read_text()
        assert (data_dir / "apps" / "i1").is_dir()  # the default working directory
        # A redelivered job never starts a second copy.
        assert jobs.run_instance(spec("i1", "exit 1"))["already"] is True


def _answers(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except OSError:
        return None


def test_args_are_quoted_but_dollar_expands() -> None:
    assert shell_word('a "b" `c` \\ $PORT0') == '"a \\"b\\" \\`c\\` \\\\ $PORT0"'
    assert command_line({"command": "printf '%s|'", "args": ["x y", "$HOME"]}) == 'printf \'%s|\' "x y" "$HOME"'


def test_args_reach_the_process_as_written(data_dir: Path, node_id: str, redis_client: redis_lib.Redis) -> None:
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("q", "printf '%s|\\n'", args=['a "b" `no` \\x', "$INSTANCE_ID"]))
        wait_until(
            lambda: (
                'a "b" `no` \\x|' in log_lines(redis_client, node_id, "q")
                and "q|" in log_lines(redis_client, node_id, "q")
            ),
            what="the args printed",
        )


def test_an_exited_instance_restarts_with_growing_backoff(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("crash", "echo boom >&2; exit 3"))
        wait_until(lambda: (last(redis_client, "crash") or {}).get("restarts", 0) >= 4, timeout=30, what="4 restarts")
    found = reports(redis_client, "crash")
    restarts = [r for r in found if r["restart"]]
    assert [r["restart"]["reason"] for r in restarts[:4]] == ["exited with code 3"] * 4
    assert all(r["restart"]["exit_code"] == 3 and r["state"] == "backoff" for r in restarts[:4])
    delays = [r["next_start_at"] - r["restart"]["at"] for r in restarts[:4]]
    assert delays == sorted(delays) and delays[3] > delays[0] * 4  # 0.2, 0.4, 0.8, 1.6
    assert abs(delays[0] - 0.2) < 0.05
    assert [r["restarts"] for r in restarts[:4]] == [1, 2, 3, 4]
    pids = {r["pid"] for r in found if r["state"] == "running"}
    assert len(pids) >= 4  # a new process each time


def test_a_failing_http_check_restarts_the_instance(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(
            spec("h404", f"exec {SERVER} $PORT0", ports=[0], health_checks=[check("HTTP", path="/missing")])
        )
        report = wait_until(
            lambda: next((r for r in reports(redis_client, "h404") if r["restart"]), None),
            timeout=30,
            what="a restart for the failing check",
        )
        assert report["restart"]["reason"] == "health check failed 3 times in a row: HTTP 404"
        unhealthy = [r for r in reports(redis_client, "h404") if r["health"] == "unhealthy"]
        assert unhealthy and unhealthy[-1]["last_check"]["answer"] == "HTTP 404"
        first_pid = next(r["pid"] for r in reports(redis_client, "h404") if r["state"] == "running")
        assert not pid_alive(first_pid)
        again = wait_until(lambda: state_is(redis_client, "h404", "running", restarts=1), what="running again")
        assert again["pid"] != first_pid and again["ports"] == report["ports"]


def test_passing_http_tcp_and_command_checks_read_healthy(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    checks = [check("HTTP", path="/"), check("TCP"), check("COMMAND", command='test "$APP_NAME" = web')]
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("ok", f"exec {SERVER} $PORT0", ports=[0], health_checks=checks))
        # The first report of it running (a check may already have run and failed, the server not yet up).
        first = wait_until(
            lambda: next((r for r in reports(redis_client, "ok") if r["state"] == "running"), None), what="running"
        )
        assert first["health"] == "unknown"  # until the first check
        report = wait_until(lambda: state_is(redis_client, "ok", "running", health="healthy"), what="healthy")
        assert report["last_check"]["ok"] is True and report["restarts"] == 0


def test_failing_tcp_and_command_checks_restart(data_dir: Path, node_id: str, redis_client: redis_lib.Redis) -> None:
    with running(make_instances(data_dir, node_id, redis_client)):
        # Listens on nothing: the TCP check is refused.
        jobs.run_instance(spec("tcp", "exec sleep 300", ports=[0], health_checks=[check("TCP")]))
        jobs.run_instance(spec("cmd", "exec sleep 300", health_checks=[check("COMMAND", command="echo nope; exit 2")]))
        tcp = wait_until(lambda: next((r for r in reports(redis_client, "tcp") if r["restart"]), None), timeout=30)
        cmd = wait_until(lambda: next((r for r in reports(redis_client, "cmd") if r["restart"]), None), timeout=30)
    assert tcp["restart"]["reason"] == "health check failed 3 times in a row: connection refused"
    assert cmd["restart"]["reason"] == "health check failed 3 times in a row: exit 2: nope"


def test_stop_sends_the_kill_signal_then_sigkill_after_the_grace(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    stubborn = "trap 'echo got TERM' TERM; while true; do sleep 0.1; done"
    polite = "trap 'echo got USR1; exit 0' USR1; while true; do sleep 0.1; done"
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("stubborn", stubborn))
        jobs.run_instance(spec("polite", polite))
        a = wait_until(lambda: state_is(redis_client, "stubborn", "running"))
        b = wait_until(lambda: state_is(redis_client, "polite", "running"))
        began = time.monotonic()
        jobs.stop_instance({"app": "web", "instance_id": "stubborn", "grace_seconds": 1.5})
        jobs.stop_instance({"app": "web", "instance_id": "polite", "kill_signal": 10, "grace_seconds": 30})
        wait_until(lambda: state_is(redis_client, "polite", "stopped"), what="the polite one stopped")
        assert time.monotonic() - began < 10  # USR1 ended it, not the 30 s grace
        assert "got USR1" in log_lines(redis_client, node_id, "polite")
        wait_until(lambda: state_is(redis_client, "stubborn", "stopped"), what="the stubborn one stopped")
        assert time.monotonic() - began >= 1.5  # it ignored TERM: SIGKILL after the grace
        assert "got TERM" in log_lines(redis_client, node_id, "stubborn")
        assert [r["state"] for r in reports(redis_client, "stubborn")][-2:] == ["stopping", "stopped"]
        assert not pid_alive(a["pid"]) and not pid_alive(b["pid"])
        assert not (data_dir / "apps.json").read_text().count('"stubborn"')  # forgotten
        assert not (data_dir / "app-runs" / "stubborn").exists() and not (data_dir / "apps" / "stubborn").exists()
        # An unknown instance reads stopped.
        jobs.stop_instance({"app": "web", "instance_id": "ghost"})
        wait_until(lambda: state_is(redis_client, "ghost", "stopped"))


def test_ports_are_not_handed_out_while_their_instance_stops(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    pair = sorted({free_port(), free_port(), free_port()})[:2]
    allocator = PortAllocator(pair)
    stubborn = "trap '' TERM; exec sleep 300"
    with running(make_instances(data_dir, node_id, redis_client, ports=allocator)):
        jobs.run_instance(spec("a", stubborn, ports=[0]))
        a = wait_until(lambda: state_is(redis_client, "a", "running"))
        jobs.run_instance(spec("b", "exec sleep 300", ports=[0]))
        b = wait_until(lambda: state_is(redis_client, "b", "running"))
        assert {a["ports"][0], b["ports"][0]} == set(pair)
        jobs.stop_instance(stop("a", grace_seconds=3))
        wait_until(lambda: state_is(redis_client, "a", "stopping"))
        jobs.run_instance(spec("c", "exec sleep 300", ports=[0]))
        waiting = wait_until(lambda: state_is(redis_client, "c", "backoff"), what="c waiting for a port")
        assert "no free port" in waiting["reason"]
        c = wait_until(lambda: state_is(redis_client, "c", "running"), timeout=30, what="c on a's port")
        assert c["ports"] == a["ports"]
        stopped_at = next(r["at"] for r in reports(redis_client, "a") if r["state"] == "stopped")
        assert c["at"] >= stopped_at


def test_usable_ports_leave_out_the_ephemeral_range() -> None:
    assert usable_ports((100, 110), (105, 200)) == [100, 101, 102, 103, 104]
    assert usable_ports((100, 103), None) == [100, 101, 102, 103]


def test_log_lines_reach_the_stream_and_rotated_files(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    writer = 'i=0; while [ $i -lt 150 ]; do echo "line $i ........................"; i=$((i+1)); sleep 0.01; done; '
    writer += "echo oops >&2; exec sleep 300"
    with running(make_instances(data_dir, node_id, redis_client, log_file_bytes=1024, log_files_kept=3)):
        jobs.run_instance(spec("chatty", writer))
        expected = [f"line {i} ........................" for i in range(150)]
        wait_until(lambda: log_lines(redis_client, node_id, "chatty") == expected, timeout=30, what="every line")
        wait_until(lambda: log_lines(redis_client, node_id, "chatty", "stderr") == ["oops"], what="stderr")
    logs = data_dir / "app-runs" / "chatty"
    assert (logs / "stdout.log.1").exists() and (logs / "stdout.log.2").exists()
    assert not (logs / "stdout.log.3").exists()  # three files kept: stdout.log and two older ones
    assert all((logs / name).stat().st_size <= 1024 + 200 for name in ("stdout.log.1", "stdout.log.2"))
    assert (logs / "stdout.log").stat().st_size <= 1024 + 200


def test_the_backoff_starts_over_after_a_stable_run(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    # Three quick crashes (0.2, 0.4, 0.8 s), then a run of 2 s (stable: 1.5 s), then a crash: 0.2 s again.
    command = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -le 3 ] || sleep 2; exit 1"
    with running(make_instances(data_dir, node_id, redis_client, stable_seconds=1.5)):
        jobs.run_instance(spec("stable", command))
        wait_until(lambda: (last(redis_client, "stable") or {}).get("restarts", 0) >= 4, timeout=30, what="4 restarts")
    restarts = [r for r in reports(redis_client, "stable") if r["restart"]][:4]
    delays = [round(r["next_start_at"] - r["restart"]["at"], 2) for r in restarts]
    assert delays == [0.2, 0.4, 0.8, 0.2]


def test_a_checked_instance_wakes_once_per_check_and_reports_ride_on_its_wakes(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    """Each wake-up of 100 instance threads costs CPU: a look at the logs due just before a check waits for it,
    and the periodic report waits for the next wake, however the two fall (instance.wait_seconds)."""
    owner = make_instances(data_dir, node_id, redis_client, poll_interval=1.0, report_interval=5.0)
    instance = Instance(InstanceRecord(spec=dict(spec("w1", "exec sleep 300"))), owner)
    instance.states.state = RunState.RUNNING
    now = 1000.0
    instance.next_report = now + 0.2  # due before the poll: not a wake of its own
    assert instance.wait_seconds(now, 1.0) == 1.0
    instance.checks = HealthChecks.fresh([check("HTTP", interval_seconds=1.0)], now)
    instance.checks.states[0].next_at = now + 1.0 + TIMER_SLACK_SECONDS / 2  # just after the poll: one wake
    assert instance.wait_seconds(now, 1.0) == pytest.approx(1.0 + TIMER_SLACK_SECONDS / 2)
    instance.checks.states[0].next_at = now + 1.5  # well after it: the logs are looked at first
    assert instance.wait_seconds(now, 1.0) == 1.0
    instance.checks.states[0].next_at = now + 0.3  # before it: the check
    assert instance.wait_seconds(now, 1.0) == pytest.approx(0.3)
    # A report interval shorter than the poll still gets its wakes.
    fast = make_instances(data_dir, node_id, redis_client, poll_interval=1.0, report_interval=0.5)
    quick = Instance(InstanceRecord(spec=dict(spec("w2", "exec sleep 300"))), fast)
    quick.states.state = RunState.RUNNING
    assert quick.wait_seconds(now, 1.0) == 0.5
