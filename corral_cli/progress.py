"""A progress line on stderr (redrawn in place on a terminal, printed as plain lines when it changes otherwise)
and the `--wait` loop that polls the API under it."""

from __future__ import annotations

import sys
import threading
import time
from abc import ABC, abstractmethod
from typing import Generic, TextIO, TypeVar

import click

from .client import Client
from .context import EXIT_FAILED

T = TypeVar("T")

CLEAR_LINE = "\r\x1b[K"
"""Carriage return and erase-to-end-of-line: the next write replaces the progress line."""


class ProgressLine:
    """Shows one status text and lets other output pass above it without tearing (thread-safe)."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.text = ""
        self._shown = False
        self._lock = threading.Lock()

    def update(self, text: str) -> None:
        """Show ``text``; off a terminal, print it only when it differs from the last one."""
        with self._lock:
            if text == self.text and (self._shown or not self.live):
                return
            self.text = text
            if self.live:
                self.stream.write(CLEAR_LINE + text)
                self.stream.flush()
                self._shown = True
            else:
                click.echo(text, file=self.stream)

    def echo(self, line: str, err: bool = False) -> None:
        """Print ``line`` (to stdout, or stderr) with the progress line moved below it."""
        with self._lock:
            self._hide()
            click.echo(line, err=err)
            if self.live and self.text:
                self.stream.write(self.text)
                self.stream.flush()
                self._shown = True

    def close(self) -> None:
        """Remove the live line so whatever comes next starts on a clean line."""
        with self._lock:
            self._hide()

    def _hide(self) -> None:
        if self.live and self._shown:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self._shown = False


class Wait(ABC, Generic[T]):
    """`--wait`: looks at something through the API under a progress line until it is over or time runs out."""

    poll_seconds = 0.5
    """How often it looks."""

    def __init__(self, client: Client, path: str) -> None:
        self.client = client
        self.path = path

    def look(self) -> T:
        """What the API says now: its answer to GET ``path``."""
        seen: T = self.client.get(self.path)
        return seen

    @abstractmethod
    def line(self, seen: T) -> str:
        """The progress line for what was seen."""

    @abstractmethod
    def over(self, seen: T) -> bool:
        """Whether waiting is over (for better or worse)."""

    @abstractmethod
    def report(self, seen: T) -> int:
        """Print how it ended (the progress line already gone) and give the exit code."""

    @abstractmethod
    def late(self, seen: T, timeout: float) -> str:
        """What stderr says when ``timeout`` seconds passed first."""

    def run(self, timeout: float) -> int:
        """Poll until over (the exit code of :meth:`report`) or until ``timeout`` has passed (exit 1)."""
        progress = ProgressLine()
        deadline = time.monotonic() + timeout
        try:
            while True:
                seen = self.look()
                progress.update(self.line(seen))
                if self.over(seen):
                    progress.close()
                    return self.report(seen)
                if time.monotonic() > deadline:
                    progress.close()
                    click.echo(self.late(seen, timeout), err=True)
                    return EXIT_FAILED
                time.sleep(self.poll_seconds)
        finally:
            progress.close()
