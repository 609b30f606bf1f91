"""The run states of a supervised process and its restart policy (as Supervisor's): STARTING, RUNNING, BACKOFF, ...

A leaf module of pure logic: no process, no clock of its own (callers pass ``now``). Every change of state goes
through ``RunStates.change_state``, which checks the transition and logs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

logger = logging.getLogger(__name__)


class RunState(StrEnum):
    """Where a supervised process is in its life (internal to the agent: the wire states are in shared.states)."""

    STOPPED = "STOPPED"  # not started yet, or stopped on request
    STARTING = "STARTING"  # being spawned
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"  # exited, to be started again once its backoff delay is over
    STOPPING = "STOPPING"  # asked to stop, not gone yet
    EXITED = "EXITED"  # exited by itself, not to be started again
    FATAL = "FATAL"  # kept failing: its restarts are used up


TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.STOPPED: frozenset({RunState.STARTING}),
    RunState.STARTING: frozenset(
        {RunState.RUNNING, RunState.BACKOFF, RunState.EXITED, RunState.FATAL, RunState.STOPPING}
    ),
    RunState.RUNNING: frozenset({RunState.BACKOFF, RunState.EXITED, RunState.FATAL, RunState.STOPPING}),
    RunState.BACKOFF: frozenset({RunState.STARTING, RunState.STOPPED}),
    RunState.STOPPING: frozenset({RunState.STOPPED}),
    RunState.EXITED: frozenset({RunState.STARTING}),
    RunState.FATAL: frozenset({RunState.STARTING}),
}
"""The changes of state allowed, from each state."""


class InvalidTransition(Exception):
    """A change of state the machine does not allow (a bug in the caller)."""


@dataclass(frozen=True)
class RestartPolicy:
    """Whether and when an exited process is started again: up to ``retries`` times after a failure, waiting
    ``backoff_seconds``, then ``backoff_factor`` times longer each time, at most ``max_backoff_seconds``."""

    retries: int = 0
    backoff_seconds: float = 1.0
    backoff_factor: float = 2.0
    max_backoff_seconds: float = 60.0
    restart_on_success: bool = False  # a process that exits 0 is started again too (a service, not a job)
    stable_seconds: float = 60.0  # a process that ran this long before exiting starts again with a fresh count

    def wants_restart(self, exit_code: int | None, restarts: int) -> bool:
        """Whether a process that exited with ``exit_code``, after ``restarts`` restarts, is started again."""
        if restarts >= self.retries:
            return False
        return exit_code != 0 or self.restart_on_success

    def delay(self, restart: int) -> float:
        """Seconds to wait before the ``restart``-th restart (1 for the first)."""
        return min(self.max_backoff_seconds, self.backoff_seconds * self.backoff_factor ** max(0, restart - 1))


NO_RESTART = RestartPolicy()
"""The default: an exited process stays exited (what deployment tasks do today)."""

OnChange = Callable[[RunState, RunState, str], None]
"""Called after every change of state with (old, new, reason)."""


class RunStates:
    """The run state of one supervised process, and when it is due to start again."""

    def __init__(self, name: str, policy: RestartPolicy = NO_RESTART, on_change: OnChange | None = None) -> None:
        self.name = name  # the ids for the log lines ("node n1 task t1")
        self.policy = policy
        self.state = RunState.STOPPED
        self.restarts = 0  # since the last stable run
        self.retry_at: float | None = None  # when a process in BACKOFF is due to start again
        self.running_since: float | None = None
        self.exit_code: int | None = None
        self._on_change = on_change

    def change_state(self, new: RunState, reason: str = "") -> None:
        """The one way the state changes: checked against TRANSITIONS, logged, passed on."""
        old = self.state
        if new not in TRANSITIONS[old]:
            raise InvalidTransition(f"{self.name}: {old} -> {new} is not allowed")
        self.state = new
        log = logger.warning if new in (RunState.BACKOFF, RunState.FATAL) else logger.info
        log("%s: %s -> %s%s", self.name, old, new, f" ({reason})" if reason else "")
        if self._on_change is not None:
            self._on_change(old, new, reason)

    def starting(self) -> None:
        """A spawn begins (the first, or a restart once the backoff is over)."""
        self.retry_at = None
        self.change_state(RunState.STARTING, f"restart {self.restarts}" if self.restarts else "")

    def running(self, now: float) -> None:
        """The spawn succeeded."""
        self.running_since = now
        self.change_state(RunState.RUNNING)

    def exited(self, exit_code: int | None, now: float) -> RunState:
        """The process ended by itself: BACKOFF (to be started again at retry_at), EXITED or FATAL; returns it."""
        self.exit_code = exit_code
        if self.running_since is not None and now - self.running_since >= self.policy.stable_seconds:
            self.restarts = 0  # it ran well: a new failure starts the backoff again from the first delay
        self.running_since = None
        if self.policy.wants_restart(exit_code, self.restarts):
            self.restarts += 1
            delay = self.policy.delay(self.restarts)
            self.retry_at = now + delay
            self.change_state(RunState.BACKOFF, f"exit code {exit_code}, restart {self.restarts} in {delay:g} s")
        elif self.restarts and exit_code != 0:
            self.change_state(RunState.FATAL, f"exit code {exit_code}, gave up after {self.restarts} restarts")
        else:
            self.change_state(RunState.EXITED, f"exit code {exit_code}")
        return self.state

    def spawn_failed(self, reason: str, now: float) -> RunState:
        """The spawn itself failed (no such command, no such directory): BACKOFF while retries are left, else FATAL."""
        if self.policy.wants_restart(None, self.restarts):
            self.restarts += 1
            self.retry_at = now + self.policy.delay(self.restarts)
            self.change_state(RunState.BACKOFF, reason)
        else:
            self.change_state(RunState.FATAL, reason)
        return self.state

    def due(self, now: float) -> bool:
        """Whether a process in BACKOFF is due to start again."""
        return self.state is RunState.BACKOFF and self.retry_at is not None and now >= self.retry_at

    def stopping(self) -> None:
        """A stop was asked: STOPPING while a process runs, STOPPED at once in BACKOFF (nothing runs)."""
        if self.state is RunState.BACKOFF:
            self.retry_at = None
            self.change_state(RunState.STOPPED, "stopped during its backoff")
        elif self.state in (RunState.STARTING, RunState.RUNNING):
            self.change_state(RunState.STOPPING)

    def stopped(self) -> None:
        """The stop is over: nothing of the process is left."""
        if self.state is RunState.STOPPING:
            self.change_state(RunState.STOPPED)
