"""The interface every component driver implements, and what its methods return or raise."""

from __future__ import annotations


class StartError(Exception):
    """A component could not be started; the message says why."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
