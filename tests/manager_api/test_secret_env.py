"""Secret env of fleet tasks and schedules: encrypted at rest, sealed per node on the wire, never answered,
audited without values, and the key rotated by ``manager secrets rotate-key``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.config import Settings
from manager_api.launcher.main import main as manager_main
from manager_api.models import AuditLog, FleetTask, Schedule
from manager_api.services import job_keys, secret_store
from shared import secret_env

from .conftest import answer
from .tasks_helpers import add_node, create, detail, queued

SECRET = "s3cr3t-value-4711"


@pytest.fixture
def node(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")


def _task(client: FlaskClient) -> dict[str, Any]:
    return create(client, command="echo $DB_PASSWORD", env={"PLAIN": "1"}, secretEnv={"DB_PASSWORD": SECRET})


def test_secret_env_is_answered_as_names_and_stored_encrypted(
    client: FlaskClient, redis_client: redis_lib.Redis, node: None
) -> None:
    task = _task(client)
    assert task["secretEnv"] == {"DB_PASSWORD": "(secret)"}
    assert SECRET not in json.dumps(detail(client, task["task_id"]))
    assert SECRET not in json.dumps(answer(client.get("/api/tasks")))
    stored = FleetTask.get(FleetTask.task_id == task["task_id"]).secret_env
    assert stored and SECRET not in stored
    assert secret_store.decrypt_env(stored) == {"DB_PASSWORD": SECRET}
    assert all(SECRET not in row.detail for row in AuditLog.select())
    # The Redis job holds the value sealed for n1 alone, bound to this task.
    (job,) = queued(redis_client, "n1")
    [payload] = job.args
    assert SECRET not in json.dumps(payload) and SECRET not in str(redis_client.hgetall(job.key))
    opened = secret_env.open_sealed(job_keys.node_key("n1"), f"task:{task['task_id']}", payload["secret_env"])
    assert opened == {"DB_PASSWORD": SECRET}


def test_a_name_in_env_and_secret_env_is_a_400_naming_the_field(client: FlaskClient, node: None) -> None:
    body = answer(
        client.post(
            "/api/tasks",
            json={"name": "t", "command": "x", "targets": ["*"], "env": {"A": "1"}, "secretEnv": {"A": "2"}},
        ),
        400,
    )
    assert "secretEnv" in body["error"]


def test_schedule_secret_env_is_names_only_and_reaches_its_tasks(client: FlaskClient, node: None) -> None:
    body = {"name": "s", "command": "x", "targets": ["*"], "interval": 3600, "secretEnv": {"TOKEN": SECRET}}
    schedule = answer(client.post("/api/schedules", json=body), 201)
    assert schedule["secretEnv"] == {"TOKEN": "(secret)"} and SECRET not in json.dumps(schedule)
    stored = Schedule.get_by_id(schedule["id"]).secret_env
    assert SECRET not in stored and secret_store.decrypt_env(stored) == {"TOKEN": SECRET}


@pytest.mark.sqlite_only("reads the SQLite database file's bytes")
def test_the_database_file_holds_no_secret_value(client: FlaskClient, settings: Settings, node: None) -> None:
    _task(client)
    files = [Path(settings.db_path), Path(settings.db_path + "-wal")]
    assert all(SECRET.encode() not in path.read_bytes() for path in files if path.exists())


def test_rotate_key_reencrypts_and_an_old_key_file_reads_no_new_row(
    client: FlaskClient, settings: Settings, node: None, tmp_path: Path
) -> None:
    task = _task(client)
    key_file = secret_store.key_file_of(settings)
    old_copy = tmp_path / "old.key"
    shutil.copy(key_file, old_copy)
    before = FleetTask.get(FleetTask.task_id == task["task_id"]).secret_env
    db_flag = ["--db-url", settings.db_path] if "://" in settings.db_path else ["--db-path", settings.db_path]
    assert manager_main(["secrets", "rotate-key", *db_flag, "--secrets-key-file", str(key_file)]) == 0
    assert len(key_file.read_text().split()) == 1 and key_file.read_text() != old_copy.read_text()
    assert key_file.stat().st_mode & 0o777 == 0o600
    after = FleetTask.get(FleetTask.task_id == task["task_id"]).secret_env
    assert after != before and secret_store.decrypt_env(after) == {"DB_PASSWORD": SECRET}
    # The running app reads the rotated file; a database copy with only the old key file reads nothing new.
    assert detail(client, task["task_id"])["secretEnv"] == {"DB_PASSWORD": "(secret)"}
    secret_store.configure(old_copy)
    with pytest.raises(secret_store.SecretKeyError):
        secret_store.decrypt_env(after)
    secret_store.configure(key_file)
    assert AuditLog.get(AuditLog.action == "secrets.rotate_key").actor.startswith("cli:")


def test_rotate_key_covers_the_processors_of_tasks_and_schedules(
    client: FlaskClient, settings: Settings, node: None
) -> None:
    processor = {"url": "https://hooks.example/in", "secret": "processor-secret-4711"}
    task = create(client, command="true", processor=processor)
    body = {"name": "p", "command": "true", "targets": ["*"], "interval": 3600, "processor": processor}
    schedule = answer(client.post("/api/schedules", json=body), 201)
    key_file = secret_store.key_file_of(settings)
    db_flag = ["--db-url", settings.db_path] if "://" in settings.db_path else ["--db-path", settings.db_path]
    assert manager_main(["secrets", "rotate-key", *db_flag, "--secrets-key-file", str(key_file)]) == 0
    # Sealed again under the new key (the old one is gone from the file): both still open.
    for stored in (
        FleetTask.get(FleetTask.task_id == task["task_id"]).processor,
        Schedule.get_by_id(schedule["id"]).processor,
    ):
        assert secret_store.decrypt_env(stored) == processor
    assert detail(client, task["task_id"])["processor"]["url"] == "https://hooks.example"
