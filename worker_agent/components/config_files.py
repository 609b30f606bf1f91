"""Config files of a component, written atomically under its files root, refusing anything that escapes it.

The manager checks each path with shared.config_paths first; here the agent checks again and also refuses
symlinks on the way (a parent directory or the target itself), which only the node's disk can show.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from shared.config_paths import config_relpath
from shared.file_modes import PRIVATE_FILE
from shared.states import ComponentType

from ..state_file import atomic_write

CONTAINER_FILE = 0o644
"""Mode of a docker component's config files: any user of the container's image may have to read them."""


class ConfigFileError(ValueError):
    """A config file that cannot be written safely; says which path and why."""


def _check(root: Path, path: str) -> tuple[PurePosixPath, Path]:
    try:
        rel = config_relpath(path)
    except ValueError as exc:
        raise ConfigFileError(f"config file {path!r}: {exc}") from exc
    real_root = root.resolve()
    current = root
    for part in rel.parts[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break  # created later by us, as a real directory
        if stat.S_ISLNK(mode):
            raise ConfigFileError(f"config file {path!r}: {current.relative_to(root)} is a symlink")
        if not stat.S_ISDIR(mode):
            raise ConfigFileError(f"config file {path!r}: {current.relative_to(root)} is not a directory")
        if not current.resolve().is_relative_to(real_root):
            raise ConfigFileError(f"config file {path!r}: {current.relative_to(root)} leads outside the files root")
    target = root / rel
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return rel, target
    if stat.S_ISLNK(mode):
        raise ConfigFileError(f"config file {path!r}: the target is a symlink")
    if not stat.S_ISREG(mode):
        raise ConfigFileError(f"config file {path!r}: the target exists and is not a regular file")
    return rel, target


def config_file_mode(component_type: str) -> int:
    """The mode of a component's config files: owner only, but readable by all in a container's.

    A process component runs as the agent's user, so 0600 is enough. A docker component gets each file
    bind-mounted with its owner and mode, and its process may run as any user of the image (postgres,
    nginx's workers, a USER line, a rootless engine's sub-uids): 0644, as Docker's own configs and
    Kubernetes' mounted files are. On the host, the 0700 data and components directories keep other users
    out either way; the engine mounts the file as root (or as the agent's user) and never needs to pass them.
    """
    return CONTAINER_FILE if component_type == ComponentType.DOCKER.value else PRIVATE_FILE


def write_config_files(
    root: Path, files: Iterable[Mapping[str, str]], mode: int = PRIVATE_FILE
) -> list[tuple[PurePosixPath, Path]]:
    """Write each {path, content} under ``root`` with ``mode``; returns (path inside the component, host path) pairs.

    Every path is checked before the first byte is written, so a refused set leaves nothing behind.
    """
    root.mkdir(parents=True, exist_ok=True)
    items = list(files)
    checked = [(_check(root, item["path"]), item["content"]) for item in items]
    written = []
    for (rel, target), content in checked:
        target.parent.mkdir(parents=True, exist_ok=True)
        _check(root, str(rel))  # again, right before writing: a parent may have been swapped meanwhile
        atomic_write(target, content.encode(), mode)
        written.append((PurePosixPath("/") / rel, target))
    return written
