"""What a node reports about itself: heartbeat figures (every interval) and facts (once, at join)."""

from __future__ import annotations

import os
import platform
from typing import Any

import psutil


def collect(interval: float, hostname: str, ip: str, tasks_running: int) -> dict[str, Any]:
    """The shared.heartbeat FIELDS (all but ``ts``, which Redis stamps) for one heartbeat."""
    memory = psutil.virtual_memory()
    load1, load5, load15 = os.getloadavg()
    net = psutil.net_io_counters()
    return {
        "interval": interval,
        "hostname": hostname,
        "ip": ip,
        # Non-blocking: the share of CPU time since the previous call (the first call reads 0.0).
        "cpu_usage_percent": psutil.cpu_percent(interval=None),
        "memory_usage_percent": memory.percent,
        "disk_usage_percent": psutil.disk_usage("/").percent,
        "load1": round(load1, 2),
        "load5": round(load5, 2),
        "load15": round(load15, 2),
        "net_bytes_sent": net.bytes_sent if net else 0,
        "net_bytes_recv": net.bytes_recv if net else 0,
        "cpu_count": psutil.cpu_count() or 1,
        "memory_total_mb": memory.total // (1024 * 1024),
        "tasks_running": tasks_running,
    }


def facts() -> dict[str, Any]:
    """What a node is, sent once with the join: os, kernel, arch, cpus, memory, boot time, python."""
    try:
        distro = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        distro = ""
    return {
        "os": platform.system(),
        "distro": distro,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu_count": psutil.cpu_count() or 1,
        "memory_total_mb": psutil.virtual_memory().total // (1024 * 1024),
        "boot_time": psutil.boot_time(),
        "python": platform.python_version(),
    }
