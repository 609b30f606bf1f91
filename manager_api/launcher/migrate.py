"""``manager migrate [--status]``: apply the database's pending schema migrations, or say which are applied.

The manager applies them itself at every start (db.init_db); this does it without starting one (before starting
the new version on several hosts of one PostgreSQL, say) and shows where a database stands. It refuses a SQLite
path where there is no file: a mistyped path must not become a new empty database that "migrated" fine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peewee import Database, PeeweeException
from playhouse.migrations import MigrationError

from manager_api import db as db_module
from manager_api import migrations
from manager_api.launcher.arguments import chosen_database
from shared import cli_config, defaults


class MigrateError(Exception):
    """The database could not be opened or migrated; the message is one line."""


def build_parser() -> argparse.ArgumentParser:
    """``manager migrate``'s flags; --config reads the manager's own file (its db-path)."""
    parser = argparse.ArgumentParser(
        prog="manager migrate",
        description="Apply the pending schema migrations to the manager's database (the manager does at start).",
    )
    parser.add_argument("--status", action="store_true", help="only list each migration as applied or pending")
    parser.add_argument(
        "--db-path", help=f"the manager's database, a file or a URL (else --config's db-path, else {defaults.DB_PATH})"
    )
    parser.add_argument("--db-url", help="the manager's PostgreSQL database (postgresql://...), as `manager --db-url`")
    parser.add_argument("--config", metavar="FILE", help="the manager's config file: its db-url, else db-path")
    return parser


def _shown(path_or_url: str) -> str:
    """The database as it may be printed: a URL without its password."""
    if db_module.is_url(path_or_url):
        return cli_config.hide_url_password(path_or_url)
    return str(Path(path_or_url).resolve())


def _one_line(exc: BaseException) -> str:
    # psycopg2's messages run over several lines (the server's address, "Is the server running...").
    return " ".join(str(exc).split()) or type(exc).__name__


def _open(path_or_url: str) -> Database:
    """The database connected, and the models' proxy pointed at it (the upgrade writes through it)."""
    if not db_module.is_url(path_or_url):
        path = Path(path_or_url).resolve()
        if not path.is_file():
            raise MigrateError(f"no database at {path} (give the manager's --db-path)")
        path_or_url = str(path)
    try:
        database = db_module.make_database(path_or_url)
        db_module.database.initialize(database)
        database.connect()
        database.get_tables()  # SQLite reads nothing until asked: a file that is no database fails here
    except (PeeweeException, ValueError, RuntimeError) as exc:
        raise MigrateError(f"cannot open {_shown(path_or_url)}: {_one_line(exc)}") from None
    return database


def _print_status(database: Database, shown: str) -> None:
    try:
        rows = migrations.status(database)
    except PeeweeException as exc:
        raise MigrateError(f"cannot read the migrations of {shown}: {_one_line(exc)}") from None
    for migration in rows:
        if migration.applied is None:
            print(f"pending  {migration.name}")
        elif migration.path is None:
            print(f"applied  {migration.name}  {migration.applied:%Y-%m-%d %H:%M:%S}  (no such file: a newer corral's)")
        else:
            print(f"applied  {migration.name}  {migration.applied:%Y-%m-%d %H:%M:%S}")


def _apply(database: Database, shown: str) -> None:
    try:
        applied = migrations.upgrade(database)
    except (PeeweeException, MigrationError) as exc:
        raise MigrateError(f"cannot migrate {shown}: {_one_line(exc)}") from None
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print(f"{shown}: up to date, nothing to apply")


def main(argv: list[str], manager_parser: argparse.ArgumentParser) -> int:
    """``manager migrate [--status] [--db-url URL | --db-path PATH | --config config.yaml]``; the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    db_path = chosen_database(args, manager_parser, parser)
    try:
        database = _open(db_path)
        try:
            if args.status:
                _print_status(database, _shown(db_path))
            else:
                _apply(database, _shown(db_path))
        finally:
            database.close()
    except MigrateError as exc:
        print(f"manager migrate: error: {exc}", file=sys.stderr)
        return 1
    return 0
