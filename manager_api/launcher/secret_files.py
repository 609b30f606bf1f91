"""Writing the manager's secret files (join token, Redis password and config)."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from manager_api.services import job_keys
from shared.file_modes import PRIVATE_FILE
from shared.paths import local_join_token_path

logger = logging.getLogger(__name__)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600 from the first byte).

    Through a temp file renamed over ``path``: the text lands in a new file, so whoever opened the old one
    while an older version left it 0644 does not read the new text through that descriptor.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w") as f:
            # Before the first byte: a temp file a crashed manager of this pid left keeps its old mode.
            os.fchmod(f.fileno(), PRIVATE_FILE)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_join_token(data_dir: Path) -> Path:
    """The join token in ``<data dir>/join-token``, made once and never replaced (agents hold it)."""
    token_file = data_dir / "join-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    if not token:
        write_private(token_file, secrets.token_urlsafe(32) + "\n")
        logger.info("join token created in %s", token_file)
    return token_file


def adopt_shared_join_token(token_file: Path) -> None:
    """Make the join token file hold the database's join token: manager hosts sharing one database (PostgreSQL)
    must accept the same token. The first manager on a database stores its own there; a later host replaces
    the one it made with it, before any agent could hold the local one."""
    local = token_file.read_text().strip()
    shared = job_keys.shared_join_token(local)
    if shared != local:
        write_private(token_file, shared + "\n")
        logger.info("join token in %s replaced by the one of the database (shared by every manager host)", token_file)


def publish_local_join_token(token_file: Path, port: int) -> Path:
    """Copy the join token where agents on this host look for the manager of ``port``.

    Called only once this manager holds the port: a manager that failed to bind must never replace the
    token of the one that runs there.
    """
    local = local_join_token_path(port)
    local.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(local.parent, 0o700)
    write_private(local, token_file.read_text().strip() + "\n")
    return local
