"""`manager backup FILE` under writes, then the restore procedure of the README: a real manager with its private
Redis and a real agent; everything acknowledged before the backup is back, and the agent works on."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import BIN, Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

HOST = "backup-a"


class Writer(threading.Thread):
    """POSTs templates until stopped; keeps each acknowledged name with the moment its 2xx came."""

    def __init__(self, manager: Manager) -> None:
        super().__init__(daemon=True)
        self.manager = manager
        self.stop = threading.Event()
        self.acked: list[tuple[str, float]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        count = 0
        while not self.stop.is_set():
            count += 1
            name = f"written-{count:05d}"
            body = {"name": name, "task_groups": [{"tasks": [{"name": "t", "config": {"command": "sleep 1"}}]}]}
            answer = session.post(self.manager.url + "/api/task/task_group", json=body, timeout=30)
            if answer.ok:
                self.acked.append((name, time.monotonic()))
            else:
                self.failures.append(f"{name}: {answer.status_code} {answer.text}")

    def acked_count(self) -> int:
        return len(self.acked)


def online_node(manager: Manager) -> str | None:
    nodes = manager.get("/api/nodes").json()["nodes"]
    return next((n["id"] for n in nodes if n["hostname"] == HOST and n["status"] == "online"), None)


def run_task(manager: Manager, command: str) -> dict[str, object]:
    answer = manager.post("/api/tasks?wait=30", {"name": "backup-e2e", "command": command, "targets": [HOST]})
    assert answer.status_code == 201, answer.text
    [host] = answer.json()["hosts"]
    assert answer.json()["status"] == "completed" and host["status"] == "succeeded", answer.text
    return dict(answer.json())


@pytest.mark.sqlite_only  # SQLite's backup API; a PostgreSQL database is backed up with pg_dump
def test_backup_under_writes_then_restore_keeps_everything_acknowledged_before_it(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agent = Agent(tmp_path, env, manager, HOST, 0.5)
    agent.start()
    writer = Writer(manager)
    try:
        node_id = wait_until(lambda: online_node(manager), timeout=30, what="the agent online")
        before = run_task(manager, "echo before")
        schedule = manager.post(
            "/api/schedules", {"name": "hourly", "command": "echo tick", "targets": [HOST], "interval": 3600}
        )
        assert schedule.status_code == 201, schedule.text
        tags = requests.put(f"{manager.url}/api/nodes/{node_id}/tags", json={"tags": ["kept", "ssd"]}, timeout=10)
        assert tags.status_code == 200, tags.text

        writer.start()
        wait_until(lambda: writer.acked_count() >= 20, timeout=30, what="20 writes acknowledged")
        backup_file = tmp_path / "backups" / "corral.db"
        backup_file.parent.mkdir()
        backup_started = time.monotonic()
        result = subprocess.run(
            [str(BIN / "manager"), "backup", "--db-path", str(manager.db_path), str(backup_file)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        backup_ended = time.monotonic()
        # The writer is still going: the backup ran beside writes, not in a pause between them.
        acked_at_end = writer.acked_count()
        wait_until(lambda: writer.acked_count() >= acked_at_end + 10, timeout=30, what="writes after the backup")
        writer.stop.set()
        writer.join(30)
        assert result.returncode == 0, result.stderr
        assert f"to {backup_file}: " in result.stdout and "integrity ok" in result.stdout, result.stdout
        assert writer.failures == []
        assert backup_file.stat().st_mode & 0o777 == 0o600
        assert not list(backup_file.parent.glob(".*"))  # no temporary file left beside it
        with sqlite3.connect(backup_file) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file, no -wal to carry

        # The restore procedure of the README: stop, copy the backup over the file, drop -wal and -shm, start.
        assert manager.terminate() == 0, manager.output()
        shutil.copyfile(backup_file, manager.db_path)
        for suffix in ("-wal", "-shm"):
            Path(f"{manager.db_path}{suffix}").unlink(missing_ok=True)
        manager.start()

        acked_before = [name for name, at in writer.acked if at < backup_started]
        acked_after = [name for name, at in writer.acked if at > backup_ended]
        assert len(acked_before) >= 20 and len(acked_after) >= 10
        missing = [name for name in acked_before if manager.get(f"/api/templates/{name}").status_code != 200]
        assert missing == []
        # What came after the backup is gone: the database really is the backup's.
        assert manager.get(f"/api/templates/{acked_after[-1]}").status_code == 404
        task = manager.get(f"/api/tasks/{before['task_id']}").json()
        assert task["status"] == "completed" and task["hosts"][0]["stdout"] == "before\n"
        restored_schedule = manager.get(f"/api/schedules/{schedule.json()['id']}")
        assert restored_schedule.status_code == 200 and restored_schedule.json()["interval"] == 3600
        assert manager.get(f"/api/nodes/{node_id}").json()["tags"] == ["kept", "ssd"]

        # The agent never stopped: it is the same node, online again, and runs a new task end to end.
        assert agent.alive()
        assert wait_until(lambda: online_node(manager), timeout=30, what="the agent online again") == node_id
        after = run_task(manager, "echo hi")
        assert after["hosts"][0]["stdout"] == "hi\n"  # type: ignore[index]
    finally:
        writer.stop.set()
        if agent.alive():
            agent.terminate()
        if manager.alive():
            manager.terminate()


def test_backup_refusals_write_nothing(tmp_path: Path) -> None:
    def backup(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "manager"), "backup", *args], capture_output=True, text=True, timeout=30, cwd=tmp_path
        )

    missing = backup("copy.db")  # no resource_monitor.db here: none is created either
    assert missing.returncode == 1 and f"no database at {tmp_path / 'resource_monitor.db'}" in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    url = backup("--db-path", "postgresql://corral@db/corral", "copy.db")
    assert url.returncode == 1 and "pg_dump" in url.stderr
    on_postgres = tmp_path / "postgres.yaml"  # a manager on PostgreSQL: its URL refused, its password not shown
    on_postgres.write_text("db-url: postgresql://corral:db-secret@db/corral\n")
    url = backup("--config", str(on_postgres), "copy.db")
    assert url.returncode == 1 and "pg_dump" in url.stderr and "db-secret" not in url.stderr
    on_postgres.unlink()
    db = tmp_path / "resource_monitor.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE t (x)")
    itself = backup(str(db))
    assert itself.returncode == 1 and "is the database itself" in itself.stderr
    config = tmp_path / "manager.yaml"
    config.write_text("db-path: resource_monitor.db\nport: many\n")
    bad = backup("--config", str(config), "copy.db")
    assert bad.returncode == 2 and "key 'port' must be an integer" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manager.yaml", "resource_monitor.db"]
    config.write_text(f"db-path: {db}\n")
    assert backup("--config", str(config), "copy.db").returncode == 0
    with sqlite3.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]
