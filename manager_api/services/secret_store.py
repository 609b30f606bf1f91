"""Secret env values at rest: Fernet tokens in the database, their keys in a file kept apart from it.

The key file holds one Fernet key a line, the first one encrypting and every one decrypting (MultiFernet):
``manager secrets rotate-key`` puts a new key first, re-encrypts every stored secret, then drops the old
keys. A database dump or backup alone therefore reveals no secret value; every manager host on one database
must have the same key file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from manager_api.config import Settings
from manager_api.db import is_url
from manager_api.services.errors import Unavailable

KEY_FILE_NAME = "secrets.key"
"""The key file's name in the manager's data directory, unless --secrets-key-file names another."""

SHOWN_VALUE = "(secret)"
"""What an answer shows in place of a secret's value."""

_key_file: Path | None = None
_cipher: MultiFernet | None = None
_stamp: tuple[int, int, int] | None = None


class SecretKeyError(Unavailable):
    """The key file is missing, unreadable or does not decrypt a stored secret."""


def key_file_of(settings: Settings) -> Path:
    """The key file ``settings`` name: --secrets-key-file, else secrets.key in the data directory (beside a
    SQLite database, or beside the join token file with a PostgreSQL URL)."""
    if settings.secrets_key_file:
        return Path(settings.secrets_key_file)
    if not is_url(settings.db_path):
        return Path(settings.db_path).resolve().parent / KEY_FILE_NAME
    if settings.join_token_file:
        return Path(settings.join_token_file).resolve().parent / KEY_FILE_NAME
    raise SecretKeyError("with a database URL, give --secrets-key-file (CORRAL_SECRETS_KEY_FILE)")


def configure(key_file: Path) -> None:
    """Use ``key_file`` (made 0600 with one new key when it does not exist)."""
    global _key_file, _cipher
    _key_file, _cipher = Path(key_file), None
    ensure_key_file(_key_file)


def ensure_key_file(key_file: Path) -> None:
    """Make ``key_file`` with one new key unless it exists (O_EXCL: two processes starting agree on one)."""
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        out.write(Fernet.generate_key().decode() + "\n")


def read_keys(key_file: Path) -> list[bytes]:
    """The keys of ``key_file``, the encrypting one first."""
    try:
        lines = key_file.read_text().split()
    except OSError as exc:
        raise SecretKeyError(f"secrets key file {key_file} unreadable: {exc.strerror}") from None
    if not lines:
        raise SecretKeyError(f"secrets key file {key_file} holds no key")
    return [line.encode() for line in lines]


def cipher() -> MultiFernet:
    """The MultiFernet of the configured key file, read again whenever the file changes (a rotation by
    ``manager secrets rotate-key`` reaches running managers without a restart)."""
    global _cipher, _stamp
    if _key_file is None:
        raise SecretKeyError("no secrets key file configured")
    try:
        info = _key_file.stat()
    except OSError as exc:
        raise SecretKeyError(f"secrets key file {_key_file} unreadable: {exc.strerror}") from None
    stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
    if _cipher is None or stamp != _stamp:
        _cipher, _stamp = MultiFernet([Fernet(key) for key in read_keys(_key_file)]), stamp
    return _cipher


def encrypt_env(env: dict[str, str] | None) -> str:
    """What the database keeps of a secret env: one Fernet token of its JSON, or "" for none."""
    if not env:
        return ""
    return cipher().encrypt(json.dumps(env, sort_keys=True).encode()).decode()


def decrypt_env(stored: str | None) -> dict[str, str]:
    """The secret env ``encrypt_env`` stored."""
    if not stored:
        return {}
    try:
        return dict(json.loads(cipher().decrypt(stored.encode())))
    except InvalidToken:
        raise SecretKeyError("a stored secret does not decrypt with the secrets key file (wrong key file?)") from None


def names_of(stored: str | None) -> dict[str, str]:
    """What an answer shows of a stored secret env: its names, each with SHOWN_VALUE."""
    return {name: SHOWN_VALUE for name in sorted(decrypt_env(stored))}
