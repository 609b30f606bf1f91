"""Starting, finding, signalling and stopping the processes of one task, command or process component: its process
group plus every descendant. The one stop with grace (GraceStop) and the one hard kill (kill) of the agent."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

WRAPPER_SCRIPT = 'sh -c "$1"; rc=$?; echo "$rc" > "$2.tmp" && mv -f "$2.tmp" "$2"; exit "$rc"'
"""Runs the command (``$1``) in a child shell and leaves its exit status in ``$2``, agent or not."""

EXIT_CODE_FILE = "exit-code"
"""Name of the file, in a task's directory, where the wrapper leaves the command's exit status."""

HIDDEN_ENV = frozenset({"CORRAL_JOIN_TOKEN"})
"""Agent environment variables that task processes must not inherit."""

STDERR_TAIL_LINES = 20
"""How many last lines of a failed process's stderr its error message carries."""

CREATE_TIME_TOLERANCE = 1.0
"""Seconds two create_time readings may differ by and still name the same process (boot time jitter)."""

SIGKILL_GIVE_UP_SECONDS = 10.0
"""After SIGKILL, how long to wait for a tree to vanish before calling it stopped anyway."""

LEFT_RUNNING: list[subprocess.Popen[bytes]] = []
"""Children a closed supervisor, command runner or driver left running on purpose (they outlive the agent, or its
successor kills them); kept so Popen.__del__ never warns about them."""


def leave_running(children: Iterable[subprocess.Popen[bytes]]) -> None:
    """Keep the still running ``children`` in LEFT_RUNNING: the agent lets go of them without waiting."""
    LEFT_RUNNING.extend(popen for popen in children if popen.poll() is None)


def spawn(command: str, task_dir: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Run ``command`` with /bin/sh in a session of its own, output and exit status in ``task_dir``."""
    task_dir.mkdir(parents=True, exist_ok=True)
    exit_file = task_dir / EXIT_CODE_FILE
    exit_file.unlink(missing_ok=True)
    with open(task_dir / "stdout.log", "ab") as out, open(task_dir / "stderr.log", "ab") as err:
        # The command travels as an argument of the wrapper, never interpolated into its script.
        argv = ["/bin/sh", "-c", WRAPPER_SCRIPT, "corral-task", command, str(exit_file)]
        return popen_in_session(argv, task_dir, env, out, err)


def spawn_piped(command: str, cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Run ``command`` with /bin/sh in a session of its own, its stdout and stderr on pipes for the caller."""
    return popen_in_session(["/bin/sh", "-c", command], cwd, env, subprocess.PIPE, subprocess.PIPE)


def popen_in_session(
    argv: list[str], cwd: Path, env: Mapping[str, str], stdout: Any, stderr: Any
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new session (so of its own process group), without the agent's secrets."""
    full_env = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV}
    full_env.update(env)
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=full_env,
        start_new_session=True,
    )


def tail(path: Path, lines: int = STDERR_TAIL_LINES, max_bytes: int = 8192) -> str:
    """The last ``lines`` lines of a log file (its last ``max_bytes`` at most), or '' when there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def with_stderr_tail(reason: str, run_dir: Path) -> str:
    """``reason``, followed by the tail of ``run_dir``'s stderr.log when it has one: why a process failed."""
    stderr = tail(run_dir / "stderr.log")
    return f"{reason}; stderr: {stderr}" if stderr else reason


def read_exit_code(task_dir: Path) -> int | None:
    """The exit status the wrapper left in ``task_dir``, or None when it left none."""
    try:
        return int((task_dir / EXIT_CODE_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def wrapper_exit_status(
    key: str,
    children: dict[str, subprocess.Popen[bytes]],
    adopted: dict[str, psutil.Process],
    run_dir: Path,
) -> tuple[bool, int | None]:
    """Whether the wrapper watched under ``key`` has ended, and its exit code if known.

    ``children`` are the wrappers this agent spawned, ``adopted`` those it found again after a restart; an
    ended one is dropped from both. An adopted wrapper is no child of ours: its status comes from the file
    it left in ``run_dir``.
    """
    popen = children.get(key)
    if popen is not None:
        code = popen.poll()
        if code is None:
            return False, None
        del children[key]
        return True, code
    proc = adopted.get(key)
    if proc is not None and is_alive(proc):
        return False, None
    adopted.pop(key, None)
    return True, read_exit_code(run_dir)


def create_time(pid: int) -> float | None:
    """psutil's create_time of ``pid``, or None when it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def find_process(pid: int, expected_create_time: float | None) -> psutil.Process | None:
    """The live (non-zombie) process ``pid`` if it is still the one created at ``expected_create_time``."""
    try:
        proc = psutil.Process(pid)
        if expected_create_time is not None and abs(proc.create_time() - expected_create_time) > (
            CREATE_TIME_TOLERANCE
        ):
            return None  # the pid was recycled by another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` (the same process, not a recycled pid) still runs and is not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of process group ``pgid`` (zombies left out: an init that never reaps keeps them)."""
    members = []
    for proc in psutil.process_iter(["status"], ad_value=None):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or os.getpgid(proc.pid) != pgid:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        members.append(proc)
    return members


def collect_tree(pid: int, pgid: int | None, known: list[psutil.Process] | None = None) -> list[psutil.Process]:
    """Live processes of a task: ``pid``, its group, and the descendants of those and of ``known``."""
    roots: list[psutil.Process] = list(known or [])
    try:
        roots.append(psutil.Process(pid))
    except psutil.NoSuchProcess:
        pass
    if pgid is not None:
        roots.extend(group_members(pgid))
    return _with_descendants([root for root in roots if is_alive(root)])


def signal_tree(procs: list[psutil.Process], pgid: int | None, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group and to each process (some may have left the group)."""
    # Never our own group: a task always runs in a session of its own.
    if pgid is not None and pgid != os.getpgrp():
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil checks the pid was not recycled
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def kill(procs: list[psutil.Process], pgid: int | None) -> None:
    """SIGKILL ``procs`` and the process group ``pgid``: the one hard kill of a task, command or component tree."""
    signal_tree(procs, pgid, signal.SIGKILL)


@dataclass(eq=False)
class GraceStop:
    """The stop with grace of one process tree: SIGTERM at the start (begin), SIGKILL to whatever is left of it once
    ``kill_at`` has passed (escalate), given up on SIGKILL_GIVE_UP_SECONDS after that.

    Times are on the caller's clock: monotonic, or wall time where the stop must outlive an agent restart.
    """

    pgid: int
    kill_at: float
    targets: list[psutil.Process] = field(default_factory=list)  # what got SIGTERM, even if it left the group
    killed: bool = False  # whether SIGKILL found anything left

    @classmethod
    def prepare(
        cls, pgid: int, grace_seconds: float, now: float, targets: list[psutil.Process] | None = None
    ) -> GraceStop:
        """The stop of the tree led by ``pgid``: ``targets`` when given, else what collect_tree finds; no signal yet."""
        return cls(pgid, now + grace_seconds, collect_tree(pgid, pgid) if targets is None else targets)

    @classmethod
    def begin(
        cls, pgid: int, grace_seconds: float, now: float, targets: list[psutil.Process] | None = None
    ) -> GraceStop:
        """Prepare the stop and SIGTERM the tree at once."""
        stop = cls.prepare(pgid, grace_seconds, now, targets)
        stop.terminate()
        return stop

    def terminate(self) -> None:
        """SIGTERM the tree: the start of the grace."""
        signal_tree(self.targets, self.pgid, signal.SIGTERM)

    def escalate(self, now: float) -> list[psutil.Process]:
        """Once the grace is over, SIGKILL what is left of the tree; returns what got it (none before the grace)."""
        if now < self.kill_at:
            return []
        leftovers = collect_tree(self.pgid, self.pgid, self.targets)
        if leftovers:
            self.killed = True
            kill(leftovers, self.pgid)
        return leftovers

    def remaining(self) -> list[psutil.Process]:
        """The processes of the tree still alive: the targets, or else whatever the group holds."""
        return [p for p in self.targets if is_alive(p)] or group_members(self.pgid)

    def given_up(self, now: float) -> bool:
        """Whether SIGKILL was sent long enough ago to stop waiting for the tree to vanish."""
        return now >= self.kill_at + SIGKILL_GIVE_UP_SECONDS

    def exit_code(self, code: int | None) -> int:
        """``code``, or the signal that ended the leader when it left no exit status (only a signal does: ours)."""
        if code is not None:
            return code
        return -(signal.SIGKILL if self.killed else signal.SIGTERM)


def group_leftovers(pgid: int, leader_create_time: float | None) -> list[psutil.Process]:
    """What is left of the session a process led (e.g. after an agent restart): the leader if still the same
    process, the live members of its group, and their descendants."""
    leader = find_process(pgid, leader_create_time)
    if leader is not None:
        return collect_tree(pgid, pgid, [leader])
    holder_created = create_time(pgid)  # a zombie leader of ours still holds the pid, with our create time
    if holder_created is not None and (
        leader_create_time is None or abs(holder_created - leader_create_time) > CREATE_TIME_TOLERANCE
    ):
        # Another process holds the pid now. Linux never reuses a pid that still names a session or a
        # group, so nothing of ours is left (and that group is someone else's).
        return []
    return _with_descendants(group_members(pgid))


def _with_descendants(roots: list[psutil.Process]) -> list[psutil.Process]:
    found: dict[int, psutil.Process] = {}
    for root in roots:
        found.setdefault(root.pid, root)
        try:
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in found.values() if is_alive(p)]


def by_environment(marker: str, value: str, key: str) -> dict[str, list[psutil.Process]]:
    """Live processes whose environment has ``marker`` = ``value``, grouped by their ``key`` variable.

    Reads every process's environment, at the agent's start only. On Linux the raw /proc/<pid>/environ of
    each is searched for ``marker=value`` first, and only those that hold it are read through psutil: psutil
    on every process costs 6 ms of CPU per hundred processes, and fifty agents starting at once on one host
    each scan the others.
    """
    found: dict[str, list[psutil.Process]] = {}
    for proc in _candidates(os.fsencode(f"{marker}={value}")):
        try:
            environ = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if environ.get(marker) == value and environ.get(key) and is_alive(proc):
            found.setdefault(environ[key], []).append(proc)
    return found


def _candidates(needle: bytes) -> Iterable[psutil.Process]:
    """Processes whose environment may hold ``needle``: on Linux those whose raw environ contains it, else all."""
    try:
        names = os.listdir("/proc")
    except OSError:
        names = []
    if not psutil.LINUX or not names:
        yield from psutil.process_iter()
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in f.read():
                    continue
            yield psutil.Process(int(name))
        except (OSError, psutil.Error):
            continue  # gone, or not ours to read (psutil.process_iter skips those too)


def session_of(proc: psutil.Process) -> int | None:
    """The process group ``proc`` leads, if it leads one (a command's shell does: its own session)."""
    try:
        return proc.pid if os.getpgid(proc.pid) == proc.pid else None
    except ProcessLookupError:
        return None
