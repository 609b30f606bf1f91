"""Process components with a real Redis and real processes: deploy, idempotency, replace, stop, failure,
usage reports, and an agent restart (re-adoption)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis as redis_lib

from shared import jobs as job_names
from tests.support import pid_alive, wait_until
from tests.worker_agent.components_support import (
    last_status,
    make_manager,
    reports,
    spec,
    status_is,
    statuses,
    stop_request,
)
from tests.worker_agent.conftest import node_queue, run_jobs, watching
from worker_agent import jobs
from worker_agent.components.manager import UNKNOWN_ERROR, ComponentManager
from worker_agent.components.recovery import LOST_ERROR


@pytest.fixture
def components(data_dir: Path, node_id: str, redis_client: redis_lib.Redis) -> Iterator[ComponentManager]:
    """A recovered, watching ComponentManager registered for the job functions (data_dir kills what it leaves)."""
    with watching(make_manager(data_dir, node_id, redis_client), jobs.register_components) as manager:
        yield manager


def deploy(redis: redis_lib.Redis, node_id: str, payload: dict) -> None:
    node_queue(redis, node_id).enqueue(job_names.DEPLOY_COMPONENT, payload)
    run_jobs(redis, node_id)


def stop(redis: redis_lib.Redis, node_id: str, payload: dict) -> None:
    node_queue(redis, node_id).enqueue(job_names.STOP_COMPONENT, payload)
    run_jobs(redis, node_id)


def test_deploy_runs_the_command_with_its_env_files_and_cwd(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str, data_dir: Path
) -> None:
    payload = spec(
        "web",
        'echo "$GREETING $CORRAL_BUSINESS_ID $CORRAL_COMPONENT_ID $CORRAL_COMPONENT_DIR $(pwd)"; '
        "cat etc/app.conf; exec sleep 300",
        environment_variables={"GREETING": "hello"},
        config_files=[{"path": "/etc/app.conf", "content": "key=value\n"}],
    )
    deploy(redis_client, node_id, payload)

    running = wait_until(lambda: status_is(redis_client, "web", "running"), what="web to run")
    assert statuses(redis_client, "web") == ["starting", "running"]
    assert running["node_id"] == node_id and running["generation"] == 1 and pid_alive(running["pid"])
    files = data_dir / "components" / "biz-1" / "web" / "files"
    assert (files / "etc" / "app.conf").read_text() == "key=value\n"
    stdout = files.parent / "gen-1" / "stdout.log"
    wait_until(lambda: "key=value" in stdout.read_text(), what="the component's output")
    assert stdout.read_text().splitlines()[0] == f"hello biz-1 web {files} {files}"
    assert os.getpgid(running["pid"]) == running["pid"]  # a session of its own


def test_args_are_executed_without_a_shell(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str, data_dir: Path
) -> None:
    deploy(redis_client, node_id, spec("argv", "/bin/echo", args=["$HOME", "a b"]))
    failed = wait_until(lambda: status_is(redis_client, "argv", "failed"), what="echo to exit")
    assert failed["exit_code"] == 0
    out = data_dir / "components" / "biz-1" / "argv" / "gen-1" / "stdout.log"
    assert out.read_text() == "$HOME a b\n"


def test_the_same_generation_twice_starts_one_process(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str
) -> None:
    payload = spec("once", "exec sleep 300")
    deploy(redis_client, node_id, payload)
    first = wait_until(lambda: status_is(redis_client, "once", "running"), what="the first start")
    deploy(redis_client, node_id, payload)  # redelivered
    deploy(redis_client, node_id, spec("once", "exec sleep 300", generation=1))
    wait_until(components.idle, what="work to settle")

    assert statuses(redis_client, "once") == ["starting", "running"]
    assert components.current("biz-1", "once").pid == first["pid"]
    sleepers = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "300"]]
    assert [p.pid for p in sleepers if os.getpgid(p.pid) == first["pid"]] != []
    assert len([p for p in sleepers if os.getpgid(p.pid) == first["pid"]]) == 1


def test_a_newer_generation_replaces_the_old_one_and_an_older_is_ignored(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str
) -> None:
    deploy(redis_client, node_id, spec("svc", "exec sleep 300", generation=1))
    old = wait_until(lambda: status_is(redis_client, "svc", "running", 1), what="gen 1 to run")

    deploy(redis_client, node_id, spec("svc", "exec sleep 301", generation=2))
    new = wait_until(lambda: status_is(redis_client, "svc", "running", 2), what="gen 2 to run")
    assert status_is(redis_client, "svc", "stopped", 1)
    assert not pid_alive(old["pid"]) and pid_alive(new["pid"])
    assert statuses(redis_client, "svc", 1) == ["starting", "running", "stopping", "stopped"]

    deploy(redis_client, node_id, spec("svc", "exec sleep 302", generation=1))  # late, older
    wait_until(components.idle, what="work to settle")
    assert statuses(redis_client, "svc", 2) == ["starting", "running"]
    assert components.current("biz-1", "svc").pid == new["pid"]


def test_stop_kills_the_whole_tree_and_escalates_to_sigkill(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str
) -> None:
    # A child that ignores SIGTERM, in the background of a shell that waits for it.
    deploy(redis_client, node_id, spec("tree", "sh -c 'trap \"\" TERM; sleep 300' & wait"))
    running = wait_until(lambda: status_is(redis_client, "tree", "running"), what="tree to run")
    tree = wait_until(
        lambda: [p.pid for p in psutil.Process(running["pid"]).children(recursive=True)][2:],
        what="the tree's grandchildren",
    )

    stop(redis_client, node_id, stop_request("tree", generation=1, grace_seconds=0.5))
    stopped = wait_until(lambda: status_is(redis_client, "tree", "stopped"), what="tree to stop")
    assert statuses(redis_client, "tree")[-2:] == ["stopping", "stopped"]
    assert stopped["exit_code"] == -signal.SIGKILL
    assert not pid_alive(running["pid"]) and not any(pid_alive(pid) for pid in tree)


def test_a_stop_with_sigterm_reports_its_exit_code(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str
) -> None:
    deploy(redis_client, node_id, spec("term", "exec sleep 300"))
    running = wait_until(lambda: status_is(redis_client, "term", "running"), what="term to run")
    stop(redis_client, node_id, stop_request("term"))
    stopped = wait_until(lambda: status_is(redis_client, "term", "stopped"), what="term to stop")
    assert stopped["exit_code"] == -signal.SIGTERM and not pid_alive(running["pid"])


def test_a_stop_of_an_unknown_component_reports_stopped(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str
) -> None:
    stop(redis_client, node_id, stop_request("ghost", generation=3))
    report = wait_until(lambda: status_is(redis_client, "ghost", "stopped"), what="the unknown stop report")
    assert (report["generation"], report["error_message"]) == (3, UNKNOWN_ERROR)

    deploy(redis_client, node_id, spec("ghost", "exec sleep 300", generation=3))  # arrives late: no start
    wait_until(components.idle, what="work to settle")
    assert statuses(redis_client, "ghost") == ["stopped"]


def test_a_stop_of_an_older_generation_leaves_the_newer_running(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str
) -> None:
    deploy(redis_client, node_id, spec("keep", "exec sleep 300", generation=2))
    running = wait_until(lambda: status_is(redis_client, "keep", "running"), what="keep to run")
    stop(redis_client, node_id, stop_request("keep", generation=1))
    wait_until(components.idle, what="work to settle")
    assert statuses(redis_client, "keep") == ["starting", "running"] and pid_alive(running["pid"])


def test_a_command_that_exits_at_once_fails_with_its_code_and_stderr(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str
) -> None:
    deploy(redis_client, node_id, spec("bad", "echo first >&2; echo 'no such config' >&2; exit 3"))
    failed = wait_until(lambda: status_is(redis_client, "bad", "failed"), what="bad to fail")
    assert failed["exit_code"] == 3
    assert failed["error_message"] == "exited with code 3; stderr: first\nno such config"

    deploy(redis_client, node_id, spec("missing", "/no/such/binary", args=["x"]))
    failed = wait_until(lambda: status_is(redis_client, "missing", "failed"), what="missing to fail")
    assert failed["exit_code"] == 127 and "/no/such/binary" in failed["error_message"]


def test_unsafe_config_files_fail_the_component_and_write_nothing(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str, data_dir: Path, tmp_path: Path
) -> None:
    files = data_dir / "components" / "biz-1" / "cfg" / "files"
    files.mkdir(parents=True)
    (files / "etc").symlink_to(tmp_path)
    payload = spec(
        "cfg",
        "exec sleep 300",
        config_files=[{"path": "/ok.conf", "content": "x"}, {"path": "/etc/app.conf", "content": "y"}],
    )
    deploy(redis_client, node_id, payload)
    failed = wait_until(lambda: status_is(redis_client, "cfg", "failed"), what="cfg to fail")
    assert "symlink" in failed["error_message"] and failed["pid"] is None
    assert not (files / "ok.conf").exists() and not (tmp_path / "app.conf").exists()


def test_usage_is_reported_every_interval_while_running(
    components: ComponentManager, redis_client: redis_lib.Redis, node_id: str
) -> None:
    deploy(redis_client, node_id, spec("busy", "while :; do :; done"))
    wait_until(lambda: status_is(redis_client, "busy", "running"), what="busy to run")

    def usage() -> list[dict]:
        return [r for r in reports(redis_client, "busy") if r["resource_usage"] is not None]

    samples = wait_until(lambda: usage()[3:], timeout=10, what="four usage reports")
    assert all(r["status"] == "running" for r in samples)
    assert max(r["resource_usage"]["cpu_percent"] for r in samples) > 20
    assert all(r["resource_usage"]["memory_mb"] > 0 for r in samples)
    assert all(r["resource_usage"]["gpu_percent"] is None for r in samples)
    stop(redis_client, node_id, stop_request("busy"))
    wait_until(lambda: status_is(redis_client, "busy", "stopped"), what="busy to stop")
    count = len(usage())
    wait_until(components.idle, what="work to settle")
    components.poll()
    assert len(usage()) == count  # no usage once stopped


def test_reports_that_could_not_be_published_are_sent_later(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    down = {"now": True}

    def publish(report: dict) -> None:
        if down["now"]:
            raise ConnectionError("redis is down")
        from shared import report_streams

        report_streams.publish_component_report(redis_client, report)

    manager = ComponentManager(data_dir, node_id, publish, usage_interval=60, poll_interval=0.05)
    manager.outbox.retry_seconds = 0.1
    manager.recover()
    manager.start_monitor()
    try:
        manager.deploy(spec("later", "exec sleep 300"))
        wait_until(lambda: manager.current("biz-1", "later").state == "running", what="later to run")
        assert reports(redis_client, "later") == []
        down["now"] = False
        wait_until(lambda: statuses(redis_client, "later") == ["starting", "running"], what="the held reports")
    finally:
        manager.close()


def test_a_restarted_agent_adopts_running_components_and_reports_ended_ones(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    first = make_manager(data_dir, node_id, redis_client)
    first.recover()
    first.start_monitor()
    try:
        first.deploy(spec("lives", "exec sleep 300"))
        first.deploy(spec("dies", "sleep 300; exit 7"))
        first.deploy(spec("vanishes", "exec sleep 300"))
        for cid in ("lives", "dies", "vanishes"):
            wait_until(lambda cid=cid: status_is(redis_client, cid, "running"), what=f"{cid} to run")
        lives = first.current("biz-1", "lives").pid
        dies = first.current("biz-1", "dies").pid
        vanishes = first.current("biz-1", "vanishes").pid
    finally:
        first.close()  # the agent goes away; its components do not
    # While the agent is down: one exits with a code, one is killed with its wrapper (no exit code).
    for child in psutil.Process(dies).children(recursive=True):
        if child.name() == "sleep":
            child.kill()
    wait_until(lambda: (data_dir / "components" / "biz-1" / "dies" / "gen-1" / "exit-code").exists(), what="dies")
    os.killpg(vanishes, signal.SIGKILL)
    wait_until(lambda: not pid_alive(vanishes), what="vanishes to die")

    with watching(make_manager(data_dir, node_id, redis_client), jobs.register_components) as second:
        assert second.current("biz-1", "lives").pid == lives and pid_alive(lives)
        assert statuses(redis_client, "lives") == ["starting", "running", "running"]  # re-announced
        died = last_status(redis_client, "dies")
        assert (died["status"], died["exit_code"]) == ("failed", 7)
        assert died["error_message"].startswith(LOST_ERROR)
        gone = last_status(redis_client, "vanishes")
        assert (gone["status"], gone["exit_code"], gone["error_message"]) == ("failed", None, LOST_ERROR)

        deploy(redis_client, node_id, spec("lives", "exec sleep 300"))  # redelivered: not started twice
        wait_until(second.idle, what="work to settle")
        assert second.current("biz-1", "lives").pid == lives
        stop(redis_client, node_id, stop_request("lives"))
        wait_until(lambda: status_is(redis_client, "lives", "stopped"), what="the adopted one to stop")
        assert not pid_alive(lives)


def test_pruned_records_take_their_directories_along_but_never_follow_a_symlink(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "gen-1").mkdir(parents=True)
    (outside / "gen-1" / "keep.txt").write_text("not the agent's")
    root = data_dir / "components"
    conf = [{"path": "/app.conf", "content": "x"}]
    manager = make_manager(data_dir, node_id, redis_client)
    with watching(manager, jobs.register_components):
        # A component directory that became a symlink: pruning its record must not reach through it.
        manager.deploy(spec("trap", "exit 0", business_id="biz-2"))
        wait_until(lambda: manager.current("biz-2", "trap").state == "failed", what="trap to end")
        shutil.rmtree(root / "biz-2" / "trap")
        (root / "biz-2" / "trap").symlink_to(outside)

        manager.deploy(spec("web", "exec sleep 300", generation=1, config_files=conf))
        wait_until(lambda: status_is(redis_client, "web", "running", 1), what="gen 1 to run")
        (root / "biz-1" / "web" / "gen-1" / "escape").symlink_to(outside)  # left behind by the component
        manager.deploy(spec("web", "exec sleep 300", generation=2, config_files=conf))
        wait_until(lambda: status_is(redis_client, "web", "stopped", 1), what="gen 1 to be replaced")
        wait_until(lambda: status_is(redis_client, "web", "running", 2), what="gen 2 to run")

        manager.keep_ended_seconds = 0  # as if a day had passed (the monitor prunes again only in a minute)
        manager.prune()
        assert not (root / "biz-1" / "web" / "gen-1").exists()
        assert (root / "biz-1" / "web" / "gen-2" / "stdout.log").exists()
        assert (root / "biz-1" / "web" / "files" / "app.conf").read_text() == "x"  # gen 2 still uses them
        assert (root / "biz-2" / "trap").is_symlink() and manager.current("biz-2", "trap") is None
        assert (outside / "gen-1" / "keep.txt").read_text() == "not the agent's"

        manager.stop(stop_request("web"))
        wait_until(lambda: status_is(redis_client, "web", "stopped", 2), what="gen 2 to stop")
        manager.prune()
        assert not (root / "biz-1").exists()  # the last generation takes the files and the empty parents along
        assert manager.records_of("biz-1", "web") == []
        assert sorted(p.name for p in outside.rglob("*")) == ["gen-1", "keep.txt"]
