"""App instances' uris (conditional GET, zips unpacked, escaping entries refused) and resAlloc with cgroups."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from tests.engines import HttpFileServer, SshServer
from tests.support import pid_alive, wait_until
from worker_agent import jobs
from worker_agent.app_instances import cgroups
from worker_agent.components.image_fetch import SftpSettings

from .apps_support import first_restart, make_instances, reports, running, spec, state_is, stop


@pytest.fixture
def files(tmp_path: Path) -> Iterator[HttpFileServer]:
    served = tmp_path / "served"
    served.mkdir()
    server = HttpFileServer(served)
    yield server
    server.stop()


def test_uris_are_fetched_when_newer_and_zips_unpacked(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, files: HttpFileServer, tmp_path: Path
) -> None:
    (files.directory / "app.sh").write_text("cat data/hello.txt; exec sleep 300\n")
    with zipfile.ZipFile(files.directory / "bundle.zip", "w") as zf:
        zf.writestr("data/hello.txt", "hello from the zip\n")
    workdir = tmp_path / "work"
    payload = {"uris": [files.url("app.sh"), files.url("bundle.zip")], "working_dir": str(workdir)}
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("u1", "sh app.sh", **payload))
        wait_until(lambda: state_is(redis_client, "u1", "running"), what="the first copy running")
        assert (workdir / "data" / "hello.txt").read_text() == "hello from the zip\n"
        script = (workdir / "app.sh").stat()
        jobs.stop_instance(stop("u1", grace_seconds=1))
        wait_until(lambda: state_is(redis_client, "u1", "stopped"))

        # The same files again: asked for (conditional GET), not downloaded again.
        (workdir / "data" / "hello.txt").write_text("changed here\n")
        jobs.run_instance(spec("u2", "sh app.sh", **payload))
        wait_until(lambda: state_is(redis_client, "u2", "running"), what="the second copy running")
        assert files.served.count("/app.sh") == 2
        assert (workdir / "app.sh").stat().st_ino == script.st_ino  # 304: the copy was kept
        assert (workdir / "data" / "hello.txt").read_text() == "changed here\n"  # no unpack without a download
        jobs.stop_instance(stop("u2", grace_seconds=1))
        wait_until(lambda: state_is(redis_client, "u2", "stopped"))

        # A newer file on the server is downloaded.
        (files.directory / "app.sh").write_text("echo v2; exec sleep 300\n")
        newer = script.st_mtime + 10
        os.utime(files.directory / "app.sh", (newer, newer))
        jobs.run_instance(spec("u3", "sh app.sh", **payload))
        wait_until(lambda: state_is(redis_client, "u3", "running"), what="the third copy running")
        assert (workdir / "app.sh").read_text() == "echo v2; exec sleep 300\n"


def test_a_zip_escaping_the_working_dir_is_refused_and_retried(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, files: HttpFileServer, tmp_path: Path
) -> None:
    with zipfile.ZipFile(files.directory / "evil.zip", "w") as zf:
        zf.writestr("fine.txt", "fine")
        zf.writestr("../evil", "gotcha")
    workdir = tmp_path / "deep" / "work"
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("evil", "exec sleep 300", uris=[files.url("evil.zip")], working_dir=str(workdir)))
        wait_until(lambda: len([r for r in reports(redis_client, "evil") if r["restart"]]) >= 2, timeout=30)
    failed = [r for r in reports(redis_client, "evil") if r["restart"]]
    assert all("'../evil' escapes the working directory: refused" in r["restart"]["reason"] for r in failed)
    assert all(r["state"] == "backoff" for r in failed)
    assert not (tmp_path / "deep" / "evil").exists() and not (workdir / "fine.txt").exists()
    assert files.served.count("/evil.zip") >= 2  # downloaded again each time: a refused zip is never kept


def test_an_unfetchable_uri_backs_off_and_a_bad_working_dir_fails(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, files: HttpFileServer, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("gone", "exec sleep 300", uris=[files.url("missing.tar")]))
        jobs.run_instance(spec("bad", "exec sleep 300", working_dir=str(tmp_path / "a-file" / "sub")))
        backoff = wait_until(lambda: state_is(redis_client, "gone", "backoff"))
        failed = wait_until(lambda: state_is(redis_client, "bad", "failed"))
    assert "HTTP 404" in backoff["reason"] and backoff["next_start_at"]
    assert "working_dir" in failed["reason"]


def test_a_memory_limit_kills_the_instance_and_reads_out_of_memory(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    # This machine's agent runs as root with a writable cgroup v1 memory hierarchy (see cgroups.detect).
    assert os.geteuid() == 0 and cgroups.detect() == 1
    hog = "python3 -c 'import time; b = bytearray(200 * 1024 * 1024); time.sleep(300)'"
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("hog", hog, res_alloc={"mem_mb": 32, "cpus": 0.5}))
        report = wait_until(
            lambda: first_restart(redis_client, "hog"),
            timeout=30,
            what="the OOM kill",
        )
        assert report["restart"]["oom"] is True
        assert report["restart"]["reason"] == "out of memory (cgroup limit 32 MB)"
        assert report["restart"]["signal"] == 9
        assert report["limits"] == "enforced (cgroup v1: memory 32 MB, cpu 0.5)"
        group = cgroups.CGROUP_ROOT / "memory" / cgroups.GROUP_PARENT / "hog"
        assert (group / "memory.limit_in_bytes").read_text().strip() == str(32 * 1024 * 1024)
        cpu = cgroups.CGROUP_ROOT / "cpu" / cgroups.GROUP_PARENT / "hog"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        jobs.stop_instance(stop("hog", grace_seconds=1))
        wait_until(lambda: state_is(redis_client, "hog", "stopped"))
    assert not group.exists() and not cpu.exists()  # removed with the instance


def test_limits_that_cannot_be_written_run_unenforced(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, tmp_path: Path
) -> None:
    assert cgroups.setup("x", {"mem_mb": 64, "cpus": 0}, root=tmp_path / "no-cgroups") == cgroups.not_enforced(
        f"no cgroup memory controller under {tmp_path / 'no-cgroups'}"
    )
    assert cgroups.setup("x", {"mem_mb": 0, "cpus": 0}) is None
    fake = tmp_path / "fake"
    (fake / "memory").mkdir(parents=True)
    (fake / "memory" / "memory.limit_in_bytes").write_text("")
    (fake / "memory" / cgroups.GROUP_PARENT).write_text("a file where the group should go")
    limits = cgroups.setup("x", {"mem_mb": 64}, root=fake)
    assert limits is not None and not limits.enforced
    assert limits.description.startswith("not enforced: cgroup v1 not writable:")
    # Run unenforced: the instance runs and its report says why.
    with running(make_instances(data_dir, node_id, redis_client, cgroup_root=fake)):
        jobs.run_instance(spec("loose", "exec sleep 300", res_alloc={"mem_mb": 64}))
        report = wait_until(lambda: state_is(redis_client, "loose", "running"))
        assert report["limits"].startswith("not enforced: cgroup v1 not writable:")
        assert pid_alive(report["pid"])


def test_sftp_uris_are_fetched_with_the_agents_key_and_fetched_again_only_when_newer(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, sshd_server: SshServer, tmp_path: Path
) -> None:
    served = tmp_path / "sftp-served"
    served.mkdir()
    (served / "app.sh").write_text("echo from sftp; exec sleep 300\n")
    workdir = tmp_path / "work"
    payload = {"uris": [sshd_server.sftp_url(served / "app.sh")], "working_dir": str(workdir)}
    keys = SftpSettings(key_path=sshd_server.client_key_path, known_hosts_path=sshd_server.known_hosts_path)
    with running(make_instances(data_dir, node_id, redis_client, sftp=keys)):
        jobs.run_instance(spec("s1", "sh app.sh", **payload))
        wait_until(lambda: state_is(redis_client, "s1", "running"), timeout=30, what="running from an sftp uri")
        first = (workdir / "app.sh").stat()
        assert (workdir / "app.sh").read_text() == "echo from sftp; exec sleep 300\n"
        jobs.stop_instance(stop("s1", grace_seconds=1))
        wait_until(lambda: state_is(redis_client, "s1", "stopped"))
        # Unchanged on the server (same size and mtime): the copy is kept.
        jobs.run_instance(spec("s2", "sh app.sh", **payload))
        wait_until(lambda: state_is(redis_client, "s2", "running"), timeout=30)
        assert (workdir / "app.sh").stat().st_ino == first.st_ino
        jobs.stop_instance(stop("s2", grace_seconds=1))
        wait_until(lambda: state_is(redis_client, "s2", "stopped"))
        # Newer on the server: fetched again.
        (served / "app.sh").write_text("echo v2 from sftp; exec sleep 300\n")
        newer = first.st_mtime + 10
        os.utime(served / "app.sh", (newer, newer))
        jobs.run_instance(spec("s3", "sh app.sh", **payload))
        wait_until(lambda: state_is(redis_client, "s3", "running"), timeout=30)
        assert (workdir / "app.sh").read_text() == "echo v2 from sftp; exec sleep 300\n"


def test_cgroup_v2_limits_are_written_joined_and_an_oom_kill_read_from_memory_events(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, tmp_path: Path
) -> None:
    """The v2 (unified) layout on a tree laid out as the kernel's: this machine mounts cgroup v1 only, and its
    memory and cpu controllers cannot be moved to a v2 mount while v1 holds them, so the kernel's part (the
    limit itself, the kill) is played by the test: it writes memory.events and SIGKILLs the process."""
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    assert cgroups.detect(root) == 2
    with running(make_instances(data_dir, node_id, redis_client, cgroup_root=root)):
        jobs.run_instance(spec("v2", "exec sleep 300", res_alloc={"mem_mb": 32, "cpus": 0.5}))
        report = wait_until(lambda: state_is(redis_client, "v2", "running"))
        assert report["limits"] == "enforced (cgroup v2: memory 32 MB, cpu 0.5)"
        group = root / cgroups.GROUP_PARENT / "v2"
        assert (root / "cgroup.subtree_control").read_text() == "+memory +cpu"
        assert (root / cgroups.GROUP_PARENT / "cgroup.subtree_control").read_text() == "+memory +cpu"
        assert (group / "memory.max").read_text() == str(32 * 1024 * 1024)
        assert (group / "cpu.max").read_text() == "50000 100000"
        # The process joined its group itself before it ran the command (the launch script).
        assert int((group / "cgroup.procs").read_text()) == report["pid"]
        (group / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
        os.kill(report["pid"], 9)
        restarted = wait_until(
            lambda: first_restart(redis_client, "v2"),
            timeout=30,
            what="the OOM kill read from memory.events",
        )
        assert restarted["restart"]["oom"] is True
        assert restarted["restart"]["reason"] == "out of memory (cgroup limit 32 MB)"
        jobs.stop_instance(stop("v2", grace_seconds=1))
        wait_until(lambda: state_is(redis_client, "v2", "stopped"))
