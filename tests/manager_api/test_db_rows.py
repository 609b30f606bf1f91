"""db.insert_rows and db.update_rows on the real database (SQLite; PostgreSQL in its pass): what the ORM would write."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask

from manager_api import db, prepared
from manager_api.models import FleetTask, Node, TaskHost, utcnow


def test_rows_are_written_with_their_defaults_over_several_statements(app: Flask) -> None:
    with app.app_context():
        db.connect()
        node = Node.create(id=uuid.uuid4().hex, hostname="web-1", ip="10.0.0.1")
        task = FleetTask.create(task_id=str(uuid.uuid4()), name="t", command="true", timeout=5)
        now = utcnow()
        count = db.INSERT_CHUNK + 3  # two statements
        rows = [
            {
                "task": task.id,
                "node": node.id if i == 0 else None,
                "target": f"web-{i}",
                "status": "pending",
                "updated_at": now,
            }
            for i in range(count)
        ]
        rows[1].update(status="dispatch_failed", error_message="offline", finished_at=now)
        with db.write_transaction():
            db.insert_rows(TaskHost, rows)
        hosts = list(TaskHost.select().where(TaskHost.task == task.id).order_by(TaskHost.id))
        assert [h.target for h in hosts] == [f"web-{i}" for i in range(count)]
        first, second = hosts[0], hosts[1]
        assert (first.node_id, first.status, first.stdout, first.stdout_truncated, first.exit_code) == (
            node.id,
            "pending",
            "",
            False,
            None,
        )
        assert first.updated_at == now and first.finished_at is None and first.hostname == ""
        assert (second.node_id, second.status, second.error_message, second.finished_at) == (
            None,
            "dispatch_failed",
            "offline",
            now,
        )


def test_update_rows_sets_each_rows_own_fields(app: Flask) -> None:
    with app.app_context():
        db.connect()
        task = FleetTask.create(task_id=str(uuid.uuid4()), name="t", command="true", timeout=5)
        with db.write_transaction():
            db.insert_rows(TaskHost, [{"task": task.id, "target": f"h-{i}"} for i in range(3)])
        first, second, third = [h.id for h in TaskHost.select().where(TaskHost.task == task.id).order_by(TaskHost.id)]
        now = utcnow()
        with db.write_transaction():
            db.update_rows(
                TaskHost,
                [
                    (first, {TaskHost.status: "succeeded", TaskHost.exit_code: 0, TaskHost.finished_at: now}),
                    (second, {TaskHost.status: "failed", TaskHost.exit_code: 2, TaskHost.finished_at: now}),
                    (third, {TaskHost.pid: 42, TaskHost.stdout_truncated: True}),
                ],
            )
        rows = {h.id: h for h in TaskHost.select().where(TaskHost.task == task.id)}
        assert (rows[first].status, rows[first].exit_code, rows[first].finished_at) == ("succeeded", 0, now)
        assert (rows[second].status, rows[second].exit_code) == ("failed", 2)
        assert (rows[third].status, rows[third].pid, rows[third].stdout_truncated) == ("pending", 42, True)


def test_insert_row_returns_the_new_key_and_writes_what_the_orm_would(app: Flask) -> None:
    with app.app_context():
        db.connect()
        now = utcnow()
        with db.write_transaction():
            first = db.insert_row(FleetTask, {"task_id": "a", "name": "t", "command": "true", "timeout": 5})
            second = db.insert_row(
                FleetTask,
                {"task_id": "b", "name": "u", "command": "true", "timeout": 5, "status": "running", "started_at": now},
            )
        assert second == first + 1
        made = FleetTask.create(task_id="c", name="t", command="true", timeout=5)
        mine = FleetTask.get_by_id(first)
        fields = [
            f.name for f in FleetTask._meta.sorted_fields if f.name not in ("id", "task_id", "created_at", "updated_at")
        ]
        assert {f: getattr(mine, f) for f in fields} == {f: getattr(made, f) for f in fields}
        assert FleetTask.get_by_id(second).started_at == now and FleetTask.get_by_id(second).status == "running"


def test_prepared_statements_read_what_the_orm_reads_and_refuse_values_out_of_order(app: Flask) -> None:
    with app.app_context():
        db.connect()
        node = Node.create(id=uuid.uuid4().hex, hostname="web-1", ip="10.0.0.1")
        task = FleetTask.create(task_id=str(uuid.uuid4()), name="t", command="true", timeout=5, started_at=utcnow())
        with db.write_transaction():
            db.insert_rows(TaskHost, [{"task": task.id, "node": node.id, "target": "web-1", "stdout_truncated": True}])

        def hosts() -> Any:
            return TaskHost.select().where(TaskHost.task == task.id).order_by(TaskHost.id)

        for _ in range(2):  # built, then from its text
            (host,) = prepared.models(TaskHost, "test hosts", [task.id], hosts)
            (orm,) = hosts()
            assert host.__data__ == orm.__data__ and not host._dirty
            assert host.node_id == node.id and host.stdout_truncated is True
            (mine,) = prepared.models(
                FleetTask,
                "test task",
                [task.task_id],
                lambda: FleetTask.select().where(FleetTask.task_id == task.task_id),
            )
            assert mine.__data__ == FleetTask.get_by_id(task.id).__data__
        assert prepared.rows("test hosts", [task.id + 1], hosts) == []
        with pytest.raises(ValueError, match="binds"):
            prepared.rows(
                "test two values",
                [task.id, "web-1"],
                lambda: TaskHost.select().where(TaskHost.target == "web-1", TaskHost.task == task.id),
            )
        with pytest.raises(ValueError, match="every field"):
            prepared.models(
                TaskHost,
                "test some fields",
                [task.id],
                lambda: TaskHost.select(TaskHost.id).where(TaskHost.task == task.id),
            )
