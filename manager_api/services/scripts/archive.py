"""Checks of a script's zip archive at registration: every member a plain relative path, the entry one of them.

The agent checks again before it extracts (worker_agent.fleet_commands.script_cache): the zip it fetches is the
one registered (same digest), but the agent trusts nothing it has not checked itself.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from manager_api.services.errors import Invalid
from shared.defaults import SCRIPT_MAX_EXTRACTED_BYTES
from shared.script_archives import extracted_size, is_symlink, safe_member

MAX_MEMBERS = 10_000


def check_entry(entry: str) -> str:
    """``entry`` as a normalized relative path, or Invalid naming the entry field."""
    if not safe_member(entry) or entry.endswith("/"):
        raise Invalid("entry: must be a relative path to a file of the archive, without '..'")
    return str(PurePosixPath(entry))


def check_zip(content: bytes, entry: str) -> None:
    """Invalid (naming ``archive`` or ``entry``) unless ``content`` is a zip of safe regular files and dirs
    holding ``entry``."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise Invalid(f"archive: at most {MAX_MEMBERS} members")
            if extracted_size(members) > SCRIPT_MAX_EXTRACTED_BYTES:
                raise Invalid(f"archive: its files take more than {SCRIPT_MAX_EXTRACTED_BYTES} bytes extracted")
            files = set()
            for member in members:
                if not safe_member(member.filename):
                    raise Invalid(f"archive: member {member.filename!r} is not a plain relative path")
                if is_symlink(member):
                    raise Invalid(f"archive: member {member.filename!r} is a symlink")
                if not member.is_dir():
                    files.add(str(PurePosixPath(member.filename)))
            bad = archive.testzip()
            if bad is not None:
                raise Invalid(f"archive: member {bad!r} is corrupt")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise Invalid(f"archive: not a readable zip file ({exc})") from exc
    if entry not in files:
        raise Invalid(f"entry: {entry!r} is not a file of the archive")
