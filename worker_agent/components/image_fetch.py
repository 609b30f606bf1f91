"""Fetching a component image tarball, or an app instance's uris, over http(s) or sftp into the agent's data dir.

fetch_if_newer downloads only what changed since the copy the agent has: a conditional GET (ETag and
Last-Modified kept beside the file in ``.<name>.fetched``), or for sftp the remote size and mtime.

paramiko (and urllib.request) are imported only when an image is fetched, so an agent without docker
components never pays for them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
"""Bytes read at a time; the deadline and cancellation are checked between chunks."""


STALL_SECONDS = 30.0
"""A server that sends nothing for this long fails the download (the whole one has IMAGE_DOWNLOAD_TIMEOUT)."""


class FetchError(Exception):
    """An image could not be fetched; the message says why (never a secret)."""


class FetchCancelled(Exception):
    """The component was stopped or replaced while its image was being fetched."""


class _NotModified(Exception):
    """The server's copy is the one the agent already has (HTTP 304, or same sftp size and mtime)."""


@dataclass
class SftpSettings:
    """The agent's client key and known_hosts file for sftp:// image URLs."""

    key_path: Path | None = None
    known_hosts_path: Path | None = None


def redact(url: str) -> str:
    """``url`` without any password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def fetch(
    url: str, dest: Path, timeout: float, sftp: SftpSettings, cancelled: Callable[[], bool] = lambda: False
) -> Path:
    """Download ``url`` to ``dest`` (through a temp file) within ``timeout`` seconds; raises FetchError."""
    _download(url, dest, timeout, sftp, cancelled, None)
    return dest


def fetched_marker(dest: Path) -> Path:
    """Where fetch_if_newer keeps what it knows of the copy at ``dest`` (validators of the server's answer)."""
    return dest.with_name(f".{dest.name}.fetched")


def forget_fetched(dest: Path) -> None:
    """Drop the copy at ``dest`` and its marker: the next fetch_if_newer downloads it again."""
    dest.unlink(missing_ok=True)
    fetched_marker(dest).unlink(missing_ok=True)


def fetch_if_newer(
    url: str, dest: Path, timeout: float, sftp: SftpSettings, cancelled: Callable[[], bool] = lambda: False
) -> bool:
    """Download ``url`` to ``dest`` unless the copy there is still the server's; True when it downloaded.

    http(s): a conditional GET with the ETag / Last-Modified of the last download (304 keeps the copy);
    sftp: the remote size and mtime compared with the last download's. Raises FetchError.
    """
    marker = fetched_marker(dest)
    known: dict[str, Any] | None = None
    if dest.is_file():
        try:
            known = json.loads(marker.read_text())
        except (OSError, ValueError):
            known = None
        if not isinstance(known, dict) or known.get("url") != url:
            known = None
    try:
        validators = _download(url, dest, timeout, sftp, cancelled, known or {})
    except _NotModified:
        return False
    marker.write_text(json.dumps({"url": url, **validators}))
    return True


def _download(
    url: str,
    dest: Path,
    timeout: float,
    sftp: SftpSettings,
    cancelled: Callable[[], bool],
    known: dict[str, Any] | None,
) -> dict[str, Any]:
    """Download to ``dest``; with ``known`` (validators of the copy there), raise _NotModified when it is
    still current. Returns the validators of what was downloaded."""
    scheme = urlsplit(url).scheme
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    deadline = time.monotonic() + timeout

    def check() -> None:
        if cancelled():
            raise FetchCancelled(url)
        if time.monotonic() > deadline:
            raise FetchError(f"download of {redact(url)} took longer than {timeout:.0f}s")

    try:
        if scheme in ("http", "https"):
            validators = _fetch_http(url, partial, timeout, check, known)
        elif scheme == "sftp":
            validators = _fetch_sftp(url, partial, timeout, sftp, check, known)
        else:
            raise FetchError(f"{redact(url)}: unsupported scheme {scheme!r} (http, https or sftp)")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    return validators


def _fetch_http(
    url: str, partial: Path, timeout: float, check: Callable[[], None], known: dict[str, Any] | None = None
) -> dict[str, Any]:
    import urllib.error  # http.client and ssl: only when an image is fetched
    import urllib.request

    request = urllib.request.Request(url)
    if known and known.get("etag"):
        request.add_header("If-None-Match", known["etag"])
    if known and known.get("last_modified"):
        request.add_header("If-Modified-Since", known["last_modified"])
    try:
        with (
            urllib.request.urlopen(request, timeout=min(timeout, STALL_SECONDS)) as response,
            open(partial, "wb") as out,
        ):
            while True:
                check()
                chunk = response.read1(CHUNK_BYTES)  # what has arrived: a slow server never hides a stop
                if not chunk:
                    break
                out.write(chunk)
            return {"etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}
    except urllib.error.HTTPError as exc:
        if exc.code == 304 and known:
            raise _NotModified(url) from None
        raise FetchError(f"download of {redact(url)} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise FetchError(f"download of {redact(url)} failed: {reason}") from None


def _fetch_sftp(
    url: str,
    partial: Path,
    timeout: float,
    sftp: SftpSettings,
    check: Callable[[], None],
    known: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import paramiko  # only agents that fetch over sftp pay for it

    parts = urlsplit(url)
    if not parts.hostname or not parts.path:
        raise FetchError(f"image_url {redact(url)}: needs a host and a path")
    if sftp.known_hosts_path is None:
        raise FetchError("sftp image_url needs the agent's --sftp-known-hosts (host keys are always checked)")
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(sftp.known_hosts_path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        connect: dict[str, Any] = {
            "hostname": parts.hostname,
            "port": parts.port or 22,
            "username": unquote(parts.username) if parts.username else None,
            "timeout": min(timeout, STALL_SECONDS),
            "banner_timeout": min(timeout, STALL_SECONDS),
            "auth_timeout": min(timeout, STALL_SECONDS),
            "allow_agent": False,
            "look_for_keys": False,
        }
        if sftp.key_path is not None:
            connect["key_filename"] = str(sftp.key_path)
        if parts.password:
            connect["password"] = unquote(parts.password)
        client.connect(**connect)
        with client.open_sftp() as session:
            session.get_channel().settimeout(STALL_SECONDS)

            def progress(done: int, total: int) -> None:
                check()

            attrs = session.stat(unquote(parts.path))
            validators = {"size": attrs.st_size, "mtime": attrs.st_mtime}
            if known and known.get("size") == attrs.st_size and known.get("mtime") == attrs.st_mtime:
                raise _NotModified(url)
            session.get(unquote(parts.path), str(partial), callback=progress)
            return validators
    except (FetchError, FetchCancelled, _NotModified):
        raise
    except paramiko.BadHostKeyException:
        raise FetchError(f"sftp {parts.hostname}:{parts.port or 22}: host key does not match known_hosts") from None
    except paramiko.SSHException as exc:
        raise FetchError(f"sftp fetch of {redact(url)} failed: {exc}") from None
    except OSError as exc:
        raise FetchError(f"sftp fetch of {redact(url)} failed: {exc}") from None
    finally:
        client.close()
