"""The manager's secret files made owner-only at every start, before the database is opened.

The database holds the master key that signs every node's jobs, each node's secret digest and fleet tasks'
environment; the join token admits nodes; ``corral-redis/`` holds the Redis passwords and the AOF of the
queued jobs. Each file is made 0600, each directory of corral's own 0700. The data directory itself is
``--db-path``'s parent, by default the directory the manager was started in: corral only makes it 0700
when it creates it, and warns when one it found lets other users in.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from shared.file_modes import PRIVATE_FILE, is_open, make_private, make_private_dir, mode_text
from shared.private_redis import DIR_NAME as REDIS_DIR_NAME

logger = logging.getLogger(__name__)

JOIN_TOKEN_FILE = "join-token"
"""The join token's file in the data directory (written by the launcher with files.write_private)."""

DB_COMPANIONS = ("-wal", "-shm", "-journal")
"""Suffixes of SQLite's files beside the database; each holds pages of it, so its secrets too."""

REDIS_SECRET_FILES = ("password", "agent-password", "redis.conf")  # agent-password: of older managers
"""Files of corral-redis/ that hold a Redis password (redis.conf holds both). The AOF redis-server writes
there (appendonlydir/, 0755 and 0644 by its own rule, remade at every rewrite) is kept from other users by
corral-redis/ itself, 0700."""


def secure_data_files(data_dir: Path, db_path: Path | None) -> None:
    """Make the data directory if missing (0700) and every secret file in it owner-only, logging each fixed
    (``db_path`` None: the database is not a file here, PostgreSQL's).

    Call it before init_db: the empty 0600 file it creates for a new database is one SQLite fills, and
    SQLite gives -wal and -shm the database file's mode, so no byte of the database is ever readable by
    others (SQLite itself would create it 0644, and a descriptor opened then reads on after a chmod).
    """
    if not make_private_dir(data_dir) and is_open(mode := data_dir.stat().st_mode):
        # Not corral's to change: by default it is the directory the manager was started in (a home, a
        # project). Its secret files are 0600, but others can see them and whatever else lands there.
        logger.warning(
            "data directory %s is mode %s, open to other users: left as it is (not made by corral); the "
            "database and join token in it are 0600, but give the manager a directory of its own (--db-path "
            "DIR/resource_monitor.db, DIR made by the manager) or chmod 700 it",
            data_dir,
            mode_text(mode),
        )
    if db_path is not None:
        _create_private(db_path)
        for path in (db_path, *(db_path.with_name(db_path.name + suffix) for suffix in DB_COMPANIONS)):
            make_private(path)
    make_private(data_dir / JOIN_TOKEN_FILE)
    redis_dir = data_dir / REDIS_DIR_NAME
    make_private(redis_dir)  # corral's own: PrivateRedis makes it 0700 too, without a word
    for name in REDIS_SECRET_FILES:
        make_private(redis_dir / name)


def _create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists (an empty file is an empty SQLite database)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)  # the umask could have taken the owner's bits too
    finally:
        os.close(fd)
    logger.info("database %s created (mode %s)", path, mode_text(PRIVATE_FILE))
