"""The keys of shared.job_signing: the manager signs each node's jobs and checks each node's reports with
that node's key, derived from one master key made once and kept in the database (so that every manager
host and gunicorn worker agrees), read once per process."""

from __future__ import annotations

import secrets
from functools import lru_cache

from manager_api import db
from manager_api.db import database
from manager_api.models import ManagerKey
from shared import job_signing

MASTER_KEY_NAME = "job-signing"

JOIN_TOKEN_NAME = "join-token"

_masters: dict[str, bytes] = {}  # database name -> master key


def master_key() -> bytes:
    """The job signing master key of this database, made the first time it is asked for."""
    name = str(database.obj.database)
    key = _masters.get(name)
    if key is not None:
        return key
    # Read first: only the first call on a new database writes, in a write transaction like every write (an
    # autocommit insert in each process's first request would queue for SQLite's lock beside the writers' turns).
    row = ManagerKey.get_or_none(ManagerKey.name == MASTER_KEY_NAME)
    if row is None:
        # Insert-or-ignore then read: two processes or manager hosts starting together agree on the first one.
        with db.write_transaction():
            ManagerKey.insert(name=MASTER_KEY_NAME, value=secrets.token_hex(32)).on_conflict_ignore().execute()
            row = ManagerKey.get_by_id(MASTER_KEY_NAME)
    key = _masters[name] = bytes.fromhex(row.value)
    return key


def shared_join_token(proposed: str) -> str:
    """The join token of every manager host on this database: the first one proposed is kept and answered to
    all (an agent joins through whichever host it reaches, with the one token it was given)."""
    with db.write_transaction():
        ManagerKey.insert(name=JOIN_TOKEN_NAME, value=proposed).on_conflict_ignore().execute()
        return str(ManagerKey.get_by_id(JOIN_TOKEN_NAME).value)


def node_key(node_id: str) -> bytes:
    """The key of ``node_id``'s jobs and reports (handed to its agent in the join answer)."""
    return _derived(master_key(), node_id)


@lru_cache(maxsize=65536)
def _derived(master: bytes, node_id: str) -> bytes:
    # Every heartbeat summary read checks a signature per node: at 10,000 nodes the derivation is worth keeping.
    return job_signing.node_key(master, node_id)
