"""``manager secrets rotate-key``: a new secrets key, every stored secret re-encrypted with it, the old keys
dropped (services.secret_rotation). Run it on one host, then copy the key file to the other manager hosts."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from manager_api.config import Settings
from manager_api.launcher import migrate
from manager_api.launcher.arguments import chosen_database
from manager_api.services import secret_rotation, secret_store
from shared import defaults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="manager secrets", description="Manage the secrets key of secret env.")
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser("rotate-key", help="new key, every secret re-encrypted, old keys dropped")
    rotate.add_argument("--db-path", help=f"the manager's database file (else --config's, else {defaults.DB_PATH})")
    rotate.add_argument("--db-url", help="the manager's PostgreSQL database (postgresql://...)")
    rotate.add_argument("--config", metavar="FILE", help="the manager's config file: its db-url, else db-path")
    rotate.add_argument(
        "--secrets-key-file", help="the key file (else secrets.key beside --db-path's database, as the manager)"
    )
    return parser


def main(argv: list[str], manager_parser: argparse.ArgumentParser) -> int:
    """``manager secrets rotate-key [...]``; the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    database = chosen_database(args, manager_parser, parser)
    key_file = (
        Path(args.secrets_key_file)
        if args.secrets_key_file
        else secret_store.key_file_of(Settings(db_path=args.db_path or defaults.DB_PATH))
    )
    if not key_file.is_file():
        print(f"manager secrets: error: no key file at {key_file}", file=sys.stderr)
        return 1
    try:
        opened = migrate._open(database)
    except migrate.MigrateError as exc:
        print(f"manager secrets: error: {exc}", file=sys.stderr)
        return 1
    try:
        count = secret_rotation.rotate(key_file, f"cli:{getpass.getuser()}")
    except secret_store.SecretKeyError as exc:
        print(f"manager secrets: error: {exc}", file=sys.stderr)
        return 1
    finally:
        opened.close()
    print(f"secrets key rotated in {key_file}: {count} stored secrets re-encrypted")
    return 0
