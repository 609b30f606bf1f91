"""An instance's restarts and their backoff, as its record keeps them: the run states of its process resumed from
the record (deployment_tasks.restarts does the counting and the delays), and what each end or failed start
leaves in the record (a restart entry with its reason, the process's fields cleared).

An app instance is a service: it is started again after any end, for ever, backing off; only a stop ends it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from shared.states import AppHealth

from ..deployment_tasks.restarts import RestartPolicy, RunState, RunStates
from .records import InstanceRecord


def run_states(
    rec: InstanceRecord, node_id: str, stable_seconds: float, on_change: Callable[[RunState, RunState, str], None]
) -> RunStates:
    """The run states of ``rec``'s process, under the backoff its spec asks, resumed where the record left them."""
    spec = rec.spec
    policy = RestartPolicy(
        retries=sys.maxsize,
        backoff_seconds=float(spec["backoff_seconds"]),
        backoff_factor=float(spec["backoff_factor"]),
        max_backoff_seconds=float(spec["max_backoff_seconds"]),
        restart_on_success=True,  # a service: any end is a failure to recover from
        stable_seconds=stable_seconds,
    )
    states = RunStates(f"node {node_id} {rec.describe()}", policy, on_change)
    states.state = RunState(rec.run_state)
    states.restarts = rec.backoff_restarts
    states.retry_at = rec.retry_at
    states.running_since = rec.running_since
    return states


def keep_states(rec: InstanceRecord, states: RunStates) -> None:
    """Into the record (saved with the agent's state file): where the run states are, for an adopting agent."""
    rec.run_state = str(states.state)
    rec.backoff_restarts = states.restarts
    rec.retry_at = states.retry_at
    rec.running_since = states.running_since


def start_failed(rec: InstanceRecord, reason: str, now: float) -> tuple[str, dict[str, Any]]:
    """(why, the restart entry) of a start that failed, both recorded."""
    why = f"start failed: {reason}"
    restart = {"at": now, "reason": why, "exit_code": None, "signal": None, "oom": False}
    rec.reason = why
    rec.add_restart(restart)
    return why, restart


def ended(rec: InstanceRecord, code: int | None, oom: bool, now: float) -> dict[str, Any]:
    """The restart entry of a process that ended with the launch script's status ``code`` (``oom``: its cgroup
    counted a kill for memory), recorded with its reason, exit code and signal; the process's fields cleared."""
    exit_code, sig = decode_end(code)
    reason = end_reason(rec.killing, oom, (rec.spec.get("res_alloc") or {}).get("mem_mb"), exit_code, sig)
    restart = {"at": now, "reason": reason, "exit_code": exit_code, "signal": sig, "oom": oom}
    rec.add_restart(restart)
    rec.reason = reason
    rec.exit_code = exit_code
    rec.signal = sig
    rec.pid = None
    rec.create_time = None
    rec.killing = None
    rec.kill_at = None
    rec.health = AppHealth.UNKNOWN
    rec.healthy_since = None
    return restart


def decode_end(code: int | None) -> tuple[int | None, int | None]:
    """(exit code, signal) of a launch script's status: negative for the script itself killed by a signal,
    128+n for the command killed by signal n (as the shell reports it)."""
    if code is None:
        return None, None
    if code < 0:
        return None, -code
    if 128 < code <= 128 + 64:
        return None, code - 128
    return code, None


def end_reason(killing: str | None, oom: bool, mem_mb: Any, exit_code: int | None, sig: int | None) -> str:
    """Why the process ended, as a restart and the report say it."""
    if killing is not None:
        return killing
    if oom:
        return f"out of memory (cgroup limit {mem_mb} MB)"
    if sig is not None:
        return f"killed by signal {sig}"
    if exit_code is None:
        return "ended without an exit status"
    return f"exited with code {exit_code}"
