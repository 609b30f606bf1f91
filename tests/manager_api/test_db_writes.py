"""db.write_transaction on a real SQLite file: writers take turns (threads, then processes) before SQLite's
lock, a turn that never comes is a WriteTimeout, and db.is_busy knows a busy database from other errors."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from peewee import IntegrityError, OperationalError, SqliteDatabase

from manager_api import db
from manager_api.models import AuditLog

HOLDER = textwrap.dedent(
    """
    import sys, time
    from manager_api import db
    from manager_api.models import AuditLog
    db.init_db(sys.argv[1], create_tables=False)
    with db.write_transaction():
        AuditLog.create(actor="other process", action="hold", target="t")
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)
"""Another process of the manager: it holds a write transaction for argv[2] seconds."""


@pytest.fixture
def path(tmp_path: Path) -> Iterator[str]:
    name = str(tmp_path / "corral.db")
    db.init_db(name)
    yield name
    db.close()


@pytest.fixture
def holder(path: str) -> Iterator[subprocess.Popen[str]]:
    """A real second process holding a write transaction for 1.5 s (started, and holding, when yielded)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, "1.5"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "holding\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()


def audit_rows(action: str) -> int:
    count: int = AuditLog.select().where(AuditLog.action == action).count()
    return count


def test_threads_of_one_process_write_one_at_a_time_and_every_write_lands(path: str) -> None:
    inside = peak = 0
    counter = threading.Lock()
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        nonlocal inside, peak
        try:
            for n in range(25):
                with db.write_transaction():
                    with counter:
                        inside += 1
                        peak = max(peak, inside)
                    AuditLog.create(actor=f"thread {index}", action="write", target=str(n))
                    time.sleep(0.001)  # hold the turn a little, as a request's work does
                    with counter:
                        inside -= 1
        except BaseException as exc:  # noqa: B036 - shown by the assertion below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert peak == 1
    assert audit_rows("write") == 8 * 25


def test_a_write_waits_for_another_process_that_writes_then_lands(path: str, holder: subprocess.Popen[str]) -> None:
    # What takes no turn meets SQLite's write lock, taken up front by the other process's BEGIN IMMEDIATE.
    outsider = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        outsider.execute("BEGIN IMMEDIATE")
    outsider.close()

    started = time.monotonic()
    with db.write_transaction():
        AuditLog.create(actor="this process", action="after", target="t")
    waited = time.monotonic() - started
    assert holder.wait(10) == 0
    assert waited > 0.5, "the write did not wait for the other process's"
    assert (audit_rows("hold"), audit_rows("after")) == (1, 1)


def test_a_turn_that_never_comes_is_a_write_timeout_and_the_next_write_goes_through(
    path: str, holder: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "WRITE_TURN_SECONDS", 0.3)
    with pytest.raises(db.WriteTimeout) as caught:
        with db.write_transaction():
            AuditLog.create(actor="this process", action="too soon", target="t")
    assert db.is_busy(caught.value)
    assert holder.wait(10) == 0
    # Its turn was given back: the next write needs no other thread or process to end first.
    with db.write_transaction():
        AuditLog.create(actor="this process", action="after", target="t")
    assert (audit_rows("too soon"), audit_rows("after")) == (0, 1)


def test_a_write_transaction_inside_another_is_a_savepoint_of_the_same_turn(path: str) -> None:
    with db.write_transaction():
        AuditLog.create(actor="a", action="outer", target="t")
        with pytest.raises(ValueError):
            with db.write_transaction():
                AuditLog.create(actor="a", action="inner", target="t")
                raise ValueError("undo the inner one only")
        with db.write_transaction():
            AuditLog.create(actor="a", action="inner kept", target="t")
    assert (audit_rows("outer"), audit_rows("inner"), audit_rows("inner kept")) == (1, 0, 1)


def test_is_busy_tells_a_locked_database_from_other_errors(path: str) -> None:
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")
    impatient = SqliteDatabase(path, timeout=0)
    try:
        with pytest.raises(OperationalError) as locked:
            impatient.execute_sql("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError) as no_table:
            impatient.execute_sql("SELECT * FROM no_such_table")
    finally:
        impatient.close()
        holder.rollback()
        holder.close()
    assert db.is_busy(locked.value)
    assert not db.is_busy(no_table.value)
    assert not db.is_busy(IntegrityError("UNIQUE constraint failed"))
    assert not db.is_busy(ValueError("database is locked"))


def test_a_forked_child_does_not_inherit_a_turn_held_by_its_parent(path: str) -> None:
    with db.write_transaction():
        AuditLog.create(actor="parent", action="held over the fork", target="t")
        pid = os.fork()
        if pid == 0:  # the child: only look at its own turn, then leave without running any cleanup
            fresh = db._write_turn.acquire(blocking=False) and not db._lock_files
            os._exit(0 if fresh else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_database_still_busy_after_the_wait_is_a_503_with_retry_after_and_anything_else_a_500(app: Flask) -> None:
    """The last resort behind the writers' turns: never a 500 for a lock, never a 503 for a real fault."""
    faults = {"busy": OperationalError("database is locked"), "broken": OperationalError("no such table")}
    app.add_url_rule("/test/<kind>", "raise", lambda kind: (_ for _ in ()).throw(faults[kind]))
    client = app.test_client()
    busy = client.get("/test/busy")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    assert busy.get_json() == {"error": "Database busy, try again later"}
    broken = client.get("/test/broken")
    assert broken.status_code == 500 and broken.get_json() == {"error": "Internal server error"}
