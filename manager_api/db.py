"""The database handle: one Peewee proxy, SQLite with WAL by default, PostgreSQL for a ``postgresql://`` URL."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from peewee import AutoField, Database, DatabaseProxy, Model, OperationalError, SqliteDatabase

logger = logging.getLogger(__name__)

database = DatabaseProxy()
"""Models bind to this proxy; init_db() points it at the real database."""

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite statement waits for a lock before "database is locked" (the busy_timeout).

Writers of this manager take turns before they ask SQLite (write_transaction), so this bounds only the others:
a `sqlite3` shell writing to the file, a write outside write_transaction. 5 s was exceeded under load."""

WRITE_TURN_SECONDS = 30.0
"""How long a write transaction waits for its turn to write before it gives up (WriteTimeout, a 503)."""

SLOW_TURN_SECONDS = 5.0
"""A write that waited longer than this for its turn is logged: the sign of a database near its limit."""

TURN_FIRST_NAP = 0.0002
TURN_LONGEST_NAP = 0.001
"""Naps between two tries at the writer lock file, doubling from the first to the longest. Capped this short
so that a writer who has waited long tries as often as one who just came (SQLite's own busy handler naps up
to 100 ms, and such a writer kept losing the lock to newcomers: waits over 5 s)."""

WRITER_LOCK_SUFFIX = "-writer.lock"
"""Beside the database file: the empty file whose flock says which process writes (its content is nothing)."""

RETRY_AFTER_SECONDS = 5
"""What a 503 for a busy database asks the client to wait (Retry-After)."""

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": int(BUSY_TIMEOUT_SECONDS * 1000),
    "foreign_keys": 1,
    "synchronous": "normal",
}
"""WAL lets readers run beside the one writer; busy_timeout makes writers queue instead of failing."""

BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")
"""SQLite's words for a lock it could not get in time (and WriteTimeout's)."""

BUSY_PGCODES = frozenset({"55P03", "40001", "40P01"})
"""PostgreSQL's: lock_not_available, serialization_failure, deadlock_detected (each worth a retry)."""


class WriteTimeout(OperationalError):
    """No turn to write came within WRITE_TURN_SECONDS: the database is overloaded, not the request wrong."""


POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes of a PostgreSQL database (``--db-url postgresql://user@host/db``)."""

PG_POOL_CONNECTIONS = 32
"""Most connections one process keeps to PostgreSQL: a gunicorn worker's threads plus a few (the duties)."""

PG_POOL_WAIT_SECONDS = 10
"""How long a thread waits for a pooled connection when all are taken (then an error, not a hang)."""

PG_STALE_SECONDS = 300
"""A pooled connection idle this long is closed instead of reused (a server may drop it meanwhile)."""

PG_WRITE_LOCK = 0x636F7272616C
"""The advisory lock key every write transaction takes on PostgreSQL ("corral" in ASCII)."""


def is_url(path_or_url: str) -> bool:
    """Whether the manager's database is given as a URL rather than a SQLite file path."""
    return "://" in path_or_url


def is_postgres(path_or_url: str) -> bool:
    return path_or_url.split("://", 1)[0].lower() in POSTGRES_SCHEMES and is_url(path_or_url)


def make_database(path_or_url: str) -> Database:
    """A SQLite database for a file path; PostgreSQL (pooled) for a postgresql:// URL."""
    if is_postgres(path_or_url):
        from playhouse.db_url import parse
        from playhouse.pool import PooledPostgresqlDatabase

        # A pool per process: a new PostgreSQL connection forks a server process (several ms), and the API
        # closes its connection after every request. TCP keepalives let a manager notice a server gone away.
        params = parse(path_or_url, unquote_password=True, unquote_user=True)
        params.setdefault("keepalives_idle", 30)
        return PooledPostgresqlDatabase(
            max_connections=PG_POOL_CONNECTIONS, stale_timeout=PG_STALE_SECONDS, timeout=PG_POOL_WAIT_SECONDS, **params
        )
    if is_url(path_or_url):
        raise ValueError(f"unsupported database URL scheme: {path_or_url.split('://', 1)[0]} (use postgresql://)")
    # Every thread (gunicorn gthread, the duties) gets its own connection: peewee's thread_safe default.
    return SqliteDatabase(path_or_url, pragmas=SQLITE_PRAGMAS, timeout=BUSY_TIMEOUT_SECONDS)


def init_db(path_or_url: str, create_tables: bool = True) -> Database:
    """Point the proxy at ``path_or_url`` and bring its schema up to date (manager_api.migrations)."""
    db = make_database(path_or_url)
    database.initialize(db)
    if create_tables:
        from manager_api import migrations
        from manager_api.services.nodes import revision

        # Not opened here: upgrade() opens the connection in a write turn (see there), then it is closed.
        try:
            migrations.upgrade(db)
            revision.install(db)
        finally:
            database.close()
    logger.debug("database %s ready", path_or_url)
    return db


_write_turn = threading.Lock()
"""One write transaction at a time in this process (SQLite only): the other threads wait here, not in SQLite."""

_lock_files: dict[str, int] = {}
"""Database path -> this process's open writer lock file (opened on the first write, kept open)."""


def _lock_file(path: str) -> int | None:
    """The writer lock file of the SQLite database ``path``; None in memory or where it cannot be made."""
    if path in ("", ":memory:") or path.startswith("file:"):
        return None
    fd = _lock_files.get(path)
    if fd is None:
        try:
            fd = os.open(path + WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            # Writes stay correct without it (SQLite's own lock), only less fair under load.
            logger.warning("database: no writer lock file beside %s (%s); writers queue in SQLite", path, exc)
            return None
        _lock_files[path] = fd
    return fd


def _take_file_turn(fd: int, deadline: float) -> bool:
    """Hold the flock of ``fd``, trying at short capped naps until ``deadline``; False if it never came."""
    nap = TURN_FIRST_NAP
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(nap)
        nap = min(nap * 2, TURN_LONGEST_NAP)


def _forget_turns() -> None:
    # A forked child must not share its parent's turn: the lock may be held by a thread that is not there,
    # and a flock taken through an inherited descriptor would be the parent's own.
    global _write_turn
    _write_turn = threading.Lock()
    for fd in _lock_files.values():
        os.close(fd)  # the parent's flock stays: it still holds the same open file
    _lock_files.clear()


os.register_at_fork(after_in_child=_forget_turns)


@contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction for read-modify-write: it holds the write lock from its first statement to its end.

    SQLite: BEGIN IMMEDIATE takes the database's write lock up front. A plain BEGIN would start as a reader
    and fail with "database is locked" when it later tries to write while another connection writes;
    IMMEDIATE waits for the lock instead. Before that, writers take turns, so that they never queue in
    SQLite's busy handler: it retries with growing naps (up to 100 ms), and with 8 threads in each of 4
    gunicorn workers plus the duties polling the lock, a writer that had waited a while kept losing it to
    newcomers, past busy_timeout (issue 10: "database is locked" as a 500, p99 4 s). First the threads of
    this process (a thread lock, which wakes the next one as the writer ends), then the processes (a flock
    on the writer lock file, tried at naps of 1 ms at most), all within WRITE_TURN_SECONDS. Inside a write
    transaction of the same thread this is a savepoint: the thread has the turn already.

    PostgreSQL: one transaction-level advisory lock taken first, so that write transactions still run one at a
    time, across processes and manager hosts. The services were written for SQLite's single writer (a
    read-modify-write sees no other writer between its read and its write); under PostgreSQL's READ COMMITTED
    without this lock two of them could interleave and lose an update. Reads never wait for it.
    """
    if database.transaction_depth() > 0:
        with database.atomic():
            yield
        return
    if not isinstance(database.obj, SqliteDatabase):
        with database.atomic():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PG_WRITE_LOCK,))
            yield
        return
    started = time.monotonic()
    deadline = started + WRITE_TURN_SECONDS
    if not _write_turn.acquire(timeout=WRITE_TURN_SECONDS):
        raise WriteTimeout(f"database is busy: no turn to write within {WRITE_TURN_SECONDS:.0f} s")
    fd: int | None = None
    try:
        fd = _lock_file(str(database.obj.database))
        if fd is not None and not _take_file_turn(fd, deadline):
            fd = None
            raise WriteTimeout(f"database is busy: no turn to write within {WRITE_TURN_SECONDS:.0f} s")
        waited = time.monotonic() - started
        if waited > SLOW_TURN_SECONDS:
            logger.warning("database: a write waited %.1f s for its turn", waited)
        with database.atomic("IMMEDIATE"):
            yield
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        _write_turn.release()


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says the database was too busy (a lock not had in time), so the same call may succeed later."""
    if isinstance(exc, WriteTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    if getattr(orig, "pgcode", None) in BUSY_PGCODES:
        return True
    text = str(exc).lower()
    return any(message in text for message in BUSY_MESSAGES)


def connect() -> None:
    """Open this thread's connection unless it is open already."""
    database.connect(reuse_if_open=True)


def close() -> None:
    """Close this thread's connection if it is open."""
    if database.obj is not None and not database.is_closed():
        database.close()


def release() -> None:
    """The end of a request: a PostgreSQL connection goes back to its pool; a SQLite one stays open for the thread's
    next request, since opening one and setting its pragmas cost more than a short request's queries (about
    0.5-1 ms a request here). Kept open between requests it holds no lock: WAL readers and writers take theirs
    per transaction."""
    if database.obj is None or database.is_closed():
        return
    if isinstance(database.obj, SqliteDatabase) and database.transaction_depth() == 0:
        return
    database.close()


INSERT_CHUNK = 500
"""Rows per INSERT statement of insert_rows: with every column bound, well under SQLite's variable limit."""


def insert_rows(model: type[Model], rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows`` of ``model`` (by field name; a field left out takes its default), INSERT_CHUNK rows per
    statement, inside the caller's transaction.

    The ORM's insert_many builds each statement value by value in Python: the 1,000 host rows of a fleet task
    took 150-230 ms to write that way, 16-35 ms as one statement text per chunk and its parameters.
    """
    fields, head, one_row = _insert_parts(model)
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        params = [
            field.db_value(row[field.name] if field.name in row else _default(field))
            for row in chunk
            for field in fields
        ]
        database.execute_sql(head + ", ".join([one_row] * len(chunk)), params)


def insert_row(model: type[Model], row: Mapping[str, Any]) -> int:
    """INSERT one ``row`` of ``model`` as insert_rows does (not through the ORM's statement building, a third of a
    millisecond a row), inside the caller's transaction; returns its new primary key."""
    fields, head, one_row = _insert_parts(model)
    params = [field.db_value(row[field.name] if field.name in row else _default(field)) for field in fields]
    if isinstance(database.obj, SqliteDatabase):
        return int(database.execute_sql(head + one_row, params).lastrowid)
    key = model._meta.primary_key.column_name  # type: ignore[attr-defined]
    return int(database.execute_sql(f'{head}{one_row} RETURNING "{key}"', params).fetchone()[0])


def _insert_parts(model: type[Model]) -> tuple[list[Any], str, str]:
    """The fields an INSERT of ``model`` writes (all but its auto key), the statement up to VALUES, one row's
    placeholders."""
    meta = model._meta  # type: ignore[attr-defined]
    fields = [field for field in meta.sorted_fields if not isinstance(field, AutoField)]
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    one_row = "(" + ", ".join([database.param] * len(fields)) + ")"
    return fields, f'INSERT INTO "{meta.table_name}" ({columns}) VALUES ', one_row


def update_rows(model: type[Model], updates: Sequence[tuple[Any, Mapping[Any, Any]]]) -> None:
    """UPDATE each (primary key, {field: value}) of ``model``, inside the caller's transaction: the rows that
    change the same fields through one statement run for all of them (executemany), not one built by the ORM
    per row (the duties' 1,000 final reports of a fleet task)."""
    meta = model._meta  # type: ignore[attr-defined]
    by_fields: dict[tuple[Any, ...], list[tuple[Any, Mapping[Any, Any]]]] = {}
    for key, changes in updates:
        by_fields.setdefault(tuple(sorted(changes, key=lambda field: field.name)), []).append((key, changes))
    param = database.param
    for fields, rows in by_fields.items():
        assignments = ", ".join(f'"{field.column_name}" = {param}' for field in fields)
        sql = f'UPDATE "{meta.table_name}" SET {assignments} WHERE "{meta.primary_key.column_name}" = {param}'
        database.cursor().executemany(sql, [[*(f.db_value(changes[f]) for f in fields), key] for key, changes in rows])


def _default(field: Any) -> Any:
    return field.default() if callable(field.default) else field.default
