"""How an instance's thread sleeps: until its process exits (a pidfd), someone wakes it, or a timeout.

With a pidfd the thread learns of an exit at once, so it need not poll the process often: at 100 instances
the wake-ups of polling were most of the agent's CPU. Where pidfds are missing (a kernel before 5.3), the
timeout alone paces it, as polling did.
"""

from __future__ import annotations

import os
import select


class Waker:
    """A pipe another thread writes to wake the sleeper (threading.Event cannot be waited on with a pidfd)."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def set(self) -> None:
        try:
            os.write(self._write, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (already woken) or closed (the thread is gone)

    def wait(self, timeout: float, exit_fd: int | None = None) -> None:
        """Sleep until woken, ``exit_fd`` (a pidfd) reads ready, or ``timeout`` seconds; then forget the wake."""
        fds = [self._read] if exit_fd is None else [self._read, exit_fd]
        try:
            ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        except (OSError, ValueError):
            ready = [self._read]  # exit_fd closed meanwhile: the step that follows sees why
        if self._read not in ready:
            return  # nothing to forget: a read of the empty pipe would only raise (and cost) BlockingIOError
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


def pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), or None where the kernel or Python has none."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd
