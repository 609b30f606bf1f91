"""How an instance's process is launched: the environment it gets, the launch script
that puts it in its cgroups and leaves its exit status in a file (so an agent restarted meanwhile still learns
it), and the spawn.

Kept apart from instance.py, which decides when to start and stop; here is only what a start runs.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from .. import process_tree
from . import cgroups
from .logs import InstanceLogs

LAUNCH_SCRIPT = (
    'f="$1"; c="$2"; shift 2; '
    'for p in "$@"; do echo $$ > "$p" || echo "corral: could not join cgroup $p" >&2; done; '
    '/bin/sh -c "$c"; rc=$?; echo "$rc" > "$f.tmp" && mv -f "$f.tmp" "$f"; exit "$rc"'
)
"""Joins the instance's cgroups (``$3...``: their cgroup.procs files), runs the command line (``$2``) and leaves
its exit status in the file ``$1``, agent or not. The command line travels as an argument, never interpolated."""


def shell_word(arg: str) -> str:
    """``arg`` in double quotes for /bin/sh: ``\\``, ``"`` and backquotes escaped, ``$`` left alone, so ``$PORT0``
    (and any ``$VAR`` of the instance's environment) still expands in args. Not shlex.quote: its single quotes
    would keep ``$PORT0`` from expanding."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def command_line(spec: dict[str, Any]) -> str:
    """What the instance runs through ``/bin/sh -c``: ``command`` as written, then each arg as a shell_word."""
    return " ".join([spec["command"], *(shell_word(a) for a in spec.get("args") or [])])


def environment(
    spec: dict[str, Any], ports: list[int], host: str, instance_id: str, secrets: dict[str, str] | None = None
) -> dict[str, str]:
    """The spec's env and ``secrets``, then what the agent sets: PORT0..n, PORT, PORTS, HOST, APP_NAME,
    INSTANCE_ID."""
    env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
    env.update(secrets or {})
    for index, port in enumerate(ports):
        env[f"PORT{index}"] = str(port)
    if ports:
        env["PORT"] = str(ports[0])
        env["PORTS"] = ",".join(str(p) for p in ports)
    env["HOST"] = host
    env["APP_NAME"] = spec["app"]
    env["INSTANCE_ID"] = instance_id
    return env


def launch_argv(spec: dict[str, Any], run_dir: Path, limits: cgroups.Limits | None) -> list[str]:
    """The launch script's command line, its exit file (in ``run_dir``) cleared of the last process's status."""
    run_dir.mkdir(parents=True, exist_ok=True)
    exit_file = run_dir / process_tree.EXIT_CODE_FILE
    exit_file.unlink(missing_ok=True)
    procs = [str(p) for p in (limits.procs_files if limits and limits.enforced else [])]
    return ["/bin/sh", "-c", LAUNCH_SCRIPT, "corral-app", str(exit_file), command_line(spec), *procs]


def spawn(argv: list[str], workdir: Path, env: dict[str, str], logs: InstanceLogs) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, its output appended to the instance's log files (OSError if not)."""
    with open(logs.path("stdout"), "ab") as out, open(logs.path("stderr"), "ab") as err:
        return process_tree.popen_in_session(argv, workdir, env, out, err)


def as_signal(number: int) -> signal.Signals:
    try:
        return signal.Signals(number)
    except ValueError:
        return number  # type: ignore[return-value]  # a real-time signal: os.killpg takes its number
