"""Process metrics of the whole manager: the launcher (with the duties), gunicorn's master, its workers, Redis.

prometheus_client's own process collector describes the one process that answers a scrape, a different worker
each time; this one reads every process of the manager with psutil, one series per process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from manager_api.observability.instruments import PREFIX

LAUNCHER_PID_VAR = "CORRAL_LAUNCHER_PID"
"""Set by the launcher in its gunicorn workers' environment: where the manager's process tree starts."""


def _role(proc: psutil.Process, launcher: int, master: int | None) -> str:
    if proc.pid == launcher:
        return "launcher"
    if proc.pid == master:
        return "gunicorn"
    if master is not None and proc.ppid() == master:
        return "worker"
    return proc.name()  # redis-server


class ManagerProcesses(Collector):
    """CPU, memory, threads and open files of each process of this manager."""

    def collect(self) -> Iterator[Metric]:
        labels = ["role", "pid"]
        cpu = CounterMetricFamily(
            PREFIX + "process_cpu_seconds", "CPU time (user and system) of each process", labels=labels
        )
        memory = GaugeMetricFamily(
            PREFIX + "process_resident_memory_bytes", "Resident memory of each process", labels=labels
        )
        threads = GaugeMetricFamily(PREFIX + "process_threads", "Threads of each process", labels=labels)
        fds = GaugeMetricFamily(PREFIX + "process_open_fds", "Open file descriptors of each process", labels=labels)
        started = GaugeMetricFamily(
            PREFIX + "process_start_time_seconds", "Start time of each process (Unix time)", labels=labels
        )
        launcher_pid = int(os.environ.get(LAUNCHER_PID_VAR) or 0)
        try:
            root = psutil.Process(launcher_pid) if launcher_pid else psutil.Process()
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            root, tree = psutil.Process(), [psutil.Process()]
        master = os.getppid() if launcher_pid else None
        for proc in tree:
            try:
                with proc.oneshot():
                    values = [_role(proc, root.pid, master), str(proc.pid)]
                    times = proc.cpu_times()
                    cpu.add_metric(values, times.user + times.system)
                    memory.add_metric(values, proc.memory_info().rss)
                    threads.add_metric(values, proc.num_threads())
                    fds.add_metric(values, proc.num_fds())
                    started.add_metric(values, proc.create_time())
            except psutil.Error:
                continue  # ended meanwhile, or another user's (a system Redis is not the manager's)
        yield from (cpu, memory, threads, fds, started)
