"""Child processes that must not outlive their parent: the manager's redis-server and gunicorn, the CLI's
dashboard server."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if its parent dies, so nothing outlives a killed manager (or CLI)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the children are still stopped on an orderly shutdown
