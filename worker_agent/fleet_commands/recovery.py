"""What a CommandRunner does at agent start: kill what the commands of a previous agent left, report them failed,
requeue the held and unacknowledged reports."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from shared.states import HostRunStatus

from .. import process_tree
from .publish import CommandPublisher
from .records import CommandRecord

logger = logging.getLogger(__name__)

RESTARTED_ERROR = "agent restarted while the command ran"

NODE_ENV = "CORRAL_NODE_ID"
"""Set for every command to its node's id: with CORRAL_TASK_ID it lets a restarted agent find a command its
predecessor spawned but died before recording."""


class CommandRecovery:
    """What CommandRunner does at agent start (mixed into it), apart from running, watching and reporting."""

    # What it uses of the CommandRunner it is mixed into.
    node_id: str
    _lock: threading.RLock
    _records: dict[str, CommandRecord]
    _publisher: CommandPublisher
    _wake: Callable[[], None]
    _end: Callable[..., None]
    _report: Callable[..., dict[str, Any]]
    save_all: Callable[[], None]

    def recover(self) -> None:
        """At agent start: kill what commands of a previous agent left, report them failed, requeue the held
        and unacknowledged reports."""
        with self._lock:
            for rec in self._records.values():
                held = None if rec.acked else self._publisher.load_held(rec.task_id)
                if held is not None:
                    # It ended under the previous agent, which could not publish (nor maybe save) its end.
                    for name in ("status", "exit_code", "finished_at", "error_message"):
                        setattr(rec, name, held.get(name))
                    self._publisher.add(held)
                elif rec.live:
                    leftovers = process_tree.group_leftovers(rec.pid, rec.create_time) if rec.pid else []
                    if leftovers:
                        logger.warning(
                            "node %s task %s: killing %d processes left by the previous agent",
                            self.node_id,
                            rec.task_id,
                            len(leftovers),
                        )
                        process_tree.kill(leftovers, rec.pid)
                    self._end(rec, HostRunStatus.FAILED, error_message=RESTARTED_ERROR, save=False)
                    self._publisher.add(self._report(rec))
                elif not rec.acked:
                    # Sent maybe, never acknowledged: again, without its output unless it was held on disk.
                    self._publisher.add(self._report(rec))
            self._settle_unrecorded()
            self.save_all()
        self._wake()

    def _settle_unrecorded(self) -> None:
        """Kill the commands of this node that a predecessor spawned but died before recording, and record
        them failed: RQ gives their job again, which must then find the task id and not run it a second time
        (lock held)."""
        for task_id, procs in process_tree.by_environment(NODE_ENV, self.node_id, "CORRAL_TASK_ID").items():
            if task_id in self._records:
                continue  # recorded: settled above
            leader = min(procs, key=lambda proc: proc.pid)
            logger.warning(
                "node %s task %s: killing %d processes of a command the previous agent did not record",
                self.node_id,
                task_id,
                len(procs),
            )
            process_tree.kill(procs, process_tree.session_of(leader))
            rec = CommandRecord(task_id=task_id, pid=leader.pid, status=HostRunStatus.RUNNING.value)
            self._records[task_id] = rec
            self._end(rec, HostRunStatus.FAILED, error_message=RESTARTED_ERROR, save=False)
            self._publisher.add(self._report(rec))
