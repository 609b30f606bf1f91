"""The node revision (services/nodes/revision.py): moved by database triggers by every change of what a node's
document is made of, whoever writes it, and by none of the duties' liveness writes; the node list and queries
keep their rows while it stands still and never show a stale node because of it."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api import db
from manager_api.config import Settings
from manager_api.models import Node, utcnow
from manager_api.services.nodes import inventory, revision
from shared.states import NodeStatus

from .conftest import answer, beat, forget_migration_history, join

ROOT = Path(__file__).resolve().parents[2]


def _hosts(client: FlaskClient, query: str) -> list[str]:
    return [node["hostname"] for node in answer(client.get("/api/nodes", query_string={"q": query}))["nodes"]]


def test_every_change_of_a_document_moves_it_and_liveness_writes_do_not(client: FlaskClient) -> None:
    start = revision.current()
    assert start is not None
    join(client, "n1", "h1", "10.0.0.1")
    joined = revision.current()
    assert joined is not None and joined > start
    join(client, "n1", "h1", "10.0.0.1", facts={"cpu_count": 16})  # a rejoin: the upsert's update
    rejoined = revision.current()
    assert rejoined is not None and rejoined > joined
    answer(client.put("/api/nodes/n1/labels", json={"labels": {"zone": "b"}}))
    labelled = revision.current()
    assert labelled is not None and labelled > rejoined
    answer(client.put("/api/nodes/n1/tags", json={"tags": ["web"]}))
    tagged = revision.current()
    assert tagged is not None and tagged > labelled
    # The duties' writes: status flips and last_seen, up to once a minute per node.
    with db.write_transaction():
        Node.update(status=int(NodeStatus.ONLINE), last_seen=utcnow()).where(Node.id == "n1").execute()
    assert revision.current() == tagged
    assert client.delete("/api/nodes/n1").status_code == 200
    forgotten = revision.current()
    assert forgotten is not None and forgotten > tagged
    assert answer(client.get("/api/nodes"))["nodes"] == []


def test_a_change_by_another_process_is_seen_by_the_next_query(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings
) -> None:
    """Another gunicorn worker, the duties or another manager host share only the database."""
    join(client, "n1", "h1", "10.0.0.1")
    join(client, "n2", "h2", "10.0.0.2")
    beat(redis_client, "n1")
    beat(redis_client, "n2")
    assert _hosts(client, "tags:gold") == []
    kept = inventory.current_rows()
    assert inventory.current_rows() is kept  # nothing changed: the rows are not read again
    other_worker = (
        "import sys; from manager_api import db; from manager_api.services.nodes import inventory; "
        "db.init_db(sys.argv[1]); inventory.set_api_tags('n2', ['gold'], 'other'); db.close()"
    )
    subprocess.run([sys.executable, "-c", other_worker, settings.db_path], cwd=ROOT, check=True, timeout=60)
    assert _hosts(client, "tags:gold") == ["h2"]
    assert inventory.current_rows() is not kept
    # And a plain SQL write, as an operator's sqlite3 shell would make it.
    with db.write_transaction():
        db.database.execute_sql("UPDATE node SET hostname = 'h2-renamed' WHERE id = 'n2'")
    assert _hosts(client, "tags:gold") == ["h2-renamed"]


def test_a_node_without_heartbeat_shows_the_last_seen_written_after_its_row_was_kept(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    join(client, "n1", "h1", "10.0.0.1")  # never heartbeats: its document shows the row's last_seen
    answer(client.get("/api/nodes", query_string={"q": "hostname:h1"}))
    seen = datetime(2026, 12, 1, 8, 30, 0)
    with db.write_transaction():
        Node.update(last_seen=seen).where(Node.id == "n1").execute()
    for query in ({"q": "hostname:h1"}, {"q": "status:offline"}, {}):
        (node,) = answer(client.get("/api/nodes", query_string=query))["nodes"]
        assert node["last_heartbeat"].startswith("2026-12-01T08:30:00"), (query, node["last_heartbeat"])
    with db.write_transaction():
        Node.update(last_seen=seen + timedelta(minutes=1)).where(Node.id == "n1").execute()
    (node,) = answer(client.get("/api/nodes", query_string={"q": "hostname:h1"}))["nodes"]
    assert node["last_heartbeat"].startswith("2026-12-01T08:31:00")


def test_an_older_database_gains_the_revision_and_its_triggers(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    db.init_db(path)
    try:
        for name in ("insert", "update", "delete"):
            db.database.execute_sql(f"DROP TRIGGER node_revision_{name}")
        db.database.execute_sql("DROP TABLE node_revision")
        forget_migration_history()  # made before the migration history
        db.close()
        db.init_db(path)
        before = revision.current()
        assert before == 0
        db.database.execute_sql(
            "INSERT INTO node (id, hostname, ip, facts, labels, api_labels, interval, version, status, "
            "registered_at) VALUES ('n1', 'h', '1.2.3.4', '{}', '{}', '{}', 5, '', 1, '2026-01-01 00:00:00')"
        )
        assert revision.current() == 1
    finally:
        db.close()
