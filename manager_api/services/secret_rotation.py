"""Rotation of the secrets key (``manager secrets rotate-key``), as Kubernetes rotates an EncryptionConfiguration:
add the new key first, re-encrypt every stored secret with it, then drop the old keys.

Each step leaves a readable state, so a run that stops midway is simply run again: after step 1 the file
holds the new key and the old ones (every row still decrypts); step 2 is one transaction; a second run adds
yet another key in front and re-encrypts every row from whichever key it holds (MultiFernet.rotate).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from peewee import Field, Model

from manager_api import db
from manager_api.models import App, BusinessComponent, FleetTask, Schedule, WorkflowStep
from manager_api.services import audit
from manager_api.services.secret_store import SecretKeyError, read_keys

COLUMNS: tuple[tuple[type[Model], Field], ...] = (
    (FleetTask, FleetTask.secret_env),
    (FleetTask, FleetTask.processor),
    (Schedule, Schedule.secret_env),
    (Schedule, Schedule.processor),
    (Schedule, Schedule.secret_params),
    (WorkflowStep, WorkflowStep.sealed),
    (App, App.secret_envs),
    (BusinessComponent, BusinessComponent.secret_environment_variables),
)
"""Every column holding Fernet tokens of services.secret_store, with its model."""


def write_keys(key_file: Path, keys: list[bytes]) -> None:
    """Replace ``key_file`` with ``keys`` atomically (a new 0600 file renamed over it)."""
    temporary = key_file.with_name(key_file.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(key.decode() + "\n" for key in keys))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, key_file)


def rotate(key_file: Path, actor: str) -> int:
    """Rotate ``key_file``'s key and re-encrypt every stored secret; returns how many rows were re-encrypted."""
    keys = [Fernet.generate_key(), *read_keys(key_file)]
    write_keys(key_file, keys)
    cipher = MultiFernet([Fernet(key) for key in keys])
    count = 0
    with db.write_transaction():
        for model, column in COLUMNS:
            key = model._meta.primary_key
            rows = list(model.select(key, column).where(column != "").tuples())
            for row_id, token in rows:
                try:
                    fresh = cipher.rotate(token.encode()).decode()
                except InvalidToken:
                    raise SecretKeyError(
                        f"a secret of {model._meta.table_name} does not decrypt with {key_file}"
                    ) from None
                model.update({column: fresh}).where(key == row_id).execute()
                count += 1
        audit.record(actor, "secrets.rotate_key", str(key_file), {"rows": count})
    write_keys(key_file, keys[:1])
    return count
