"""The node's identity: a uuid4 hex made once and kept in ``<data dir>/node-id``, and its join secret."""

from __future__ import annotations

import logging
import os
import re
import secrets
import uuid
from pathlib import Path

from shared.file_modes import PRIVATE_FILE

logger = logging.getLogger(__name__)

NODE_ID_FILE = "node-id"
_NODE_ID = re.compile(r"^[0-9a-f]{32}$")


def load_or_create_node_id(data_dir: Path) -> str:
    """The node id kept in ``data_dir``, created on first use."""
    path = Path(data_dir) / NODE_ID_FILE
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not _NODE_ID.match(existing):
            raise ValueError(f"{path} does not hold a node id (32 hex digits): {existing!r}")
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    node_id = uuid.uuid4().hex
    tmp = path.with_name(f".{NODE_ID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(node_id + "\n")
    try:
        # link() fails if another agent created the file meanwhile: then its id wins.
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_node_id(data_dir)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("node %s: new node id written to %s", node_id, path)
    return node_id


NODE_SECRET_FILE = "node-secret"


def load_or_create_node_secret(data_dir: Path) -> str:
    """The secret this node proves itself with at every join, kept 0600 in ``data_dir``, made on first use.

    The manager keeps its digest from the first join: whoever joins later under this node id must hold it.
    """
    path = Path(data_dir) / NODE_SECRET_FILE
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{NODE_SECRET_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), PRIVATE_FILE)  # a temp file a crashed agent of this pid left keeps its mode
        out.write(secret + "\n")
    try:
        os.link(tmp, path)  # another agent that made one meanwhile wins
    except FileExistsError:
        return load_or_create_node_secret(data_dir)
    finally:
        tmp.unlink(missing_ok=True)
    return secret
