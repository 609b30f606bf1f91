"""The database handle: one Peewee proxy, SQLite with WAL by default, a URL could select another engine."""

from __future__ import annotations

import logging
from typing import Any

from peewee import Database, DatabaseProxy, SqliteDatabase

logger = logging.getLogger(__name__)

database = DatabaseProxy()
"""Models bind to this proxy; init_db() points it at the real database."""

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 5000,
    "foreign_keys": 1,
    "synchronous": "normal",
}
"""WAL lets readers run beside the one writer; busy_timeout makes writers queue instead of failing."""


def make_database(path_or_url: str) -> Database:
    """A SQLite database for a file path, or any engine playhouse.db_url knows for a URL."""
    if "://" in path_or_url:
        from playhouse.db_url import connect

        return connect(path_or_url)
    # Every thread (gunicorn gthread, the duties) gets its own connection: peewee's thread_safe default.
    return SqliteDatabase(path_or_url, pragmas=SQLITE_PRAGMAS, timeout=5)


def init_db(path_or_url: str, create_tables: bool = True) -> Database:
    """Point the proxy at ``path_or_url`` and create missing tables (safe when they exist)."""
    from . import models

    db = make_database(path_or_url)
    database.initialize(db)
    if create_tables:
        with database.connection_context():
            database.create_tables(models.ALL_MODELS, safe=True)
            add_missing_columns(db, models.ADDED_COLUMNS)
    logger.debug("database %s ready", path_or_url)
    return db


def add_missing_columns(db: Database, added: Any) -> None:
    """Add columns that newer versions put on existing tables (a database made before them lacks them)."""
    from playhouse.migrate import SchemaMigrator, migrate

    for field in added:
        table = field.model._meta.table_name
        present = {column.name for column in db.get_columns(table)}
        if field.column_name in present:
            continue
        migrate(SchemaMigrator.from_database(db).add_column(table, field.column_name, field))
        logger.info("database: column %s.%s added", table, field.column_name)


def write_transaction() -> Any:
    """A transaction for read-modify-write: SQLite takes the write lock up front (BEGIN IMMEDIATE).

    A plain BEGIN would start as a reader and fail with "database is locked" when it later tries to
    write while another connection writes; IMMEDIATE waits for the lock (busy_timeout) instead.
    """
    if isinstance(database.obj, SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return database.atomic()


def connect() -> None:
    """Open this thread's connection unless it is open already."""
    database.connect(reuse_if_open=True)


def close() -> None:
    """Close this thread's connection if it is open."""
    if database.obj is not None and not database.is_closed():
        database.close()
