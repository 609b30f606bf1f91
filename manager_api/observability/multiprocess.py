"""prometheus_client's multiprocess mode: every gunicorn worker and the launcher's duties write their counters
and histograms into one private directory, which a scrape (answered by any one worker) adds up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, values

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's own variable: set, every process that inherits it writes its samples there."""


def prepare(data_dir: Path, port: int) -> Path:
    """Make an empty private directory for this manager's samples and turn multiprocess mode on, for this process
    and for the gunicorn workers it starts (they inherit the variable).

    ``<data dir>/prometheus-<port>``: managers sharing a data directory (with --redis-url) differ by port.
    Emptied at every start: files left by the processes of a previous run would be added to this run's counters.
    prometheus_client chooses its value class when it is first imported (the launcher imported it already, through
    the duties): chosen again here, so that the instruments made from now on write into the directory. Every
    instrument has labels (observability.instruments), so none holds a value made before this call.
    """
    directory = data_dir / f"prometheus-{port}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    os.environ[ENV_VAR] = str(directory)
    values.ValueClass = values.get_value_class()
    return directory


def enabled() -> bool:
    """Whether this process writes its samples to a shared directory (a manager's worker or launcher)."""
    return bool(os.environ.get(ENV_VAR))


def add_processes(registry: CollectorRegistry) -> None:
    """Register on ``registry`` the samples of every process of this manager, added up."""
    multiprocess.MultiProcessCollector(registry)


def process_ended(pid: int) -> None:
    """Forget the live gauges of an ended worker (gunicorn's child_exit); its counters keep counting in the sum."""
    if enabled():
        multiprocess.mark_process_dead(pid)
