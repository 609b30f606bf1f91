"""The agent's cache of registered scripts (issue 17): fetched from Redis once per digest, checked, kept.

``<data dir>/scripts/<digest>/`` holds ``script`` (a body) or ``archive.zip`` and its extracted ``files/``.
Before every run the cached copy is checked again: the body or the zip must hash to the digest, and every file
extracted from a zip must still hold the zip's bytes. A copy that fails is removed and fetched again; content
fetched that does not hash to its digest is refused (the host fails, saying so) and never written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from shared import keys
from shared.defaults import SCRIPT_CACHE_KEEP_SECONDS, SCRIPT_MAX_EXTRACTED_BYTES
from shared.script_archives import extracted_size, is_symlink, safe_member

from .publish import RedisSource

logger = logging.getLogger(__name__)

SCRIPTS_DIR = "scripts"
BODY_FILE = "script"
ARCHIVE_FILE = "archive.zip"
FILES_DIR = "files"


class ScriptUnavailable(Exception):
    """The script cannot be run here: not fetchable, not matching its digest, or an unsafe archive."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ScriptCache:
    """Scripts by digest under one data directory; used under the command runner's lock (one run at a time)."""

    def __init__(self, data_dir: Path, node_id: str, redis: RedisSource) -> None:
        self.root = Path(data_dir) / SCRIPTS_DIR
        self.node_id = node_id
        self._redis = redis

    def argv(self, task_id: str, script: Mapping[str, Any]) -> list[str]:
        """What runs the script: [interpreter, its file, *args]; ScriptUnavailable when it cannot be had."""
        return [script["interpreter"], str(self.prepare(task_id, script)), *script.get("args", [])]

    def prepare(self, task_id: str, script: Mapping[str, Any]) -> Path:
        """The checked file to run (fetching it on a miss or when the cached copy no longer matches)."""
        digest, where = script["digest"], self.root / script["digest"]
        label = f"script {script['name']}@{script['version']} ({digest[:12]})"
        if script["kind"] == "zip" and not safe_member(script["entry"]):
            raise ScriptUnavailable(f"{label}: entry {script['entry']!r} is not a plain relative path")
        if where.is_dir():
            if self._intact(where, script):
                logger.info("node %s task %s: %s from the cache", self.node_id, task_id, label)
                os.utime(where)  # last used now: prune() keeps it
                return self._file(where, script)
            logger.warning(
                "node %s task %s: cached %s does not match its digest: fetched again", self.node_id, task_id, label
            )
            shutil.rmtree(where, ignore_errors=True)
        content = self._fetch(digest, label)
        self._install(where, content, script, label)
        logger.info("node %s task %s: %s fetched (%d bytes)", self.node_id, task_id, label, len(content))
        return self._file(where, script)

    def prune(self, keep_seconds: float = SCRIPT_CACHE_KEEP_SECONDS, keep: frozenset[str] = frozenset()) -> int:
        """Remove the cached scripts no run used for ``keep_seconds`` (and staging left by a crash), but never the
        digests in ``keep`` (an agent-side schedule's: it must fire without Redis); returns how many. A later run
        of one fetches it again."""
        cutoff = time.time() - keep_seconds
        removed = 0
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return 0
        for entry in entries:
            if entry.name in keep:
                continue
            try:
                stale = entry.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        if removed:
            logger.info(
                "node %s: %d cached scripts unused for %.0f days removed", self.node_id, removed, keep_seconds / 86400
            )
        return removed

    def _file(self, where: Path, script: Mapping[str, Any]) -> Path:
        if script["kind"] == "body":
            return where / BODY_FILE
        return where / FILES_DIR / script["entry"]

    def _intact(self, where: Path, script: Mapping[str, Any]) -> bool:
        """Whether the cached copy still is what the digest names (the body, or the zip and every extracted file)."""
        try:
            if script["kind"] == "body":
                return _sha256(where / BODY_FILE) == script["digest"]
            archive_path = where / ARCHIVE_FILE
            if _sha256(archive_path) != script["digest"]:
                return False
            with zipfile.ZipFile(archive_path) as archive:
                for member in archive.infolist():
                    if member.is_dir():
                        continue
                    path = where / FILES_DIR / member.filename
                    if path.is_symlink() or path.read_bytes() != archive.read(member):
                        return False
            return (where / FILES_DIR / script["entry"]).is_file()
        except (OSError, zipfile.BadZipFile, KeyError):
            return False

    def _fetch(self, digest: str, label: str) -> bytes:
        redis = self._redis()
        if redis is None:
            raise ScriptUnavailable(f"{label}: no Redis connection to fetch it")
        try:
            content = redis.get(keys.script_content(digest))
        except RedisError as exc:
            raise ScriptUnavailable(f"{label}: not fetched: {exc}") from exc
        if content is None:
            raise ScriptUnavailable(f"{label}: not in Redis (deleted?)")
        assert isinstance(content, bytes)
        if hashlib.sha256(content).hexdigest() != digest:
            raise ScriptUnavailable(f"{label}: the fetched content does not match its digest: refused")
        return content

    def _install(self, where: Path, content: bytes, script: Mapping[str, Any], label: str) -> None:
        """Write a checked copy beside ``where`` and move it in whole (a crash leaves no half copy under it)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = self.root / f".{where.name}.{uuid.uuid4().hex}"
        staging.mkdir(mode=0o700)
        try:
            if script["kind"] == "body":
                (staging / BODY_FILE).write_bytes(content)
                os.chmod(staging / BODY_FILE, 0o500)
            else:
                (staging / ARCHIVE_FILE).write_bytes(content)
                _extract(staging / ARCHIVE_FILE, staging / FILES_DIR, label)
                entry = staging / FILES_DIR / script["entry"]
                if not safe_member(script["entry"]) or not entry.is_file():
                    raise ScriptUnavailable(f"{label}: entry {script['entry']!r} is not a file of the archive")
            os.replace(staging, where)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _extract(archive_path: Path, into: Path, label: str) -> None:
    """Extract plain files and directories only: no absolute path, no '..', no symlink (ScriptUnavailable)."""
    into.mkdir(mode=0o700)
    base = into.resolve()
    try:
        with zipfile.ZipFile(archive_path) as archive:
            if extracted_size(archive.infolist()) > SCRIPT_MAX_EXTRACTED_BYTES:
                raise ScriptUnavailable(f"{label}: its files take more than {SCRIPT_MAX_EXTRACTED_BYTES} bytes")
            for member in archive.infolist():
                if not safe_member(member.filename) or is_symlink(member):
                    raise ScriptUnavailable(f"{label}: unsafe archive member {member.filename!r}")
                target = (into / member.filename).resolve()
                if not target.is_relative_to(base):
                    raise ScriptUnavailable(f"{label}: archive member {member.filename!r} leaves its directory")
                if member.is_dir():
                    target.mkdir(mode=0o700, parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                with archive.open(member) as source, open(target, "xb") as sink:
                    shutil.copyfileobj(source, sink)
                executable = (member.external_attr >> 16) & 0o100
                os.chmod(target, 0o700 if executable else 0o600)
    except (zipfile.BadZipFile, FileExistsError) as exc:
        raise ScriptUnavailable(f"{label}: bad archive: {exc}") from exc
