"""An instance's ``uris``: downloaded into its working directory when newer than the copy there, ``.zip`` files
unpacked, refusing any entry that would land outside the directory (absolute, ``..``, symlink)."""

from __future__ import annotations

import logging
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from shared.defaults import IMAGE_DOWNLOAD_TIMEOUT

from ..components.image_fetch import FetchError, SftpSettings, fetch_if_newer, forget_fetched, redact

logger = logging.getLogger(__name__)


class UnsafeArchive(FetchError):
    """A zip with an entry that would escape the working directory: nothing of it is unpacked."""


def file_name(url: str) -> str:
    """The name a uri's file gets in the working directory: the last part of its path."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    if not name or name in (".", ".."):
        raise FetchError(f"{redact(url)}: the uri names no file")
    return name


def fetch_all(
    uris: list[str],
    workdir: Path,
    sftp: SftpSettings,
    cancelled: Callable[[], bool] = lambda: False,
    timeout: float = IMAGE_DOWNLOAD_TIMEOUT,
) -> list[str]:
    """Bring every uri up to date in ``workdir`` (zips unpacked after a download); returns the names downloaded.

    Raises FetchError (UnsafeArchive included) or FetchCancelled.
    """
    downloaded = []
    for url in uris:
        dest = workdir / file_name(url)
        if not fetch_if_newer(url, dest, timeout, sftp, cancelled):
            continue
        downloaded.append(dest.name)
        if dest.suffix.lower() == ".zip":
            try:
                unzip(dest, workdir)
            except FetchError:
                forget_fetched(dest)  # never "not modified" next time: a refused zip is never half-trusted
                raise
    return downloaded


def unzip(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target``; every entry is checked first, so a bad one unpacks nothing."""
    root = target.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_entry(info, root, archive.name)
            for info in members:
                zf.extract(info, root)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(root / info.filename, mode)  # keep scripts executable
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive.name}: not a zip file: {exc}") from None
    except OSError as exc:
        raise FetchError(f"{archive.name}: could not unpack: {exc}") from None


def _check_entry(info: zipfile.ZipInfo, root: Path, name: str) -> None:
    entry = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeArchive(f"{name}: entry {entry!r} is a symbolic link: refused")
    if entry.startswith(("/", "\\")) or PurePosixPath(entry).is_absolute() or (len(entry) > 1 and entry[1] == ":"):
        raise UnsafeArchive(f"{name}: entry {entry!r} is an absolute path: refused")
    if ".." in PurePosixPath(entry.replace("\\", "/")).parts:
        raise UnsafeArchive(f"{name}: entry {entry!r} escapes the working directory: refused")
    resolved = (root / entry).resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafeArchive(f"{name}: entry {entry!r} escapes the working directory: refused")
