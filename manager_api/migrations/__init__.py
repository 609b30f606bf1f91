"""The schema's versions: numbered files here (``0001_initial.py``, ...), applied in order by peewee's own runner.

peewee's ``playhouse.migrations`` keeps the names it applied in the ``schema_migrations`` table and runs each
file's ``up(migrator, db)`` once. Each file holds frozen copies of the models as they were when it was written,
so an old migration keeps meaning what it meant when the app models change. ``0001_initial`` also brings a
database made by a corral older than this history (no ``schema_migrations``, perhaps a node table without the
columns added later) to the same schema.

Several processes start at once (the launcher, each gunicorn worker through create_app, a second manager host on
the same PostgreSQL) and each upgrades: the runner reads what is applied and applies the rest inside one
transaction that holds a database-wide lock, so the second process waits, then finds nothing pending. So a
migration must be transactional: peewee's ``atomic = False`` (for CREATE INDEX CONCURRENTLY, say) cannot work here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from peewee import Database, SqliteDatabase
from playhouse.migrations import Migration, MigrationError, Runner

from manager_api.db import database, write_transaction

logger = logging.getLogger(__name__)

DIRECTORY = Path(__file__).parent
"""Where the migration files are (in the wheel too: they are modules of this package)."""

HISTORY_TABLE = "schema_migrations"
"""The runner's table of applied migration names."""


# The runner logs "up: NAME" as it starts a file, even one whose transaction then rolls back; upgrade() logs
# each once, after the commit that applied it.
logging.getLogger("peewee.migrations").setLevel(logging.WARNING)


def runner(db: Database) -> Runner:
    """peewee's runner over this package's files and ``schema_migrations`` of ``db``."""
    return Runner(db, str(DIRECTORY), HISTORY_TABLE)


def upgrade(db: Database) -> list[str]:
    """Apply the pending migrations to ``db`` (the database the proxy points at); the names applied, in order.

    Every process may call it at once: each waits for the others' upgrade to commit, then applies what is
    still pending, so a migration runs exactly once. SQLite: in write_transaction (the writers' turn across
    processes, then BEGIN IMMEDIATE), foreign keys off meanwhile. PostgreSQL: one write_transaction, whose
    advisory lock makes every other writer, upgrades included, wait for it. Each file runs in a savepoint of it.
    """
    if database.obj is not db:
        raise RuntimeError("upgrade() runs on the database the proxy points at (db.init_db's)")
    if isinstance(db, SqliteDatabase):
        applied = _upgrade_sqlite(db)
    else:
        with write_transaction():
            applied = runner(db).up()
    for name in applied:
        logger.info("database: migration %s applied", name)
    return applied


def _upgrade_sqlite(db: SqliteDatabase) -> list[str]:
    # SQLite changes most of a table (a NOT NULL, a type, a dropped constraint) by copying it to a new table and
    # dropping the old one. With foreign keys on, that DROP deletes the rows that reference it (ON DELETE
    # CASCADE) or nulls them (SET NULL), and the pragma can only be switched outside a transaction: here, before
    # it begins. Then nothing checks references, so the count of dangling ones is compared before the commit
    # (compared, not required to be 0: a database may hold some from before, and must still start).
    if db.is_closed():
        # A connection's first statement is PRAGMA journal_mode = wal (db.SQLITE_PRAGMAS). On a new file that
        # another process is writing, SQLite answers it "database is locked" at once, without waiting: opened by
        # a write transaction, the connection runs it in the writers' turn, while no other process writes.
        with write_transaction():
            pass
    enforced = bool(db.pragma("foreign_keys"))
    db.pragma("foreign_keys", 0)
    try:
        with write_transaction():
            run = runner(db)
            if all(migration.applied for migration in run.status() if migration.path is not None):
                return []
            dangling = _dangling_references(db)
            applied = run.up()
            if (now := _dangling_references(db)) > dangling:
                raise MigrationError(f"migrations {applied} left {now - dangling} rows referring to no row")
    finally:
        db.pragma("foreign_keys", int(enforced))
    return applied


def _dangling_references(db: SqliteDatabase) -> int:
    return len(db.execute_sql("PRAGMA foreign_key_check").fetchall())


def status(db: Database) -> list[Migration]:
    """Every migration in order: ``applied`` is the time it was applied, None while pending."""
    return list(runner(db).status())
