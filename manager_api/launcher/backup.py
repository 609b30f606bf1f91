"""``manager backup FILE``: a consistent copy of the SQLite database, taken while the manager serves writes.

SQLite's online backup API (``sqlite3.Connection.backup``) copies every page in one step, inside one read
transaction: in WAL mode that transaction sees one committed state, the last one before it began, and the
manager's writers go on beside it (a WAL reader blocks no writer). Copying the file with ``cp`` instead can
mix pages of two states, and leaves out what still sits in ``-wal``.

The copy is written beside FILE under a temporary name, 0600 from its first byte (it holds the master key
that signs every node's jobs), checked with ``PRAGMA integrity_check``, made a single file (journal mode
DELETE: no ``-wal`` to carry along), synced, and only then renamed to FILE: FILE is a good backup or untouched.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from shared import cli_config, defaults
from shared.file_modes import PRIVATE_FILE

from .arguments import configured_database
from .file_modes import DB_COMPANIONS

BUSY_TIMEOUT_MS = 30_000
"""How long the backup waits for SQLite's locks (in WAL mode a reader waits only out a checkpoint's reset)."""


class BackupError(Exception):
    """A backup that could not be made; nothing was written at FILE."""


@dataclass(frozen=True)
class BackupResult:
    """What one backup copied."""

    target: Path
    pages: int
    size: int
    seconds: float


def _sqlite_file(db_path: str) -> Path:
    """``--db-path`` as an existing SQLite file; raises BackupError otherwise."""
    if "://" in db_path:
        shown = cli_config.hide_url_password(db_path)
        raise BackupError(f"{shown} is a database URL: back up such a database with its own tools (pg_dump)")
    path = Path(db_path).resolve()
    if not path.is_file():
        raise BackupError(f"no database at {path} (give the manager's --db-path)")
    return path


def backup(db_path: str, target: Path) -> BackupResult:
    """Copy the database at ``db_path`` to ``target`` consistently, even under writes; raises BackupError."""
    source_path = _sqlite_file(db_path)
    target = target.absolute()
    if target.resolve() in {source_path, *(Path(f"{source_path}{suffix}") for suffix in DB_COMPANIONS)}:
        raise BackupError(f"{target} is the database itself: back up to another file")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent} for the backup")
    started = time.monotonic()
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        # 0600 before SQLite writes a page: SQLite would make it 0644, readable by anyone while it fills.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        # mode=rw: a mistyped path must fail, not create an empty database that then "backs up" fine.
        with (
            closing(sqlite3.connect(f"{source_path.as_uri()}?mode=rw", uri=True)) as source,
            closing(sqlite3.connect(temporary)) as copy,
        ):
            source.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            source.backup(copy)  # pages=-1: every page in one step, so one snapshot (no restart under writes)
            copy.execute("PRAGMA journal_mode = DELETE")
            verdict = [row[0] for row in copy.execute("PRAGMA integrity_check")]
            if verdict != ["ok"]:
                raise BackupError(f"the copy failed its integrity check: {'; '.join(verdict[:5])}")
            pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source_path}: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc}") from None
    finally:
        for leftover in (temporary, *(Path(f"{temporary}{suffix}") for suffix in DB_COMPANIONS)):
            leftover.unlink(missing_ok=True)
    return BackupResult(target, pages, target.stat().st_size, time.monotonic() - started)


def build_parser() -> argparse.ArgumentParser:
    """``manager backup``'s flags; --config reads the manager's own file (its db-path)."""
    parser = argparse.ArgumentParser(
        prog="manager backup",
        description="Copy the manager's SQLite database to FILE, consistently, while the manager runs.",
    )
    parser.add_argument("file", metavar="FILE", type=Path, help="where to write the copy (replaced if it exists)")
    parser.add_argument("--db-path", help=f"the manager's database (else --config's db-path, else {defaults.DB_PATH})")
    parser.add_argument("--config", metavar="FILE", help="the manager's config file: its db-path is used")
    return parser


def main(argv: list[str], manager_parser: argparse.ArgumentParser) -> int:
    """``manager backup FILE [--db-path PATH | --config config.yaml]``; the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    db_path = args.db_path
    if db_path is None and args.config is not None:
        # A manager on PostgreSQL (db-url) keeps nothing in the SQLite file: its URL is refused, not an empty copy made.
        db_path = configured_database(manager_parser, parser, args.config)
    db_path = db_path or defaults.DB_PATH
    try:
        result = backup(db_path, args.file)
    except BackupError as exc:
        print(f"manager backup: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"backed up {Path(db_path).resolve()} to {result.target}: {result.pages} pages, {result.size} bytes, "
        f"integrity ok, {result.seconds:.2f} s"
    )
    return 0
