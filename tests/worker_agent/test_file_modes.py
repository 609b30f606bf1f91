"""The agent's secrets on disk: written owner-only, fixed at start with one log line each, while the processes
it runs for users keep the usual umask (issue 10, item 7)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker_agent import process_tree
from worker_agent.components.config_files import config_file_mode, write_config_files
from worker_agent.data_dir import SECRET_DIRS, SECRET_FILES, DataDirLock, secure_data_dir
from worker_agent.deployment_tasks.records import TaskRecord
from worker_agent.fleet_commands.publish import CommandPublisher
from worker_agent.identity import load_or_create_node_secret
from worker_agent.state_file import StateFile, atomic_write

USUAL_UMASK = 0o022
"""The umask these tests run under, whatever the caller's: what a user's files come out with is known."""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[int]:
    old = os.umask(USUAL_UMASK)
    try:
        yield USUAL_UMASK
    finally:
        os.umask(old)


def test_state_files_are_written_owner_only_even_over_an_open_one(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}")
    path.chmod(0o644)
    # A temp file a crashed agent of this very pid left behind, 0644: O_CREAT alone would keep that mode.
    stale = tmp_path / f".state.json.{os.getpid()}.tmp"
    stale.write_text("")
    stale.chmod(0o644)

    StateFile(path, TaskRecord).save({"t-1": TaskRecord(task_id="t-1", deployment_id="d-1", command="x")})

    assert mode(path) == 0o600 and "t-1" in path.read_text()
    assert not stale.exists()
    atomic_write(tmp_path / "other", b"x")
    assert mode(tmp_path / "other") == 0o600


def test_the_node_secret_is_owner_only_even_from_an_open_temp_file(tmp_path: Path) -> None:
    stale = tmp_path / f".node-secret.{os.getpid()}.tmp"
    stale.write_text("")
    stale.chmod(0o644)

    secret = load_or_create_node_secret(tmp_path)

    assert mode(tmp_path / "node-secret") == 0o600 and (tmp_path / "node-secret").read_text().strip() == secret


def test_a_new_data_directory_is_owner_only_from_the_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "root" / "hosts" / "n-1"

    lock = DataDirLock(data_dir).acquire("n-1")
    try:
        assert mode(data_dir) == 0o700
        # Parents are ordinary directories (another agent's data directory may sit beside this one).
        assert mode(data_dir.parent) == 0o755 and mode(tmp_path / "root") == 0o755
    finally:
        lock.release()


def test_start_makes_secrets_owner_only_with_one_line_each_and_leaves_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "agent"
    data_dir.mkdir(mode=0o755)
    (data_dir / "tasks").mkdir(mode=0o755)  # components/ and command-reports/ are missing: made 0700
    for name in SECRET_FILES:
        (data_dir / name).write_text("secret")
        (data_dir / name).chmod(0o644)
    (data_dir / "node-id").write_text("0" * 32 + "\n")  # no secret: keeps its mode
    (data_dir / "node-id").chmod(0o644)
    held = data_dir / "command-reports"
    held.mkdir(mode=0o700)
    (held / "a.json").write_text("{}")
    (held / "a.json").chmod(0o640)
    (held / "b.json").write_text("{}")
    (held / "b.json").chmod(0o400)  # read-only for its owner: bits are only taken away, never added
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    outside.chmod(0o644)
    (held / "c.json").symlink_to(outside)  # never followed: not a file of ours to fix

    with caplog.at_level(logging.WARNING, logger="shared.file_modes"):
        secure_data_dir(data_dir, "n-1")

    assert mode(data_dir) == 0o700
    assert {name: mode(data_dir / name) for name in SECRET_DIRS} == {name: 0o700 for name in SECRET_DIRS}
    assert {name: mode(data_dir / name) for name in SECRET_FILES} == {name: 0o600 for name in SECRET_FILES}
    assert (mode(held / "a.json"), mode(held / "b.json"), mode(outside)) == (0o600, 0o400, 0o644)
    assert mode(data_dir / "node-id") == 0o644
    lines = [r.getMessage() for r in caplog.records]
    expected = [
        f"node n-1: directory {data_dir} was mode 0755, open to other users: now 0700",
        f"node n-1: directory {data_dir / 'tasks'} was mode 0755, open to other users: now 0700",
        *(f"node n-1: file {data_dir / name} was mode 0644, open to other users: now 0600" for name in SECRET_FILES),
        f"node n-1: file {held / 'a.json'} was mode 0640, open to other users: now 0600",
    ]
    assert sorted(lines) == sorted(expected)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shared.file_modes"):
        secure_data_dir(data_dir, "n-1")
    assert caplog.records == []  # nothing left to fix, nothing said


def test_held_command_reports_are_owner_only(tmp_path: Path) -> None:
    held = tmp_path / "command-reports"
    publisher = CommandPublisher("n-1", lambda: None, held, lambda _task_id: None)

    publisher.hold({"task_id": "t-1", "node_id": "n-1", "status": "succeeded", "stdout": "password=x\n"})

    [report] = held.iterdir()
    assert mode(held) == 0o700 and mode(report) == 0o600
    assert publisher.load_held("t-1") is not None


def test_config_files_are_owner_only_but_readable_in_a_container(tmp_path: Path) -> None:
    files = [{"path": "/etc/app/app.conf", "content": "password=x\n"}]

    [(_inside, process_file)] = write_config_files(tmp_path / "p", files, config_file_mode("process"))
    [(_inside, docker_file)] = write_config_files(tmp_path / "d", files, config_file_mode("docker"))

    assert mode(process_file) == 0o600
    # Bind-mounted with its mode into a container whose process may run as any user of its image.
    assert mode(docker_file) == 0o644
    assert mode(write_config_files(tmp_path / "x", files)[0][1]) == 0o600  # the default is private


def test_tasks_and_commands_keep_the_usual_umask(tmp_path: Path) -> None:
    """The agent never sets a umask of its own: what users run makes files as they always did."""
    make = "echo made > made.txt && mkdir made-dir"
    task_dir = tmp_path / "tasks" / "t-1"
    task = process_tree.spawn(make, task_dir, {})
    command_dir = tmp_path / "command"
    command_dir.mkdir()
    command = process_tree.spawn_piped(make, command_dir, {})
    command.communicate(timeout=30)
    task.wait(30)
    assert (task.returncode, command.returncode) == (0, 0)

    for where in (task_dir, command_dir):
        assert (mode(where / "made.txt"), mode(where / "made-dir")) == (0o644, 0o755), where
    # The task's own logs, which the agent opens for it, too (the 0700 data directory hides them).
    assert mode(task_dir / "stdout.log") == 0o644
