"""The node revision: a number that changes whenever what a node's document is made of changes, in any process.

A node query over 10,000 nodes spent most of its time reading and rebuilding the same 10,000 node rows, which
change only when a node joins or is forgotten or its labels or tags are set. Database triggers on the node
table bump the one row of node_revision in the same transaction as the change, whoever makes it (an API
worker, the duties, another manager host, a `sqlite3` shell), so a reader that saw revision N and reads N again
knows its rows are current: nothing has to remember to bump it. The duties' status and last_seen writes (up to
one per node a minute) leave it alone: the heartbeat in Redis, not the row, says how a node is now.

SQLite and PostgreSQL have the triggers (PostgreSQL's fire once per statement, through one plpgsql function);
on another engine ``current`` answers None and readers read every time.
"""

from __future__ import annotations

from peewee import Database, PostgresqlDatabase, SqliteDatabase

from manager_api.db import database, write_transaction
from manager_api.models import Node, NodeRevision

QUIET_COLUMNS = frozenset({"status", "last_seen"})
"""Columns of the node table whose writes leave the revision alone (the duties' liveness bookkeeping)."""

TRIGGER_PREFIX = "node_revision_"

_BUMP = f"UPDATE {NodeRevision._meta.table_name} SET value = value + 1 WHERE id = 1"


_PG_FUNCTION = f"{TRIGGER_PREFIX}bump"


def _watched() -> str:
    return ", ".join(
        f'"{field.column_name}"' for field in Node._meta.sorted_fields if field.column_name not in QUIET_COLUMNS
    )


def _trigger_sql() -> dict[str, str]:
    table = Node._meta.table_name
    watched = _watched()
    return {
        f"{TRIGGER_PREFIX}insert": f"AFTER INSERT ON {table}",
        f"{TRIGGER_PREFIX}delete": f"AFTER DELETE ON {table}",
        # Fires for an upsert's DO UPDATE too (a node joining again).
        f"{TRIGGER_PREFIX}update": f"AFTER UPDATE OF {watched} ON {table}",
    }


def install(db: Database) -> None:
    """Create the revision row and (SQLite) the triggers that bump it, replacing those of an older version
    (a column added to the node table is watched from the next start). In one write transaction: every
    gunicorn worker installs them as it starts, and a plain transaction racing another's write would fail
    with "database is locked" instead of waiting its turn."""
    with write_transaction():
        NodeRevision.insert(id=1, value=0).on_conflict_ignore().execute()
        if isinstance(db, SqliteDatabase):
            for name, when in _trigger_sql().items():
                db.execute_sql(f"DROP TRIGGER IF EXISTS {name}")
                db.execute_sql(f"CREATE TRIGGER {name} {when} BEGIN {_BUMP}; END")
        elif isinstance(db, PostgresqlDatabase):
            _install_postgres(db)


def _install_postgres(db: Database) -> None:
    """The same triggers in PostgreSQL: statement-level (one bump per statement, however many rows it touched)."""
    table = Node._meta.table_name
    db.execute_sql(
        f"CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
    )
    for name, when in _trigger_sql().items():
        db.execute_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        db.execute_sql(f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()")


def current() -> int | None:
    """The node revision now; None where no trigger keeps it (then every read must read the rows)."""
    if not isinstance(database.obj, (SqliteDatabase, PostgresqlDatabase)):
        return None
    row = database.execute_sql(f"SELECT value FROM {NodeRevision._meta.table_name} WHERE id = 1").fetchone()
    return int(row[0]) if row is not None else None
