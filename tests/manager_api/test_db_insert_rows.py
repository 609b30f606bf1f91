"""db.insert_rows on the real database (SQLite, and PostgreSQL in its pass): the same rows as the ORM writes."""

from __future__ import annotations

import uuid

from flask import Flask

from manager_api import db
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
