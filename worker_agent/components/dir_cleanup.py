"""Removing what a component left on disk under ``<data dir>/components/`` once its records are pruned.

The path is walked one directory at a time from the components root with O_NOFOLLOW, and the tree is
removed relative to the descriptor of its parent (shutil.rmtree with dir_fd, which never follows a
symlink inside either), so a symlink anywhere on the way, planted by a component or swapped in meanwhile,
can never make the agent delete anything outside the root: such a path is left alone and logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from .records import ComponentRecord, files_dir, run_dir

logger = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\x00" not in name


def remove_generation_dirs(components_dir: Path, rec: ComponentRecord, last: bool, node_id: str) -> None:
    """Remove the run directory of a pruned generation, and the component's files too when it was the ``last``."""
    names = [run_dir(components_dir, rec).name]
    if last:
        names.append(files_dir(components_dir, rec).name)
    removed = remove_component_dirs(components_dir, rec.business_id, rec.component_id, names)
    if removed:
        logger.info("node %s %s: removed its directories %s", node_id, rec.describe(), ", ".join(removed))


def remove_component_dirs(root: Path, business_id: str, component_id: str, names: Iterable[str]) -> list[str]:
    """Remove ``root/<business>/<component>/<name>`` for each name, then the component and business
    directories if that left them empty; returns the names removed (missing ones are not an error)."""
    names = list(names)
    if not all(_is_plain_name(part) for part in (business_id, component_id, *names)):
        logger.warning(
            "business %s component %s: refusing to remove dirs %s: not plain names", business_id, component_id, names
        )
        return []
    removed: list[str] = []
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return removed
    try:
        with contextlib.ExitStack() as fds:
            business_fd = os.open(business_id, _DIR_FLAGS, dir_fd=root_fd)
            fds.callback(os.close, business_fd)
            component_fd = os.open(component_id, _DIR_FLAGS, dir_fd=business_fd)
            fds.callback(os.close, component_fd)
            for name in names:
                try:
                    if _remove_tree(component_fd, name):
                        removed.append(name)
                except OSError as exc:
                    logger.warning("business %s component %s: %s not removed: %s", business_id, component_id, name, exc)
            # Empty now unless another generation still has files there: then the OSError keeps it.
            with contextlib.suppress(OSError):
                os.rmdir(component_id, dir_fd=business_fd)
                os.rmdir(business_id, dir_fd=root_fd)
    except FileNotFoundError:
        pass  # never created (a docker component without config files, an unknown component) or gone already
    except OSError as exc:
        # ELOOP/ENOTDIR: a symlink or a file where a directory should be; never followed, left for a person.
        logger.warning("business %s component %s: directory not removed: %s", business_id, component_id, exc)
    finally:
        os.close(root_fd)
    return removed


def _remove_tree(parent_fd: int, name: str) -> bool:
    try:
        mode = os.lstat(name, dir_fd=parent_fd).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(mode):
        raise OSError(f"{name} is not a directory (a symlink?)")
    shutil.rmtree(name, dir_fd=parent_fd)
    return True
