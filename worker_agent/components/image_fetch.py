"""Fetching a component image tarball over http(s) or sftp into the agent's data dir.

paramiko (and urllib.request) are imported only when an image is fetched, so an agent without docker
components never pays for them.
"""

from __future__ import annotations

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
            _fetch_http(url, partial, timeout, check)
        elif scheme == "sftp":
            _fetch_sftp(url, partial, timeout, sftp, check)
        else:
            raise FetchError(f"image_url {redact(url)}: unsupported scheme {scheme!r} (http, https or sftp)")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def _fetch_http(url: str, partial: Path, timeout: float, check: Callable[[], None]) -> None:
    import urllib.error  # http.client and ssl: only when an image is fetched
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=min(timeout, STALL_SECONDS)) as response, open(partial, "wb") as out:
            while True:
                check()
                chunk = response.read1(CHUNK_BYTES)  # what has arrived: a slow server never hides a stop
                if not chunk:
                    break
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"download of {redact(url)} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise FetchError(f"download of {redact(url)} failed: {reason}") from None


def _fetch_sftp(url: str, partial: Path, timeout: float, sftp: SftpSettings, check: Callable[[], None]) -> None:
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

            session.get(unquote(parts.path), str(partial), callback=progress)
    except (FetchError, FetchCancelled):
        raise
    except paramiko.BadHostKeyException:
        raise FetchError(f"sftp {parts.hostname}:{parts.port or 22}: host key does not match known_hosts") from None
    except paramiko.SSHException as exc:
        raise FetchError(f"sftp fetch of {redact(url)} failed: {exc}") from None
    except OSError as exc:
        raise FetchError(f"sftp fetch of {redact(url)} failed: {exc}") from None
    finally:
        client.close()
